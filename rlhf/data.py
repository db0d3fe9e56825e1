"""Readers and validators shared by every stage: JSON / JSONL / CSV / TSV (each optionally .gz), Parquet and saved
`datasets` dirs. Hub dataset ids and dirs of data files go through `datasets.load_dataset` (rlhf.sources).

Every reader returns plain dicts and refuses bad input with one `UserError` naming the file and the row
(1-based: the JSONL line, or the index in a JSON list) so a researcher can fix the file at once.

Readers are total: any bytes give rows or a UserError. Python's json accepts more than JSON proper, and some of
what it accepts breaks later code far from the file, so these are refused with the row (and key) named:
- nesting deeper than MAX_DEPTH (json itself raises RecursionError at ~1000 levels; tokenizers, Arrow and our
  own row checks recurse too);
- a lone surrogate such as "\\ud800" (valid JSON escape, but not Unicode: tokenizers raise TypeError and UTF-8
  writers UnicodeEncodeError). Refused rather than replaced, so no text changes silently;
- NaN / Infinity, a float that overflows to inf (1e999) and an integer beyond 64 bits;
- the same key twice in one object (json would silently keep the last value).

CSV cells are always strings (no type guessing: "007" stays "007"); a row with more or fewer cells than the header
is refused. Parquet and `datasets` values arrive typed from Arrow and get the same checks.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from pathlib import Path
from typing import Any

from rlhf.errors import UserError

MAX_DEPTH = 64  # our rows are at most 3 levels deep (a list of messages); anything near this is not data
_INT_LIMIT = 2**63
_CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB a cell) would refuse a long response


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"not valid UTF-8 (byte {e.start})", path, f"line {line}") from None


class _Object(dict):
    """A parsed JSON object that remembers the first key it saw twice (json keeps the last value silently)."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    for k, v in pairs:
        if k in obj and obj.duplicate is None:
            obj.duplicate = k
        obj[k] = v
    return obj


class _Bad:
    """Stands in for a number the walk below refuses (with its row), instead of failing inside json."""

    def __init__(self, what: str):
        self.what = what


def _int(text: str) -> int | _Bad:
    if len(text.lstrip("-")) > 19:  # beyond 64 bits (and Python's 4300-digit limit raises ValueError)
        value = int(text) if len(text) < 4000 else None
        if value is None or not -_INT_LIMIT <= value < _INT_LIMIT:
            return _Bad(f"integer {text[:12]}... ({len(text)} digits) is out of range (64-bit)")
    return int(text)


def _float(text: str) -> float | _Bad:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"number {text[:24]} is out of range")


def _constant(name: str) -> _Bad:
    return _Bad(f"{name} is not a JSON number")


def loads(text: str) -> Any:
    """json.loads that marks duplicate keys and out-of-range numbers for `check_value` (may raise
    json.JSONDecodeError or RecursionError)."""
    return json.loads(
        text, object_pairs_hook=_object, parse_int=_int, parse_float=_float, parse_constant=_constant
    )


def text_problem(text: str) -> str | None:
    """What makes `text` unusable as Unicode (a lone surrogate), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (
            f"lone surrogate U+{ord(text[e.start]):04X} at character {e.start + 1}; expected Unicode text "
            "(a \\ud8xx escape must be followed by its \\udcxx pair)"
        )
    return None


def value_problem(value: Any) -> tuple[str | None, str] | None:
    """(top-level key or None, what is wrong) for the first thing in a parsed value that readers refuse: too deep,
    a duplicate key, an out-of-range number, a lone surrogate. None when the value is fine. Iterative, so depth
    itself cannot crash it."""
    stack: list[tuple[Any, int, str | None]] = [(value, 0, None)]
    seen: set[int] = set()  # YAML aliases share one object many times over: walk it once
    while stack:
        v, depth, top = stack.pop()
        if depth > MAX_DEPTH:
            return top, f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(v, str):
            if problem := text_problem(v):
                return top, f"text holds a {problem}"
        elif isinstance(v, _Bad):
            return top, v.what
        elif isinstance(v, float) and not math.isfinite(v):
            return top, f"{v} is not a finite number"
        elif isinstance(v, (dict, list, tuple)) and id(v) in seen:
            continue
        elif isinstance(v, dict):
            seen.add(id(v))
            if getattr(v, "duplicate", None) is not None:
                return (top if depth else v.duplicate), f"duplicate key {v.duplicate!r}"
            for k, x in v.items():
                if problem := text_problem(k):
                    return top, f"a key holds a {problem}"
                stack.append((x, depth + 1, k if depth == 0 else top))
        elif isinstance(v, (list, tuple)):
            seen.add(id(v))
            stack.extend((x, depth + 1, top) for x in v)
    return None


def check_value(value: Any, path: str | Path, where: str | None) -> None:
    """Raise one UserError naming file, row and key for what `value_problem` finds."""
    found = value_problem(value)
    if found is None:
        return
    key, what = found
    loc = where if key is None else (f"{where}: key '{key}'" if where else f"key '{key}'")
    raise UserError(what, path, loc)


def _plain(value: Any) -> Any:
    """The parsed value with our dict subclass swapped for dict (pickling, Arrow, equality all stay ordinary)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _too_deep_line(text: str) -> int:
    """The line where brackets first nest deeper than MAX_DEPTH (outside strings), for a RecursionError's report."""
    depth, in_string, escaped, line = 0, False, False, 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif ch in "]}":
            depth -= 1
    return line


def read_records(path, *, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of `.json` (a list of objects), `.jsonl` (one object a line), `.csv` / `.tsv` (a header line, then one
    row a line), each optionally `.gz`, `.parquet`, or a saved `datasets` dir (its `split`, default train).
    `path` may also be an `rlhf.sources.Source` (a hub dataset id or a dir of data files, read by `datasets`).
    Every row gets `_row` ("line N" or "row N") for error messages."""
    from rlhf.sources import Source

    if isinstance(path, Source):
        return path.read()
    path = Path(path)
    if not path.exists():
        raise UserError("no such file or directory", path)
    if path.is_dir():
        return _read_dataset_dir(path, split or "train")
    if split not in (None, "train"):
        raise UserError(
            f"a single file has no split {split!r}; splits come from a dataset dir or a hub dataset", path
        )
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"cannot read ({e})", path) from None
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if not raw.strip():
        raise UserError("file is empty; expected rows", path)
    if name.endswith(".parquet"):
        return _parse_parquet(raw, path)
    text = _decode(raw, path)
    if not text.strip():
        raise UserError("file is empty; expected rows", path)
    if name.endswith((".csv", ".tsv")):
        return _parse_csv(text.removeprefix("\ufeff"), path, "\t" if name.endswith(".tsv") else ",")
    if name.endswith(".jsonl"):
        return _parse_jsonl(text, path)
    if name.endswith(".json"):
        return _parse_json_list(text, path)
    # Unknown suffix: sniff. A list is JSON; anything else is treated as JSONL.
    return _parse_json_list(text, path) if text.lstrip().startswith("[") else _parse_jsonl(text, path)


def _parse_csv(text: str, path: Path, delimiter: str) -> list[dict[str, Any]]:
    """A header line then one row per record (a quoted cell may span lines; the row is named by its first line).
    strict: a stray quote is an error, not a silently merged cell."""
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows = []
    first_line = 1  # where the record being read starts
    try:
        for cells in reader:
            where, first_line = f"line {first_line}", reader.line_num + 1
            if not cells:  # a blank line
                continue
            if header is None:
                header = cells
                named = [c for c in cells if c.strip()]
                if len(named) != len(cells):
                    raise UserError("header has an empty column name", path, where)
                if dup := next((c for i, c in enumerate(cells) if c in cells[:i]), None):
                    raise UserError(f"header names column {dup!r} twice", path, where)
                continue
            if len(cells) != len(header):
                raise UserError(
                    f"{len(cells)} cells; expected {len(header)}, one per header column", path, where
                )
            row: dict[str, Any] = dict(zip(header, cells))
            check_value(row, path, where)
            row["_row"] = where
            rows.append(row)
    except csv.Error as e:
        raise UserError(f"malformed CSV ({e})", path, f"line {reader.line_num}") from None
    if not rows:
        raise UserError("no rows; expected a header line and then one row a line", path)
    return rows


def _parse_parquet(raw: bytes, path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        data = pq.read_table(pa.BufferReader(raw)).to_pylist()
    except (
        Exception
    ) as e:  # pyarrow raises many types (ArrowInvalid, OSError, UnicodeDecodeError ...) for bad bytes
        detail = (str(e).splitlines() or [""])[0][:120]
        raise UserError(f"not a readable Parquet file ({type(e).__name__}: {detail})", path) from None
    return checked_rows(data, path)


def checked_rows(data, path) -> list[dict[str, Any]]:
    """Rows from Arrow (Parquet, `datasets`), each checked like a JSON row and named "row N"."""
    rows = []
    for i, obj in enumerate(data):
        obj = dict(obj)
        check_value(obj, path, f"row {i + 1}")  # Arrow holds valid UTF-8, but floats may be NaN
        obj["_row"] = f"row {i + 1}"
        rows.append(obj)
    if not rows:
        raise UserError("no rows", path)
    return rows


def _parse_jsonl(text: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"malformed JSON ({e.msg}, column {e.colno})", path, f"line {lineno}") from None
        except RecursionError:
            raise UserError(f"nested more than {MAX_DEPTH} levels deep", path, f"line {lineno}") from None
        if not isinstance(obj, dict):
            raise UserError(f"expected a JSON object, got {type(obj).__name__}", path, f"line {lineno}")
        check_value(obj, path, f"line {lineno}")
        obj = _plain(obj)
        obj["_row"] = f"line {lineno}"
        rows.append(obj)
    if not rows:
        raise UserError("no rows; expected one JSON object per line", path)
    return rows


def _parse_json_list(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"malformed JSON ({e.msg})", path, f"line {e.lineno}") from None
    except RecursionError:
        raise UserError(
            f"nested more than {MAX_DEPTH} levels deep", path, f"line {_too_deep_line(text)}"
        ) from None
    if not isinstance(data, list):
        raise UserError(
            f"expected a JSON list of objects, got {'dict' if isinstance(data, dict) else type(data).__name__}",
            path,
        )
    if not data:
        raise UserError("the list is empty; expected at least one row", path)
    rows = []
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise UserError(f"expected a JSON object, got {type(obj).__name__}", path, f"row {i + 1}")
        check_value(obj, path, f"row {i + 1}")
        obj = _plain(obj)
        obj["_row"] = f"row {i + 1}"
        rows.append(obj)
    return rows


def is_saved_dataset(path: Path) -> bool:
    """Whether `path` is a dir written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _read_dataset_dir(path: Path, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises several types for a dir that is not a saved dataset
        raise UserError(f"not a saved `datasets` dir ({type(e).__name__})", path) from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise UserError(f"dataset dict has no {split!r} split (splits: {list(ds)})", path)
        ds = ds[split]
    elif split != "train":
        raise UserError(f"a saved Dataset has one split, not {split!r}; save a DatasetDict for splits", path)
    if len(ds) == 0:
        raise UserError("the dataset is empty", path)
    return checked_rows(ds, path)


def require_str(
    row: dict, key: str, path: str | Path, *, optional: bool = False, nonempty: bool = True
) -> str:
    """Return row[key] as a string, or raise one clear error naming file, row and key."""
    where = f"{row.get('_row', '?')}: key '{key}'"
    if key not in row or row[key] is None:
        if optional:
            return ""
        raise UserError("missing; expected a string", path, where)
    value = row[key]
    if not isinstance(value, str):
        raise UserError(f"expected a string, got {type(value).__name__}", path, where)
    if nonempty and not optional and not value.strip():
        raise UserError("empty string; expected text", path, where)
    return value


def load_instructions(path, require_output: bool = True) -> list[dict]:
    """Read and validate Alpaca rows (`instruction`, optional `input`, `output`: all strings) from any source
    `read_records` reads.

    With `require_output=False` (PPO and compare only need prompts) a missing `output` reads as "".
    """
    rows = read_records(path)
    out = []
    for row in rows:
        clean = {
            "instruction": require_str(row, "instruction", path),
            "input": require_str(row, "input", path, optional=True),
            "output": require_str(row, "output", path, optional=not require_output, nonempty=False),
        }
        for extra in ("kind", "style", "id"):
            if extra in row:
                clean[extra] = row[extra]
        out.append(clean)
    return out

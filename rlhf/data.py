"""Readers and validators shared by every stage: JSON / JSONL (optionally .gz) / saved `datasets` dirs.

Every reader returns plain dicts and refuses bad input with one `UserError` naming the file and the row
(1-based: the JSONL line, or the index in a JSON list) so a researcher can fix the file at once.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from rlhf.errors import UserError


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"not valid UTF-8 (byte {e.start})", path, f"line {line}") from None


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Read rows from `.json` (a list of objects), `.jsonl`/`.jsonl.gz` (one object a line) or a saved dataset dir."""
    path = Path(path)
    if not path.exists():
        raise UserError("no such file or directory", path)
    if path.is_dir():
        return _read_dataset_dir(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read ({e})", path) from None
    text = _decode(raw, path)
    if not text.strip():
        raise UserError("file is empty; expected JSON rows", path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".jsonl"):
        return _parse_jsonl(text, path)
    if name.endswith(".json"):
        return _parse_json_list(text, path)
    # Unknown suffix: sniff. A list is JSON; anything else is treated as JSONL.
    return _parse_json_list(text, path) if text.lstrip().startswith("[") else _parse_jsonl(text, path)


def _parse_jsonl(text: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"malformed JSON ({e.msg}, column {e.colno})", path, f"line {lineno}") from None
        if not isinstance(obj, dict):
            raise UserError(f"expected a JSON object, got {type(obj).__name__}", path, f"line {lineno}")
        obj["_row"] = f"line {lineno}"
        rows.append(obj)
    if not rows:
        raise UserError("no rows; expected one JSON object per line", path)
    return rows


def _parse_json_list(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"malformed JSON ({e.msg})", path, f"line {e.lineno}") from None
    if not isinstance(data, list):
        raise UserError(f"expected a JSON list of objects, got {type(data).__name__}", path)
    if not data:
        raise UserError("the list is empty; expected at least one row", path)
    rows = []
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise UserError(f"expected a JSON object, got {type(obj).__name__}", path, f"row {i + 1}")
        obj = dict(obj)
        obj["_row"] = f"row {i + 1}"
        rows.append(obj)
    return rows


def _read_dataset_dir(path: Path) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises several types for a dir that is not a saved dataset
        raise UserError(f"not a saved `datasets` dir ({type(e).__name__})", path) from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise UserError(f"dataset dict has no 'train' split (splits: {list(ds)})", path)
        ds = ds["train"]
    rows = []
    for i, obj in enumerate(ds):
        obj = dict(obj)
        obj["_row"] = f"row {i + 1}"
        rows.append(obj)
    if not rows:
        raise UserError("the dataset is empty", path)
    return rows


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


def load_instructions(path: str | Path, require_output: bool = True) -> list[dict]:
    """Read and validate Alpaca rows (`instruction`, optional `input`, `output`: all strings) from json/jsonl/dir.

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

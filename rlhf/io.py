"""Small file helpers: atomic writes (temp file + rename) so a crash never leaves a half-written result.

A write that fails (disk full, read-only location) raises one UserError naming the path and leaves the file
that was there before untouched; a kill at any moment leaves either the old or the new file, plus at most a
hidden `.NAME.*.tmp` next to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlhf.errors import UserError


def _why_not_here(path: Path, e: OSError) -> str:
    """The OS's reason, or which part of the path is a file where a folder must be (mkdir says "File exists")."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    return e.strerror or str(e)


def _write_temp(path: Path, data: bytes) -> Path:
    """`data` in a fsynced temp file next to `path` (same filesystem, so the rename that follows is atomic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write here ({_why_not_here(path.parent, e)})", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write ({e.strerror}); earlier output left as it was", path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write ({e.strerror}); earlier output left as it was", path) from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same dir + fsync + rename. Either the old or the new file exists."""
    path = Path(path)
    _replace(_write_temp(path, data), path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def atomic_write_files(directory: str | Path, files: dict[str, bytes | str]) -> None:
    """Write several files of one result so that a failure part-way changes none of them: every file goes to a
    temp name first, and only once all are written are they renamed into place, in the given order (put the file
    that marks the result complete last)."""
    directory = Path(directory)
    written: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            path = directory / name
            written.append((_write_temp(path, data.encode("utf-8") if isinstance(data, str) else data), path))
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for i, (tmp, path) in enumerate(written):
        try:
            _replace(tmp, path)
        except BaseException:
            for later, _ in written[i + 1 :]:
                later.unlink(missing_ok=True)
            raise


def replace_dir(new: str | Path, out: str | Path) -> None:
    """Move the finished dir `new` to `out` (a sibling on the same filesystem), replacing what `out` held: it is
    either the old contents or the complete new ones (an old `out` is moved aside first, then deleted)."""
    new, out = Path(new), Path(out)
    old = None
    if out.exists() and any(out.iterdir()):
        old = out.parent / f".{out.name}.replaced-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(out, old)
    os.replace(new, out)  # an empty existing out is replaced atomically as well
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sibling_temp_dir(out: str | Path, what: str) -> Path:
    """A fresh hidden dir next to `out` to build a result in before `replace_dir` moves it into place. Plain mkdir
    rather than mkdtemp: the result keeps the usual umask permissions instead of mkdtemp's 0700."""
    out = Path(out)
    tmp = out.parent / f".{out.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise UserError(f"cannot create the output dir here ({_why_not_here(out.parent, e)})", out) from None
    return tmp


def require_writable_dir(out: str | Path) -> Path:
    """Create `out` if needed and check a file can be written in it: one clear error now rather than a failure
    after hours of work."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output dir is not writable ({_why_not_here(out, e)})", out) from None
    return out


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

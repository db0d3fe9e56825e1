"""User errors: one line on stderr, exit code 2, no traceback (docs/ARCHITECTURE.md, "Conventions")."""

from __future__ import annotations

import errno
import functools
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """Bad input, bad config or a refused parent. Rendered as `error: <file>[:<where>]: <what>`."""

    def __init__(self, message: str, path: str | Path | None = None, where: str | int | None = None):
        self.path = None if path is None else str(path)
        self.where = where
        self.message = message
        super().__init__(self.line())

    def line(self) -> str:
        loc = ""
        if self.path is not None:
            loc = self.path
            if self.where is not None:
                loc += f":{self.where}"
            loc += ": "
        return f"error: {loc}{self.message}"


# Failures of the place being written to, not of the program: a full disk or quota, a read-only or unwritable
# location, a file-size limit. Libraries wrap them in their own types (safetensors' SafetensorError carries the OS's
# "(os error N)", torch.save's RuntimeError only "unexpected pos"), so those messages are matched as well.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)
_ACCESS = (os.strerror(errno.EACCES), os.strerror(errno.EPERM))  # may be a read: not phrased as a write
_output_location: str | None = None


def note_output_location(path: str | Path) -> None:
    """Where the running command writes its result: named by the error line if storage fails mid-write."""
    global _output_location
    _output_location = str(path)


def storage_failure(exc: BaseException) -> str | None:
    """The OS's reason when `exc` is a write that failed for lack of space or permission, else None."""
    if isinstance(exc, OSError):
        return exc.strerror if exc.errno in _STORAGE_ERRNOS else None
    if not isinstance(exc, RuntimeError) and type(exc).__name__ != "SafetensorError":
        return None
    text = str(exc)
    for code in _STORAGE_ERRNOS:
        if f"(os error {code})" in text or os.strerror(code) in text:
            return os.strerror(code)
    if "inline_container.cc" in text and "unexpected pos" in text:  # torch.save cut short
        return "the file could not be written completely (disk full?)"
    return None


def _is_refused_unpickle(exc: BaseException) -> bool:
    """torch.load(weights_only=True) (transformers' and ours, for optimizer/scheduler/RNG files) meeting a pickle
    that would call something: refused by design, reported as bad input."""
    return isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc)


def exit_on_user_error(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a command's main: UserError -> one stderr line and exit code 2; anything else propagates (exit 1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> int:
        try:
            rc = fn(*args, **kwargs)
        except UserError as e:
            # Under a launcher every rank meets the same error: rank 0 says it, every rank exits 2.
            if os.environ.get("RANK", "0") in ("0", ""):
                print(e.line().replace("\n", " "), file=sys.stderr)
            return 2
        except Exception as e:
            if _is_refused_unpickle(e):
                if os.environ.get("RANK", "0") in ("0", ""):
                    print(
                        f"error: {_output_location or 'checkpoint'}: a checkpoint file holds more than tensors, "
                        "so it was not loaded (unpickling it could run code); delete that checkpoint-N dir or "
                        "pass --resume never",
                        file=sys.stderr,
                    )
                return 2
            reason = storage_failure(e)
            if reason is None:
                raise
            where = getattr(e, "filename", None) or _output_location or "output"
            what = reason if reason in _ACCESS else f"cannot write ({reason})"
            if os.environ.get("RANK", "0") in ("0", ""):
                print(f"error: {where}: {what}; finished results were left as they were", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        return 0 if rc is None else int(rc)

    return wrapper

"""User errors: one line on stderr, exit code 2, no traceback (see DESIGN.md, Conventions)."""

from __future__ import annotations

import functools
import os
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
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        return 0 if rc is None else int(rc)

    return wrapper

"""argparse for the small commands, with our error contract (one line, exit code 2)."""

from __future__ import annotations

import argparse
import re

from rlhf.errors import UserError

_ARGUMENT = re.compile(r"^argument ([^:]+): (.*)$", re.DOTALL)


def usage_error(message: str, prog: str) -> UserError:
    """argparse's message as `command line:<flag>: <what>` when it names a flag ("argument --x/--y: ...")."""
    m = _ARGUMENT.match(message)
    if m:
        return UserError(f"{m.group(2)} (see `{prog} --help`)", "command line", m.group(1).split("/")[0])
    return UserError(f"{message} (see `{prog} --help`)", "command line")


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise usage_error(message, self.prog)

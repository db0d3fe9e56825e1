"""argparse for the small commands, with our error contract (one line, exit code 2)."""

from __future__ import annotations

import argparse
import math
import re

from rlhf.data import text_problem
from rlhf.errors import UserError

_ARGUMENT = re.compile(r"^argument ([^:]+): (.*)$", re.DOTALL)


def usage_error(message: str, prog: str) -> UserError:
    """argparse's message as `command line:<flag>: <what>` when it names a flag ("argument --x/--y: ...")."""
    m = _ARGUMENT.match(message)
    if m:
        return UserError(f"{m.group(2)} (see `{prog} --help`)", "command line", m.group(1).split("/")[0])
    return UserError(f"{message} (see `{prog} --help`)", "command line")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are one `error:` line, and whose text arguments are checked: a byte that is not
    UTF-8 in argv reaches Python as a lone surrogate (surrogateescape), which tokenizers and writers reject."""

    def error(self, message):
        raise usage_error(message, self.prog)

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        names = {
            a.dest: (a.option_strings[0] if a.option_strings else a.metavar or a.dest) for a in self._actions
        }
        for dest, value in vars(ns).items():
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str) and (problem := text_problem(text)):
                    raise UserError(f"text holds a {problem}", "command line", names.get(dest, dest))
        return ns


def int_at_least(minimum: int):
    """An argparse `type`: an integer >= minimum, else one clear message naming the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def float_in(low: float, high: float = math.inf, *, low_open: bool = False):
    """An argparse `type`: a finite number in [low, high] ((low, high] with low_open)."""
    span = f"{'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else None
    what = f"a finite number in {span}" if span else f"a finite number {'>' if low_open else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse

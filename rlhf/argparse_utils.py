"""argparse for the small commands, with our error contract (one line, exit code 2)."""

from __future__ import annotations

import argparse

from rlhf.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{message} (see `{self.prog} --help`)", "command line")

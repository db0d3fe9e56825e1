"""A stage's metric log, `log.jsonl`: one JSON object per Trainer log (step, epoch, time, losses, PPO objectives).

`read_log` is the one reader for everything outside the trainers that write it (compare's curves, reports, tests).
"""

from __future__ import annotations

import json
from pathlib import Path

LOG_FILE = "log.jsonl"


def read_log(path: str | Path) -> list[dict]:
    """The rows of a stage dir's log.jsonl (or of the file itself), in order; [] when there is none. A line cut
    short by a kill, or anything but a JSON object, is skipped: the log is written while the run can still die."""
    return [row for _, row in read_log_lines(path)]


def read_log_lines(path: str | Path) -> list[tuple[str, dict]]:
    """(line as written, parsed row) for each readable row, in order: for rewriting the log without re-encoding."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append((line, row))
    return rows

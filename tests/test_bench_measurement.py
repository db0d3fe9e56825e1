"""The benches' memory figure is each process's own peak: a child started by a parent that once held a lot reports
its own high-water mark, not the parent's (getrusage's ru_maxrss would: Linux keeps it across execve)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from _common import PEAK_RSS, peak_rss_kb  # noqa: E402


def test_a_child_reports_its_own_peak_not_its_parents():
    held = bytearray(600 * 2**20)
    for i in range(0, len(held), 4096):  # touch every page: 600 MiB resident in this process
        held[i] = 1
    del held
    assert peak_rss_kb() > 600 * 1024
    child = (
        PEAK_RSS
        + "\nimport resource\nprint(peak_rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    own, inherited = map(int, subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                                              check=True).stdout.split())  # fmt: skip
    assert own < 200 * 1024, own  # a bare interpreter
    print(
        f"child: VmHWM {own // 1024} MiB, ru_maxrss {inherited // 1024} MiB (the parent's peak, carried over)"
    )

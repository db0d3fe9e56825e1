"""How torch's OpenMP threads wait, chosen once per process before torch loads (rlhf.runtime.configure_process).

Idle OpenMP threads spin for a while before they sleep. On free cores that is what makes small ops fast; on cores
busy with other work every parallel op waits for a descheduled thread that the spinning one keeps off the CPU.
Measured on 2 cores, demo SFT (bench/NOTES.md, "Profile of the slowest stage"): quiet, 150 steps took 7.4-8.6 s
with the default spin and 10.9-11.2 s with OMP_WAIT_POLICY=PASSIVE; with two other busy processes, 100 steps took
28.4 s spinning and 8.5 s passive. So: passive only when other processes are using the cores right now. The
results are the same bit for bit either way (the policy changes how an idle thread waits, not how work is split).
"""

from __future__ import annotations

import os
import time

BUSY_CORES = 0.5  # other processes' CPU use, in cores, above which the cores count as shared
SAMPLE_SECONDS = 0.05


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cores_in_use_by_others(seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores busy during a short sleep of this process (so, other processes'), or None where /proc is missing."""
    try:
        b0, t0 = _cpu_times()
        time.sleep(seconds)
        b1, t1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return (b1 - b0) / max(t1 - t0, 1) * (os.cpu_count() or 1)


def choose_wait_policy() -> str | None:
    """Set OMP_WAIT_POLICY=PASSIVE when other processes keep the cores busy; leave it alone if the user set it.
    Returns the value it set, or None. Costs a 50 ms sample of /proc/stat."""
    if "OMP_WAIT_POLICY" in os.environ:
        return None
    busy = cores_in_use_by_others()
    if busy is not None and busy >= BUSY_CORES:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "PASSIVE"
    return None

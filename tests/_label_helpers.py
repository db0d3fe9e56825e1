"""Shared bits for the labeling-app tests: pairs files and a real `rlhf label serve` process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def pair_row(i: int, **extra) -> dict:
    row = {
        "id": f"item-{i:04d}",
        "instruction": f"Add {i} and {i + 1}.",
        "input": "",
        "prompt": f"Add {i} and {i + 1}.",
        "responses": [f"The answer is {2 * i + 1}.", f"I think it is {2 * i}."],
        "policy": {"path": "runs/demo/sft"},
        "sampling": {"temperature": 0.7},
    }
    row.update(extra)
    return row


def write_pairs(path: Path, n: int, *, rows: list[dict] | None = None, **extra) -> Path:
    rows = rows if rows is not None else [pair_row(i, **extra) for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRL_EXPERIMENTAL_SILENCE="1", PYTHONUNBUFFERED="1"
    )
    return env


def start_server(
    args: list[str], port: int, log: Path, *, timeout: float = 30.0, token: str | None = None
) -> subprocess.Popen:
    """`rlhf label serve ARGS --port PORT` as a child process; returns once /api/health answers."""
    cmd = [sys.executable, "-m", "rlhf.cli", "label", "serve", *args, "--port", str(port), "--quiet"]
    f = open(log, "ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=server_env(), stdout=f, stderr=subprocess.STDOUT)
    f.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        try:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if (
                httpx.get(f"http://127.0.0.1:{port}/api/health", headers=headers, timeout=1.0).status_code
                == 200
            ):
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"server did not answer within {timeout} s: {log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)

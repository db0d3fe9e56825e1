"""No half-written results: a write that fails (full disk, read-only location) exits 2 with one line and leaves the
earlier output as it was; a stage that cannot finish is never read as finished.

How the failures are made, since the tests may run as root (where chmod does not stop writes):
- a full disk: RLIMIT_FSIZE on the subprocess (with SIGXFSZ ignored), so every write past the limit fails with
  EFBIG ("File too large") for real, in our code and in the libraries' (safetensors, torch.save) alike; and, in
  process, os.fsync patched to raise ENOSPC;
- a read-only location: a path under a regular file (ENOTDIR), and a read-only directory: chmod 0555 when not
  root, else `chattr +i` (immutable even for root) where the filesystem supports it, else that case is skipped.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO

from rlhf.errors import UserError
from rlhf.io import atomic_write_files, atomic_write_text

QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def run_limited(args: list, max_file_bytes: int, timeout: int = 300) -> subprocess.CompletedProcess:
    """`rlhf ARGS` where no file may grow past `max_file_bytes` (a disk that fills up mid-write)."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run(
        [sys.executable, "-m", "rlhf.cli", *map(str, args)], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, preexec_fn=limit, env={**os.environ, **QUIET_ENV}, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


@contextmanager
def read_only(d: Path):
    if os.geteuid() != 0:
        d.chmod(0o555)
        try:
            yield
        finally:
            d.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i: no way to make a read-only dir here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=True)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "prefs.jsonl"
    path.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("rlhf.io.os.fsync", full)
    with pytest.raises(UserError) as e:
        atomic_write_text(path, "new\n" * 1000)
    assert (
        e.value.line()
        == f"error: {path}: cannot write (No space left on device); earlier output left as it was"
    )
    assert path.read_text() == "old\n" and leftovers(tmp_path) == []


def test_a_report_written_as_several_files_changes_none_of_them_if_one_fails(tmp_path, monkeypatch):
    """compare's report: plots, report.md/html and metrics.json are all written before any old one is replaced."""
    for name in ("a.png", "report.md", "metrics.json"):
        (tmp_path / name).write_text(f"old {name}")
    import rlhf.io

    real, calls = rlhf.io._write_temp, []

    def fail_third(path, data):
        calls.append(path.name)
        if len(calls) == 3:
            raise UserError("cannot write (No space left on device); earlier output left as it was", path)
        return real(path, data)

    monkeypatch.setattr(rlhf.io, "_write_temp", fail_third)
    with pytest.raises(UserError):
        atomic_write_files(tmp_path, {"a.png": b"new", "report.md": "new", "metrics.json": "{}"})
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {n: f"old {n}" for n in calls}
    monkeypatch.setattr(rlhf.io, "_write_temp", real)
    atomic_write_files(tmp_path, {"a.png": b"new", "report.md": "new", "metrics.json": "{}"})
    assert (tmp_path / "metrics.json").read_text() == "{}" and leftovers(tmp_path) == []


def test_full_disk_while_writing_a_data_file(tmp_path):
    out = tmp_path / "tasks.json"
    out.write_text('[{"instruction": "old", "input": "", "output": "x"}]\n')
    before = out.read_bytes()
    res = run_limited(["tasks", "--n", "400", "--out", out], max_file_bytes=4096)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        f"error: {out}: cannot write (File too large); earlier output left as it was"
    ]
    assert out.read_bytes() == before and leftovers(tmp_path) == []


def test_full_disk_while_a_stage_saves_leaves_it_unfinished_and_the_parent_intact(tiny_chain, tmp_path):
    from rlhf import checkpoint

    sft_manifest = (tiny_chain["sft"] / "rlhf_stage.json").read_bytes()
    out = tmp_path / "reward"
    args = ["reward", "--config", REPO / "configs/demo/reward.yaml", "--sft_path", tiny_chain["sft"], "--pairs_path",
            tiny_chain["prefs"], "--output_dir", out, "--quiet", "true", "--save_strategy", "no"]  # fmt: skip
    res = run_limited(args, max_file_bytes=100_000)  # the weights (about 2 MB) do not fit
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        f"error: {out}: cannot write (File too large); finished results were left as they were"
    ]
    assert not checkpoint.is_finished(out)
    with pytest.raises(UserError, match="unfinished run"):
        checkpoint.require(out, kind="reward")
    assert (tiny_chain["sft"] / "rlhf_stage.json").read_bytes() == sft_manifest


def test_an_output_path_under_a_file_is_refused(demo_base, tmp_path, capsys):
    from rlhf.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    capsys.readouterr()
    assert main(["tasks", "--n", "5", "--out", str(blocker / "tasks.json")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {blocker / 'tasks.json'}: cannot write here ({blocker} is a file, not a folder)"
    ]
    data = tmp_path / "sft.json"
    assert main(["tasks", "--n", "40", "--out", str(data)]) == 0
    capsys.readouterr()
    argv = ["sft", "--config", str(REPO / "configs/demo/sft.yaml"), "--model_name_or_path", str(demo_base),
            "--data_path", str(data), "--output_dir", str(blocker / "sft"), "--quiet", "true"]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {blocker / 'sft'}: output dir is not writable ({blocker} is a file, not a folder)"
    )
    assert blocker.read_text() == "x"


def test_a_read_only_dir_keeps_its_earlier_output(tmp_path, capsys):
    from rlhf.cli import main

    d = tmp_path / "ro"
    d.mkdir()
    out = d / "prefs.jsonl"
    out.write_text(json.dumps({"instruction": "old"}) + "\n")
    before = out.read_bytes()
    with read_only(d):
        capsys.readouterr()
        assert main(["tasks", "--n", "5", "--out", str(out)]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {out}: cannot write here ("), lines
        assert out.read_bytes() == before and leftovers(d) == []

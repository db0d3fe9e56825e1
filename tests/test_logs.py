"""rlhf.logs.read_log: the one reader of a stage's log.jsonl outside the trainers that write it."""

from __future__ import annotations

from rlhf.logs import LOG_FILE, read_log


def test_read_log_takes_a_stage_dir_or_the_file_and_skips_what_a_kill_cut(tmp_path):
    (tmp_path / LOG_FILE).write_text(
        '{"step": 1, "loss": 2.5}\n\n[1, 2]\n{"step": 2, "loss": 2.0}\n{"step": 3, "lo'
    )
    rows = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]
    assert read_log(tmp_path) == rows and read_log(tmp_path / LOG_FILE) == rows
    assert read_log(tmp_path / "missing") == []

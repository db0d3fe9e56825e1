"""RLOO rewarded by a task's gold judge (`reward_judge`), as PPO's: the reward function judges each reply as the
report does (read up to the end of turn, minus missing_eos_penalty when it never ended) against its own prompt
row, the stage trains without a reward stage, and prompts the judge cannot read are refused before anything loads."""

from __future__ import annotations

import pytest
from conftest import run_cli
from test_rloo import rloo_args, train

from rlhf import checkpoint, tasks
from rlhf.models import load_tokenizer
from rlhf.tasks.demo import make_tasks
from rloo.prompts import prompt_rows
from rloo.reward import JudgeScore


def test_judge_score_reads_each_reply_against_its_own_row(tiny_chain):
    tok = load_tokenizer(tiny_chain["sft"], padding_side="left")
    rows = [t.to_row() for t in make_tasks(3, 7, ("largest",))]
    ds, dropped = prompt_rows(rows, tok, "alpaca", 256)
    assert dropped == 0 and ds["row"] == [0, 1, 2]
    task = tasks.get("demo")
    score = JudgeScore(task, rows, tok, missing_eos_penalty=1.0)
    eos = [tok.eos_token_id]
    answers = [(rows[0]["output"], True), ("12345", True), (rows[2]["output"], False)]
    ids = [
        tok(text, add_special_tokens=False)["input_ids"] + (eos if ended else []) for text, ended in answers
    ]
    # the rows in another order than the prompts: each reply is judged against the row its `row` index names
    got = score(
        prompts=list(ds["prompt"]), completions=[a for a, _ in answers], completion_ids=ids, row=[0, 1, 2]
    )
    assert got == [task.judge(rows[0], rows[0]["output"]), 0.0, -1.0] and got[0] > 0
    swapped = score(prompts=[], completions=[], completion_ids=[ids[0]], row=[1])
    assert swapped == [task.judge(rows[1], rows[0]["output"])]
    # pads after the end of turn are not read; no penalty configured: an unfinished reply scores the judge's 0
    padded = ids[0] + [tok.pad_token_id] * 3
    assert score(prompts=[], completions=[], completion_ids=[padded], row=[0]) == got[:1]
    assert JudgeScore(task, rows, tok)(prompts=[], completions=[], completion_ids=ids[2:], row=[2]) == [0.0]


def test_rloo_trains_against_the_judge_without_a_reward_stage(tiny_chain, tmp_path):
    no_reward = tiny_chain | {"reward": tmp_path / "no-such-reward-stage"}  # reward_path is not read
    stage = train(no_reward, tmp_path / "rloo", reward_judge="demo", max_steps=2)
    assert [p.kind for p in stage.parents()] == ["sft"]
    assert checkpoint.require(stage.path, kind="rloo").metrics["episodes"] == 2 * 16
    # the judge's scores (in [0, 1]) less the missing-EOS penalty of 1
    assert -1.0 <= stage.metrics["reward"] <= 1.0


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        ("constraints", "prompt row 0 is not a constraints task prompt"),
        ("nonsense", "unknown task 'nonsense'"),
    ],
)
def test_prompts_the_judge_cannot_read_are_refused_before_loading(tiny_chain, tmp_path, judge, message):
    out = tmp_path / "rloo"
    res = run_cli(*rloo_args(tiny_chain, out, "--reward_judge", judge), check=False)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "key 'reward_judge'" in res.stderr and res.stderr.count("\n") == 1
    assert not out.exists()

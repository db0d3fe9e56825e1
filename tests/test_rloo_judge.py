"""RLOO rewarded by a task's gold judge (`reward_judge`), as PPO's: the reward function judges each reply as the
report does (read up to the end of turn, minus missing_eos_penalty when it never ended) against its own prompt
row, the stage trains without a reward stage, and prompts the judge cannot read are refused before anything loads."""

from __future__ import annotations

import pytest
from conftest import run_cli
from test_rloo import rloo_args, train

from rlhf import checkpoint, tasks
from rlhf.logs import read_log
from rlhf.models import load_tokenizer
from rlhf.tasks.demo import make_tasks
from rloo.prompts import prompt_rows
from rloo.reward import JudgeScore, prompt_groups


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
    # each logged step says how many prompts' samples tied (no signal but KL) and the gold judge's mean
    steps = [r for r in read_log(stage.path) if "judge/tied_groups" in r]
    assert len(steps) == 2
    assert all(0 <= r["judge/tied_groups"] <= 1 and 0 <= r["judge/gold"] <= 1 for r in steps)


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


# Two constraints the judge reads back from the instruction (no source data needed): at most 25 words, no commas.
TWO_CONSTRAINTS = {
    "instruction": "Name three famous painters.\n\nAnswer in at most 25 words.\nDo not use any commas in your response.",
    "input": "",
}
ONE_OF_TWO = "Monet, Rembrandt and Vermeer painted light like no one else."  # short, but a comma
BOTH = "Monet and Rembrandt and Vermeer painted light like no one else."


def test_partial_credit_is_the_share_of_constraints_met_and_the_gold_judge_stays_all_or_nothing(tiny_chain):
    tok = load_tokenizer(tiny_chain["sft"], padding_side="left")
    task = tasks.get("constraints")
    rows = [TWO_CONSTRAINTS]
    logged: dict[str, list[float]] = {}
    score = JudgeScore(task, rows, tok, missing_eos_penalty=1.0, credit="partial", num_generations=2)
    replies = [(ONE_OF_TWO, True), (BOTH, True), (BOTH, False), ("", True)]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] * ended for t, ended in replies]
    got = score(
        prompts=[], completions=[], completion_ids=ids, row=[0] * 4,
        log_metric=lambda name, value: logged.setdefault(name, []).append(value),
    )  # fmt: skip
    # a degenerate reply (unfinished, empty) meets no constraint, whatever its text would satisfy
    assert got == [0.5, 1.0, -1.0, 0.0]
    assert [task.judge(TWO_CONSTRAINTS, t, ended) for t, ended in replies] == [0.0, 1.0, 0.0, 0.0]
    # two groups of two: (0.5, 1.0) differ, (-1.0, 0.0) differ; the gold judge's mean is 1 of 4
    assert logged == {"judge/tied_groups": [0.0], "judge/gold": [0.25]}
    all_or_nothing = JudgeScore(task, rows, tok, credit="all", num_generations=2)
    logged.clear()
    same = all_or_nothing(
        prompts=[], completions=[], completion_ids=[ids[0], ids[3], ids[0], ids[1]], row=[0] * 4,
        log_metric=lambda name, value: logged.setdefault(name, []).append(value),
    )  # fmt: skip
    assert same == [0.0, 0.0, 0.0, 1.0] and logged == {"judge/tied_groups": [0.5], "judge/gold": [0.25]}


def test_prompt_groups_are_each_prompts_samples_back_to_back():
    assert prompt_groups([3, 3, 3, 3, 1, 1, 1, 1], 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # a prompt drawn twice in a row is two groups; a group cut by a process boundary is what this process holds
    assert prompt_groups([2, 2, 2, 2, 2, 2], 3) == [[0, 1, 2], [3, 4, 5]]
    assert prompt_groups([5, 5, 7, 7, 7], 4) == [[0, 1], [2, 3, 4]]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--reward_judge", "demo"), "the demo task's judge has no parts to give partial credit for"),
        ((), "judge_credit 'partial' applies only under reward_judge"),
    ],
)
def test_partial_credit_without_a_judge_with_parts_is_refused(tiny_chain, tmp_path, extra, message):
    out = tmp_path / "rloo"
    res = run_cli(*rloo_args(tiny_chain, out, *extra, "--judge_credit", "partial"), check=False)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "key 'judge_credit'" in res.stderr and res.stderr.count("\n") == 1
    assert not out.exists()


def test_an_unknown_judge_credit_is_refused_by_flag_and_in_a_config_built_in_python(tiny_chain, tmp_path):
    from rlhf.config import check_config
    from rlhf.errors import UserError
    from rloo.config import RLOOStageConfig

    res = run_cli(*rloo_args(tiny_chain, tmp_path / "rloo", "--judge_credit", "half"), check=False)
    assert res.returncode == 2 and "--judge_credit" in res.stderr and "'half'" in res.stderr, res.stderr
    cfg = RLOOStageConfig(output_dir=str(tmp_path / "rloo"))
    cfg.judge_credit = "half"
    with pytest.raises(UserError, match=r"expected one of \['all', 'partial'\], got 'half'"):
        check_config(cfg)

"""The embedded demo tasks: deterministic generators, disjoint train/eval splits, the gold judge, `rlhf tasks`."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from rlhf.data import load_instructions
from rlhf.tasks.demo import (
    ALL_KINDS,
    DEFAULT_KINDS,
    INSTRUCTIONS,
    judge,
    make_sft_rows,
    make_tasks,
    parse_task,
)


def test_same_seed_same_rows_other_seed_other_rows():
    assert make_tasks(60, seed=7, kinds=ALL_KINDS) == make_tasks(60, seed=7, kinds=ALL_KINDS)
    assert make_tasks(60, seed=7, kinds=ALL_KINDS) != make_tasks(60, seed=8, kinds=ALL_KINDS)
    a = make_sft_rows(80, seed=3, kinds=ALL_KINDS)
    assert a == make_sft_rows(80, seed=3, kinds=ALL_KINDS)
    assert a != make_sft_rows(80, seed=4, kinds=ALL_KINDS)


def test_at_least_six_kinds_each_generated_and_parsed_back():
    assert len(ALL_KINDS) >= 6 and set(DEFAULT_KINDS) <= set(ALL_KINDS)
    tasks = make_tasks(20 * len(ALL_KINDS), seed=0, kinds=ALL_KINDS, split=None)
    assert {t.kind for t in tasks} == set(ALL_KINDS)
    for t in tasks:
        assert (
            parse_task(t.instruction, t.input) == t
        )  # the judge recovers kind and gold answer from the text
        assert judge(t, t.answer) == 1.0
    assert parse_task("Write a poem about the sea.", "") is None


@pytest.mark.parametrize("seed", [0, 1])
def test_train_and_eval_splits_are_disjoint_by_problem(seed):
    train = make_tasks(1500, seed=seed, kinds=ALL_KINDS, split="train")
    evals = make_tasks(150, seed=seed + 100, kinds=ALL_KINDS, split="eval")
    assert {t.split() for t in train} == {"train"} and {t.split() for t in evals} == {"eval"}
    overlap = {t.key() for t in train} & {t.key() for t in evals}
    assert not overlap
    # The key ignores the phrasing: the same numbers under another wording are the same problem (same split).
    t = next(t for t in evals if t.kind == "largest")
    for wording in INSTRUCTIONS["largest"]:
        again = parse_task(wording, t.input)
        assert again.key() == t.key() and again.split() == "eval"
    # and the split is a property of the problem, not of the draw
    assert all(t.split() == "eval" for t in make_tasks(50, seed=seed + 200, kinds=ALL_KINDS, split="eval"))


def test_gold_judge():
    t = make_tasks(1, seed=1, kinds=("largest",))[0]
    a = t.answer
    assert judge(t, a) == 1.0
    assert judge(t, f"{a}.") == 1.0  # punctuation is free
    assert judge(t, f"Sure, the answer is {a}.") == pytest.approx(0.6)  # 4 extra words
    assert judge(t, f"Sure! It is {a}. Hope this helps!") == pytest.approx(0.4)  # 6 extra words
    assert judge(t, "filler " * 30 + a) == pytest.approx(0.2)  # the floor for a correct answer
    assert 0 < judge(t, f"Sure, the answer is {a}.") < judge(t, a)  # verbose is penalised
    wrong = next(x.strip() for x in t.input.split(",") if x.strip() != a)
    assert judge(t, wrong) == 0.0
    assert judge(t, f"{a} or {wrong}") == 0.0  # naming two candidates is not an answer
    assert judge(t, a, finished=False) == 0.0  # no EOS: unfinished
    assert judge(t.to_row(), a) == 1.0  # an Alpaca row works too
    with pytest.raises(ValueError, match="not a demo task"):
        judge({"instruction": "Write a poem.", "input": ""}, "A poem.")


def test_gold_judge_other_kinds():
    by_kind = {t.kind: t for t in make_tasks(len(ALL_KINDS), seed=2, kinds=ALL_KINDS, split=None)}
    assert judge(by_kind["reverse_word"], by_kind["reverse_word"].input) == 0.0
    yes_no = by_kind["yes_no"]
    other = "No" if yes_no.answer == "Yes" else "Yes"
    assert judge(yes_no, yes_no.answer) == 1.0 and judge(yes_no, other) == 0.0
    assert judge(yes_no, "Yes and no") == 0.0
    srt = by_kind["sort"]
    assert judge(srt, srt.answer) == 1.0
    assert judge(srt, ", ".join(reversed(srt.answer.split(", ")))) == 0.0


def test_demonstrations_mix_styles_as_configured():
    rows = make_sft_rows(1000, seed=0, verbose_share=0.6, wrong_share=0.1)
    share = {s: sum(r["style"] == s for r in rows) / len(rows) for s in ("bare", "verbose", "wrong")}
    assert share["verbose"] == pytest.approx(0.6, abs=0.05) and share["wrong"] == pytest.approx(0.1, abs=0.03)
    for r in rows:
        score = judge(r, r["output"])
        if r["style"] == "bare":
            assert score == 1.0
        elif r["style"] == "verbose":
            assert 0 < score < 1.0
        else:
            assert score == 0.0


def test_tasks_cli_writes_alpaca_json(tmp_path):
    out = tmp_path / "x.json"
    res = run_cli("tasks", "--n", "50", "--out", out)
    assert "wrote 50" in res.stdout
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(rows, list) and len(rows) == 50
    for r in rows:
        assert all(isinstance(r[k], str) for k in ("instruction", "input", "output"))
        assert r["kind"] in DEFAULT_KINDS
    assert len(load_instructions(out)) == 50  # what `rlhf sft` reads

    gold = tmp_path / "gold.json"
    run_cli("tasks", "--n", "20", "--split", "eval", "--gold", "--kinds", "add,sort", "--out", gold)
    for r in json.loads(gold.read_text(encoding="utf-8")):
        task = parse_task(r["instruction"], r["input"])
        assert task.kind in ("add", "sort") and task.split() == "eval" and r["output"] == task.answer

    res = run_cli("tasks", "--n", "5", "--kinds", "largest,nope", "--out", tmp_path / "y.json", check=False)
    assert res.returncode == 2 and res.stderr.startswith(
        "error: command line:--kinds: unknown task kind 'nope'"
    )
    assert not (tmp_path / "y.json").exists()


def test_eval_prompts_never_repeat():
    """The comparison's CIs treat prompts as independent: the pipeline's eval set never repeats a prompt."""
    evals = make_tasks(200, seed=3, kinds=("largest", "smallest"), split="eval", distinct=True)
    assert len({(t.instruction, t.input) for t in evals}) == 200
    train = make_tasks(2000, seed=3, kinds=("largest", "smallest"), split="train")
    assert len({(t.instruction, t.input) for t in train}) < 2000  # training rows may repeat a prompt


def test_tasks_cli_prompt_space_too_small_is_one_line(tmp_path):
    res = run_cli(
        "tasks", "--n", "5000", "--kinds", "largest", "--split", "eval", "--gold", "--distinct", "--out", tmp_path / "e.json",
        check=False,
    )  # fmt: skip
    assert res.returncode == 2 and res.stderr.startswith("error: command line:--n: cannot draw 5000 distinct")
    assert res.stderr.count("\n") == 1 and not (tmp_path / "e.json").exists()


def test_wrong_demonstrations_follow_the_style_mix():
    """No style is a tell for a wrong answer: with no bare demonstrations, wrong ones carry filler too."""
    rows = make_sft_rows(1000, seed=0, verbose_share=0.9, wrong_share=0.1)
    wrong = [r for r in rows if r["style"] == "wrong"]
    assert len(wrong) > 50 and not any(r["style"] == "bare" for r in rows)
    assert all(len(r["output"].split()) > 1 for r in wrong)
    mixed = [
        r for r in make_sft_rows(3000, seed=0, verbose_share=0.45, wrong_share=0.1) if r["style"] == "wrong"
    ]
    bare = sum(len(r["output"].split()) == 1 for r in mixed) / len(mixed)
    assert bare == pytest.approx(0.5, abs=0.08)  # (1 - 0.45 - 0.1) / 0.9 of the wrong ones are bare


# ------------------------------------------------------------------------------------------- the task interface


def test_the_registry_finds_the_demo_by_name_and_by_its_rows():
    from rlhf import tasks
    from rlhf.tasks.demo import DemoTask

    demo = tasks.get("demo")
    assert isinstance(demo, DemoTask) and demo.name == "demo" and "demo" in tasks.names()
    with pytest.raises(ValueError, match="unknown task 'nope'; expected one of demo"):
        tasks.get("nope")
    rows = demo.prompts(20, seed=3, split="eval")
    assert tasks.detect(rows) is demo
    assert tasks.detect(rows + [{"instruction": "Write a poem about the sea.", "input": ""}]) is None
    assert tasks.detect([]) is None


def test_demo_behind_the_interface_is_the_demo():
    """prompts() are make_tasks' rows; judge() and reference() are the demo judge and answer, row by row."""
    from rlhf import tasks

    demo = tasks.get("demo")
    rows = demo.prompts(30, seed=1, split="train", kinds=("largest", "first_word"))
    assert rows == [t.to_row() for t in make_tasks(30, 1, ("largest", "first_word"), split="train")]
    assert demo.prompts(9, seed=2) == [t.to_row() for t in make_tasks(9, 2, DEFAULT_KINDS)]
    for row in rows:
        task = parse_task(row["instruction"], row["input"])
        assert demo.reference(row) == task.answer
        for response, finished in ((task.answer, True), (task.answer + ". Hope this helps!", True),
                                   (task.answer, False), ("no idea", True)):  # fmt: skip
            assert demo.judge(row, response, finished) == judge(task, response, finished)
    with pytest.raises(ValueError, match="unknown demo task kind 'poems'"):
        demo.prompts(3, kinds=("poems",))
    with pytest.raises(ValueError, match="not a demo task"):
        demo.judge({"instruction": "Write a poem.", "input": ""}, "ok")
    assert demo.parse({"instruction": 3}) is None


def test_ppo_prompts_come_from_the_task_under_new_and_old_key_names():
    from ppo.config import PPOStageConfig
    from rlhf.errors import UserError
    from rlhf.rollout_prompts import load_prompts

    new = load_prompts(
        PPOStageConfig(task="demo", task_prompts=12, task_kinds="largest,smallest", num_eval_prompts=4)
    )
    old = load_prompts(PPOStageConfig(demo_prompts=12, demo_kinds="largest,smallest", num_eval_prompts=4))
    assert new == old and (len(new[0]), len(new[1])) == (12, 4)
    seed = PPOStageConfig().seed + 101  # what the stage has always drawn its training prompts with
    assert new[0] == [t.to_row() for t in make_tasks(12, seed, ("largest", "smallest"), split="train")]
    with pytest.raises(UserError, match="unknown task 'nope'") as e:
        load_prompts(PPOStageConfig(task="nope", task_prompts=4))
    assert e.value.line().endswith("key 'task': unknown task 'nope'; expected one of demo, constraints")
    with pytest.raises(UserError, match="key 'task_kinds': unknown demo task kind 'poems'"):
        load_prompts(PPOStageConfig(task_prompts=4, task_kinds="poems"))

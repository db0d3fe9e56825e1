"""The constraints task's prompts: instruction source, and train / pairs / eval splits disjoint in instructions,
with held-out phrasings and combinations only in eval."""

from __future__ import annotations

import json

import pytest

from rlhf.errors import UserError
from rlhf.tasks.constraints import (
    EVAL_ONLY_PAIRS,
    SHARED_DATA_ENV,
    SOURCE_ENV,
    ConstraintsTask,
    load_instructions,
    parse_item,
    split_of,
)
from rlhf.tasks.constraints_checks import HELD_OUT_PHRASING, TYPES

TOPICS = [
    "rivers",
    "volcanoes",
    "bridges",
    "poems",
    "markets",
    "planets",
    "forests",
    "engines",
    "songs",
    "maps",
]


@pytest.fixture
def source(tmp_path):
    """A source dir shaped like the shared data: Alpaca json (some rows with an input) and Self-Instruct jsonl."""
    (tmp_path / "alpaca").mkdir()
    (tmp_path / "self_instruct").mkdir()
    alpaca = [
        {"instruction": f"Describe {t} in {k} ways.", "input": "", "output": "x"}
        for t in TOPICS
        for k in range(40)
    ]
    alpaca += [{"instruction": "Summarise the text.", "input": "Some text.", "output": "x"}]
    (tmp_path / "alpaca" / "alpaca_small.json").write_text(json.dumps(alpaca))
    seeds = [
        {
            "id": f"s{i}",
            "instruction": f"Tell me a fact about {t} number {i}.",
            "instances": [{"input": "", "output": "y"}],
        }
        for i, t in enumerate(TOPICS)
    ] + [
        {"id": "s99", "instruction": "Classify this.", "instances": [{"input": "a cat", "output": "animal"}]}
    ]
    (tmp_path / "self_instruct" / "seed_tasks.jsonl").write_text("\n".join(json.dumps(r) for r in seeds))
    (tmp_path / "README.md").write_text("not data")
    (tmp_path / "prefs.jsonl").write_text(
        json.dumps({"chosen": "a", "rejected": "b"})
    )  # another dataset: skipped
    return tmp_path


def _bases(rows):
    return {parse_item(r["instruction"]).base for r in rows}


def _draw(task, sizes, seed=0):
    return {split: task.prompts(n, seed=seed, split=split) for split, n in sizes.items()}


def test_source_reading_skips_rows_with_an_input(source):
    instructions = load_instructions(source)
    assert len(instructions) == 410
    assert "Summarise the text." not in instructions and "Classify this." not in instructions
    assert "Tell me a fact about rivers number 0." in instructions
    assert load_instructions(source / "alpaca" / "alpaca_small.json") == instructions[:400]
    with pytest.raises(UserError, match="key 'instruction': expected a string"):
        load_instructions(source / "prefs.jsonl")  # named on its own, a file must hold instructions


def test_source_comes_from_the_argument_then_the_env(source, tmp_path, monkeypatch):
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.delenv(SHARED_DATA_ENV, raising=False)
    with pytest.raises(UserError, match=SOURCE_ENV):
        ConstraintsTask().prompts(2)
    monkeypatch.setenv(SHARED_DATA_ENV, str(source))
    assert len(ConstraintsTask().prompts(2)) == 2
    monkeypatch.setenv(SOURCE_ENV, str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no such file"):
        ConstraintsTask().prompts(2)
    assert ConstraintsTask(source).prompts(3, seed=1) == ConstraintsTask(str(source)).prompts(3, seed=1)


def test_splits_are_disjoint_in_instructions_and_deterministic(source):
    task = ConstraintsTask(source)
    drawn = _draw(task, {"train": 300, "pairs": 300, "eval": 60})
    bases = {split: _bases(rows) for split, rows in drawn.items()}
    assert not bases["train"] & bases["pairs"] and not bases["train"] & bases["eval"]
    assert not bases["pairs"] & bases["eval"]
    assert all(split_of(b) == split for split, bs in bases.items() for b in bs)
    assert drawn == _draw(ConstraintsTask(source), {"train": 300, "pairs": 300, "eval": 60})
    assert drawn["train"] != task.prompts(300, seed=1, split="train")
    # eval never repeats an instruction; a request beyond the split's instructions is refused
    assert len(bases["eval"]) == 60
    with pytest.raises(ValueError, match="cannot draw 5000 eval prompts"):
        task.prompts(5000, split="eval")


def test_held_out_phrasings_and_combinations_only_in_eval(source):
    task = ConstraintsTask(source)
    drawn = _draw(task, {"train": 400, "pairs": 400, "eval": 70})
    for split in ("train", "pairs"):
        items = [parse_item(r["instruction"]) for r in drawn[split]]
        assert not any(it.novel() for it in items), split
        assert all(1 <= len(it.constraints) <= 2 for it in items)
    evals = [parse_item(r["instruction"]) for r in drawn["eval"]]
    held_phrasing = [
        it for it in evals if any(c.phrasing == HELD_OUT_PHRASING[c.type] for c in it.constraints)
    ]
    triples = [it for it in evals if len(it.constraints) == 3]
    assert held_phrasing and triples and any(not it.novel() for it in evals)
    big = ConstraintsTask(source).prompts(2000, split=None, seed=3)
    assert any(
        frozenset(c.type for c in parse_item(r["instruction"]).constraints) in EVAL_ONLY_PAIRS for r in big
    )


def test_kinds_restrict_the_constraint_types(source):
    task = ConstraintsTask(source)
    rows = task.prompts(50, split="train", kinds=("no_commas", "lowercase"))
    assert {c.type for r in rows for c in parse_item(r["instruction"]).constraints} == {
        "no_commas",
        "lowercase",
    }
    assert all(r["kind"] == "+".join(c.type for c in parse_item(r["instruction"]).constraints) for r in rows)
    # only conflicting types: one constraint per prompt
    rows = task.prompts(20, split="train", kinds=("lowercase", "capitals"))
    assert all(len(parse_item(r["instruction"]).constraints) == 1 for r in rows)
    with pytest.raises(ValueError, match="unknown constraints task kind 'rhymes'"):
        task.prompts(2, kinds=("rhymes",))
    assert set(task.kinds) == set(TYPES)


def test_shared_data_gives_enough_disjoint_prompts(shared_data):
    task = ConstraintsTask(shared_data)
    drawn = _draw(task, {"train": 1000, "pairs": 600, "eval": 300})
    bases = {split: _bases(rows) for split, rows in drawn.items()}
    assert len(bases["eval"]) == 300
    assert not (
        bases["train"] & bases["pairs"] or bases["train"] & bases["eval"] or bases["pairs"] & bases["eval"]
    )
    assert sum(parse_item(r["instruction"]).novel() for r in drawn["eval"]) >= 100
    # every prompt drawn from the real instructions is read back exactly (the judge needs nothing else)
    for rows in drawn.values():
        assert all(parse_item(r["instruction"]).instruction() == r["instruction"] for r in rows)
        assert task.recognises(rows)

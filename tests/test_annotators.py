"""Simulated annotators (rlhf/annotators.py) and the pair sampler's flags: the label statistics match the
configured noise, each annotator has its own seed, and unusable pairs are dropped and counted, never written."""

from __future__ import annotations

import json

import pytest

from rlhf.annotators import NoisyAnnotator, annotate, gold_label
from rlhf.generate import Completion
from rlhf.pairs import _problem
from rlhf.tasks.demo import make_tasks


def _rows(n: int, seed: int = 0) -> list[dict]:
    """Pairs whose gold label is known: a bare correct answer vs the same answer padded with filler."""
    rows = []
    for i, t in enumerate(make_tasks(n, seed, ("largest", "smallest"), split=None)):
        rows.append(
            {
                "id": f"p{i}",
                **t.to_row(),
                "responses": [t.answer, f"Sure, the answer is {t.answer}. Hope this helps!"],
            }
        )
    return rows


def test_gold_label_prefers_the_concise_correct_answer():
    row = _rows(1)[0]
    assert gold_label(row, 0, 1) == "A" and gold_label(row, 1, 0) == "B"
    wrong = next(x for x in row["input"].split(", ") if x != row["output"])
    row["responses"] = [wrong, row["responses"][1]]
    assert gold_label(row, 0, 1) == "B"  # correct but wordy beats concise but wrong
    row["responses"] = [row["output"], row["output"] + "."]
    assert gold_label(row, 0, 1) == "tie"  # punctuation is free


def test_noisy_pool_matches_its_configured_noise():
    rows = _rows(3000)
    prefs, stats = annotate(rows, "noisy", pool_size=3, flip_rate=0.2, seed=7)
    print(stats)
    assert stats["flipped_vs_gold"] == pytest.approx(0.2, abs=0.03)
    # two independent annotators agree when both or neither flip: 0.8^2 + 0.2^2 = 0.68
    assert stats["inter_annotator_agreement"] == pytest.approx(0.68, abs=0.03)
    assert {p["annotator"] for p in prefs} == {"noisy-0", "noisy-1", "noisy-2"}
    assert stats["preferences"] == len(prefs) == 3000


def test_position_bias_and_ties():
    rows = _rows(3000)
    ann = NoisyAnnotator("n", seed=1, flip_rate=0.0, position_bias=0.3, tie_rate=0.1)
    labels = [ann.label(r, 1, 0) for r in rows]  # gold says B every time
    share = {k: labels.count(k) / len(labels) for k in ("A", "B", "tie")}
    assert share["tie"] == pytest.approx(0.1, abs=0.02)
    assert share["A"] == pytest.approx(0.3, abs=0.03)
    _, stats = annotate(rows, "noisy", pool_size=2, flip_rate=0.0, tie_rate=0.25, seed=1)
    assert stats["ties_dropped"] == pytest.approx(0.25 * len(rows), rel=0.15)
    assert stats["preferences"] + stats["ties_dropped"] == len(rows)


def test_annotators_have_their_own_seeds():
    rows = _rows(500)
    a, b, a2 = NoisyAnnotator("a", seed=1), NoisyAnnotator("b", seed=2), NoisyAnnotator("a", seed=1)
    la, lb, la2 = ([ann.label(r, 0, 1) for r in rows] for ann in (a, b, a2))
    assert la == la2 and la != lb


def test_pairs_with_an_empty_response_are_dropped_and_counted():
    rows = _rows(10)
    rows[3]["responses"][1] = ""
    rows[6]["responses"][0] = "  "
    prefs, stats = annotate(rows, "gold")
    assert stats["empty_dropped"] == 2 and stats["preferences"] == 8
    assert all(p["chosen"].strip() and p["rejected"].strip() for p in prefs)


def test_sampler_flags_identical_and_empty_responses():
    c = lambda t: Completion(t, True, 1)  # noqa: E731
    assert _problem([c("7"), c("Sure, 7.")]) is None
    assert _problem([c("7"), c("7")]) == "identical responses"
    assert _problem([c("7"), c("")]) == "empty response"


def test_annotate_cli_all_unusable_is_one_clear_error(tmp_path):
    from conftest import run_cli

    rows = _rows(3)
    for r in rows:
        r["responses"] = [r["output"], r["output"]]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = run_cli("annotate", path, "--annotator", "gold", "--out", tmp_path / "prefs.jsonl", check=False)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and str(path) in res.stderr and "ties" in res.stderr
    assert not (tmp_path / "prefs.jsonl").exists()


def test_all_pairing_compares_every_pair_of_a_rows_responses():
    from rlhf.annotators import pair_indices
    from rlhf.errors import UserError

    rows = [{"responses": ["a", "b", "c", "d"]}, {"responses": ["e", "f"]}]
    assert pair_indices(rows) == [(0, 0, 1), (0, 2, 3), (1, 0, 1)]
    assert pair_indices(rows, "all") == [(0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 1, 2), (0, 1, 3), (0, 2, 3),
                                         (1, 0, 1)]  # fmt: skip
    with pytest.raises(UserError, match="unknown pairing 'some'"):
        pair_indices(rows, "some")


def test_held_out_pairs_never_share_a_prompt_with_training_pairs():
    from rlhf.preferences import hold_out_by_prompt, prompt_key

    pairs = [{"instruction": f"q{i % 7}", "input": "", "chosen": str(i), "rejected": "x"} for i in range(40)]
    train, held = hold_out_by_prompt(pairs, 6)
    assert len(train) + len(held) == 40 and len(held) >= 6
    assert not {prompt_key(p) for p in train} & {prompt_key(p) for p in held}
    # every prompt unique: the first n_eval pairs, as before
    unique = [{"instruction": f"q{i}", "input": "", "chosen": "c", "rejected": "r"} for i in range(10)]
    assert hold_out_by_prompt(unique, 3) == (unique[3:], unique[:3])
    assert hold_out_by_prompt(unique, 0) == (unique, [])


# The constraints task's judge reads its constraints back from the instruction (no source data needed).
TWO_CONSTRAINTS = {
    "instruction": "Name three famous painters.\n\nAnswer in at most 25 words.\nDo not use any commas in your response.",
    "input": "",
}
NONE_MET = "Monet, Rembrandt and Vermeer, " + "and many more painters who worked in oils " * 4  # long, commas
ONE_MET = "Monet, Rembrandt and Vermeer painted light like no one else."  # short, but a comma
BOTH_MET = "Monet and Rembrandt and Vermeer painted light like no one else."


def _constraint_rows(n: int) -> list[dict]:
    return [{"id": f"c{i}", **TWO_CONSTRAINTS, "responses": [NONE_MET, ONE_MET, BOTH_MET]} for i in range(n)]


def test_partial_credit_decides_the_pairs_the_all_or_nothing_judge_ties():
    row = _constraint_rows(1)[0]
    assert gold_label(row, 0, 1) == "tie"  # both miss a constraint: the judge gives both 0
    assert gold_label(row, 0, 1, credit="partial") == "B"  # 0 of 2 vs 1 of 2
    # where the judge decides, partial credit agrees with it
    assert gold_label(row, 2, 1, credit="partial") == gold_label(row, 2, 1) == "A"
    row["finished"] = [True, False, True]  # a reply without EOS meets nothing, whatever its text
    assert gold_label(row, 0, 1, credit="partial") == "tie"

    rows = _constraint_rows(3)
    _, all_stats = annotate(rows, "gold", pairing="all")
    prefs, stats = annotate(rows, "gold", pairing="all", credit="partial")
    assert all_stats["preferences"] == 6 and all_stats["ties_dropped"] == 3
    assert (
        stats["preferences"] == 9 and stats["decided_by_partial_credit"] == 3 and stats["credit"] == "partial"
    )
    assert {(p["chosen"], p["rejected"]) for p in prefs} == {(ONE_MET, NONE_MET), (BOTH_MET, NONE_MET),
                                                             (BOTH_MET, ONE_MET)}  # fmt: skip
    # agreement is still measured against the gold judge's own verdicts (the pairs it decides)
    assert stats["agreement_with_gold"] == 1.0


def test_noisy_annotators_flip_partial_credit_labels_at_the_configured_rate():
    rows = _constraint_rows(2000)
    prefs, stats = annotate(
        rows, "noisy", pool_size=3, flip_rate=0.25, seed=3, pairing="all", credit="partial"
    )
    assert stats["preferences"] == 6000 and stats["decided_by_partial_credit"] == 2000
    wrong = sum((p["chosen"], p["rejected"]) in {(NONE_MET, ONE_MET), (NONE_MET, BOTH_MET), (ONE_MET, BOTH_MET)}
                for p in prefs)  # fmt: skip
    assert wrong / len(prefs) == pytest.approx(0.25, abs=0.02)
    assert stats["flipped_vs_gold"] == pytest.approx(0.25, abs=0.03)  # on the 4,000 pairs the judge decides


def test_partial_credit_is_refused_where_there_are_no_parts_to_credit(tmp_path):
    from conftest import run_cli

    from rlhf.errors import UserError

    with pytest.raises(UserError, match="partial credit applies only .* these are demo prompts"):
        annotate(_rows(3), "gold", credit="partial")
    with pytest.raises(UserError, match="unknown credit 'half'"):
        annotate(_constraint_rows(1), "gold", credit="half")
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _constraint_rows(2)))
    res = run_cli("annotate", path, "--annotator", "reward:somewhere", "--credit", "partial",
                  "--out", tmp_path / "prefs.jsonl", check=False)  # fmt: skip
    assert res.returncode == 2 and "--credit" in res.stderr and "gold and noisy" in res.stderr, res.stderr
    assert not (tmp_path / "prefs.jsonl").exists()
    res = run_cli("annotate", path, "--annotator", "gold", "--credit", "partial", "--pairing", "all",
                  "--out", tmp_path / "prefs.jsonl")  # fmt: skip
    assert "2 pairs decided by partial credit" in res.stdout, res.stdout
    assert json.loads((tmp_path / "prefs.jsonl.stats.json").read_text())["preferences"] == 6

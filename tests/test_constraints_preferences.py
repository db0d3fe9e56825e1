"""Whether each response ended with EOS travels from the pairs rows through `rlhf annotate` into the preference
rows, so the reward stage's gold agreement judges an unfinished response as the constraints judge does (0)."""

from __future__ import annotations

import json

import pytest

from reward.data import load_preferences
from rlhf.annotators import annotate, write_preferences
from rlhf.errors import UserError
from rlhf.tasks.agreement import gold_agreement
from rlhf.tasks.constraints import Item
from rlhf.tasks.constraints_checks import Constraint

ROW = {"instruction": Item("Describe the benefits of regular exercise.", (Constraint("no_commas", 0, ()),))
       .instruction(), "input": ""}  # fmt: skip
GOOD, BAD = "It strengthens the heart and lifts your mood.", "It strengthens the heart, and lifts mood."


def longer_wins(pairs):
    """gold_agreement's arguments with a stand-in reward model that scores a response by its length."""
    return pairs, [len(p["chosen"]) for p in pairs], [len(p["rejected"]) for p in pairs]


def test_preference_rows_carry_the_finished_flags(tmp_path):
    rows = [{**ROW, "id": "p0", "responses": [GOOD, BAD], "finished": [False, True]},
            {**ROW, "id": "p1", "responses": [BAD, GOOD], "finished": [True, True]}]  # fmt: skip
    prefs, _ = annotate(rows, "gold")
    # p0: the satisfying answer was cut at the length limit: both score 0, a tie, dropped
    assert [(p["id"], p["chosen"], p["chosen_finished"], p["rejected_finished"]) for p in prefs] == [
        ("p1-01", GOOD, True, True)
    ]
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({**ROW, "chosen": GOOD, "rejected": BAD, "chosen_finished": False,
                                "rejected_finished": True}) + "\n")  # fmt: skip
    (pair,) = load_preferences(path, verbose=False)
    assert pair["chosen_finished"] is False and pair["rejected_finished"] is True


def test_gold_agreement_judges_an_unfinished_response_as_unfinished():
    unfinished = {**ROW, "chosen": GOOD, "rejected": BAD, "chosen_finished": False, "rejected_finished": True}
    finished = {**ROW, "chosen": BAD + " Really.", "rejected": GOOD}
    # without the flag the cut-off answer would win by the judge and count; with it the pair ties and is left out
    gold = gold_agreement(*longer_wins([unfinished, finished]))
    assert (gold["gold_agreement"], gold["gold_pairs"]) == (0.0, 1)
    gold = gold_agreement(*longer_wins([{**unfinished, "chosen_finished": True}, finished]))
    assert (gold["gold_agreement"], gold["gold_pairs"]) == (0.5, 2)


def test_gold_agreement_per_constraint_type():
    """Each judge-separated pair counts for every constraint type its prompt holds; tied pairs for none."""
    both = {"instruction": Item("Describe the benefits of regular exercise.", (Constraint("no_commas", 0, ()),
            Constraint("lowercase", 0, ()))).instruction(), "input": ""}  # fmt: skip
    pairs = [
        {**ROW, "chosen": GOOD + " Yes.", "rejected": BAD},  # no_commas: the longer answer wins, agrees
        {**ROW, "chosen": GOOD, "rejected": BAD + " Truly."},  # no_commas: the longer loses, disagrees
        {**both, "chosen": "it helps, a lot.", "rejected": "It helps a lot."},  # both fail: a tie, left out
        {**both, "chosen": "it lifts the mood and the heart.", "rejected": "It helps."},  # both types, agrees
    ]
    assert gold_agreement(*longer_wins(pairs)) == {
        "gold_agreement": 2 / 3, "gold_pairs": 3,
        "gold_agreement.lowercase": 1.0, "gold_pairs.lowercase": 1,
        "gold_agreement.no_commas": 2 / 3, "gold_pairs.no_commas": 3,
    }  # fmt: skip
    assert gold_agreement(*longer_wins(pairs[2:3])) == {}  # the judge ties every pair


def test_bad_finished_flags_are_refused_naming_the_row(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({**ROW, "responses": [GOOD, BAD], "finished": [True]}) + "\n")
    with pytest.raises(UserError, match="key 'finished': expected one true or false per response"):
        write_preferences(pairs, tmp_path / "prefs.jsonl", annotator="gold")
    prefs = tmp_path / "bad.jsonl"
    prefs.write_text(json.dumps({**ROW, "chosen": GOOD, "rejected": BAD, "chosen_finished": "yes"}) + "\n")
    with pytest.raises(UserError, match="key 'chosen_finished': expected true or false"):
        load_preferences(prefs, verbose=False)

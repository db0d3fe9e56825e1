"""Whether each response ended with EOS travels from the pairs rows through `rlhf annotate` into the preference
rows, so the reward stage's gold agreement judges an unfinished response as the constraints judge does (0)."""

from __future__ import annotations

import json

import pytest

from reward.data import load_preferences
from reward.train import gold_agreement
from rlhf.annotators import annotate, write_preferences
from rlhf.errors import UserError
from rlhf.tasks.constraints import Item
from rlhf.tasks.constraints_checks import Constraint

ROW = {"instruction": Item("Describe the benefits of regular exercise.", (Constraint("no_commas", 0, ()),))
       .instruction(), "input": ""}  # fmt: skip
GOOD, BAD = "It strengthens the heart and lifts your mood.", "It strengthens the heart, and lifts mood."


class LongerWins:
    """A stand-in reward model: the longer response scores higher."""

    def pairwise_accuracy(self, pairs):
        return sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs) / len(pairs)


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
    assert gold_agreement(LongerWins(), [unfinished, finished]) == (0.0, 1)
    assert gold_agreement(LongerWins(), [{**unfinished, "chosen_finished": True}, finished]) == (0.5, 2)


def test_bad_finished_flags_are_refused_naming_the_row(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({**ROW, "responses": [GOOD, BAD], "finished": [True]}) + "\n")
    with pytest.raises(UserError, match="key 'finished': expected one true or false per response"):
        write_preferences(pairs, tmp_path / "prefs.jsonl", annotator="gold")
    prefs = tmp_path / "bad.jsonl"
    prefs.write_text(json.dumps({**ROW, "chosen": GOOD, "rejected": BAD, "chosen_finished": "yes"}) + "\n")
    with pytest.raises(UserError, match="key 'chosen_finished': expected true or false"):
        load_preferences(prefs, verbose=False)

"""The constraints task's gold judge: every constraint type satisfied, violated and degenerate; prompt parsing."""

from __future__ import annotations

import pytest

from rlhf import tasks
from rlhf.tasks.constraints import ConstraintsTask, Item, copies_prompt, parse_item, repeats_ngram
from rlhf.tasks.constraints_checks import PHRASINGS, TYPES, Constraint, parse_line

BASE = "Describe the benefits of regular exercise."
# Per type: its parameters, a response that satisfies it, one that violates it. Each satisfying response is a
# plausible, non-degenerate answer to BASE.
CASES = {
    "lowercase": ({}, "exercise keeps the heart strong and lifts your mood.", "Exercise keeps the heart strong."),
    "capitals": ({}, "EXERCISE KEEPS THE HEART STRONG AND LIFTS YOUR MOOD.", "EXERCISE keeps the heart strong."),
    "max_words": ({"n": 15}, "It strengthens the heart and improves sleep.", " ".join(["Exercise helps a lot"] * 2)
                  + " because it strengthens muscles, improves sleep, lifts mood and protects the heart."),
    "min_words": ({"n": 25}, "Regular exercise strengthens the heart and lungs, builds muscle and bone, improves "
                  "sleep, lifts your mood, sharpens memory, helps control weight and lowers the risk of many "
                  "chronic diseases.", "It strengthens the heart."),
    "max_sentences": ({"n": 1}, "It strengthens the heart and lifts your mood.",
                      "It strengthens the heart. It lifts your mood."),
    "include_keyword": ({"word": "quality"}, "It improves the quality of your sleep.", "It improves your sleep."),
    "exclude_keyword": ({"word": "exercise"}, "Moving every day strengthens the heart.",
                        "Exercise strengthens the heart."),
    "start_with": ({"phrase": "My answer is"}, "My answer is that it strengthens the heart.",
                   "It strengthens the heart, so my answer is yes."),
    "end_with": ({"phrase": "Hope this helps."}, "It strengthens the heart and lifts mood. Hope this helps.",
                 "Hope this helps. It strengthens the heart."),
    "no_commas": ({}, "It strengthens the heart and lifts your mood.", "It strengthens the heart, and lifts mood."),
    "bullets": ({"n": 3}, "* Stronger heart\n* Better sleep\n* Brighter mood",
                "* Stronger heart\n* Better sleep\n* Brighter mood\n* Healthier weight"),
    "quotes": ({}, '"It strengthens the heart and lifts your mood."', "It strengthens the heart."),
    "json": ({}, '```json\n{"benefits": ["stronger heart", "better sleep"]}\n```',
             'Benefits: {"benefits": ["stronger heart"]}'),
    "paragraphs": ({"n": 2}, "Exercise strengthens the heart and lungs.\n\nIt also lifts your mood and helps "
                   "you sleep.", "Exercise strengthens the heart and lungs. It also lifts your mood."),
}  # fmt: skip


def _row(*constraints: Constraint, base: str = BASE) -> dict:
    return {"instruction": Item(base, constraints).instruction(), "input": ""}


def _constraint(type_: str, phrasing: int = 0) -> Constraint:
    return Constraint(type_, phrasing, tuple(sorted(CASES[type_][0].items())))


def test_every_type_has_a_case_and_several_phrasings():
    assert len(TYPES) >= 10 and set(CASES) == set(TYPES)
    assert all(len(PHRASINGS[t]) >= 3 for t in TYPES)


@pytest.mark.parametrize("type_", TYPES)
def test_each_type_satisfied_violated_and_degenerate(type_):
    task = ConstraintsTask()
    _, good, bad = CASES[type_]
    for phrasing in range(len(PHRASINGS[type_])):
        row = _row(_constraint(type_, phrasing))
        assert task.judge(row, good) == 1.0, (type_, phrasing, good)
        assert task.judge(row, bad) == 0.0, (type_, phrasing, bad)
        assert task.check(row, good) == {type_: True} and task.check(row, bad) == {type_: False}
        # Degenerate: the satisfying response cut at the length limit; empty; the prompt itself; a repeated n-gram.
        assert task.judge(row, good, finished=False) == 0.0
        assert (
            task.judge(row, "") == 0.0 and task.judge(row, "  \n ") == 0.0 and task.judge(row, "...") == 0.0
        )
        assert task.judge(row, row["instruction"]) == 0.0
        assert (
            task.judge(row, "\n".join(row["instruction"].split("\n")[2:])) == 0.0
        )  # the constraint lines alone
        assert task.check(row, good, finished=False) == {type_: False}


@pytest.mark.parametrize("type_", TYPES)
def test_a_repeated_ngram_satisfying_the_constraint_scores_0(type_):
    """For each type, a degenerate answer built to satisfy it (repeating one n-gram) still scores 0."""
    task = ConstraintsTask()
    row = _row(_constraint(type_))
    loop = {
        "lowercase": "good good good good",
        "capitals": "GOOD GOOD GOOD GOOD",
        "max_words": "yes yes yes",
        "min_words": " ".join(["exercise is good"] * 10),
        "max_sentences": "heart heart heart heart heart.",
        "include_keyword": "quality quality quality",
        "exclude_keyword": "move move move move",
        "start_with": "My answer is " + "good " * 6,
        "end_with": "yes yes yes yes yes yes Hope this helps.",
        "no_commas": "fit fit fit fit fit",
        "bullets": "* fit\n* fit\n* fit",
        "quotes": '"fit fit fit fit"',
        "json": '{"a": "fit fit fit fit fit"}',
        "paragraphs": "fit fit fit\n\nfit fit fit",
    }[type_]
    assert repeats_ngram(loop)
    assert _constraint(type_).check(loop), (
        "the loop must satisfy the constraint for this test to mean anything"
    )
    assert task.judge(row, loop) == 0.0


def test_all_constraints_must_hold():
    task = ConstraintsTask()
    row = _row(_constraint("lowercase"), _constraint("no_commas"), _constraint("max_words"))
    assert task.judge(row, "it strengthens the heart and lifts your mood.") == 1.0
    assert task.judge(row, "it strengthens the heart, and lifts your mood.") == 0.0
    assert task.check(row, "It strengthens the heart and lifts your mood.") == {
        "lowercase": False,
        "no_commas": True,
        "max_words": True,
    }


def test_required_phrases_alone_are_a_copy_but_an_answer_around_them_is_not():
    start = Constraint("start_with", 0, (("phrase", "Sure thing"),))
    keyword = Constraint("include_keyword", 0, (("word", "quality"),))
    item = Item(BASE, (start, keyword))
    prompt = item.instruction()
    assert copies_prompt(item, prompt, "Sure thing! Quality.")
    assert not copies_prompt(item, prompt, "Sure thing: it improves the quality of your sleep.")
    assert (
        ConstraintsTask().judge({"instruction": prompt}, "Sure thing: it improves the quality of sleep.")
        == 1.0
    )


def test_an_answer_reusing_the_question_is_not_a_copy():
    item = Item("What is the capital of France?", (_constraint("no_commas"),))
    row = {"instruction": item.instruction(), "input": ""}
    assert ConstraintsTask().judge(row, "The capital of France is Paris.") == 1.0
    assert ConstraintsTask().judge(row, "What is the capital of France?") == 0.0


def test_varied_lists_are_not_repetition():
    assert not repeats_ngram("* Eat more vegetables\n* Eat more fruit\n* Eat more grains")
    assert not repeats_ngram("Exercise strengthens the heart. Exercise improves sleep. Exercise lifts mood.")
    assert repeats_ngram("I love cats. I love cats. I love cats.")
    assert repeats_ngram("Exercise is good. " + "very " * 12)


def test_text_round_trip_and_parsing():
    for type_ in TYPES:
        for i in range(len(PHRASINGS[type_])):
            c = _constraint(type_, i)
            assert parse_line(c.text()) == c
    assert parse_line("Answer in at most 1 sentences.") is None  # plural must agree
    assert parse_line("Answer in at most 1 sentence.") == Constraint("max_sentences", 0, (("n", 1),))
    item = Item("Line one.\n\nStill the instruction.", (_constraint("quotes"), _constraint("max_words")))
    assert parse_item(item.instruction()) == item
    # Not this task's: no blank line before the constraints, an unknown line among them, no constraint at all.
    assert parse_item(BASE + "\n" + _constraint("quotes").text()) is None
    assert parse_item(BASE + "\n\nBe nice.\n" + _constraint("quotes").text()) is None
    assert parse_item(BASE) is None and parse_item("\n\n" + _constraint("quotes").text()) is None


def test_registered_and_detected_but_not_confused_with_demo():
    task = tasks.get("constraints")
    assert isinstance(task, ConstraintsTask) and "constraints" in tasks.names()
    rows = [_row(_constraint("quotes")), _row(_constraint("bullets"), base="Name three rivers.")]
    assert tasks.detect(rows) is task
    assert tasks.detect([*rows, {"instruction": "Which number is the largest?", "input": "1, 2, 3"}]) is None
    assert tasks.detect([{"instruction": "Which number is the largest?", "input": "1, 2, 3"}]).name == "demo"
    with pytest.raises(ValueError, match="not a constraints task row"):
        task.judge({"instruction": BASE, "input": ""}, "anything")

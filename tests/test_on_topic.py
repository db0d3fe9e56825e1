"""compare's on-topic check: the constraints judge does not check that an answer addresses its instruction, so the
report measures it beside the judge, by a lexical proxy (rlhf.evaluation.on_topic): the share of answers sharing a
content word with the instruction without its constraints, and of answers both on topic and judged correct."""

from __future__ import annotations

import json

from rlhf import tasks
from rlhf.evaluation.compare import Run, _subset, first_prompts, response_rows, summarise
from rlhf.evaluation.on_topic import content_words, on_topic
from rlhf.evaluation.report import report_md
from rlhf.evaluation.table import comparison_rows, table_body, table_header
from rlhf.generate import Completion, SamplingParams
from rlhf.tasks.constraints import ConstraintsTask, Item
from rlhf.tasks.constraints_checks import Constraint
from tests.conftest import run_cli

PARADE = "Devise a plan for a victory parade for a sports team."
START = Constraint("start_with", 0, (("phrase", "In short"),))
KEYWORD = Constraint("include_keyword", 0, (("word", "idea"),))
ROWS = [
    {"instruction": Item(PARADE, (START,)).instruction(), "input": ""},
    {"instruction": Item("Write the new lyrics for a birthday song.", (KEYWORD,)).instruction(), "input": ""},
]


def test_generic_replies_are_off_topic_and_answers_are_on():
    # replies a judge-rewarded RLOO run gave (docs/experiments/constraints.md): they satisfy constraints, answer nothing
    for reply in ("In short, I'm ready to help.", "I'm ready to assist. What can I help you with today?",
                  "Sure thing.", "Hope this helps."):  # fmt: skip
        assert not on_topic(PARADE, reply), reply
    assert on_topic(
        PARADE, "In short: the team rides open buses through the city, then a rally at the stadium."
    )
    assert on_topic(PARADE, "Parades need a route, a stage and music.")  # "parades" matches "parade"
    assert on_topic("Compose a haiku about cats", "The cat sleeps.")  # plural "s" dropped, not "ss"
    assert content_words("business") == {"busin"}
    # instruction verbs and function words are no topic: "plan" is, "devise" and "for" are not
    assert content_words(PARADE) == {"plan", "victo", "parad", "sport", "team"}
    assert "for" not in content_words(PARADE) and "write" not in content_words("Write a poem")


def test_a_topic_without_content_words_tells_nothing():
    assert on_topic(None, "anything") and on_topic("Write one for me.", "anything")


def test_the_topic_is_the_instruction_without_its_constraints():
    task = ConstraintsTask()
    assert task.topic(ROWS[0]) == PARADE
    # the constraint's keyword is not the topic: "idea" alone does not make an answer about the song
    assert not on_topic(task.topic(ROWS[1]), "What an idea.")
    assert on_topic(task.topic(ROWS[1]), "An idea: happy birthday, dear friend, the lyrics go on.")
    assert task.topic({**ROWS[1], "input": "to the tune of Happy Birthday"}).endswith(
        "\nto the tune of Happy Birthday"
    )
    demo = tasks.get("demo")
    assert demo.topic(demo.prompts(1)[0]) is None


def _run(answers: list[list[str]]) -> Run:
    task = ConstraintsTask()
    samples = [[Completion(text, True, len(text.split())) for text in s] for s in answers]
    gold = [[task.judge(r, c.text) for c in s] for r, s in zip(ROWS, samples)]
    topic = [[on_topic(task.topic(r), c.text) for c in s] for r, s in zip(ROWS, samples)]
    return Run(samples, gold=gold, on_topic=topic)


def test_summarise_counts_answers_on_topic_and_correct_ones_among_them():
    run = _run([["In short, I'm ready to help.", "In short: buses, a rally and the team on stage."],
                ["An idea for the birthday song: sing it twice.", "What an idea."]])  # fmt: skip
    assert run.gold == [[1.0, 1.0], [1.0, 1.0]]  # the judge is satisfied by all four
    m = summarise("rloo", run, None, "_sampled")
    assert m["rloo.gold_accuracy_sampled"] == 1.0
    assert m["rloo.on_topic_sampled"] == 0.5 and m["rloo.gold_accuracy_on_topic_sampled"] == 0.5
    # cut and picked runs keep their on-topic flags; responses.jsonl carries them
    assert first_prompts(run, 1).on_topic == [[False, True]]
    assert _subset(run, [[1], [0]]).on_topic == [[True], [True]]
    rows = response_rows("rloo", "runs/x/rloo", ROWS, run, "sampled", SamplingParams(0.7), ConstraintsTask())
    assert [r["on_topic"] for r in rows] == [False, True, True, False]
    # a run without topics (the demo task, or no task) reports none
    assert "rloo.on_topic" not in summarise("rloo", Run(run.samples, gold=run.gold), None)


def test_the_table_has_an_on_topic_column_only_when_measured():
    metrics = {"checkpoints": {"sft": "runs/x/sft", "rloo": "runs/x/rloo"}, "baseline": "sft", "num_prompts": 2,
               "sft.on_topic": 0.86, "rloo.on_topic": 0.705, "rloo.gold_winrate_vs_sft": 0.525,
               "rloo.gold_winrate_vs_sft_ci_low": 0.5, "rloo.gold_winrate_vs_sft_ci_high": 0.55}  # fmt: skip
    rows = comparison_rows(metrics, ["sft", "rloo"], "sft", {}, "gold")
    header = table_header(rows)
    assert "on topic, greedy" in header
    body = table_body(rows)
    assert [cells[header.index("on topic, greedy")] for cells in body] == ["86%", "70%"]
    assert all(len(cells) == len(header) for cells in body)
    md = report_md({**metrics, "comparison": rows}, {}, [], ["sft", "rloo"])
    assert "| mean length (words) | on topic, greedy | wall time |" in md and "| 70% |" in md
    del metrics["sft.on_topic"], metrics["rloo.on_topic"]
    rows = comparison_rows(metrics, ["sft", "rloo"], "sft", {}, "gold")
    assert "on topic, greedy" not in table_header(rows)
    assert all(len(cells) == len(table_header(rows)) for cells in table_body(rows))


def test_compare_reports_on_topic_for_constraints_prompts(tiny_chain, tmp_path):
    """End to end on the tiny demo model, whatever it answers: the metrics, the rows of
    responses.jsonl and the report's column."""
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(ROWS))
    report = tmp_path / "report"
    run_cli("compare", tiny_chain["sft"], "--prompts", prompts, "--out", report, "--num-samples", "1",
            "--max-new-tokens", "8", "--sweep-prompts", "0", "--overopt-prompts", "0")  # fmt: skip
    metrics = json.loads((report / "metrics.json").read_text())
    rows = [json.loads(x) for x in (report / "responses.jsonl").read_text().splitlines()]
    task = ConstraintsTask()
    for mode, suffix in (("greedy", ""), ("sampled", "_sampled")):
        flags = [r["on_topic"] for r in rows if r["setting"] == mode]
        assert flags == [on_topic(task.topic(r), r["response"]) for r in rows if r["setting"] == mode]
        assert metrics[f"sft.on_topic{suffix}"] == sum(flags) / len(flags)
        assert metrics[f"sft.gold_accuracy_on_topic{suffix}"] <= metrics[f"sft.gold_accuracy{suffix}"]
    assert "on topic, greedy" in (report / "report.md").read_text()

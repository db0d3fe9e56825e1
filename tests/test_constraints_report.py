"""Per-constraint-type satisfaction rates in compare's report, through the task interface's optional `breakdown`
hook: the rates (greedy and sampled, Best-of-N's picks included), their metrics keys and the report's table."""

from __future__ import annotations

from rlhf import tasks
from rlhf.evaluation.compare import Run, _subset, breakdown_metrics, part_rates
from rlhf.evaluation.report import report_html, report_md
from rlhf.evaluation.table import breakdown_table
from rlhf.generate import Completion
from rlhf.tasks.constraints import ConstraintsTask, Item
from rlhf.tasks.constraints_checks import Constraint

BASE = "Describe the benefits of regular exercise."
LOWER = Constraint("lowercase", 0, ())
NO_COMMAS = Constraint("no_commas", 0, ())
ROWS = [
    {"instruction": Item(BASE, (LOWER, NO_COMMAS)).instruction(), "input": ""},
    {"instruction": Item(BASE, (NO_COMMAS,)).instruction(), "input": ""},
]


def _run(task, answers: list[list[tuple[str, bool]]]) -> Run:
    samples = [[Completion(text, fin, len(text.split())) for text, fin in s] for s in answers]
    parts = [[task.breakdown(r, c.text, c.finished) for c in s] for r, s in zip(ROWS, samples)]
    return Run(samples, parts=parts)


def test_only_a_task_whose_judge_has_parts_breaks_it_down():
    task = ConstraintsTask()
    answer = "exercise keeps the heart strong, and lifts your mood."
    assert task.breakdown_metric == "constraint_rate"
    assert (
        task.breakdown(ROWS[0], answer)
        == task.check(ROWS[0], answer)
        == {"lowercase": True, "no_commas": False}
    )
    assert task.breakdown(ROWS[0], answer, finished=False) == {"lowercase": False, "no_commas": False}
    demo = tasks.get("demo")
    assert demo.breakdown_metric == "" and demo.breakdown(demo.prompts(1)[0], "7") is None


def test_rates_per_type_over_the_answers_to_prompts_that_have_it():
    task = ConstraintsTask()
    greedy = _run(task, [[("exercise keeps the heart strong and lifts your mood.", True)],
                         [("It keeps the heart strong, and lifts mood.", True)]])  # fmt: skip
    sampled = _run(task, [[("Exercise keeps the heart strong.", True), ("exercise, it helps the heart.", True)],
                          [("It keeps the heart strong.", True), ("It keeps the heart strong.", False)]])  # fmt: skip
    assert part_rates(greedy.parts) == {"lowercase": 1.0, "no_commas": 0.5}
    # sampled: lowercase 1 of 2 answers; no commas 1 of 2 on prompt 0, 1 of 2 on prompt 1 (the unfinished one fails)
    assert part_rates(sampled.parts) == {"lowercase": 0.5, "no_commas": 0.5}
    m = breakdown_metrics(task, "ppo", {"greedy": greedy, "sampled": sampled})
    assert m == {"ppo.constraint_rate.lowercase": 1.0, "ppo.constraint_rate.no_commas": 0.5,
                 "ppo.constraint_rate_sampled.lowercase": 0.5, "ppo.constraint_rate_sampled.no_commas": 0.5}  # fmt: skip
    # Best-of-N's picks keep their parts
    picked = _subset(sampled, [[1], [0]])
    assert part_rates(picked.parts) == {"lowercase": 1.0, "no_commas": 0.5}


def test_the_report_shows_the_per_type_table():
    metrics = {
        "num_prompts": 2,
        "checkpoints": {"sft": "runs/x/sft", "ppo": "runs/x/ppo"},
        "baseline": "sft",
        "breakdown": {"metric": "constraint_rate", "label": "constraint type", "prompts": {"lowercase": 1,
                                                                                           "no_commas": 2}},
        "sft.constraint_rate.lowercase": 0.25, "sft.constraint_rate.no_commas": 0.5,
        "ppo.constraint_rate.lowercase": 1.0, "ppo.constraint_rate.no_commas": 0.75,
        "ppo.constraint_rate_sampled.no_commas": 0.6,
    }  # fmt: skip
    title, header, rows = breakdown_table(metrics, ["sft", "ppo"])
    assert title == "Per constraint type: share of answers satisfying it"
    assert header == [
        "constraint type",
        "prompts",
        "SFT, greedy",
        "PPO, greedy",
        "SFT, sampled",
        "PPO, sampled",
    ]
    assert rows == [["lowercase", "1", "25%", "100%", "—", "—"], ["no_commas", "2", "50%", "75%", "—", "60%"]]
    html = report_html(metrics, {}, [], ["sft", "ppo"])
    assert '<table id="breakdown">' in html and "<td>no_commas</td><td class=num>2</td>" in html
    assert "| no_commas | 2 | 50% | 75% | — | 60% |" in report_md(metrics, {}, [], ["sft", "ppo"])
    # a task without parts: no table
    del metrics["breakdown"]
    assert breakdown_table(metrics, ["sft", "ppo"]) is None and 'id="breakdown"' not in report_html(
        metrics, {}, [], ["sft", "ppo"]
    )

"""Simulated annotators in the AlpacaFarm manner: `gold`, a pool of `noisy` ones, or a trained reward model.

Each annotator looks at a prompt and two responses (A, B) and returns "A", "B" or "tie".
- gold: the gold judge of the task the prompts come from (`rlhf.tasks`; higher gold score wins, equal scores tie).
- noisy: gold, then per annotator (own seed) a tie with prob `tie_rate`, "A" regardless with prob `position_bias`,
  and a flipped label with prob `flip_rate`. A pool of several gives measurable inter-annotator agreement.
- reward:CKPT: a trained reward model's scores (ties when they differ by less than `tie_margin`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rlhf import tasks
from rlhf.argparse_utils import ArgumentParser
from rlhf.data import read_records
from rlhf.errors import UserError, exit_on_user_error
from rlhf.io import atomic_write_json, atomic_write_jsonl
from rlhf.judge_rewards import CREDITS, credited_score
from rlhf.paths import refuse_overlap
from rlhf.tasks import Task


def gold_label(row: dict, a: int, b: int, task: Task | None = None, credit: str = "all") -> str:
    """The gold judge's label for responses a and b of `row`, by `task` (default: the task that recognises it);
    `credit="partial"`: by the share of the row's parts each response meets (see the module doc)."""
    task = task or tasks.detect([row])
    if task is None:
        raise UserError(
            f"the gold annotator labels only prompts of a task with a gold judge ({', '.join(tasks.names())})",
            row.get("_path", "pairs"),
            row.get("_row"),
        )
    fin = row.get("finished") or [True] * len(row["responses"])
    sa = credited_score(task, row, row["responses"][a], fin[a], credit)
    sb = credited_score(task, row, row["responses"][b], fin[b], credit)
    return "tie" if sa == sb else ("A" if sa > sb else "B")


@dataclass
class NoisyAnnotator:
    name: str
    seed: int
    flip_rate: float = 0.2
    position_bias: float = 0.0
    tie_rate: float = 0.0
    task: Task | None = (
        None  # whose gold judge the noise is applied to (default: the one recognising each row)
    )
    credit: str = "all"  # what the judge compares: its score, or the share of the row's parts met

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def label(self, row: dict, a: int, b: int) -> str:
        gold = gold_label(row, a, b, self.task, self.credit)
        if gold == "tie":
            return "tie"
        u = self.rng.random()
        if u < self.tie_rate:
            return "tie"
        if u < self.tie_rate + self.position_bias:
            return "A"
        if self.rng.random() < self.flip_rate:
            return "B" if gold == "A" else "A"
        return gold


class RewardModelAnnotator:
    def __init__(self, ckpt: str, tie_margin: float = 0.0):
        from rlhf.evaluation.scoring import RewardScorer

        self.name = f"reward:{ckpt}"
        self.scorer = RewardScorer.from_stage(ckpt)
        self.tie_margin = tie_margin

    def label_all(self, rows: list[dict], pairs_idx: list[tuple[int, int, int]]) -> list[str]:
        prompts, responses = [], []
        for r, a, b in pairs_idx:
            prompts += [rows[r]] * 2  # the row: its `messages`, when a conversation, are the chat prompt
            responses += [rows[r]["responses"][a], rows[r]["responses"][b]]
        scores = self.scorer.score(prompts, responses)
        out = []
        for i in range(0, len(scores), 2):
            d = scores[i] - scores[i + 1]
            out.append("tie" if abs(d) <= self.tie_margin else ("A" if d > 0 else "B"))
        return out


def _validate_pairs(rows: list[dict], path) -> None:
    for row in rows:
        where = row.get("_row")
        resp = row.get("responses")
        if not isinstance(resp, list) or len(resp) < 2 or not all(isinstance(x, str) for x in resp):
            raise UserError("key 'responses': expected a list of at least 2 strings", path, where)
        if not isinstance(row.get("instruction"), str):
            raise UserError("key 'instruction': expected a string", path, where)
        fin = row.get("finished")
        if fin is not None and (
            not isinstance(fin, list) or len(fin) != len(resp) or not all(isinstance(x, bool) for x in fin)
        ):
            raise UserError("key 'finished': expected one true or false per response", path, where)
        row["_path"] = str(path)


PAIRINGS = ("disjoint", "all")


def pair_indices(rows: list[dict], pairing: str = "disjoint") -> list[tuple[int, int, int]]:
    """Which of each row's responses are compared. disjoint: consecutive pairs (row, 0, 1), (row, 2, 3), ...;
    all: every pair of them (n responses -> n(n-1)/2 comparisons, as InstructGPT used all pairs of a ranking).
    With a strict judge most pairs of weak samples tie; all pairs find more decisive ones without looking at
    the labels first."""
    if pairing == "all":
        return [(r, i, j) for r, row in enumerate(rows) for i in range(len(row["responses"]))
                for j in range(i + 1, len(row["responses"]))]  # fmt: skip
    if pairing != "disjoint":
        raise UserError(f"unknown pairing {pairing!r}; expected one of {', '.join(PAIRINGS)}", "command line",
                        "--pairing")  # fmt: skip
    return [(r, i, i + 1) for r, row in enumerate(rows) for i in range(0, len(row["responses"]) - 1, 2)]


def check_credit(credit: str, annotator: str, task: Task | None, where: str, key: str) -> None:
    """Refuse, naming `key` in `where`, a credit that is not one of CREDITS, or partial credit where it would be
    ignored or has nothing to count: an annotator other than gold or noisy, or a task whose judge has no parts."""
    if credit not in CREDITS:
        raise UserError(f"unknown credit {credit!r}; expected one of {', '.join(CREDITS)}", where, key)
    if credit == "partial" and (annotator not in ("gold", "noisy") or not (task and task.breakdown_metric)):
        raise UserError(
            "partial credit applies only to the gold and noisy annotators on a task whose judge has parts "
            f"(the constraints task){'' if task is None else f'; these are {task.name} prompts'}",
            where,
            key,
        )


def annotate(
    rows: list[dict],
    annotator: str,
    *,
    pool_size: int = 3,
    flip_rate: float = 0.2,
    position_bias: float = 0.0,
    tie_rate: float = 0.0,
    seed: int = 0,
    pairing: str = "disjoint",
    credit: str = "all",
) -> tuple[list[dict], dict]:
    """Label every pair (`pairing`: which responses of a row are paired, see pair_indices; `credit`: what the gold
    and noisy annotators compare, see the module doc); returns (preference rows without ties, stats). The stats'
    agreement with gold is always against the gold judge's own score, the one the report counts."""
    idx = pair_indices(rows, pairing)
    task = tasks.detect(rows)  # None here: gold_label names the first row no task recognises
    check_credit(credit, annotator, task, "command line", "--credit")
    gold = (
        [gold_label(rows[r], a, b, task) for r, a, b in idx] if not annotator.startswith("reward:") else None
    )
    credited = gold if credit == "all" or gold is None else [gold_label(rows[r], a, b, task, credit)
                                                              for r, a, b in idx]  # fmt: skip
    pool_labels: dict[str, list[str]] = {}
    if annotator == "gold":
        labels, names = credited, ["gold"] * len(idx)
    elif annotator == "noisy":
        pool = [
            NoisyAnnotator(f"noisy-{k}", seed * 1000 + k, flip_rate, position_bias, tie_rate, task, credit)
            for k in range(pool_size)
        ]
        # Every annotator labels every pair (cheap: it is simulated) so agreement can be measured; each pair's
        # label in the output comes from one annotator, round-robin.
        pool_labels = {ann.name: [ann.label(rows[r], a, b) for r, a, b in idx] for ann in pool}
        names = [pool[i % pool_size].name for i in range(len(idx))]
        labels = [pool_labels[n][i] for i, n in enumerate(names)]
    elif annotator.startswith("reward:"):
        rm = RewardModelAnnotator(annotator.split(":", 1)[1])
        labels, names = rm.label_all(rows, idx), [rm.name] * len(idx)
        try:
            gold = [gold_label(rows[r], a, b, task) for r, a, b in idx]
        except UserError:
            gold = None
    else:
        raise UserError(
            f"unknown annotator {annotator!r}; expected gold, noisy or reward:CKPT",
            "command line",
            "--annotator",
        )
    prefs, ties, empty = [], 0, 0
    for (r, a, b), lab, name in zip(idx, labels, names):
        row = rows[r]
        if not row["responses"][a].strip() or not row["responses"][b].strip():
            empty += 1  # the preference readers refuse empty responses (nothing to learn a reward for)
            continue
        if lab == "tie":
            ties += 1
            continue
        win, lose = (a, b) if lab == "A" else (b, a)
        prefs.append(
            {
                "id": f"{row.get('id', r)}-{a}{b}",
                "instruction": row["instruction"],
                "input": row.get("input", ""),
                "prompt": row.get("prompt", row["instruction"]),
                "chosen": row["responses"][win],
                "rejected": row["responses"][lose],
                "annotator": name,
                # whether each response ended with EOS (pairs rows record it): the gold judge needs it
                **(
                    {"chosen_finished": row["finished"][win], "rejected_finished": row["finished"][lose]}
                    if row.get("finished")
                    else {}
                ),
                **({"messages": row["messages"]} if row.get("messages") else {}),  # a conversation's prompt
            }
        )
    stats: dict = {
        "pairs": len(idx),
        "ties_dropped": ties,
        "empty_dropped": empty,
        "preferences": len(prefs),
        "labels": dict(Counter(labels)),
        "credit": credit,
    }
    if credit != "all" and gold is not None:  # the pairs partial credit decides that the gold judge ties
        stats["decided_by_partial_credit"] = sum(g == "tie" != c for g, c in zip(gold, credited))
    if gold is not None:
        decided = [(lab, g) for lab, g in zip(labels, gold) if lab != "tie" and g != "tie"]
        stats["agreement_with_gold"] = sum(lab == g for lab, g in decided) / max(1, len(decided))
        stats["flipped_vs_gold"] = sum(lab != g for lab, g in decided) / max(1, len(decided))
    if pool_labels:
        names_ = list(pool_labels)
        agree = [
            sum(x == y for x, y in zip(pool_labels[n1], pool_labels[n2])) / max(1, len(idx))
            for i, n1 in enumerate(names_)
            for n2 in names_[i + 1 :]
        ]
        stats["inter_annotator_agreement"] = sum(agree) / max(1, len(agree))
    return prefs, stats


@exit_on_user_error
def cli(argv=None, prog="rlhf annotate") -> int:
    p = ArgumentParser(prog=prog, description="Label sampled pairs with simulated annotators.")
    p.add_argument("pairs", help="pairs.jsonl from `rlhf pairs`")
    p.add_argument("--annotator", default="noisy", help="gold | noisy | reward:CKPT")
    p.add_argument("--pool-size", type=int, default=3, help="noisy: number of simulated annotators")
    p.add_argument("--flip-rate", type=float, default=0.2, help="noisy: probability a label is flipped")
    p.add_argument(
        "--position-bias", type=float, default=0.0, help="noisy: probability of picking A regardless"
    )
    p.add_argument("--tie-rate", type=float, default=0.0, help="noisy: probability of answering tie")
    p.add_argument(
        "--pairing", choices=PAIRINGS, default="disjoint",
        help="disjoint: responses 0-1, 2-3, ... of each row; all: every pair of them",
    )  # fmt: skip
    p.add_argument(
        "--credit", choices=CREDITS, default="all",
        help="gold, noisy: what the judge compares: all = its score; partial = the share of the prompt's "
        "constraints each reply meets (decides pairs the all-or-nothing judge ties)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    stats = write_preferences(
        a.pairs,
        a.out,
        annotator=a.annotator,
        pool_size=a.pool_size,
        flip_rate=a.flip_rate,
        position_bias=a.position_bias,
        tie_rate=a.tie_rate,
        seed=a.seed,
        pairing=a.pairing,
        credit=a.credit,
    )
    print(
        f"annotate: {stats['preferences']} preferences -> {a.out}; {stats['ties_dropped']} ties dropped"
        + (
            f", {stats['empty_dropped']} pairs with an empty response dropped"
            if stats["empty_dropped"]
            else ""
        )
    )
    if "decided_by_partial_credit" in stats:
        print(
            f"annotate: {stats['decided_by_partial_credit']} pairs decided by partial credit that the judge ties"
        )
    for key in ("agreement_with_gold", "inter_annotator_agreement"):
        if key in stats:
            print(f"annotate: {key.replace('_', ' ')}: {stats[key]:.3f}")
    return 0


def write_preferences(
    pairs: str | Path,
    out: str | Path,
    *,
    annotator: str = "noisy",
    pool_size: int = 3,
    flip_rate: float = 0.2,
    position_bias: float = 0.0,
    tie_rate: float = 0.0,
    seed: int = 0,
    pairing: str = "disjoint",
    credit: str = "all",
) -> dict:
    """Label the pairs file `pairs` (from `rlhf pairs`) and write the preferences to `out` (jsonl), their stats to
    `out`.stats.json; returns the stats."""
    ckpt = annotator.split(":", 1)[1] if annotator.startswith("reward:") else None
    refuse_overlap(
        {"PAIRS": pairs, "--annotator": ckpt}, {"--out": out, "--out (.stats.json)": f"{out}.stats.json"}
    )
    for name, value in (("flip_rate", flip_rate), ("position_bias", position_bias), ("tie_rate", tie_rate)):
        if not 0 <= value <= 1:
            raise UserError("expected a probability in [0, 1]", "command line", f"--{name.replace('_', '-')}")
    if pairing not in PAIRINGS:
        raise UserError(f"unknown pairing {pairing!r}; expected one of {', '.join(PAIRINGS)}", "command line",
                        "--pairing")  # fmt: skip
    rows = read_records(pairs)
    _validate_pairs(rows, pairs)
    prefs, stats = annotate(
        rows,
        annotator,
        pool_size=pool_size,
        flip_rate=flip_rate,
        position_bias=position_bias,
        tie_rate=tie_rate,
        seed=seed,
        pairing=pairing,
        credit=credit,
    )
    if not prefs:
        raise UserError(
            f"all {stats['pairs']} pairs were ties or had an empty response: no preference to learn from "
            "(sample more prompts, or at a higher temperature)",
            pairs,
        )
    atomic_write_jsonl(out, prefs)
    atomic_write_json(str(out) + ".stats.json", stats)  # agreement figures, for reports and tests
    return stats

"""Reward `label_aggregation: borda`: each prompt's pairwise labels ordered by the prompt's net wins (a Borda
count), so a noisy label outvoted by the prompt's other labels is flipped; held-out pairs keep their labels."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from rlhf.errors import UserError
from rlhf.label_aggregation import aggregate, borda


def pair(prompt, chosen, rejected, **extra):
    return {"instruction": prompt, "input": "", "chosen": chosen, "rejected": rejected, **extra}


def labelled(prompt, order, noisy=()):
    """All pairs of `order` (best first), labelled by it, except the pairs in `noisy` (labelled the other way)."""
    out = []
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            win, lose = (b, a) if (a, b) in noisy else (a, b)
            out.append(pair(prompt, win, lose, chosen_finished=win != "d", rejected_finished=lose != "d"))
    return out


def test_a_label_its_prompt_outvotes_is_flipped_and_equal_scores_are_dropped():
    # true order a > b > c > d; the a-d label is flipped: net wins a +1, b +1, c -1, d -1
    pairs = labelled("p", "abcd", noisy={("a", "d")})
    out, counts = borda(pairs)
    assert [(p["chosen"], p["rejected"]) for p in out] == [("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")]
    assert counts == {"kept": 3, "flipped": 1, "dropped": 2}  # a-b and c-d score the same
    # a flipped pair carries its per-side fields along: d is the unfinished answer
    (flipped,) = [p for p in out if p["chosen"] == "a" and p["rejected"] == "d"]
    assert flipped["chosen_finished"] is True and flipped["rejected_finished"] is False
    assert all(p["chosen"] < p["rejected"] for p in out)  # every kept pair now agrees with the true order


def test_prompts_are_counted_apart_and_one_pair_per_prompt_is_unchanged():
    # "x" wins everything in prompt p and loses everything in prompt q: the prompts must not share a score
    pairs = [
        pair("p", "x", "y"),
        pair("p", "x", "z"),
        pair("q", "y", "x"),
        pair("q", "z", "x"),
        pair("r", "u", "v"),
    ]
    out, counts = borda(pairs)
    assert out == pairs and counts == {"kept": 5, "flipped": 0, "dropped": 0}
    assert aggregate(pairs, "none") == (pairs, {})


def _denoising(levels: list[int], prompts: int = 300, flip: float = 0.25) -> tuple[float, float, int]:
    """(raw label accuracy, Borda-ordered accuracy, pairs kept) for prompts whose answers have quality `levels`,
    every pair of different quality labelled with `flip` of the labels flipped (equal ones are ties, unlabelled)."""
    import random

    rng = random.Random(0)
    raw = right = kept = labels = 0
    for k in range(prompts):
        answers = [f"{k}-{i}" for i in range(len(levels))]
        quality = dict(zip(answers, levels))
        pairs = []
        for i, a in enumerate(answers):
            for b in answers[i + 1 :]:
                if quality[a] != quality[b]:
                    win, lose = (a, b) if quality[a] > quality[b] else (b, a)
                    pairs.append(pair(str(k), *((lose, win) if rng.random() < flip else (win, lose))))
        labels += len(pairs)
        raw += sum(quality[p["chosen"]] > quality[p["rejected"]] for p in pairs)
        out, _ = borda(pairs)
        right += sum(quality[p["chosen"]] > quality[p["rejected"]] for p in out)
        kept += len(out)
    return raw / labels, right / kept, kept / labels


def test_borda_denoises_simulated_labels_of_all_pairs():
    """With 6 answers a prompt and 25% of labels flipped, Borda order agrees with the truth more often than the raw
    labels do: a little when the 6 are totally ordered (neighbours are hard to tell apart), much more when they
    are good or bad as under the constraints task's all-or-nothing judge (3 and 3 here, 9 decisive pairs)."""
    raw, agg, kept = _denoising([5, 4, 3, 2, 1, 0])
    assert raw == pytest.approx(0.75, abs=0.02) and agg > raw + 0.03 and kept > 0.75
    raw, agg, kept = _denoising([1, 1, 1, 0, 0, 0])
    assert raw == pytest.approx(0.75, abs=0.02) and agg > 0.9 and kept > 0.75


def test_the_reward_stage_aggregates_training_pairs_only(tmp_path, tiny_chain):
    import reward
    from rlhf.config import build_config

    # 24 prompts x 4 answers, all 6 pairs each, one label per prompt flipped
    rows = [p for k in range(24) for p in labelled(f"Which is largest: {k}, {k + 1}?", [f"{k + 1}", f"{k}", f"-{k}", "x"],
                                                   noisy={(f"{k + 1}", "x")})]  # fmt: skip
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = {}
    for how in ("none", "borda"):
        stage = reward.run(build_config(reward.RewardStageConfig, {
            "config": REPO / "configs/demo/reward.yaml", "sft_path": str(tiny_chain["sft"]),
            "pairs_path": str(prefs), "output_dir": str(tmp_path / how), "eval_fraction": 0.25,
            "label_aggregation": how, "num_train_epochs": 1, "quiet": True, "save_strategy": "no"}))  # fmt: skip
        metrics[how] = stage.metrics
    # the same 36 held-out pairs (6 prompts, labels as given); the training side flipped 1 and dropped 2 a prompt
    assert metrics["none"]["eval_pairs"] == metrics["borda"]["eval_pairs"] == 36
    assert metrics["none"]["train_pairs"] == 108 and metrics["borda"]["train_pairs"] == 72
    assert {k: v for k, v in metrics["borda"].items() if k.startswith("label_aggregation_")} == {
        "label_aggregation_kept": 54,
        "label_aggregation_flipped": 18,
        "label_aggregation_dropped": 36,
    }
    assert not any(k.startswith("label_aggregation_") for k in metrics["none"])


def test_an_unknown_aggregation_is_refused_naming_the_key():
    import reward
    from rlhf.config import build_config

    with pytest.raises(UserError, match="label_aggregation"):
        build_config(reward.RewardStageConfig, {"config": REPO / "configs/demo/reward.yaml",
                                                "label_aggregation": "majority"})  # fmt: skip

"""The held-out pairs of the reward and DPO stages: each stage writes the pairs it scored (heldout_pairs.jsonl) so a
later run can be scored on exactly them, and a held-out file given beside the pairs never shares a prompt with the
training pairs (as the stage's own split guarantees), so adding pairs to a pairs file keeps the comparison fair."""

from __future__ import annotations

import json
import re

import pytest
from _faults import write_prefs
from conftest import REPO

from rlhf.errors import UserError
from rlhf.preferences import HELD_OUT_FILE, load_preferences, prompt_key, stage_pairs

REWARD_YAML = REPO / "configs" / "demo" / "reward.yaml"


def reward_config(**values):
    import reward
    from rlhf.config import build_config

    return build_config(reward.RewardStageConfig, {"config": REWARD_YAML, **values})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_training_pairs_of_held_out_prompts_are_left_out_and_counted(tmp_path, capsys):
    pair = lambda i, k: {"instruction": f"q{i}", "chosen": f"good {k}", "rejected": f"bad {k}"}  # noqa: E731
    train = write_jsonl(tmp_path / "pairs.jsonl", [pair(i, k) for i in range(10) for k in range(2)])
    # q3's held-out pair is new; q7's (k=0) is in both files
    held = write_jsonl(tmp_path / "held.jsonl", [pair(3, 9), pair(7, 0)])
    cfg = reward_config(sft_path="unused", pairs_path=str(train), eval_pairs_path=str(held))
    pairs, held_out, left_out = stage_pairs(cfg)
    assert left_out == 4 and len(pairs) == 16 and len(held_out) == 2  # both pairs of q3 and of q7
    assert not {prompt_key(p) for p in pairs} & {prompt_key(p) for p in held_out}
    assert f"4 pairs left out of training: their prompts are held out in {held}" in capsys.readouterr().out
    # without a held-out file the stage's own split holds out whole prompts, and nothing is counted
    cfg = reward_config(sft_path="unused", pairs_path=str(train), eval_pairs_path=None, eval_fraction=0.3)
    pairs, held_out, left_out = stage_pairs(cfg)
    assert left_out == 0 and len(held_out) == 6 and len(pairs) == 14
    # the pairs file itself as the held-out file: one clear error, not an empty training set
    cfg = reward_config(sft_path="unused", pairs_path=str(train), eval_pairs_path=str(train))
    with pytest.raises(
        UserError, match=re.escape(f"every pair's prompt is held out in {train}: no training pairs left")
    ):
        stage_pairs(cfg)


def test_a_reward_model_scored_on_an_earlier_runs_held_out_pairs(tiny_chain, tmp_path):
    """A reward stage splits its own held-out pairs off 200 demo pairs and writes them. Trained again on the same
    pairs file with that file as eval_pairs_path, the stage leaves those prompts out of training: the same training
    pairs in the same order, so (same seed) the same model and the same held-out metrics."""
    import reward

    prefs = write_prefs(tmp_path / "prefs.jsonl")
    common = {"sft_path": str(tiny_chain["sft"]), "pairs_path": str(prefs), "num_train_epochs": 1, "quiet": True,
              "save_strategy": "no"}  # fmt: skip
    first = reward.run(reward_config(**common, output_dir=str(tmp_path / "first")))
    written = load_preferences(first.path / HELD_OUT_FILE, verbose=False)
    assert len(written) == first.metrics["eval_pairs"] > 10 and first.metrics["dropped_held_out_prompts"] == 0
    assert {p["format"] for p in written} == {"ours"}  # rows as read, in our format: loadable by any stage
    assert [prompt_key(p) for p in written] == [
        prompt_key(p) for p in stage_pairs(reward_config(**common)).held_out
    ]

    again = reward.run(reward_config(**common, output_dir=str(tmp_path / "again"),
                                     eval_pairs_path=str(first.path / HELD_OUT_FILE)))  # fmt: skip
    m, m0 = again.metrics, first.metrics
    assert m["dropped_held_out_prompts"] == len(written)  # the pairs file holds every held-out pair
    assert (m["train_pairs"], m["eval_pairs"]) == (m0["train_pairs"], m0["eval_pairs"])
    for key in ("eval_accuracy", "gold_agreement", "reward_mean", "reward_std", "train_loss"):
        assert abs(m[key] - m0[key]) < 1e-5, key
    assert load_preferences(again.path / HELD_OUT_FILE, verbose=False) == written

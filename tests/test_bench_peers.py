"""bench/peers.py's guarantees, without running a benchmark: the bare side is upstream code only, and a pair whose
two sides did different work is refused rather than given a ratio."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import torch
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import peers  # noqa: E402
from _common import format_ratio  # noqa: E402
from _peer_hooks import _batch_tokens  # noqa: E402

KIT = {"rlhf", "sft", "reward", "ppo", "dpo", "rloo"}
BARE_SCRIPTS = sorted((REPO / "bench").glob("_bare_*.py"))


def test_the_bare_scripts_import_no_kit_module():
    assert {p.stem for p in BARE_SCRIPTS} >= {
        f"_bare_{k}" for k in ("sft", "reward", "dpo", "ppo", "rloo", "generate")
    }
    for path in [*BARE_SCRIPTS, REPO / "bench" / "_peer_hooks.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in KIT, f"{path.name} imports {name}"


def test_every_pair_has_its_bare_script():
    for pair in peers.PAIRS:
        assert (REPO / "bench" / f"_bare_{pair.kind}.py").exists(), pair.name


@pytest.mark.parametrize("kind", ["sft", "dpo", "rloo"])
def test_installing_the_hooks_loads_no_kit_module(kind):
    code = (
        f"import sys; sys.path.insert(0, 'bench'); import _peer_hooks; _peer_hooks.install({kind!r}); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(KIT)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def record(**kw) -> dict:
    base = {"trained_tokens": 1000, "first_loss": 2.5, "first_logs": None, "settings": {"learning_rate": 2e-5},
            "generated_tokens": 0, "generated_digest": "x"}  # fmt: skip
    return {**base, **kw}


def test_same_work_passes_float_noise_and_refuses_real_differences():
    assert peers.same_work("sft", record(), record(first_loss=2.5 * (1 + 5e-5))) == []
    assert "first-step loss" in peers.same_work("sft", record(), record(first_loss=2.5 * (1 + 3e-4)))[0]
    assert "trained tokens 1000 vs 999" in peers.same_work("sft", record(), record(trained_tokens=999))[0]
    differ = peers.same_work("reward", record(), record(settings={"learning_rate": 1e-5, "optim": "sgd"}))
    assert differ == ["setting learning_rate 2e-05 vs 1e-05"]  # keys only one side has are not compared
    ppo = {"objective/scores": 0.3, "loss/policy_avg": -0.01, "loss/value_avg": 0.2}
    assert peers.same_work("ppo", record(first_logs=ppo), record(first_logs=dict(ppo))) == []
    moved = peers.same_work(
        "ppo", record(first_logs=ppo), record(first_logs={**ppo, "loss/policy_avg": -0.02})
    )
    assert len(moved) == 1 and "loss/policy_avg" in moved[0]
    gen = peers.same_work(
        "generate", record(generated_tokens=64), record(generated_tokens=64, generated_digest="y")
    )
    assert gen and "token ids differ" in gen[0]


def test_dpo_and_rloo_prove_the_same_data_beyond_their_data_independent_first_loss():
    # Policy = reference at the first step: DPO's loss is ln 2 and RLOO's ~0 whatever the batch, so the first
    # batch's logged log-probabilities / rewards (and RLOO's sampled ids) carry the proof.
    dpo = {"logps/chosen": -4.02, "logps/rejected": -4.57}
    assert (
        peers.same_work(
            "dpo", record(first_loss=0.6931, first_logs=dpo), record(first_loss=0.6931, first_logs=dict(dpo))
        )
        == []
    )
    other_batch = peers.same_work(
        "dpo",
        record(first_loss=0.6931, first_logs=dpo),
        record(first_loss=0.6931, first_logs={**dpo, "logps/chosen": -3.9}),
    )
    assert len(other_batch) == 1 and "logps/chosen" in other_batch[0]
    rloo = {"reward": -0.15, "reward_std": 0.16}
    same = record(first_loss=0.0, first_logs=rloo)
    assert peers.same_work("rloo", same, record(first_loss=-1.9e-9, first_logs=dict(rloo))) == []
    resampled = peers.same_work(
        "rloo", same, record(first_loss=0.0, first_logs=dict(rloo), generated_digest="y")
    )
    assert resampled == ["sampled completion ids differ"]


def test_the_same_work_row_of_rloo_shows_its_first_reward_not_its_zero_loss():
    run = {"train_seconds": 2.0, "peak_rss_kb": 1024, "units": 64, "trained_tokens": 800, "first_loss": 0.0,
           "first_logs": {"reward": -0.15, "reward_std": 0.16}}  # fmt: skip
    pair = next(p for p in peers.PAIRS if p.name == "rloo")
    figs = peers.figures(pair, "demo", {"ours": [run] * 3, "bare": [run] * 3})
    assert (
        figs[0]["ratio"] == 1.0
        and figs[0]["unit"] == "s/episode"
        and figs[0]["ours"] == pytest.approx(2 / 64)
    )
    assert "mean reward" in figs[2]["figure"] and figs[2]["ours"] == -0.15 and figs[2]["ratio"] == 1.0


def test_trained_tokens_are_the_next_token_labels_the_loss_covers():
    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 10]])
    assert _batch_tokens("sft", {"labels": labels}) == 6  # position 0 is never predicted
    kept = torch.tensor([[5, -100], [-100, 9]])  # the kit's skip_prompt_logits: the loss reads shift_labels
    assert _batch_tokens("sft", {"labels": labels, "shift_labels": kept}) == 2
    assert _batch_tokens("reward", {"attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}) == 5
    # DPO: prompt + chosen and prompt + rejected rows; RLOO counts its completions where they are sampled
    assert _batch_tokens("dpo", {"attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}) == 5
    assert _batch_tokens("rloo", [{"prompt": "a"}, {"prompt": "b"}]) == 0


def test_a_ratio_shows_its_spread():
    fig = peers.spread_figure("f", [1.0, 2.0, 3.3], [1.0, 1.0, 3.0], "s", "-")
    assert fig["ratio"] == pytest.approx(1.1) and fig["spread"] == [1.0, 2.0]
    assert format_ratio(fig) == "1.10x (1.00-2.00, n=3)"

"""DPO stage through TRL's DPOTrainer: a tiny run through the Python API (full and LoRA), its output read as a
policy by `rlhf generate` and the model loader, kill-and-resume to the same weights, and bad inputs refused."""

from __future__ import annotations

import json

import pytest
from _faults import kill_when, manifest, max_weight_difference, run, run_here, start, write_prefs
from conftest import REPO, run_cli

from rlhf import checkpoint

DPO_YAML = REPO / "configs" / "demo" / "dpo.yaml"


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    return write_prefs(tmp_path_factory.mktemp("dpo") / "prefs.jsonl")


def dpo_args(tiny_chain, prefs, out, *extra) -> list:
    return ["dpo", "--config", DPO_YAML, "--sft_path", tiny_chain["sft"], "--pairs_path", prefs,
            "--output_dir", out, "--quiet", "true", "--seed", "0", "--per_device_train_batch_size", "8",
            "--max_steps", "12", "--save_steps", "4", *extra]  # fmt: skip


def train(tiny_chain, prefs, out, **values):
    import dpo
    from rlhf.config import build_config

    cfg = build_config(dpo.DPOStageConfig, {
        "config": DPO_YAML, "sft_path": str(tiny_chain["sft"]), "pairs_path": str(prefs),
        "output_dir": str(out), "quiet": True, "per_device_train_batch_size": 8, "max_steps": 6,
        "learning_rate": 5e-4, "save_strategy": "no", **values})  # fmt: skip
    return dpo.run(cfg)


def weights(path):
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def moved_from_sft(out, sft) -> float:
    a, b = weights(out), weights(sft)
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def trained(tiny_chain, prefs, tmp_path_factory):
    return train(tiny_chain, prefs, tmp_path_factory.mktemp("dpo_full") / "dpo")


def test_dpo_trains_from_sft_and_learns_the_preferences(trained, tiny_chain):
    assert trained.kind == "dpo"
    (parent,) = trained.parents()
    assert parent.kind == "sft" and parent.path.resolve() == tiny_chain["sft"].resolve()
    m = trained.metrics
    assert m["train_pairs"] > 100 and m["eval_pairs"] > 10 and m["train_pairs"] + m["eval_pairs"] <= 200
    assert moved_from_sft(trained.path, tiny_chain["sft"]) > 1e-4  # the policy moved
    # The implicit reward (beta * log-ratio to the SFT reference) ranks the held-out chosen answers first more
    # often than chance, with a positive mean margin: it learned the pairs, not noise.
    assert m["eval_rewards_accuracies"] > 0.5 and m["eval_rewards_margins"] > 0
    assert trained.template == parent.template and trained.manifest["data_fingerprint"]


def test_dpo_reads_its_implicit_reward_on_the_reward_stages_held_out_pairs(trained, tiny_chain, prefs):
    """eval_accuracy and gold_agreement in the manifest are the implicit reward's, beta * (log p_policy - log
    p_SFT) of each whole response with its EOS, on the pairs the reward stage holds out (same split): checked
    against a plain one-row-at-a-time forward of both models."""
    import torch

    import dpo
    from dpo.implicit_reward import implicit_rewards
    from rlhf.config import build_config
    from rlhf.models import load_causal_lm, load_tokenizer
    from rlhf.preferences import HELD_OUT_FILE, load_preferences, prompt_key, stage_pairs
    from rlhf.templates import format_prompt

    m = trained.metrics
    cfg = build_config(dpo.DPOStageConfig, {"config": DPO_YAML, "sft_path": str(tiny_chain["sft"]),
                                            "pairs_path": str(prefs)})  # fmt: skip
    held_out = stage_pairs(cfg).held_out
    assert len(held_out) == m["eval_pairs"]
    written = load_preferences(trained.path / HELD_OUT_FILE, verbose=False)  # for other runs' eval_pairs_path
    assert [prompt_key(p) for p in written] == [prompt_key(p) for p in held_out]
    tok = load_tokenizer(trained.path)
    policy, reference = load_causal_lm(trained.path), load_causal_lm(tiny_chain["sft"])

    def logp(model, pair, side) -> float:
        prompt = tok(format_prompt(pair["instruction"], pair["input"], "alpaca"))["input_ids"]
        response = tok(pair[side], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1 : -1]
        return float(torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(response)[:, None]).sum())

    beta = cfg.beta
    expected = {side: [beta * (logp(policy, p, side) - logp(reference, p, side)) for p in held_out]
                for side in ("chosen", "rejected")}  # fmt: skip
    chosen, rejected = implicit_rewards(policy, reference, tok, "alpaca", held_out, beta, batch_size=5)
    assert chosen == pytest.approx(expected["chosen"], abs=1e-4)  # right pair, right side, in the rows' order
    assert rejected == pytest.approx(expected["rejected"], abs=1e-4)
    accuracy = sum(c > r for c, r in zip(expected["chosen"], expected["rejected"])) / len(held_out)
    assert m["eval_accuracy"] == pytest.approx(accuracy) and accuracy > 0.5
    # Every demo pair's chosen answer is the correct one: the judge separates all, and agrees with each label.
    assert m["gold_pairs"] == len(held_out) and m["gold_agreement"] == pytest.approx(m["eval_accuracy"])
    assert "gold_agreement=" in run_cli("inspect", trained.path).stdout


def test_dpo_log_plots_as_training_curves(tiny_chain, prefs, tmp_path):
    """The report's training curves (rlhf compare, plots.CURVE_KEYS) read the DPO stage's own log.jsonl: one panel
    per logged key, each a line over the logged steps."""
    import matplotlib.pyplot as plt

    from rlhf.evaluation.plots import CURVE_KEYS, plot_training_curves, training_curves_figure
    from rlhf.logs import read_log

    trained = train(tiny_chain, prefs, tmp_path / "dpo", max_steps=4, logging_steps=2)
    log = trained.path / "log.jsonl"
    rows = read_log(log)
    fig = training_curves_figure(log, "dpo")
    try:
        assert [ax.get_title() for ax in fig.axes] == list(CURVE_KEYS["dpo"])
        for ax, key in zip(fig.axes, CURVE_KEYS["dpo"]):
            (line,) = ax.get_lines()
            assert list(line.get_ydata()) == pytest.approx([r[key] for r in rows if key in r]), key
            assert len(line.get_ydata()) >= 2, key
    finally:
        plt.close(fig)
    assert plot_training_curves(log, "dpo").startswith(b"\x89PNG")


def test_dpo_output_is_a_policy_generate_and_the_loader_read(trained):
    from rlhf.models import load_policy, locate_model

    source = locate_model(trained.path, role="policy")
    assert source.kind == "dpo" and source.base is None
    assert load_policy(source).model.config.model_type == "llama"
    res = run_cli("generate", trained.path, "--instruction", "Pick the biggest number.", "--input", "1, 5, 3",
                  "--max-new-tokens", "4")  # fmt: skip
    assert res.stdout.strip()
    assert "dpo" in run_cli("inspect", trained.path).stdout.split()


def test_dpo_lora_reference_is_the_adapter_disabled_policy_and_saves_merged(tiny_chain, prefs, tmp_path):
    stage = train(tiny_chain, prefs, tmp_path / "dpo", use_lora=True, lora_r=4, lora_alpha=8)
    assert (stage.path / "model.safetensors").is_file() and not (
        stage.path / "adapter_model.safetensors"
    ).exists()
    assert stage.manifest["config"]["use_lora"] is True
    assert moved_from_sft(stage.path, tiny_chain["sft"]) > 1e-5  # the merged adapter changed the weights
    assert stage.metrics["eval_rewards_margins"] > 0


def test_sigkill_after_first_checkpoint_then_resume_matches_an_uninterrupted_run(tiny_chain, prefs, tmp_path):
    from rlhf.training import complete_checkpoints

    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_here(dpo_args(tiny_chain, prefs, ref)) == 0
    proc = start(dpo_args(tiny_chain, prefs, out), tmp_path / "killed.log")
    assert kill_when(proc, lambda: bool(complete_checkpoints(out))), (
        "the stage finished before it could be killed"
    )
    assert not (out / "rlhf_stage.json").exists()
    assert run(dpo_args(tiny_chain, prefs, out), tmp_path / "killed.log") == 0, (
        tmp_path / "killed.log"
    ).read_text()
    assert manifest(out)["resumed_from"].startswith("checkpoint-")
    a, b = manifest(ref)["metrics"], manifest(out)["metrics"]
    for k in ("eval_loss", "eval_rewards_accuracies", "eval_rewards_margins"):
        assert b[k] == pytest.approx(a[k], abs=1e-4), k
    assert max_weight_difference(ref, out) <= 1e-6
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)
    assert not list(out.glob("checkpoint-*"))


def test_bad_pairs_are_refused_with_file_and_row_and_nothing_is_written(tiny_chain, tmp_path):
    bad = tmp_path / "prefs.jsonl"
    bad.write_text(json.dumps({"instruction": "a", "chosen": "x", "rejected": "y"}) + "\n"
                   + json.dumps({"instruction": "b", "chosen": "x"}) + "\n")  # fmt: skip
    out = tmp_path / "dpo"
    res = run_cli(*dpo_args(tiny_chain, bad, out), check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {bad}:line 2: missing key 'rejected'; expected a preference pair"
    assert not out.exists()


def test_a_parent_of_the_wrong_kind_is_refused(tiny_chain, prefs, tmp_path):
    out = tmp_path / "dpo"
    args = dpo_args(tiny_chain, prefs, out)
    args[args.index("--sft_path") + 1] = tiny_chain["reward"]
    res = run_cli(*args, check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(
        f"error: {tiny_chain['reward']}: expected a finished sft stage, found a reward"
    )
    assert not out.exists()
    assert checkpoint.is_finished(tiny_chain["reward"])  # the input is untouched


def test_dpo_on_a_chat_sft_policy_trains_on_chat_rendered_pairs(demo_chat_base, prefs, tmp_path):
    """An SFT stage with `template: chat`: DPO's rows are chat messages that TRL renders with the tokenizer's
    template, so each response ends with the template's end of turn (<|im_end|>, not this model's EOS)."""
    import sft
    from dpo.data import preference_rows
    from reward.data import load_preferences
    from rlhf.config import build_config
    from rlhf.io import atomic_write_json
    from rlhf.models import load_tokenizer
    from rlhf.tasks.demo import make_sft_rows

    atomic_write_json(tmp_path / "sft.json", make_sft_rows(300, seed=0, kinds=("largest", "smallest")))
    chat_sft = sft.run(build_config(sft.SFTStageConfig, {
        "config": REPO / "configs/demo/sft.yaml", "model_name_or_path": str(demo_chat_base), "template": "chat",
        "data_path": str(tmp_path / "sft.json"), "output_dir": str(tmp_path / "sft"), "num_train_epochs": 1,
        "quiet": True, "save_strategy": "no"}))  # fmt: skip
    tok = load_tokenizer(chat_sft.path)
    pairs = load_preferences(prefs)[:8]
    rows, dropped = preference_rows(pairs, tok, "chat", max_length=None)
    assert dropped == 0 and rows[0]["prompt"][-1]["role"] == "user"
    assert rows[0]["chosen"] == [{"role": "assistant", "content": pairs[0]["chosen"]}]
    ended = tok.apply_chat_template(rows[0]["prompt"] + rows[0]["chosen"], tokenize=False)
    assert ended.rstrip().endswith(pairs[0]["chosen"] + "<|im_end|>")
    # the length rule counts the rendered conversation's tokens
    longest = max(len(tok(tok.apply_chat_template(r["prompt"] + r[s], tokenize=False), add_special_tokens=False)
                      ["input_ids"]) for r in rows for s in ("chosen", "rejected"))  # fmt: skip
    assert preference_rows(pairs, tok, "chat", max_length=longest - 1)[1] >= 1

    stage = train({"sft": chat_sft.path}, prefs, tmp_path / "dpo")
    assert stage.template == "chat" and stage.metrics["eval_rewards_margins"] > 0
    assert moved_from_sft(stage.path, chat_sft.path) > 1e-4
    assert load_tokenizer(stage.path).chat_template == tok.chat_template

"""RLOO stage through TRL's RLOOTrainer: the reward it optimises is the reward stage's score, a tiny run through the
Python API (full and LoRA) whose output `rlhf generate` and the loader read as a policy, kill-and-resume to the same
weights, bad inputs refused, and a chat-template SFT policy (test_chat_chain's tiny ChatML chain) whose reward is
the reward stage's score of the chat-rendered prompt + reply + end of turn."""

from __future__ import annotations

import json

import pytest
import test_chat_chain
from _faults import kill_when, manifest, max_weight_difference, run, run_here, start
from conftest import REPO, run_cli
from test_chat_chain import CONVERSATIONS, user

RLOO_YAML = REPO / "configs" / "demo" / "rloo.yaml"
FAST = {"per_device_train_batch_size": 16, "task_prompts": 64, "max_completion_length": 12, "quiet": True}


def rloo_args(tiny_chain, out, *extra) -> list:
    flags = [x for k, v in {**FAST, "max_steps": 6, "save_steps": 2}.items() for x in (f"--{k}", str(v))]
    return ["rloo", "--config", RLOO_YAML, "--sft_path", tiny_chain["sft"], "--reward_path", tiny_chain["reward"],
            "--output_dir", out, "--seed", "0", *flags, *extra]  # fmt: skip


def train(tiny_chain, out, **values):
    import rloo
    from rlhf.config import build_config

    cfg = build_config(rloo.RLOOStageConfig, {
        "config": RLOO_YAML, "sft_path": str(tiny_chain["sft"]), "reward_path": str(tiny_chain["reward"]),
        "output_dir": str(out), "max_steps": 4, "save_strategy": "no", **FAST, **values})  # fmt: skip
    return rloo.run(cfg)


def moved_from_sft(out, sft) -> float:
    from safetensors.torch import load_file

    a, b = load_file(out / "model.safetensors"), load_file(sft / "model.safetensors")
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_the_reward_is_the_reward_stages_score_normalised_with_a_penalty_for_no_eos(tiny_chain):
    from rlhf import checkpoint
    from rlhf.evaluation.scoring import RewardScorer
    from rlhf.models import load_reward_model
    from rlhf.templates import format_prompt
    from rloo.reward import RewardModelScore

    rm = load_reward_model(tiny_chain["reward"])
    tok, stats = rm.tokenizer, checkpoint.require(tiny_chain["reward"], "reward").metrics
    score = RewardModelScore(rm.model, tok, mean=stats["reward_mean"], std=stats["reward_std"],
                             missing_eos_penalty=1.0)  # fmt: skip
    questions = [("Which number is the largest?", "3, 9, 4"), ("Which number is the smallest?", "8, 2, 5")]
    answers = ["9", "5 is the smallest"]
    prompts = [format_prompt(q, i) for q, i in questions]
    ended = [tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for a in answers]
    expected = RewardScorer(rm.model, tok).score(
        questions, answers
    )  # what the reward stage and compare report
    got = score(prompts=prompts, completions=answers, completion_ids=ended)
    assert got == pytest.approx(
        [(e - stats["reward_mean"]) / stats["reward_std"] for e in expected], abs=1e-5
    )
    cut = score(prompts=prompts, completions=answers, completion_ids=[ids[:-1] for ids in ended])
    unpenalised = RewardModelScore(rm.model, tok, mean=stats["reward_mean"], std=stats["reward_std"])
    raw = unpenalised(prompts=prompts, completions=answers, completion_ids=[ids[:-1] for ids in ended])
    assert cut == pytest.approx([r - 1.0 for r in raw], abs=1e-6)


@pytest.fixture(scope="module")
def trained(tiny_chain, tmp_path_factory):
    return train(tiny_chain, tmp_path_factory.mktemp("rloo") / "rloo")


def test_rloo_trains_from_sft_against_the_reward_model(trained, tiny_chain):
    assert trained.kind == "rloo"
    kinds = sorted(p.kind for p in trained.parents())
    assert kinds == ["reward", "sft"]
    m = trained.metrics
    assert m["episodes"] == 4 * 16 and m["dropped_prompts"] == 0
    for k in ("reward", "kl", "completions_mean_length"):
        assert isinstance(m[k], float), k
    assert 0 < m["completions_mean_length"] <= 12
    assert moved_from_sft(trained.path, tiny_chain["sft"]) > 1e-5
    assert trained.template == "alpaca"


def test_rloo_log_plots_as_training_curves(trained):
    """The report's training curves (rlhf compare, plots.CURVE_KEYS) read the RLOO stage's own log.jsonl: one panel
    per logged key, each a line over the logged steps."""
    import matplotlib.pyplot as plt

    from rlhf.evaluation.plots import CURVE_KEYS, plot_training_curves, training_curves_figure
    from rlhf.logs import read_log

    log = trained.path / "log.jsonl"
    rows = read_log(log)
    fig = training_curves_figure(log, "rloo")
    try:
        assert [ax.get_title() for ax in fig.axes] == list(CURVE_KEYS["rloo"])
        for ax, key in zip(fig.axes, CURVE_KEYS["rloo"]):
            (line,) = ax.get_lines()
            assert list(line.get_ydata()) == pytest.approx([r[key] for r in rows if key in r]), key
            assert len(line.get_ydata()) >= 2, key
    finally:
        plt.close(fig)
    assert plot_training_curves(log, "rloo").startswith(b"\x89PNG")


def test_rloo_output_is_a_policy_generate_and_the_loader_read(trained):
    from rlhf.models import locate_model

    assert locate_model(trained.path, role="policy").kind == "rloo"
    res = run_cli("generate", trained.path, "--instruction", "Pick the biggest number.", "--input", "1, 5, 3",
                  "--max-new-tokens", "4")  # fmt: skip
    assert res.stdout.strip()


def test_rloo_lora_saves_a_merged_policy(tiny_chain, tmp_path):
    stage = train(tiny_chain, tmp_path / "rloo", use_lora=True, lora_r=4, lora_alpha=8, max_steps=2)
    assert (stage.path / "model.safetensors").is_file() and not (
        stage.path / "adapter_model.safetensors"
    ).exists()
    assert moved_from_sft(stage.path, tiny_chain["sft"]) > 1e-6


def test_sigkill_after_first_checkpoint_then_resume_matches_an_uninterrupted_run(tiny_chain, tmp_path):
    from rlhf.training import complete_checkpoints

    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_here(rloo_args(tiny_chain, ref)) == 0
    proc = start(rloo_args(tiny_chain, out), tmp_path / "killed.log")
    assert kill_when(proc, lambda: bool(complete_checkpoints(out))), (
        "the stage finished before it could be killed"
    )
    assert not (out / "rlhf_stage.json").exists()
    assert run(rloo_args(tiny_chain, out), tmp_path / "killed.log") == 0, (
        tmp_path / "killed.log"
    ).read_text()
    resumed_from = manifest(out)["resumed_from"]
    assert resumed_from.startswith("checkpoint-")
    a, b = manifest(ref)["metrics"], manifest(out)["metrics"]
    for k in ("reward", "kl", "completions_mean_length", "episodes"):
        assert b[k] == pytest.approx(a[k], abs=1e-4), k
    # throughput counts the episodes of the steps the resumed process trained, over the time they took
    done, steps = int(resumed_from.removeprefix("checkpoint-")), manifest(out)["config"]["max_steps"]
    assert 0 < done < steps
    assert b["episodes_per_second"] == pytest.approx(
        b["episodes"] * (steps - done) / steps / b["train_seconds"]
    )
    assert max_weight_difference(ref, out) <= 1e-6
    ref_log = [json.loads(x) for x in (ref / "log.jsonl").read_text().splitlines()]
    got_log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in got_log if "reward" in r] == pytest.approx(
        [r["reward"] for r in ref_log if "reward" in r]
    )


def test_a_checkpoint_records_its_settings_and_resumes_only_a_run_with_the_same(tiny_chain, tmp_path, capsys):
    out = tmp_path / "rloo"
    assert run_here(rloo_args(tiny_chain, out, "--max_steps", "2", "--keep_checkpoints", "true")) == 0
    ckpt = out / "checkpoint-2"
    recorded = json.loads((ckpt / "rlhf_settings.json").read_text())
    assert recorded["reward_judge"] is None and recorded["seed"] == 0 and recorded["processes"] == 1
    assert recorded["num_generations"] == 4 and recorded["lr_scheduler_type"] == "constant"
    (out / "rlhf_stage.json").unlink()  # as if killed after its last checkpoint
    # the demo config leaves the trainer's save_total_limit (2): the run said so when it started
    assert (
        "rloo: warning: keep_checkpoints keeps only the newest 2 checkpoint-N dirs" in capsys.readouterr().err
    )
    # a run against the gold judge does not continue one against the reward model: refused before any loading
    assert run_here(rloo_args(tiny_chain, out, "--max_steps", "2", "--reward_judge", "demo")) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {ckpt}:key 'resume': checkpoint was written with reward_judge None, this run has 'demo': rerun "
        "with the settings it was made with, or pass --resume never to start over"
    )
    # a longer run continues a checkpoint only where the learning rate does not depend on the run's length
    assert run_here(rloo_args(tiny_chain, out, "--max_steps", "4", "--lr_scheduler_type", "linear")) == 2
    assert (
        "checkpoint was written with max_steps 2, this run has 4 (a run continues to a larger max_steps only under "
        "lr_scheduler_type constant or constant_with_warmup)" in capsys.readouterr().err
    )
    # under the constant schedule the same run continues to more steps
    assert run_here(rloo_args(tiny_chain, out, "--max_steps", "4")) == 0
    assert manifest(out)["resumed_from"] == "checkpoint-2" and manifest(out)["metrics"]["episodes"] == 64


def test_bad_prompts_are_refused_with_file_and_row(tiny_chain, tmp_path):
    bad = tmp_path / "prompts.json"
    bad.write_text(json.dumps([{"instruction": "Pick one.", "input": "1, 2"}, {"input": "3, 4"}]))
    out = tmp_path / "rloo"
    res = run_cli(*rloo_args(tiny_chain, out, "--prompts_path", bad), check=False)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: {bad}:row 2")
    assert not out.exists()


def test_a_reward_path_that_is_no_reward_model_and_misplaced_checkpoints_are_refused(tiny_chain, tmp_path):
    out = tmp_path / "rloo"
    args = rloo_args(tiny_chain, out)
    args[args.index("--reward_path") + 1] = tiny_chain["sft"]
    res = run_cli(*args, check=False)
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: {tiny_chain['sft']}: expected a finished reward stage, found a sft")
    res = run_cli(*rloo_args(tiny_chain, out, "--steps_per_generation", "4"), check=False)
    assert res.returncode == 2
    assert "key 'save_steps': save_steps 2" in res.stderr and "resumed run could not continue" in res.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------------- a chat-template SFT policy


@pytest.fixture(scope="module")
def chat_chain(tmp_path_factory):
    """test_chat_chain's tiny ChatML chain: a chat "SFT" stage, a reward stage trained on it with template chat, and
    a prompts file of message lists."""
    return test_chat_chain.tiny_chat_chain.__wrapped__(tmp_path_factory)


def test_chat_prompts_and_reward_are_the_reward_stages_sequence(chat_chain):
    """Under chat, RLOOTrainer gets the prompt messages; the ids it generates from (its own chat-template call),
    the ids the reward function prepends, and the reward stage's training ids of the same pair all agree, and the
    reward is the reward stage's score of that text."""
    from reward.encoding import encode_pair
    from rlhf import checkpoint
    from rlhf.evaluation.scoring import RewardScorer
    from rlhf.models import load_reward_model
    from rlhf.preferences import load_preferences
    from rlhf.prompt_rows import load_prompt_rows
    from rlhf.templates import render_prompt
    from rloo.prompts import prompt_rows
    from rloo.reward import RewardModelScore

    rm = load_reward_model(chat_chain["reward"])
    tok, stats = rm.tokenizer, checkpoint.require(chat_chain["reward"], "reward").metrics
    end = tok.convert_tokens_to_ids("<|im_end|>")
    rows = load_prompt_rows(chat_chain["prompts"])
    ds, dropped = prompt_rows(rows, tok, "chat", 64)
    prompts = list(ds["prompt"])
    assert dropped == 0 and prompts == [user(q) for q, _, _ in CONVERSATIONS]
    # What RLOOTrainer._tokenize_prompts does with conversational prompts.
    trl_ids = tok.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True, return_dict=True)
    score = RewardModelScore(rm.model, tok, template="chat", mean=stats["reward_mean"], std=stats["reward_std"],
                             missing_eos_penalty=1.0)  # fmt: skip
    assert score.prompt_ids(prompts) == trl_ids["input_ids"]

    pairs = load_preferences(chat_chain["root"] / "trl.jsonl", verbose=False)[: len(CONVERSATIONS)]
    answers = [p["chosen"] for p in pairs]
    ended = [tok(a, add_special_tokens=False)["input_ids"] + [end] for a in answers]
    for pair, prompt, reply in zip(pairs, score.prompt_ids([p["messages"] for p in pairs]), ended):
        assert prompt + reply == encode_pair(pair, tok, "chat")[0]  # what the reward stage trained on
        assert tok.decode(prompt + reply) == render_prompt(pair, "chat", tok) + pair["chosen"] + "<|im_end|>"

    got = score(prompts=[p["messages"] for p in pairs], completions=answers, completion_ids=ended)
    expected = RewardScorer(rm.model, tok, "chat").score(
        pairs, answers
    )  # rlhf score, compare, the reward stage
    assert got == pytest.approx(
        [(e - stats["reward_mean"]) / stats["reward_std"] for e in expected], abs=1e-5
    )
    # A reply that never reached the end of turn pays the penalty.
    cut = score(
        prompts=[p["messages"] for p in pairs], completions=answers, completion_ids=[e[:-1] for e in ended]
    )
    raw = RewardModelScore(
        rm.model, tok, template="chat", mean=stats["reward_mean"], std=stats["reward_std"]
    )(prompts=[p["messages"] for p in pairs], completions=answers, completion_ids=[e[:-1] for e in ended])
    assert cut == pytest.approx([r - 1.0 for r in raw], abs=1e-6)


def test_rloo_trains_a_chat_sft_policy_and_scores_what_the_reward_stage_would(
    chat_chain, tmp_path, monkeypatch
):
    """A full run from a chat SFT parent: every rollout the reward model scored starts from a chat-rendered
    prompt, stops at <|im_end|>, and got the reward stage's (normalised) score of prompt + reply + <|im_end|>."""
    import torch

    import rloo
    import rloo.reward
    from rlhf import checkpoint
    from rlhf.config import build_config
    from rlhf.evaluation.scoring import RewardScorer, encode_example
    from rlhf.models import load_reward_model
    from rlhf.templates import render_prompt

    calls = []
    original = rloo.reward.RewardModelScore.__call__

    def recorded(self, prompts, completions, completion_ids, **kw):
        scores = original(self, prompts, completions, completion_ids, **kw)
        calls.append((prompts, [list(c) for c in completion_ids], scores))
        return scores

    monkeypatch.setattr(rloo.reward.RewardModelScore, "__call__", recorded)
    out = tmp_path / "rloo"
    stage = rloo.run(build_config(rloo.RLOOStageConfig, {
        "config": RLOO_YAML, "sft_path": str(chat_chain["sft"]), "reward_path": str(chat_chain["reward"]),
        "prompts_path": str(chat_chain["prompts"]), "output_dir": str(out), "max_steps": 2,
        "per_device_train_batch_size": 8, "max_completion_length": 6, "missing_eos_penalty": None,
        "save_strategy": "no", "quiet": True}))  # fmt: skip
    assert stage.template == "chat" and checkpoint.require(out, kind="rloo").manifest["template"] == "chat"
    assert sorted(p.kind for p in stage.parents()) == ["reward", "sft"]
    assert isinstance(stage.metrics["reward"], float)

    rm = load_reward_model(chat_chain["reward"])
    tok, stats = rm.tokenizer, checkpoint.require(chat_chain["reward"], "reward").metrics
    end = tok.convert_tokens_to_ids("<|im_end|>")
    scorer = RewardScorer(rm.model, tok, "chat")
    assert calls
    ended_checked = 0
    for prompts, completion_ids, scores in calls:
        assert all(p in [user(q) for q, _, _ in CONVERSATIONS] for p in prompts)
        assert all(end not in c[:-1] and len(c) <= 6 for c in completion_ids)  # stops at the end of turn
        for prompt, ids, got in zip(prompts, completion_ids, scores):
            # The reward model scored the reward stage's prompt encoding followed by the generated ids.
            prompt_ids = encode_example(tok, render_prompt({"messages": prompt}, "chat", tok), "", "chat")[
                :-1
            ]
            logit = rm.model(input_ids=torch.tensor([prompt_ids + ids])).logits[0, 0].item()
            assert got == pytest.approx((logit - stats["reward_mean"]) / stats["reward_std"], abs=1e-4)
            reply = tok.decode(ids[:-1])
            if ids[-1:] == [end] and tok(reply, add_special_tokens=False)["input_ids"] + [end] == ids:
                # An ended reply whose text re-encodes to the same ids: the reward stage's score of the text.
                (expected,) = scorer.score([{"instruction": "", "messages": prompt}], [reply])
                assert got == pytest.approx((expected - stats["reward_mean"]) / stats["reward_std"], abs=1e-4)
                ended_checked += 1
    print(f"{ended_checked} ended replies scored as the reward stage scores their text")


def test_rloo_refuses_chat_template_kwargs(chat_chain, tmp_path):
    import rloo
    from rlhf.config import build_config
    from rlhf.errors import UserError

    with pytest.raises(UserError, match="key 'chat_template_kwargs'"):
        rloo.run(build_config(rloo.RLOOStageConfig, {
            "config": RLOO_YAML, "sft_path": str(chat_chain["sft"]),
            "reward_path": str(chat_chain["reward"]), "prompts_path": str(chat_chain["prompts"]),
            "output_dir": str(tmp_path / "rloo"), "chat_template_kwargs": {"enable_thinking": False}}))  # fmt: skip
    assert not (tmp_path / "rloo").exists()

"""The constraints task through `rlhf pipeline`: the experiment config's plan, the start policy adopted without
fine-tuning, SFT demonstrations, and (slow) the whole chain at toy size on the demo model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from rlhf import checkpoint
from rlhf.errors import UserError
from rlhf.pipeline import (
    AdoptSFT,
    Compare,
    ConstraintRows,
    Convert,
    Pairs,
    StageTraining,
    load_pipeline_config,
    plan,
)
from rlhf.tasks.constraints import ConstraintsTask, parse_item, split_of
from rlhf.tasks.constraints_demos import demonstration_rows

EXPERIMENT = REPO / "configs" / "experiments" / "constraints.yaml"
# Seconds-scale: the demo model cannot follow instructions, so this checks the plumbing, not the effect.
TOY = """\
seed: 0
task: constraints
kinds: max_sentences,no_commas,max_words,lowercase
methods: [ppo, bon:2]
data: {sft_rows: 400, pair_prompts: 64, eval_prompts: 16, ppo_prompts: 64, source: SOURCE}
model: {vocab_size: 600, hidden_size: 64, num_layers: 1, num_heads: 2, intermediate_size: 128}
sft:
  config: configs/demo/sft.yaml
  overrides: {num_train_epochs: 2, per_device_train_batch_size: 8, save_strategy: "no", eval_fraction: 0.1,
              max_length: 256}
pairs: {n: 2, temperature: 1.0, top_p: 0.95, max_new_tokens: 48}
annotate: {annotator: noisy, pool_size: 2, flip_rate: 0.25}
reward:
  config: configs/demo/reward.yaml
  overrides: {num_train_epochs: 1, save_strategy: "no", max_length: 256}
ppo:
  config: configs/demo/ppo.yaml
  overrides: {total_episodes: 32, per_device_train_batch_size: 16, local_rollout_forward_batch_size: 16,
              num_ppo_epochs: 1, num_eval_prompts: 0, response_length: 24, use_lora: true, save_steps: 1}
compare: {temperature: 0.7, num_samples: 2, max_new_tokens: 48, sweep_prompts: 4, overopt_prompts: 4}
"""


def _toy(tmp_path, shared_data, **sections) -> Path:
    """The toy config (with `sections` added: methods, dpo, rloo ...) as a file."""
    cfg = yaml.safe_load(TOY.replace("SOURCE", str(shared_data)))
    cfg.update(sections)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _experiment_cfg(template: str = "alpaca") -> dict:
    cfg = load_pipeline_config(EXPERIMENT)
    # `template: chat` comes with the chat-template work; the plan's shape does not depend on it.
    cfg["sft"]["overrides"] = {"template": template}
    return cfg


def test_experiment_config_plans_the_issue_chain(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_SHARED_DATA", str(shared_data))
    cfg = _experiment_cfg()
    steps = {s.name: s for s in plan(cfg, tmp_path / "experiment", 0, source=str(EXPERIMENT), quiet=True)}
    run = tmp_path / "experiment"
    rows = steps["data"].actions
    # the PPO prompts and the SFT demonstrations both come from the train split, in different files
    assert sorted((r.split, r.n) for r in rows) == [
        ("eval", 200),
        ("pairs", 300),
        ("train", 256),
        ("train", 2000),
    ]
    assert all(isinstance(r, ConstraintRows) and r.source == str(shared_data.resolve()) for r in rows)
    assert steps["base"].actions == [Convert("smollm2", run / "base")]
    # the start policy is a short SFT on demonstrations (sft.fine_tune: true), not the base model adopted as it is
    (sft,) = steps["sft"].actions
    assert isinstance(sft, StageTraining) and sft.stage == "sft"
    assert sft.config.data_path == str(run / "data" / "sft_train.json")
    assert sft.config.output_dir == str(run / "sft")
    pairs = steps["pairs"].actions[0]
    assert isinstance(pairs, Pairs) and pairs.prompts == run / "data" / "pair_prompts.json" and pairs.n == 6
    assert steps["annotate"].actions[0].flip_rate >= 0.2
    ppo = steps["ppo"].actions[0]
    assert ppo.values["prompts_path"] == str(run / "data" / "ppo_prompts.json") and ppo.config.use_lora
    compare = steps["compare"].actions[0]
    assert isinstance(compare, Compare) and compare.prompts_path == run / "data" / "eval.json"
    # Best-of-N baselines over the start policy, at compare's sampling settings (issue 17 point 3)
    assert compare.paths == (
        str(run / "sft"),
        str(run / "ppo"),
        f"{run / 'sft'}+bon:4",
        f"{run / 'sft'}+bon:16",
    )
    assert steps["compare"].after == ("data", "sft", "reward", "ppo")
    assert pairs.max_new_tokens == compare.max_new_tokens == ppo.config.response_length


def test_methods_share_the_chain_after_the_start_policy(shared_data, tmp_path):
    """The constraints plan takes `methods:` as the demo's does: each method trained once from the shared steps,
    the on-policy ones on the train split's prompt file, Best-of-N handed to compare."""
    stages = {m: {"config": f"configs/demo/{m}.yaml"} for m in ("dpo", "rloo")}
    cfg = load_pipeline_config(_toy(tmp_path, shared_data, methods=["ppo", "dpo", "rloo", "bon:2"], **stages))
    run = tmp_path / "run"
    steps = {s.name: s for s in plan(cfg, run, 0, quiet=True)}
    assert list(steps) == [
        "data",
        "base",
        "sft",
        "pairs",
        "annotate",
        "reward",
        "ppo",
        "dpo",
        "rloo",
        "compare",
    ]
    for m in ("ppo", "rloo"):
        assert steps[m].actions[0].config.prompts_path == str(run / "data" / "ppo_prompts.json")
        assert steps[m].after == ("data", "sft", "reward")
    assert steps["dpo"].actions[0].config.pairs_path == str(run / "prefs.jsonl")
    assert steps["compare"].actions[0].paths == (
        *(str(run / m) for m in ("sft", "ppo", "dpo", "rloo")),
        f"{run / 'sft'}+bon:2",
    )


def test_experiment_config_asks_for_the_chat_template():
    from rlhf.templates import TEMPLATES

    raw = (REPO / "configs" / "experiments" / "constraints_sft.yaml").read_text()
    assert "\ntemplate: chat" in raw
    if "chat" not in TEMPLATES:
        pytest.skip("template: chat is not available yet (rlhf/templates.py); the experiment config needs it")


def test_the_instruction_source_must_be_set(monkeypatch, tmp_path):
    monkeypatch.delenv("RLHF_SHARED_DATA", raising=False)
    monkeypatch.delenv("RLHF_CONSTRAINTS_SOURCE", raising=False)
    with pytest.raises(UserError, match="RLHF_CONSTRAINTS_SOURCE"):
        plan(_experiment_cfg(), tmp_path / "x", 0, quiet=True)


def test_adopted_start_policy_is_an_sft_stage(tmp_path):
    from rlhf.demo import build_demo_checkpoint
    from rlhf.models import load_policy

    base = build_demo_checkpoint(tmp_path / "base", vocab_size=300, hidden_size=32, num_layers=1, num_heads=2,
                                 intermediate_size=64)  # fmt: skip
    AdoptSFT(base, tmp_path / "sft", "alpaca").run()
    stage = checkpoint.require(tmp_path / "sft", kind="sft")
    assert stage.template == "alpaca" and stage.metrics == {"fine_tuned": False}
    assert [Path(p.path) for p in stage.external_parents()] == [base.resolve()]
    loaded = load_policy(tmp_path / "sft")
    assert loaded.source.kind == "sft"
    # rerun: replaced in place; a stage of another kind is never overwritten
    AdoptSFT(base, tmp_path / "sft", "alpaca").run()
    manifest = json.loads((tmp_path / "sft" / "rlhf_stage.json").read_text())
    manifest["stage"] = "reward"
    (tmp_path / "sft" / "rlhf_stage.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="another kind"):
        AdoptSFT(base, tmp_path / "sft", "alpaca").run()


def test_demonstrations_satisfy_their_constraints(shared_data):
    task = ConstraintsTask(shared_data)
    rows = demonstration_rows(300, task.sources(), seed=1)
    assert len(rows) == 300 and len({r["instruction"] for r in rows}) == 300
    assert all(task.judge(r, r["output"]) == 1.0 for r in rows)
    assert all(split_of(parse_item(r["instruction"]).base) == "train" for r in rows)
    assert len({k for r in rows for k in r["kind"].split("+")}) >= 12


@pytest.mark.slow
def test_toy_pipeline_runs_every_step_with_the_constraints_judge(shared_data, tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text(TOY.replace("SOURCE", str(shared_data)))
    out = tmp_path / "run"
    log = run_cli("pipeline", "--config", config, "--out", out, "--quiet", timeout=1200).stdout
    for step in ("data", "base", "sft", "pairs", "annotate", "reward", "ppo", "compare"):
        assert f"pipeline: {step}: running" in log and f"pipeline: {step}: done" in log
    # the splits on disk are disjoint in instructions
    files = {name: json.loads((out / "data" / f"{name}.json").read_text()) for name in
             ("sft_train", "pair_prompts", "ppo_prompts", "eval")}  # fmt: skip
    bases = {name: {parse_item(r["instruction"]).base for r in rows} for name, rows in files.items()}
    assert not bases["pair_prompts"] & (bases["sft_train"] | bases["ppo_prompts"] | bases["eval"])
    assert not bases["eval"] & (bases["sft_train"] | bases["ppo_prompts"])
    # the annotators labelled with the constraints judge (agreement with it is measured), with label noise
    stats = json.loads((out / "prefs.jsonl.stats.json").read_text())
    assert stats["preferences"] > 0 and 0.5 < stats["agreement_with_gold"] < 1.0
    prefs = [json.loads(line) for line in (out / "prefs.jsonl").read_text().splitlines()]
    assert all(
        isinstance(p["chosen_finished"], bool) and isinstance(p["rejected_finished"], bool) for p in prefs
    )
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    for key in ("sft.gold_accuracy", "ppo.gold_accuracy", "ppo.gold_winrate_vs_sft", "ppo.gold_winrate_vs_sft_ci_low",
                "ppo.gold_winrate_vs_sft_sampled", "reward.eval_accuracy", "sft.rm_score_mean", "ppo.kl_to_sft",
                "wall_seconds", "step_seconds.pairs", "bon2.gold_winrate_vs_sft", "bon2.gold_winrate_vs_sft_sampled",
                "bon2.generated_tokens_per_answer"):  # fmt: skip
        assert key in metrics, key
    assert [r["method"] for r in metrics["comparison"]] == ["sft", "ppo", "bon2"]
    # per-constraint-type satisfaction rates of every checkpoint, greedy and sampled, for the configured types
    breakdown = metrics["breakdown"]
    assert breakdown["metric"] == "constraint_rate" and sum(breakdown["prompts"].values()) >= 16
    assert set(breakdown["prompts"]) <= {"max_sentences", "no_commas", "max_words", "lowercase"}
    for name in ("sft", "ppo", "bon2"):
        for part in breakdown["prompts"]:
            for mode in ("", "_sampled"):
                assert 0.0 <= metrics[f"{name}.constraint_rate{mode}.{part}"] <= 1.0, (name, mode, part)
    assert '<table id="breakdown">' in (out / "report" / "report.html").read_text()
    # answers on topic (a lexical proxy; the judge does not check relevance), and on topic and judged correct
    for name in ("sft", "ppo", "bon2"):
        assert 0.0 <= metrics[f"{name}.gold_accuracy_on_topic"] <= metrics[f"{name}.on_topic"] <= 1.0, name
        assert metrics[f"{name}.gold_accuracy_on_topic"] <= metrics[f"{name}.gold_accuracy"], name
    # the reward model's held-out gold agreement per constraint type, in the stage and in the report
    rm = json.loads((out / "reward" / "rlhf_stage.json").read_text())["metrics"]
    per_type = {k.split(".", 1)[1]: v for k, v in rm.items() if k.startswith("gold_agreement.")}
    assert per_type and set(per_type) <= {"max_sentences", "no_commas", "max_words", "lowercase"}, rm
    for part, rate in per_type.items():
        assert 0.0 <= rate <= 1.0 and 1 <= rm[f"gold_pairs.{part}"] <= rm["gold_pairs"]
        assert metrics[f"reward.gold_agreement.{part}"] == rate
    # over-optimisation: gold and reward-model score across the LoRA PPO run's kept checkpoints
    overopt = metrics["ppo.overoptimisation"]
    assert [p["label"] for p in overopt] == ["sft", "checkpoint-1", "checkpoint-2", "final"]
    assert all(0.0 <= p["gold_score"] <= 1.0 and isinstance(p["rm_score"], float) for p in overopt)
    assert (out / "report" / "overoptimisation_ppo.png").is_file()
    responses = [json.loads(line) for line in (out / "report" / "responses.jsonl").read_text().splitlines()]
    assert {r["task"] for r in responses} == {"constraints"}
    assert all(isinstance(r["on_topic"], bool) for r in responses)
    assert {r["checkpoint"] for r in responses} >= {"sft", "ppo", "bon2", "ppo/checkpoint-1"}
    # the report's gold scores are the task judge's, Best-of-N's and the checkpoints' included
    task = ConstraintsTask(shared_data)
    for r in responses[:50] + [r for r in responses if r["checkpoint"] in ("bon2", "ppo/checkpoint-1")][:50]:
        assert r["gold_score"] == task.judge(r, r["response"], r["finished"])
    # rerun: every step up to date
    again = run_cli("pipeline", "--config", config, "--out", out, "--quiet", timeout=600).stdout
    assert all(
        f"pipeline: {s}: up to date, skipped" in again for s in ("data", "base", "sft", "ppo", "compare")
    )


@pytest.mark.parametrize(
    "old, new, where",
    [("task: constraints", "task: constrains", "key 'task': expected demo or constraints"),
     ("config: configs/demo/sft.yaml\n", "config: configs/demo/sft.yaml\n  fine_tune: maybe\n",
      "key 'sft.fine_tune': expected true or false")],
)  # fmt: skip
def test_bad_task_keys_are_refused_in_one_line(tmp_path, old, new, where):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TOY.replace(old, new))
    res = run_cli("pipeline", "--config", bad, "--out", tmp_path / "x", check=False)
    assert res.returncode == 2 and res.stderr.strip() == f"error: {bad}:{where}"

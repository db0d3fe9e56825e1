"""The pipeline's `methods:` list: the shared steps once, one training step per method (its output under
`<run>/<method>/`), Best-of-N passed to compare as `<run>/sft+bon:N`, bad lists refused, and a rerun that retrains
only what changed."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from conftest import REPO, run_cli

from rlhf.errors import UserError

TINY = REPO / "tests" / "data" / "pipeline_tiny.yaml"
DPO = {"config": "configs/demo/dpo.yaml", "overrides": {"max_steps": 4, "per_device_train_batch_size": 8,
                                                         "save_strategy": "no"}}  # fmt: skip
RLOO = {"config": "configs/demo/rloo.yaml", "overrides": {"max_steps": 2, "per_device_train_batch_size": 16,
        "task_prompts": 32, "max_completion_length": 12, "save_strategy": "no"}}  # fmt: skip
# Best-of-N runs inside compare; this branch's compare may not read `sft+bon:N` yet (it comes with the report work).
COMPARE_HAS_BON = importlib.util.find_spec("rlhf.evaluation.best_of_n") is not None


def tiny_config(tmp_path, methods, **sections) -> tuple[dict, object]:
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(methods=methods, dpo=DPO, rloo=RLOO, **sections)
    path = tmp_path / "methods.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg, path


def test_the_plan_runs_shared_steps_once_and_each_method_into_its_own_dir(tmp_path):
    from rlhf.pipeline import load_pipeline_config, plan

    _, path = tiny_config(tmp_path, ["ppo", "dpo", "rloo", "bon:4", "bon:16"])
    run = tmp_path / "run"
    steps = {s.name: s for s in plan(load_pipeline_config(path), run, seed=0)}
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
    assert steps["dpo"].after == ("sft", "annotate") and steps["rloo"].after == ("sft", "reward")
    for m in ("ppo", "dpo", "rloo"):
        (action,) = steps[m].actions
        assert action.config.output_dir == str(run / m) and action.config.sft_path == str(run / "sft")
    assert steps["dpo"].actions[0].config.pairs_path == str(run / "prefs.jsonl")
    assert steps["rloo"].actions[0].config.reward_path == str(run / "reward")
    (compare,) = steps["compare"].actions
    assert compare.paths == tuple(str(p) for p in (run / "sft", run / "ppo", run / "dpo", run / "rloo")) + (
        f"{run / 'sft'}+bon:4",
        f"{run / 'sft'}+bon:16",
    )
    assert steps["compare"].after == ("data", "sft", "reward", "ppo", "dpo", "rloo")


def test_without_methods_the_plan_is_the_ppo_chain(tmp_path):
    from rlhf.pipeline import load_pipeline_config, plan

    names = [s.name for s in plan(load_pipeline_config(TINY), tmp_path / "run", seed=0)]
    assert names == ["data", "base", "sft", "pairs", "annotate", "reward", "ppo", "compare"]


@pytest.mark.parametrize(
    "methods, steps",
    [(["ppo", "rloo"], []),  # every method rewarded by the judge: no pairs, labels or reward model
     (["ppo", "dpo"], ["pairs", "annotate"]),  # DPO still learns from the labelled pairs
     (["ppo", "bon:4"], ["pairs", "annotate", "reward"])],  # Best-of-N still reranks by the reward model
)  # fmt: skip
def test_methods_rewarded_by_the_judge_skip_the_steps_nothing_reads(tmp_path, methods, steps):
    from rlhf.pipeline import load_pipeline_config, plan

    judged = {"reward_judge": "demo"}
    _, path = tiny_config(tmp_path, methods)
    cfg = load_pipeline_config(path)
    for m in ("ppo", "rloo"):
        cfg[m]["overrides"].update(judged)
    run = tmp_path / "run"
    plan_steps = {s.name: s for s in plan(cfg, run, seed=0)}
    trained = [m for m in methods if not m.startswith("bon")]
    assert list(plan_steps) == ["data", "base", "sft", *steps, *trained, "compare"]
    for m in ("ppo", "rloo"):
        if m in plan_steps:
            assert plan_steps[m].after == ("sft",) and plan_steps[m].actions[0].config.reward_judge == "demo"
    (compare,) = plan_steps["compare"].actions
    assert (compare.reward == run / "reward") == ("reward" in steps)
    assert ("reward" in plan_steps["compare"].after) == ("reward" in steps)


@pytest.mark.parametrize(
    "methods, where, message",
    [
        (["ppo", "a2c"], "key 'methods[1]'", "unknown method 'a2c'; expected ppo, dpo, rloo or bon:N"),
        (["bon:0"], "key 'methods[0]'", "unknown method 'bon:0'"),
        (["dpo", "dpo"], "key 'methods[1]'", "method 'dpo' is listed twice"),
        ("ppo", "key 'methods'", "expected a non-empty list of methods"),
    ],
)
def test_a_bad_methods_list_is_refused_naming_the_entry(tmp_path, methods, where, message):
    from rlhf.pipeline import load_pipeline_config

    _, path = tiny_config(tmp_path, methods)
    with pytest.raises(UserError) as e:
        load_pipeline_config(path)
    assert e.value.line().startswith(f"error: {path}:{where}: {message}")


def test_a_method_without_its_stage_config_is_refused(tmp_path):
    from rlhf.pipeline import load_pipeline_config

    cfg, path = tiny_config(tmp_path, ["ppo", "rloo"])
    del cfg["rloo"]
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match="key 'rloo.config': missing stage config path"):
        load_pipeline_config(path)
    cfg["methods"] = ["dpo", "bon:2"]
    del cfg["ppo"]  # not listed: not needed
    path.write_text(yaml.safe_dump(cfg))
    assert load_pipeline_config(path)["methods"] == ["dpo", "bon:2"]


def pipeline(config, out, *extra) -> str:
    return run_cli("pipeline", "--config", config, "--out", out, "--quiet", *extra, timeout=900).stdout


def ran(log: str) -> set[str]:
    return {line.split(":")[1].strip() for line in log.splitlines() if line.endswith(": running")}


@pytest.mark.slow  # four tiny pipeline runs, about two minutes on 2 cores
def test_rerunning_with_methods_retrains_only_what_changed(tmp_path):
    methods = ["ppo", "dpo", "rloo"] + (["bon:2"] if COMPARE_HAS_BON else [])
    cfg, path = tiny_config(tmp_path, methods)
    out = tmp_path / "run"
    first = pipeline(path, out)
    assert ran(first) == {
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
    }
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    for name in ("ppo", "dpo", "rloo", *(["bon2"] if COMPARE_HAS_BON else [])):
        assert f"{name}.gold_winrate_vs_sft" in metrics, name
        assert f"  {name}.gold_winrate_vs_sft:" in first  # the headline names every method
    for m in ("ppo", "dpo", "rloo"):
        assert json.loads((out / m / "rlhf_stage.json").read_text())["stage"] == m
    assert "step_seconds.dpo" in metrics and "step_seconds.rloo" in metrics
    # DPO's implicit reward read on the reward stage's held-out pairs, next to the reward model's reading
    dpo_stage = json.loads((out / "dpo" / "rlhf_stage.json").read_text())["metrics"]
    assert metrics["dpo.implicit_reward.gold_agreement"] == dpo_stage["gold_agreement"]
    assert metrics["dpo.implicit_reward.eval_accuracy"] == dpo_stage["eval_accuracy"]
    assert "  dpo.implicit_reward.gold_agreement:" in first and "reward.gold_agreement" in metrics

    assert ran(pipeline(path, out)) == set()  # nothing changed: every step skipped

    manifests = {m: (out / m / "rlhf_stage.json").read_bytes() for m in ("sft", "reward", "ppo", "rloo")}
    cfg["dpo"]["overrides"]["beta"] = 0.2  # one method's settings
    path.write_text(yaml.safe_dump(cfg))
    assert ran(pipeline(path, out)) == {"dpo", "compare"}
    assert json.loads((out / "dpo" / "rlhf_stage.json").read_text())["config"]["beta"] == 0.2
    assert all((out / m / "rlhf_stage.json").read_bytes() == b for m, b in manifests.items())

    assert ran(pipeline(path, out, "--force", "reward")) == {"reward", "ppo", "rloo", "compare"}  # not dpo


def test_a_chain_rewarded_by_the_judge_runs_without_pairs_labels_or_reward_model(tmp_path):
    cfg, path = tiny_config(tmp_path, ["ppo"])
    cfg["ppo"]["overrides"]["reward_judge"] = "demo"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    first = pipeline(path, out)
    assert ran(first) == {"data", "base", "sft", "ppo", "compare"}
    assert not any((out / name).exists() for name in ("pairs.jsonl", "prefs.jsonl", "reward"))
    assert json.loads((out / "ppo" / "rlhf_stage.json").read_text())["config"]["reward_judge"] == "demo"
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert 0 <= metrics["ppo.gold_winrate_vs_sft"] <= 1 and "  ppo.gold_winrate_vs_sft:" in first
    assert not [k for k in metrics if k.startswith("reward.") or "rm_" in k]  # nothing read a reward model
    assert "step_seconds.ppo" in metrics and "step_seconds.reward" not in metrics
    assert ran(pipeline(path, out)) == set()


# `base:` lets a variant config state only what differs from the chain it extends.


@pytest.mark.parametrize(
    "variant, base",
    [("configs/demo/methods.yaml", "configs/demo/pipeline.yaml"),
     ("configs/experiments/methods.yaml", "configs/experiments/constraints.yaml")],
)  # fmt: skip
def test_a_methods_config_shares_every_step_identity_with_the_chain_it_extends(
    variant, base, shared_data, monkeypatch, tmp_path
):
    """Run into the same dir, a methods variant reuses the base chain's finished steps: same data, start policy,
    pairs, labels and reward model (same identities), and only the added methods and compare differ."""
    from rlhf.pipeline import chain_identities, load_pipeline_config, plan

    monkeypatch.setenv("RLHF_SHARED_DATA", str(shared_data))
    monkeypatch.chdir(REPO)  # stage config paths are relative to the repo root
    run = tmp_path / "run"
    ids = {}
    for path in (variant, base):
        cfg = load_pipeline_config(REPO / path)
        ids[path] = chain_identities(plan(cfg, run, 0, source=path, quiet=True), 0)
    shared = ("data", "base", "sft", "pairs", "annotate", "reward", "ppo")
    assert {s: ids[variant][s] for s in shared} == {s: ids[base][s] for s in shared}
    assert {"dpo", "rloo"} <= set(ids[variant]) and not {"dpo", "rloo"} & set(ids[base])
    assert ids[variant]["compare"] != ids[base]["compare"]


def test_the_judge_ablation_config_shares_the_start_and_trains_against_the_judge(
    shared_data, monkeypatch, tmp_path
):
    """configs/experiments/judge.yaml: the experiment's data, base model and start policy (same
    identities), PPO and RLOO rewarded by the gold judge, and no pairs, labels or reward model."""
    from rlhf.pipeline import chain_identities, load_pipeline_config, plan

    monkeypatch.setenv("RLHF_SHARED_DATA", str(shared_data))
    monkeypatch.chdir(REPO)
    run, ids, steps = tmp_path / "run", {}, {}
    for path in ("configs/experiments/judge.yaml", "configs/experiments/constraints.yaml"):
        steps[path] = plan(load_pipeline_config(REPO / path), run, 0, source=path, quiet=True)
        ids[path] = chain_identities(steps[path], 0)
    judge, experiment = ids.values()
    assert list(judge) == ["data", "base", "sft", "ppo", "rloo", "compare"]
    assert {s: judge[s] for s in ("data", "base", "sft")} == {
        s: experiment[s] for s in ("data", "base", "sft")
    }
    by_name = {s.name: s for s in steps["configs/experiments/judge.yaml"]}
    for m in ("ppo", "rloo"):
        assert by_name[m].actions[0].config.reward_judge == "constraints" and by_name[m].after == (
            "data",
            "sft",
        )
    assert by_name["compare"].actions[0].reward is None


def test_a_variant_replaces_only_the_keys_it_gives(tmp_path):
    from rlhf.pipeline import load_pipeline_config

    base = yaml.safe_load(TINY.read_text())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "chain.yaml").write_text(yaml.safe_dump(base))
    variant = tmp_path / "variant.yaml"
    variant.write_text(
        "base: configs/chain.yaml\nmethods: [dpo]\ndpo: {config: configs/demo/dpo.yaml}\n"
        "pairs: {n: 3}\nreward: {overrides: {num_train_epochs: 2}}\n"
    )
    cfg = load_pipeline_config(variant)
    assert (
        "base" not in cfg and cfg["methods"] == ["dpo"] and cfg["dpo"] == {"config": "configs/demo/dpo.yaml"}
    )
    assert cfg["pairs"] == {**base["pairs"], "n": 3}  # the other pair settings are the base's
    # an `overrides` mapping is one value: replaced whole, next to the base's stage config path
    assert cfg["reward"] == {"config": base["reward"]["config"], "overrides": {"num_train_epochs": 2}}
    assert {k: v for k, v in cfg.items() if k not in ("methods", "dpo", "pairs", "reward")} == {
        k: v for k, v in base.items() if k not in ("methods", "pairs", "reward")
    }


@pytest.mark.parametrize(
    "files, where, message",
    [
        ({"v.yaml": "base: missing.yaml\n"}, ("v.yaml", "key 'base'"), "missing.yaml not found"),
        ({"v.yaml": "base: [a.yaml]\n"}, ("v.yaml", "key 'base'"), "expected the path of a pipeline config"),
        ({"v.yaml": "base: b.yaml\n", "b.yaml": "base: v.yaml\n"}, ("b.yaml", "key 'base'"), "in a loop"),
        ({"v.yaml": "base: v.yaml\n"}, ("v.yaml", "key 'base'"), "in a loop"),
        # a bad key in the base file is reported in that file, not in the variant that names it
        ({"v.yaml": "base: b.yaml\nseed: 1\n", "b.yaml": "pairs: {samples: 4}\n"}, ("b.yaml", "pairs.samples"),
         "unknown key"),
    ],
)  # fmt: skip
def test_a_bad_base_is_one_error_naming_the_file_and_key(tmp_path, files, where, message):
    from rlhf.pipeline import load_pipeline_config

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError) as e:
        load_pipeline_config(tmp_path / "v.yaml")
    text = str(e.value)
    assert message in text and all(w in text for w in where), text


DEMO_PIPELINE = REPO / "configs" / "demo" / "pipeline.yaml"


@pytest.mark.parametrize(
    "variant, base, where, message",
    [
        # a value checked after the merge is named in the file that holds it: the base ...
        ("seed: 1\n", "task: democ\n", ("b.yaml", "key 'task'"), "expected demo or constraints"),
        ("seed: 1\n", "methods: [a2c]\n", ("b.yaml", "key 'methods[0]'"), "unknown method 'a2c'"),
        ("seed: 1\n", "sft: {fine_tune: 3}\n", ("b.yaml", "key 'sft.fine_tune'"), "expected true or false"),
        ("seed: 1\n", "pairs: {n: 1}\n", ("b.yaml", "key 'pairs.n'"), "expected an integer >= 2, got 1"),
        ("seed: 1\n", "annotate: {flip_rate: 1.5}\n", ("b.yaml", "key 'annotate.flip_rate'"),
         "expected a number in [0, 1], got 1.5"),
        # ... or the variant, when it sets the key over a good base value
        ("pairs: {top_p: 0}\n", "pairs: {n: 4}\n", ("v.yaml", "key 'pairs.top_p'"), "expected a number in (0, 1]"),
        ("annotate: {annotator: oracle}\n", "", ("v.yaml", "key 'annotate.annotator'"),
         "expected gold, noisy, human or reward:<reward stage dir>, got 'oracle'"),
        ("compare: {num_samples: 0}\n", "", ("v.yaml", "key 'compare.num_samples'"), "expected an integer >= 1"),
        ("annotate: {pairing: every}\n", "", ("v.yaml", "key 'annotate.pairing'"), "expected one of"),
        ("annotate: {credit: some}\n", "", ("v.yaml", "key 'annotate.credit'"), "expected one of"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_in_the_file_of_the_chain_that_holds_it(tmp_path, variant, base, where, message):
    """Pairs, annotate and compare values are checked when the config loads (they are read only after the SFT
    step), and every value checked after the merge names the file of the base chain that sets it."""
    from rlhf.pipeline import load_pipeline_config

    (tmp_path / "b.yaml").write_text(f"base: {DEMO_PIPELINE}\n{base}")
    (tmp_path / "v.yaml").write_text(f"base: b.yaml\n{variant}")
    with pytest.raises(UserError) as e:
        load_pipeline_config(tmp_path / "v.yaml")
    text = str(e.value)
    assert message in text and all(w in text for w in where), text
    assert str(tmp_path / where[0]) in text  # the full path of that file


def test_a_bad_stage_override_in_a_base_names_the_base(tmp_path, monkeypatch):
    from rlhf.pipeline import load_pipeline_config, plan

    monkeypatch.chdir(REPO)  # stage config paths are relative to the repo root

    reward = "reward: {config: configs/demo/reward.yaml, overrides: {learning_rate: -1}}\n"
    (tmp_path / "b.yaml").write_text(f"base: {DEMO_PIPELINE}\n{reward}")
    (tmp_path / "v.yaml").write_text("base: b.yaml\nseed: 1\n")
    cfg = load_pipeline_config(tmp_path / "v.yaml")
    with pytest.raises(UserError) as e:
        plan(cfg, tmp_path / "run", 0, source=str(tmp_path / "v.yaml"), quiet=True)
    assert str(e.value) == (
        f"error: {tmp_path / 'b.yaml'} (reward):key 'learning_rate': expected a finite number > 0, got -1"
    )


@pytest.mark.parametrize(
    "variant, message",
    [("annotate: {credit: partial}\n", "these are demo prompts"),  # the demo judge has no parts to credit
     ("task: constraints\nannotate: {credit: partial, annotator: human}\n", "only to the gold and noisy annotators")],
)  # fmt: skip
def test_partial_credit_the_annotate_step_could_not_give_is_refused_when_the_config_loads(
    tmp_path, variant, message
):
    from rlhf.pipeline import load_pipeline_config

    (tmp_path / "v.yaml").write_text(f"base: {DEMO_PIPELINE}\n{variant}")
    with pytest.raises(UserError) as e:
        load_pipeline_config(tmp_path / "v.yaml")
    assert message in str(e.value) and "key 'annotate.credit'" in str(e.value), str(e.value)
    assert str(tmp_path / "v.yaml") in str(e.value)

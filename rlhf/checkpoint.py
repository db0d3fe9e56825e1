"""The stage manifest (`rlhf_stage.json`): the contract that chains SFT -> reward -> PPO.

A stage dir is finished only once its manifest exists; the manifest is written last, atomically.
Parents are recorded relative to the manifest so a run dir can be moved or shared.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.distributed import is_main_process, world_size
from rlhf.errors import UserError, note_output_location
from rlhf.io import atomic_write_json, atomic_write_text, require_writable_dir, sha256_file, sha256_text

MANIFEST = "rlhf_stage.json"
SCHEMA_VERSION = 1
KINDS = ("sft", "reward", "ppo", "dpo", "rloo")
EXTERNAL = "external"  # the parent kind of a model the kit did not write (no manifest)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


@dataclass
class Stage:
    """A finished stage dir and its manifest."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)

    @property
    def kind(self) -> str:
        return self.manifest["stage"]

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def sha256(self) -> str:
        return sha256_file(self.manifest_path)

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.manifest.get("tokenizer_fingerprint", "")

    @property
    def template(self) -> str:
        return self.manifest.get("template", "alpaca")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    @property
    def base_model(self) -> str | None:
        return self.manifest.get("base_model")

    @property
    def location(self) -> Path:
        """What an error about this parent names."""
        return self.manifest_path

    def parents(self) -> list[Stage]:
        """The parent stages (external models, which have no manifest, are in `external_parents`)."""
        return [require(p, kind=None, _role=f"parent of {self.path}") for p in self.parent_paths()]

    def parent_paths(self) -> list[Path]:
        out = []
        for ref in self.manifest.get("parents", []):
            if ref.get("kind") == EXTERNAL:
                continue
            rel = self.path / ref["path"]
            out.append(rel if rel.exists() or not ref.get("abs_path") else Path(ref["abs_path"]))
        return out

    def external_parents(self) -> list[External]:
        """The models this stage was made from that the kit did not write (a plain HF dir or a hub id)."""
        return [
            External.from_ref(ref, self.path)
            for ref in self.manifest.get("parents", [])
            if ref.get("kind") == EXTERNAL
        ]

    def ref(self, out: Path) -> dict[str, Any]:
        """This stage as a parent entry in the manifest of the stage dir `out`."""
        return {
            "kind": self.kind,
            "path": os.path.relpath(self.path.resolve(), out.resolve()),
            "abs_path": str(self.path.resolve()),
            "manifest_sha256": self.sha256,
        }


@dataclass
class External:
    """A model the kit did not write, used as a parent: a plain HF model dir (e.g. a bare TRL RewardTrainer output)
    or a hub id. It has no manifest; its lineage entry records where it was (relative and absolute path, or the hub
    id with the commit it resolved to) and its tokenizer fingerprint."""

    source: str  # a local path or a hub id, as it resolves now
    role: str  # "policy" or "reward"
    tokenizer_fingerprint: str = ""
    revision: str | None = None  # the hub commit, when known
    kind: str = field(default=EXTERNAL, init=False)
    template: str = field(default="alpaca", init=False)
    metrics: dict[str, Any] = field(default_factory=dict, init=False)

    @property
    def path(self) -> Path | str:
        """A local dir as a Path, a hub id as a string (both load with from_pretrained)."""
        local = Path(self.source).expanduser()
        return local if local.exists() else self.source

    @property
    def base_model(self) -> str:
        return self.source

    @property
    def location(self) -> str:
        return self.source

    def ref(self, out: Path) -> dict[str, Any]:
        local = isinstance(self.path, Path)
        return {
            "kind": EXTERNAL,
            "role": self.role,
            "path": os.path.relpath(self.path.resolve(), out.resolve()) if local else None,
            "abs_path": str(self.path.resolve()) if local else None,
            "hub_id": None if local else self.source,
            "revision": self.revision,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
        }

    @classmethod
    def from_ref(cls, ref: dict[str, Any], stage_dir: Path) -> External:
        """An external parent entry of the manifest in `stage_dir`: the relative path first (a moved run), then the
        absolute one, then the hub id."""
        source = ref.get("hub_id")
        if ref.get("path") is not None:
            rel = stage_dir / ref["path"]
            source = str(rel.resolve() if rel.exists() or not ref.get("abs_path") else ref["abs_path"])
        return cls(
            str(source), ref.get("role", "policy"), ref.get("tokenizer_fingerprint", ""), ref.get("revision")
        )


def external(name_or_path: str | Path, role: str) -> External:
    """A model the kit did not write as a parent of role `policy` (any causal LM dir or hub id) or `reward` (any
    sequence-classification model with one output), checked without loading weights; its tokenizer is read for
    the fingerprint. One UserError for anything that cannot be used."""
    from rlhf.models import load_tokenizer, locate_model

    source = locate_model(name_or_path, role=role)
    if source.stage is not None:
        raise UserError(
            f"expected a model without {MANIFEST}, found a finished {source.kind} stage", source.path
        )
    if source.base is not None:
        raise UserError(
            "a LoRA adapter dir cannot be a parent here; merge it into its base model first", source.path
        )
    name = source.path
    return External(
        str(Path(name).resolve()) if Path(name).exists() else name,
        role,
        tokenizer_fingerprint(load_tokenizer(name)),
        _hub_revision(name),
    )


def require_parent(path: str | Path, kind: str, role: str) -> Stage | External:
    """A finished stage of `kind` at `path`, or a model the kit did not write (no manifest and no trace of one of
    our runs, see rlhf.models.is_unfinished_run) as an external parent of `role` ("policy" or "reward")."""
    from rlhf.models import is_hub_id

    if is_finished(path) or not (Path(path).is_dir() or is_hub_id(str(path))):
        return require(path, kind=kind)  # a missing path or a file: refused as a checkpoint
    return external(path, role=role)


def _hub_revision(name_or_path: str) -> str | None:
    """The hub commit a model resolves to: a hub id's cached snapshot, or a dir inside the hub cache's snapshots/."""
    path = Path(name_or_path)
    if not path.exists():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
        path = Path(cached).parent if isinstance(cached, str) else path
    parts = path.resolve().parts if path.exists() else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"manifest is not valid JSON ({e})", mpath) from None
    if not isinstance(manifest, dict):
        raise UserError("manifest is not a JSON object", mpath)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(
            f"unknown manifest schema version {version!r} (this kit reads version {SCHEMA_VERSION})", mpath
        )
    if manifest.get("stage") not in KINDS:
        raise UserError(f"unknown stage kind {manifest.get('stage')!r}; expected one of {KINDS}", mpath)
    return manifest


def is_finished(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def require(path: str | Path, kind: str | tuple[str, ...] | None, _role: str = "checkpoint") -> Stage:
    """Return the finished stage at `path`, or raise one clear error: missing, unfinished, wrong kind, no weights."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{_role} does not exist", path)
    if not path.is_dir():
        raise UserError(f"{_role} is not a directory", path)
    if not is_finished(path):
        raise UserError(
            f"unfinished run: no {MANIFEST} (the stage did not finish; rerun it or use --resume)", path
        )
    manifest = read_manifest(path)
    stage = Stage(path, manifest)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and stage.kind not in kinds:
        raise UserError(f"expected a finished {' or '.join(kinds)} stage, found a {stage.kind} stage", path)
    if not any((path / w).is_file() for w in WEIGHT_FILES):
        raise UserError(f"missing weight file (expected one of {', '.join(WEIGHT_FILES)})", path)
    return stage


def require_same_tokenizer(a: Stage | External, b: Stage | External) -> None:
    """Policy and reward model must share a tokenizer, or token ids mean different things (the kit passes the
    policy's token ids to the reward model as they are; it does not decode and re-encode them)."""
    if a.tokenizer_fingerprint != b.tokenizer_fingerprint:
        raise UserError(
            f"tokenizer fingerprint differs from {a.location} ({a.tokenizer_fingerprint[:12]} vs "
            f"{b.tokenizer_fingerprint[:12]}): the two models use different tokenizers",
            b.location,
        )


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what makes token ids mean something: the vocab, added tokens and special tokens."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    special = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    return sha256_text(json.dumps({"vocab": vocab, "special": special}, ensure_ascii=False))


def check_output_dir(output_dir: str | Path, overwrite: bool = False) -> None:
    """The refusal `begin` makes, without touching anything: call it first, before data and model loading, so a
    finished stage is refused at once (and with one stderr line, before any loading progress bar)."""
    out = Path(output_dir)
    if is_finished(out) and not overwrite:
        raise UserError("holds a finished stage; pass --overwrite true to replace it", out)
    if out.exists() and not out.is_dir():
        raise UserError("output_dir exists and is not a directory", out)


def begin(output_dir: str | Path, overwrite: bool = False) -> Path:
    """Prepare a stage output dir. Refuses to clobber a finished stage unless `overwrite`; checks it is writable.

    In a multi-process run every rank makes the same check, but only rank 0 touches the dir (it alone writes
    the stage): two ranks unlinking one manifest would race."""
    out = Path(output_dir)
    check_output_dir(out, overwrite)
    if not is_main_process():
        return out
    if is_finished(out):
        # Mark the dir unfinished before anything else is touched, so a crash never leaves a stale manifest
        # next to new weights. The old run's checkpoint-N dirs go too: `resume: auto` must never continue the new
        # run from the finished one.
        (out / MANIFEST).unlink(missing_ok=True)
        for d in out.glob("checkpoint-*"):
            shutil.rmtree(d, ignore_errors=True)
    note_output_location(out)
    return require_writable_dir(out)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    src = Path(__file__).resolve().parents[1]
    try:
        res = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def finish(
    out: str | Path,
    kind: str,
    *,
    config: dict[str, Any],
    tokenizer,
    parents: list[Stage | External] = (),
    metrics: dict[str, Any] | None = None,
    data_fingerprint: str | None = None,
    started_at: float | None = None,
    template: str = "alpaca",
    base_model: str | None = None,
    extra: dict[str, Any] | None = None,
    adapter: bool = False,
    repo_id: str | None = None,
) -> Stage:
    """Write the model card and then, last, the manifest. Returns the finished Stage. `adapter`: the weights are a
    LoRA adapter; `repo_id`: the hub repo the stage will be pushed to (named in the card's load snippet)."""
    from rlhf.model_card import model_card

    out = Path(out)
    assert kind in KINDS
    metrics = dict(metrics or {})
    card = model_card(
        out, kind, parents=list(parents), metrics=metrics, base_model=base_model, config=config,
        template=template, adapter=adapter, repo_id=repo_id,
    )  # fmt: skip
    atomic_write_text(out / "README.md", str(card))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "stage": kind,
        "parents": [p.ref(out) for p in parents],
        "base_model": base_model,
        "template": template,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "config": config,
        "data_fingerprint": data_fingerprint,
        "metrics": metrics,
        "versions": _versions(),
        "git_commit": _git_commit(),
        "started_at": started_at,
        "finished_at": time.time(),
        "processes": world_size(),
        **(extra or {}),
    }
    atomic_write_json(out / MANIFEST, manifest)
    return Stage(out, manifest)


def lineage(path: str | Path) -> list[Stage]:
    """The stage at `path` followed by its ancestors, depth first (for `rlhf inspect`)."""
    seen, order, todo = set(), [], [Path(path)]
    while todo:
        p = todo.pop(0)
        key = str(p.resolve())
        if key in seen:
            continue
        seen.add(key)
        st = require(p, kind=None)
        order.append(st)
        todo.extend(st.parent_paths())
    return order

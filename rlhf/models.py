"""Loading models and tokenizers, and Alpaca's special-token handling.

The same call loads a hub id or a local dir. `trust_remote_code` is off unless the caller turns it on, and
weights are read through safetensors only (`use_safetensors=True`): no pickle from user files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rlhf.errors import UserError

if TYPE_CHECKING:
    from rlhf.checkpoint import Stage

IGNORE_INDEX = -100
DEFAULT_PAD_TOKEN = "[PAD]"
DEFAULT_EOS_TOKEN = "</s>"
DEFAULT_BOS_TOKEN = "<s>"
DEFAULT_UNK_TOKEN = "<unk>"


def _looks_local(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a slash, or starting like a path, is a local path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def is_hub_id(name: str) -> bool:
    """Whether `name` reads as a hub model id ("name" or "org/name") rather than a local path."""
    return not Path(name).expanduser().exists() and not _looks_local(name)


def _resolve(name_or_path: str | Path, required: str = "config.json") -> str:
    name = str(name_or_path)
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise UserError("expected a model directory (config.json + safetensors)", p)
        if not (p / required).is_file():
            raise UserError(f"not a model directory: no {required}", p)
        return str(p)
    if _looks_local(name):
        raise UserError("model path does not exist", name)
    return name  # a hub id; transformers resolves it (from the local cache when offline)


# The JSON files transformers reads from a model dir, and those its tokenizer loader reads. A damaged one (cut short
# by a full disk or a partial copy) is named in one error here instead of surfacing as a library traceback.
MODEL_JSON_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "adapter_config.json",
)
TOKENIZER_JSON_FILES = (  # AutoTokenizer reads config.json too, to find the tokenizer class
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def check_json_files(model_dir: Path, names: tuple[str, ...]) -> None:
    """Each of `names` present in `model_dir` parses as JSON, or one UserError naming the file."""
    for name in names:
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"not valid JSON ({e}): the file is damaged or cut short", path) from None


def check_safetensors_files(model_dir: Path) -> None:
    """Every *.safetensors file in `model_dir` has a whole header and the data it announces (safetensors checks
    both when opening; only the header is read), or one UserError naming the file."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(model_dir.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise UserError(
                f"not a readable safetensors file ({e}): the file is damaged or cut short", path
            ) from None


def _custom_code_refusal(e: Exception, name: str) -> UserError | None:
    """transformers' ValueError for a model whose config names its own code (auto_map) while trust_remote_code
    is off, as one clear refusal; None for any other error."""
    if "trust_remote_code" not in str(e):
        return None
    return UserError(
        "contains custom model code (auto_map in its config), which is not run unless you set "
        "trust_remote_code: true; do that only for code you have read and trust",
        name,
    )


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False, padding_side: str = "right"):
    from transformers import AutoTokenizer

    name = _resolve(name_or_path, required="tokenizer_config.json")
    if Path(name).is_dir():
        check_json_files(Path(name), TOKENIZER_JSON_FILES)
    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise UserError(f"cannot load a tokenizer ({str(e).splitlines()[0]})", name) from None
    except ValueError as e:
        if (refusal := _custom_code_refusal(e, name)) is None:
            raise
        raise refusal from None
    tok.padding_side = padding_side
    return tok


PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def _load(auto_cls, name_or_path, *, trust_remote_code: bool, dtype, **kwargs):
    name = _resolve(name_or_path)
    local = Path(name)
    if (
        local.is_dir()
        and not any(local.glob("*.safetensors"))
        and any((local / f).exists() for f in PICKLE_WEIGHTS)
    ):
        raise UserError(
            "holds weights only in a pickle-based format (pytorch_model.bin or similar), which this kit never "
            "loads: unpickling can run code. Convert them to model.safetensors where you trust the file",
            name,
        )
    if local.is_dir():
        check_json_files(local, MODEL_JSON_FILES)
        check_safetensors_files(local)
    try:
        return auto_cls.from_pretrained(
            name, trust_remote_code=trust_remote_code, dtype=dtype, use_safetensors=True, **kwargs
        )
    except OSError as e:
        raise UserError(f"cannot load model weights ({str(e).splitlines()[0]})", name) from None
    except ValueError as e:
        if (refusal := _custom_code_refusal(e, name)) is None:
            raise
        raise refusal from None


def load_causal_lm(name_or_path: str | Path, *, trust_remote_code: bool = False, dtype=torch.float32):
    """A causal LM from a hub id or a local dir (safetensors only)."""
    from transformers import AutoModelForCausalLM

    return _load(AutoModelForCausalLM, name_or_path, trust_remote_code=trust_remote_code, dtype=dtype)


def load_scalar_head_model(
    name_or_path: str | Path, tokenizer, *, trust_remote_code: bool = False, dtype=torch.float32
):
    """`AutoModelForSequenceClassification(num_labels=1)`: the reward / value model shape TRL expects.

    Loading a causal-LM dir this way keeps the backbone and initialises a fresh scalar `score` head."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized score weights" is expected here, not news
    try:
        model = _load(
            AutoModelForSequenceClassification,
            name_or_path,
            trust_remote_code=trust_remote_code,
            dtype=dtype,
            num_labels=1,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last non-pad token
    return model


def smart_tokenizer_and_embedding_resize(special_tokens_dict: dict, tokenizer, model) -> int:
    """Stanford Alpaca's resize: add special tokens, resize embeddings, and set every new row of the input AND
    output embeddings to the mean of the old rows (a far better start than random rows)."""
    num_new_tokens = tokenizer.add_special_tokens(special_tokens_dict)
    if num_new_tokens == 0:
        return 0
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        input_embeddings = model.get_input_embeddings().weight
        input_embeddings[-num_new_tokens:] = input_embeddings[:-num_new_tokens].mean(dim=0, keepdim=True)
        output = model.get_output_embeddings()
        if output is not None and output.weight is not input_embeddings:
            output_embeddings = output.weight
            output_embeddings[-num_new_tokens:] = output_embeddings[:-num_new_tokens].mean(
                dim=0, keepdim=True
            )
    return num_new_tokens


def missing_special_tokens(tokenizer) -> dict[str, str]:
    """The special tokens Alpaca adds when a tokenizer lacks them (pad [PAD], eos </s>, bos <s>, unk <unk>).

    A pad equal to eos is treated as missing: PPO and batched generation need them distinct."""
    special: dict[str, str] = {}
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        special["pad_token"] = DEFAULT_PAD_TOKEN
    if tokenizer.eos_token is None:
        special["eos_token"] = DEFAULT_EOS_TOKEN
    if tokenizer.bos_token is None:
        special["bos_token"] = DEFAULT_BOS_TOKEN
    if tokenizer.unk_token is None:
        special["unk_token"] = DEFAULT_UNK_TOKEN
    return special


def sync_special_token_ids(model, tokenizer) -> None:
    """Make the model's config (and generation config) agree with the tokenizer on pad/eos/bos ids."""
    for obj in (model.config, getattr(model, "generation_config", None)):
        if obj is None:
            continue
        obj.pad_token_id = tokenizer.pad_token_id
        obj.eos_token_id = tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            obj.bos_token_id = tokenizer.bos_token_id


def save_pretrained_dir(model, tokenizer, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------------
# One loader for every consumer (generate, pairs, compare, the labeling app, score, annotators): what a path
# names is found first, without reading weights (`locate_model`), so a command checks all its inputs before the
# first load; then `load_policy` / `load_reward_model` load it the same way everywhere.

POLICY_KINDS = ("sft", "ppo", "dpo", "rloo")
REWARD_KINDS = ("reward",)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class ModelSource:
    """What a path or hub id names.

    kind: a stage kind (`sft`, `ppo`, `reward`) for a finished stage dir; `checkpoint` for a complete trainer
    `checkpoint-N` dir; `adapter` for a plain peft LoRA adapter dir; `model` for a plain HF model dir; `hub` for a
    hub id. `base` is the model a LoRA adapter is merged onto (a PPO adapter stage's sft parent, else the
    adapter config's `base_model_name_or_path`)."""

    path: str
    kind: str
    template: str = "alpaca"
    stage: Stage | None = None
    base: ModelSource | None = None

    @property
    def note(self) -> str | None:
        """What a user should know about how this source was read (None for a finished stage)."""
        if self.stage is not None:
            return None
        if self.kind == "checkpoint":
            return f"note: {self.path} is a trainer checkpoint: loaded as a plain model with the {self.template} template"
        from rlhf.checkpoint import MANIFEST

        return f"note: {self.path} has no {MANIFEST}: loaded as a plain HF model with the {self.template} template"


@dataclass
class LoadedModel:
    """A model with its tokenizer (special-token ids in agreement) and the source it was read from."""

    model: object
    tokenizer: object
    source: ModelSource

    @property
    def template(self) -> str:
        return self.source.template


def is_unfinished_run(path: str | Path) -> bool:
    """Whether `path` is a run dir of ours that did not finish: no manifest, but a trace of a stage run — its
    log.jsonl, checkpoint-N dirs, or the model card a stage writes (it names the manifest), which an interrupted
    `--overwrite` leaves next to the old weights. A plain HF model dir (a hub download or `rlhf convert` output,
    README.md included) has none of these; its weights are loaded as they are."""
    from rlhf.checkpoint import MANIFEST, is_finished
    from rlhf.logs import LOG_FILE

    path = Path(path)
    if is_finished(path):
        return False
    if (path / LOG_FILE).exists() or any(path.glob("checkpoint-*")):
        return True
    readme = path / "README.md"
    return readme.is_file() and MANIFEST in readme.read_text(encoding="utf-8", errors="replace")


def _is_checkpoint_dir(path: Path) -> bool:
    return path.name.startswith("checkpoint-") and path.name[len("checkpoint-") :].isdigit()


def _hub_source(name: str) -> ModelSource:
    """A hub id; offline, it must be in the local cache (refused now, not after other models have loaded)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise UserError("no such local dir, and not a hub model id in the local cache (offline)", name)
    return ModelSource(name, "hub")


def _adapter_base(adapter_dir: Path) -> ModelSource:
    """The model a plain peft adapter dir belongs on: its `base_model_name_or_path`, a relative path read against
    the adapter dir first (how a moved run keeps its lineage), then the current directory (as peft reads it)."""
    config_path = adapter_dir / ADAPTER_CONFIG
    check_json_files(adapter_dir, (ADAPTER_CONFIG,))
    base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise UserError(
            "no base_model_name_or_path: cannot tell which model the adapter belongs on", config_path
        )
    if not Path(base).is_absolute() and (adapter_dir / base).exists():
        base = str(adapter_dir / base)
    return locate_model(base, role="policy")


def _check_adapter(adapter_dir: Path) -> None:
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        pickled = (adapter_dir / "adapter_model.bin").is_file()
        raise UserError(
            "holds adapter weights only as a pickle (adapter_model.bin), which this kit never loads"
            if pickled
            else f"LoRA adapter dir without {ADAPTER_WEIGHTS}",
            adapter_dir,
        )


def _check_reward_config(model_dir: Path) -> None:
    """A plain dir used as a reward model must be a sequence-classification model with one output: a causal LM
    here would silently get a freshly initialised (random) score head."""
    check_json_files(model_dir, ("config.json",))
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    archs = config.get("architectures") or []
    labels = (
        len(config["id2label"]) if isinstance(config.get("id2label"), dict) else config.get("num_labels", 2)
    )
    if not any(str(a).endswith("ForSequenceClassification") for a in archs) or labels != 1:
        raise UserError(
            f"not a reward model: expected a sequence-classification model with one output, found "
            f"{', '.join(map(str, archs)) or 'no architectures'} with {labels} label(s)",
            model_dir / "config.json",
        )


def locate_model(name_or_path: str | Path, role: str = "policy") -> ModelSource:
    """What `name_or_path` names, checked without loading weights; one UserError for anything that cannot load.

    role `policy` takes finished sft/ppo stages, `reward` finished reward stages; both take complete checkpoint-N
    dirs, plain HF model dirs (README.md or not) and hub ids, and `policy` LoRA adapter dirs. Refused: a missing
    path, a stage of the other role, an unfinished run (no manifest but signs of a stage run, see
    `is_unfinished_run`), and a checkpoint-N cut short before transformers' last write."""
    from rlhf import checkpoint
    from rlhf.training import TRAINER_STATE, is_complete_checkpoint

    kinds = {"policy": POLICY_KINDS, "reward": REWARD_KINDS}[role]
    name = str(name_or_path)
    path = Path(name).expanduser()
    if not path.exists():
        if _looks_local(name):
            raise UserError("model path does not exist", name)
        source = _hub_source(name)
        if role == "reward":
            _check_reward_config(_hub_config_dir(name))
        return source
    if not path.is_dir():
        raise UserError("expected a model directory (config.json + safetensors)", path)
    if checkpoint.is_finished(path):
        stage = checkpoint.require(path, kind=kinds)
        base = None
        if (
            path / ADAPTER_WEIGHTS
        ).is_file():  # an unmerged LoRA PPO stage: onto its sft (or external) parent
            parents = [p for p in stage.parent_paths() if checkpoint.require(p, kind=None).kind == "sft"]
            parents += [e.path for e in stage.external_parents() if e.role == "policy"]
            if not parents:
                raise UserError(
                    "LoRA adapter stage without an sft parent to load it onto", stage.manifest_path
                )
            base = locate_model(parents[0], role="policy")
        source = ModelSource(str(path), stage.kind, stage.template, stage, base)
    elif _is_checkpoint_dir(path):
        if not is_complete_checkpoint(path):
            raise UserError(
                f"unfinished run: checkpoint cut short (no complete {TRAINER_STATE}); "
                "use a complete checkpoint-N or the finished stage dir",
                path,
            )
        run = path.parent
        template = checkpoint.require(run, kind=None).template if checkpoint.is_finished(run) else "alpaca"
        base = None
        if (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file():
            # A LoRA run's checkpoint: onto the base its finished run loads onto (found through the manifest, so a
            # moved run still loads), else the one its adapter config names.
            run_base = locate_model(run, role).base if checkpoint.is_finished(run) else None
            base = run_base or _adapter_base(path)
        source = ModelSource(str(path), "checkpoint", template, base=base)
    elif is_unfinished_run(path):
        raise UserError(
            f"unfinished run: no {checkpoint.MANIFEST} (the stage did not finish; rerun it or use --resume)",
            path,
        )
    elif (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file():
        source = ModelSource(str(path), "adapter", base=_adapter_base(path))
    elif not (path / "config.json").is_file():
        raise UserError("not a model directory: no config.json", path)
    else:
        source = ModelSource(str(path), "model")
    if source.base is not None:
        if role != "policy":
            raise UserError(
                "a LoRA adapter cannot be used as a reward model; merge it into its base first", path
            )
        _check_adapter(path)
    if role == "reward" and source.stage is None:
        _check_reward_config(path)
    return source


def _hub_config_dir(name: str) -> Path:
    """The local dir holding a hub model's config.json (downloaded when online and not cached)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if not isinstance(cached, str):
        try:
            cached = hf_hub_download(name, "config.json")
        except Exception as e:  # network, auth, missing repo: one line, whatever the hub client raised
            raise UserError(f"cannot read the model's config.json from the hub ({e})", name) from None
    return Path(cached).parent


def resolve_device(device: str | None) -> torch.device | None:
    """`auto`: the GPU when there is one, else the CPU; None: leave the model where it was loaded (the CPU)."""
    if device is None:
        return None
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _tokenizer_dir(source: ModelSource) -> str:
    """An adapter dir may carry no tokenizer: then its base's is the one."""
    if source.base is not None and not (Path(source.path) / "tokenizer_config.json").is_file():
        return _tokenizer_dir(source.base)
    return source.path


def _causal_lm(source: ModelSource, trust_remote_code: bool):
    if source.base is None:
        return load_causal_lm(source.path, trust_remote_code=trust_remote_code)
    from peft import PeftModel

    check_json_files(Path(source.path), (ADAPTER_CONFIG,))
    check_safetensors_files(Path(source.path))
    base = _causal_lm(source.base, trust_remote_code)
    return PeftModel.from_pretrained(base, source.path).merge_and_unload()


def recorded_template(source: ModelSource) -> str | None:
    """The prompt template a source's manifest records (a finished stage, or a checkpoint of a finished run);
    None for a model the kit did not write."""
    from rlhf import checkpoint

    if source.stage is not None:
        return source.template
    if source.kind == "checkpoint" and checkpoint.is_finished(Path(source.path).parent):
        return source.template
    return None


def with_template(source: ModelSource, template: str | None, where: str = "--template") -> ModelSource:
    """`source` with the template to use: its manifest's, else `template` (a tool's --template), else alpaca."""
    from dataclasses import replace

    from rlhf.templates import choose_template

    chosen = choose_template(recorded_template(source), template, source.path, where)
    return source if chosen == source.template else replace(source, template=chosen)


def load_policy(
    source: ModelSource | str | Path,
    *,
    device: str | None = None,
    padding_side: str = "right",
    trust_remote_code: bool = False,
    template: str | None = None,
) -> LoadedModel:
    """A causal LM and its tokenizer from anything `locate_model(role="policy")` takes; a LoRA adapter is merged
    into its base. The model's pad/eos/bos ids are synced to the tokenizer's. `template` is the prompt template
    for a model without a manifest (a manifest's own must agree); `chat` needs a tokenizer with a chat template,
    checked here before the weights load."""
    from rlhf.templates import check_template

    if not isinstance(source, ModelSource):
        source = locate_model(source, role="policy")
    source = with_template(source, template)
    tokenizer = load_tokenizer(
        _tokenizer_dir(source), trust_remote_code=trust_remote_code, padding_side=padding_side
    )
    check_template(source.template, tokenizer)
    model = _causal_lm(source, trust_remote_code)
    sync_special_token_ids(model, tokenizer)
    if (dev := resolve_device(device)) is not None:
        model = model.to(dev)
    return LoadedModel(model.eval(), tokenizer, source)


def load_reward_model(
    source: ModelSource | str | Path,
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    template: str | None = None,
) -> LoadedModel:
    """A scalar-head model (`num_labels=1`) and its tokenizer from a finished reward stage, a complete reward
    checkpoint-N, or any sequence-classification model dir / hub id with one output. `template` as in
    `load_policy`."""
    from rlhf.templates import check_template

    if not isinstance(source, ModelSource):
        source = locate_model(source, role="reward")
    source = with_template(source, template)
    tokenizer = load_tokenizer(source.path, trust_remote_code=trust_remote_code)
    check_template(source.template, tokenizer)
    model = load_scalar_head_model(source.path, tokenizer, trust_remote_code=trust_remote_code)
    if (dev := resolve_device(device)) is not None:
        model = model.to(dev)
    return LoadedModel(model.eval(), tokenizer, source)


def load_policy_from_stage(stage: Stage):
    """(model, tokenizer) of a finished sft/ppo stage: `load_policy` for callers that hold a `Stage`."""
    loaded = load_policy(stage.path)
    return loaded.model, loaded.tokenizer

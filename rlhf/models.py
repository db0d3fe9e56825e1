"""Loading models and tokenizers, Alpaca's special-token handling, and the tiny demo model factory.

The same call loads a hub id or a local dir. `trust_remote_code` is off unless the caller turns it on, and
weights are read through safetensors only (`use_safetensors=True`): no pickle from user files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf.errors import UserError

IGNORE_INDEX = -100
DEFAULT_PAD_TOKEN = "[PAD]"
DEFAULT_EOS_TOKEN = "</s>"
DEFAULT_BOS_TOKEN = "<s>"
DEFAULT_UNK_TOKEN = "<unk>"


def _looks_local(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a slash, or starting like a path, is a local path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1


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


# ---------------------------------------------------------------------------------------------------------
# The tiny demo model: a byte-level BPE tokenizer trained on the task text + a small Llama built from a config,
# saved as an ordinary HF dir so every stage loads it exactly like a pretrained model.


def train_bpe_tokenizer(texts, vocab_size: int = 1000):
    """A byte-level BPE tokenizer (any UTF-8 text round-trips: Korean, emoji, ...) with Alpaca's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", DEFAULT_EOS_TOKEN, DEFAULT_BOS_TOKEN, DEFAULT_UNK_TOKEN]
    tok = Tokenizer(models.BPE())
    # Digits are split one per token and apart from the space before them (as LLaMA's tokenizer does), so
    # "7" is the same token in "3, 7" and in "7": copying a number from the input is one mapping, not two.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token=DEFAULT_EOS_TOKEN,
        bos_token=DEFAULT_BOS_TOKEN,
        unk_token=DEFAULT_UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )


def build_demo_model(
    tokenizer,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 384,
    max_positions: int = 256,
    seed: int = 0,
):
    """A small Llama (about half a million parameters at the defaults) for the embedded CPU demo."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    sync_special_token_ids(model, tokenizer)
    return model


def save_pretrained_dir(model, tokenizer, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def load_policy_from_stage(stage):
    """Causal LM + tokenizer of a finished sft/ppo stage. An unmerged LoRA stage (adapter files only) is loaded
    onto its parent SFT model, found relative to the manifest, so a moved run dir still loads."""
    from rlhf.checkpoint import require

    tokenizer = load_tokenizer(stage.path)
    if (stage.path / "adapter_model.safetensors").is_file():
        from peft import PeftModel

        parents = [p for p in stage.parent_paths() if require(p, kind=None).kind == "sft"]
        if not parents:
            raise UserError("LoRA adapter stage without an sft parent to load it onto", stage.manifest_path)
        base = load_causal_lm(parents[0])
        model = PeftModel.from_pretrained(base, str(stage.path)).merge_and_unload()
    else:
        model = load_causal_lm(stage.path)
    sync_special_token_ids(model, tokenizer)
    return model, tokenizer

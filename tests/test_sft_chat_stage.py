"""`sft.run` with `template: chat`: the tiny ChatML demo model on every row format (fast), padding-free batches, the
refusal of a model without a chat template, and SmolLM2-135M-Instruct with its recipe on a few real conversations
(slow)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO

import sft
from rlhf import checkpoint
from rlhf.config import build_config
from rlhf.errors import UserError
from rlhf.io import atomic_write_json
from rlhf.models import IGNORE_INDEX, load_causal_lm, load_tokenizer
from rlhf.tasks.demo import make_sft_rows, make_tasks
from rlhf.templates import display_prompt, render_prompt
from sft.data import encode_examples, split_rows
from sft.formats import load_sft_rows

DEMO_CONFIG = REPO / "configs" / "demo" / "sft.yaml"
KINDS = ("largest", "smallest")


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def every_format(rows: list[dict]) -> list[dict]:
    """Demo demonstrations written in every SFT format (Alpaca, messages, prompt/completion strings and message
    lists, two-exchange conversations with a system message, text)."""
    out = []
    for i, r in enumerate(rows):
        prompt = display_prompt(r["instruction"], r["input"])
        kind = i % 6
        if kind == 0:
            out.append({k: r[k] for k in ("instruction", "input", "output")})
        elif kind == 1:
            out.append({"messages": [user(prompt), assistant(r["output"])]})
        elif kind == 2:
            out.append({"prompt": prompt, "completion": r["output"]})
        elif kind == 3:
            out.append({"prompt": [user(prompt)], "completion": [assistant(r["output"])]})
        elif kind == 4:
            first = rows[i - 1]
            out.append({"messages": [
                {"role": "system", "content": "Answer briefly."},
                user(display_prompt(first["instruction"], first["input"])), assistant(first["output"]),
                user(prompt), assistant(r["output"]),
            ]})  # fmt: skip
        else:
            out.append({"text": f"{prompt} {r['output']}"})
    return out


def run_sft(base: Path, data: Path, out: Path, **overrides) -> checkpoint.Stage:
    return sft.run(build_config(sft.SFTStageConfig, {
        "config": DEMO_CONFIG, "model_name_or_path": str(base), "data_path": str(data), "output_dir": str(out),
        "template": "chat", "num_train_epochs": 1, "quiet": True, "save_strategy": "no", **overrides,
    }))  # fmt: skip


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory) -> Path:
    rows = make_sft_rows(900, seed=0, kinds=KINDS, verbose_share=0.0, wrong_share=0.0)
    path = tmp_path_factory.mktemp("chat_sft") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in every_format(rows)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chat_sft(chat_data, demo_chat_base) -> checkpoint.Stage:
    return run_sft(demo_chat_base, chat_data, chat_data.parent / "sft", learning_rate=3e-3)


def test_chat_sft_records_the_template_and_trains_the_assistant_tokens(chat_sft, chat_data, demo_chat_base):
    m = chat_sft.metrics
    assert chat_sft.template == "chat" and chat_sft.manifest["config"]["template"] == "chat"
    assert chat_sft.manifest["base_model"] == str(demo_chat_base)
    assert m["train_rows"] == 855 and m["eval_rows"] == 45 and m["dropped_rows"] == 0
    assert m["eval_loss"] < 0.5 * m["initial_eval_loss"], m
    tok = load_tokenizer(chat_sft.path)
    assert tok.chat_template == load_tokenizer(demo_chat_base).chat_template  # saved with the model
    # the stage trained exactly the tokens sft.chat labels (the same split, the same encoding)
    train, _ = split_rows(load_sft_rows(chat_data, "chat"), 0.05, 0)
    expected = encode_examples(train, tok, 128, "chat")
    assert m["train_target_tokens"] == sum(t != IGNORE_INDEX for lab in expected["labels"] for t in lab)
    assert chat_sft.manifest["data_fingerprint"] == sft.formats.fingerprint_rows(train)


def test_chat_sft_answers_in_turns_and_stops_at_the_end_of_turn(chat_sft):
    """Greedy replies to held-out prompts rendered with the chat template (what reward, PPO and generate do)
    end with <|im_end|>: the stop the examples taught. (Whether they are right takes more training than this
    fixture's one epoch; tests/test_sft_stage.py measures that on the Alpaca template.)"""
    tok, model = load_tokenizer(chat_sft.path), load_causal_lm(chat_sft.path).eval()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    tasks = make_tasks(20, seed=1, kinds=KINDS, split="eval")
    stopped = 0
    for task in tasks:
        prompt = render_prompt({"instruction": task.instruction, "input": task.input}, "chat", tok)
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=16, do_sample=False, eos_token_id=im_end,
                                 pad_token_id=tok.pad_token_id)  # fmt: skip
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        stopped += new[-1] == im_end and tok.eos_token_id not in new
    assert stopped >= 18


@pytest.mark.parametrize("padding_free", [True, False])
def test_chat_examples_train_padding_free_and_with_skipped_prompt_logits(
    chat_data, demo_chat_base, tmp_path, padding_free
):
    """Padded or flattened, with or without skipping the prompt logits: the same eval loss on chat examples."""
    losses = []
    for skip in (True, False):
        stage = run_sft(
            demo_chat_base, chat_data, tmp_path / f"sft_{skip}", padding_free=padding_free,
            skip_prompt_logits=skip, max_steps=2,
        )  # fmt: skip
        assert stage.template == "chat" and math.isfinite(stage.metrics["train_loss"])
        losses.append(stage.metrics["initial_eval_loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_a_model_without_a_chat_template_is_refused_before_anything_is_written(
    chat_data, demo_base, tmp_path
):
    out = tmp_path / "sft"
    with pytest.raises(UserError) as e:
        run_sft(demo_base, chat_data, out)
    assert e.value.line() == (
        f"error: {demo_base}: template 'chat' needs a tokenizer with a chat template and this one has none; "
        "use template: alpaca, or set tokenizer.chat_template and save it with the model"
    )
    assert not out.exists()


def test_multi_turn_rows_under_alpaca_are_refused_with_a_hint(chat_data, demo_base, tmp_path):
    with pytest.raises(UserError) as e:
        run_sft(demo_base, chat_data, tmp_path / "sft", template="alpaca")
    assert e.value.line().startswith(
        f"error: {chat_data}:line 5: key 'messages': a system message has no place"
    )


@pytest.mark.slow
def test_smollm2_recipe_trains_real_conversations_with_its_chat_template(smollm2_base, shared_data, tmp_path):
    """configs/smollm2-135m/sft.yaml (template: chat) on 12 HH-RLHF conversations, 2 steps: ~1-2 min."""
    from test_sft_chat import hh_messages

    hh = shared_data / "hh_rlhf" / "harmless_base_test.jsonl.gz"
    if not hh.is_file():
        pytest.skip(f"{hh} not found")
    with gzip.open(hh, "rt", encoding="utf-8") as f:
        rows = [{"messages": hh_messages(json.loads(next(f))["chosen"])} for _ in range(16)]
    atomic_write_json(tmp_path / "train.json", rows[:12])
    atomic_write_json(tmp_path / "eval.json", rows[12:])
    stage = sft.run(build_config(sft.SFTStageConfig, {
        "config": REPO / "configs" / "smollm2-135m" / "sft.yaml", "model_name_or_path": str(smollm2_base),
        "data_path": str(tmp_path / "train.json"), "eval_data_path": str(tmp_path / "eval.json"),
        "output_dir": str(tmp_path / "sft"), "max_steps": 2, "max_length": 256, "gradient_accumulation_steps": 1,
        "save_strategy": "no", "quiet": True,
    }))  # fmt: skip
    assert stage.template == "chat" and stage.metrics["train_rows"] == 12
    assert stage.metrics["eval_loss"] < stage.metrics["initial_eval_loss"] + 0.5
    tok = load_tokenizer(stage.path)
    assert tok.chat_template == load_tokenizer(smollm2_base).chat_template
    expected = encode_examples(load_sft_rows(tmp_path / "train.json", "chat"), tok, 256, "chat")
    assert stage.metrics["train_target_tokens"] == sum(
        t != IGNORE_INDEX for lab in expected["labels"] for t in lab
    )

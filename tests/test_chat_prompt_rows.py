"""rlhf.prompt_rows: the prompts PPO, pairs, compare and generate read, in every format users have (Alpaca rows,
TRL prompt strings or message lists, conversations), and bad rows refused with the file and row named."""

from __future__ import annotations

import json

import pytest

from rlhf.errors import UserError
from rlhf.prompt_rows import load_prompt_rows
from rlhf.templates import format_prompt, render_prompt

U = {"role": "user", "content": "Which is larger, 3 or 8?"}
A = {"role": "assistant", "content": "8."}
S = {"role": "system", "content": "Be brief."}


def write(tmp_path, rows, name="prompts.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_every_format_becomes_one_shape(tmp_path):
    rows = load_prompt_rows(
        write(
            tmp_path,
            [
                {"instruction": "Add 2 and 3.", "input": "x", "output": "5", "id": "a1"},
                {"prompt": "Name a prime."},
                {"prompt": "Name a prime.", "completion": "7"},
                {"prompt": [S, U]},
                {"prompt": [U], "completion": [A]},
                {"messages": [U]},
                {"messages": [S, U, A]},  # an SFT conversation: its reply is the reference answer
            ],
        )
    )
    assert rows[0] == {"instruction": "Add 2 and 3.", "input": "x", "output": "5", "id": "a1"}
    assert rows[1] == {"instruction": "Name a prime.", "input": "", "output": ""}
    assert rows[2]["output"] == "7"
    assert rows[3] == {
        "instruction": "System: Be brief.\n\nHuman: Which is larger, 3 or 8?",
        "input": "",
        "output": "",
        "messages": [S, U],
    }
    assert rows[4]["messages"] == [U] and rows[4]["output"] == "8."
    assert rows[5]["messages"] == [U] and rows[5]["instruction"] == "Human: Which is larger, 3 or 8?"
    assert rows[6]["messages"] == [S, U] and rows[6]["output"] == "8."
    # Alpaca formats the text a person reads (a conversation's transcript); chat renders the messages.
    assert render_prompt(rows[5], "alpaca") == format_prompt("Human: Which is larger, 3 or 8?")


BAD = [
    ({"input": "x"}, "key 'instruction': missing; expected 'instruction' (Alpaca), 'prompt'"),
    ({"instruction": 3}, "key 'instruction': expected a string, got int"),
    ({"prompt": 5}, "key 'prompt': expected a string or a message list, got int"),
    ({"prompt": "  "}, "key 'prompt': empty string"),
    ({"prompt": []}, "key 'prompt': expected a non-empty list"),
    ({"prompt": [{"role": "user"}]}, "key 'prompt' message 1: expected {'role': str, 'content': str}"),
    ({"prompt": [{"role": "tool", "content": "x"}]}, "key 'prompt' message 1: role 'tool'"),
    ({"prompt": [A]}, "key 'prompt': expected a conversation ending with a user turn"),
    ({"messages": [U, A, A]}, "key 'messages': expected a conversation ending with a user turn"),
    ({"prompt": [U], "completion": [U]}, "key 'completion': expected a string or one assistant message"),
]


@pytest.mark.parametrize("row,message", BAD, ids=[m for _, m in BAD])
def test_bad_rows_are_refused_with_file_and_row(tmp_path, row, message):
    path = write(tmp_path, [{"prompt": "fine"}, row])
    with pytest.raises(UserError) as e:
        load_prompt_rows(path)
    assert str(e.value).startswith(f"error: {path}:line 2")
    assert message in str(e.value)


def test_ppo_reads_message_prompts(tmp_path):
    from ppo.config import PPOStageConfig
    from rlhf.config import build_config
    from rlhf.rollout_prompts import load_prompts

    path = write(tmp_path, [{"prompt": [U]}] * 20 + [{"messages": [S, U]}] * 10, name="p.json.jsonl")
    cfg = build_config(
        PPOStageConfig, {"prompts_path": str(path), "num_eval_prompts": 2, "output_dir": str(tmp_path)}
    )
    train, evals = load_prompts(cfg)
    assert len(evals) == 2 and len(train) == 28
    assert train[-1]["messages"] == [S, U]

"""sft.formats: every SFT row format under both templates, the refusals (file and row named), and the data
fingerprint; sft.data.encode_examples on a mix of formats."""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest

from rlhf.errors import UserError
from rlhf.models import IGNORE_INDEX, load_tokenizer
from rlhf.templates import format_prompt
from sft.data import encode_examples, preprocess, sources_and_targets
from sft.formats import fingerprint_rows, load_sft_rows

U, A, S = "user", "assistant", "system"


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


ROWS = [
    {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
    {"messages": [msg(U, "Name a colour."), msg(A, "Red.")]},
    {"prompt": "Name a fruit.", "completion": "Apple."},
    {"prompt": [msg(U, "Name a tree.")], "completion": [msg(A, "Oak.")]},
    {"text": "Once upon a time."},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def plain(examples):
    return [{k: v for k, v in e.items() if not k.startswith("_")} for e in examples]


def test_every_format_under_alpaca(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    examples = load_sft_rows(path, "alpaca")
    assert plain(examples) == [
        {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
        {"instruction": "Name a colour.", "input": "", "output": "Red."},
        {"instruction": "Name a fruit.", "input": "", "output": "Apple."},
        {"instruction": "Name a tree.", "input": "", "output": "Oak."},
        {"text": "Once upon a time."},
    ]
    assert [(e["_path"], e["_row"]) for e in examples] == [(str(path), f"line {i}") for i in range(1, 6)]


def test_every_format_under_chat(tmp_path):
    rows = [
        *ROWS,
        {"messages": [msg(S, "Be brief."), msg(U, "Hi."), msg(A, "Hello."), msg(U, "Bye."), msg(A, "Bye.")]},
        {"prompt": [msg(S, "Be brief."), msg(U, "Hi."), msg(A, "Hello."), msg(U, "2+2?")],
         "completion": [msg(A, "4.")]},
    ]  # fmt: skip
    examples = plain(load_sft_rows(write_jsonl(tmp_path / "rows.jsonl", rows), "chat"))
    assert examples == [
        {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},  # one user turn at encode time
        {"messages": [msg(U, "Name a colour."), msg(A, "Red.")], "train_from": 0},
        {"messages": [msg(U, "Name a fruit."), msg(A, "Apple.")], "train_from": 1},
        {"messages": [msg(U, "Name a tree."), msg(A, "Oak.")], "train_from": 1},
        {"text": "Once upon a time."},
        {"messages": rows[5]["messages"], "train_from": 0},  # every assistant turn trained
        {"messages": [*rows[6]["prompt"], msg(A, "4.")], "train_from": 4},  # the completion only
    ]


def test_key_order_follows_the_datasets_people_have(tmp_path):
    rows = [
        # tatsu-lab/alpaca: the Alpaca keys plus `text` (the whole prompt already formatted): an Alpaca row
        {"instruction": "Say hi.", "input": "", "output": "Hi.", "text": "Below is an instruction ..."},
        # HuggingFaceH4/ultrachat_200k: a `prompt` string next to the conversation: the conversation
        {"prompt": "Hi?", "prompt_id": "x", "messages": [msg(U, "Hi?"), msg(A, "Hello.")]},
        # a saved dataset holds every column: None where a row has no value
        {"instruction": None, "input": None, "output": None, "messages": None, "text": "Plain text."},
        {"messages": [{"role": U, "content": "Hi?", "name": "x"}, msg(A, "Hello.")]},  # extra message keys
    ]
    examples = plain(load_sft_rows(write_jsonl(tmp_path / "rows.jsonl", rows), "chat"))
    assert examples == [
        {"instruction": "Say hi.", "input": "", "output": "Hi."},
        {"messages": [msg(U, "Hi?"), msg(A, "Hello.")], "train_from": 0},
        {"text": "Plain text."},
        {"messages": [msg(U, "Hi?"), msg(A, "Hello.")], "train_from": 0},
    ]


def test_a_saved_dataset_with_messages(tmp_path):
    from datasets import Dataset

    rows = [{"messages": [msg(U, "Hi?"), msg(A, "Hello.")]}, {"messages": [msg(U, "A?"), msg(A, "B.")]}]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    examples = load_sft_rows(tmp_path / "ds", "chat")
    assert plain(examples) == [{**r, "train_from": 0} for r in rows]
    assert [e["_row"] for e in examples] == ["row 1", "row 2"]


BAD = [
    # (row, template, what the error says after "<file>:line 2: ")
    ({"messages": [msg(U, "a"), msg(A, "b"), msg(U, "c"), msg(A, "d")]}, "alpaca",
     "key 'messages': 4 messages; the Alpaca template holds one user message and one assistant reply: use "
     "template: chat for multi-turn conversations"),
    ({"messages": [msg(S, "s"), msg(U, "a"), msg(A, "b")]}, "alpaca",
     "key 'messages': a system message has no place in the Alpaca template; use template: chat"),
    ({"prompt": [msg(U, "a"), msg(A, "b"), msg(U, "c")], "completion": "d"}, "alpaca",
     "key 'prompt': 4 messages; the Alpaca template holds one user message"),
    ({"messages": "hello"}, "chat", "key 'messages': expected a non-empty list of {'role', 'content'} messages"),
    ({"messages": []}, "chat", "key 'messages': expected a non-empty list"),
    ({"messages": [msg(U, "a"), {"role": A}]}, "chat",
     "key 'messages' message 2: expected {'role': str, 'content': str}"),
    ({"messages": [msg(U, "a"), msg("bot", "b")]}, "chat",
     "key 'messages' message 2: role 'bot'; expected one of system, user, assistant"),
    ({"messages": [msg(U, "a"), msg(U, "b")]}, "chat", "key 'messages': expected an assistant message to train on"),
    ({"messages": [msg(A, "a"), msg(U, "b"), msg(A, "c")]}, "chat",
     "key 'messages': expected a user message first (after an optional system message)"),
    ({"messages": [msg(U, "a"), msg(S, "s"), msg(A, "b")]}, "chat",
     "key 'messages' message 2: a system message may only come first"),
    ({"prompt": "a"}, "chat", "key 'completion': missing; expected a string or a list of messages"),
    ({"completion": "a"}, "chat", "key 'prompt': missing; expected a string or a list of messages"),
    ({"prompt": "a", "completion": 3}, "chat", "key 'completion': expected a string or a list of messages, got int"),
    ({"prompt": "", "completion": "b"}, "chat", "key 'prompt': empty string; expected text"),
    ({"prompt": "a", "completion": [msg(U, "b")]}, "chat",
     "key 'completion': expected an assistant message to train on"),
    ({"prompt": "a", "completion": [msg(S, "s"), msg(A, "b")]}, "chat",
     "key 'completion' message 1: a system message may only come first in the prompt"),
    ({"prompt": [msg(A, "a")], "completion": "b"}, "chat", "key 'prompt': expected a user message first"),
    ({"text": ""}, "alpaca", "key 'text': empty string; expected text"),
    ({"text": ["a"]}, "chat", "key 'text': expected a string, got list"),
    ({"input": "x", "output": "y"}, "chat", "key 'instruction': missing; expected a string"),
    ({"question": "a", "answer": "b"}, "chat",
     "expected Alpaca rows (instruction, input, output), messages, prompt/completion or text; "
     "found keys: answer, question"),
]  # fmt: skip


@pytest.mark.parametrize("row,template,expected", BAD)
def test_bad_rows_are_refused_with_file_and_row(tmp_path, row, template, expected):
    path = write_jsonl(tmp_path / "rows.jsonl", [ROWS[0], row])
    with pytest.raises(UserError) as e:
        load_sft_rows(path, template)
    assert e.value.line().startswith(f"error: {path}:line 2: {expected}")


def test_fingerprint(tmp_path):
    alpaca = [
        {"instruction": "a", "input": "b", "output": "c"},
        {"instruction": "d", "input": "", "output": "e"},
    ]
    # Alpaca rows hash as they always have, so a finished Alpaca run's manifest keeps its fingerprint
    h = hashlib.sha256()
    for r in alpaca:
        h.update(json.dumps([r["instruction"], r.get("input", ""), r["output"]], ensure_ascii=False).encode())
    assert fingerprint_rows(alpaca) == h.hexdigest()

    convo = [{"messages": [msg(U, "a"), msg(A, "b")], "train_from": 0}]
    variants = [
        convo,
        [{"messages": [msg(U, "a"), msg(A, "B")], "train_from": 0}],  # a reply changed
        [{"messages": [msg(U, "a"), msg(A, "b")], "train_from": 1}],  # what is trained changed
        [{"text": "a"}],
        [{"text": "b"}],
        [{"instruction": "a", "input": "", "output": "b"}],
    ]
    assert len({fingerprint_rows(v) for v in variants}) == len(variants)
    assert fingerprint_rows(convo) == fingerprint_rows([{**convo[0], "_row": "line 9", "_path": "elsewhere"}])


@pytest.fixture(scope="module")
def tok(demo_base):
    return load_tokenizer(demo_base)


def test_alpaca_examples_from_other_formats_are_encoded_as_alpaca_rows(tmp_path, tok):
    """Under the Alpaca template a single exchange (messages, prompt/completion) is exactly an Alpaca row:
    Alpaca's prompt around the user message, the reply + EOS trained (sft.data.preprocess)."""
    examples = load_sft_rows(write_jsonl(tmp_path / "rows.jsonl", ROWS[:4]), "alpaca")
    out = encode_examples(examples, tok, 128, "alpaca")
    ref = preprocess(*sources_and_targets(plain(examples), tok.eos_token), tok, 128)
    assert out == ref and out["kept"] == [0, 1, 2, 3]
    assert tok.decode(out["input_ids"][2]) == format_prompt("Name a fruit.", "") + "Apple." + tok.eos_token


def test_text_is_trained_on_every_token_with_eos(tok):
    texts = ["Once upon a time.", "Already ends with EOS" + tok.eos_token]
    out = encode_examples([{"text": t} for t in texts], tok, 128, "alpaca")
    for text, ids, labels in zip(texts, out["input_ids"], out["labels"]):
        assert labels == ids and ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
        assert tok.decode(ids) == text.removesuffix(tok.eos_token) + tok.eos_token
    cut = encode_examples([{"text": "word " * 100}], tok, 16, "chat")  # the same under chat: no template
    assert len(cut["input_ids"][0]) == 16 and cut["labels"] == cut["input_ids"]


def test_mixed_formats_keep_their_order_and_drops_are_counted_once(tok):
    long_prompt = "Describe the river in detail. " * 30
    examples = [
        {"text": "First."},
        {"instruction": long_prompt, "input": "", "output": "Wide."},  # its prompt fills max_length
        {"instruction": "Name the first word.", "input": "apple", "output": "apple"},
        {"text": "Last."},
    ]
    n = len(tok(format_prompt("Name the first word.", "apple"))["input_ids"]) + 4
    with pytest.warns(UserWarning, match=rf"dropped 1 of 4 rows whose prompt fills max_length={n}") as caught:
        out = encode_examples(examples, tok, n, "alpaca")
    assert len(caught) == 1 and out["kept"] == [0, 2, 3]
    assert tok.decode(out["input_ids"][0]).startswith("First.") and tok.decode(out["input_ids"][2]) == (
        "Last." + tok.eos_token
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alone = encode_examples(examples[2:3], tok, n, "alpaca")
    assert out["labels"][1] == alone["labels"][0] and IGNORE_INDEX in alone["labels"][0]

"""SFT labels under `template: chat`: exactly which tokens are trained, against references computed other ways.

sft.chat finds each assistant span by rendering conversation prefixes and maps it to tokens with offsets. On real
HH-RLHF conversations (RLHF_SHARED_DATA) with SmolLM2-135M-Instruct's tokenizer its labels must equal:
1. transformers' own assistant mask (`return_assistant_tokens_mask`) under SmolLM2's template with its assistant
   replies marked by `{% generation %}` (the same text, checked): spans tracked by jinja while rendering;
2. the rendered text cut at ChatML's markers by a regular expression, each piece tokenized on its own and the
   pieces concatenated (ids and labels), and
3. the trained runs decoded: each is an assistant reply's content followed by <|im_end|>, one per reply.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings

import pytest
from conftest import CHATML_TEMPLATE

from rlhf.errors import UserError
from rlhf.models import IGNORE_INDEX, load_tokenizer
from rlhf.templates import check_template, end_of_turn
from sft.chat import assistant_spans, trained_tokens
from sft.data import encode_examples
from sft.formats import load_sft_rows

N_HH = 300  # conversations from the HH-RLHF file (~2 s of rendering and tokenizing)
EOT = "<|im_end|>"
_SMOL_SYSTEM = "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
# SmolLM2-135M-Instruct's chat template with each assistant reply (content + <|im_end|>) inside {% generation %}.
SMOLLM2_MARKED = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" + _SMOL_SYSTEM +
    "{% endif %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)  # fmt: skip


def hh_messages(transcript: str) -> list[dict]:
    """An HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as chat messages, each turn's text
    stripped."""
    parts = re.split(r"\n\n(Human|Assistant):", transcript)
    assert parts[0] == "", transcript[:80]
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[s], "content": t.strip()} for s, t in zip(parts[1::2], parts[2::2])]


@pytest.fixture(scope="module")
def hh_rows(shared_data, tmp_path_factory) -> list[dict]:
    """The chosen side of the first N_HH HH-RLHF pairs as `messages` rows, read back through sft.formats."""
    path = shared_data / "hh_rlhf" / "harmless_base_test.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(N_HH)]
    rows = [{"messages": hh_messages(json.loads(line)["chosen"])} for line in lines]
    out = tmp_path_factory.mktemp("hh") / "hh_messages.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    examples = load_sft_rows(out, "chat")
    assert sum(sum(m["role"] == "assistant" for m in e["messages"]) > 1 for e in examples) > N_HH // 4, (
        "want many multi-turn conversations"
    )
    return examples


def trained_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    runs, cur = [], []
    for t, lab in zip(ids, labels):
        if lab != IGNORE_INDEX:
            assert lab == t
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    return runs + ([cur] if cur else [])


def segment_reference(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """Cut ChatML text into untrained pieces and assistant replies (content + <|im_end|>) with a regex, tokenize
    each piece alone, concatenate."""
    pieces = re.split(r"(?<=<\|im_start\|>assistant\n)(.*?<\|im_end\|>)", text, flags=re.S)
    ids, labels = [], []
    for k, piece in enumerate(pieces):
        piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        ids += piece_ids
        labels += piece_ids if k % 2 else [IGNORE_INDEX] * len(piece_ids)
    return ids, labels


def test_smollm2_labels_on_real_conversations_match_three_references(smollm2_tokenizer, hh_rows):
    tok = smollm2_tokenizer
    assert end_of_turn(tok, "chat") == EOT
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped
        out = encode_examples(hh_rows, tok, 100_000, "chat")
    assert out["kept"] == list(range(len(hh_rows)))
    n_replies = 0
    for ex, ids, labels in zip(hh_rows, out["input_ids"], out["labels"]):
        messages = ex["messages"]
        text = tok.apply_chat_template(messages, tokenize=False)
        assert tok.apply_chat_template(messages, tokenize=False, chat_template=SMOLLM2_MARKED) == text
        # 1. transformers' assistant mask from {% generation %}
        ref = tok.apply_chat_template(
            messages, chat_template=SMOLLM2_MARKED, return_dict=True, return_assistant_tokens_mask=True
        )
        assert ids == ref["input_ids"]
        assert [lab != IGNORE_INDEX for lab in labels] == [bool(m) for m in ref["assistant_masks"]]
        # 2. piece-by-piece tokenization
        assert (ids, labels) == segment_reference(tok, text)
        # 3. each trained run is one reply's content + <|im_end|>
        replies = [m["content"] for m in messages if m["role"] == "assistant"]
        assert [tok.decode(run) for run in trained_runs(ids, labels)] == [r + EOT for r in replies]
        n_replies += len(replies)
    assert n_replies > 1.5 * len(hh_rows)


def test_smollm2_prompt_completion_trains_the_completion_only(smollm2_tokenizer, hh_rows, tmp_path):
    rows = [
        {"prompt": e["messages"][:-1], "completion": e["messages"][-1:]}
        for e in hh_rows
        if e["messages"][-1]["role"] == "assistant"
    ]
    path = tmp_path / "pc.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    examples = load_sft_rows(path, "chat")
    out = encode_examples(examples, smollm2_tokenizer, 100_000, "chat")
    as_messages = encode_examples(
        [{"messages": r["prompt"] + r["completion"]} for r in rows], smollm2_tokenizer, 100_000, "chat"
    )
    assert out["input_ids"] == as_messages["input_ids"]  # the same text, fewer tokens trained
    for r, ids, labels in zip(rows, out["input_ids"], out["labels"]):
        runs = trained_runs(ids, labels)
        assert [smollm2_tokenizer.decode(run) for run in runs] == [r["completion"][0]["content"] + EOT]


def test_smollm2_truncation_cuts_the_labels_and_drops_rows_left_without_a_trained_token(
    smollm2_tokenizer, hh_rows
):
    full = encode_examples(hh_rows, smollm2_tokenizer, 100_000, "chat")
    max_length = 96
    with pytest.warns(UserWarning, match=rf"dropped \d+ of {len(hh_rows)} rows .*max_length={max_length}"):
        cut = encode_examples(hh_rows, smollm2_tokenizer, max_length, "chat")
    expected = [i for i, lab in enumerate(full["labels"]) if any(t != IGNORE_INDEX for t in lab[:max_length])]
    assert cut["kept"] == expected and 0 < len(expected) < len(hh_rows)
    n_cut_in_reply = 0
    for k, i in enumerate(cut["kept"]):
        assert cut["input_ids"][k] == full["input_ids"][i][:max_length]
        assert cut["labels"][k] == full["labels"][i][:max_length]
        n_cut_in_reply += len(full["input_ids"][i]) > max_length and cut["labels"][k][-1] != IGNORE_INDEX
    assert n_cut_in_reply > 0  # some replies are trained up to the cut, without <|im_end|>


EDGE_CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "\n\nTwo newlines first."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  two spaces first"}],
    [{"role": "user", "content": "Say nothing."}, {"role": "assistant", "content": ""}],
    [{"role": "user", "content": "Trail"}, {"role": "assistant", "content": "trailing spaces and newline   \n"}],
    [{"role": "user", "content": "Echo"}, {"role": "assistant", "content": "a literal <|im_end|> inside"}],
    [{"role": "system", "content": "Answer in Japanese."}, {"role": "user", "content": "Hello"},
     {"role": "assistant", "content": "こんにちは！"}, {"role": "user", "content": "Thanks"},
     {"role": "assistant", "content": "どういたしまして。"}],
    [{"role": "user", "content": "Tab"}, {"role": "assistant", "content": "\tindented\n\tcode"},
     {"role": "user", "content": "More"}],  # the conversation ends with a user turn: nothing trained after it
]  # fmt: skip


@pytest.mark.parametrize("messages", EDGE_CONVERSATIONS)
def test_smollm2_edge_replies_match_transformers_assistant_mask(smollm2_tokenizer, messages):
    tok = smollm2_tokenizer
    out = encode_examples([{"messages": messages}], tok, 4096, "chat")
    ids, labels = out["input_ids"][0], out["labels"][0]
    ref = tok.apply_chat_template(
        messages, chat_template=SMOLLM2_MARKED, return_dict=True, return_assistant_tokens_mask=True
    )
    assert ids == ref["input_ids"]
    assert [lab != IGNORE_INDEX for lab in labels] == [bool(m) for m in ref["assistant_masks"]]
    text, spans = assistant_spans(tok, messages)
    replies = [m["content"] for m in messages if m["role"] == "assistant"]
    assert [text[a:b] for a, b in spans] == [r + EOT for r in replies]


# --- the tiny chat tokenizer (fast) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_tok(demo_chat_base):
    return load_tokenizer(demo_chat_base)


def test_an_alpaca_row_under_chat_is_one_user_turn_and_the_reply(chat_tok):
    row = {"instruction": "Pick the largest number.", "input": "3, 7, 5", "output": "7"}
    out = encode_examples([row], chat_tok, 128, "chat")
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert chat_tok.decode(ids) == (
        "<|im_start|>user\nPick the largest number.\n\n3, 7, 5<|im_end|>\n<|im_start|>assistant\n7<|im_end|>\n"
    )
    assert [chat_tok.decode(run) for run in trained_runs(ids, labels)] == ["7<|im_end|>"]
    assert ids[0] == chat_tok.convert_tokens_to_ids("<|im_start|>")  # no BOS or other token added
    assert chat_tok.eos_token_id not in ids  # the turn ends with <|im_end|>, not with EOS


def test_token_rule_is_overlap():
    # tokens [0,2) [2,5) [5,5) [5,9) [9,12); span [3, 9): the token straddling its start is trained
    offsets = [(0, 2), (2, 5), (5, 5), (5, 9), (9, 12)]
    assert trained_tokens(offsets, [(3, 9)]).tolist() == [False, True, True, True, False]
    assert trained_tokens(offsets, [(0, 2), (9, 12)]).tolist() == [True, False, False, False, True]
    assert trained_tokens([], [(0, 1)]).tolist() == []


def _with_template(tok, template):
    import copy

    tok = copy.deepcopy(tok)
    tok.chat_template = template
    return tok


def test_templates_that_cannot_be_labelled_are_refused_with_the_row_named(chat_tok, tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                      {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    examples = load_sft_rows(path, "chat")

    # rewrites earlier replies once a later turn follows (as templates that drop past reasoning do)
    rewrites = CHATML_TEMPLATE.replace("m['content']", "('[earlier]' if m['role'] == 'assistant' and not loop.last "
                                       "else m['content'])")  # fmt: skip
    with pytest.raises(UserError) as e:
        encode_examples(examples, _with_template(chat_tok, rewrites), 128, "chat")
    assert e.value.line().startswith(
        f"error: {path}:line 2: message 2: the chat template renders the conversation"
    )

    no_end = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    with pytest.raises(UserError) as e:
        encode_examples(examples, _with_template(chat_tok, no_end), 128, "chat")
    assert e.value.line().startswith(
        f"error: {path}:line 1: message 2: the chat template writes no end-of-turn text ('</s>') after the reply"
    )

    strict = (
        "{% if messages | length > 2 %}{{ raise_exception('only one exchange') }}{% endif %}"
        + CHATML_TEMPLATE
    )
    with pytest.raises(UserError) as e:
        encode_examples(examples, _with_template(chat_tok, strict), 128, "chat")
    assert (
        e.value.line()
        == f"error: {path}:line 2: the chat template refused this conversation (only one exchange)"
    )


def test_a_model_without_a_chat_template_is_refused_naming_its_dir(demo_base):
    tok = load_tokenizer(demo_base)
    with pytest.raises(UserError) as e:
        check_template("chat", tok)
    assert e.value.line().startswith(
        f"error: {demo_base}: template 'chat' needs a tokenizer with a chat template"
    )


# Llama 3's shape: a BOS written by the template, a header then a blank line, the content trimmed, <|eot_id|>
# (here </s>, the demo's EOS) closing the turn; and the same template with the replies marked for transformers.
LLAMA3_LIKE = (
    "{{ bos_token }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '<|im_end|>\\n\\n' }}"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] | trim + '</s>' }}{% endgeneration %}"
    "{% else %}{{ m['content'] | trim + '</s>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_end|>\\n\\n' }}{% endif %}"
)


def test_a_llama3_like_template_trims_replies_and_writes_its_own_bos(chat_tok):
    from tokenizers import processors

    tok = _with_template(chat_tok, LLAMA3_LIKE)
    bos = (tok.bos_token, tok.bos_token_id)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos[0]} $A", special_tokens=[bos]
    )
    assert (
        tok("x")["input_ids"][0] == tok.bos_token_id
    )  # this tokenizer adds a BOS of its own, as Llama 3's does
    assert end_of_turn(tok, "chat") == "</s>"
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Pick the largest number.\n\n3, 7, 5"},
        {"role": "assistant", "content": "  7 \n"},  # the template trims it
        {"role": "user", "content": "And the smallest?"},
        {"role": "assistant", "content": "3"},
    ]
    out = encode_examples([{"messages": messages}], tok, 256, "chat")
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id  # no second BOS from the tokenizer
    assert [tok.decode(run) for run in trained_runs(ids, labels)] == ["7</s>", "3</s>"]
    ref = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    assert ids == ref["input_ids"]
    assert [lab != IGNORE_INDEX for lab in labels] == [bool(m) for m in ref["assistant_masks"]]

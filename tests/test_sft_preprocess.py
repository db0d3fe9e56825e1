"""`sft.data.preprocess` against a plain re-implementation of Stanford Alpaca's train.py.

The reference below is Alpaca's `_tokenize_fn` / `preprocess` / `SupervisedDataset` formatting, one string at a
time, exactly as written there (tatsu-lab/stanford_alpaca, train.py), with `max_length` passed explicitly where
Alpaca reads `tokenizer.model_max_length`. Ours tokenizes a whole batch in one call and drops rows whose prompt
fills `max_length` (Alpaca keeps them with every label -100: nothing to learn); everything else must be identical.
"""

from __future__ import annotations

import copy
import random
import warnings

import pytest
import torch

from rlhf.models import IGNORE_INDEX, load_tokenizer
from rlhf.tasks.demo import ALL_KINDS, make_sft_rows
from rlhf.templates import PROMPT_DICT, format_prompt
from sft.data import preprocess, sources_and_targets

# Verbatim from Stanford Alpaca's train.py.
ALPACA_PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}


def alpaca_sources_targets(rows, tokenizer):
    """SupervisedDataset.__init__'s formatting."""
    prompt_input, prompt_no_input = ALPACA_PROMPT_DICT["prompt_input"], ALPACA_PROMPT_DICT["prompt_no_input"]
    sources = [
        prompt_input.format_map(example)
        if example.get("input", "") != ""
        else prompt_no_input.format_map(example)
        for example in rows
    ]
    targets = [f"{example['output']}{tokenizer.eos_token}" for example in rows]
    return sources, targets


def alpaca_tokenize_fn(strings, tokenizer, max_length):
    tokenized_list = [
        tokenizer(text, return_tensors="pt", padding="longest", max_length=max_length, truncation=True)
        for text in strings
    ]
    input_ids = labels = [tokenized.input_ids[0] for tokenized in tokenized_list]
    input_ids_lens = labels_lens = [
        tokenized.input_ids.ne(tokenizer.pad_token_id).sum().item() for tokenized in tokenized_list
    ]
    return dict(input_ids=input_ids, labels=labels, input_ids_lens=input_ids_lens, labels_lens=labels_lens)


def alpaca_preprocess(sources, targets, tokenizer, max_length):
    examples = [s + t for s, t in zip(sources, targets)]
    examples_tokenized, sources_tokenized = [
        alpaca_tokenize_fn(strings, tokenizer, max_length) for strings in (examples, sources)
    ]
    input_ids = examples_tokenized["input_ids"]
    labels = copy.deepcopy(input_ids)
    for label, source_len in zip(labels, sources_tokenized["input_ids_lens"]):
        label[:source_len] = IGNORE_INDEX
    return dict(input_ids=input_ids, labels=labels)


HANDWRITTEN = [
    # long, multi-sentence, newlines, braces, unicode, odd whitespace, an empty output
    {"instruction": "Summarize the paragraph in one sentence. Keep names and numbers as they are, and do not "
     "add anything that the paragraph does not say.", "input": "The river rose 3 metres overnight.\nTwo "
     "bridges closed; the ferry kept running until noon, when the wind picked up again.",
     "output": "The river rose 3 m overnight, closing two bridges; the ferry ran until noon."},
    {"instruction": "Write a Python f-string that prints {name}.", "input": "", "output": 'print(f"{name}")'},
    {"instruction": "Translate to Korean.", "input": "Good morning", "output": "좋은 아침입니다"},
    {"instruction": "What does this emoji mean?", "input": "🙂", "output": " A slight smile."},
    {"instruction": "Repeat the input exactly.", "input": "  spaced   out  ", "output": "  spaced   out  "},
    {"instruction": "Reply with nothing.", "input": "", "output": ""},
    {"instruction": "List three colors, one per line.", "input": "", "output": "red\ngreen\nblue\n"},
    {"instruction": "Explain {input} literally.", "input": "{instruction}", "output": "Braces stay as written."},
    {"instruction": "اكتب كلمة مرحبا", "input": "", "output": "مرحبا"},
    {"instruction": "日本語で挨拶してください。", "input": "", "output": "こんにちは！"},
    # answers and prompts whose boundary is not a pre-token boundary (GPT-2's regex joins ':' with '"' or '-',
    # whitespace runs with what follows: tokenize(source) is then no prefix of tokenize(source + target)), and
    # special-token text inside the data
    {"instruction": "Quote the slogan.", "input": "", "output": '"Be the change."'},
    {"instruction": "List two items.", "input": "", "output": "- one\n- two"},
    {"instruction": "Draw a smiley.", "input": "", "output": ":-)"},
    {"instruction": "Finish the word.", "input": "John", "output": "'s"},
    {"instruction": "Start with blank lines.", "input": "", "output": "\n\nSecond paragraph."},
    {"instruction": "Count to three.", "input": "", "output": "123"},
    {"instruction": "Trailing spaces here   ", "input": "and here  ", "output": "Fine."},
    # instructions starting with whitespace: GPT-2's regex joins it to the header's final newline
    {"instruction": "  Indented instruction.", "input": "", "output": "Ok."},
    {"instruction": " One space first.", "input": "x", "output": "Ok."},
    {"instruction": "\n\n\nThree newlines first.", "input": "", "output": "Ok."},  # differs if split off
    # (not the pad token's text in a prompt: Alpaca counts a prompt's tokens as its non-pad ids, so a literal
    # "<pad>" there would shorten its mask; ours masks len(tokenize(source)) tokens, as the method says)
    {"instruction": "Echo the tags.", "input": "</s> <s> <|endoftext|>", "output": "</s><pad>[PAD]"},
    {"instruction": "Continue the story " + "and then " * 40, "input": "Once upon a time " * 20,
     "output": "They lived happily ever after. " * 30},
]  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    demo = make_sft_rows(140, seed=3, kinds=ALL_KINDS, verbose_share=0.5, wrong_share=0.1)
    out = [{k: r[k] for k in ("instruction", "input", "output")} for r in demo] + HANDWRITTEN
    random.Random(0).shuffle(out)
    with_input = sum(bool(r["input"]) for r in out)
    assert len(out) >= 150 and 20 <= with_input <= len(out) - 20, "want many rows with and without input"
    return out


@pytest.fixture(scope="module")
def demo_tokenizer(demo_base):
    return load_tokenizer(demo_base)


@pytest.fixture(params=["demo", "gpt2"])
def tokenizer(request):
    return request.getfixturevalue("demo_tokenizer" if request.param == "demo" else "gpt2_tokenizer")


def test_templates_are_alpacas():
    assert PROMPT_DICT == ALPACA_PROMPT_DICT


def test_sources_and_targets_match_alpaca(rows, demo_tokenizer):
    ours = sources_and_targets(rows, demo_tokenizer.eos_token)
    assert ours == alpaca_sources_targets(rows, demo_tokenizer)
    assert format_prompt("Say {x}.", "") == ALPACA_PROMPT_DICT["prompt_no_input"].format(
        instruction="Say {x}."
    )


def _lengths(tokenizer, texts):
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


def test_preprocess_matches_alpaca(rows, tokenizer):
    sources, targets = sources_and_targets(rows, tokenizer.eos_token)
    src_lens = _lengths(tokenizer, sources)
    full_lens = _lengths(tokenizer, [s + t for s, t in zip(sources, targets)])
    median_src = sorted(src_lens)[len(src_lens) // 2]
    # No truncation; truncation inside the response for some rows and inside the prompt (dropped) for others;
    # almost everything dropped.
    cases = {"none": max(full_lens) + 1, "mixed": median_src + 3, "tiny": min(src_lens) + 1}
    seen = {"kept_whole": 0, "kept_truncated": 0, "dropped": 0}
    for name, max_length in cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours = preprocess(sources, targets, tokenizer, max_length)
        ref = alpaca_preprocess(sources, targets, tokenizer, max_length)
        expected_kept = [i for i, lab in enumerate(ref["labels"]) if (lab != IGNORE_INDEX).any()]
        assert ours["kept"] == expected_kept, name
        for k, i in enumerate(ours["kept"]):
            assert ours["input_ids"][k] == ref["input_ids"][i].tolist(), (name, i)
            assert ours["labels"][k] == ref["labels"][i].tolist(), (name, i)
            assert len(ours["input_ids"][k]) <= max_length
            whole = full_lens[i] <= max_length
            seen["kept_whole" if whole else "kept_truncated"] += 1
            if whole:  # the response ends with EOS, and EOS is learned
                assert ours["input_ids"][k][-1] == ours["labels"][k][-1] == tokenizer.eos_token_id
        for i in set(range(len(rows))) - set(ours["kept"]):
            assert src_lens[i] >= max_length, (name, i)  # only rows whose prompt fills max_length are dropped
            seen["dropped"] += 1
        if name == "none":
            assert len(ours["kept"]) == len(rows)
    assert all(n > 0 for n in seen.values()), seen  # every branch was exercised


def test_prompt_tokens_are_masked_and_response_tokens_kept(rows, demo_tokenizer):
    sources, targets = sources_and_targets(rows, demo_tokenizer.eos_token)
    out = preprocess(sources, targets, demo_tokenizer, max_length=4096)
    for ids, labels, src in zip(out["input_ids"], out["labels"], demo_tokenizer(sources)["input_ids"]):
        n_masked = sum(1 for t in labels if t == IGNORE_INDEX)
        assert n_masked == len(src) and labels[:n_masked] == [IGNORE_INDEX] * n_masked
        assert labels[n_masked:] == ids[n_masked:]


def test_rows_whose_prompt_fills_max_length_are_dropped_with_a_counted_warning(demo_tokenizer):
    rows = [
        {"instruction": "Name the first word.", "input": "apple, river, stone", "output": "apple"},
        {"instruction": "Which number is the largest? " * 6, "input": "3, 7, 5", "output": "7"},
        {"instruction": "Pick the lowest number.", "input": "3, 7, 5", "output": "3"},
        {"instruction": "Describe the river in detail. " * 8, "input": "", "output": "Wide."},
        {"instruction": "Spell the word backwards. " * 7, "input": "stone", "output": "enots"},
    ]
    sources, targets = sources_and_targets(rows, demo_tokenizer.eos_token)
    src_lens = _lengths(demo_tokenizer, sources)
    max_length = sorted(src_lens)[2] - 1  # the three long prompts fill it, the two short ones leave room
    assert (
        sum(n >= max_length for n in src_lens) == 3
        and max(_lengths(demo_tokenizer, sources[:1])) < max_length
    )
    with pytest.warns(UserWarning, match=rf"dropped 3 of 5 rows .*max_length={max_length}"):
        out = preprocess(sources, targets, demo_tokenizer, max_length)
    assert out["kept"] == [0, 2]
    assert all(any(t != IGNORE_INDEX for t in lab) for lab in out["labels"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped: no warning at all
        preprocess(sources[:1], targets[:1], demo_tokenizer, max_length)


def test_stage_reports_dropped_rows(demo_tokenizer, capsys):
    from sft.train import tokenize_rows

    rows = [
        {"instruction": "Name the first word.", "input": "apple, river", "output": "apple"},
        {"instruction": "Describe the river in detail. " * 20, "input": "", "output": "Wide."},
    ]
    sources, _ = sources_and_targets(rows, demo_tokenizer.eos_token)
    max_length = _lengths(demo_tokenizer, sources[:1])[0] + 3
    ds = tokenize_rows(rows, demo_tokenizer, max_length=max_length, template="alpaca")
    assert len(ds) == 1
    assert (
        f"warning: dropped 1 of 2 rows whose prompt fills max_length={max_length}" in capsys.readouterr().out
    )


def test_alpaca_reference_is_what_we_think(demo_tokenizer):
    """Guard the reference itself: batch padding inside _tokenize_fn would change its lengths."""
    ref = alpaca_tokenize_fn(["a b c", "a"], demo_tokenizer, 16)
    assert ref["input_ids_lens"] == [
        len(demo_tokenizer("a b c")["input_ids"]),
        len(demo_tokenizer("a")["input_ids"]),
    ]
    assert isinstance(ref["input_ids"][0], torch.Tensor)


def _variant(tokenizer, change: str):
    """A copy of `tokenizer` with one step of its pipeline changed."""
    import copy

    from tokenizers import AddedToken, normalizers, processors

    tok = copy.deepcopy(tokenizer)
    backend = tok.backend_tokenizer
    if change == "normalizer":
        backend.normalizer = normalizers.Lowercase()
    elif change == "bos":  # a special token before the text
        backend.post_processor = processors.TemplateProcessing(
            single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, tok.bos_token_id)]
        )
    elif (
        change == "bos+eos"
    ):  # a token after the text: tokenize(source) is no prefix of tokenize(source + target)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{tok.bos_token} $A {tok.eos_token}",
            special_tokens=[(tok.bos_token, tok.bos_token_id), (tok.eos_token, tok.eos_token_id)],
        )
    elif change == "rstrip":  # an added token that eats the whitespace after it
        backend.add_tokens([AddedToken("Response:", rstrip=True)])
    elif change == "prefix_space":  # ByteLevel adds a space in front of the text
        from tokenizers import pre_tokenizers

        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    elif change == "added_across":  # added tokens that span the template's text and the row's
        backend.add_tokens([AddedToken("Instruction:\nWrite"), AddedToken("Response:The")])
    return tok


@pytest.mark.parametrize("change", ["normalizer", "bos", "bos+eos", "rstrip", "prefix_space", "added_across"])
def test_preprocess_matches_alpaca_for_other_tokenizer_pipelines(rows, demo_tokenizer, change):
    tok = _variant(demo_tokenizer, change)
    sources, targets = sources_and_targets(rows, tok.eos_token)
    ours = preprocess(sources, targets, tok, 4096)
    ref = alpaca_preprocess(sources, targets, tok, 4096)
    assert ours["kept"] == list(range(len(rows)))
    assert ours["input_ids"] == [x.tolist() for x in ref["input_ids"]]
    assert ours["labels"] == [x.tolist() for x in ref["labels"]]

"""How SFT batches are built: padded or flattened (padding-free) rows, optionally with the LM head restricted to
the trained positions."""

from __future__ import annotations

import inspect

from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

from rlhf.models import IGNORE_INDEX


def make_collator(tokenizer, padding_free: bool, skip_prompt_logits: bool = False):
    if padding_free:
        # One [1, total_tokens] row with position_ids restarting per example: no pad tokens are computed.
        # transformers builds a block-diagonal causal mask from the position_ids, so examples do not attend
        # to each other.
        collator = DataCollatorWithFlattening(return_position_ids=True)
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100)
    return SkipPromptLogits(collator) if skip_prompt_logits else collator


class SkipPromptLogits:
    """Wrap a collator so the model computes logits only where the loss looks at them.

    Alpaca's labels mask the prompt (often most of a row), yet a causal LM runs its LM head and the softmax over
    the whole vocabulary at every position. The batch gets `logits_to_keep` (the sequence positions whose next
    token is trained in any row) and `shift_labels` (those next tokens, -100 elsewhere): transformers' models
    slice the hidden states before the LM head and its causal-LM loss takes `shift_labels` as given, and the
    Trainer counts the trained tokens from `shift_labels`, so the loss, its gradient-accumulation scaling and
    the eval loss are the ones of the full logits (tests/test_sft_stage.py); the LM head runs on the trained
    positions only (about 40% of a demo row) and the logits are [batch, kept, vocab], not [batch, length, vocab]."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, features):
        batch = self.inner(features)
        shifted = batch.pop("shift_labels", None)
        if shifted is None:
            shifted = batch["labels"][..., 1:]
        keep = (shifted != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = shifted[:, keep].contiguous()
        return batch


def keeps_logits_selectively(model) -> bool:
    """Whether `model` (or the model inside a peft wrapper) takes a tensor `logits_to_keep` and passes loss
    keywords (`shift_labels`) to transformers' causal-LM loss: the models built on transformers' generic
    forward do (Llama, Mistral, Qwen2, GPT-2, ...). Checked on the forward's signature."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "logits_to_keep" in params and any(p.kind is p.VAR_KEYWORD for p in params.values())

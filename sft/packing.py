"""Whether a model may train on flattened (padding-free) rows."""

from __future__ import annotations

import torch


@torch.no_grad()
def isolates_packed_sequences(model) -> bool:
    """Whether `model` keeps the examples of a flattened (padding-free) row apart, as if each ran alone.

    DataCollatorWithFlattening relies on the model building a block-diagonal mask from position_ids. Llama, GPT-2
    and most decoders in transformers 5 do (without a KV cache, as in the Trainer); some do not, e.g. OPT (Alpaca's
    default model facebook/opt-125m) passes no position_ids to its mask, so every example would attend to the
    ones before it in the row: silently wrong training. A two-example probe decides."""
    was_training = model.training
    model.eval()
    try:
        vocab = model.get_input_embeddings().weight.shape[0]
        a, b = [t % vocab for t in (5, 9, 13)], [t % vocab for t in (7, 11, 3, 17)]
        device = next(model.parameters()).device
        packed = (
            model(
                input_ids=torch.tensor([a + b], device=device),
                position_ids=torch.tensor([list(range(len(a))) + list(range(len(b)))], device=device),
                use_cache=False,
            )
            .logits[0, len(a) :]
            .float()
        )
        alone = model(input_ids=torch.tensor([b], device=device), use_cache=False).logits[0].float()
    finally:
        model.train(was_training)
    return torch.allclose(packed, alone, atol=1e-3, rtol=1e-2)

"""Batched sampling for every stage that generates text (pairs, compare, `rlhf generate`).

Prompts (text rendered with `template`, see rlhf.templates) are left-padded into batches and decoded with the
KV cache; temperature 0 means greedy. A response is `finished` when the model ended its reply within
`max_new_tokens`: EOS under Alpaca, the chat template's end-of-turn token under chat (the token PPO's rollouts
stop at); the gold judge scores unfinished ones 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rlhf.templates import encode_kwargs, end_of_turn_id


@dataclass
class SamplingParams:
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 64
    num_samples: int = 1
    seed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Completion:
    text: str
    finished: bool
    num_tokens: int


def read_response(tokenizer, ids: list[int], eos: int) -> Completion:
    """A reply's new token ids as every judge reads them: up to its end of turn `eos` (dropped; finished = it was
    there), pads dropped, special tokens dropped from the text. Sampling here and PPO's gold-judge reward
    (ppo/judge_reward.py) both read replies through this, so the two score the same text."""
    finished = eos in ids
    ids = ids[: ids.index(eos)] if finished else ids
    ids = [t for t in ids if t != tokenizer.pad_token_id]
    return Completion(tokenizer.decode(ids, skip_special_tokens=True), finished, len(ids))


def _sampling_kwargs(params: SamplingParams) -> dict:
    if params.temperature <= 0:
        return {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
    return {
        "do_sample": True,
        "temperature": params.temperature,
        "top_k": params.top_k if params.top_k > 0 else None,
        "top_p": params.top_p if params.top_p < 1.0 else None,
    }


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    params: SamplingParams | None = None,
    *,
    batch_size: int = 32,
    progress: bool = False,
    template: str = "alpaca",
) -> list[list[Completion]]:
    """`params.num_samples` completions for each prompt, in prompt order."""
    params = params or SamplingParams()
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError("batched generation needs a pad token distinct from EOS")
    was_training = model.training
    model.eval()
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # so every prompt ends where generation starts
    torch.manual_seed(params.seed)
    eos = end_of_turn_id(tokenizer, template)
    out: list[list[Completion]] = []
    device = next(model.parameters()).device
    # Greedy decoding is deterministic: decode each prompt once and repeat it (transformers refuses
    # num_return_sequences > 1 without sampling).
    per_prompt = params.num_samples if params.temperature > 0 else 1
    try:
        bar = tqdm(total=len(prompts), desc="generate", unit="prompt", disable=not progress)
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            # Specials as the stages saw them: Alpaca text gets the tokenizer's, chat text holds its own.
            enc = tokenizer(chunk, return_tensors="pt", padding=True, **encode_kwargs(template)).to(device)
            gen = model.generate(
                **enc,
                max_new_tokens=params.max_new_tokens,
                num_return_sequences=per_prompt,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
                use_cache=True,
                **_sampling_kwargs(params),
            )
            new_tokens = gen[:, enc["input_ids"].shape[1] :].tolist()
            for i in range(len(chunk)):
                samples = []
                for ids in new_tokens[i * per_prompt : (i + 1) * per_prompt] * (
                    params.num_samples // per_prompt
                ):
                    samples.append(read_response(tokenizer, ids, eos))
                out.append(samples)
            bar.update(len(chunk))
        bar.close()
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    return out


@torch.no_grad()
def response_logprobs(
    model,
    tokenizer,
    prompts: list[str],
    responses: list[str],
    *,
    batch_size: int = 32,
    temperature: float = 1.0,
    finished: list[bool] | None = None,
    template: str = "alpaca",
) -> list[float]:
    """Sum of log p(response token | prefix) under `model` (logits / temperature, as sampled) for each
    (prompt, response [+ end of turn if finished]) pair, prompts rendered with `template`.

    Used to estimate KL(policy || reference) from the policy's own samples: mean of log p_policy - log p_ref
    (TRL's objective/kl uses the same temperature-scaled distributions)."""
    device = next(model.parameters()).device
    model.eval()
    end = end_of_turn_id(tokenizer, template)
    fins = finished if finished is not None else [True] * len(prompts)
    rows, masks = [], []
    for p, r, fin in zip(prompts, responses, fins):
        p_ids = tokenizer(p, **encode_kwargs(template))["input_ids"]
        r_ids = tokenizer(r, add_special_tokens=False)["input_ids"] + ([end] if fin else [])
        rows.append(p_ids + r_ids)
        masks.append([0] * len(p_ids) + [1] * len(r_ids))
    # Sort by length so each batch pads little; scatter back to input order.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    totals = [0.0] * len(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(rows[i]) for i in idx)
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(idx), width), dtype=torch.long)
        resp = torch.zeros((len(idx), width), dtype=torch.bool)
        for j, i in enumerate(idx):  # right padding: positions stay 0..n-1
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            att[j, : len(rows[i])] = 1
            resp[j, : len(rows[i])] = torch.tensor(masks[i], dtype=torch.bool)
        logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits.float() / max(
            temperature, 1e-6
        )
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
        for i, total in zip(idx, (logp * resp[:, 1:].to(device)).sum(-1).tolist()):
            totals[i] = total
    return totals

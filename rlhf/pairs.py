"""`rlhf pairs`: sample n candidate responses per prompt from a policy checkpoint, for labeling.

Rows: {"id", "instruction", "input", "prompt", "responses", "finished", "policy", "sampling"}, plus "messages" when
the prompt is a conversation (what the chat template renders; "prompt" is its transcript); "flagged" is set
when the n responses stay identical, or one stays empty, after `--resample` extra draws (a pair of equal responses
teaches nothing; an empty one is refused by the preference readers, so `rlhf annotate` drops and counts it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser, float_in, int_at_least
from rlhf.errors import UserError, exit_on_user_error
from rlhf.generate import SamplingParams, generate
from rlhf.io import atomic_write_jsonl
from rlhf.models import LoadedModel, load_policy
from rlhf.paths import refuse_overlap
from rlhf.prompt_rows import display_text, load_prompt_rows
from rlhf.templates import TEMPLATES, render_prompts


def _usable(samples) -> int:
    """Distinct non-empty responses: what a labeler can actually compare."""
    return len({c.text for c in samples if c.text.strip()})


def _problem(samples) -> str | None:
    if any(not c.text.strip() for c in samples):
        return "empty response"
    if len({c.text for c in samples}) < len(samples):
        return "identical responses"
    return None


def sample_pairs(
    policy: LoadedModel,
    prompts: list[dict],
    params: SamplingParams,
    *,
    batch_size: int = 64,
    resample: int = 2,
    progress: bool = True,
) -> list[dict]:
    model, tokenizer, template = policy.model, policy.tokenizer, policy.template
    texts = render_prompts(prompts, template, tokenizer)
    samples = generate(
        model, tokenizer, texts, params, batch_size=batch_size, progress=progress, template=template
    )
    # Resample prompts whose responses came out identical or empty, with fresh seeds.
    for attempt in range(1, resample + 1):
        same = [i for i, s in enumerate(samples) if _problem(s)]
        if not same:
            break
        redo = generate(
            model,
            tokenizer,
            [texts[i] for i in same],
            SamplingParams(**{**params.to_dict(), "seed": params.seed + 1000 * attempt}),
            batch_size=batch_size,
            template=template,
        )
        for i, new in zip(same, redo):
            if _usable(new) > _usable(samples[i]):
                samples[i] = new
    stage = policy.source.stage
    lineage = {
        "path": policy.source.path,
        "kind": policy.source.kind,
        "manifest_sha256": stage.sha256 if stage is not None else None,
    }
    rows = []
    for i, (p, s) in enumerate(zip(prompts, samples)):
        row = {
            "id": str(p.get("id", f"p{i:06d}")),
            "instruction": p["instruction"],
            "input": p.get("input", ""),
            "prompt": display_text(p),
            "responses": [c.text for c in s],
            "finished": [c.finished for c in s],
            "policy": lineage,
            "sampling": params.to_dict(),
        }
        if p.get("messages"):
            row["messages"] = p["messages"]
        if problem := _problem(s):
            row["flagged"] = problem
        rows.append(row)
    return rows


@exit_on_user_error
def cli(argv=None, prog="rlhf pairs") -> int:
    p = ArgumentParser(prog=prog, description="Sample n responses per prompt from a policy checkpoint.")
    p.add_argument(
        "--policy", required=True, help="a finished sft, ppo, dpo or rloo stage dir (or any policy model dir)"
    )
    p.add_argument(
        "--prompts",
        required=True,
        help="prompts: Alpaca rows, `prompt` strings or message lists, or `messages`",
    )
    p.add_argument(
        "--template",
        choices=TEMPLATES,
        default=None,
        help="prompt template for a policy without a manifest (default alpaca; chat: the tokenizer's own)",
    )
    p.add_argument("--n", type=int_at_least(2), default=2, help="responses per prompt")
    p.add_argument("--temperature", type=float_in(0), default=1.0, help="0 = greedy")
    p.add_argument("--top-p", type=float_in(0, 1, low_open=True), default=0.95)
    p.add_argument("--top-k", type=int_at_least(0), default=0, help="0 = off")
    p.add_argument("--max-new-tokens", type=int_at_least(1), default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int_at_least(1), default=64)
    p.add_argument("--limit", type=int_at_least(1), default=None, help="use only the first N prompts")
    p.add_argument(
        "--resample",
        type=int_at_least(0),
        default=2,
        help="extra draws for prompts whose responses are identical",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    rows = write_pairs(
        a.policy,
        a.prompts,
        a.out,
        n=a.n,
        temperature=a.temperature,
        top_p=a.top_p,
        top_k=a.top_k,
        max_new_tokens=a.max_new_tokens,
        seed=a.seed,
        batch_size=a.batch_size,
        limit=a.limit,
        resample=a.resample,
        progress=not a.quiet,
        template=a.template,
    )
    flagged = sum("flagged" in r for r in rows)
    print(f"pairs: wrote {len(rows)} rows to {a.out} ({flagged} flagged with identical responses)")
    return 0


def write_pairs(
    policy: str | Path,
    prompts: str | Path,
    out: str | Path,
    *,
    n: int = 2,
    temperature: float = 1.0,
    top_p: float = 0.95,
    top_k: int = 0,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 64,
    limit: int | None = None,
    resample: int = 2,
    progress: bool = True,
    template: str | None = None,
) -> list[dict]:
    """Sample `n` responses per prompt of `prompts` from the `policy` stage and write the rows to `out` (jsonl);
    `template` for a policy without a manifest."""
    refuse_overlap({"--policy": policy, "--prompts": prompts}, {"--out": out})
    if n < 2:
        raise UserError("--n must be at least 2 to make pairs", "command line", "--n")
    rows = load_prompt_rows(prompts)[:limit]
    loaded = load_policy(policy, device="auto", template=template)
    if loaded.source.note:
        print(loaded.source.note, file=sys.stderr)
    params = SamplingParams(temperature, top_k, top_p, max_new_tokens, n, seed)
    pairs = sample_pairs(loaded, rows, params, batch_size=batch_size, resample=resample, progress=progress)
    atomic_write_jsonl(out, pairs)
    return pairs

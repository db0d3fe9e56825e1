"""`rlhf pairs`: sample n candidate responses per prompt from a policy checkpoint, for labeling.

Rows: {"id", "instruction", "input", "prompt", "responses", "finished", "policy", "sampling"}; "flagged" is set
when the n responses stay identical, or one stays empty, after `--resample` extra draws (a pair of equal responses
teaches nothing; an empty one is refused by the preference readers, so `rlhf annotate` drops and counts it).
"""

from __future__ import annotations

from pathlib import Path

from rlhf import checkpoint
from rlhf.argparse_utils import ArgumentParser
from rlhf.data import load_instructions
from rlhf.errors import UserError, exit_on_user_error
from rlhf.generate import SamplingParams, generate
from rlhf.io import atomic_write_jsonl
from rlhf.models import load_policy_from_stage
from rlhf.paths import refuse_overlap
from rlhf.templates import format_prompt


def display_prompt(instruction: str, input: str) -> str:
    return f"{instruction}\n\n{input}" if input else instruction


def load_policy(path: str | Path):
    """Model + tokenizer of a finished sft or ppo stage (the manifest is checked first)."""
    stage = checkpoint.require(path, kind=("sft", "ppo"))
    return (stage, *load_policy_from_stage(stage))


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
    stage,
    model,
    tokenizer,
    prompts: list[dict],
    params: SamplingParams,
    *,
    batch_size: int = 64,
    resample: int = 2,
    progress: bool = True,
) -> list[dict]:
    texts = [format_prompt(p["instruction"], p.get("input", ""), stage.template) for p in prompts]
    samples = generate(model, tokenizer, texts, params, batch_size=batch_size, progress=progress)
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
        )
        for i, new in zip(same, redo):
            if _usable(new) > _usable(samples[i]):
                samples[i] = new
    policy = {"path": str(stage.path), "kind": stage.kind, "manifest_sha256": stage.sha256}
    rows = []
    for i, (p, s) in enumerate(zip(prompts, samples)):
        row = {
            "id": str(p.get("id", f"p{i:06d}")),
            "instruction": p["instruction"],
            "input": p.get("input", ""),
            "prompt": display_prompt(p["instruction"], p.get("input", "")),
            "responses": [c.text for c in s],
            "finished": [c.finished for c in s],
            "policy": policy,
            "sampling": params.to_dict(),
        }
        if problem := _problem(s):
            row["flagged"] = problem
        rows.append(row)
    return rows


@exit_on_user_error
def cli(argv=None, prog="rlhf pairs") -> int:
    p = ArgumentParser(prog=prog, description="Sample n responses per prompt from a policy checkpoint.")
    p.add_argument("--policy", required=True, help="a finished sft or ppo stage dir")
    p.add_argument("--prompts", required=True, help="Alpaca json/jsonl (instruction, input)")
    p.add_argument("--n", type=int, default=2, help="responses per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    p.add_argument(
        "--resample", type=int, default=2, help="extra draws for prompts whose responses are identical"
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    refuse_overlap({"--policy": a.policy, "--prompts": a.prompts}, {"--out": a.out})
    if a.n < 2:
        raise UserError("--n must be at least 2 to make pairs", "command line", "--n")
    prompts = load_instructions(a.prompts, require_output=False)[: a.limit]
    stage, model, tok = load_policy(a.policy)
    params = SamplingParams(a.temperature, a.top_k, a.top_p, a.max_new_tokens, a.n, a.seed)
    rows = sample_pairs(
        stage, model, tok, prompts, params, batch_size=a.batch_size, resample=a.resample, progress=not a.quiet
    )
    atomic_write_jsonl(a.out, rows)
    flagged = sum("flagged" in r for r in rows)
    print(f"pairs: wrote {len(rows)} rows to {a.out} ({flagged} flagged with identical responses)")
    return 0

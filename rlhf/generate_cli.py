"""`rlhf generate CKPT --instruction ...`: answer one instruction with a policy checkpoint.

The prompt is the checkpoint's own training template (from its manifest), so what you see is what the stage
was trained on. CKPT is a finished sft or ppo stage dir; a plain HF model dir (config.json, no manifest, not an
unfinished stage) also works, with the Alpaca template and a note on stderr.

    rlhf generate runs/demo/sft --instruction "Which number is the largest?" --input "3, 8, 5"
    rlhf generate runs/demo/ppo --instruction "..." --temperature 0.7 --top-p 0.9 --num-samples 4 --seed 1
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser
from rlhf.errors import UserError, exit_on_user_error

STAGE_MARKERS = ("log.jsonl", "README.md", "trainer_state.json")


def is_plain_model_dir(path: Path) -> bool:
    """A HF model dir that no stage of ours wrote, or a complete trainer checkpoint-N dir (PPO's hold a plain
    policy; transformers writes trainer_state.json last). A stage dir without its manifest is an unfinished (or
    interrupted --overwrite) run whose weights may be stale, and a checkpoint-N cut short is incomplete: those
    are refused, not loaded."""
    from rlhf.training import is_complete_checkpoint

    if not (path / "config.json").is_file():
        return False
    if path.name.startswith("checkpoint-"):
        return is_complete_checkpoint(path)
    if any((path / m).exists() for m in STAGE_MARKERS) or any(path.glob("checkpoint-*")):
        return False
    return True


def load_for_generation(path: str | Path):
    """(model, tokenizer, template, note): a finished sft/ppo stage, or a plain HF model dir."""
    from rlhf import checkpoint
    from rlhf.models import load_causal_lm, load_policy_from_stage, load_tokenizer, sync_special_token_ids

    path = Path(path)
    if path.is_dir() and not checkpoint.is_finished(path) and is_plain_model_dir(path):
        tokenizer = load_tokenizer(path)
        model = load_causal_lm(path)
        sync_special_token_ids(model, tokenizer)
        note = (
            f"note: {path} has no {checkpoint.MANIFEST}: loaded as a plain HF model with the alpaca template"
        )
        return model, tokenizer, "alpaca", note
    stage = checkpoint.require(path, kind=("sft", "ppo"))
    model, tokenizer = load_policy_from_stage(stage)
    return model, tokenizer, stage.template, None


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf generate") -> int:
    p = ArgumentParser(prog=prog, description="Answer one instruction with a finished sft/ppo checkpoint.")
    p.add_argument("checkpoint", help="a finished sft or ppo stage dir (or a plain HF model dir)")
    p.add_argument("--instruction", required=True)
    p.add_argument("--input", default="", help="optional context for the instruction (Alpaca's `input`)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1.0 = off")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-prompt", action="store_true", help="print the formatted prompt first")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of plain text")
    a = p.parse_args(argv)
    for flag, ok in (
        ("--temperature", a.temperature >= 0),
        ("--top-k", a.top_k >= 0),
        ("--top-p", 0 < a.top_p <= 1),
        ("--max-new-tokens", a.max_new_tokens > 0),
        ("--num-samples", a.num_samples > 0),
    ):
        if not ok:
            raise UserError(f"out of range: {getattr(a, flag[2:].replace('-', '_'))!r}", "command line", flag)
    if not a.instruction.strip():
        raise UserError("empty instruction", "command line", "--instruction")

    from transformers.utils import logging as hf_logging

    from rlhf.generate import SamplingParams, generate
    from rlhf.templates import format_prompt

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise around one answer
    model, tokenizer, template, note = load_for_generation(a.checkpoint)
    if note:
        print(note, file=sys.stderr)
    prompt = format_prompt(a.instruction, a.input, template)
    params = SamplingParams(a.temperature, a.top_k, a.top_p, a.max_new_tokens, a.num_samples, a.seed)
    (samples,) = generate(model, tokenizer, [prompt], params)
    if a.json:
        print(
            json.dumps(
                {
                    "checkpoint": str(a.checkpoint),
                    "template": template,
                    "prompt": prompt,
                    "sampling": params.to_dict(),
                    "responses": [c.text for c in samples],
                    "finished": [c.finished for c in samples],
                },
                ensure_ascii=False,
            )
        )
        return 0
    if a.show_prompt:
        print(prompt, end="" if prompt.endswith("\n") else "\n")
    for i, c in enumerate(samples, start=1):
        if len(samples) > 1:
            print(
                f"--- sample {i}/{len(samples)}"
                + ("" if c.finished else " (no EOS: cut at --max-new-tokens)")
            )
        print(c.text)
    if len(samples) == 1 and not samples[0].finished:
        print(
            f"note: no EOS within --max-new-tokens {a.max_new_tokens}: the response was cut", file=sys.stderr
        )
    return 0

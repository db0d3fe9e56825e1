"""`rlhf generate CKPT --instruction ...`: answer one instruction with a policy checkpoint.

The prompt is the checkpoint's own training template (from its manifest), so what you see is what the stage
was trained on. CKPT is a finished sft, ppo, dpo or rloo stage dir, a complete checkpoint-N dir, a LoRA adapter dir, or a
plain HF model dir or hub id (with the Alpaca template, or `--template chat` for its own chat template, and a
note on stderr); an unfinished run is refused.

    rlhf generate runs/demo/sft --instruction "Which number is the largest?" --input "3, 8, 5"
    rlhf generate runs/demo/ppo --instruction "..." --temperature 0.7 --top-p 0.9 --num-samples 4 --seed 1
    rlhf generate path/to/SmolLM2-135M-Instruct --template chat --instruction "Name a prime number."
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser, float_in, int_at_least
from rlhf.errors import UserError, exit_on_user_error
from rlhf.templates import TEMPLATES


def load_for_generation(path: str | Path, template: str | None = None):
    """(model, tokenizer, template, note): anything `rlhf.models.locate_model` takes as a policy; `template` for
    a model without a manifest."""
    from rlhf.models import load_policy

    loaded = load_policy(path, device="auto", template=template)
    return loaded.model, loaded.tokenizer, loaded.template, loaded.source.note


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf generate") -> int:
    p = ArgumentParser(prog=prog, description="Answer one instruction with a finished sft/ppo checkpoint.")
    p.add_argument(
        "checkpoint",
        help="a finished sft, ppo, dpo or rloo stage dir (or a checkpoint-N, adapter or HF model dir)",
    )
    p.add_argument("--instruction", required=True)
    p.add_argument("--input", default="", help="optional context for the instruction (Alpaca's `input`)")
    p.add_argument(
        "--template",
        choices=TEMPLATES,
        default=None,
        help="prompt template for a model without a manifest (default alpaca; chat: the tokenizer's own)",
    )
    p.add_argument("--temperature", type=float_in(0), default=0.0, help="0 = greedy")
    p.add_argument("--top-k", type=int_at_least(0), default=0, help="0 = off")
    p.add_argument("--top-p", type=float_in(0, 1, low_open=True), default=1.0, help="1.0 = off")
    p.add_argument("--max-new-tokens", type=int_at_least(1), default=128)
    p.add_argument("--num-samples", type=int_at_least(1), default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-prompt", action="store_true", help="print the formatted prompt first")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of plain text")
    a = p.parse_args(argv)
    if not a.instruction.strip():
        raise UserError("empty instruction", "command line", "--instruction")

    from transformers.utils import logging as hf_logging

    from rlhf.generate import SamplingParams, generate
    from rlhf.prompt_rows import normalise_prompt_row
    from rlhf.templates import render_prompt

    row = normalise_prompt_row({"instruction": a.instruction, "input": a.input}, "command line")
    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise around one answer
    model, tokenizer, template, note = load_for_generation(a.checkpoint, a.template)
    if note:
        print(note, file=sys.stderr)
    prompt = render_prompt(row, template, tokenizer)
    params = SamplingParams(a.temperature, a.top_k, a.top_p, a.max_new_tokens, a.num_samples, a.seed)
    (samples,) = generate(model, tokenizer, [prompt], params, template=template)
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
                + ("" if c.finished else " (no end of reply: cut at --max-new-tokens)")
            )
        print(c.text)
    if len(samples) == 1 and not samples[0].finished:
        print(
            f"note: no EOS within --max-new-tokens {a.max_new_tokens}: the response was cut", file=sys.stderr
        )
    return 0

"""Generation for pairs/compare: responses/s of our batched KV-cached sampling (batch 32) vs one prompt at a time.
Goal >= 4x. Same checkpoint, same prompts, same sampling settings, same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import demo_policy, parser, report


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    from rlhf.generate import SamplingParams, generate
    from rlhf.models import load_causal_lm, load_tokenizer
    from rlhf.tasks.demo import make_tasks
    from rlhf.templates import format_prompt

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = demo_policy(Path(tmp))
        model, tok = load_causal_lm(ckpt), load_tokenizer(ckpt)
        prompts = [
            format_prompt(t.instruction, t.input) for t in make_tasks(a.prompts, 1, ("largest", "smallest"))
        ]
        params = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=24, num_samples=1, seed=0)
        generate(model, tok, prompts[:4], params, batch_size=4)  # warm-up
        t0 = time.perf_counter()
        generate(model, tok, prompts, params, batch_size=a.batch_size)
        batched = len(prompts) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        generate(model, tok, prompts, params, batch_size=1)
        single = len(prompts) / (time.perf_counter() - t0)
    report(
        "generation",
        [
            {
                "figure": f"responses/s, batch {a.batch_size} vs 1",
                "ours": batched,
                "baseline": single,
                "unit": "resp/s",
                "ratio": batched / single,
                "goal": ">= 4x",
            }
        ],
        a.json,
    )


if __name__ == "__main__":
    main()

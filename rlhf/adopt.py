"""A model dir taken as the start policy without fine-tuning: a finished `sft` stage holding a copy of it.

RLHF on an instruction-tuned model (SmolLM2-135M-Instruct converted from its GGUF) may start from the model as
it is. Every later step (pairs, reward, PPO, compare) expects an sft stage: its manifest carries the prompt
template the policy was tuned with and the lineage back to the model. So the model is copied into the stage dir
and a manifest is written for it, with `fine_tuned: false` in its metrics and the model as its external parent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rlhf import checkpoint
from rlhf.errors import UserError
from rlhf.io import replace_dir, sibling_temp_dir


def adopt_as_sft(model_dir: str | Path, out: str | Path, *, template: str = "alpaca") -> checkpoint.Stage:
    """Copy the HF model dir `model_dir` to `out` and finish it as an sft stage with prompt template `template`.

    `out` may hold an earlier sft stage or an unfinished copy (replaced); anything else is refused."""
    from rlhf.models import load_tokenizer

    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "config.json").is_file():
        raise UserError("expected a model dir with config.json to adopt as the start policy", model_dir)
    if checkpoint.is_finished(out) and checkpoint.require(out, kind=None).kind != "sft":
        raise UserError("holds a finished stage of another kind; expected an sft stage dir to replace", out)
    parent = checkpoint.external(model_dir, role="policy")
    tmp = sibling_temp_dir(out, "adopting")
    try:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md", ".*"))
        replace_dir(tmp, out)  # no manifest yet: unfinished until `finish` writes it, last
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    config = {"model_name_or_path": str(model_dir), "template": template, "fine_tuned": False}
    return checkpoint.finish(
        out,
        "sft",
        config=config,
        tokenizer=load_tokenizer(out),
        parents=[parent],
        metrics={"fine_tuned": False},
        template=template,
        base_model=parent.base_model,
    )

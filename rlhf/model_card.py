"""The model card (`README.md`) of a finished stage, written with huggingface_hub's ModelCard / ModelCardData:
metadata the hub reads (base model, datasets, license, pipeline tag, tags), the stage's metrics, and a load snippet
for this kind of output (a causal LM, a reward model, or a LoRA adapter).

The card names the manifest (rlhf.checkpoint.MANIFEST): `rlhf.models.is_unfinished_run` takes a dir holding our
card but no manifest for an interrupted run of ours, not a plain HF model.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from rlhf.models import is_hub_id

TITLES = {
    "sft": "SFT policy",
    "reward": "Reward model",
    "ppo": "PPO policy",
    "dpo": "DPO policy",
    "rloo": "RLOO policy",
}


def _card_license(name_or_path: str | Path) -> str | None:
    """The license in the card of a local model dir or a cached hub model, None when it has none or none is here."""
    readme = Path(name_or_path).expanduser() / "README.md"
    if not readme.is_file() and is_hub_id(str(name_or_path)):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(str(name_or_path), "README.md")
        readme = Path(cached) if isinstance(cached, str) else readme
    if not readme.is_file():
        return None
    try:
        return ModelCard.load(readme).data.license
    except Exception:  # a card without (valid) metadata says nothing about the license
        return None


def _load_snippet(kind: str, adapter: bool, where: str) -> str:
    if adapter:
        return (
            "from peft import AutoPeftModelForCausalLM\n"
            "from transformers import AutoTokenizer\n\n"
            "# the base model is read from adapter_config.json (base_model_name_or_path)\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{where}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")'
        )
    if kind == "reward":
        return (
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            f'model = AutoModelForSequenceClassification.from_pretrained("{where}")  # one output: the reward\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")\n'
            "# prompt: the instruction in the prompt template named above; response: the text to score\n"
            'reward = model(**tokenizer(prompt + response, return_tensors="pt")).logits[0, 0].item()'
        )
    return (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{where}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")'
    )


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def model_card(
    out: Path,
    kind: str,
    *,
    parents: list,
    metrics: dict,
    base_model: str | None,
    config: dict,
    template: str,
    adapter: bool = False,
    repo_id: str | None = None,
) -> ModelCard:
    """The card of the stage dir `out`. `parents`: the finished stages (and external models) it was made from;
    `repo_id`: the hub repo it is pushed to (the load snippet names it instead of the local dir)."""
    from rlhf.checkpoint import MANIFEST

    license_ = None
    for source in [base_model, *(p.path for p in parents)]:
        if source and (license_ := _card_license(source)):
            break
    dataset = config.get("dataset_name")  # a hub id; a local data path is no card metadata
    datasets = [dataset] if isinstance(dataset, str) and dataset and is_hub_id(dataset) else None
    tags = ["rlhf", kind, "trl"]
    if kind == "reward":
        tags.append("reward-model")
    if adapter:
        tags.append("lora")
    data = ModelCardData(
        base_model=base_model if base_model and is_hub_id(base_model) else None,
        datasets=datasets,
        license=license_,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-classification" if kind == "reward" else "text-generation",
        tags=tags,
    )
    what = TITLES[kind] + (" (LoRA adapter)" if adapter else "")
    lines = [
        f"# {what}: {out.name}",
        "",
        f"Written by the rlhf kit's `{kind}` stage. Lineage and the full resolved config are in `{MANIFEST}` "
        "(`rlhf inspect DIR` prints the lineage).",
        "",
    ]
    if base_model:
        lines.append(f"- base model: `{base_model}`")
    lines.append(f"- prompt template: `{template}`")
    for p in parents:
        shown = os.path.relpath(p.path, out) if Path(p.path).exists() else str(p.path)
        lines.append(f"- parent ({p.kind}): `{shown}`")
    shown_metrics = {k: v for k, v in metrics.items() if v is not None}
    if shown_metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_value(v)} |" for k, v in shown_metrics.items()]
    lines += ["", "## Load", "", "```python", _load_snippet(kind, adapter, repo_id or str(out)), "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))

"""PPO prompts: where they come from (a prompts file, or a task's generator) and the token ids TRL's rollouts
start from."""

from __future__ import annotations

from datasets import Dataset

from ppo.config import PPOStageConfig
from rlhf.data import load_instructions
from rlhf.errors import UserError
from rlhf.sources import stage_sources
from rlhf.templates import format_prompt


def tokenize_prompts(rows: list[dict], tokenizer, template: str, max_len: int) -> tuple[Dataset, int]:
    texts = [format_prompt(r["instruction"], r.get("input", ""), template) for r in rows]
    ids = tokenizer(texts)["input_ids"] if texts else []  # specials exactly as SFT's preprocess saw them
    kept = [x for x in ids if len(x) <= max_len]
    return Dataset.from_dict({"input_ids": kept}), len(ids) - len(kept)


def load_prompts(cfg: PPOStageConfig) -> tuple[list[dict], list[dict]]:
    """(train, eval) prompt rows: a file's first rows held out for eval, or fresh draws from the task's splits."""
    if cfg.prompts_path:
        source, held_out = stage_sources(cfg, "prompts_path")
        rows = load_instructions(source, require_output=False)
        if held_out is not None:  # dataset_test_split
            return rows, load_instructions(held_out, require_output=False)[: cfg.num_eval_prompts]
        n_eval = min(cfg.num_eval_prompts, len(rows) // 10)
        return rows[n_eval:], rows[:n_eval]
    n = cfg.task_prompts or cfg.demo_prompts
    if n > 0:
        from rlhf import tasks

        where = cfg.config_path or "command line"
        kinds = tuple(k.strip() for k in (cfg.task_kinds or cfg.demo_kinds).split(",") if k.strip()) or None
        try:
            task = tasks.get(cfg.task)
        except ValueError as e:
            raise UserError(str(e), where, "key 'task'") from None
        try:
            train = task.prompts(n, seed=cfg.seed + 101, split="train", kinds=kinds)
            evals = task.prompts(cfg.num_eval_prompts, seed=cfg.seed + 202, split="eval", kinds=kinds)
        except ValueError as e:  # an unknown kind, or a prompt space too small
            raise UserError(str(e), where, "key 'task_kinds'") from None
        return train, evals
    raise UserError(
        "set prompts_path (Alpaca json/jsonl) or task_prompts > 0",
        cfg.config_path or "command line",
        "key 'prompts_path'",
    )

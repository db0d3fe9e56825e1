"""The prompts an RL stage (PPO, RLOO) samples rollouts from: where they come from (a prompts file, or a task's
generator), the template they are rendered with, their token ids and the token a rollout stops at. `cfg` is the
stage's config: its prompt keys (prompts_path, task_prompts, num_eval_prompts, template ...) are the same in both."""

from __future__ import annotations

from datasets import Dataset

from rlhf.distributed import main_print
from rlhf.errors import UserError
from rlhf.prompt_rows import load_prompt_rows
from rlhf.sources import stage_sources
from rlhf.templates import (
    choose_template,
    encode_kwargs,
    end_of_turn,
    end_of_turn_id,
    render_prompts,
)


def prompt_template(sft, rm, cfg) -> str:
    """The template the policy was trained with: the sft stage's, else (a policy without a manifest) the reward
    stage's, else `template` (default alpaca). A reward stage trained with another template is refused; `rm` is None
    when PPO's reward is a judge."""
    where = cfg.config_path or "command line"
    recorded = {p.template for p in (sft, rm) if p is not None and p.kind != "external"}
    if len(recorded) > 1:
        raise UserError(
            f"the policy uses template {sft.template!r} but the reward model was trained with {rm.template!r}",
            rm.path,
        )
    return choose_template(next(iter(recorded), None), cfg.template, where, "key 'template'")


def stop_at_end_of_turn(tokenizer, template: str) -> None:
    """Make the tokenizer's EOS the token a reply ends with, the one TRL's rollouts stop at and its
    missing_eos_penalty looks for: under chat, the template's end of turn (already EOS for e.g. SmolLM2 and
    Llama 3 Instruct, whose eos is <|im_end|> / <|eot_id|>)."""
    stop = end_of_turn_id(tokenizer, template)
    if stop != tokenizer.eos_token_id:
        main_print(f"rollouts stop at the chat template's end of turn {end_of_turn(tokenizer, template)!r}")
        tokenizer.eos_token = end_of_turn(tokenizer, template)


def encode_prompts(texts: list[str], tokenizer, template: str) -> list[list[int]]:
    """The token ids of prompts rendered with `template`, as a rollout starts from them: chat text holds its own
    special tokens; Alpaca's gets the tokenizer's, exactly as SFT's preprocess saw them."""
    return tokenizer(texts, **encode_kwargs(template))["input_ids"] if texts else []


def tokenize_prompts(rows: list[dict], tokenizer, template: str, max_len: int) -> tuple[Dataset, int]:
    """The rendered prompts' ids (`encode_prompts`) as PPO's dataset; prompts over `max_len` tokens are dropped and
    counted."""
    ids = encode_prompts(render_prompts(rows, template, tokenizer), tokenizer, template)
    kept = [x for x in ids if len(x) <= max_len]
    return Dataset.from_dict({"input_ids": kept}), len(ids) - len(kept)


def load_prompts(cfg) -> tuple[list[dict], list[dict]]:
    """(train, eval) prompt rows: a file's first rows held out for eval, or fresh draws from the task's splits."""
    if cfg.prompts_path:
        source, held_out = stage_sources(cfg, "prompts_path")
        rows = load_prompt_rows(source)
        if held_out is not None:  # dataset_test_split
            return rows, load_prompt_rows(held_out)[: cfg.num_eval_prompts]
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
        "set prompts_path (Alpaca rows, `prompt` strings or message lists) or task_prompts > 0",
        cfg.config_path or "command line",
        "key 'prompts_path'",
    )

"""What the labeling app shows: pairs read from a `rlhf pairs` file, or generated from two checkpoints.

`load_pairs` validates the whole file before anything starts, and refuses the first bad row with one error
naming the file and the line. `generate_compare_items` samples one response per prompt from each of two
checkpoints (blind policy comparison); each item remembers which checkpoint wrote which response. A prompt that
is a conversation keeps its `messages` (in the item's extra), so the page shows it turn by turn and the export
hands the conversation on to the reward stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhf.data import read_records, require_str
from rlhf.errors import UserError
from rlhf.label.store import MAX_RESPONSES, Item
from rlhf.messages import check_messages
from rlhf.templates import display_prompt, format_prompt, render_prompts

KNOWN_KEYS = {
    "id",
    "instruction",
    "input",
    "prompt",
    "responses",
    "sources",
    "policy",
    "sampling",
    "gold",
    "messages",
    "_row",
}


def display_text(instruction: str, input: str, prompt: str | None) -> str:
    """The prompt as shown to annotators: the file's display text, else the instruction and its input."""
    return prompt or display_prompt(instruction, input)


def _str_list(row: dict, key: str, path: Path, *, min_len: int, nonempty: bool) -> list[str]:
    where = f"{row.get('_row', '?')}: key '{key}'"
    value = row.get(key)
    what = f"a list of at least {min_len} {'non-empty ' if nonempty else ''}strings"
    if not isinstance(value, list):
        got = "missing" if key not in row else f"got {type(value).__name__}"
        raise UserError(f"{got}; expected {what}", path, where)
    if len(value) < min_len:
        raise UserError(f"has {len(value)} element(s); expected {what}", path, where)
    for j, v in enumerate(value):
        if not isinstance(v, str):
            raise UserError(f"element {j} is {type(v).__name__}; expected {what}", path, where)
        if nonempty and not v.strip():
            raise UserError(f"element {j} is empty; expected {what}", path, where)
    return value


def _gold(row: dict, n: int, path: Path) -> list[int]:
    """A gold row's known answer as a ranking of file indices, best first: for a pair the index of the better
    response (`"gold": 1`), for any item the full ranking (`"gold": [2, 0, 1]`)."""
    where = f"{row.get('_row', '?')}: key 'gold'"
    value = row.get("gold")
    what = f"the index of the better response (0 or 1) or a ranking of all {n} indices, best first"
    if isinstance(value, int) and not isinstance(value, bool) and n == 2 and value in (0, 1):
        return [value, 1 - value]
    if isinstance(value, list) and sorted(value) == list(range(n)) and all(type(v) is int for v in value):
        return list(value)
    got = "missing" if "gold" not in row else f"got {json.dumps(value)[:40]}"
    raise UserError(f"{got}; expected {what}", path, where)


def load_pairs(path: str | Path, *, gold: bool = False) -> list[Item]:
    """Read and validate a pairs file (`rlhf pairs` output or a compare-pairs file), 2 to 9 responses a row.
    `gold=True`: a gold set, every row carries its known answer in "gold"."""
    path = Path(path)
    items: list[Item] = []
    first_row: dict[str, str] = {}
    for row in read_records(path):
        where = row.get("_row", "?")
        item_id = row.get("id")
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            item_id = str(item_id)
            row["id"] = item_id
        item_id = require_str(row, "id", path)
        if item_id in first_row:
            raise UserError(
                f"duplicate id {item_id!r} (first at {first_row[item_id]})", path, f"{where}: key 'id'"
            )
        first_row[item_id] = where
        has_instruction = isinstance(row.get("instruction"), str) and row["instruction"].strip()
        has_prompt = isinstance(row.get("prompt"), str) and row["prompt"].strip()
        if not has_instruction and not has_prompt:
            for key in ("instruction", "prompt"):
                if key in row and row[key] is not None and not isinstance(row[key], str):
                    raise UserError(
                        f"expected a string, got {type(row[key]).__name__}", path, f"{where}: key '{key}'"
                    )
            raise UserError("needs 'instruction' or 'prompt' (a non-empty string)", path, where)
        instruction = require_str(row, "instruction", path, optional=True)
        prompt_given = require_str(row, "prompt", path, optional=True)
        input_ = require_str(row, "input", path, optional=True)
        responses = _str_list(row, "responses", path, min_len=2, nonempty=True)
        if len(responses) > MAX_RESPONSES:
            raise UserError(
                f"has {len(responses)} responses; expected at most {MAX_RESPONSES} (one key each on the page)",
                path,
                f"{where}: key 'responses'",
            )
        sources = None
        if row.get("sources") is not None:
            src = _str_list(row, "sources", path, min_len=2, nonempty=True)
            if len(src) != len(responses):
                raise UserError(
                    f"has {len(src)} names for {len(responses)} responses; expected one name per response",
                    path,
                    f"{where}: key 'sources'",
                )
            if len(set(src)) < len(src):
                same = next(s for s in src if src.count(s) > 1)
                raise UserError(
                    f"two compared responses come from {same!r}; expected a different name per response",
                    path,
                    f"{where}: key 'sources'",
                )
            sources = tuple(src)
        if row.get("messages") is not None:
            row["messages"] = check_messages(row["messages"], path, where)
        for key in ("policy", "sampling"):
            if key in row and row[key] is not None and not isinstance(row[key], dict):
                raise UserError(
                    f"expected an object, got {type(row[key]).__name__}", path, f"{where}: key '{key}'"
                )
        extra = {
            k: v
            for k, v in row.items()
            if k not in ("id", "instruction", "input", "prompt", "responses", "sources", "gold", "_row")
        }
        items.append(
            Item(
                id=item_id,
                instruction=instruction,
                input=input_,
                prompt=prompt_given or format_prompt(instruction, input_),
                display=display_text(instruction, input_, prompt_given),
                responses=tuple(responses),
                sources=sources,
                extra=extra,
                gold=_gold(row, len(responses), path) if gold else None,
            )
        )
    return items


def _load_policy(ckpt: str, template: str | None = None):
    """Model + tokenizer (left padding) + prompt template of anything `rlhf.models.locate_model` takes as a
    policy (a stage, checkpoint, adapter or model dir, or a hub id), on the GPU if there is one; `template` for a
    model without a manifest."""
    from rlhf.models import load_policy

    loaded = load_policy(ckpt, device="auto", padding_side="left", template=template)
    return loaded.model, loaded.tokenizer, loaded.template


def generate_compare_items(
    ckpt_a: str,
    ckpt_b: str,
    prompts_path: str | Path,
    params,
    *,
    batch_size: int = 16,
    limit: int | None = None,
    progress: bool = True,
    template: str | None = None,
) -> list[Item]:
    """One sampled response per prompt from each checkpoint; `sources` = (ckpt_a, ckpt_b) as given."""
    from rlhf.generate import generate
    from rlhf.prompt_rows import display_text, load_prompt_rows

    rows = load_prompt_rows(prompts_path)
    if limit is not None:
        rows = rows[:limit]
    outputs: list[list[str]] = []
    prompts_by_ckpt: list[list[str]] = []
    for ckpt in (ckpt_a, ckpt_b):
        model, tok, used = _load_policy(ckpt, template)
        prompts = render_prompts(rows, used, tok)
        try:
            done = generate(
                model, tok, prompts, params, batch_size=batch_size, progress=progress, template=used
            )
        except ValueError as e:
            raise UserError(f"cannot generate ({e})", ckpt) from None
        outputs.append([c[0].text for c in done])
        prompts_by_ckpt.append(prompts)
        del model
    items = []
    sampling = params.to_dict()
    for i, r in enumerate(rows):
        extra: dict[str, Any] = {"policy": {"a": str(ckpt_a), "b": str(ckpt_b)}, "sampling": sampling}
        if "id" in r:
            extra["prompt_id"] = r["id"]
        if r.get("messages"):
            extra["messages"] = r["messages"]
        items.append(
            Item(
                id=f"cmp-{i + 1:05d}",
                instruction=r["instruction"],
                input=r["input"],
                prompt=prompts_by_ckpt[0][i],
                display=display_text(r),  # what a pairs file written from these rows shows
                responses=(outputs[0][i], outputs[1][i]),
                sources=(str(ckpt_a), str(ckpt_b)),
                extra=extra,
            )
        )
    return items


def item_to_pairs_row(it: Item) -> dict[str, Any]:
    """An item as a compare-pairs row (the `rlhf pairs` format plus `sources`), e.g. to save generated pairs."""
    row: dict[str, Any] = {
        "id": it.id,
        "instruction": it.instruction,
        "input": it.input,
        "prompt": it.display,  # as `rlhf pairs` writes it: the prompt as a person reads it
        "responses": list(it.responses),
    }
    if it.sources:
        row["sources"] = list(it.sources)
    for k in ("policy", "sampling", "messages"):
        if it.extra and k in it.extra:
            row[k] = it.extra[k]
    return row

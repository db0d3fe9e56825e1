"""Read a Label Studio JSON export of a pairwise-comparison project into items and labels.

The project compares two texts with Label Studio's `Pairwise` tag (see rlhf.label.export.LS_DEFAULT for the
labeling config). Each task's `data` holds the prompt and the two answers (keys `prompt`/`answer1`/`answer2` by
default; `instruction`/`question`/`text` and `response1`/`response2` or `text1`/`text2` are recognised too). Each
annotation becomes a label by its `completed_by` user: `selected: left` = the first answer won, a cancelled
annotation = a skip. What Label Studio held but this app does not use (other data keys, task and annotation ids,
users) is kept so that exporting gives the same tasks back.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from rlhf.data import read_records
from rlhf.errors import UserError
from rlhf.label.export import LS_DEFAULT
from rlhf.label.store import Item

PROMPT_KEYS = ("prompt", "instruction", "question", "text")
ANSWER_KEYS = (("answer1", "answer2"), ("response1", "response2"), ("text1", "text2"))
_NAME_OK = re.compile(r"[^A-Za-z0-9_.@-]")


def _annotator(completed_by: Any) -> str:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    name = _NAME_OK.sub("_", str(completed_by))[:64]
    return name if name[:1].isalnum() else f"user{name}"[:64]


def _time(value: Any, fallback: float) -> float:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return fallback


def read_label_studio(path: str | Path) -> dict[str, Any]:
    """{"items": [Item], "annotators": [name], "labels": [row for Store.import_labels], "meta": {...}}."""
    path = Path(path)
    # The kit's reader: one clear error for malformed JSON, deep nesting, lone surrogates, NaN or duplicate keys.
    tasks = read_records(path)
    if not isinstance(tasks, list) or not tasks:
        raise UserError("expected a non-empty JSON list of tasks (Label Studio's JSON export)", path)
    keys = None
    items: list[Item] = []
    labels: list[dict[str, Any]] = []
    users: dict[str, Any] = {}
    names: dict[str, None] = {}
    from_name, to_name = LS_DEFAULT["from_name"], LS_DEFAULT["to_name"]
    seen_ids: set[str] = set()
    request_ids: set[str] = set()
    for t, task in enumerate(tasks):
        where = f"task {t}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise UserError("expected an object with a 'data' object", path, where)
        if keys is None:
            p = next((k for k in PROMPT_KEYS if isinstance(data.get(k), str)), None)
            ab = next((pair for pair in ANSWER_KEYS if all(isinstance(data.get(k), str) for k in pair)), None)
            if p is None or ab is None:
                raise UserError(
                    f"data needs a prompt ({'/'.join(PROMPT_KEYS)}) and two answers "
                    f"({', '.join('/'.join(pair) for pair in ANSWER_KEYS)})",
                    path,
                    where,
                )
            keys = [p, *ab]
        for k in keys:
            if not isinstance(data.get(k), str):
                raise UserError(f"key 'data.{k}': expected a string", path, where)
        if not data[keys[1]].strip() or not data[keys[2]].strip():
            raise UserError("an answer is empty; expected two non-empty texts", path, where)
        item_id = str(task.get("id", f"task-{t + 1}"))
        if item_id in seen_ids:
            raise UserError(f"duplicate task id {item_id!r}", path, where)
        seen_ids.add(item_id)
        rest = {k: v for k, v in data.items() if k not in keys}
        items.append(
            Item(
                id=item_id,
                instruction=data[keys[0]],
                input="",
                prompt=data[keys[0]],
                display=data[keys[0]],
                responses=(data[keys[1]], data[keys[2]]),
                extra={"label_studio": {"task_id": task.get("id", t + 1), "data": rest}},
            )
        )
        done: set[str] = set()
        for a, ann in enumerate(task.get("annotations") or []):
            if not isinstance(ann, dict):
                raise UserError("expected an annotation object", path, f"{where}: annotation {a}")
            name = _annotator(ann.get("completed_by", "annotator"))
            if name in done:
                continue  # one live label per (annotator, item): the first annotation counts
            pick = next(
                (r for r in ann.get("result") or [] if isinstance(r, dict) and r.get("type") == "pairwise"),
                None,
            )
            if ann.get("was_cancelled"):
                choice = "skip"
            elif pick is not None and (pick.get("value") or {}).get("selected") in ("left", "right"):
                choice = "A" if pick["value"]["selected"] == "left" else "B"
                from_name, to_name = pick.get("from_name", from_name), pick.get("to_name", to_name)
            else:
                continue  # an annotation without a pairwise choice: nothing to import
            request_id = f"ls-{ann.get('id', f'{t}-{a}')}"
            if request_id in request_ids:
                raise UserError(
                    f"duplicate annotation id {ann.get('id')!r}", path, f"{where}: annotation {a}"
                )
            request_ids.add(request_id)
            done.add(name)
            users[name] = ann.get("completed_by", name)
            names[name] = None
            labels.append(
                {
                    "annotator": name,
                    "item_id": item_id,
                    "choice": choice,
                    "reason": "",
                    "request_id": request_id,
                    "created_at": _time(ann.get("created_at"), 0.0),
                }
            )
    return {
        "items": items,
        "annotators": list(names) or ["annotator"],
        "labels": labels,
        "meta": {"keys": keys, "from_name": from_name, "to_name": to_name, "users": users},
    }

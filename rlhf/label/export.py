"""Export live labels as the preference rows the reward stage reads (`reward.data.load_preferences`).

One row per (annotator, item) decision; an item labeled by two annotators gives two rows. Ties and skips
carry no preference, so they are left out and counted in the summary; so are decisions between two identical
responses or involving an empty one (sampling can produce both), which the reward stage would refuse.
A pairs row that had only a `prompt` (no `instruction`) exports that prompt as its instruction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from rlhf.errors import UserError
from rlhf.io import atomic_write_jsonl
from rlhf.label.store import Store

PREF_KEYS = ("id", "instruction", "input", "prompt", "chosen", "rejected", "annotator", "source", "reason")


def preference_rows(db_path: str | Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    store = Store(db_path)
    try:
        items = {it["id"]: it for it in store.items()}
        labels = store.labels(live_only=True)
    except (sqlite3.DatabaseError, KeyError, ValueError) as e:  # our tables' names, someone else's columns
        raise UserError(f"cannot read the labels database ({e})", db_path) from None
    finally:
        store.close()
    labels.sort(key=lambda lab: (items[lab["item_id"]]["idx"], lab["annotator"]))
    rows = []
    counts = {"labels": len(labels), "ties": 0, "skips": 0, "unusable": 0}
    for lab in labels:
        if lab["choice"] == "tie":
            counts["ties"] += 1
            continue
        if lab["choice"] == "skip":
            counts["skips"] += 1
            continue
        it = items[lab["item_id"]]
        win = lab["winner"]
        chosen, rejected = it[f"response_{win}"], it[f"response_{1 - win}"]
        if chosen == rejected or not chosen.strip() or not rejected.strip():
            counts["unusable"] += 1
            continue
        rows.append(
            {
                "id": it["id"],
                "instruction": it["instruction"] or it["display"],
                "input": it["input"],
                "prompt": it["prompt"],
                "chosen": chosen,
                "rejected": rejected,
                "annotator": lab["annotator"],
                "source": "label-app",
                "reason": lab["reason"],
            }
        )
    counts["rows"] = len(rows)
    counts["unlabeled_items"] = len(set(items) - {lab["item_id"] for lab in labels})
    return rows, counts


def export_preferences(db_path: str | Path, out: str | Path) -> dict[str, int]:
    """Write prefs.jsonl atomically (temp file + rename) and return the counts for the summary line."""
    rows, counts = preference_rows(db_path)
    atomic_write_jsonl(out, rows)
    return counts

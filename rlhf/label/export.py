"""What comes out of a labels database: preference rows for the reward stage (JSONL, Parquet, a `datasets` dir)
and Label Studio tasks.

Preference rows (`reward.data.load_preferences`): every live decision becomes the pairs it implies. A pair
answered A/B gives one row; a ranking of K responses gives all K*(K-1)/2 pairs. `margin` is set when the label
carries one: the strength chosen for a pair (slightly 1/3, clearly 2/3, much 1 by default) or, for a ranking,
the rank distance / (K - 1), so the best vs the worst is 1. An item labeled by two annotators gives rows for
each. Ties and skips carry no preference and are left out (counted); so are pairs of two identical responses or
involving an empty one (sampling can produce both), which the reward stage would refuse, and gold
(quality-control) items, whose answer was known beforehand. A pairs row that had only a `prompt` (no
`instruction`) exports that prompt as its instruction.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlhf.errors import UserError
from rlhf.io import atomic_write_json, atomic_write_jsonl
from rlhf.label.store import Store

PREF_KEYS = ("id", "instruction", "input", "prompt", "chosen", "rejected", "annotator", "source", "reason")
# The Label Studio project this interoperates with (its "Pairwise" comparison of two texts):
#   <View><Text name="prompt" value="$prompt"/><Pairwise name="comparison" toName="answer1,answer2"/>
#         <Text name="answer1" value="$answer1"/><Text name="answer2" value="$answer2"/></View>
LS_DEFAULT = {
    "from_name": "comparison",
    "to_name": "answer1,answer2",
    "keys": ["prompt", "answer1", "answer2"],
}


def _read(db_path: str | Path) -> tuple[dict[str, dict], list[dict], dict]:
    store = Store(db_path)
    try:
        items = {it["id"]: it for it in store.items()}
        labels = store.labels(live_only=True)
        meta = store.meta()
    except (
        sqlite3.DatabaseError,
        KeyError,
        ValueError,
        TypeError,
    ) as e:  # our tables, someone else's columns
        raise UserError(f"cannot read the labels database ({e})", db_path) from None
    finally:
        store.close()
    return items, labels, meta


def implied_pairs(ranking: list[int], margin: float | None) -> list[tuple[int, int, float | None]]:
    """(better, worse, margin) for every pair a ranking (file indices, best first) implies."""
    k = len(ranking)
    if k == 2:
        return [(ranking[0], ranking[1], margin)]
    return [(ranking[a], ranking[b], (b - a) / (k - 1)) for a in range(k) for b in range(a + 1, k)]


def preference_rows(db_path: str | Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    items, labels, _ = _read(db_path)
    labels.sort(key=lambda lab: (items[lab["item_id"]]["idx"], lab["annotator"]))
    rows = []
    counts = {"labels": len(labels), "ties": 0, "skips": 0, "unusable": 0, "gold": 0}
    for lab in labels:
        it = items[lab["item_id"]]
        if it["gold"] is not None:
            counts["gold"] += 1
            continue
        if lab["choice"] in ("tie", "skip"):
            counts["ties" if lab["choice"] == "tie" else "skips"] += 1
            continue
        for win, lose, margin in implied_pairs(lab["ranking"], lab["margin"]):
            chosen, rejected = it["responses"][win], it["responses"][lose]
            if chosen == rejected or not chosen.strip() or not rejected.strip():
                counts["unusable"] += 1
                continue
            row = {
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
            if margin is not None:
                row["margin"] = margin
            if (it.get("extra") or {}).get("messages"):  # a conversation: the reward stage's chat prompt
                row["messages"] = it["extra"]["messages"]
            rows.append(row)
    counts["rows"] = len(rows)
    regular = {i for i, it in items.items() if it["gold"] is None}
    counts["unlabeled_items"] = len(regular - {lab["item_id"] for lab in labels})
    return rows, counts


def _dataset(rows: list[dict[str, Any]]):
    from datasets import Dataset

    cols = list(PREF_KEYS) + ["margin"]
    return Dataset.from_dict({c: [r.get(c) for r in rows] for c in cols})


def export_preferences(
    db_path: str | Path,
    out: str | Path,
    *,
    parquet: str | Path | None = None,
    datasets_dir: str | Path | None = None,
) -> dict[str, int]:
    """Write prefs.jsonl atomically (temp file + rename), and optionally the same rows as a Parquet file and a
    `datasets` dir (`Dataset.load_from_disk`; a `margin` column, null where a row has none). Returns the counts."""
    rows, counts = preference_rows(db_path)
    if parquet or datasets_dir:
        ds = _dataset(rows)
        if parquet:
            parquet = Path(parquet)
            tmp = parquet.with_name(f".{parquet.name}.tmp")
            ds.to_parquet(str(tmp))
            tmp.replace(parquet)
        if datasets_dir:
            target = Path(datasets_dir)
            if target.exists() and not (target / "dataset_info.json").is_file():
                raise UserError("exists and is not a `datasets` dir; refusing to replace it", target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            ds.save_to_disk(str(tmp))
            if target.exists():
                shutil.rmtree(target)
            tmp.replace(target)
    atomic_write_jsonl(out, rows)
    return counts


# -- Label Studio ---------------------------------------------------------------------------------------------


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def label_studio_tasks(db_path: str | Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Label Studio JSON (a list of tasks with their annotations) for the pairwise items. A/B labels become
    `pairwise` results (`selected`: left = the first response in the file, as Label Studio shows it), skips
    become cancelled annotations; ties (Pairwise has none), rankings of K > 2 and gold items are left out."""
    items, labels, meta = _read(db_path)
    ls = meta.get("label_studio") or LS_DEFAULT
    users = ls.get("users", {})
    prompt_key, key_a, key_b = ls["keys"]
    by_item: dict[str, list[dict]] = {}
    for lab in labels:
        by_item.setdefault(lab["item_id"], []).append(lab)
    tasks = []
    counts = {"tasks": 0, "annotations": 0, "ties": 0, "left_out_items": 0}
    for n, it in enumerate(sorted(items.values(), key=lambda it: it["idx"])):
        if it["gold"] is not None or len(it["responses"]) != 2:
            counts["left_out_items"] += 1
            continue
        origin = (it["extra"] or {}).get("label_studio", {})
        data = dict(origin.get("data") or {})
        data.update({prompt_key: it["display"], key_a: it["responses"][0], key_b: it["responses"][1]})
        annotations = []
        for lab in sorted(by_item.get(it["id"], []), key=lambda lab: lab["id"]):
            if lab["choice"] == "tie":
                counts["ties"] += 1
                continue
            rid = lab["request_id"]
            ann_id = rid[3:] if rid.startswith("ls-") else lab["id"]
            result = []
            if lab["choice"] != "skip":
                result = [
                    {
                        "id": f"r{lab['id']}",
                        "from_name": ls["from_name"],
                        "to_name": ls["to_name"],
                        "type": "pairwise",
                        "value": {"selected": "left" if lab["winner"] == 0 else "right"},
                    }
                ]
            annotations.append(
                {
                    "id": int(ann_id) if str(ann_id).isdigit() else ann_id,
                    "completed_by": users.get(lab["annotator"], lab["annotator"]),
                    "result": result,
                    "was_cancelled": lab["choice"] == "skip",
                    "created_at": _iso(lab["created_at"]),
                }
            )
        task_id = origin.get("task_id", n + 1)
        tasks.append({"id": task_id, "data": data, "annotations": annotations})
        counts["tasks"] += 1
        counts["annotations"] += len(annotations)
    return tasks, counts


def export_label_studio(db_path: str | Path, out: str | Path) -> dict[str, int]:
    tasks, counts = label_studio_tasks(db_path)
    atomic_write_json(out, tasks)
    return counts

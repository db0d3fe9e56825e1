"""How a ranking of preference pairs agrees with the gold judge of the task the pairs come from. The reward stage
reads its reward model's scores with it and the DPO stage its implicit reward, on the same held-out pairs, so the
two methods' rankings compare number for number."""

from __future__ import annotations

from rlhf import tasks


def gold_agreement(pairs: list[dict], chosen: list[float], rejected: list[float]) -> dict:
    """Held-out agreement with the gold judge of the task the pairs come from, given a ranking's score of each
    pair's chosen and rejected response (the reward model's, or DPO's implicit reward): `gold_agreement` over the
    pairs whose gold scores differ (`gold_pairs` of them), and for a task whose judge has parts (the constraints
    task: constraint types) the same per part, `gold_agreement.<part>` / `gold_pairs.<part>` over the pairs whose
    prompt holds it: where the ranking reads the judge and where it does not. Empty when the pairs are no known
    task's or the judge ties every pair. A response is judged as finished (ended with EOS) unless its pair records
    otherwise (`chosen_finished` / `rejected_finished`, from `rlhf annotate`)."""
    task = tasks.detect(pairs)
    if task is None:
        return {}
    wins: list[bool] = []
    by_part: dict[str, list[bool]] = {}
    for p, c, r in zip(pairs, chosen, rejected):
        gc = task.judge(p, p["chosen"], p.get("chosen_finished", True))
        gr = task.judge(p, p["rejected"], p.get("rejected_finished", True))
        if gc == gr:
            continue
        win = c > r if gc > gr else r > c
        wins.append(win)
        # the parts the prompt holds: the keys of the judge's breakdown (of either response; the better one here)
        for part in task.breakdown(p, p["chosen"] if gc > gr else p["rejected"]) or {}:
            by_part.setdefault(part, []).append(win)
    if not wins:
        return {}
    out = {"gold_agreement": sum(wins) / len(wins), "gold_pairs": len(wins)}
    for part, ws in sorted(by_part.items()):
        out[f"gold_agreement.{part}"], out[f"gold_pairs.{part}"] = sum(ws) / len(ws), len(ws)
    return out


def ranking_metrics(pairs: list[dict], chosen: list[float], rejected: list[float]) -> dict:
    """A ranking's held-out metrics, as both preference stages record them: `eval_accuracy` (the share of pairs whose
    labelled `chosen` it scores above `rejected`) and the gold agreement above."""
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)
    return {"eval_accuracy": accuracy, **gold_agreement(pairs, chosen, rejected)}

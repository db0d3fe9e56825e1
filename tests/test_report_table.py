"""The comparison table and headline sentences `rlhf compare` leads its report with: one row per method against
SFT (any number of trained methods, named dpo or rloo as the pipeline names them, plus Best-of-N), in metrics.json
and in report.html/report.md, with the wall time and peak memory read from each method's stage manifest."""

from __future__ import annotations

import json
import shutil

import pytest

from rlhf import checkpoint
from rlhf.evaluation import best_of_n
from rlhf.evaluation.compare import compare
from rlhf.evaluation.table import format_seconds, headline, table_cells, table_header
from rlhf.io import atomic_write_json

PPO_LOG = [{"episode": 8 * i, "objective/scores": 0.1 * i, "objective/kl": 0.01 * i,
            "objective/rlhf_reward": 0.09 * i} for i in range(1, 5)]  # fmt: skip


def method_dir(sft, out, *, seconds, peak_rss=None):
    """A finished stage dir shaped like a PPO output (manifest, log.jsonl), weights copied from the SFT policy:
    what the table reads of a dpo/rloo stage, with the wall time and peak memory given here."""
    shutil.copytree(sft, out)
    manifest = json.loads((out / checkpoint.MANIFEST).read_text())
    manifest.update(stage="ppo", started_at=1000.0, finished_at=1000.0 + seconds)
    if peak_rss is None:
        manifest.pop("peak_memory", None)  # a stage from before peak memory was recorded
    else:
        manifest["peak_memory"] = {"rss_mib": peak_rss, "gpu_mib": None, "scope": "stage"}
    atomic_write_json(out / checkpoint.MANIFEST, manifest)
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PPO_LOG))
    return out


@pytest.fixture(scope="module")
def report(tiny_chain, tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    sft = tiny_chain["sft"]
    dpo = method_dir(sft, root / "dpo", seconds=63.5, peak_rss=1234.5)
    rloo = method_dir(sft, root / "rloo", seconds=3725.0)
    metrics = compare(
        [str(sft), str(dpo), str(rloo), f"{sft}+bon:2"],
        str(tiny_chain["prompts"]),
        root / "report",
        reference=str(sft),
        reward=str(tiny_chain["reward"]),
        names=["sft", "dpo", "rloo", "bon2"],
        limit=6,
        num_samples=2,
        max_new_tokens=8,
        sweep_prompts=0,
        overopt_prompts=0,
    )
    return root / "report", metrics


def test_the_stage_manifest_records_wall_time_and_peak_memory(tiny_chain):
    manifest = checkpoint.require(tiny_chain["sft"], kind="sft").manifest
    peak = manifest["peak_memory"]
    assert peak["scope"] == "stage" and peak["gpu_mib"] is None  # a CPU run on Linux
    assert 50 < peak["rss_mib"] < 64_000  # torch + a tiny model: more than nothing, less than the machine
    assert manifest["finished_at"] > manifest["started_at"]


def test_peak_memory_counts_from_the_stage_start(monkeypatch):
    import rlhf.lifecycle as lifecycle

    big = bytearray(300 * 2**20)  # touched: resident
    big[::4096] = b"x" * len(big[::4096])
    del big
    earlier = lifecycle._rss_peak_mib()
    memory = lifecycle.PeakMemory()  # the 300 MiB above came before: not this stage's peak
    before = memory.read()["rss_mib"]
    assert before < earlier - 250
    block = bytearray(200 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    after = memory.read()
    del block
    assert after["scope"] == "stage" and after["rss_mib"] >= before + 150
    # where the peak cannot be reset, the process's lifetime peak, said so
    monkeypatch.setattr(lifecycle, "_reset_rss_peak", lambda: False)
    whole = lifecycle.PeakMemory().read()
    assert whole["scope"] == "process" and whole["rss_mib"] >= after["rss_mib"] - 8  # RSS counts lag a little


def test_one_row_per_method_against_sft(report, tiny_chain):
    _, metrics = report
    rows = metrics["comparison"]
    assert [r["method"] for r in rows] == ["sft", "dpo", "rloo", "bon2"]
    assert [r["label"] for r in rows] == ["SFT", "DPO", "RLOO", "Best-of-2"]
    assert [r["baseline"] for r in rows] == [True, False, False, False]
    assert metrics["baseline"] == "sft"
    for r in rows[1:]:
        n = r["method"]
        for field, key in (("gold_winrate", "gold_winrate_vs_sft"), ("gold_winrate_sampled", "gold_winrate_vs_sft_sampled"),
                           ("rm_winrate", "rm_winrate_vs_sft"), ("rm_winrate_sampled", "rm_winrate_vs_sft_sampled")):  # fmt: skip
            assert r[field] == metrics[f"{n}.{key}"]
            assert r[field + "_ci"] == [metrics[f"{n}.{key}_ci_low"], metrics[f"{n}.{key}_ci_high"]]
        assert r["reward_hacking_gap"] == pytest.approx(r["rm_winrate"] - r["gold_winrate"])
        assert r["kl"] == metrics[f"{n}.kl_to_sft"] and r["kl_reference"] == "sft"
        assert r["response_length"] == metrics[f"{n}.response_length"]
        assert r["generated_tokens_per_answer"] == metrics[f"{n}.generated_tokens_per_answer"] > 0
        assert r["wins"] + r["ties"] + r["losses"] == 6 and r["judge"] == "gold"
    sft, dpo, rloo, bon = rows
    assert sft["gold_winrate"] is None and sft["kl"] is None
    sft_manifest = checkpoint.require(tiny_chain["sft"], kind="sft").manifest
    assert sft["wall_seconds"] == sft_manifest["finished_at"] - sft_manifest["started_at"]
    assert sft["peak_rss_mib"] == sft_manifest["peak_memory"]["rss_mib"]
    # read from each method's stage manifest, whatever the method is named
    assert (dpo["wall_seconds"], dpo["peak_rss_mib"], dpo["cost_measured"]) == (63.5, 1234.5, "stage")
    assert (rloo["wall_seconds"], rloo["peak_rss_mib"], rloo["cost_measured"]) == (3725.0, None, "stage")
    assert metrics["dpo.stage_seconds"] == 63.5 and metrics["dpo.stage_peak_rss_mib"] == 1234.5
    # the same weights as SFT: every greedy answer ties, and the sampled ones match KL 0
    assert (dpo["wins"], dpo["ties"], dpo["losses"]) == (0, 6, 0) and dpo["gold_winrate"] == 0.5
    assert dpo["kl"] == pytest.approx(0.0, abs=1e-6)
    assert bon["cost_measured"] == "evaluation" and bon["kl"] == best_of_n.kl_bound(2) and bon["kl_is_bound"]
    assert bon["generated_tokens_per_answer"] == metrics["bon2.generated_tokens"] / 12


def test_bon_candidate_agreement_matches_responses(report):
    """The reward model's agreement with the gold judge over the candidates, recomputed from responses.jsonl."""
    out, metrics = report
    cands = [
        r
        for r in map(json.loads, (out / "responses.jsonl").read_text(encoding="utf-8").splitlines())
        if r["checkpoint"] == "bon2" and r["setting"] == "bon_candidates"
    ]
    groups: dict = {}
    for r in cands:
        groups.setdefault((r["prompt_index"], r["sample_index"] // 2), []).append(r)

    def order(high, low):  # 1 when the gold judge's better answer comes first, half for a tie
        return 1.0 if high > low else 0.5 if high == low else 0.0

    pairs = agree = shorter = 0.0
    for group in groups.values():
        for a in group:
            for b in group:
                if a["gold_score"] > b["gold_score"]:  # a is the gold judge's better one
                    pairs += 1
                    agree += order(a["reward_score"], b["reward_score"])
                    shorter += order(b["num_tokens"], a["num_tokens"])
    oracle = sum(max(r["gold_score"] for r in g) > 0 for g in groups.values()) / len(groups)
    assert metrics["bon2.candidates_oracle_accuracy"] == pytest.approx(oracle)
    assert metrics["bon2.candidates_oracle_accuracy"] >= metrics["bon2.gold_accuracy_sampled"]
    assert pairs > 0, "no decisive candidate pair: the test would check nothing"
    assert metrics["bon2.candidates_decisive_pairs"] == pairs
    assert metrics["bon2.candidates_rm_agreement"] == pytest.approx(agree / pairs)
    assert metrics["bon2.candidates_shorter_agreement"] == pytest.approx(shorter / pairs)
    row = next(r for r in metrics["comparison"] if r["method"] == "bon2")
    assert row["candidates_rm_agreement"] == metrics["bon2.candidates_rm_agreement"]


def test_report_html_and_md_lead_with_headlines_and_the_table(report):
    out, metrics = report
    page = (out / "report.html").read_text(encoding="utf-8")
    md = (out / "report.md").read_text(encoding="utf-8")
    assert len(metrics["headlines"]) == 3
    for sentence, label in zip(metrics["headlines"], ("DPO", "RLOO", "Best-of-2")):
        assert sentence.startswith(f"{label} ") and "gold judge" in sentence
        assert sentence.replace("'", "&#x27;") in page and f"- {sentence}" in md
    dpo_sentence = metrics["headlines"][0]
    assert dpo_sentence.startswith("DPO is level with SFT: it beats it on 50% of 6 prompts")
    assert "0 wins, 6 ties, 0 losses" in dpo_sentence and "took" not in dpo_sentence
    # the headlines come before the table, the table before the plots and the explorer
    assert (
        page.index('id="headlines"')
        < page.index('id="comparison"')
        < page.index("<h2>Plots")
        < page.index('id="explorer"')
    )
    rows = metrics["comparison"]
    header = table_header(rows)
    assert "| " + " | ".join(header) + " |" in md
    for row in rows:
        cells = table_cells(row, with_gpu=False)
        assert "".join(cells[1:]) and all(c.replace("'", "&#x27;") in page for c in cells)
        assert "| " + " | ".join(cells) + " |" in md
    assert table_cells(rows[1], False)[8:10] == ["1 min 04 s", "1,234 MiB"]
    assert table_cells(rows[2], False)[8:10] == ["1 h 02 min", "—"]
    assert table_cells(rows[3], False)[6].startswith("≤ ") and table_cells(rows[3], False)[8].endswith("*")
    # the trained methods' training curves, from their logs
    assert 'alt="ppo_curves_dpo"' in page and 'alt="ppo_curves_rloo"' in page and 'alt="winrates"' in page


def row(**kw) -> dict:
    base = {"method": "ppo", "label": "PPO", "baseline": False, "best_of": None, "gold_winrate": None,
            "gold_winrate_ci": None, "rm_winrate": None, "rm_winrate_ci": None, "reward_hacking_gap": None,
            "wall_seconds": None, "generated_tokens_per_answer": 30.0, "judge": None}  # fmt: skip
    return {**base, **kw}


SFT = row(method="sft", label="SFT", baseline=True)


def test_headline_words():
    beats = row(gold_winrate=0.85, gold_winrate_ci=[0.83, 0.87], rm_winrate=0.85, rm_winrate_ci=[0.8, 0.9],
                reward_hacking_gap=0.0, wall_seconds=95.0, judge="gold", wins=160, ties=20, losses=20)  # fmt: skip
    assert headline(beats, SFT, 200) == (
        "PPO beats SFT on 85% of 200 prompts [83%, 87%] by the gold judge (greedy answers, ties count half; 160 "
        "wins, 20 ties, 20 losses). The reward model prefers it on 85%."
    )
    hacked = row(gold_winrate=0.3, gold_winrate_ci=[0.25, 0.36], rm_winrate=0.9, rm_winrate_ci=[0.85, 0.95],
                 reward_hacking_gap=0.6)  # fmt: skip
    assert headline(hacked, SFT, 200) == (
        "PPO loses to SFT: it beats it on only 30% of 200 prompts [25%, 36%] by the gold judge (greedy answers, "
        "ties count half). The reward model prefers it on 90%, 60 points more than the gold judge: reward hacking."
    )
    bon = row(label="Best-of-16", best_of=16, gold_winrate=0.55, gold_winrate_ci=[0.45, 0.65],
              generated_tokens_per_answer=480.0)  # fmt: skip
    assert headline(bon, SFT, 100) == (
        "Best-of-16 is level with SFT: it beats it on 55% of 100 prompts [45%, 65%] by the gold judge (greedy "
        "answers, ties count half), no clear difference. Each answer costs 16 samples (480 generated tokens)."
    )
    ranked = {**bon, "candidates_rm_agreement": 0.62, "candidates_shorter_agreement": 0.7,
              "candidates_oracle_accuracy": 0.35}  # fmt: skip
    assert headline(ranked, SFT, 100).endswith(
        "Each answer costs 16 samples (480 generated tokens). Among its candidates the reward model orders 62% of "
        "the pairs the gold judge separates as the judge does (picking the shorter answer: 70%); a perfect pick would "
        "satisfy the judge on 35% of prompts."
    )
    rm_only = row(rm_winrate=0.7, rm_winrate_ci=[0.6, 0.8])
    assert "by the reward model (these prompts have no gold judge)" in headline(rm_only, SFT, 10)
    assert headline(row(), SFT, 10).startswith("PPO: no judge to compare it with SFT")


def test_format_seconds():
    assert [format_seconds(s) for s in (4.25, 63.5, 3599, 3725)] == [
        "4.2 s",
        "1 min 04 s",
        "59 min 59 s",
        "1 h 02 min",
    ]

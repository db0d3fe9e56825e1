"""Best-of-N as a policy in `rlhf compare`: `<policy>+bon:N` samples N answers per prompt and keeps the one the reward
model scores highest (the first of equal ones), its cost counted in every token it generated."""

from __future__ import annotations

import json
import math

import pytest
from conftest import run_cli

from rlhf.errors import UserError
from rlhf.evaluation import best_of_n
from rlhf.evaluation.compare import compare


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def first_best(scores: list[float]) -> int:
    return scores.index(max(scores))


# ----------------------------------------------------------------------------------------------- selection


def test_select_keeps_each_groups_highest_score_and_the_first_of_ties():
    rm = [
        [0.1, 0.9, 0.3, 0.2, 5.0, 5.0, 1.0, -1.0],  # two groups of 4: 0.9 at 1; a tie at 4 and 5 -> 4
        [-3.0, -2.0, -2.0, -9.0, 0.0, 0.0, 0.0, 0.0],  # tie at 1 and 2 -> 1; all equal -> the first, 4
    ]
    assert best_of_n.select([[None] * 8] * 2, rm, 4) == [[1, 4], [1, 4]]
    assert best_of_n.select([[None] * 3], [[2.0, 7.0, 7.0]], 3) == [[1]]
    assert best_of_n.select([[None]], [[4.0]], 1) == [[0]]  # Best-of-1 is the policy itself
    with pytest.raises(ValueError):
        best_of_n.select([[None] * 5], [[0.0] * 5], 4)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("runs/demo/sft+bon:16", ("runs/demo/sft", 16)),
        ("sft+bon:1", ("sft", 1)),
        ("/abs/my+dir+bon:4", ("/abs/my+dir", 4)),
        ("runs/demo/sft", ("runs/demo/sft", None)),
        ("runs/a+bon:4/sft", ("runs/a+bon:4/sft", None)),  # a dir whose parent's name looks like a spec
    ],
)
def test_parse_spec(text, expected):
    assert best_of_n.parse_spec(text) == expected


@pytest.mark.parametrize("bad", ["sft+bon:0", "sft+bon:", "sft+bon:x", "sft+bon:-2", "sft+bon:2.5"])
def test_a_bad_n_is_refused(bad):
    with pytest.raises(UserError, match="expected <policy>\\+bon:N with N a whole number >= 1"):
        best_of_n.parse_spec(bad)


def test_candidate_agreement_by_hand():
    # one prompt, two groups of 3 (Best-of-3, 2 answers). Group 1: gold 1, 0, 0; group 2: gold 0, 0, 0 (no pair).
    gold = [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
    rm = [[0.9, 0.9, 0.1, 5.0, 4.0, 3.0]]  # vs sample 1: a tie (half); vs sample 2: agrees
    lengths = [[10, 30, 10, 1, 2, 3]]  # shorter than sample 1 (counts 1), as long as sample 2 (half)
    got = best_of_n.candidate_agreement(gold, rm, lengths, 3)
    assert got == {
        "decisive_pairs": 2,
        "rm_agreement": 0.75,
        "shorter_agreement": 0.75,
        "oracle_accuracy": 0.5,
    }
    # the reward model preferring every gold-rejected answer agrees on none; nothing decisive gives None
    assert best_of_n.candidate_agreement([[0.0, 1.0]], [[2.0, 1.0]], [[5, 4]], 2)["rm_agreement"] == 0.0
    none = best_of_n.candidate_agreement([[0.0, 0.0]], [[2.0, 1.0]], [[5, 4]], 2)
    assert none == {
        "decisive_pairs": 0,
        "rm_agreement": None,
        "shorter_agreement": None,
        "oracle_accuracy": 0.0,
    }


def test_kl_bound():
    assert best_of_n.kl_bound(1) == 0.0
    assert best_of_n.kl_bound(4) == pytest.approx(math.log(4) - 0.75)


# ----------------------------------------------------------------------------------------------- in compare


class LengthScorer:
    """A fixed reward model: the answer's length in characters, plus 0.5 per "7" in it."""

    def score(self, prompts, responses, batch_size=None):
        return [len(r) + 0.5 * r.count("7") for r in responses]


@pytest.fixture(scope="module")
def bon_report(tiny_chain, tmp_path_factory):
    """SFT and Best-of-4 over it on 6 demo prompts, 2 sampled answers each, the fixed reward model picking."""
    from rlhf.evaluation.scoring import RewardScorer

    root = tmp_path_factory.mktemp("bon")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            RewardScorer,
            "from_stage",
            classmethod(lambda cls, source, batch_size=64, template=None: LengthScorer()),
        )
        metrics = compare(
            [str(tiny_chain["sft"]), f"{tiny_chain['sft']}+bon:4"],
            str(tiny_chain["prompts"]),
            root,
            reference=str(tiny_chain["sft"]),
            reward=str(tiny_chain["reward"]),
            limit=6,
            temperature=1.0,
            num_samples=2,
            max_new_tokens=12,
            sweep_prompts=0,
            overopt_prompts=0,
        )
    return root, metrics


def test_bon_picks_the_highest_reward_sample_exactly(bon_report):
    root, metrics = bon_report
    rows = read_jsonl(root / "responses.jsonl")
    scorer = LengthScorer()
    cands = [r for r in rows if r["checkpoint"] == "bon4" and r["setting"] == "bon_candidates"]
    picks = [r for r in rows if r["checkpoint"] == "bon4" and r["setting"] == "sampled"]
    greedy = [r for r in rows if r["checkpoint"] == "bon4" and r["setting"] == "greedy"]
    assert len(cands) == 6 * 2 * 4 and len(picks) == 6 * 2 and len(greedy) == 6
    assert all(r["sampling"]["best_of"] == 4 and r["sampling"]["temperature"] == 1.0 for r in cands + picks)
    not_first = 0
    for pick in picks:
        group = [
            r for r in cands
            if r["prompt_index"] == pick["prompt_index"] and r["sample_index"] // 4 == pick["sample_index"]
        ]  # fmt: skip
        group.sort(key=lambda r: r["sample_index"])
        assert len(group) == 4
        # the candidates' recorded scores are the fixed reward model's, and the pick is the first of the highest
        scores = scorer.score(None, [r["response"] for r in group])
        assert [r["reward_score"] for r in group] == scores
        best = group[first_best(scores)]
        assert (pick["response"], pick["reward_score"], pick["finished"], pick["gold_score"]) == (
            best["response"], best["reward_score"], best["finished"], best["gold_score"]
        )  # fmt: skip
        not_first += first_best(scores) != 0
    assert not_first > 0, "every pick was its group's first sample: the test would not tell a pick from none"
    # Best-of-N has no greedy decoding: its greedy answer is its first pick
    for g in greedy:
        first = next(p for p in picks if p["prompt_index"] == g["prompt_index"] and p["sample_index"] == 0)
        assert g["response"] == first["response"]


def test_bon_cost_and_metric_keys(bon_report):
    root, metrics = bon_report
    rows = read_jsonl(root / "responses.jsonl")
    cands = [r for r in rows if r["checkpoint"] == "bon4" and r["setting"] == "bon_candidates"]
    assert metrics["bon4.generated_tokens"] == sum(r["num_tokens"] for r in cands)
    assert metrics["bon4.generated_tokens_per_answer"] == pytest.approx(metrics["bon4.generated_tokens"] / 12)
    sft = [r for r in rows if r["checkpoint"] == "sft" and r["setting"] in ("greedy", "sampled")]
    assert metrics["sft.generated_tokens"] == sum(r["num_tokens"] for r in sft)
    for key in ("bon4.gold_winrate_vs_sft", "bon4.gold_winrate_vs_sft_sampled", "bon4.rm_winrate_vs_sft",
                "sft.gold_winrate_vs_bon4"):  # fmt: skip
        assert 0.0 <= metrics[key + "_ci_low"] <= metrics[key] <= metrics[key + "_ci_high"] <= 1.0
    assert metrics["checkpoints"]["bon4"].endswith("sft+bon:4")
    assert metrics["bon4.kl_to_sft"] == best_of_n.kl_bound(4) and "bon4" in metrics["kl_bounds"]
    assert metrics["bon4.stage_seconds"] > 0 and metrics["bon4.stage_peak_rss_mib"] > 0
    row = next(r for r in metrics["comparison"] if r["method"] == "bon4")
    assert row["label"] == "Best-of-4" and row["best_of"] == 4 and row["cost_measured"] == "evaluation"
    assert row["gold_winrate"] == metrics["bon4.gold_winrate_vs_sft"]


def test_bon_needs_a_reward_model_and_a_whole_n(tiny_chain, tmp_path):
    sft = tiny_chain["sft"]
    res = run_cli("compare", f"{sft}+bon:4", "--prompts", tiny_chain["prompts"], "--out", tmp_path / "r",
                  check=False)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "error: command line:--reward: Best-of-N (<policy>+bon:N) needs --reward: its reward model picks the answers"
    ]
    res = run_cli("compare", f"{sft}+bon:0", "--prompts", tiny_chain["prompts"], "--out", tmp_path / "r",
                  "--reward", tiny_chain["reward"], check=False)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: command line: expected <policy>+bon:N with N a whole number >= 1, got '{sft}+bon:0'"
    ]
    assert not (tmp_path / "r").exists()


def test_bon_with_the_trained_reward_model_on_the_command_line(tiny_chain, tmp_path):
    """The CLI with a real reward stage: each pick is its group's highest recorded reward-model score."""
    out = tmp_path / "report"
    run_cli("compare", tiny_chain["sft"], f"{tiny_chain['sft']}+bon:3", "--prompts", tiny_chain["prompts"],
            "--out", out, "--reward", tiny_chain["reward"], "--limit", "4", "--num-samples", "1",
            "--max-new-tokens", "8", "--temperature", "1.0", "--sweep-prompts", "0")  # fmt: skip
    rows = read_jsonl(out / "responses.jsonl")
    cands = [r for r in rows if r["checkpoint"] == "bon3" and r["setting"] == "bon_candidates"]
    picks = [r for r in rows if r["checkpoint"] == "bon3" and r["setting"] == "sampled"]
    assert len(cands) == 12 and len(picks) == 4
    for pick in picks:
        group = sorted((r for r in cands if r["prompt_index"] == pick["prompt_index"]),
                       key=lambda r: r["sample_index"])  # fmt: skip
        scores = [r["reward_score"] for r in group]
        assert pick["response"] == group[first_best(scores)]["response"]
        assert pick["reward_score"] == max(scores)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"bon3.gold_winrate_vs_sft", "bon3.gold_winrate_vs_sft_sampled", "bon3.generated_tokens"} <= set(
        metrics
    )


def test_smaller_best_of_n_nests_in_the_larger_ones_samples(tiny_chain, tmp_path):
    """bon:2 and bon:4 over one policy draw once: Best-of-2's candidates are the first 2 of each group of
    Best-of-4's (the same i.i.d. samples), its picks the best of those, its cost counted as 2 samples each."""
    from rlhf.evaluation.scoring import RewardScorer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            RewardScorer,
            "from_stage",
            classmethod(lambda cls, source, batch_size=64, template=None: LengthScorer()),
        )
        metrics = compare(
            [str(tiny_chain["sft"]), f"{tiny_chain['sft']}+bon:2", f"{tiny_chain['sft']}+bon:4"],
            str(tiny_chain["prompts"]), tmp_path, reference=str(tiny_chain["sft"]),
            reward=str(tiny_chain["reward"]), limit=5, temperature=1.0, num_samples=2, max_new_tokens=12,
            sweep_prompts=0, overopt_prompts=0,
        )  # fmt: skip
    rows = read_jsonl(tmp_path / "responses.jsonl")

    def of(name, setting):
        return sorted((r for r in rows if r["checkpoint"] == name and r["setting"] == setting),
                      key=lambda r: (r["prompt_index"], r["sample_index"]))  # fmt: skip

    big, small = of("bon4", "bon_candidates"), of("bon2", "bon_candidates")
    assert len(big) == 5 * 2 * 4 and len(small) == 5 * 2 * 2
    for r in small:
        g, i = divmod(r["sample_index"], 2)
        twin = next(
            b for b in big if b["prompt_index"] == r["prompt_index"] and b["sample_index"] == g * 4 + i
        )
        assert r["response"] == twin["response"] and r["reward_score"] == twin["reward_score"]
    for pick in of("bon2", "sampled"):
        group = [r for r in small if r["prompt_index"] == pick["prompt_index"]
                 and r["sample_index"] // 2 == pick["sample_index"]]  # fmt: skip
        assert pick["response"] == group[first_best([r["reward_score"] for r in group])]["response"]
    assert metrics["bon2.generated_tokens"] == sum(r["num_tokens"] for r in small)
    assert 0 < metrics["bon2.stage_seconds"] <= metrics["bon4.stage_seconds"]

"""PPO against a task's gold judge (`reward_judge`): the judge scores rollouts exactly as the report does, the stage
trains without a reward stage, and prompts the judge cannot read are refused before anything loads."""

from __future__ import annotations

import json
import statistics

import torch
from test_ppo import ppo

from ppo.judge_reward import judge_reward
from rlhf import checkpoint, tasks
from rlhf.models import load_tokenizer
from rlhf.rollout_prompts import encode_prompts
from rlhf.tasks.demo import make_tasks
from rlhf.templates import render_prompts
from tests.conftest import run_cli


def test_judge_scores_rollouts_as_the_report_does(tiny_chain):
    """Through TRL's own get_reward, on left-padded prompts + responses truncated at EOS and padded, as its PPO
    loop builds them: a right answer, a wrong one, and a right one that never ends its turn."""
    from trl.experimental.utils import get_reward

    tok = load_tokenizer(tiny_chain["sft"], padding_side="left")
    rows = [t.to_row() for t in make_tasks(3, 7, ("largest",))]
    ids = encode_prompts(render_prompts(rows, "alpaca", tok), tok, "alpaca")
    task = tasks.get("demo")
    model = judge_reward("demo", rows, ids, tok, "test")
    answers = [(rows[0]["output"], True), ("12345", True), (rows[2]["output"], False)]
    context = max(map(len, ids))
    seqs = []
    for prompt, (text, finished) in zip(ids, answers):
        response = tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if finished else [])
        seqs.append([tok.pad_token_id] * (context - len(prompt)) + prompt + response + [tok.pad_token_id] * 3)
    width = max(map(len, seqs))
    batch = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    _, scores, _ = get_reward(model, batch, tok.pad_token_id, context)
    expected = [task.judge(row, text, finished) for row, (text, finished) in zip(rows, answers)]
    assert scores.tolist() == expected and expected[0] > 0 and expected[1] == 0 and expected[2] == 0


def test_partial_credit_scores_the_share_of_constraints_met(tiny_chain):
    """judge_credit partial through TRL's get_reward: one of two constraints met earns 0.5 (the gold judge: 0)."""
    from test_rloo_judge import BOTH, ONE_OF_TWO, TWO_CONSTRAINTS
    from trl.experimental.utils import get_reward

    tok = load_tokenizer(tiny_chain["sft"], padding_side="left")
    rows = [TWO_CONSTRAINTS]
    ids = encode_prompts(render_prompts(rows, "alpaca", tok), tok, "alpaca")
    model = judge_reward("constraints", rows, ids, tok, "test", credit="partial")
    replies = [ONE_OF_TWO, BOTH, ""]
    seqs = [ids[0] + tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in replies]
    width = max(map(len, seqs))
    batch = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    _, scores, _ = get_reward(model, batch, tok.pad_token_id, len(ids[0]))
    assert scores.tolist() == [0.5, 1.0, 0.0]


def test_partial_credit_is_refused_without_a_judge_with_parts(tiny_chain, tmp_path):
    res = ppo(tiny_chain, tmp_path / "p", "--reward_judge", "demo", "--judge_credit", "partial", check=False)
    assert res.returncode == 2 and "no parts to give partial credit" in res.stderr, res.stderr
    res = ppo(tiny_chain, tmp_path / "p", "--judge_credit", "partial", check=False)
    assert res.returncode == 2 and "applies only under reward_judge" in res.stderr, res.stderr
    assert "key 'judge_credit'" in res.stderr and not (tmp_path / "p").exists()


def test_ppo_trains_against_the_judge_without_a_reward_stage(tiny_chain, tmp_path):
    out = tmp_path / "ppo"
    no_reward = tiny_chain | {"reward": tmp_path / "no-such-reward-stage"}  # reward_path is not read
    ppo(no_reward, out, "--reward_judge", "demo", "--use_lora", "true")
    stage = checkpoint.require(out, kind="ppo")
    assert [p.kind for p in stage.parents()] == ["sft"]
    assert stage.metrics["episodes"] == 64
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    # judge scores lie in [0, 1]; missing_eos_penalty (1.0) can take an unfinished answer to -1
    assert all(-1.0 <= row["objective/scores"] <= 1.0 for row in log if "objective/scores" in row)
    assert (out / "value_model" / "model.safetensors").is_file()

    # Compared without a reward model, its saved checkpoints still get a curve: their gold scores alone.
    report = tmp_path / "report"
    run_cli("compare", tiny_chain["sft"], out, "--prompts", tiny_chain["prompts"], "--out", report, "--limit", "6",
            "--num-samples", "1", "--sweep-prompts", "0", "--overopt-prompts", "4")  # fmt: skip
    metrics = json.loads((report / "metrics.json").read_text())
    points = metrics["ppo.checkpoints"]
    assert [p["label"] for p in points] == ["sft", "checkpoint-2", "final"]
    assert all(set(p) == {"label", "gold_score"} and 0 <= p["gold_score"] <= 1 for p in points)
    # the first and last points reuse the report's own sft and ppo greedy answers to the first 4 prompts; only the
    # saved checkpoint answers them anew
    rows = [json.loads(x) for x in (report / "responses.jsonl").read_text().splitlines()]
    greedy = {n: [r["gold_score"] for r in rows if r["checkpoint"] == n and r["setting"] == "greedy"]
              for n in ("sft", "ppo/checkpoint-2", "ppo")}  # fmt: skip
    assert [len(v) for v in greedy.values()] == [6, 4, 6]
    assert [p["gold_score"] for p in points] == [statistics.fmean(v[:4]) for v in greedy.values()]
    assert "ppo.overoptimisation" not in metrics
    assert (report / "checkpoints_ppo.png").read_bytes().startswith(b"\x89PNG")


def test_prompts_the_judge_cannot_read_are_refused_before_loading(tiny_chain, tmp_path):
    res = ppo(tiny_chain, tmp_path / "p", "--reward_judge", "constraints", check=False)
    assert res.returncode == 2, res.stderr
    assert "prompt row 0 is not a constraints task prompt" in res.stderr and "reward_judge" in res.stderr
    assert not (tmp_path / "p").exists()
    res = ppo(tiny_chain, tmp_path / "p", "--reward_judge", "nonsense", check=False)
    assert res.returncode == 2 and "reward_judge" in res.stderr and not (tmp_path / "p").exists()


def test_judge_reads_chat_rendered_constraint_prompts(smollm2_tokenizer, shared_data):
    """The real experiment's case: SmolLM2's chat template, the constraints task, <|im_end|> ending the turn."""
    import copy

    from trl.experimental.utils import get_reward

    from rlhf.rollout_prompts import stop_at_end_of_turn
    from rlhf.tasks.constraints import ConstraintsTask

    tok = copy.deepcopy(smollm2_tokenizer)
    tok.add_special_tokens({"pad_token": "<pad>"})  # distinct from EOS, as PPO requires
    tok.padding_side = "left"
    stop_at_end_of_turn(tok, "chat")
    task = ConstraintsTask(shared_data)
    rows = task.prompts(2, seed=0, split="train", kinds=("lowercase",))
    ids = encode_prompts(render_prompts(rows, "chat", tok), tok, "chat")
    model = judge_reward("constraints", rows, ids, tok, "test")
    answers = [
        "here is a short answer, written in small letters only.",
        "HERE IS A SHORT ANSWER IN CAPITALS.",
    ]
    context = max(map(len, ids))
    seqs = [
        [tok.pad_token_id] * (context - len(p))
        + p
        + tok(a, add_special_tokens=False)["input_ids"]
        + [tok.eos_token_id]
        for p, a in zip(ids, answers)
    ]
    width = max(map(len, seqs))
    batch = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    _, scores, _ = get_reward(model, batch, tok.pad_token_id, context)
    expected = [task.judge(row, a, True) for row, a in zip(rows, answers)]
    assert expected == [1.0, 0.0] and scores.tolist() == expected

"""`template: chat` through reward -> PPO -> generate / pairs / compare / the labeling app, on a tiny chat model: the
demo tokenizer and Llama with ChatML (rlhf.tasks.demo_model.add_chatml: `<|im_end|>` is EOS, as SmolLM2-Instruct
has it). The checks compare the exact text and token ids each stage feeds its model with the tokenizer's own chat
rendering, and the conversations the preference readers build with the dialogues they came from.

Until the SFT stage speaks chat, the chain's "SFT" parent is the tiny chat model with a manifest written through
the kit's checkpoint API (template: chat), as a finished stage would carry it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from rlhf import checkpoint
from rlhf.errors import UserError
from rlhf.io import atomic_write_json, atomic_write_jsonl

CONVERSATIONS = [
    (f"Which is larger, {a} or {b}?", str(max(a, b)), str(min(a, b)))
    for a, b in [(3, 8), (12, 5), (7, 9), (40, 2), (6, 1), (15, 30), (4, 11), (25, 13)]
]
HH_ROW = {
    "chosen": "\n\nHuman: Hi there.\n\nAssistant: Hello! How can I help?\n\nHuman: Which is larger, 3 or 8?"
    "\n\nAssistant: 8 is larger.",
    "rejected": "\n\nHuman: Hi there.\n\nAssistant: Hello! How can I help?\n\nHuman: Which is larger, 3 or 8?"
    "\n\nAssistant: 3.",
}
HH_MESSAGES = [
    {"role": "user", "content": "Hi there."},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Which is larger, 3 or 8?"},
]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def reply(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture(scope="module")
def tiny_chat_chain(tmp_path_factory) -> dict[str, Path]:
    """A chat base model dir (ChatML, no manifest), a chat "SFT" stage on it, preference files in the
    conversational formats (TRL explicit and implicit prompt, HH transcripts), a prompts file of message lists, and
    a reward stage trained on the TRL pairs with template chat."""
    import reward
    from rlhf.config import build_config
    from rlhf.models import save_pretrained_dir
    from rlhf.tasks.demo_model import add_chatml, build_demo_model, train_bpe_tokenizer

    root = tmp_path_factory.mktemp("chat")
    corpus = [f"{q} {c} {r} Hi there. Hello! How can I help? is larger" for q, c, r in CONVERSATIONS] * 5
    tok = add_chatml(train_bpe_tokenizer(corpus, vocab_size=400))
    model = build_demo_model(tok, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, seed=0)
    base = save_pretrained_dir(model, tok, root / "base")
    sft = save_pretrained_dir(model, tok, root / "sft")
    checkpoint.finish(sft, "sft", config={}, tokenizer=tok, template="chat", base_model=str(base))

    explicit = [{"prompt": user(q), "chosen": reply(c), "rejected": reply(r)} for q, c, r in CONVERSATIONS]
    implicit = [{"chosen": user(q) + reply(c), "rejected": user(q) + reply(r)} for q, c, r in CONVERSATIONS]
    atomic_write_jsonl(root / "trl.jsonl", explicit * 4)
    atomic_write_jsonl(root / "implicit.jsonl", implicit)
    atomic_write_jsonl(root / "hh.jsonl", [HH_ROW])
    atomic_write_json(root / "prompts.json", [{"prompt": user(q)} for q, _, _ in CONVERSATIONS])
    fast = {"num_train_epochs": 1, "quiet": True, "save_strategy": "no", "max_length": 64}
    reward.run(build_config(reward.RewardStageConfig, {
        "config": REPO / "configs/demo/reward.yaml", "sft_path": str(sft), "pairs_path": str(root / "trl.jsonl"),
        "eval_fraction": 0.25, "output_dir": str(root / "reward"), **fast}))  # fmt: skip
    return {
        "root": root,
        "base": base,
        "sft": sft,
        "reward": root / "reward",
        "prompts": root / "prompts.json",
    }


def chat_text(tok, messages, generation_prompt=True) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


# ------------------------------------------------------------------------------------- preference conversations


def test_hh_and_trl_pairs_become_conversations(tiny_chat_chain):
    from reward.data import load_preferences
    from rlhf.templates import format_prompt, render_prompt

    root = tiny_chat_chain["root"]
    (hh,) = load_preferences(root / "hh.jsonl", verbose=False)
    assert hh["messages"] == HH_MESSAGES and (hh["chosen"], hh["rejected"]) == ("8 is larger.", "3.")
    # Alpaca keeps formatting the transcript, exactly as before conversations were kept.
    assert render_prompt(hh, "alpaca") == format_prompt(hh["instruction"])
    assert hh["instruction"].startswith("Human: Hi there.\n\nAssistant: Hello!")
    for name in ("trl.jsonl", "implicit.jsonl"):
        pair = load_preferences(root / name, verbose=False)[0]
        q, c, r = CONVERSATIONS[0]
        assert (pair["messages"], pair["chosen"], pair["rejected"]) == (user(q), c, r)
        assert pair["instruction"] == f"Human: {q}"


def test_reward_model_sees_the_chat_rendering(tiny_chat_chain):
    from reward.data import load_preferences
    from reward.encoding import encode_pair
    from rlhf.evaluation.scoring import RewardScorer
    from rlhf.models import load_reward_model

    loaded = load_reward_model(tiny_chat_chain["reward"])
    tok = loaded.tokenizer
    assert loaded.template == "chat"
    (hh,) = load_preferences(tiny_chat_chain["root"] / "hh.jsonl", verbose=False)
    chosen, rejected = encode_pair(hh, tok, "chat")
    prompt = chat_text(tok, HH_MESSAGES)
    assert prompt.endswith("<|im_start|>user\nWhich is larger, 3 or 8?<|im_end|>\n<|im_start|>assistant\n")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert end == tok.eos_token_id
    expected = (
        tok(prompt, add_special_tokens=False)["input_ids"]
        + tok("8 is larger.", add_special_tokens=False)["input_ids"]
        + [end]
    )
    assert chosen == expected
    assert tok.decode(chosen) == prompt + "8 is larger.<|im_end|>"
    assert tok.decode(rejected) == prompt + "3.<|im_end|>"
    # The scorer (rlhf score, compare, PPO's statistics) encodes a conversation row the same way.
    scorer = RewardScorer(loaded.model, tok, "chat")
    direct = loaded.model(input_ids=__import__("torch").tensor([chosen])).logits[0, 0].item()
    assert scorer.score([hh], ["8 is larger."])[0] == pytest.approx(direct, abs=1e-5)
    manifest = checkpoint.require(tiny_chat_chain["reward"], kind="reward").manifest
    assert manifest["template"] == "chat" and manifest["metrics"]["train_pairs"] > 0


def test_reward_statistics_score_conversations_with_their_history(tiny_chat_chain, tmp_path):
    """reward_mean / reward_std (PPO and RLOO normalise with them) and the held-out accuracy come from one scoring
    pass in which a multi-turn held-out pair is rendered with its whole conversation, as the model reads it."""
    import statistics

    import reward
    from reward.data import load_preferences
    from rlhf.config import build_config
    from rlhf.evaluation.scoring import RewardScorer
    from rlhf.models import load_reward_model

    root = tiny_chat_chain["root"]
    stage = reward.run(build_config(reward.RewardStageConfig, {
        "config": REPO / "configs/demo/reward.yaml", "sft_path": str(tiny_chat_chain["sft"]),
        "pairs_path": str(root / "trl.jsonl"), "eval_pairs_path": str(root / "hh.jsonl"),
        "output_dir": str(tmp_path / "reward"), "num_train_epochs": 1, "quiet": True, "save_strategy": "no",
        "max_length": 64}))  # fmt: skip
    loaded = load_reward_model(tmp_path / "reward")
    scorer = RewardScorer(loaded.model, loaded.tokenizer, "chat")
    (hh,) = load_preferences(root / "hh.jsonl", verbose=False)
    chosen, rejected = scorer.pair_scores([hh])
    m = stage.manifest["metrics"]
    assert m["reward_mean"] == pytest.approx(statistics.fmean(chosen + rejected), abs=1e-5)
    assert m["reward_std"] == pytest.approx(statistics.pstdev(chosen + rejected), abs=1e-5)
    assert m["eval_accuracy"] == float(chosen[0] > rejected[0])
    # the last user turn alone is another prompt: the statistics are not those of a history-less rendering
    last_turn_only = scorer.score([(hh["instruction"], hh["input"])] * 2, [hh["chosen"], hh["rejected"]])
    assert statistics.fmean(last_turn_only) != pytest.approx(m["reward_mean"], abs=1e-5)


def test_an_external_parent_takes_the_template_key(tiny_chat_chain, tmp_path):
    import reward
    from rlhf.config import build_config

    root = tiny_chat_chain["root"]
    args = {
        "config": REPO / "configs/demo/reward.yaml", "sft_path": str(tiny_chat_chain["base"]),
        "pairs_path": str(root / "trl.jsonl"), "num_train_epochs": 1, "quiet": True, "save_strategy": "no",
        "max_length": 64, "max_steps": 1,
    }  # fmt: skip
    stage = reward.run(
        build_config(
            reward.RewardStageConfig, {**args, "template": "chat", "output_dir": str(tmp_path / "rm")}
        )
    )
    assert stage.template == "chat"
    # A stage parent's own template wins; a different one given is refused before training.
    with pytest.raises(UserError, match="manifest records template 'chat'"):
        reward.run(build_config(reward.RewardStageConfig, {
            **args, "sft_path": str(tiny_chat_chain["sft"]), "template": "alpaca",
            "output_dir": str(tmp_path / "rm2")}))  # fmt: skip
    assert not (tmp_path / "rm2" / checkpoint.MANIFEST).exists()


# ------------------------------------------------------------------------------------------------------ PPO


def test_ppo_prompts_are_chat_rendered_and_stop_at_end_of_turn(tiny_chat_chain, tmp_path):
    import ppo
    from rlhf.config import build_config
    from rlhf.models import load_tokenizer
    from rlhf.prompt_rows import load_prompt_rows
    from rlhf.rollout_prompts import stop_at_end_of_turn, tokenize_prompts

    rows = load_prompt_rows(tiny_chat_chain["prompts"])
    tok = load_tokenizer(tiny_chat_chain["sft"], padding_side="left")
    ds, dropped = tokenize_prompts(rows, tok, "chat", 64)
    assert dropped == 0
    assert [tok.decode(x) for x in ds["input_ids"]] == [chat_text(tok, user(q)) for q, _, _ in CONVERSATIONS]
    eos = tok.eos_token_id
    stop_at_end_of_turn(tok, "chat")  # already <|im_end|>: nothing changes
    assert tok.eos_token_id == eos == tok.convert_tokens_to_ids("<|im_end|>")

    out = tmp_path / "ppo"
    stage = ppo.run(build_config(ppo.PPOStageConfig, {
        "config": REPO / "configs/demo/ppo.yaml", "sft_path": str(tiny_chat_chain["sft"]),
        "reward_path": str(tiny_chat_chain["reward"]), "prompts_path": str(tiny_chat_chain["prompts"]),
        "output_dir": str(out), "total_episodes": 8, "per_device_train_batch_size": 4,
        "local_rollout_forward_batch_size": 4, "num_ppo_epochs": 1, "num_eval_prompts": 0,
        "num_sample_generations": 0, "response_length": 6, "save_strategy": "no", "keep_checkpoints": False,
        "kl_stop": None, "quiet": True}))  # fmt: skip
    assert stage.template == "chat"
    assert checkpoint.require(out, kind="ppo").manifest["template"] == "chat"


def test_end_of_turn_other_than_eos_becomes_the_stop_token(tmp_path):
    from rlhf.rollout_prompts import stop_at_end_of_turn
    from rlhf.tasks.demo_model import add_chatml, train_bpe_tokenizer

    tok = add_chatml(train_bpe_tokenizer(["hello world"] * 5, vocab_size=300))
    tok.eos_token = "</s>"  # a base model's EOS with a ChatML template (e.g. Qwen2.5 base)
    stop_at_end_of_turn(tok, "chat")
    assert tok.eos_token == "<|im_end|>"


# ------------------------------------------------------------------------------------ generate, pairs, compare


def test_generate_renders_the_chat_prompt(tiny_chat_chain, capsys):
    from rlhf.cli import main
    from rlhf.models import load_tokenizer

    tok = load_tokenizer(tiny_chat_chain["sft"])
    ask = ["--instruction", "Which is larger, 3 or 8?", "--max-new-tokens", "3", "--json"]
    capsys.readouterr()
    assert main(["generate", str(tiny_chat_chain["sft"]), *ask]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["template"], got["prompt"]) == ("chat", chat_text(tok, user("Which is larger, 3 or 8?")))
    # A plain model dir: Alpaca unless --template chat; a manifest's template cannot be overridden.
    assert main(["generate", str(tiny_chat_chain["base"]), *ask]) == 0
    assert json.loads(capsys.readouterr().out)["template"] == "alpaca"
    assert main(["generate", str(tiny_chat_chain["base"]), *ask, "--template", "chat"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["prompt"] == got["prompt"] and "with the chat template" in out.err
    assert main(["generate", str(tiny_chat_chain["sft"]), *ask, "--template", "alpaca"]) == 2
    assert "manifest records template 'chat'" in capsys.readouterr().err


def test_pairs_and_compare_with_message_prompts(tiny_chat_chain, tmp_path):
    from rlhf.evaluation.compare import compare
    from rlhf.pairs import write_pairs

    rows = write_pairs(
        tiny_chat_chain["sft"], tiny_chat_chain["prompts"], tmp_path / "pairs.jsonl", max_new_tokens=4,
        progress=False, limit=3,
    )  # fmt: skip
    q = CONVERSATIONS[0][0]
    assert rows[0]["messages"] == user(q) and rows[0]["prompt"] == f"Human: {q}"
    m = compare(
        [str(tiny_chat_chain["sft"])], tiny_chat_chain["prompts"], tmp_path / "report",
        reward=str(tiny_chat_chain["reward"]), limit=4, num_samples=1, max_new_tokens=4, sweep_prompts=0,
        overopt_prompts=0,
    )  # fmt: skip
    assert m["num_prompts"] == 4
    got = [json.loads(line) for line in (tmp_path / "report" / "responses.jsonl").read_text().splitlines()]
    assert got and all(isinstance(r["reward_score"], float) for r in got)
    assert got[0]["prompt"] == f"Human: {q}"


def test_run_policy_feeds_the_chat_rendering(tiny_chat_chain, monkeypatch):
    """What compare's sampling and reward scoring receive, captured at the model calls."""
    import rlhf.evaluation.compare as cmp
    from rlhf.evaluation.scoring import RewardScorer
    from rlhf.generate import SamplingParams
    from rlhf.prompt_rows import load_prompt_rows

    pol = cmp.load_policy(tiny_chat_chain["sft"])
    scorer = RewardScorer.from_stage(tiny_chat_chain["reward"])
    rows = load_prompt_rows(tiny_chat_chain["prompts"])[:2]
    seen = {}
    real_generate, real_forward = pol.model.generate, scorer.model.forward

    def spy_generate(**kw):
        seen["prompt_ids"] = kw["input_ids"].tolist()
        return real_generate(**kw)

    def spy_forward(input_ids=None, attention_mask=None, **kw):
        seen.setdefault("scored", []).extend(
            [i for i, m in zip(row, mask) if m]
            for row, mask in zip(input_ids.tolist(), attention_mask.tolist())
        )
        return real_forward(input_ids=input_ids, attention_mask=attention_mask, **kw)

    monkeypatch.setattr(pol.model, "generate", spy_generate)
    monkeypatch.setattr(scorer.model, "forward", spy_forward)
    run = cmp.run_policy(pol, rows, SamplingParams(0.0, 0, 1.0, 4, 1, 0), scorer)
    tok = pol.tokenizer
    prompts = [chat_text(tok, r["messages"]) for r in rows]
    pad = tok.pad_token_id
    assert [tok.decode([t for t in ids if t != pad]) for ids in seen["prompt_ids"]] == prompts
    decoded = sorted(tok.decode(ids) for ids in seen["scored"])
    expected = sorted(p + s[0].text + "<|im_end|>" for p, s in zip(prompts, run.samples))
    assert decoded == expected


# ---------------------------------------------------------------------------------------- labeling app display


def test_the_labeling_page_shows_a_conversation_turn_by_turn(tmp_path):
    from rlhf.label.export import preference_rows
    from rlhf.label.pairs import load_pairs
    from rlhf.label.server import present
    from rlhf.label.store import Store

    row = {
        "id": "c1", "instruction": "Human: Hi there.\n\nAssistant: Hello!\n\nHuman: Which?", "input": "",
        "prompt": "Human: Hi there.\n\nAssistant: Hello!\n\nHuman: Which?", "responses": ["8", "3"],
        "messages": HH_MESSAGES,
    }  # fmt: skip
    atomic_write_jsonl(tmp_path / "pairs.jsonl", [row])
    items = load_pairs(tmp_path / "pairs.jsonl")
    assert items[0].extra["messages"] == HH_MESSAGES
    store = Store(tmp_path / "db.sqlite", create=True)
    store.initialize(items, ["ann"], overlap=0.0, overlap_k=2, seed=0, source="pairs.jsonl")
    view = present(store.next_item("ann")["item"])
    html = view["prompt_html"]
    assert (
        html.count('<div class="turn turn-user">') == 2
        and html.count('<div class="turn turn-assistant">') == 1
    )
    assert (
        html.index("Hi there.")
        < html.index("Hello! How can I help?")
        < html.index("Which is larger, 3 or 8?")
    )
    store.add_label("ann", items[0].id, "A", "", "req-000001")
    store.close()
    (pref,) = preference_rows(tmp_path / "db.sqlite")[0]
    assert pref["messages"] == HH_MESSAGES  # handed on to the reward stage's chat prompt

    bad = {**row, "messages": [{"role": "robot", "content": "x"}]}
    atomic_write_jsonl(tmp_path / "bad.jsonl", [bad])
    with pytest.raises(UserError, match=r"bad.jsonl:line 1: key 'messages' message 1: role 'robot'"):
        load_pairs(tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------------------------ without a template


def test_a_tokenizer_without_a_chat_template_is_one_line_naming_the_dir(tiny_chat_chain, tmp_path, capsys):
    import reward
    from rlhf.cli import main
    from rlhf.config import build_config
    from rlhf.models import save_pretrained_dir
    from rlhf.tasks.demo_model import build_demo_model, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["hello world"] * 5, vocab_size=300)
    plain = save_pretrained_dir(build_demo_model(tok, hidden_size=16, num_layers=1, num_heads=2,
                                                 intermediate_size=32), tok, tmp_path / "plain")  # fmt: skip
    capsys.readouterr()
    for cmd in (
        ["generate", str(plain), "--instruction", "hi", "--template", "chat"],
        ["pairs", "--policy", str(plain), "--prompts", str(tiny_chat_chain["prompts"]), "--template", "chat",
         "--out", str(tmp_path / "p.jsonl")],
        ["compare", str(plain), "--prompts", str(tiny_chat_chain["prompts"]), "--template", "chat",
         "--out", str(tmp_path / "cmp")],
    ):  # fmt: skip
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {plain}: template 'chat' needs a tokenizer"), err
    with pytest.raises(UserError, match=f"{plain}: template 'chat' needs a tokenizer with a chat template"):
        reward.run(build_config(reward.RewardStageConfig, {
            "config": REPO / "configs/demo/reward.yaml", "sft_path": str(plain), "template": "chat",
            "pairs_path": str(tiny_chat_chain["root"] / "trl.jsonl"), "output_dir": str(tmp_path / "rm"),
            "quiet": True}))  # fmt: skip
    assert not (tmp_path / "rm" / checkpoint.MANIFEST).exists()

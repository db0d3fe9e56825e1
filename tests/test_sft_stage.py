"""The SFT stage end to end on the embedded demo: it learns, it saves a loadable HF dir, the manifest comes
last, a finished dir is protected, and `rlhf generate` / `rlhf inspect` work on the result.

One SFT run (module fixture, a subprocess as a user would run it) serves every test: 3000 bare demonstrations
of `largest` + `smallest`, 4 epochs, batch 16, lr 1e-3 (about 45 s on 2 cores). lr 1e-3 rather than the demo
config's 3e-3: on bare demonstrations 3e-3 gave 47-56% correct on held-out prompts in the runs tried, 1e-3
gave 71-98% over three seeds (92% with seed 0, used here).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from rlhf import checkpoint
from rlhf.errors import UserError
from rlhf.generate import SamplingParams, generate
from rlhf.io import atomic_write_json
from rlhf.models import load_causal_lm, load_policy_from_stage, load_tokenizer
from rlhf.tasks.demo import judge, make_sft_rows, make_tasks
from rlhf.templates import format_prompt

KINDS = ("largest", "smallest")
DEMO_CONFIG = REPO / "configs" / "demo" / "sft.yaml"
N_EVAL = 100


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory, demo_base) -> Path:
    root = tmp_path_factory.mktemp("sft_stage")
    rows = make_sft_rows(3000, seed=0, kinds=KINDS, verbose_share=0.0, wrong_share=0.0)
    atomic_write_json(root / "train.json", rows)
    out = root / "sft"
    run_cli("sft", "--config", DEMO_CONFIG, "--model_name_or_path", demo_base, "--data_path", root / "train.json",
            "--output_dir", out, "--num_train_epochs", "4", "--per_device_train_batch_size", "16",
            "--learning_rate", "1e-3", "--quiet", "true", "--save_strategy", "no")  # fmt: skip
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sft_lowers_eval_loss_and_records_the_run(sft_dir, demo_base):
    stage = checkpoint.require(sft_dir, kind="sft")
    m = stage.metrics
    assert m["eval_loss"] < 0.5 * m["initial_eval_loss"], m
    assert m["train_rows"] == 2850 and m["eval_rows"] == 150 and m["dropped_rows"] == 0
    assert m["added_special_tokens"] == 0  # the demo tokenizer has pad/eos/bos/unk
    cfg = stage.manifest["config"]
    assert cfg["learning_rate"] == 1e-3  # the command-line flag won over the YAML's 3e-3
    assert cfg["max_length"] == 128 and cfg["per_device_train_batch_size"] == 16  # YAML, and flag
    assert stage.template == "alpaca" and stage.manifest["base_model"] == str(demo_base)
    assert stage.tokenizer_fingerprint == checkpoint.tokenizer_fingerprint(load_tokenizer(sft_dir))
    assert stage.manifest["parents"] == [] and stage.manifest["finished_at"] >= stage.manifest["started_at"]
    assert (sft_dir / "model.safetensors").is_file() and (sft_dir / "README.md").is_file()
    assert not list(sft_dir.glob("checkpoint-*"))
    log = [json.loads(line) for line in (sft_dir / "log.jsonl").read_text().splitlines()]
    assert any("eval_loss" in row for row in log) and any("loss" in row for row in log)
    # the final eval_loss is the epoch-end evaluation after the last step, reused rather than run twice
    last_step = max(row["step"] for row in log)
    assert [row["eval_loss"] for row in log if "eval_loss" in row and row["step"] == last_step] == [
        m["eval_loss"]
    ]


def test_saved_dir_reloads_with_auto_classes_and_generates(sft_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(sft_dir)
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    task = make_tasks(1, seed=5, kinds=("largest",), split="eval")[0]
    enc = tok(format_prompt(task.instruction, task.input), return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    assert new and tok.eos_token_id in new  # it learned to stop


def test_sft_model_answers_held_out_tasks_far_more_often(sft_dir, demo_base):
    tasks = make_tasks(N_EVAL, seed=1, kinds=KINDS, split="eval")
    prompts = [format_prompt(t.instruction, t.input) for t in tasks]
    params = SamplingParams(temperature=0.0, max_new_tokens=16)

    def n_correct(model, tok) -> int:
        outs = generate(model, tok, prompts, params)
        return sum(judge(t, o[0].text, o[0].finished) > 0 for t, o in zip(tasks, outs))

    base = n_correct(load_causal_lm(demo_base), load_tokenizer(demo_base))
    sft = n_correct(*load_policy_from_stage(checkpoint.require(sft_dir, kind="sft")))
    # Observed on 2 cores: base 0/100; SFT 92/100 with the seed used here (0), 71 and 98 with seeds 1 and 2.
    print(f"held-out demo tasks correct (greedy): base {base}/{N_EVAL}, sft {sft}/{N_EVAL}")
    assert base <= 10
    assert sft >= 60 and sft - base >= 50


def test_manifest_is_written_only_after_training(sft_dir, tmp_path, monkeypatch):
    """Re-run the stage (--overwrite, 3 steps) on a copy of the finished dir, probing it from inside the
    Trainer: the old manifest is gone before training starts and the new one does not exist at on_train_end."""
    from transformers import Trainer, TrainerCallback

    import sft.train
    from rlhf.config import parse_config
    from sft.config import SFTStageConfig

    out = tmp_path / "sft"
    shutil.copytree(sft_dir, out)
    old_finished = checkpoint.require(out, kind="sft").manifest["finished_at"]
    seen: dict[str, object] = {}

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            seen["finished_at_begin"] = checkpoint.is_finished(out)

        def on_train_end(self, args, state, control, **kw):
            seen["finished_at_end"] = checkpoint.is_finished(out)
            try:
                checkpoint.require(out, kind="sft")
            except UserError as e:
                seen["refusal"] = e.line()

    class ProbedTrainer(Trainer):
        def __init__(self, *a, callbacks=None, **kw):
            super().__init__(*a, callbacks=[*(callbacks or []), Probe()], **kw)

    monkeypatch.setattr(sft.train, "Trainer", ProbedTrainer)
    base = checkpoint.require(sft_dir, kind="sft").manifest["base_model"]
    (cfg,) = parse_config([SFTStageConfig], [
        "--config", str(DEMO_CONFIG), "--model_name_or_path", base, "--output_dir", str(out),
        "--data_path", str(sft_dir.parent / "train.json"), "--overwrite", "true", "--max_steps", "3",
        "--eval_strategy", "no", "--save_strategy", "no", "--quiet", "true", "--resume", "never",
    ])  # fmt: skip
    stage = sft.train.run(cfg)

    assert seen["finished_at_begin"] is False and seen["finished_at_end"] is False
    assert seen["refusal"] == (
        f"error: {out}: unfinished run: no rlhf_stage.json (the stage did not finish; rerun it or use --resume)"
    )
    assert checkpoint.is_finished(out) and stage.manifest["finished_at"] > old_finished


def test_unfinished_dir_is_refused(sft_dir, tmp_path):
    out = tmp_path / "unfinished"
    shutil.copytree(sft_dir, out)
    (out / checkpoint.MANIFEST).unlink()
    with pytest.raises(UserError) as e:
        checkpoint.require(out, kind="sft")
    assert e.value.line() == (
        f"error: {out}: unfinished run: no rlhf_stage.json (the stage did not finish; rerun it or use --resume)"
    )
    with pytest.raises(UserError, match=r"expected a finished reward stage, found a sft stage"):
        checkpoint.require(sft_dir, kind="reward")
    # `rlhf generate` refuses it too rather than loading possibly stale weights as a plain model
    res = run_cli(
        "generate", out, "--instruction", "Pick the biggest number.", "--input", "1, 2, 3", check=False
    )
    assert res.returncode == 2 and res.stderr.splitlines() == [e.value.line()]


def test_finished_dir_is_not_overwritten_without_overwrite(sft_dir):
    before = {p.name: sha(p) for p in (sft_dir / checkpoint.MANIFEST, sft_dir / "model.safetensors")}
    stage = checkpoint.require(sft_dir, kind="sft")
    res = run_cli("sft", "--config", DEMO_CONFIG, "--model_name_or_path", stage.manifest["base_model"],
                  "--data_path", sft_dir.parent / "train.json", "--output_dir", sft_dir, "--max_steps", "1",
                  check=False)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: {sft_dir}: holds a finished stage; pass --overwrite true to replace it"
    ]
    assert {p.name: sha(p) for p in (sft_dir / checkpoint.MANIFEST, sft_dir / "model.safetensors")} == before


def test_rlhf_generate(sft_dir, capsys):
    task = make_tasks(1, seed=11, kinds=("smallest",), split="eval")[0]
    model, tok = load_policy_from_stage(checkpoint.require(sft_dir, kind="sft"))
    (expected,) = generate(model, tok, [format_prompt(task.instruction, task.input)], SamplingParams())

    res = run_cli("generate", sft_dir, "--instruction", task.instruction, "--input", task.input)
    assert res.stdout == expected[0].text + "\n"  # greedy by default: the same answer as the library call

    from rlhf.generate_cli import cli

    args = [str(sft_dir), "--instruction", task.instruction, "--input", task.input, "--json"]
    sampling = ["--temperature", "1.0", "--top-k", "5", "--top-p", "0.9", "--num-samples", "3", "--seed", "7"]
    assert cli([*args, *sampling]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["prompt"] == format_prompt(task.instruction, task.input) and first["template"] == "alpaca"
    assert len(first["responses"]) == 3 and len(first["finished"]) == 3
    assert first["sampling"] == {
        "temperature": 1.0, "top_k": 5, "top_p": 0.9, "max_new_tokens": 128, "num_samples": 3, "seed": 7
    }  # fmt: skip
    assert cli([*args, *sampling]) == 0
    assert json.loads(capsys.readouterr().out)["responses"] == first["responses"]  # same seed, same samples

    assert cli([str(sft_dir), "--instruction", "Pick the biggest number.", "--top-p", "0"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: command line:--top-p: expected a finite number in (0, 1]"
    )


def test_rlhf_generate_plain_model_dir(demo_base, capsys):
    from rlhf.generate_cli import cli

    assert cli([str(demo_base), "--instruction", "Name the first word.", "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    assert f"note: {demo_base} has no rlhf_stage.json" in err


def test_rlhf_inspect(sft_dir, tmp_path, capsys):
    res = run_cli("inspect", sft_dir)
    first, metrics = res.stdout.splitlines()[:2]
    assert first.startswith(f"sft     {sft_dir}  finished 20")
    assert "eval_loss=" in metrics and "initial_eval_loss=" in metrics

    # A child stage (a stand-in reward dir with a manifest naming the SFT dir as parent) shows the lineage.
    child = tmp_path / "reward"
    child.mkdir()
    (child / "model.safetensors").write_bytes(b"stand-in")
    parent = checkpoint.require(sft_dir, kind="sft")
    tok = load_tokenizer(sft_dir)
    checkpoint.finish(
        child, "reward", config={}, tokenizer=tok, parents=[parent], metrics={"eval_accuracy": 0.75}
    )

    from rlhf.inspect import cli

    assert cli([str(child)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"reward  {child}  finished ") and "eval_accuracy=0.75" in lines[1]
    assert lines[2].startswith(f"  sft     {sft_dir.resolve()}  finished ")
    assert cli([str(child), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rows] == ["reward", "sft"]
    assert rows[1]["metrics"] == parent.metrics

    assert cli([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope'}: checkpoint does not exist\n"


def tiny_models(vocab_size: int) -> dict:
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        OPTConfig,
        OPTForCausalLM,
    )

    return {
        "llama": LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)),
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=64,
                                           bos_token_id=0, eos_token_id=0)),
        "opt": OPTForCausalLM(OPTConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                                        num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=32,
                                        bos_token_id=0, eos_token_id=0, pad_token_id=1)),
    }  # fmt: skip


def test_padding_free_probe_knows_which_models_keep_packed_examples_apart():
    from sft.packing import isolates_packed_sequences

    models = tiny_models(100)
    assert isolates_packed_sequences(models["llama"]) and isolates_packed_sequences(models["gpt2"])
    assert not isolates_packed_sequences(models["opt"])  # OPT's mask ignores position_ids
    assert models["opt"].training  # the probe leaves the mode as it found it


def test_padding_free_is_refused_for_a_model_that_would_mix_examples(demo_base, tmp_path):
    import sft.train
    from rlhf.config import parse_config
    from sft.config import SFTStageConfig

    tok = load_tokenizer(demo_base)
    opt_dir = tmp_path / "opt"
    tiny_models(len(tok))["opt"].save_pretrained(opt_dir)
    tok.save_pretrained(opt_dir)
    atomic_write_json(tmp_path / "train.json", make_sft_rows(20, seed=0))
    out = tmp_path / "out"
    argv = ["--config", str(DEMO_CONFIG), "--model_name_or_path", str(opt_dir), "--data_path",
            str(tmp_path / "train.json"), "--output_dir", str(out), "--padding_free", "true"]  # fmt: skip
    (cfg,) = parse_config([SFTStageConfig], argv)
    with pytest.raises(UserError) as e:
        sft.train.run(cfg)
    assert e.value.line().startswith(
        f"error: {DEMO_CONFIG}:key 'padding_free': not supported by this model (opt)"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "name,padding_free",
    # OPT does not isolate packed examples, so padding_free is refused for it (test above)
    [("llama", False), ("llama", True), ("gpt2", False), ("gpt2", True), ("opt", False)],
)
def test_skipping_prompt_logits_gives_the_same_loss_and_gradients(demo_base, tmp_path, name, padding_free):
    """sft.collators.SkipPromptLogits: the LM head runs only where a next token is trained, and the loss (plain mean,
    and summed over the Trainer's count of trained tokens, as under gradient accumulation) and every gradient
    equal those of the full logits. Dropout off (eval mode) so both passes see the same network."""
    import random

    import torch
    from transformers import Trainer, TrainingArguments

    from sft.collators import keeps_logits_selectively, make_collator

    tok = load_tokenizer(demo_base)
    model = tiny_models(len(tok))[name].eval()
    assert keeps_logits_selectively(model)
    rng = random.Random(0)
    feats = []
    for n in (9, 14, 6, 11, 13):
        ids = [rng.randrange(3, 100) for _ in range(n)]
        prompt = rng.randrange(2, n - 1)
        feats.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    full = make_collator(tok, padding_free, skip_prompt_logits=False)([dict(f) for f in feats])
    skip = make_collator(tok, padding_free, skip_prompt_logits=True)([dict(f) for f in feats])
    assert skip["shift_labels"].shape[-1] < full["input_ids"].shape[-1] - 1  # prompt positions were left out

    trainer = Trainer(
        model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    )
    n_full = trainer._get_num_items_in_batch([full], torch.device("cpu"))
    assert trainer._get_num_items_in_batch([skip], torch.device("cpu")) == n_full
    for kwargs in ({}, {"num_items_in_batch": n_full}):
        grads = []
        for batch in (full, skip):
            model.zero_grad()
            out = model(**batch, **kwargs)
            out.loss.backward()
            grads.append(
                (out.loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
            )
        (loss_a, g_a), (loss_b, g_b) = grads
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
        assert len(g_a) == len(g_b)
        for a, b in zip(g_a, g_b):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)

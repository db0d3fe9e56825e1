"""The one model loader (rlhf.models.locate_model / load_policy / load_reward_model) on every kind of dir a user
can hand a command: finished stages, trainer checkpoint-N dirs (complete or cut short), LoRA adapter dirs (plain
peft and PPO adapter stages), plain HF dirs with a README.md, hub ids, and damaged files, which are refused with
one line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rlhf import checkpoint
from rlhf.errors import UserError
from rlhf.models import (
    load_policy,
    load_reward_model,
    load_tokenizer,
    locate_model,
)

ASK = ["--instruction", "Pick the biggest number.", "--input", "1, 5, 3", "--max-new-tokens", "3"]


def rlhf(argv, capsys) -> tuple[int, list[str], list[str]]:
    from rlhf.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err.splitlines()


def logits(model, tokenizer, text: str = "Pick the biggest number.") -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------- finished stages


def test_finished_stages_load_by_role(tiny_chain):
    sft = load_policy(tiny_chain["sft"])
    assert (sft.source.kind, sft.template, sft.source.note) == ("sft", "alpaca", None)
    assert sft.model.config.pad_token_id == sft.tokenizer.pad_token_id  # special tokens synced
    rm = load_reward_model(tiny_chain["reward"])
    assert rm.source.kind == "reward" and rm.model.config.num_labels == 1
    assert rm.model.config.pad_token_id == rm.tokenizer.pad_token_id  # the head reads the last non-pad token
    with pytest.raises(
        UserError, match="expected a finished sft or ppo or dpo or rloo stage, found a reward stage"
    ):
        locate_model(tiny_chain["reward"], role="policy")
    with pytest.raises(UserError, match="expected a finished reward stage, found a sft stage"):
        locate_model(tiny_chain["sft"], role="reward")


def test_an_interrupted_overwrite_is_refused_by_its_model_card(tiny_chain, tmp_path, capsys):
    """`--overwrite` removes the manifest first and the log next: the stage's own model card (it names the
    manifest) is then the only sign left that the weights next to it may be stale."""
    d = copy(tiny_chain["sft"], tmp_path / "sft")
    (d / checkpoint.MANIFEST).unlink()
    (d / "log.jsonl").unlink(missing_ok=True)
    rc, _, err = rlhf(["generate", d, *ASK], capsys)
    assert rc == 2 and err == [
        f"error: {d}: unfinished run: no rlhf_stage.json (the stage did not finish; rerun it or use --resume)"
    ]


# ------------------------------------------------------------------------------------------- plain HF dirs


def test_a_hub_style_model_dir_with_a_readme_loads_in_generate(demo_base, tmp_path, capsys):
    d = copy(demo_base, tmp_path / "SmolThing-135M")
    (d / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# A model\n")
    rc, out, err = rlhf(["generate", d, *ASK], capsys)
    assert rc == 0 and len(out) == 1, (out, err)
    assert f"note: {d} has no rlhf_stage.json: loaded as a plain HF model with the alpaca template" in err
    assert locate_model(d).kind == "model"


@pytest.mark.parametrize("marker", ["log.jsonl", "checkpoint-4"])
def test_a_dir_with_traces_of_a_stage_run_is_an_unfinished_run(demo_base, tmp_path, marker):
    d = copy(demo_base, tmp_path / "run")
    (d / "README.md").write_text("# A model\n")
    (d / marker).mkdir() if marker.startswith("checkpoint") else (d / marker).write_text('{"step": 1}\n')
    with pytest.raises(UserError, match="unfinished run: no rlhf_stage.json"):
        locate_model(d)


def test_a_plain_causal_lm_is_not_taken_as_a_reward_model(demo_base, tmp_path):
    """It would get a freshly initialised (random) score head: refused, naming the config."""
    with pytest.raises(UserError, match="not a reward model: expected a sequence-classification model") as e:
        locate_model(demo_base, role="reward")
    assert e.value.line().startswith(f"error: {demo_base / 'config.json'}: ")


def test_a_sequence_classification_dir_with_one_output_is_a_reward_model(demo_base, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rlhf.evaluation.scoring import RewardScorer

    d = tmp_path / "rm"
    tok = load_tokenizer(demo_base)
    AutoModelForSequenceClassification.from_pretrained(demo_base, num_labels=1).save_pretrained(d)
    tok.save_pretrained(d)
    scorer = RewardScorer.from_stage(d)
    (a, b) = scorer.score([("Pick the biggest number.", "1, 5, 3")] * 2, ["5", "1"])
    assert isinstance(a, float) and a != b


def test_a_hub_id_not_in_the_offline_cache_is_refused_before_loading(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="not a hub model id in the local cache") as e:
        locate_model("no-such-org/no-such-model")
    assert e.value.line().startswith("error: no-such-org/no-such-model: ")


def test_a_missing_local_path_is_refused():
    with pytest.raises(UserError, match="model path does not exist"):
        locate_model("./no/such/dir")


# ------------------------------------------------------------------------------------------- checkpoint-N


def test_a_complete_checkpoint_loads_and_one_cut_short_is_refused(demo_base, tmp_path, capsys):
    ckpt = copy(demo_base, tmp_path / "run" / "checkpoint-3")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    loaded = load_policy(ckpt)
    assert loaded.source.kind == "checkpoint" and loaded.template == "alpaca"
    assert "is a trainer checkpoint" in loaded.source.note
    rc, out, _ = rlhf(["generate", ckpt, *ASK], capsys)
    assert rc == 0 and len(out) == 1
    (ckpt / "trainer_state.json").write_text('{"global_st')  # transformers writes it last, not atomically
    rc, _, err = rlhf(["generate", ckpt, *ASK], capsys)
    assert (
        rc == 2
        and len(err) == 1
        and err[0].startswith(f"error: {ckpt}: unfinished run: checkpoint cut short")
    )


# ------------------------------------------------------------------------------------------- LoRA adapters


@pytest.fixture(scope="module")
def adapter(demo_base, tmp_path_factory) -> tuple[Path, torch.Tensor]:
    """A plain peft LoRA adapter dir on the demo model (non-zero B so it changes the logits), and the logits the
    adapter model gives before any saving."""
    from peft import LoraConfig, get_peft_model

    from rlhf.models import load_causal_lm

    tok = load_tokenizer(demo_base)
    model = get_peft_model(load_causal_lm(demo_base), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    expected = logits(model.eval(), tok)
    d = tmp_path_factory.mktemp("adapter") / "lora"
    model.save_pretrained(d, safe_serialization=True)
    return d, expected


def test_a_plain_peft_adapter_dir_loads_merged_onto_its_base(adapter, demo_base, tmp_path, monkeypatch):
    d, expected = adapter
    assert json.loads((d / "adapter_config.json").read_text())["base_model_name_or_path"] == str(demo_base)
    loaded = load_policy(d)
    assert loaded.source.kind == "adapter" and loaded.source.base.path == str(demo_base)
    assert not hasattr(loaded.model, "peft_config")  # merged: a plain causal LM
    assert torch.allclose(logits(loaded.model, loaded.tokenizer), expected, atol=1e-4)

    # A base recorded relative to the adapter dir loads from any working directory.
    moved = tmp_path / "runs" / "lora"
    shutil.copytree(d, moved)
    shutil.copytree(demo_base, tmp_path / "runs" / "base")
    cfg = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "../base"}))
    monkeypatch.chdir(tmp_path)
    assert Path(locate_model(moved).base.path).resolve() == (tmp_path / "runs" / "base").resolve()


def test_a_ppo_adapter_stage_loads_onto_its_sft_parent_through_the_manifest(adapter, tiny_chain, tmp_path):
    """Built on the demo base rather than the SFT weights: what matters is that the base comes from the manifest's
    parent link, not from the adapter config (pointed at nothing here)."""
    d, _ = adapter
    ppo = copy(d, tmp_path / "ppo")
    cfg = json.loads((ppo / "adapter_config.json").read_text())
    (ppo / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "../gone"}))
    sft = checkpoint.require(tiny_chain["sft"], kind="sft")
    tok = load_tokenizer(sft.path)
    tok.save_pretrained(ppo)
    checkpoint.finish(ppo, "ppo", config={}, tokenizer=tok, parents=[sft])
    loaded = load_policy(ppo)
    assert loaded.source.kind == "ppo" and loaded.source.base.kind == "sft"
    assert Path(loaded.source.base.path).resolve() == sft.path.resolve()


def test_an_adapter_with_pickled_weights_only_is_refused(adapter, tmp_path):
    d = copy(adapter[0], tmp_path / "lora")
    (d / "adapter_model.safetensors").rename(d / "adapter_model.bin")
    with pytest.raises(UserError, match="adapter weights only as a pickle"):
        locate_model(d)


# ------------------------------------------------------------------------------------------- damaged files


def _cut(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


@pytest.mark.parametrize(
    ("name", "keep", "expected"),
    [
        ("model.safetensors", None, "not a readable safetensors file"),
        ("model.safetensors", 20, "not a readable safetensors file"),
        ("config.json", None, "not valid JSON"),
        ("tokenizer.json", None, "not valid JSON"),
        ("tokenizer_config.json", None, "not valid JSON"),
    ],
    ids=["safetensors-half", "safetensors-header", "config", "tokenizer", "tokenizer-config"],
)
def test_a_damaged_file_is_one_line_naming_it(demo_base, tmp_path, capsys, name, keep, expected):
    d = copy(demo_base, tmp_path / "model")
    _cut(d / name, keep)
    rc, _, err = rlhf(["generate", d, *ASK], capsys)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {d / name}: {expected}") and "cut short" in err[0]


def test_a_finished_stage_with_cut_weights_is_one_line(tiny_chain, tmp_path, capsys):
    d = copy(tiny_chain["reward"], tmp_path / "reward")
    _cut(d / "model.safetensors")
    rc, _, err = rlhf(["score", d, "--instruction", "Pick the biggest number.", "--response", "5"], capsys)
    assert (
        rc == 2 and len(err) == 1 and err[0].startswith(f"error: {d / 'model.safetensors'}: not a readable")
    )

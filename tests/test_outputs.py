"""Outputs that load anywhere: the model card's metadata (huggingface_hub ModelCard), and push_to_hub /
hub_model_id either refused in one line before anything is created or done after the manifest is written.
(The LoRA adapter loaded by plain peft from another directory is in tests/test_ppo.py.)"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, run_cli
from huggingface_hub import ModelCard

from rlhf import checkpoint
from rlhf.errors import UserError


def card(path: Path) -> ModelCard:
    return ModelCard.load(path / "README.md")


# ------------------------------------------------------------------------------------------- model cards


def test_stage_cards_carry_hub_metadata_metrics_and_a_load_snippet(tiny_chain):
    from rlhf.models import is_unfinished_run

    sft_card, rm_card = card(tiny_chain["sft"]), card(tiny_chain["reward"])
    assert sft_card.data.pipeline_tag == "text-generation" and sft_card.data.library_name == "transformers"
    assert {"rlhf", "sft"} <= set(sft_card.data.tags)
    assert rm_card.data.pipeline_tag == "text-classification"
    assert {"rlhf", "reward", "reward-model"} <= set(rm_card.data.tags)
    assert sft_card.data.base_model is None  # a local dir is no hub id; the text names it instead
    assert (
        f"- base model: `{checkpoint.require(tiny_chain['sft'], 'sft').manifest['base_model']}`"
        in sft_card.text
    )
    metrics = checkpoint.require(tiny_chain["reward"], "reward").metrics
    assert f"| train_loss | {metrics['train_loss']:.4g} |" in rm_card.text
    assert "- parent (sft): `../sft`" in rm_card.text
    assert "AutoModelForSequenceClassification.from_pretrained" in rm_card.text
    assert "AutoModelForCausalLM.from_pretrained" in sft_card.text
    # the card names the manifest: a dir with our card and no manifest is an interrupted run of ours
    assert checkpoint.MANIFEST in sft_card.text
    assert not is_unfinished_run(tiny_chain["sft"])


def test_card_metadata_base_model_license_datasets_and_adapter_snippet(tmp_path):
    from rlhf.model_card import model_card

    parent = tmp_path / "sft"
    parent.mkdir()
    (parent / "README.md").write_text("---\nlicense: apache-2.0\n---\n# parent\n")
    out = tmp_path / "ppo"
    out.mkdir()
    c = model_card(
        out,
        "ppo",
        parents=[SimpleNamespace(kind="sft", path=parent)],
        metrics={"objective_kl": 0.25, "stopped_early": None, "episodes": 64},
        base_model="HuggingFaceTB/SmolLM2-135M",
        config={"dataset_name": "trl-lib/ultrafeedback_binarized"},
        template="alpaca",
        adapter=True,
        repo_id="me/tiny-ppo",
    )
    (out / "README.md").write_text(str(c))
    parsed = card(out)
    assert parsed.data.base_model == "HuggingFaceTB/SmolLM2-135M"
    assert parsed.data.license == "apache-2.0"  # inherited from the parent's card
    assert parsed.data.datasets == ["trl-lib/ultrafeedback_binarized"]
    assert parsed.data.library_name == "peft" and "lora" in parsed.data.tags
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/tiny-ppo")' in parsed.text
    assert "| objective_kl | 0.25 |" in parsed.text and "| episodes | 64 |" in parsed.text
    assert "stopped_early" not in parsed.text  # None metrics are left out


# ------------------------------------------------------------------------------------------- push_to_hub


def tiny_sft(demo_base, root: Path, **extra):
    import sft
    from rlhf.config import build_config
    from rlhf.io import atomic_write_json
    from rlhf.tasks.demo import make_sft_rows

    atomic_write_json(root / "sft.json", make_sft_rows(48, seed=0))
    return build_config(sft.SFTStageConfig, {
        "config": REPO / "configs/demo/sft.yaml", "model_name_or_path": str(demo_base),
        "data_path": str(root / "sft.json"), "output_dir": str(root / "sft"), "num_train_epochs": 1,
        "eval_strategy": "no", "eval_fraction": 0.0, "quiet": True, "save_strategy": "no", **extra})  # fmt: skip


def test_push_to_hub_offline_is_refused_in_one_line_before_anything_is_created(demo_base, tmp_path):
    from rlhf.io import atomic_write_json
    from rlhf.tasks.demo import make_sft_rows

    atomic_write_json(tmp_path / "sft.json", make_sft_rows(8, seed=0))
    out = tmp_path / "sft"
    res = run_cli(
        "sft", "--config", REPO / "configs/demo/sft.yaml", "--model_name_or_path", demo_base,
        "--data_path", tmp_path / "sft.json", "--output_dir", out, "--push_to_hub", "true", check=False,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {REPO / 'configs/demo/sft.yaml'}:key 'push_to_hub': push_to_hub needs the Hugging Face Hub, but "
        "HF_HUB_OFFLINE is set: unset it, or set push_to_hub: false and upload the finished stage dir later "
        "(`hf upload REPO DIR`)"
    ]
    assert not out.exists()


def test_push_to_hub_without_a_token_and_hub_model_id_alone_are_refused(demo_base, tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    import sft

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(UserError, match="push_to_hub needs a Hugging Face token") as e:
        sft.run(tiny_sft(demo_base, tmp_path, push_to_hub=True))
    assert e.value.where == "key 'push_to_hub'"
    with pytest.raises(UserError, match="hub_model_id is set but push_to_hub is not") as e:
        sft.run(tiny_sft(demo_base, tmp_path, hub_model_id="me/tiny"))
    assert e.value.where == "key 'hub_model_id'"
    assert not (tmp_path / "sft").exists()


def test_push_to_hub_uploads_the_finished_dir_after_the_manifest(demo_base, tmp_path, monkeypatch):
    """The hub client is replaced by a recorder (no network here): one repo, one upload of the whole finished
    stage dir, made after the manifest exists; Trainer's own push (before the manifest) never runs."""
    import huggingface_hub
    from huggingface_hub import HfApi, constants

    import sft

    calls = []
    out = tmp_path / "sft"

    def create_repo(self, repo_id, **kw):
        calls.append(("create_repo", repo_id, checkpoint.is_finished(out)))

    def upload_folder(self, *, repo_id, folder_path, **kw):
        calls.append(("upload_folder", repo_id, checkpoint.is_finished(folder_path), Path(folder_path), kw))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/abc")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    stage = sft.run(tiny_sft(demo_base, tmp_path, push_to_hub=True, hub_model_id="me/tiny-sft"))
    assert [c[:3] for c in calls] == [
        ("create_repo", "me/tiny-sft", True),
        ("upload_folder", "me/tiny-sft", True),
    ]
    assert calls[1][3] == out and "checkpoint-*" in calls[1][4]["ignore_patterns"]
    assert (
        stage.manifest["config"]["push_to_hub"] is True
        and stage.manifest["config"]["hub_model_id"] == "me/tiny-sft"
    )
    assert 'AutoModelForCausalLM.from_pretrained("me/tiny-sft")' in card(out).text

"""Safe loading: weights only through safetensors, no pickle from user files (torch.load only with weights_only=True),
custom model code only with trust_remote_code. Each malicious file here would create a marker dir if it ever ran;
the tests check it never does.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from _faults import run_here, stage_args
from conftest import REPO

PACKAGE_DIRS = ("rlhf", "sft", "reward", "ppo")


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def malicious_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps({"model.embed_tokens.weight": _RunsCode(marker)}))
    return path


def rlhf(argv, capsys) -> tuple[int, list[str]]:
    from rlhf.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.splitlines()


@pytest.fixture()
def pickle_only_model(demo_base, tmp_path) -> tuple[Path, Path]:
    """The demo model dir with its safetensors weights swapped for a pytorch_model.bin that runs code."""
    d = tmp_path / "model"
    shutil.copytree(demo_base, d)
    (d / "model.safetensors").unlink()
    marker = tmp_path / "PICKLE_RAN"
    malicious_pickle(d / "pytorch_model.bin", marker)
    return d, marker


def test_a_model_dir_with_only_pickle_weights_is_refused_unread(
    pickle_only_model, tiny_chain, tmp_path, capsys
):
    model, marker = pickle_only_model
    data = tiny_chain["root"] / "sft.json"
    argv = ["sft", "--config", REPO / "configs/demo/sft.yaml", "--model_name_or_path", model, "--data_path", data,
            "--output_dir", tmp_path / "out"]  # fmt: skip
    rc, lines = rlhf(argv, capsys)
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {model}: holds weights only in a pickle-based format")
    assert not marker.exists()
    rc, lines = rlhf(["generate", model, "--instruction", "Pick the biggest number."], capsys)
    assert rc == 2 and lines[-1].startswith(f"error: {model}: holds weights only in a pickle-based format")
    assert not marker.exists()


def test_a_stage_whose_weights_are_a_pickle_is_refused_unread(tiny_chain, tmp_path, capsys):
    sft = tmp_path / "sft"
    shutil.copytree(tiny_chain["sft"], sft)
    (sft / "model.safetensors").unlink()
    marker = tmp_path / "PICKLE_RAN"
    malicious_pickle(sft / "pytorch_model.bin", marker)
    argv = ["reward", "--config", REPO / "configs/demo/reward.yaml", "--sft_path", sft, "--pairs_path",
            tiny_chain["prefs"], "--output_dir", tmp_path / "rm"]  # fmt: skip
    rc, lines = rlhf(argv, capsys)
    assert rc == 2 and lines == [f"error: {sft}: missing weight file (expected one of model.safetensors, "
                                 "model.safetensors.index.json, adapter_model.safetensors)"]  # fmt: skip
    assert not marker.exists()


def _with_custom_code(demo_base: Path, d: Path, marker: Path, model_type: str) -> Path:
    shutil.copytree(demo_base, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = model_type
    cfg["auto_map"] = {"AutoConfig": "custom_code.Config", "AutoModelForCausalLM": "custom_code.Model"}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "custom_code.py").write_text(
        f"import os\nos.mkdir({str(marker)!r})\nfrom transformers import LlamaConfig as Config, LlamaForCausalLM as Model\n"
    )
    return d


def test_custom_model_code_is_refused_without_trust_remote_code(demo_base, tmp_path, capsys):
    marker = tmp_path / "CODE_RAN"
    model = _with_custom_code(demo_base, tmp_path / "custom", marker, "not_a_known_architecture")
    rc, lines = rlhf(["generate", model, "--instruction", "Pick the biggest number."], capsys)
    assert rc == 2 and len(lines) == 1, lines
    assert (
        lines[0].startswith(f"error: {model}: contains custom model code") and "trust_remote_code" in lines[0]
    )
    assert not marker.exists()


def test_auto_map_next_to_a_known_architecture_is_not_executed(demo_base, tmp_path):
    """With trust_remote_code off, a config that names custom code for a known model type loads the built-in
    class; the custom module is never imported."""
    from rlhf.models import load_causal_lm

    marker = tmp_path / "CODE_RAN"
    model = load_causal_lm(_with_custom_code(demo_base, tmp_path / "custom", marker, "llama"))
    assert type(model).__module__.startswith("transformers.") and not marker.exists()


def test_trust_remote_code_is_off_unless_set():
    from ppo.config import PPOStageConfig
    from reward.config import RewardStageConfig
    from rlhf.config import parse_config
    from sft.config import SFTStageConfig

    for cls, name in ((SFTStageConfig, "sft"), (RewardStageConfig, "reward"), (PPOStageConfig, "ppo")):
        (cfg,) = parse_config([cls], ["--config", str(REPO / "configs" / "demo" / f"{name}.yaml")])
        assert cfg.trust_remote_code is False
        (cfg,) = parse_config([cls], ["--trust_remote_code", "true"])
        assert cfg.trust_remote_code is True


def test_resuming_refuses_a_checkpoint_file_that_would_run_code(tiny_chain, demo_base, tmp_path, capsys):
    """transformers reads rng_state.pth / optimizer.pt with torch.load(weights_only=True): a pickle that calls
    anything is refused, and reported as one line."""
    chain = {"base": demo_base, "sft_data": tiny_chain["root"] / "sft.json"}
    out = tmp_path / "sft"
    assert run_here(stage_args("sft", chain, out) + ["--keep_checkpoints", "true", "--max_steps", "6"]) == 0
    (out / "rlhf_stage.json").unlink()  # as if killed after its last checkpoint
    marker = tmp_path / "PICKLE_RAN"
    malicious_pickle(out / "checkpoint-6" / "rng_state.pth", marker)
    rc, lines = rlhf(stage_args("sft", chain, out) + ["--max_steps", "6"], capsys)
    assert rc == 2 and lines[-1].startswith(f"error: {out}: a checkpoint file holds more than tensors"), lines
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _sources():
    for d in (*PACKAGE_DIRS, "bench"):
        for path in sorted((REPO / d).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_no_code_loads_a_pickle_except_through_weights_only_torch_load():
    """Static check over rlhf/, sft/, reward/, ppo/ and bench/: every torch.load passes weights_only=True, and
    nothing calls pickle / joblib / numpy's pickle loading or turns on trust_remote_code by itself."""
    problems = []
    for path, tree in _sources():
        for call in _calls(tree):
            name = _dotted(call.func)
            kw = {k.arg: k.value for k in call.keywords}
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            if name.endswith("torch.load") or name == "load" and "torch" in ast.unparse(call.func):
                flag = kw.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "joblib.load", "dill.load", "cloudpickle.load"):
                problems.append(f"{where}: {name}")
            if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True:
                problems.append(f"{where}: allow_pickle=True")
            trc = kw.get("trust_remote_code")
            if isinstance(trc, ast.Constant) and trc.value is True:
                problems.append(f"{where}: trust_remote_code=True hard-coded")
            if isinstance(kw.get("use_safetensors"), ast.Constant) and kw["use_safetensors"].value is False:
                problems.append(f"{where}: use_safetensors=False")
    assert not problems, "\n".join(problems)


def test_model_weights_are_loaded_in_one_place_with_use_safetensors():
    """Every from_pretrained in the package is one of the reviewed ones: rlhf/models.py's loader (which passes
    use_safetensors=True), the tokenizer loader, peft's adapter on a checked safetensors file, and the GGUF reader."""
    allowed = {("rlhf/models.py", "auto_cls"), ("rlhf/models.py", "AutoTokenizer"), ("rlhf/models.py", "PeftModel"),
               ("rlhf/convert.py", "AutoTokenizer"), ("rlhf/convert.py", "AutoModelForCausalLM")}  # fmt: skip
    found = set()
    for path, tree in _sources():
        rel = str(path.relative_to(REPO))
        if rel.startswith("bench/"):
            continue
        for call in _calls(tree):
            if isinstance(call.func, ast.Attribute) and call.func.attr == "from_pretrained":
                found.add((rel, _dotted(call.func.value)))
                if _dotted(call.func.value) == "auto_cls":
                    kw = {k.arg: k.value for k in call.keywords}
                    assert isinstance(kw.get("use_safetensors"), ast.Constant) and kw["use_safetensors"].value
    assert found <= allowed, f"new from_pretrained call sites to review: {sorted(found - allowed)}"

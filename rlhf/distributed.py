"""Multi-process runs (`torchrun`, `accelerate launch`): who is rank 0, CPU-only DDP, and saving a sharded model.

Every stage runs unchanged under a launcher, e.g. `torchrun --nproc_per_node 2 -m sft --config ...`. The rules:

- Only the main process (global rank 0) writes into the stage dir: weights, tokenizer, log.jsonl, README and
  the manifest. Other ranks train, then return without touching the disk.
- Messages meant for the user (dropped rows, "finished ...", one-line errors) are printed by rank 0 only.
- On a machine without a GPU, a launched run uses accelerate's multi-CPU mode (gloo backend): without it,
  transformers initialises the process group but then trains every rank on all the data on its own.

Ranks are read from the launcher's environment (RANK / WORLD_SIZE), so these helpers work before any
process group or Trainer exists.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

# DeepSpeed, when installed, logs "Setting accelerator to CPU ..." to stdout the first time transformers imports it,
# on every CPU-only run whether or not DeepSpeed is used. Not news for anyone running on CPU: drop that one record.
# (A filter survives DeepSpeed's own logger setup, which resets the level and adds a handler.)


class _DropCpuAcceleratorNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Setting accelerator to CPU" not in record.getMessage()


logging.getLogger("DeepSpeed").addFilter(_DropCpuAcceleratorNotice())


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """True on global rank 0, and in any single-process run."""
    return rank() == 0


def main_print(*args, **kwargs) -> None:
    """print() on rank 0 only, so a message shows once however many processes run."""
    if is_main_process():
        print(*args, **kwargs)


def _has_gpu() -> bool:
    import torch

    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())


def configure_launch(deepspeed: bool = False) -> None:
    """Call before the stage's TrainingArguments are built (rlhf.config.parse_config does; `deepspeed`: the
    config sets a DeepSpeed json).

    - Several processes and no GPU: set ACCELERATE_USE_CPU so transformers/accelerate run multi-CPU DDP (gloo).
      A DeepSpeed run is left alone: DeepSpeed brings its own CPU accelerator and backend.
    - Ranks other than 0: no progress bars (transformers' weight loading, datasets' map)."""
    if world_size() > 1 and not _has_gpu():
        if deepspeed or deepspeed_launch():
            from rlhf.trl_compat import let_accelerate_run_deepspeed_on_cpu

            let_accelerate_run_deepspeed_on_cpu()
        else:
            # Also over `accelerate launch`, which exports ACCELERATE_USE_CPU=False for a multi-GPU config.
            os.environ["ACCELERATE_USE_CPU"] = "true"
    if not is_main_process():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            from datasets.utils.logging import disable_progress_bar

            disable_progress_bar()
        except ImportError:
            pass


def deepspeed_launch() -> bool:
    """`accelerate launch --config_file <a DeepSpeed accelerate config>` announces itself this way."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")


def end_of_run() -> None:
    """Call on every rank when a stage is done: wait until rank 0 has written the stage dir (a barrier), then take
    the process group down. Without it a rank that returns early exits while rank 0 is still saving, and under FSDP
    that exit aborts the process ("terminate called without an active exception"), after which the launcher kills
    rank 0 mid-save. A no-op in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _zero_stage_of_json_env() -> int | None:
    """The ZeRO stage in the DeepSpeed json an accelerate config names (`deepspeed_config_file`: accelerate passes the
    path on, not the stage)."""
    import json

    path = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if not path:
        return None
    try:
        stage = json.loads(Path(path).read_text(encoding="utf-8")).get("zero_optimization", {}).get("stage")
    except (OSError, ValueError, AttributeError):
        return None  # DeepSpeed itself reports a broken file, with its own message
    return stage if isinstance(stage, int) else None


def sharded_launch(cfg) -> str | None:
    """Before any model loads: 'ZeRO-3' / 'FSDP' when this run will shard the model weights, else None. Reads the
    stage config (`deepspeed: FILE`, `fsdp: ...`) and what `accelerate launch --config_file` puts in the env."""
    ds = getattr(cfg, "hf_deepspeed_config", None)
    if ds is not None and ds.is_zero3():
        return "ZeRO-3"
    if deepspeed_launch() and (
        os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3" or _zero_stage_of_json_env() == 3
    ):
        return "ZeRO-3"
    if getattr(cfg, "fsdp", None) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "FSDP"
    return None


def is_sharded(trainer) -> bool:
    """True when no single rank holds the whole model (DeepSpeed ZeRO-3, FSDP): saving must gather it first."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = trainer.accelerator.state.deepspeed_plugin
        return plugin is not None and plugin.zero_stage == 3
    return False


def can_evaluate_before_training(trainer) -> bool:
    """Not under DeepSpeed: before `train()` transformers refuses `evaluate()` at ZeRO-1/2 (ZeRO inference is stage 3
    only), and at ZeRO-3 the inference engine it builds leaves no training engine for `train()`."""
    return not getattr(trainer, "is_deepspeed_enabled", False)


def gather_state_dict(trainer) -> dict | None:
    """The full state dict of a sharded model, gathered on rank 0 (a collective: every rank must call this).
    None when the model is not sharded (rank 0 already holds every weight)."""
    if not is_sharded(trainer):
        return None
    return trainer.accelerator.get_state_dict(trainer.model_wrapped)


def final_model(trainer, gathered: dict | None, rebuild, merge_lora: bool):
    """Rank 0: the trained model as one ordinary module, LoRA merged when asked.

    `gathered` comes from gather_state_dict(). When the model was sharded, `rebuild()` must return a fresh
    unsharded model of the same architecture (and the same peft wrapping) to load the gathered weights into."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if gathered is not None:
        # Build the plain copy outside DeepSpeed's ZeRO-3 init, which would partition it again (and wait for the
        # other ranks, which have returned).
        from transformers.integrations import deepspeed as hf_ds

        hf_ds.unset_hf_deepspeed_config()
        model = rebuild()
        missing, unexpected = model.load_state_dict(gathered, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the input embeddings
        if missing or unexpected:
            raise RuntimeError(f"gathered weights do not fit: missing {missing}, unexpected {unexpected}")
        if hasattr(model, "tie_weights"):
            model.tie_weights()
    if merge_lora:
        model = model.merge_and_unload()
    return model

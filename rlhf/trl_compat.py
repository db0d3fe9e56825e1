"""Every place the kit reaches into TRL 1.12's PPOTrainer, accelerate or torch module internals, in one module.

TRL's PPO trainer (`trl.experimental.ppo`) is experimental and its internals change between releases, so the kit
pins trl==1.12.0 and `check_trl_version()` refuses another version with one error line before any model loads.
Moving to a new TRL release means revisiting exactly the overrides listed here:

PPOTrainerCompat (a PPOTrainer subclass; ppo/resumable.py builds checkpoint resuming on its hooks):
- `__init__` sets `is_distributed_loading_by_transformers` and `is_fsdp_xla_v1/v2_enabled`: transformers' save path
  reads them on every rank, and TRL's `__init__` does not call `Trainer.__init__`, which sets them.
- `__init__` gives a DistributedDataParallel wrapper a plain `policy` attribute (`object.__setattr__`): with LoRA,
  TRL computes the reference log-probs through `self.model.policy`, which DDP hides (no gradient hooks needed:
  that pass runs under no_grad).
- `save_model` unwraps the DDP wrapper first: TRL saves `self.model.policy`, and would otherwise save the
  wrapper's whole state dict instead of an HF policy dir.
- `_save_checkpoint` writes the stage's extra files (`save_checkpoint_extras`), then calls transformers'
  `Trainer._save_checkpoint` directly, skipping TRL's override, whose model card reads `self.model.config` (a DDP
  wrapper has none); transformers writes trainer_state.json last.
- `run_updates(n)` runs TRL's unmodified loop for `n` updates by lowering `args.num_total_batches` (the loop's
  range; restored afterwards): how a resumed run does only the updates left.
- `restore_rng_state(ckpt)`: transformers' private `_load_rng_state`, which TRL's `train()` never calls.
- `prompt_loader` / `wrap_prompt_loader`: TRL's prompt dataloader (`self.dataloader`), which its loop iterates.
- `prompts_in_run`: `train_dataset_len`, the prompt count TRL sized the run with.
- Sample-generation tables: TRL samples when its loop-local update number hits `sample_generations_freq`, a
  number that restarts at 1 on resume; the compat trainer decides from the true update number instead.

Outside the trainer:
- `share_parameters` / `unshare_parameters` write `module._parameters`: the LoRA value model points its frozen
  backbone at the reward model's tensors (one copy of those weights), and gets its own copy before merging.
- `let_accelerate_run_deepspeed_on_cpu` patches accelerate's `PartialState._prepare_backend`: accelerate 1.x finds
  no process-group backend for a DeepSpeed launch without a GPU (rlhf/distributed.py, for testing on CPU).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl.experimental.ppo import PPOTrainer

from rlhf.errors import UserError

TRL_VERSION = "1.12.0"


def check_trl_version() -> None:
    """One clear error when the installed TRL is not the release whose PPO internals this module overrides."""
    import trl

    if trl.__version__ != TRL_VERSION:
        raise UserError(
            f"the PPO stage needs trl=={TRL_VERSION} (it overrides internals of TRL's PPOTrainer, see "
            f"rlhf/trl_compat.py), found trl {trl.__version__}: pip install trl=={TRL_VERSION}",
            "environment",
        )


class PPOTrainerCompat(PPOTrainer):
    """TRL 1.12's PPOTrainer with the internals the kit needs behind named hooks (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        check_trl_version()
        super().__init__(*args, **kwargs)
        self.is_distributed_loading_by_transformers = False
        self.is_fsdp_xla_v1_enabled = self.is_fsdp_xla_v2_enabled = False
        self._sample_every = (
            getattr(self, "sample_generations_freq", 0) if self.args.num_sample_generations else 0
        )
        if self._sample_every:
            self.sample_generations_freq = 1  # ask every update; generate_completions decides
        self._expose_policy_through_ddp()

    def _expose_policy_through_ddp(self) -> None:
        from torch.nn.parallel import DistributedDataParallel

        if isinstance(self.model, DistributedDataParallel) and not hasattr(self.model, "policy"):
            object.__setattr__(self.model, "policy", self.model.module.policy)  # not a registered submodule

    # ------------------------------------------------------------------------------------------- the prompts
    @property
    def prompts_in_run(self) -> int:
        return self.train_dataset_len

    @property
    def prompt_loader(self):
        return self.dataloader

    def wrap_prompt_loader(self, wrap) -> None:
        """Replace TRL's prompt dataloader by `wrap(loader)` (something that iterates the same batches)."""
        self.dataloader = wrap(self.dataloader)

    # ------------------------------------------------------------------------------------------- saving
    def save_checkpoint_extras(self, ckpt: Path) -> None:
        """Hook: files of the stage's own to write into checkpoint `ckpt`, before transformers' (every rank)."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        wrapped = self.model
        if not self.is_deepspeed_enabled:
            self.model = self.accelerator.unwrap_model(self.model)
        try:
            super().save_model(output_dir, _internal_call)
        finally:
            self.model = wrapped

    def _save_checkpoint(self, model, trial):
        ckpt = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        self.save_checkpoint_extras(ckpt)
        Trainer._save_checkpoint(self, model, trial)

    # ------------------------------------------------------------------------------------------- the loop
    @property
    def total_updates(self) -> int:
        return self.args.num_total_batches

    def run_updates(self, count: int):
        """TRL's unmodified training loop, for `count` updates instead of the whole run."""
        total = self.args.num_total_batches
        self.args.num_total_batches = count
        try:
            return PPOTrainer.train(self)
        finally:
            self.args.num_total_batches = total

    def restore_rng_state(self, ckpt: Path) -> None:
        """The python/numpy/torch RNG states a checkpoint saved (transformers' loader)."""
        self._load_rng_state(str(ckpt))

    def samples_after(self, update: int) -> bool:
        """Whether an uninterrupted run samples a generation table right after `update`."""
        return bool(self._sample_every) and (update - 1) % self._sample_every == 0

    def sample_generations(self) -> None:
        """Sample one generation table now (drawing from the RNG, as the uninterrupted run does)."""
        PPOTrainer.generate_completions(self, sampling=True)

    def generate_completions(self, sampling: bool = False):
        if sampling and self._sample_every and not self.samples_after(self.state.global_step):
            return None
        return super().generate_completions(sampling=sampling)


def share_parameters(module: nn.Module, source: nn.Module) -> None:
    """Point every weight of `module` at the same-named tensor of `source` (same architecture): one copy in
    memory. Only for weights that nothing writes while they are shared."""
    shared = dict(source.named_parameters(remove_duplicate=False))
    for module_name, sub in module.named_modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            tensor = shared[f"{module_name}.{name}" if module_name else name]
            if tensor.shape != param.shape or tensor.dtype != param.dtype:
                raise RuntimeError(f"shared weights differ at {module_name}.{name}")
            sub._parameters[name] = tensor


def unshare_parameters(module: nn.Module) -> None:
    """Give `module` its own copy of every weight (undoes share_parameters before anything writes them); weights
    tied inside `module` stay tied."""
    copies: dict[int, nn.Parameter] = {}
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            if id(param) not in copies:
                copies[id(param)] = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
            sub._parameters[name] = copies[id(param)]


def let_accelerate_run_deepspeed_on_cpu() -> None:
    """DeepSpeed runs on CPU (its CPU accelerator, gloo), but accelerate 1.x finds no process-group backend for a
    non-CPU launch without a GPU and falls back to one process: every rank then trains alone and DeepSpeed's batch
    check fails. Give accelerate the gloo backend in exactly that case (launched, DeepSpeed, no GPU); nothing
    changes on a GPU machine. For testing the DeepSpeed path on CPU; real runs use GPUs."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    from rlhf.distributed import deepspeed_launch

    original = PartialState._prepare_backend
    if getattr(original, "_rlhf_cpu_deepspeed", False):
        return

    def prepare_backend(self, cpu=False, sagemaker_dp=False, backend=None):
        backend_, dist_type = original(self, cpu, sagemaker_dp, backend)
        if backend_ is None and dist_type == DistributedType.NO and not cpu and deepspeed_launch():
            backend_ = "gloo"
        return backend_, dist_type

    prepare_backend._rlhf_cpu_deepspeed = True
    PartialState._prepare_backend = prepare_backend

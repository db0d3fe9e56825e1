"""TRL 1.12's PPOTrainer, made resumable (on the hooks of rlhf/trl_compat.py, where every override of TRL's
internals lives): checkpoints that hold everything a run needs to continue, and a `train`
that continues from one so the run ends exactly where an uninterrupted run with the same seed would.

TRL's own `PPOTrainer.train()` always starts at update 1, and its checkpoints (transformers' `_save_checkpoint`)
hold the policy, optimizer, scheduler, RNG and trainer state but not the value model. This subclass adds, in each
`checkpoint-N` dir, before transformers writes `trainer_state.json` last (a dir without it is unfinished):

- `value_model.safetensors`: the value model, exactly as trained (LoRA wrapping included);
- `ppo_loop_state.safetensors`: where the prompt stream stands, i.e. the RNG state the current pass over the
  prompts started from and how many of its batches were used, so a resumed run redraws that pass's shuffle and
  skips them; under a launcher one file per process, with the sampler generator accelerate keeps in sync across
  ranks; and the settings that shape the run, so a checkpoint made with others is refused.

The policy stays a plain HF dir (`model.safetensors` or a LoRA adapter), so `rlhf compare` and
`AutoModelForCausalLM.from_pretrained(checkpoint-N)` keep working. Resuming restores the policy, the value model,
the optimizer and scheduler (`torch.load(weights_only=True)`), the python/numpy/torch RNG (transformers' loader),
the update counter, episode count and log history, then runs the remaining updates of TRL's unmodified loop. On
CPU the result is bit-identical to an uninterrupted run (tests/test_resume.py, bench/faults.py), single process
and DDP; resuming under DeepSpeed is refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import safetensors.torch
import torch
from transformers import TrainerCallback

from rlhf.errors import UserError
from rlhf.resume_settings import check_settings as check_recorded
from rlhf.resume_settings import settings_of
from rlhf.training import TRAINER_STATE
from rlhf.trl_compat import PPOTrainerCompat

VALUE_WEIGHTS = "value_model.safetensors"
LOOP_STATE = "ppo_loop_state"


def loop_state_file(process_index: int, world_size: int) -> str:
    return f"{LOOP_STATE}.safetensors" if world_size <= 1 else f"{LOOP_STATE}_{process_index}.safetensors"


def resume_files(world_size: int) -> tuple[str, ...]:
    """What a PPO checkpoint must hold to be resumed by `world_size` processes, besides trainer_state.json. Rank 0
    writes that last, but other ranks write their RNG file without waiting for it, so those are checked too."""
    ranks = range(max(world_size, 1))
    rng = ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in ranks]
    loops = [loop_state_file(i, world_size) for i in ranks]
    return (VALUE_WEIGHTS, "optimizer.pt", "scheduler.pt", *rng, *loops)


def _rng_of(loader) -> dict[str, torch.Tensor]:
    """The RNG a pass over `loader` draws its shuffle from: torch's global generator, and under a launcher the
    sampler generator accelerate keeps in sync across processes."""
    state = {"torch": torch.get_rng_state()}
    gen = getattr(loader, "synchronized_generator", None)
    if gen is not None:
        state["generator"] = gen.get_state()
    return state


def _set_rng_of(loader, state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["torch"])
    gen = getattr(loader, "synchronized_generator", None)
    if gen is not None and "generator" in state:
        gen.set_state(state["generator"])


class PassRecorder:
    """Stands in for TRL's prompt dataloader. Passes its batches through unchanged, remembering the RNG state each
    pass started from and how many batches of it were used; `replay` makes the next pass redraw a saved pass's
    shuffle, skip the batches already used, and continue from the current RNG state."""

    def __init__(self, loader):
        self.loader = loader
        self.pass_start = _rng_of(loader)
        self.pass_iteration = getattr(loader, "iteration", 0)
        self.used = 0
        self._replay: tuple[dict, int, int] | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # everything else (batch_size, dataset, ...) is the real loader's
        return getattr(self.__dict__["loader"], name)

    def replay(self, pass_start: dict[str, torch.Tensor], now: dict, iteration: int, used: int) -> None:
        """Continue as the saved run would: `now` is the sampler generator's state when the checkpoint was saved
        (torch's global generator comes back with transformers' RNG file)."""
        gen = getattr(self.loader, "synchronized_generator", None)
        if gen is not None and "generator" in now:
            gen.set_state(now["generator"])
        if used >= len(self.loader):  # that pass was finished: the next one starts fresh, as it would have
            self._set_iteration(iteration + 1)
        elif used > 0:
            self._replay = (pass_start, iteration, used)
        else:
            self._set_iteration(iteration)

    def _set_iteration(self, iteration: int) -> None:
        if hasattr(self.loader, "iteration"):
            self.loader.iteration = iteration

    def __iter__(self):
        replay, self._replay = self._replay, None
        if replay is None:
            self.pass_start, self.pass_iteration, self.used = (
                _rng_of(self.loader),
                getattr(self.loader, "iteration", 0),
                0,
            )
            for batch in self.loader:
                self.used += 1
                yield batch
            return
        pass_start, iteration, skip = replay
        now = _rng_of(self.loader)
        _set_rng_of(self.loader, pass_start)
        self._set_iteration(iteration)
        batches = iter(self.loader)
        for _ in range(skip):  # the first batch draws the pass's shuffle, from the restored state
            next(batches)
        _set_rng_of(self.loader, now)
        self.pass_start, self.pass_iteration, self.used = pass_start, iteration, skip
        for batch in batches:
            self.used += 1
            yield batch


# The settings that shape a PPO run's data stream and updates: a checkpoint only continues a run that has the same.
# (lr_scheduler_type, reward_judge and judge_credit joined later: a checkpoint that does not record one is not
# checked on it.)
SETTINGS = ("seed", "total_episodes", "per_device_train_batch_size", "gradient_accumulation_steps",
            "num_mini_batches", "num_ppo_epochs", "learning_rate", "lr_scheduler_type", "use_lora",
            "value_warmup", "reward_judge", "judge_credit")  # fmt: skip

# A finished run's checkpoint may be continued with a larger total_episodes under a length-free schedule
# (rlhf.resume_settings; e.g. `--resume old/checkpoint-20 --total_episodes 1280 --output_dir new`): exactly so
# without sample tables (num_sample_generations 0), which TRL places at fractions of the run and which draw from the
# RNG. A checkpoint from before lr_scheduler_type was recorded is taken at this run's word.
LENGTH_KEYS = ("total_episodes",)


def run_settings(args, n_prompts: int, n_processes: int) -> dict:
    return settings_of(args, SETTINGS, train_prompts=n_prompts, processes=n_processes)


def check_settings(ckpt: Path, meta: dict[str, str], now: dict) -> None:
    check_recorded(ckpt, json.loads(meta.get("settings", "{}")), now, LENGTH_KEYS)


def check_resumable(resume_from: str | None, args, n_prompts: int, n_processes: int) -> None:
    """Refuse, before any model loads, a checkpoint made with other settings (one error line, no loading bars)."""
    if resume_from is None:
        return
    path = Path(resume_from) / loop_state_file(0, n_processes)
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    check_settings(Path(resume_from), meta, run_settings(args, n_prompts, n_processes))


class _RestoreProgress(TrainerCallback):
    """TRL's train() zeroes the update counter and episode right before on_train_begin; put the checkpoint's back
    (first in the callback list, so the progress bar already sees them)."""

    def __init__(self, saved: dict, max_steps: int):
        self.saved, self.max_steps = saved, max_steps

    def on_train_begin(self, args, state, control, **kwargs):
        state.global_step = self.saved["global_step"]
        state.episode = self.saved.get("episode", 0)
        state.log_history = list(self.saved.get("log_history", []))
        state.total_flos = self.saved.get("total_flos", 0)
        state.max_steps = self.max_steps
        # TRL resolved steps given as fractions (0.1 = every tenth of the run) against the shortened run.
        for name in ("logging_steps", "eval_steps", "save_steps"):
            value = getattr(args, name)
            if value is not None and value < 1:
                setattr(state, name, math.ceil(self.max_steps * value))


def _load_policy(policy, ckpt: Path) -> None:
    """The checkpoint's policy weights into `policy`, strictly: a LoRA adapter, or the full (maybe sharded) model
    with tied weights the only keys allowed to be absent."""
    adapter = ckpt / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(policy, safetensors.torch.load_file(adapter, device="cpu"))
        if result.unexpected_keys:
            raise UserError(f"adapter does not fit the policy ({result.unexpected_keys[:3]})", adapter)
        return
    index = ckpt / "model.safetensors.index.json"
    files = (
        sorted({ckpt / f for f in json.loads(index.read_text())["weight_map"].values()})
        if index.is_file()
        else [ckpt / "model.safetensors"]
    )
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise UserError("missing policy weights in PPO checkpoint", f)
        state.update(safetensors.torch.load_file(f, device="cpu"))
    result = policy.load_state_dict(state, strict=False)
    loaded = {t.data_ptr() for name, t in policy.state_dict().items() if name in state}
    untied = [k for k in result.missing_keys if policy.state_dict()[k].data_ptr() not in loaded]
    if untied or result.unexpected_keys:
        raise UserError(
            f"policy weights do not fit the model (missing {untied[:3]}, unexpected {result.unexpected_keys[:3]})",
            ckpt,
        )


class ResumablePPOTrainer(PPOTrainerCompat):
    """PPOTrainer whose checkpoints resume: `train(resume_from_checkpoint=dir)` continues a killed run."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wrap_prompt_loader(PassRecorder)

    # ------------------------------------------------------------------------------------------------ saving
    def save_checkpoint_extras(self, ckpt: Path) -> None:
        rec = self.prompt_loader
        tensors = {f"pass_start.{k}": v for k, v in rec.pass_start.items()}
        tensors.update({f"now.{k}": v for k, v in _rng_of(rec.loader).items() if k != "torch"})
        meta = {
            "used": str(rec.used),
            "iteration": str(rec.pass_iteration),
            "settings": json.dumps(
                run_settings(self.args, self.prompts_in_run, self.accelerator.num_processes)
            ),
        }
        name = loop_state_file(self.accelerator.process_index, self.accelerator.num_processes)
        safetensors.torch.save_file(tensors, ckpt / name, metadata=meta)
        if self.args.should_save:
            value_model = self.accelerator.unwrap_model(self.model).value_model
            safetensors.torch.save_model(value_model, str(ckpt / VALUE_WEIGHTS))

    # ------------------------------------------------------------------------------------------------ resuming
    def train(self, resume_from_checkpoint: str | None = None):
        if not resume_from_checkpoint:
            return super().train()
        if self.is_deepspeed_enabled:
            raise UserError(
                "resuming PPO under DeepSpeed is not supported; pass --resume never to start over",
                resume_from_checkpoint,
                "key 'resume'",
            )
        ckpt = Path(resume_from_checkpoint)
        saved = self._load_checkpoint(ckpt)
        total, resumed_at = self.total_updates, saved["global_step"]
        restore = _RestoreProgress(saved, total)
        self.callback_handler.callbacks.insert(0, restore)
        try:
            if self.samples_after(resumed_at):
                # The uninterrupted run sampled a table right after saving this checkpoint, drawing from the RNG:
                # draw the same, or every later sample differs.
                self.sample_generations()
            return self.run_updates(total - resumed_at)
        finally:
            self.callback_handler.callbacks.remove(restore)

    def _load_checkpoint(self, ckpt: Path) -> dict:
        saved = json.loads((ckpt / TRAINER_STATE).read_text())
        name = loop_state_file(self.accelerator.process_index, self.accelerator.num_processes)
        loop_path = ckpt / name
        for f in (loop_path, ckpt / VALUE_WEIGHTS, ckpt / "optimizer.pt", ckpt / "scheduler.pt"):
            if not f.is_file():
                raise UserError("not a resumable PPO checkpoint (written by another version?)", f)
        with safetensors.safe_open(str(loop_path), framework="pt") as f:
            meta = f.metadata()
            saved_rng = {k: f.get_tensor(k) for k in f.keys()}
        pass_start = {k.split(".", 1)[1]: v for k, v in saved_rng.items() if k.startswith("pass_start.")}
        now = {k.split(".", 1)[1]: v for k, v in saved_rng.items() if k.startswith("now.")}
        check_settings(
            ckpt, meta, run_settings(self.args, self.prompts_in_run, self.accelerator.num_processes)
        )
        unwrapped = self.accelerator.unwrap_model(self.model)
        _load_policy(unwrapped.policy, ckpt)
        safetensors.torch.load_model(unwrapped.value_model, str(ckpt / VALUE_WEIGHTS), strict=True)
        # transformers' own files (optimizer.pt, scheduler.pt): tensors and plain containers, so weights_only
        # loading reads them and refuses anything that would run code. Read onto the CPU (a DDP run tags its
        # storages "cpu:0", which torch cannot map back by itself); the optimizer moves its state to its params.
        self.optimizer.load_state_dict(
            torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
        )
        self.lr_scheduler.load_state_dict(
            torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=True)
        )
        # Last: nothing between here and TRL's loop may draw a random number.
        self.restore_rng_state(ckpt)
        self.prompt_loader.replay(pass_start, now, int(meta["iteration"]), int(meta["used"]))
        return saved

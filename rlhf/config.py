"""Stage configs: a dataclass per stage, loaded from YAML with command-line overrides.

Parsing is TRL's `TrlParser` (YAML via `--config`, then CLI flags win). What we add is the error contract:
an unknown key, a value of the wrong type or a missing file gives one line naming the file and the key.

    cfg, = parse_config([SFTStageConfig], ["--config", "configs/demo/sft.yaml", "--learning_rate", "1e-4"])
    cfg = build_config(SFTStageConfig, {"config": "configs/demo/sft.yaml", "learning_rate": 1e-4})  # from Python
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from rlhf.argparse_utils import usage_error
from rlhf.data import MAX_DEPTH, check_value
from rlhf.distributed import configure_launch
from rlhf.errors import UserError
from rlhf.judge_rewards import CREDITS
from rlhf.label_aggregation import AGGREGATIONS

# Keys that take one name or several (a YAML list, a comma-separated string, or several words after the flag).
NAME_LISTS = ("report_to", "lora_target_modules")


class _Parser:
    """TrlParser whose argparse errors become UserError instead of usage text + SystemExit."""

    def __new__(cls, dataclass_types, prog: str | None):
        from trl import TrlParser

        class Parser(TrlParser):
            def error(self, message):  # argparse calls this for unknown / malformed CLI args
                raise usage_error(message, self.prog)

        parser = Parser(dataclass_types, prog=prog)
        # HfArgumentParser gives our `str | list[str]` fields nargs="+" (a flag takes several names) but drops
        # their plain default (it only copies a default_factory's): put the dataclass default back.
        defaults = {f.name: f.default for t in dataclass_types for f in dataclasses.fields(t)}
        for action in parser._actions:
            if action.dest in NAME_LISTS and action.default is None and defaults.get(action.dest) is not None:
                action.default = defaults[action.dest]
        return parser


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise UserError(f"duplicate key {key!r}", self.name, f"line {key_node.start_mark.line + 1}")
            if isinstance(key, (str, int, float, bool)):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; anything else, and what rlhf.data's readers refuse in JSON (nesting
    deeper than MAX_DEPTH, duplicate keys, lone surrogates, NaN / infinite numbers), is one UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
        loader = _StrictLoader(text)
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except UnicodeDecodeError:
        raise UserError("config is not valid UTF-8", path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise UserError(f"malformed YAML ({getattr(e, 'problem', None) or e})", path, where) from None
    except RecursionError:
        raise UserError(f"nested more than {MAX_DEPTH} levels deep", path) from None
    except ValueError as e:  # a number YAML cannot convert (e.g. an integer over 4300 digits)
        raise UserError(f"unreadable value ({str(e).splitlines()[0][:80]})", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"expected a YAML mapping of config keys, got {type(data).__name__}", path)
    check_value(data, path, None)
    return data


# Fields that transformers reads as "a JSON file path or a mapping": a number there would be taken for a file
# descriptor (`open(0)` reads stdin), so only a string or a mapping passes.
_FILE_OR_MAPPING = ("accelerator_config", "deepspeed", "fsdp_config")


def _check_value(action: argparse.Action, key: str, value: Any, path: Path, annotation: str) -> None:
    """Check a YAML value the way argparse would check the same value given as a flag (YAML values reach the
    dataclass unconverted, so a number or a list where a string belongs would otherwise crash deep inside
    transformers). `annotation`: the field's type as text, e.g. 'str | None'."""
    where = f"key '{key}'"
    if value is None:
        return
    if key in _FILE_OR_MAPPING and not isinstance(value, (str, dict)):
        raise UserError(f"expected a JSON file path or a mapping, got {value!r}", path, where)
    if isinstance(value, dict):
        if "dict" in annotation or key in _FILE_OR_MAPPING:
            return
        raise UserError("expected a single value, got a mapping", path, where)
    if isinstance(value, list):
        if action.nargs not in ("+", "*") and "list" not in annotation:
            raise UserError("expected a single value, got a list", path, where)
        for item in value:  # each element as argparse would check one of several flag values
            if item is None or isinstance(item, (list, dict)):
                raise UserError(f"expected a list of single values, got {value!r}", path, where)
            _check_scalar(action, item, path, where, annotation)
        return
    _check_scalar(action, value, path, where, annotation)


def _check_scalar(action: argparse.Action, value: Any, path: Path, where: str, annotation: str) -> None:
    if action.choices is not None and str(value) not in map(str, action.choices):
        raise UserError(f"expected one of {list(action.choices)}, got {value!r}", path, where)
    conv = action.type
    if getattr(conv, "__name__", "") == "string_to_bool":
        if not isinstance(value, bool):
            raise UserError(f"expected true or false, got {value!r}", path, where)
        return
    if isinstance(value, bool) and "bool" not in annotation:
        expected = "a number" if conv in (int, float) else "a string" if conv is str else "a value"
        raise UserError(f"expected {expected}, got {value!r}", path, where)
    if conv is str and not isinstance(value, str) and not any(t in annotation for t in ("int", "float")):
        raise UserError(f"expected a string, got {value!r}", path, where)
    if conv is None:
        return
    try:
        conv(value if isinstance(value, str) else str(value))
    except (TypeError, ValueError):
        expected = getattr(conv, "__name__", "a valid value")
        raise UserError(f"expected {expected}, got {value!r}", path, where) from None


def parse_config(
    dataclass_types: list[type],
    argv: list[str] | None,
    prog: str | None = None,
    *,
    values: Mapping[str, Any] | None = None,
    values_source: str = "arguments",
) -> tuple:
    """Parse `--config FILE` (YAML) plus CLI overrides into instances of `dataclass_types`. `values`: keys set from
    Python, checked like YAML keys (errors name `values_source`); they win over the YAML file."""
    argv = list(argv or [])
    parser = _Parser(dataclass_types, prog)
    config_path = None
    config: dict[str, Any] = {}
    source: dict[str, Any] = {}  # where each key of `config` came from, for error messages
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise UserError("--config needs a YAML file path", "command line")
        config_path = Path(argv[i + 1])
        del argv[i : i + 2]
        config = load_yaml_mapping(config_path)
        env = config.pop("env", {})
        if not isinstance(env, dict):
            raise UserError("expected a mapping of environment variables", config_path, "key 'env'")
        for k, v in env.items():
            os.environ[str(k)] = str(v)
        source = dict.fromkeys(config, config_path)
    for k, v in (values or {}).items():
        config[k], source[k] = v, values_source
    if config:
        actions = {a.dest: a for a in parser._actions}
        unknown = [k for k in config if k not in actions]
        if unknown:
            raise UserError(
                renamed_hint(unknown[0], actions)
                or f"unknown config key (expected a field of {', '.join(t.__name__ for t in dataclass_types)})",
                source[unknown[0]],
                f"key '{unknown[0]}'",
            )
        annotations = {f.name: str(f.type) for t in dataclass_types for f in dataclasses.fields(t)}
        for k, v in config.items():
            _check_value(actions[k], k, v, source[k], annotations.get(k, ""))
        parser.set_defaults_with_config(**config)
    # An unknown flag is a command-line mistake, not the config file's: name the flag (HfArgumentParser would
    # raise a ValueError that the handler below would blame on the YAML file).
    namespace, unknown_args = parser.parse_known_args(args=argv)
    if unknown_args:
        flag = next((a for a in unknown_args if a.startswith("-")), unknown_args[0])
        what = "unknown option" if flag.startswith("-") else "unexpected argument"
        hint = renamed_hint(
            flag.split("=", 1)[0].lstrip("-"), {a.dest: a for a in parser._actions}, flag=True
        )
        raise UserError(hint or f"{what} (see `{parser.prog} --help`)", "command line", flag.split("=", 1)[0])
    settle_aliases(parser, vars(namespace), dataclass_types, argv, config, source)
    check_domains(
        vars(namespace), dataclass_types, argv, config_path, config, source
    )  # before anything is built
    # Under torchrun / accelerate launch: pick the CPU backend when there is no GPU. TrainingArguments sets up its
    # devices while it is being built, so this comes first.
    configure_launch(
        deepspeed=bool(config.get("deepspeed")) or any(a.startswith("--deepspeed") for a in argv)
    )
    try:
        out = parser.parse_args_into_dataclasses(args=argv)
    except UserError:
        raise
    except (ValueError, TypeError, OSError, ImportError, NotImplementedError) as e:
        # Dataclass __post_init__ validation (e.g. TrainingArguments) lands here, and the files it opens (an
        # accelerator / FSDP / DeepSpeed json). Name the key or flag whose value the message is about: an enum
        # field says "<value> is not a valid <Type>", a file error carries the file name.
        msg = (getattr(e, "strerror", None) and f"{e.strerror}: {e.filename}") or str(e).splitlines()[0]
        given = [("command line", flag, v) for flag, v in zip(argv, argv[1:]) if flag.startswith("--")]
        given += [(source[k], f"key '{k}'", v) for k, v in config.items()]
        for where, key, value in given:
            if f"{value} is not a valid" in msg or (isinstance(e, OSError) and str(value) == str(e.filename)):
                raise UserError(f"invalid value: {msg}", where, key) from None
        raise UserError(f"invalid config: {msg}", config_path or "command line") from None
    for obj in out:
        if config_path is not None and hasattr(obj, "config_path"):
            obj.config_path = str(config_path)
    return tuple(out)


def build_config(config_class: type, values: Mapping[str, Any], source: str = "arguments"):
    """A stage config from Python, with the checks the YAML/CLI path makes: `values["config"]` (optional) names a
    YAML file, every other key is a field of `config_class` and wins over that file.

        cfg = build_config(SFTStageConfig, {"config": "configs/demo/sft.yaml", "output_dir": "runs/x"})
    """
    values = dict(values)
    path = values.pop("config", None)
    (cfg,) = parse_config(
        [config_class],
        ["--config", str(path)] if path is not None else [],
        values=values,
        values_source=source,
    )
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-able dict of a config (TrainingArguments has its own to_dict that handles enums)."""
    if hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    else:
        d = dataclasses.asdict(cfg)
    return {
        k: v for k, v in d.items() if not k.startswith("_") and k not in ("hub_token", "push_to_hub_token")
    }


@dataclasses.dataclass
class StageOptions:
    """Options every stage shares (mixed into each stage's config dataclass)."""

    overwrite: bool = dataclasses.field(
        default=False, metadata={"help": "Replace a finished stage in output_dir (refused otherwise)."}
    )
    resume: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "auto: continue from the newest complete checkpoint in output_dir if there is one; "
            "never: start fresh; or the path of a checkpoint-N dir."
        },
    )
    keep_checkpoints: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "Keep the intermediate checkpoint-N dirs after a finished run: those save_total_limit left "
            "(set it to null to keep every one)."
        },
    )
    quiet: bool = dataclasses.field(default=False, metadata={"help": "Silence progress bars."})
    trust_remote_code: bool = dataclasses.field(
        default=False,
        metadata={"help": "Allow model code from the hub/model dir to run. Off unless you set it."},
    )
    config_path: str | None = dataclasses.field(
        default=None, metadata={"help": "Set automatically to the YAML file the config came from."}
    )

    # {other name: field}: TRL's names for the stage's own keys (see resolve_aliases, settle_aliases)
    KEY_ALIASES: ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        resolve_aliases(self)
        for key in NAME_LISTS:
            if hasattr(self, key):
                setattr(self, key, _as_names(getattr(self, key), key))
        # parse_config checked this already, naming the flag or file; a config built in Python is checked here
        if getattr(self, "report_to", None) is not None and (problem := tracker_problem(self.report_to)):
            raise UserError(problem, self.config_path or "config", "key 'report_to'")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:  # TrainingArguments and TRL's configs validate themselves
            parent()


# Key blocks that several stages mix in, between StageOptions and the trainer's config class. A stage whose
# default or help differs redeclares just that field (same type); it keeps the block's place in the field order.
@dataclasses.dataclass
class DatasetOptions:
    """TRL's keys for a hub dataset or dataset dir as a stage's data (its scripts' ScriptArguments). Stages give
    dataset_name (another name for their data key, see KEY_ALIASES) and dataset_test_split their own help."""

    dataset_name: str | None = dataclasses.field(
        default=None, metadata={"help": "TRL's name for the stage's data path (a path or a hub dataset id)."}
    )
    dataset_config: str | None = dataclasses.field(
        default=None, metadata={"help": "Config of a hub dataset (datasets.load_dataset's name)."}
    )
    dataset_train_split: str = dataclasses.field(
        default="train", metadata={"help": "Split of a hub dataset or dataset dir to train on."}
    )
    dataset_test_split: str | None = dataclasses.field(
        default=None, metadata={"help": "Split of the same dataset to hold out for evaluation."}
    )


@dataclasses.dataclass
class LoraOptions:
    """LoRA (peft) keys; r, alpha and dropout default as in TRL's ModelConfig. rlhf.training.lora_config_for
    turns them into the stage's peft config."""

    use_lora: bool = dataclasses.field(
        default=False, metadata={"help": "Train a LoRA adapter (peft) instead of all weights."}
    )
    use_peft: bool = dataclasses.field(default=False, metadata={"help": "TRL's name for use_lora."})
    lora_r: int = dataclasses.field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = dataclasses.field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = dataclasses.field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: str | list[str] = dataclasses.field(
        default="all-linear",
        metadata={"help": "all-linear, or module names (a YAML list or a comma-separated string)."},
    )


def _split_names(value: Any) -> list | Any:
    """A comma-separated string, or a list of such strings, as one list of names ('a, b' -> ['a', 'b']). Anything
    else (None, a number) is returned as it is, for the domain check to refuse."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        return value
    return [name.strip() for x in items for name in x.split(",")]


def _as_names(value: Any, key: str) -> Any:
    """report_to / lora_target_modules as transformers and peft take them: one word ("none", "all-linear") as a
    string, several names as a list."""
    names = _split_names(value)
    if not isinstance(names, list):
        return value
    single = {"report_to": ("none", "all"), "lora_target_modules": ("all-linear",)}[key]
    return names[0] if len(names) == 1 and names[0] in single else names


# --- Other names for keys --------------------------------------------------------------------------------------
# TRL's scripts call some settings by other names (`use_peft` for use_lora, `dataset_name` for the stage's data
# path, PPO's `sft_model_path` / `reward_model_path`). Each stage config lists them in KEY_ALIASES; both names are
# fields, so either may be given, and after construction both hold the value (the manifest and the model card see
# `dataset_name` as TRL writes it). Given both, the later source wins as for any key (YAML < Python values < flags);
# both in one source with different values is refused. Keys that transformers or TRL renamed or removed are refused
# with the name to use instead.

RENAMED = {
    "evaluation_strategy": "eval_strategy",
    "max_seq_length": "max_length",
    "no_cuda": "use_cpu",
    "per_gpu_train_batch_size": "per_device_train_batch_size",
    "per_gpu_eval_batch_size": "per_device_eval_batch_size",
    "push_to_hub_model_id": "hub_model_id",
    "overwrite_output_dir": "overwrite",
}


def renamed_hint(key: str, known: Mapping[str, Any], *, flag: bool = False) -> str | None:
    """The error text for an old key name whose new name this config has, else None."""
    new = RENAMED.get(key)
    if new is None or new not in known:
        return None
    if flag:
        return f"unknown option: renamed, use --{new} (transformers / TRL's current name)"
    return f"unknown config key: renamed, use '{new}' (transformers / TRL's current name)"


def _field_default(cfg: Any, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cfg) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def resolve_aliases(cfg: Any) -> None:
    """Give each KEY_ALIASES field and its target one value: the alias's when it was set (the target left at its
    default, or equal), else the target's. Both set to different values: one UserError naming the alias."""
    for alias, target in getattr(cfg, "KEY_ALIASES", {}).items():
        given, own = getattr(cfg, alias), getattr(cfg, target)
        if given == _field_default(cfg, alias):  # the alias was not set: mirror the target when it was
            if own != _field_default(cfg, target):
                setattr(cfg, alias, own)
            continue
        if own != _field_default(cfg, target) and own != given:
            raise UserError(
                f"'{alias}' is TRL's name for '{target}' and they differ ({given!r} vs {own!r}); set one",
                getattr(cfg, "config_path", None) or "config",
                f"key '{alias}'",
            )
        setattr(cfg, target, given)


def settle_aliases(
    parser, values: dict[str, Any], dataclass_types, argv: list[str], config: dict, source: dict[str, Any]
) -> None:
    """Both names of one setting given: the later source wins as for any key (YAML < Python values < flags), so a
    recipe's data_path gives way to `--dataset_name`. Given by the same source with different values: refused,
    naming the alias. The winner's value becomes both names' default for the final parse."""

    def level(key: str) -> int:
        if any(a == f"--{key}" or a.startswith(f"--{key}=") for a in argv):
            return 2
        if key in config:
            return 0 if isinstance(source[key], Path) else 1  # the YAML file, or a Python caller's values
        return -1

    for t in dataclass_types:
        for alias, target in getattr(t, "KEY_ALIASES", {}).items():
            a, b = level(alias), level(target)
            if a < 0 or b < 0 or values.get(alias) == values.get(target):
                continue  # one name given (resolve_aliases copies it), or both alike
            if a == b:
                where = "command line" if a == 2 else source[alias]
                raise UserError(
                    f"'{alias}' is TRL's name for '{target}' and they differ "
                    f"({values.get(alias)!r} vs {values.get(target)!r}); set one",
                    where,
                    f"--{alias}" if a == 2 else f"key '{alias}'",
                )
            winner = values.get(alias) if a > b else values.get(target)
            parser.set_defaults(**{alias: winner, target: winner})


# --- Value domains --------------------------------------------------------------------------------------------
# argparse and the YAML checks above make sure a value has the right type; these make sure it is in range, before
# anything is created (a negative or NaN learning rate, a batch size of 0 or a dropout of 2 would otherwise fail deep
# inside torch or the Trainer, after the output dir exists, or train silently wrong). One table for every stage:
# the TrainingArguments / TRL fields users set and the kit's own. A key absent from a config class is skipped.


@dataclasses.dataclass(frozen=True)
class Domain:
    expect: str  # completes "expected ...", e.g. "a number > 0"
    ok: Callable[[Any], bool]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return _number(v) and float(v).is_integer()


def greater_than(low: float) -> Domain:
    return Domain(f"a finite number > {low:g}", lambda v: _number(v) and v > low)


def at_least(low: float) -> Domain:
    return Domain(f"a finite number >= {low:g}", lambda v: _number(v) and v >= low)


def integer_at_least(low: int) -> Domain:
    return Domain(f"an integer >= {low}", lambda v: _whole(v) and v >= low)


def fraction(*, below_one: bool = False) -> Domain:
    hi = ")" if below_one else "]"
    return Domain(
        f"a number in [0, 1{hi}", lambda v: _number(v) and 0 <= v and (v < 1 if below_one else v <= 1)
    )


def above_zero_fraction() -> Domain:
    return Domain("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1)


def share_or_count(*, zero: bool) -> Domain:
    """transformers' step settings: a float below 1 is a share of all steps, a whole number a step count."""
    low = "[0, 1)" if zero else "(0, 1)"
    return Domain(
        f"a share in {low} or a whole number of steps >= 1",
        lambda v: _number(v) and ((0 <= v < 1 if zero else 0 < v < 1) or (v >= 1 and float(v).is_integer())),
    )


def one_of(*values: Any) -> Domain:
    return Domain(f"one of {list(values)}", lambda v: v in values)


def _output_dir_value(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip()) and not (Path(v).exists() and not Path(v).is_dir())


def _target_modules_ok(v: Any) -> bool:
    """all-linear alone, or one or more module names (peft matches each against the end of a module's path)."""
    names = _split_names(v)
    return (
        isinstance(names, list)
        and bool(names)
        and all(n and n.replace("_", "").replace(".", "").replace("-", "").isalnum() for n in names)
        and ("all-linear" not in names or len(names) == 1)
    )


# `resume` is checked where it is resolved (rlhf.training.resolve_resume: "not a complete trainer checkpoint").
DOMAINS: dict[str, Domain] = {
    # TrainingArguments
    "learning_rate": greater_than(0),
    "num_train_epochs": greater_than(0),
    "max_steps": Domain(
        "-1 (train num_train_epochs) or an integer >= 1", lambda v: _whole(v) and (v == -1 or v >= 1)
    ),
    "per_device_train_batch_size": integer_at_least(1),
    "per_device_eval_batch_size": integer_at_least(1),
    "gradient_accumulation_steps": integer_at_least(1),
    "eval_accumulation_steps": integer_at_least(1),
    "warmup_steps": share_or_count(zero=True),
    "weight_decay": at_least(0),
    "adam_beta1": fraction(below_one=True),
    "adam_beta2": fraction(below_one=True),
    "adam_epsilon": greater_than(0),
    "max_grad_norm": at_least(0),
    "label_smoothing_factor": fraction(below_one=True),
    "logging_steps": share_or_count(zero=False),
    "save_steps": share_or_count(zero=False),
    "eval_steps": share_or_count(zero=False),
    "eval_delay": at_least(0),
    "save_total_limit": integer_at_least(1),
    "seed": Domain("an integer in [0, 2**32 - 1]", lambda v: _whole(v) and 0 <= v < 2**32),
    "data_seed": Domain("an integer in [0, 2**32 - 1]", lambda v: _whole(v) and 0 <= v < 2**32),
    "dataloader_num_workers": integer_at_least(0),
    "dataloader_prefetch_factor": integer_at_least(1),
    "torch_empty_cache_steps": integer_at_least(1),
    "ddp_timeout": integer_at_least(1),
    "neftune_noise_alpha": greater_than(0),
    # the kit's stage fields
    "output_dir": Domain("a directory path (not an existing file)", _output_dir_value),
    "max_length": integer_at_least(1),
    "eval_fraction": fraction(below_one=True),
    "max_pairs": integer_at_least(1),
    "label_aggregation": one_of(*AGGREGATIONS),
    "center_rewards_coefficient": at_least(0),
    "lora_r": integer_at_least(1),
    "lora_alpha": greater_than(0),
    "lora_dropout": fraction(below_one=True),
    "lora_target_modules": Domain(
        "all-linear, or module names as a YAML list or a comma-separated string (e.g. q_proj,v_proj)",
        _target_modules_ok,
    ),
    "demo_prompts": integer_at_least(0),
    "num_eval_prompts": integer_at_least(0),
    "max_prompt_length": integer_at_least(1),
    "kl_stop": greater_than(0),
    "value_warmup": integer_at_least(0),
    "judge_credit": one_of(*CREDITS),
    # TRL's PPOConfig
    "num_ppo_epochs": integer_at_least(1),
    "num_mini_batches": integer_at_least(1),
    "total_episodes": integer_at_least(1),
    "local_rollout_forward_batch_size": integer_at_least(1),
    "response_length": integer_at_least(1),
    "num_sample_generations": integer_at_least(0),
    "temperature": greater_than(0),
    "missing_eos_penalty": at_least(0),
    "kl_coef": at_least(0),
    "cliprange": greater_than(0),
    "vf_coef": at_least(0),
    "cliprange_value": greater_than(0),
    "gamma": fraction(),
    "lam": fraction(),
}


# report_to: trackers the kit documents, each an optional extra of the package (pip install 'rlhf-kit[wandb]');
# `none` and `all` (every installed tracker) stand alone. Other transformers integrations pass through to it.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}  # report_to name: module


def tracker_problem(value: Any) -> str | None:
    """What is wrong with a report_to value (a string or a list), or None: an unknown name, `none` / `all` mixed
    with trackers, or a tracker whose package is not installed (with the pip extra that installs it)."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = _split_names(value)
    known = ["none", "all", *TRACKERS, *(k for k in INTEGRATION_TO_CALLBACK if k not in TRACKERS)]
    if names == []:  # what transformers turns "none" into
        return None
    if not isinstance(names, list):
        return f"expected a tracker name or a list of them (none, {', '.join(TRACKERS)}), got {value!r}"
    for name in names:
        if name not in known:
            return f"expected none, all or trackers among {known[2:]}, got {name!r}"
    if len(names) > 1 and ({"none", "all"} & set(names)):
        return f"'none' and 'all' stand alone, got {names!r}"
    for name in names:
        if name in TRACKERS and importlib.util.find_spec(TRACKERS[name]) is None:
            return f"tracker {name!r} is not installed: pip install 'rlhf-kit[{name}]'"
    return None


def _template_domain() -> Domain:
    from rlhf.templates import TEMPLATES

    return one_of(*TEMPLATES)


def domain_problems(values: dict[str, Any], optional: dict[str, bool]) -> list[tuple[str, str]]:
    """(key, what was expected and given) for every value outside its domain. `optional[key]`: whether the field's
    type admits None (null in YAML), which is then always allowed."""
    domains = {**DOMAINS, "template": _template_domain()}
    problems = []
    for key, domain in domains.items():
        if key not in values:
            continue
        value = values[key]
        if value is None and optional.get(key, False):
            continue
        if not domain.ok(value):
            problems.append((key, f"expected {domain.expect}, got {value!r}"))
    if "report_to" in values and values["report_to"] is not None:
        if problem := tracker_problem(values["report_to"]):
            problems.append(("report_to", problem))
    return problems


def _optional_fields(dataclass_types) -> dict[str, bool]:
    """Whether each field's declared type admits None. Read from the class annotations: HfArgumentParser rewrites
    `field.type` (Optional[int] becomes int) when it builds its parser."""
    out: dict[str, bool] = {}
    for t in dataclass_types:
        for klass in t.__mro__:
            for name, ann in vars(klass).get("__annotations__", {}).items():
                text = ann if isinstance(ann, str) else repr(ann)
                out.setdefault(name, "None" in text or "Optional" in text)
    return out


def check_domains(
    values: dict[str, Any],
    dataclass_types,
    argv: list[str],
    config_path: Path | None,
    config: dict,
    source: dict[str, Any] | None = None,
) -> None:
    """Refuse the first out-of-domain value, naming where it was given: the flag, the YAML key, or (a default or
    a Python caller's value) the key alone."""
    problems = domain_problems(values, _optional_fields(dataclass_types))
    if not problems:
        return
    key, what = problems[0]
    if any(a == f"--{key}" or a.startswith(f"--{key}=") for a in argv):
        raise UserError(what, "command line", f"--{key}")
    given_in = (source or {}).get(key) or config_path  # the YAML file, or a Python caller's values
    raise UserError(what, given_in if key in config or config_path else "config", f"key '{key}'")


def check_config(cfg: Any) -> None:
    """The domain check for a config built in Python (not through parse_config): one UserError naming the key."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    source = getattr(cfg, "config_path", None)
    check_domains(values, [type(cfg)], [], Path(source) if source else None, {})

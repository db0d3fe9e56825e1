"""Where a stage's rows come from: a local file or dir, or a hub dataset id, named by the config keys TRL users
know (`dataset_name`, `dataset_config`, `dataset_train_split`, `dataset_test_split`).

    train, held_out = stage_sources(cfg, "data_path", "eval_data_path")
    rows = load_alpaca(train)          # every loader reads a Source through rlhf.data.read_records

Local files and saved `datasets` dirs are read by rlhf.data's total readers. A hub id, or a local dir of data files
(a downloaded hub dataset repo), goes through `datasets.load_dataset`; its rows get the same checks, named
`<id>[<split>]:row N`. Offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE), a hub id that is not in the local cache
fails at once, in one line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf.data import checked_rows, is_saved_dataset, read_records
from rlhf.errors import UserError


@dataclass(frozen=True)
class Source:
    """Rows to read: `name` is a local path or a hub dataset id; `config` and `split` as `load_dataset` takes them
    (`split` also picks a split of a saved DatasetDict dir)."""

    name: str
    config: str | None = None
    split: str = "train"

    def __str__(self) -> str:  # how error lines name it
        if self.config is None and self.split == "train":
            return self.name
        return f"{self.name}[{self.config + ':' if self.config else ''}{self.split}]"

    @property
    def local(self) -> bool:
        return is_local(self.name)

    def read(self) -> list[dict[str, Any]]:
        path = Path(self.name).expanduser()
        if not self.local:
            return _load_dataset(self.name, self, config=self.config, split=self.split)
        if is_data_files_dir(path):
            return _load_dataset(str(path), path, config=self.config, split=self.split, local_dir=True)
        if self.config is not None:
            raise UserError(
                f"dataset_config {self.config!r} applies to a hub dataset or a dir of data files", path
            )
        return read_records(path, split=self.split)


def is_local(name: str) -> bool:
    """Whether `name` is meant as a local path: it exists, or reads like a path (starts with `.`, `/` or `~`, has a
    data file suffix, or more than one `/`). Everything else ("name" or "org/name") is a hub dataset id."""
    suffixes = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".gz", ".arrow")
    return (
        Path(name).expanduser().exists()
        or name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or "\\" in name
        or name.lower().endswith(suffixes)
    )


_DATA_SUFFIXES = (".parquet", ".json", ".jsonl", ".csv", ".tsv", ".arrow")


def is_data_files_dir(path: Path) -> bool:
    """A dir that is not a saved dataset but holds data files (a hub dataset repo, downloaded): load_dataset reads
    it, inferring its splits from the file names. Other dirs go to rlhf.data's reader, which refuses them."""
    if not path.is_dir() or is_saved_dataset(path):
        return False
    return any(
        f.is_file() and f.name.removesuffix(".gz").endswith(_DATA_SUFFIXES) and ".cache" not in f.parts
        for f in path.rglob("*")
    )


def _offline() -> bool:
    import datasets

    return bool(datasets.config.HF_HUB_OFFLINE)


def _load_dataset(name: str, shown, *, config: str | None, split: str, local_dir: bool = False):
    """`datasets.load_dataset(name, config, split=split)` as checked rows; any failure is one UserError naming
    `shown` (the Source, or the local dir)."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    if local_dir:  # local files load in a moment: no progress bars on stderr (a hub download keeps them)
        datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types: network, missing split/config, unreadable data files
        detail = (str(e).splitlines() or [""])[0][:160]
        if local_dir:
            raise UserError(
                f"a dir of data files that `datasets.load_dataset` cannot read ({type(e).__name__}: {detail})",
                shown,
            ) from None
        if _offline() and isinstance(e, ConnectionError):
            raise UserError(
                "not a local file or dir, and a hub dataset id needs the network: offline "
                "(HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) and not in the local datasets cache; download it "
                "or give a local path",
                shown,
            ) from None
        raise UserError(f"cannot load the hub dataset ({type(e).__name__}: {detail})", shown) from None
    finally:
        if local_dir and bars:
            datasets.enable_progress_bars()
    return checked_rows(ds, shown)


def stage_sources(cfg, path_key: str, eval_key: str | None = None) -> tuple[Source, Source | None]:
    """(training rows, held-out rows or None) of a stage config: `path_key` (or its alias `dataset_name`) with
    `dataset_config` / `dataset_train_split`; held out: `dataset_test_split` of the same dataset, or `eval_key`'s
    own source. None: the stage splits its own share off (eval_fraction)."""
    where = cfg.config_path or "command line"
    name = getattr(cfg, path_key)
    if not name:
        raise UserError(
            f"{path_key} (or TRL's dataset_name) is required: a data file, a dataset dir or a hub dataset id",
            where,
            f"key '{path_key}'",
        )
    train = Source(str(name), cfg.dataset_config, cfg.dataset_train_split)
    eval_name = getattr(cfg, eval_key, None) if eval_key else None
    if cfg.dataset_test_split is not None:
        if eval_name:
            raise UserError(
                f"set {eval_key} or dataset_test_split, not both: both name the held-out rows",
                where,
                "key 'dataset_test_split'",
            )
        return train, Source(str(name), cfg.dataset_config, cfg.dataset_test_split)
    return train, Source(str(eval_name)) if eval_name else None

"""The embedded demo's inputs: task data (`rlhf tasks`) and the tiny tokenizer + model (`rlhf demo-model`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser
from rlhf.errors import UserError, exit_on_user_error
from rlhf.io import atomic_write_json, replace_dir, sibling_temp_dir
from rlhf.tasks.demo import ALL_KINDS, DEFAULT_KINDS, make_sft_rows, make_tasks


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad or not kinds:
        raise UserError(
            f"unknown task kind {bad[0] if bad else text!r}; expected some of {','.join(ALL_KINDS)}",
            "command line",
            "--kinds",
        )
    return kinds


def build_demo_checkpoint(
    out: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 1000,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 384,
    extra_rows: list[dict] = (),
) -> Path:
    from rlhf.models import save_pretrained_dir
    from rlhf.tasks.demo_model import build_demo_model, tokenizer_corpus, train_bpe_tokenizer

    tok = train_bpe_tokenizer(tokenizer_corpus(extra_rows, seed), vocab_size=vocab_size)
    model = build_demo_model(
        tok,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        seed=seed,
    )
    # Built under a temp name and renamed into place: a dir with config.json is a complete model (the pipeline's
    # `base` step takes it as done), never one a kill cut short.
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise UserError("holds other files; expected a new dir or a model dir to replace", out)
    tmp = sibling_temp_dir(out, "building")
    try:
        save_pretrained_dir(model, tok, tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@exit_on_user_error
def tasks_cli(argv=None, prog="rlhf tasks") -> int:
    p = ArgumentParser(
        prog=prog, description="Write demo instruction tasks (Alpaca json) with imperfect outputs."
    )
    p.add_argument("--n", type=int, default=2000, help="number of rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kinds", default=",".join(DEFAULT_KINDS), help=f"comma-separated, from {','.join(ALL_KINDS)}"
    )
    p.add_argument(
        "--split", choices=["train", "eval"], default="train", help="train or held-out eval prompts"
    )
    p.add_argument(
        "--verbose-share", type=float, default=0.6, help="share of demonstrations padded with filler"
    )
    p.add_argument(
        "--wrong-share", type=float, default=0.1, help="share of demonstrations with a wrong answer"
    )
    p.add_argument(
        "--gold", action="store_true", help="write the bare correct answers instead (eval references)"
    )
    p.add_argument("--distinct", action="store_true", help="never repeat a prompt (for evaluation sets)")
    p.add_argument("--out", required=True, help="output .json")
    a = p.parse_args(argv)
    rows = write_tasks(
        a.out,
        a.n,
        seed=a.seed,
        kinds=a.kinds,
        split=a.split,
        verbose_share=a.verbose_share,
        wrong_share=a.wrong_share,
        gold=a.gold,
        distinct=a.distinct,
    )
    print(f"tasks: wrote {len(rows)} {a.split} rows of {', '.join(_kinds(a.kinds))} to {a.out}")
    return 0


def write_tasks(
    out: str | Path,
    n: int = 2000,
    *,
    seed: int = 0,
    kinds: str = ",".join(DEFAULT_KINDS),
    split: str = "train",
    verbose_share: float = 0.6,
    wrong_share: float = 0.1,
    gold: bool = False,
    distinct: bool = False,
) -> list[dict]:
    """Write `n` demo task rows (Alpaca json) to `out`: demonstrations, or with `gold` the bare correct answers."""
    kinds = _kinds(kinds)
    if not (0 <= verbose_share and 0 <= wrong_share and verbose_share + wrong_share <= 1):
        raise UserError("expected shares >= 0 that add up to at most 1", "command line", "--verbose-share")
    try:
        if gold:
            rows = [t.to_row() for t in make_tasks(n, seed, kinds, split=split, distinct=distinct)]
        else:
            rows = make_sft_rows(n, seed, kinds, verbose_share, wrong_share, split=split)
    except ValueError as e:  # a prompt space too small for --n
        raise UserError(str(e), "command line", "--n") from None
    atomic_write_json(out, rows)
    return rows


@exit_on_user_error
def model_cli(argv=None, prog="rlhf demo-model") -> int:
    p = ArgumentParser(prog=prog, description="Build the demo byte-level BPE tokenizer and a tiny Llama.")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=1000)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--intermediate-size", type=int, default=384)
    p.add_argument(
        "--extra-text", default=None, help="Alpaca json/jsonl whose text joins the tokenizer corpus"
    )
    a = p.parse_args(argv)
    extra = []
    if a.extra_text:
        from rlhf.data import load_instructions

        extra = load_instructions(a.extra_text)
    out = build_demo_checkpoint(
        a.out,
        seed=a.seed,
        vocab_size=a.vocab_size,
        hidden_size=a.hidden_size,
        num_layers=a.num_layers,
        num_heads=a.num_heads,
        intermediate_size=a.intermediate_size,
        extra_rows=extra,
    )
    print(f"demo-model: wrote {out}")
    return 0

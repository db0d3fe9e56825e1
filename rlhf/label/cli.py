"""`rlhf label serve | export | stats`: the preference-labeling web app and what comes out of it."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser
from rlhf.errors import UserError, exit_on_user_error
from rlhf.paths import refuse_overlap

ANNOTATOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
DEFAULT_ANNOTATOR = "annotator"
TOKEN_ENV = "RLHF_LABEL_TOKEN"


def _parser(prog: str) -> ArgumentParser:
    p = ArgumentParser(
        prog=prog, description="Collect human preference labels in the browser, then export them."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{serve,export,stats}")

    s = sub.add_parser(
        "serve",
        help="serve the labeling page",
        description=(
            "Serve one comparison at a time to each annotator. Give a pairs file (from `rlhf pairs`, or a "
            "compare-pairs file whose rows name their 'sources'), or --compare two checkpoints with --prompts. "
            "Restarting on an existing --db resumes it (the pairs file may then be left out)."
        ),
    )
    s.add_argument("pairs", nargs="?", help="pairs .jsonl/.json (validated before the server starts)")
    s.add_argument("--db", required=True, help="SQLite labels database (created if missing)")
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token)"
    )
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    s.add_argument(
        "--annotators",
        default=None,
        help=f"comma-separated names, each with their own queue (default: one '{DEFAULT_ANNOTATOR}')",
    )
    s.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="share of items given to several annotators, to measure agreement (default 0.2)",
    )
    s.add_argument(
        "--overlap-annotators",
        type=int,
        default=None,
        help="how many annotators label each overlapping item (default 2)",
    )
    s.add_argument(
        "--token",
        default=None,
        help=f"shared secret every request must carry (or set {TOKEN_ENV}); required for a non-loopback host",
    )
    s.add_argument(
        "--seed", type=int, default=None, help="queue order, overlap, display order and sampling (default 0)"
    )
    g = s.add_argument_group("blind policy comparison")
    g.add_argument(
        "--compare",
        nargs=2,
        metavar=("CKPT_A", "CKPT_B"),
        help="generate one response per prompt from each checkpoint and compare them blind",
    )
    g.add_argument("--prompts", help="Alpaca json/jsonl prompts for --compare")
    g.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    g.add_argument("--top-p", type=float, default=0.9)
    g.add_argument("--top-k", type=int, default=0, help="0 = off")
    g.add_argument("--max-new-tokens", type=int, default=128)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    g.add_argument("--save-pairs", default=None, help="also write the generated compare-pairs file here")
    s.add_argument(
        "--no-serve", action="store_true", help="prepare the database (validate, generate, queue) and exit"
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars, warnings-only server log")

    e = sub.add_parser("export", help="write preference rows for the reward stage")
    e.add_argument("--db", required=True)
    e.add_argument("--out", required=True, help="prefs .jsonl (written atomically)")

    t = sub.add_parser("stats", help="counts, agreement, position bias, speed, human win-rate")
    t.add_argument("--db", required=True)
    t.add_argument("--json", action="store_true", help="print the numbers as JSON")
    return p


def _annotators(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("expected at least one name", "command line", "--annotators")
    for n in names:
        if not ANNOTATOR_RE.match(n):
            raise UserError(
                f"bad name {n!r}; use letters, digits and _.@- (at most 64)", "command line", "--annotators"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"repeated name(s): {', '.join(dupes)}", "command line", "--annotators")
    return names


def _check_serve_args(a) -> str | None:
    from rlhf.label.server import is_loopback

    token = a.token or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 8:
        raise UserError("token is too short; use at least 8 characters", "command line", "--token")
    if not is_loopback(a.host) and token is None:
        raise UserError(
            f"refusing to serve on non-loopback host {a.host!r} without a token; pass --token SECRET "
            f"(or set {TOKEN_ENV}) or bind 127.0.0.1",
            "command line",
            "--host",
        )
    if not 0 <= a.port <= 65535:
        raise UserError(f"port {a.port} is out of range 0..65535", "command line", "--port")
    if a.annotators:
        _annotators(a.annotators)
    if a.overlap is not None and not 0.0 <= a.overlap <= 1.0:
        raise UserError(f"{a.overlap} is not a share between 0 and 1", "command line", "--overlap")
    if a.overlap_annotators is not None and a.overlap_annotators < 2:
        raise UserError("expected 2 or more", "command line", "--overlap-annotators")
    if a.compare:
        if a.pairs:
            raise UserError("give either a pairs file or --compare, not both", "command line", "--compare")
        if not a.prompts:
            raise UserError("--compare needs --prompts FILE", "command line", "--prompts")
        if (
            a.temperature < 0
            or not 0 < a.top_p <= 1
            or a.top_k < 0
            or a.max_new_tokens < 1
            or a.batch_size < 1
        ):
            raise UserError(
                "sampling: need temperature >= 0, 0 < top-p <= 1, top-k >= 0, max-new-tokens >= 1, "
                "batch-size >= 1",
                "command line",
            )
        if a.limit is not None and a.limit < 1:
            raise UserError("expected 1 or more", "command line", "--limit")
    elif a.prompts:
        raise UserError("--prompts is only used with --compare", "command line", "--prompts")
    return token


def _prepare_store(a):
    """Open or create the database. A new one gets the items and queues; an existing one must match the flags."""
    from rlhf.label.pairs import generate_compare_items, item_to_pairs_row, load_pairs
    from rlhf.label.store import Store, fingerprint

    db = Path(a.db)
    store = None
    if db.is_file():
        store = Store(db, create=True)  # an existing file: must be ours; an empty one is simply reused
        if not store.initialized:
            store.close()
            store = None
    if store is not None:
        if a.compare:
            raise UserError(
                f"already holds a labeling session; to resume it run `rlhf label serve --db {db}` "
                "without --compare, or choose a new --db",
                db,
            )  # refused before any model loads
        meta = store.meta()
        if a.pairs and fingerprint(load_pairs(a.pairs)) != meta["fingerprint"]:
            raise UserError(
                f"holds different pairs than {a.pairs} (it was made from {meta['source']}); "
                "use the original file, leave the file out to resume, or choose a new --db",
                db,
            )
        given = {
            "annotators": _annotators(a.annotators) if a.annotators else None,
            "overlap": a.overlap,
            "overlap_k": a.overlap_annotators,
            "seed": a.seed,
        }
        for key, value in given.items():
            if value is not None and value != meta[key]:
                raise UserError(
                    f"was created with {key} = {meta[key]!r}, not {value!r}; leave the flag out to "
                    "resume, or choose a new --db",
                    db,
                )
        return store, False
    if not a.pairs and not a.compare:
        raise UserError("no labeling session here yet; give a pairs file or --compare to start one", db)
    annotators = _annotators(a.annotators) if a.annotators else [DEFAULT_ANNOTATOR]
    seed = 0 if a.seed is None else a.seed
    overlap = 0.2 if a.overlap is None else a.overlap
    overlap_k = 2 if a.overlap_annotators is None else a.overlap_annotators
    if a.compare:
        from rlhf.generate import SamplingParams

        params = SamplingParams(
            temperature=a.temperature,
            top_k=a.top_k,
            top_p=a.top_p,
            max_new_tokens=a.max_new_tokens,
            num_samples=1,
            seed=seed,
        )
        items = generate_compare_items(
            a.compare[0],
            a.compare[1],
            a.prompts,
            params,
            batch_size=a.batch_size,
            limit=a.limit,
            progress=not a.quiet,
        )
        source = f"--compare {a.compare[0]} {a.compare[1]} --prompts {a.prompts}"
        if a.save_pairs:
            from rlhf.io import atomic_write_jsonl

            atomic_write_jsonl(a.save_pairs, [item_to_pairs_row(it) for it in items])
    else:
        items = load_pairs(a.pairs)
        source = str(a.pairs)
    store = Store(db, create=True)
    store.initialize(
        items,
        annotators,
        overlap=overlap,
        overlap_k=overlap_k,
        seed=seed,
        source=source,
        compare_sources=tuple(a.compare) if a.compare else None,
    )
    if a.overlap and len(annotators) < 2:
        print(
            "label: note: --overlap needs two or more annotators; every item goes to the one annotator",
            file=sys.stderr,
        )
    return store, True


def _serve(a) -> int:
    refuse_overlap(
        {"PAIRS": a.pairs, "--compare": a.compare, "--prompts": a.prompts},
        {"--db": a.db, "--save-pairs": a.save_pairs},
    )
    token = _check_serve_args(a)
    store, created = _prepare_store(a)
    meta = store.meta()
    n_items = len(store.items())
    what = "created" if created else "resumed"
    print(
        f"label: {what} {a.db}: {n_items} items for {', '.join(meta['annotators'])} "
        f"(overlap {meta['overlap']:g} x{meta['overlap_k']})",
        flush=True,
    )
    if a.no_serve:
        return 0
    from rlhf.label.server import serve

    try:
        serve(store, host=a.host, port=a.port, token=token, quiet=a.quiet)
    finally:
        store.close()
    return 0


def _export(a) -> int:
    from rlhf.label.export import export_preferences

    refuse_overlap({"--db": a.db}, {"--out": a.out})
    c = export_preferences(a.db, a.out)
    print(
        f"export: wrote {c['rows']} preference rows to {a.out} from {c['labels']} labels "
        f"(left out: {c['ties']} ties, {c['skips']} skips, {c['unusable']} with identical or empty responses; "
        f"{c['unlabeled_items']} items not labeled yet)"
    )
    return 0


def _stats(a) -> int:
    from rlhf.label.stats import compute_stats, format_stats

    s = compute_stats(a.db)
    print(json.dumps(s, indent=2) if a.json else format_stats(s))
    return 0


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf label") -> int:
    a = _parser(prog).parse_args(argv)
    return {"serve": _serve, "export": _export, "stats": _stats}[a.command](a)

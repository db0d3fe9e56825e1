"""`rlhf label serve | export | stats | add-annotator | links | import`: the preference-labeling web app and what
comes out of it."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from rlhf.argparse_utils import ArgumentParser
from rlhf.errors import UserError, exit_on_user_error
from rlhf.paths import refuse_overlap

ANNOTATOR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
DEFAULT_ANNOTATOR = "annotator"


def _parser(prog: str) -> ArgumentParser:
    p = ArgumentParser(
        prog=prog, description="Collect human preference labels in the browser, then export them."
    )
    sub = p.add_subparsers(
        dest="command", required=True, metavar="{serve,export,stats,add-annotator,links,import}"
    )

    s = sub.add_parser(
        "serve",
        help="serve the labeling page",
        description=(
            "Serve one comparison at a time to each annotator. Give a pairs file (from `rlhf pairs`, or a "
            "compare-pairs file whose rows name their 'sources'), or --compare two checkpoints with --prompts. "
            "Restarting on an existing --db resumes it (the pairs file may then be left out). Each annotator "
            "gets their own secret link (printed); one annotator on 127.0.0.1 needs none."
        ),
    )
    s.add_argument("pairs", nargs="?", help="pairs .jsonl/.json (validated before the server starts)")
    s.add_argument("--db", required=True, help="SQLite labels database (created if missing)")
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others always need tokens)"
    )
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    s.add_argument(
        "--annotators",
        default=None,
        help=f"comma-separated names, each with their own queue and link (default: one '{DEFAULT_ANNOTATOR}')",
    )
    s.add_argument(
        "--tokens",
        action="store_true",
        help="require a token (the printed link) even for a single annotator on loopback",
    )
    s.add_argument("--token", default=None, help=argparse.SUPPRESS)  # the old shared secret: explained below
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
        "--seed", type=int, default=None, help="queue order, overlap, display order and sampling (default 0)"
    )
    s.add_argument(
        "--guidelines", default=None, help="markdown file shown to annotators (may be changed on resume)"
    )
    s.add_argument(
        "--strength",
        action="store_true",
        help="ask how much better (slightly / clearly / much), exported as margin 1/3, 2/3, 1",
    )
    s.add_argument(
        "--gold",
        default=None,
        help="pairs file of quality-control items, each with its known answer in 'gold'",
    )
    s.add_argument(
        "--gold-rate",
        type=float,
        default=None,
        help="share of each queue made of gold items, mixed in at random (default 0.1 with --gold)",
    )
    s.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        help="largest request body accepted; bigger ones get 413 before they are read (default 65536)",
    )
    g = s.add_argument_group("blind policy comparison")
    g.add_argument(
        "--compare",
        nargs=2,
        metavar=("CKPT_A", "CKPT_B"),
        help="generate one response per prompt from each checkpoint and compare them blind",
    )
    g.add_argument(
        "--prompts",
        help="prompts for --compare: Alpaca rows, `prompt` strings or message lists, or `messages`",
    )
    g.add_argument(
        "--template",
        choices=("alpaca", "chat"),
        default=None,
        help="prompt template for a checkpoint without a manifest (default alpaca; chat: the tokenizer's own)",
    )
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

    e = sub.add_parser("export", help="write preference rows for the reward stage (and other formats)")
    e.add_argument("--db", required=True)
    e.add_argument("--out", required=True, help="prefs .jsonl (written atomically)")
    e.add_argument("--parquet", default=None, help="also write the rows as a Parquet file")
    e.add_argument("--datasets", default=None, help="also write the rows as a `datasets` dir (save_to_disk)")
    e.add_argument("--label-studio", default=None, help="also write Label Studio JSON (pairwise tasks)")

    t = sub.add_parser(
        "stats", help="progress, agreement (kappa, alpha), gold, position bias, speed, win-rate"
    )
    t.add_argument("--db", required=True)
    t.add_argument("--json", action="store_true", help="print the numbers as JSON")

    n = sub.add_parser(
        "add-annotator",
        help="add an annotator (with a new link) to a campaign; works while `serve` runs",
        description=(
            "Give a new annotator a token and a queue: the items with the fewest annotators so far (as many as "
            "the average queue, or --items N), in a random order, with gold items at the campaign's rate. "
            "From then on every client needs its token (no more open access)."
        ),
    )
    n.add_argument("name")
    n.add_argument("--db", required=True)
    n.add_argument("--items", type=int, default=None, help="queue length (default: the average queue)")
    n.add_argument("--host", default="127.0.0.1", help="host for the printed link (default 127.0.0.1)")
    n.add_argument("--port", type=int, default=8765, help="port for the printed link (default 8765)")

    k = sub.add_parser("links", help="print every annotator's link and the admin link again")
    k.add_argument("--db", required=True)
    k.add_argument("--host", default="127.0.0.1")
    k.add_argument("--port", type=int, default=8765)

    i = sub.add_parser("import", help="start a labels database from a Label Studio JSON export (pairwise)")
    i.add_argument("label_studio", help="Label Studio JSON export (a list of tasks with annotations)")
    i.add_argument("--db", required=True, help="new SQLite labels database")
    i.add_argument("--seed", type=int, default=0, help="display order of the not yet labeled tasks")
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


def _check_serve_args(a) -> None:
    if a.token is not None:
        raise UserError(
            "the shared --token is gone: every annotator has their own link now (printed by serve, again by "
            "`rlhf label links`); --tokens requires them even for one person on loopback",
            "command line",
            "--token",
        )
    if not 0 <= a.port <= 65535:
        raise UserError(f"port {a.port} is out of range 0..65535", "command line", "--port")
    if a.annotators:
        _annotators(a.annotators)
    if a.overlap is not None and not 0.0 <= a.overlap <= 1.0:
        raise UserError(f"{a.overlap} is not a share between 0 and 1", "command line", "--overlap")
    if a.overlap_annotators is not None and a.overlap_annotators < 2:
        raise UserError("expected 2 or more", "command line", "--overlap-annotators")
    if a.gold_rate is not None:
        if not a.gold:
            raise UserError("--gold-rate needs --gold FILE", "command line", "--gold-rate")
        if not 0.0 < a.gold_rate < 1.0:
            raise UserError(
                f"{a.gold_rate} is not a share between 0 and 1 (exclusive)", "command line", "--gold-rate"
            )
    if a.max_body_bytes is not None and a.max_body_bytes < 1024:
        raise UserError("expected at least 1024 bytes", "command line", "--max-body-bytes")
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


def _read_guidelines(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("no such file", path) from None
    except UnicodeDecodeError:
        raise UserError("not UTF-8 text; expected a markdown file", path) from None
    if not text.strip():
        raise UserError("empty; expected the campaign's instructions in markdown", path)
    return text


def _load_gold(a, items) -> list:
    from rlhf.label.pairs import load_pairs

    if not a.gold:
        return []
    gold = load_pairs(a.gold, gold=True)
    ids = {it.id for it in items}
    clash = next((g.id for g in gold if g.id in ids), None)
    if clash is not None:
        raise UserError(
            f"gold id {clash!r} is also an item id in the pairs file; expected distinct ids", a.gold
        )
    return gold


def _resume(a, db: Path):
    """An existing session: check the flags match it. Reads only (opening our own WAL database changes nothing).
    Returns (store, what to write once the server is sure to start)."""
    from rlhf.label.pairs import load_pairs
    from rlhf.label.store import DEFAULT_STRENGTH, Store, fingerprint

    store = Store(db, create=True)  # an existing file: must be ours; an empty one is simply reused
    if not store.initialized:
        store.close()
        return None, None
    try:
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
        if a.gold and fingerprint(load_pairs(a.gold, gold=True)) != meta["gold_fingerprint"]:
            raise UserError(f"holds a different gold set than {a.gold}; leave --gold out to resume", db)
        names = _annotators(a.annotators) if a.annotators else None
        if names is not None and names != store.annotators():
            raise UserError(
                f"was created with annotators = {store.annotators()!r}, not {names!r}; leave the flag out to "
                "resume, add people with `rlhf label add-annotator`, or choose a new --db",
                db,
            )
        given = {
            "overlap": a.overlap,
            "overlap_k": a.overlap_annotators,
            "seed": a.seed,
            "gold_rate": a.gold_rate,
            "strength": [list(x) for x in DEFAULT_STRENGTH] if a.strength else None,
        }
        for key, value in given.items():
            if value is not None and value != meta.get(key):
                raise UserError(
                    f"was created with {key} = {meta.get(key)!r}, not {value!r}; leave the flag out to "
                    "resume, or choose a new --db",
                    db,
                )
        updates = {}
        guidelines = _read_guidelines(a.guidelines)
        if guidelines is not None and guidelines != meta.get("guidelines"):
            updates["guidelines"] = guidelines
        if a.tokens and meta.get("open_access"):
            updates["open_access"] = False
    except BaseException:
        store.close()
        raise
    return store, (lambda: store.set_meta(**updates) if updates else None)


def _new_session(a, db: Path):
    """Validate (and for --compare, generate) everything a new session needs, writing nothing yet. Returns a
    function that creates the database (called once the server is sure to start)."""
    from rlhf.label.pairs import generate_compare_items, item_to_pairs_row, load_pairs
    from rlhf.label.store import DEFAULT_STRENGTH, Store

    if not a.pairs and not a.compare:
        raise UserError("no labeling session here yet; give a pairs file or --compare to start one", db)
    if db.is_dir():
        raise UserError("is a directory; expected a database file path", db)
    if not db.parent.is_dir():
        raise UserError("folder does not exist", db.parent)
    annotators = _annotators(a.annotators) if a.annotators else [DEFAULT_ANNOTATOR]
    seed = 0 if a.seed is None else a.seed
    overlap = 0.2 if a.overlap is None else a.overlap
    overlap_k = 2 if a.overlap_annotators is None else a.overlap_annotators
    guidelines = _read_guidelines(a.guidelines)
    if a.compare:
        items = None  # generated once the port is ours (minutes of work for nothing otherwise)
        source = f"--compare {a.compare[0]} {a.compare[1]} --prompts {a.prompts}"
    else:
        items = load_pairs(a.pairs)
        source = str(a.pairs)
    gold = _load_gold(a, items or [])

    def create():
        nonlocal items
        if items is None:
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
                template=a.template,
            )
            if a.save_pairs:
                from rlhf.io import atomic_write_jsonl

                atomic_write_jsonl(a.save_pairs, [item_to_pairs_row(it) for it in items])
        store = Store(db, create=True)
        try:
            store.initialize(
                items,
                annotators,
                overlap=overlap,
                overlap_k=overlap_k,
                seed=seed,
                source=source,
                compare_sources=tuple(a.compare) if a.compare else None,
                gold_items=gold,
                gold_rate=(0.1 if a.gold_rate is None else a.gold_rate) if gold else 0.0,
                strength=list(DEFAULT_STRENGTH) if a.strength else None,
                guidelines=guidelines,
                open_access=len(annotators) == 1 and not a.tokens,
            )
        except BaseException:
            store.close()
            raise
        if a.overlap and len(annotators) < 2:
            print(
                "label: note: --overlap needs two or more annotators; every item goes to the one annotator",
                file=sys.stderr,
            )
        return store

    return create


def _serve(a) -> int:
    from rlhf.label.server import DEFAULT_MAX_BODY, open_socket, serve

    refuse_overlap(
        {"PAIRS": a.pairs, "--compare": a.compare, "--prompts": a.prompts, "--gold": a.gold,
         "--guidelines": a.guidelines},
        {"--db": a.db, "--save-pairs": a.save_pairs},
    )  # fmt: skip
    _check_serve_args(a)
    db = Path(a.db)
    # A new session is validated first (that writes nothing); then the port is bound before anything is written
    # (a database created, upgraded or given new guidelines): a busy port leaves no trace.
    resuming = db.is_file() and db.stat().st_size > 0
    create = None if resuming else _new_session(a, db)
    sock = None if a.no_serve else open_socket(a.host, a.port)
    store = None
    try:
        store, finish = _resume(a, db) if resuming else (None, None)
        if store is None:
            create = create or _new_session(a, db)
            store = create()
            what = "created"
        else:
            finish()
            what = "resumed"
        meta = store.meta()
        n_items = sum(1 for it in store.items() if it["gold"] is None)
        gold = f", {meta['gold_rate']:g} of each queue gold" if meta.get("gold_rate") else ""
        print(
            f"label: {what} {a.db}: {n_items} items for {', '.join(store.annotators())} "
            f"(overlap {meta['overlap']:g} x{meta['overlap_k']}{gold})",
            flush=True,
        )
        if a.no_serve:
            return 0
        serve(store, sock, host=a.host, quiet=a.quiet, max_body_bytes=a.max_body_bytes or DEFAULT_MAX_BODY)
    finally:
        if sock is not None:
            sock.close()
        if store is not None:
            store.close()
    return 0


def _export(a) -> int:
    from rlhf.label.export import export_label_studio, export_preferences

    refuse_overlap(
        {"--db": a.db},
        {"--out": a.out, "--parquet": a.parquet, "--datasets": a.datasets, "--label-studio": a.label_studio},
    )
    c = export_preferences(a.db, a.out, parquet=a.parquet, datasets_dir=a.datasets)
    also = "".join(f", {p}" for p in (a.parquet, a.datasets) if p)
    print(
        f"export: wrote {c['rows']} preference rows to {a.out}{also} from {c['labels']} labels "
        f"(left out: {c['ties']} ties, {c['skips']} skips, {c['unusable']} with identical or empty responses, "
        f"{c['gold']} on gold items; {c['unlabeled_items']} items not labeled yet)"
    )
    if a.label_studio:
        ls = export_label_studio(a.db, a.label_studio)
        print(
            f"export: wrote {ls['tasks']} Label Studio tasks with {ls['annotations']} annotations to "
            f"{a.label_studio} (left out: {ls['ties']} ties, {ls['left_out_items']} gold or ranked items)"
        )
    return 0


def _stats(a) -> int:
    from rlhf.label.stats import compute_stats, format_stats

    s = compute_stats(a.db)
    print(json.dumps(s, indent=2) if a.json else format_stats(s))
    return 0


def _add_annotator(a) -> int:
    from rlhf.label.server import links
    from rlhf.label.store import Store

    name = _annotators(a.name)[0]
    store = Store(a.db)
    try:
        _, queue = store.add_annotator(name, n_items=a.items)
        print(f"label: added {name} with {queue} items; their link: {links(store, a.host, a.port)[name]}")
    finally:
        store.close()
    return 0


def _links(a) -> int:
    from rlhf.label.server import links
    from rlhf.label.store import Store

    store = Store(a.db)
    try:
        for name, url in links(store, a.host, a.port).items():
            print(f"{name}: {url}")
    finally:
        store.close()
    return 0


def _import(a) -> int:
    from rlhf.label.labelstudio import read_label_studio
    from rlhf.label.store import Store

    db = Path(a.db)
    if db.exists():
        raise UserError("already exists; import into a new --db", db)
    if not db.parent.is_dir():
        raise UserError("folder does not exist", db.parent)
    got = read_label_studio(a.label_studio)
    for name in got["annotators"]:
        if not ANNOTATOR_RE.match(name):
            raise UserError(f"annotator name {name!r} cannot be used", a.label_studio)
    store = Store(db, create=True)
    try:
        store.initialize(
            got["items"],
            got["annotators"],
            overlap=0.0,
            overlap_k=2,
            seed=a.seed,
            source=str(a.label_studio),
            preassigned=[(r["annotator"], r["item_id"]) for r in got["labels"]],
            extra_meta={"label_studio": got["meta"]},
        )
        store.import_labels(got["labels"])
    except BaseException:
        store.close()
        db.unlink(missing_ok=True)
        raise
    store.close()
    print(
        f"import: {len(got['items'])} tasks, {len(got['labels'])} labels by {', '.join(got['annotators'])} "
        f"into {db}"
    )
    return 0


@exit_on_user_error
def cli(argv: list[str] | None = None, prog: str = "rlhf label") -> int:
    a = _parser(prog).parse_args(argv)
    return {
        "serve": _serve,
        "export": _export,
        "stats": _stats,
        "add-annotator": _add_annotator,
        "links": _links,
        "import": _import,
    }[a.command](a)

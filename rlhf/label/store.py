"""The labeling app's SQLite store: items, annotators (with their secret tokens), per-annotator queues (with the
display order), and labels.

One file holds everything, in WAL mode with `synchronous=FULL`: a label is committed (and fsynced) before the
server answers, so whatever the client saw acknowledged survives a crash. Labels are never deleted: undo stamps
`undone_at`, and a partial unique index keeps at most one live label per (annotator, item). Every label carries
a client-made `request_id` and a digest of what was asked: resending the same request (a retry after a lost
answer) is answered from the stored row; reusing a request_id for something else is refused.

An item has K >= 2 responses, kept in file order. A pair (K = 2) is answered A / B / tie / skip, optionally with
a strength; K > 2 responses are ranked (or skipped). Either way the stored `ranking` lists file indices, best
first, and `winner` is its head. Gold items (quality control) carry a known ranking and are mixed into queues.
The database holds the annotators' tokens in clear (so `rlhf label links` can print them again): keep it private.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.errors import UserError
from rlhf.io import sha256_text

SCHEMA_VERSION = 2
PAIR_CHOICES = ("A", "B", "tie", "skip")
MAX_RESPONSES = 9  # one digit key per response on the page
# "How much better" for a pair, exported as `margin` (the Llama-2 margin scale: 1/3, 2/3, 1).
DEFAULT_STRENGTH = (("slightly", 1 / 3), ("clearly", 2 / 3), ("much", 1.0))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL UNIQUE,
    instruction TEXT NOT NULL,
    input TEXT NOT NULL,
    prompt TEXT NOT NULL,
    display TEXT NOT NULL,
    responses TEXT NOT NULL,
    sources TEXT,
    gold TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    annotator TEXT NOT NULL REFERENCES annotators(name),
    item_id TEXT NOT NULL REFERENCES items(id),
    position INTEGER NOT NULL,
    shown TEXT NOT NULL,
    PRIMARY KEY (annotator, item_id)
);
CREATE INDEX IF NOT EXISTS assignments_queue ON assignments(annotator, position);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    payload_sha256 TEXT NOT NULL,
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie', 'skip', 'rank')),
    shown TEXT NOT NULL,
    ranking TEXT,
    winner INTEGER,
    strength TEXT,
    margin REAL,
    reason TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    undone_at REAL,
    FOREIGN KEY (annotator, item_id) REFERENCES assignments(annotator, item_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS labels_live ON labels(annotator, item_id) WHERE undone_at IS NULL;
"""


class NotAssigned(Exception):
    """The item is not in this annotator's queue (or the annotator is unknown)."""


class AlreadyLabeled(Exception):
    """The annotator already has a live label for this item, or the request_id was used for something else."""


class BadLabel(ValueError):
    """The answer does not fit the item (a ranking for a pair, a missing strength, ...)."""


@dataclass
class Item:
    """One comparison as stored: responses in file order, optional sources aligned with them, and for a gold
    (quality-control) item its known ranking (file indices, best first)."""

    id: str
    instruction: str
    input: str
    prompt: str
    display: str
    responses: tuple[str, ...]
    sources: tuple[str, ...] | None = None
    extra: dict[str, Any] | None = None
    gold: list[int] | None = field(default=None)

    def fingerprint_obj(self) -> list:
        obj = [self.id, self.instruction, self.input, self.prompt, list(self.responses), self.sources]
        return obj + [self.gold] if self.gold is not None else obj


def fingerprint(items: list[Item]) -> str:
    return sha256_text(json.dumps([it.fingerprint_obj() for it in items], ensure_ascii=False))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def plan_assignments(
    item_ids: list[str],
    annotators: list[str],
    overlap: float,
    overlap_k: int,
    seed: int,
    *,
    gold_ids: list[str] = (),
    gold_rate: float = 0.0,
) -> list[tuple[str, str, int]]:
    """(annotator, item_id, position) rows: every item goes to one annotator, except a share `overlap` of the
    items (rounded) that goes to `overlap_k` annotators, so agreement can be measured. Loads stay balanced
    (least-loaded annotator first, random tie-break); queue order is one seeded shuffle of the items (overlap
    items spread through it). Then gold items are mixed into each queue at random places so that they make up
    a share `gold_rate` of it (at most every gold item once per annotator)."""
    rng = random.Random(seed)
    n = len(item_ids)
    k = min(overlap_k, len(annotators))
    order = list(range(n))
    rng.shuffle(order)
    n_overlap = round(overlap * n) if k >= 2 else 0
    shared = set(rng.sample(range(n), n_overlap))
    load = dict.fromkeys(annotators, 0)
    queues: dict[str, list[str]] = {a: [] for a in annotators}
    for i in order:
        m = k if i in shared else 1
        for a in sorted(annotators, key=lambda a: (load[a], rng.random()))[:m]:
            load[a] += 1
            queues[a].append(item_ids[i])
    rows = []
    for a in annotators:
        queue = queues[a] + gold_picks(len(queues[a]), list(gold_ids), gold_rate, rng)
        rows += [(a, item_id, pos) for pos, item_id in enumerate(spread(queue, len(queues[a]), rng))]
    return rows


def gold_picks(n_regular: int, gold_ids: list[str], rate: float, rng: random.Random) -> list[str]:
    """Gold items for a queue of `n_regular` items so that they are a share `rate` of the whole queue."""
    if not gold_ids or rate <= 0:
        return []
    want = len(gold_ids) if rate >= 1 else round(rate * n_regular / (1 - rate))
    return rng.sample(gold_ids, min(max(want, 1 if n_regular else 0), len(gold_ids)))


def spread(queue: list[str], n_regular: int, rng: random.Random) -> list[str]:
    """The regular items in their order, with the items after them (gold) inserted at random places."""
    out = queue[:n_regular]
    for g in queue[n_regular:]:
        out.insert(rng.randint(0, len(out)), g)
    return out


@contextlib.contextmanager
def _unreadable_is(what: str, path: Path):
    """Turn SQLite failing to read the file into one UserError `what (SQLite's reason)` naming `path`. SQLite's
    error text quotes what it found in the file: a corrupted schema entry yields a message that is not UTF-8, and
    Python then raises UnicodeDecodeError instead of the DatabaseError, so both mean "not readable"."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        raise UserError(f"{what} ({e})", path) from None
    except UnicodeDecodeError as e:  # the undecodable message itself, its odd bytes replaced
        raise UserError(f"{what} ({bytes(e.object).decode('utf-8', 'replace')})", path) from None


def _connect(path: Path) -> sqlite3.Connection:
    with _unreadable_is("cannot open as an SQLite database", path):
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: is it a database?
    return conn


def _set_durable_mode(conn: sqlite3.Connection, path: Path) -> None:
    """WAL + synchronous=FULL (see the module docstring). Only once the file is known to be ours (or new): WAL
    mode is persistent, and someone else's database must be left exactly as it was."""
    with _unreadable_is("cannot open as an SQLite database", path):
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    if mode.lower() != "wal":
        raise UserError(
            f"cannot switch the database to WAL mode (got {mode!r}); is the folder writable?", path
        )


def _in_transaction(conn: sqlite3.Connection, fn):
    conn.execute("BEGIN IMMEDIATE")
    try:
        out = fn(conn)
        conn.execute("COMMIT")
        return out
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Store:
    """Thread-safe access to one labels database (a single connection behind a lock: SQLite writes are
    serialised anyway, and the server's work per request is a few indexed statements)."""

    def __init__(self, path: str | Path, *, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserError(
                "no such labels database (start one with `rlhf label serve PAIRS --db ...`)", self.path
            )
        if create:
            if self.path.is_dir():
                raise UserError("is a directory; expected a database file path", self.path)
            if not self.path.parent.is_dir():
                raise UserError("folder does not exist", self.path.parent)
            if not self.path.exists():  # it will hold the annotators' tokens: readable by its owner only
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._lock = threading.Lock()
        self.conn = _connect(self.path)
        try:
            self._check_schema(create)
        except UserError:
            self.conn.close()
            raise
        _set_durable_mode(self.conn, self.path)

    def _check_schema(self, create: bool) -> None:
        with _unreadable_is("not an SQLite database", self.path):
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise UserError("not a labels database (no 'meta' table)", self.path)
        if "meta" in tables:
            with _unreadable_is("not a labels database", self.path):
                version = self._meta_raw().get("schema_version")
            if version == "1" and {"items", "assignments", "labels"} <= tables:
                self._migrate_v1()
                tables.add("annotators")
            elif version != str(SCHEMA_VERSION):
                raise UserError(
                    f"labels database schema version {version!r}; this kit reads {SCHEMA_VERSION}", self.path
                )
            missing = sorted({"items", "annotators", "assignments", "labels"} - tables)
            if missing:  # the schema is created in one transaction: a file without all of it is not ours
                raise UserError(f"incomplete labels database (no table {', '.join(missing)})", self.path)
        elif not create:
            raise UserError("empty database; expected a labels database", self.path)

    def _migrate_v1(self) -> None:
        """Upgrade a database made by the first version of the app, in one transaction (all or nothing): pairs
        stored as response_0/1 become response lists, the swap flag becomes the shown order, every annotator gets
        a token, and labels keep their ids, request_ids, times and undos."""
        c = self.conn
        now = time.time()
        try:
            meta = {k: json.loads(v) for k, v in self._meta_raw().items() if k != "schema_version"}
            if not isinstance(meta["annotators"], list) or not all(
                isinstance(n, str) for n in meta["annotators"]
            ):
                raise ValueError("meta 'annotators' is not a list of names")
            c.execute("BEGIN IMMEDIATE")
            for old in ("items", "assignments", "labels"):
                c.execute(f"ALTER TABLE {old} RENAME TO v1_{old}")
            c.execute("DROP INDEX IF EXISTS assignments_queue")
            c.execute("DROP INDEX IF EXISTS labels_live")
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                c.execute(stmt)
            c.execute(
                "INSERT INTO items SELECT id, idx, instruction, input, prompt, display, "
                "json_array(response_0, response_1), "
                "CASE WHEN source_0 IS NULL THEN NULL ELSE json_array(source_0, source_1) END, NULL, extra "
                "FROM v1_items"
            )
            for name in meta["annotators"]:
                self._insert_annotator(c, name, now)
            c.execute(
                "INSERT INTO assignments SELECT annotator, item_id, position, "
                "CASE swapped WHEN 1 THEN '[1, 0]' ELSE '[0, 1]' END FROM v1_assignments"
            )
            for r in c.execute("SELECT * FROM v1_labels ORDER BY id").fetchall():
                answer = [r["item_id"], r["choice"], None, None, r["reason"]]
                win = r["winner"]
                c.execute(
                    "INSERT INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?)",
                    (
                        r["id"],
                        r["request_id"],
                        _sha256(json.dumps(answer, ensure_ascii=False)),
                        r["annotator"],
                        r["item_id"],
                        r["choice"],
                        "[1, 0]" if r["swapped"] else "[0, 1]",
                        None if win is None else json.dumps([win, 1 - win]),
                        win,
                        r["reason"],
                        r["created_at"],
                        r["undone_at"],
                    ),
                )
            for old in ("labels", "assignments", "items"):
                c.execute(f"DROP TABLE v1_{old}")
            added = {
                "gold_rate": 0.0,
                "gold_fingerprint": None,
                "strength": None,
                "guidelines": None,
                "open_access": len(meta["annotators"]) == 1,
                "admin_token": new_token(),
            }
            c.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in added.items()]
            )
            c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            c.execute("COMMIT")
        except (
            sqlite3.DatabaseError,
            ValueError,
            KeyError,
            TypeError,
        ) as e:  # not quite what the old app wrote
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise UserError(
                f"cannot upgrade this schema-1 labels database ({type(e).__name__}: {e}); it was left as it was",
                self.path,
            ) from None

    # -- setup ------------------------------------------------------------------------------------------

    def _meta_raw(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.conn.execute("SELECT key, value FROM meta")}

    @property
    def initialized(self) -> bool:
        with self._lock:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            return "meta" in tables and "items" in tables

    def meta(self) -> dict[str, Any]:
        with self._lock:
            raw = self._meta_raw()
        return {k: json.loads(v) for k, v in raw.items() if k != "schema_version"}

    def set_meta(self, **values: Any) -> None:
        with self._lock:
            _in_transaction(
                self.conn,
                lambda c: c.executemany(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in values.items()],
                ),
            )

    def initialize(
        self,
        items: list[Item],
        annotators: list[str],
        *,
        overlap: float,
        overlap_k: int,
        seed: int,
        source: str,
        compare_sources: tuple[str, str] | None = None,
        gold_items: list[Item] = (),
        gold_rate: float = 0.0,
        strength: list[tuple[str, float]] | None = None,
        guidelines: str | None = None,
        open_access: bool | None = None,
        preassigned: list[tuple[str, str]] = (),
        extra_meta: dict[str, Any] | None = None,
    ) -> None:
        """Create the schema, store the items, the annotators with new tokens and every annotator's queue, in one
        transaction. `open_access` (default: one annotator) lets loopback clients in without a token.
        `preassigned` (annotator, item_id) pairs (labels made elsewhere) head those queues, shown in file order;
        the other items are planned as usual."""
        gold_items = list(gold_items)
        taken = {i for _, i in preassigned}
        plan = plan_assignments(
            [it.id for it in items if it.id not in taken],
            annotators,
            overlap,
            overlap_k,
            seed,
            gold_ids=[it.id for it in gold_items],
            gold_rate=gold_rate,
        )
        fixed = [(a, i, -1 - n) for n, (a, i) in enumerate(reversed(preassigned))]  # before position 0
        meta = {
            "annotators": annotators,
            "overlap": overlap,
            "overlap_k": overlap_k,
            "seed": seed,
            "source": source,
            "fingerprint": fingerprint(items),
            "compare_sources": list(compare_sources) if compare_sources else None,
            "gold_rate": gold_rate if gold_items else 0.0,
            "gold_fingerprint": fingerprint(gold_items) if gold_items else None,
            "strength": [list(s) for s in strength] if strength else None,
            "guidelines": guidelines,
            "open_access": len(annotators) == 1 if open_access is None else open_access,
            "admin_token": new_token(),
            "secret": secrets.token_hex(32),
            "created_at": time.time(),
            **(extra_meta or {}),
        }
        all_items = items + gold_items
        sizes = {it.id: len(it.responses) for it in all_items}
        rng = random.Random(f"{seed}:shown")
        now = time.time()

        def write(c: sqlite3.Connection) -> None:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                c.execute(stmt)  # DDL is transactional in SQLite: all of it or none
            c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            c.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
            c.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        it.id,
                        i,
                        it.instruction,
                        it.input,
                        it.prompt,
                        it.display,
                        json.dumps(list(it.responses), ensure_ascii=False),
                        json.dumps(list(it.sources), ensure_ascii=False) if it.sources else None,
                        json.dumps(it.gold) if it.gold is not None else None,
                        json.dumps(it.extra or {}, ensure_ascii=False),
                    )
                    for i, it in enumerate(all_items)
                ],
            )
            for name in annotators:
                self._insert_annotator(c, name, now)
            c.executemany(
                "INSERT INTO assignments VALUES (?, ?, ?, ?)",
                [(a, i, pos, json.dumps(rng.sample(range(sizes[i]), sizes[i]))) for a, i, pos in plan]
                + [(a, i, pos, json.dumps(list(range(sizes[i])))) for a, i, pos in fixed],
            )

        with self._lock:
            _in_transaction(self.conn, write)

    @staticmethod
    def _insert_annotator(c: sqlite3.Connection, name: str, now: float) -> str:
        token = new_token()
        c.execute("INSERT INTO annotators VALUES (?, ?, ?, ?)", (name, token, _sha256(token), now))
        return token

    # -- annotators and tokens --------------------------------------------------------------------------

    def annotators(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.conn.execute("SELECT name FROM annotators ORDER BY created_at, rowid")]

    def tokens(self) -> dict[str, str]:
        """Every annotator's token, by name (for `rlhf label links` and `serve`'s printout)."""
        with self._lock:
            return {
                r[0]: r[1] for r in self.conn.execute("SELECT name, token FROM annotators ORDER BY rowid")
            }

    def identity(self, token: str) -> str | None:
        """The annotator a token belongs to, or None. Looked up by the token's SHA-256 (not the token itself)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT name FROM annotators WHERE token_sha256=?", (_sha256(token),)
            ).fetchone()
        return None if row is None else row[0]

    def open_access(self) -> bool:
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key='open_access'").fetchone()
        return bool(row and json.loads(row[0]))

    def add_annotator(self, name: str, *, n_items: int | None = None) -> tuple[str, int]:
        """Add an annotator to a running campaign: a new token, and a queue of the `n_items` regular items with
        the fewest annotators so far (default: the average queue length), in a seeded random order, with gold
        items mixed in at the campaign's rate. From now on every client needs a token. Returns (token, queue)."""
        meta = self.meta()
        rng = random.Random(f"{meta['seed']}:{name}")

        def write(c: sqlite3.Connection) -> tuple[str, int]:
            if c.execute("SELECT 1 FROM annotators WHERE name=?", (name,)).fetchone():
                raise UserError(f"annotator {name!r} already exists", self.path)
            counts = {
                r[0]: (r[1], r[2])
                for r in c.execute(
                    "SELECT i.id, COUNT(a.annotator), json_array_length(i.responses) FROM items i "
                    "LEFT JOIN assignments a ON a.item_id = i.id WHERE i.gold IS NULL GROUP BY i.id"
                )
            }
            gold = {
                r[0]: r[1]
                for r in c.execute(
                    "SELECT id, json_array_length(responses) FROM items WHERE gold IS NOT NULL"
                )
            }
            n_people = c.execute("SELECT COUNT(*) FROM annotators").fetchone()[0]
            regular_assigned = sum(n for n, _ in counts.values())
            want = n_items if n_items is not None else round(regular_assigned / max(n_people, 1))
            ids = list(counts)
            rng.shuffle(ids)
            ids.sort(key=lambda i: counts[i][0])  # stable: fewest annotators first, random among equals
            queue = ids[: max(0, min(want, len(ids)))]
            rng.shuffle(queue)
            full = spread(
                queue + gold_picks(len(queue), sorted(gold), meta["gold_rate"], rng), len(queue), rng
            )
            token = self._insert_annotator(c, name, time.time())
            sizes = {i: n for i, (_, n) in counts.items()} | gold
            c.executemany(
                "INSERT INTO assignments VALUES (?, ?, ?, ?)",
                [
                    (name, i, pos, json.dumps(rng.sample(range(sizes[i]), sizes[i])))
                    for pos, i in enumerate(full)
                ],
            )
            c.execute("INSERT OR REPLACE INTO meta VALUES ('open_access', 'false')")
            return token, len(full)

        with self._lock:
            return _in_transaction(self.conn, write)

    # -- queue ------------------------------------------------------------------------------------------

    def _progress(self, annotator: str) -> dict[str, int]:
        total = self.conn.execute(
            "SELECT COUNT(*) FROM assignments WHERE annotator=?", (annotator,)
        ).fetchone()[0]
        done = self.conn.execute(
            "SELECT COUNT(*) FROM labels WHERE annotator=? AND undone_at IS NULL", (annotator,)
        ).fetchone()[0]
        return {"done": done, "total": total}

    def _view(self, annotator: str, item_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT i.id, i.display, i.responses, i.extra, a.shown FROM assignments a "
            "JOIN items i ON i.id = a.item_id "
            "WHERE a.annotator=? AND a.item_id=?",
            (annotator, item_id),
        ).fetchone()
        if row is None:
            return None
        responses = json.loads(row["responses"])
        # What the page sees: no sources, no file order, no gold mark (the comparison stays blind); a conversation's
        # turns, so the page can show them one by one.
        view = {
            "item_id": row["id"],
            "prompt": row["display"],
            "responses": [responses[i] for i in json.loads(row["shown"])],
        }
        messages = json.loads(row["extra"] or "{}").get("messages")
        if messages:
            view["messages"] = messages
        return view

    def _next_id(self, annotator: str) -> str | None:
        row = self.conn.execute(
            "SELECT a.item_id FROM assignments a WHERE a.annotator=? AND NOT EXISTS ("
            "  SELECT 1 FROM labels l WHERE l.annotator=a.annotator AND l.item_id=a.item_id AND l.undone_at IS NULL"
            ") ORDER BY a.position LIMIT 1",
            (annotator,),
        ).fetchone()
        return None if row is None else row[0]

    def next_item(self, annotator: str) -> dict[str, Any]:
        with self._lock:
            self._require_annotator(annotator)
            nid = self._next_id(annotator)
            return {
                "item": None if nid is None else self._view(annotator, nid),
                "progress": self._progress(annotator),
            }

    def _require_annotator(self, annotator: str) -> None:
        if not self.conn.execute("SELECT 1 FROM annotators WHERE name=?", (annotator,)).fetchone():
            raise NotAssigned(f"unknown annotator {annotator!r}")

    # -- labels -----------------------------------------------------------------------------------------

    def _decode(
        self, n: int, shown: list[int], choice: str, ranking: list[int] | None, strength: str | None
    ) -> tuple[list[int] | None, float | None]:
        """(ranking in file indices, margin) for an answer given in display positions; BadLabel if it does not
        fit the item."""
        scale = dict(self.meta_cache.get("strength") or [])
        if n == 2:
            if choice not in PAIR_CHOICES:
                raise BadLabel(f"a pair is answered with one of {', '.join(PAIR_CHOICES)}")
            if ranking is not None:
                raise BadLabel("a pair is answered with a choice, not a ranking")
            if choice in ("tie", "skip"):
                if strength is not None:
                    raise BadLabel(f"a {choice} has no strength")
                return None, None
            if scale and strength not in scale:
                raise BadLabel(
                    f"this campaign asks how much better: strength must be one of {', '.join(scale)}"
                )
            if not scale and strength is not None:
                raise BadLabel("this campaign has no strength scale")
            best = shown[0 if choice == "A" else 1]
            return [best, 1 - best], (scale[strength] if scale else None)
        if strength is not None:
            raise BadLabel("a ranking has no strength (its margins come from the rank distance)")
        if choice == "skip":
            if ranking is not None:
                raise BadLabel("a skip has no ranking")
            return None, None
        if choice != "rank":
            raise BadLabel(f"an item with {n} responses is answered with 'rank' (or 'skip')")
        if ranking is None or sorted(ranking) != list(range(n)):
            raise BadLabel(f"ranking must order all {n} shown responses (positions 0..{n - 1}), best first")
        return [shown[p] for p in ranking], None

    @property
    def meta_cache(self) -> dict[str, Any]:
        if not hasattr(self, "_meta_cache"):
            self._meta_cache = {
                k: json.loads(v) for k, v in self._meta_raw().items() if k != "schema_version"
            }
        return self._meta_cache

    def add_label(
        self,
        annotator: str,
        item_id: str,
        choice: str,
        reason: str,
        request_id: str,
        *,
        ranking: list[int] | None = None,
        strength: str | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Commit one label, then return progress and the next item. `choice`/`ranking` are in display positions
        (A = the first response shown). Resending a `request_id` with the same answer is answered from the stored
        label (`duplicate: True`) and adds nothing; with a different answer it is refused (AlreadyLabeled)."""
        payload = _sha256(json.dumps([item_id, choice, ranking, strength, reason], ensure_ascii=False))

        def write(c: sqlite3.Connection) -> bool:
            dup = c.execute(
                "SELECT annotator, payload_sha256 FROM labels WHERE request_id=?", (request_id,)
            ).fetchone()
            if dup is not None:
                if dup["annotator"] != annotator or dup["payload_sha256"] != payload:
                    raise AlreadyLabeled("request_id already used for a different label")
                return True
            a = c.execute(
                "SELECT a.shown, json_array_length(i.responses) AS n FROM assignments a "
                "JOIN items i ON i.id = a.item_id WHERE a.annotator=? AND a.item_id=?",
                (annotator, item_id),
            ).fetchone()
            if a is None:
                raise NotAssigned(f"that item is not in {annotator!r}'s queue")  # ids are not echoed back
            shown = json.loads(a["shown"])
            order, margin = self._decode(a["n"], shown, choice, ranking, strength)
            try:
                c.execute(
                    "INSERT INTO labels (request_id, payload_sha256, annotator, item_id, choice, shown, ranking, "
                    "winner, strength, margin, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        request_id,
                        payload,
                        annotator,
                        item_id,
                        choice,
                        a["shown"],
                        None if order is None else json.dumps(order),
                        None if order is None else order[0],
                        strength,
                        margin,
                        reason,
                        now or time.time(),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyLabeled(f"that item already has a label from {annotator!r}") from None
            return False

        with self._lock:
            duplicate = _in_transaction(self.conn, write)
            nid = self._next_id(annotator)
            return {
                "ok": True,
                "duplicate": duplicate,
                "progress": self._progress(annotator),
                "next": None if nid is None else self._view(annotator, nid),
            }

    def import_labels(self, rows: list[dict[str, Any]]) -> None:
        """Labels made elsewhere (Label Studio), in file order: dicts with annotator, item_id, choice ('A' = the
        first response in the file), reason, request_id, created_at. One transaction."""
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for r in rows:
                    shown = json.loads(
                        self.conn.execute(
                            "SELECT shown FROM assignments WHERE annotator=? AND item_id=?",
                            (r["annotator"], r["item_id"]),
                        ).fetchone()[0]
                    )
                    choice = r["choice"]
                    if choice in ("A", "B") and shown != [0, 1]:  # file order -> the display order stored
                        choice = "A" if shown[0] == (0 if choice == "A" else 1) else "B"
                    order, margin = self._decode(2, shown, choice, None, None)
                    payload = _sha256(json.dumps([r["item_id"], choice, None, None, r["reason"]]))
                    self.conn.execute(
                        "INSERT INTO labels (request_id, payload_sha256, annotator, item_id, choice, shown, "
                        "ranking, winner, strength, margin, reason, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
                        (
                            r["request_id"],
                            payload,
                            r["annotator"],
                            r["item_id"],
                            choice,
                            json.dumps(shown),
                            None if order is None else json.dumps(order),
                            None if order is None else order[0],
                            r["reason"],
                            r["created_at"],
                        ),
                    )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    def undo(self, annotator: str, *, now: float | None = None) -> dict[str, Any]:
        """Withdraw the annotator's most recent live label; its item is shown again (with the old reason)."""
        with self._lock:
            self._require_annotator(annotator)

            def write(c: sqlite3.Connection):
                row = c.execute(
                    "SELECT id, item_id, choice, reason FROM labels WHERE annotator=? AND undone_at IS NULL "
                    "ORDER BY id DESC LIMIT 1",
                    (annotator,),
                ).fetchone()
                if row is not None:
                    c.execute("UPDATE labels SET undone_at=? WHERE id=?", (now or time.time(), row["id"]))
                return row

            row = _in_transaction(self.conn, write)
            if row is None:
                nid = self._next_id(annotator)
                return {
                    "ok": True,
                    "undone": None,
                    "progress": self._progress(annotator),
                    "next": None if nid is None else self._view(annotator, nid),
                }
            return {
                "ok": True,
                "undone": {"item_id": row["item_id"], "choice": row["choice"], "reason": row["reason"]},
                "progress": self._progress(annotator),
                "next": self._view(annotator, row["item_id"]),
            }

    # -- reading everything (export, stats) -------------------------------------------------------------

    def items(self) -> list[dict[str, Any]]:
        """Items in file order; responses/sources/gold/extra decoded."""
        with self._lock:
            rows = [dict(r) for r in self.conn.execute("SELECT * FROM items ORDER BY idx")]
        for r in rows:
            for key in ("responses", "sources", "gold", "extra"):
                r[key] = None if r[key] is None else json.loads(r[key])
        return rows

    def assignments(self) -> list[dict[str, Any]]:
        """Queue rows; `shown` decoded, and for a pair `swapped` = 1 when the second response is shown first."""
        with self._lock:
            rows = [
                dict(r) for r in self.conn.execute("SELECT * FROM assignments ORDER BY annotator, position")
            ]
        for r in rows:
            r["shown"] = json.loads(r["shown"])
            r["swapped"] = int(r["shown"] == [1, 0])
        return rows

    def labels(self, *, live_only: bool = True) -> list[dict[str, Any]]:
        sql = "SELECT * FROM labels" + (" WHERE undone_at IS NULL" if live_only else "") + " ORDER BY id"
        with self._lock:
            rows = [dict(r) for r in self.conn.execute(sql)]
        for r in rows:
            r["shown"] = json.loads(r["shown"])
            r["ranking"] = None if r["ranking"] is None else json.loads(r["ranking"])
            r["swapped"] = int(r["shown"] == [1, 0])
        return rows

    def close(self) -> None:
        with self._lock:
            self.conn.close()

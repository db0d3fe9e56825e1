"""The labeling app's SQLite store: items, per-annotator queues (with the display order), and labels.

One file holds everything, in WAL mode with `synchronous=FULL`: a label is committed (and fsynced) before the
server answers, so whatever the client saw acknowledged survives a crash. Labels are never deleted: undo stamps
`undone_at`, and a partial unique index keeps at most one live label per (annotator, item). Every label carries
a client-made `request_id`; resending the same request (a retry after a lost answer) is answered from the
stored row instead of adding a second label.
"""

from __future__ import annotations

import json
import random
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf.errors import UserError
from rlhf.io import sha256_text

SCHEMA_VERSION = 1
CHOICES = ("A", "B", "tie", "skip")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    idx INTEGER NOT NULL UNIQUE,
    instruction TEXT NOT NULL,
    input TEXT NOT NULL,
    prompt TEXT NOT NULL,
    display TEXT NOT NULL,
    response_0 TEXT NOT NULL,
    response_1 TEXT NOT NULL,
    source_0 TEXT,
    source_1 TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS assignments (
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items(id),
    position INTEGER NOT NULL,
    swapped INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    PRIMARY KEY (annotator, item_id)
);
CREATE INDEX IF NOT EXISTS assignments_queue ON assignments(annotator, position);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    annotator TEXT NOT NULL,
    item_id TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie', 'skip')),
    swapped INTEGER NOT NULL,
    winner INTEGER CHECK (winner IN (0, 1)),
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
    """The annotator already has a live label for this item (a second key press, another tab)."""


@dataclass
class Item:
    """One comparison as stored: responses in file order (0, 1), optional sources aligned with them."""

    id: str
    instruction: str
    input: str
    prompt: str
    display: str
    responses: tuple[str, str]
    sources: tuple[str, str] | None = None
    extra: dict[str, Any] | None = None

    def fingerprint_obj(self) -> list:
        return [self.id, self.instruction, self.input, self.prompt, list(self.responses), self.sources]


def fingerprint(items: list[Item]) -> str:
    return sha256_text(json.dumps([it.fingerprint_obj() for it in items], ensure_ascii=False))


def plan_assignments(
    item_ids: list[str], annotators: list[str], overlap: float, overlap_k: int, seed: int
) -> list[tuple[str, str, int, int]]:
    """(annotator, item_id, position, swapped) rows: every item goes to one annotator, except a share `overlap`
    of the items (rounded) that goes to `overlap_k` annotators, so agreement can be measured. Loads stay
    balanced (least-loaded annotator first, random tie-break); queue order is one seeded shuffle of the items
    (overlap items spread through it); each (annotator, item) gets its own coin for which response is shown left.
    """
    rng = random.Random(seed)
    n = len(item_ids)
    k = min(overlap_k, len(annotators))
    order = list(range(n))
    rng.shuffle(order)
    n_overlap = round(overlap * n) if k >= 2 else 0
    shared = set(rng.sample(range(n), n_overlap))
    load = dict.fromkeys(annotators, 0)
    rows = []
    for pos, i in enumerate(order):
        m = k if i in shared else 1
        chosen = sorted(annotators, key=lambda a: (load[a], rng.random()))[:m]
        for a in chosen:
            load[a] += 1
            rows.append((a, item_ids[i], pos, int(rng.random() < 0.5)))
    return rows


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: is it a database?
    except sqlite3.DatabaseError as e:
        raise UserError(f"cannot open as an SQLite database ({e})", path) from None
    return conn


def _set_durable_mode(conn: sqlite3.Connection, path: Path) -> None:
    """WAL + synchronous=FULL (see the module docstring). Only once the file is known to be ours (or new): WAL
    mode is persistent, and someone else's database must be left exactly as it was."""
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.DatabaseError as e:
        raise UserError(f"cannot open as an SQLite database ({e})", path) from None
    if mode.lower() != "wal":
        raise UserError(
            f"cannot switch the database to WAL mode (got {mode!r}); is the folder writable?", path
        )


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
        self._lock = threading.Lock()
        self.conn = _connect(self.path)
        try:
            self._check_schema(create)
        except UserError:
            self.conn.close()
            raise
        _set_durable_mode(self.conn, self.path)

    def _check_schema(self, create: bool) -> None:
        try:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise UserError(f"not an SQLite database ({e})", self.path) from None
        if tables and "meta" not in tables:
            raise UserError("not a labels database (no 'meta' table)", self.path)
        if "meta" in tables:
            try:
                version = self._meta_raw().get("schema_version")
            except sqlite3.DatabaseError as e:
                raise UserError(f"not a labels database ({e})", self.path) from None
            if version != str(SCHEMA_VERSION):
                raise UserError(
                    f"labels database schema version {version!r}; this kit reads {SCHEMA_VERSION}", self.path
                )
            missing = sorted({"items", "assignments", "labels"} - tables)
            if missing:  # the schema is created in one transaction: a file without all of it is not ours
                raise UserError(f"incomplete labels database (no table {', '.join(missing)})", self.path)
        elif not create:
            raise UserError("empty database; expected a labels database", self.path)

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
    ) -> None:
        """Create the schema, store the items and every annotator's queue, in one transaction."""
        plan = plan_assignments([it.id for it in items], annotators, overlap, overlap_k, seed)
        meta = {
            "annotators": annotators,
            "overlap": overlap,
            "overlap_k": overlap_k,
            "seed": seed,
            "source": source,
            "fingerprint": fingerprint(items),
            "compare_sources": list(compare_sources) if compare_sources else None,
            "secret": secrets.token_hex(32),
            "created_at": time.time(),
        }
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    c.execute(stmt)  # DDL is transactional in SQLite: all of it or none
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                c.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
                c.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            it.id,
                            i,
                            it.instruction,
                            it.input,
                            it.prompt,
                            it.display,
                            it.responses[0],
                            it.responses[1],
                            it.sources[0] if it.sources else None,
                            it.sources[1] if it.sources else None,
                            json.dumps(it.extra or {}, ensure_ascii=False),
                        )
                        for i, it in enumerate(items)
                    ],
                )
                c.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?)", plan)
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    # -- queue ------------------------------------------------------------------------------------------

    def annotators(self) -> list[str]:
        return self.meta()["annotators"]

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
            "SELECT i.*, a.swapped, a.position FROM assignments a JOIN items i ON i.id = a.item_id "
            "WHERE a.annotator=? AND a.item_id=?",
            (annotator, item_id),
        ).fetchone()
        if row is None:
            return None
        left, right = (
            (row["response_1"], row["response_0"])
            if row["swapped"]
            else (row["response_0"], row["response_1"])
        )
        # What the page sees: no sources, no file order, no swap flag (the comparison stays blind).
        return {"item_id": row["id"], "prompt": row["display"], "left": left, "right": right}

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
        if not self.conn.execute(
            "SELECT 1 FROM assignments WHERE annotator=? LIMIT 1", (annotator,)
        ).fetchone():
            raise NotAssigned(f"unknown annotator {annotator!r}")

    # -- labels -----------------------------------------------------------------------------------------

    def add_label(
        self,
        annotator: str,
        item_id: str,
        choice: str,
        reason: str,
        request_id: str,
        *,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Commit one label, then return progress and the next item. Resending a `request_id` is answered from the
        stored label (`duplicate: True`) and adds nothing."""
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}")
        with self._lock:
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                dup = c.execute(
                    "SELECT annotator, item_id FROM labels WHERE request_id=?", (request_id,)
                ).fetchone()
                if dup is not None:
                    c.execute("COMMIT")
                    if (dup["annotator"], dup["item_id"]) != (annotator, item_id):
                        raise AlreadyLabeled("request_id already used for another label")
                    duplicate = True
                else:
                    a = c.execute(
                        "SELECT swapped FROM assignments WHERE annotator=? AND item_id=?",
                        (annotator, item_id),
                    ).fetchone()
                    if a is None:
                        raise NotAssigned(f"item {item_id!r} is not in {annotator!r}'s queue")
                    swapped = a["swapped"]
                    winner = None if choice in ("tie", "skip") else (0 if choice == "A" else 1) ^ swapped
                    try:
                        c.execute(
                            "INSERT INTO labels (request_id, annotator, item_id, choice, swapped, winner, reason, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                request_id,
                                annotator,
                                item_id,
                                choice,
                                swapped,
                                winner,
                                reason,
                                now or time.time(),
                            ),
                        )
                    except sqlite3.IntegrityError:
                        raise AlreadyLabeled(
                            f"item {item_id!r} already has a label from {annotator!r}"
                        ) from None
                    c.execute("COMMIT")
                    duplicate = False
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise
            nid = self._next_id(annotator)
            return {
                "ok": True,
                "duplicate": duplicate,
                "progress": self._progress(annotator),
                "next": None if nid is None else self._view(annotator, nid),
            }

    def undo(self, annotator: str, *, now: float | None = None) -> dict[str, Any]:
        """Withdraw the annotator's most recent live label; its item is shown again (with the old reason)."""
        with self._lock:
            self._require_annotator(annotator)
            c = self.conn
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(
                    "SELECT id, item_id, choice, reason FROM labels WHERE annotator=? AND undone_at IS NULL "
                    "ORDER BY id DESC LIMIT 1",
                    (annotator,),
                ).fetchone()
                if row is not None:
                    c.execute("UPDATE labels SET undone_at=? WHERE id=?", (now or time.time(), row["id"]))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
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
        with self._lock:
            return [dict(r) for r in self.conn.execute("SELECT * FROM items ORDER BY idx")]

    def assignments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(r) for r in self.conn.execute("SELECT * FROM assignments ORDER BY annotator, position")
            ]

    def labels(self, *, live_only: bool = True) -> list[dict[str, Any]]:
        sql = "SELECT * FROM labels" + (" WHERE undone_at IS NULL" if live_only else "") + " ORDER BY id"
        with self._lock:
            return [dict(r) for r in self.conn.execute(sql)]

    def close(self) -> None:
        with self._lock:
            self.conn.close()

"""Load and faults on a real uvicorn process: 8 client threads x 250 labels, the server SIGKILLed mid-load and
restarted on the same database. Every label that got a 2xx answer must be there exactly once, nothing else."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid

import httpx
from _label_helpers import ROOT, free_port, start_server, stop, write_pairs

from rlhf.label.cli import cli

THREADS = 8
PER_THREAD = 250
TOTAL = THREADS * PER_THREAD
KILL_AFTER = 700  # acknowledged labels before the SIGKILL
DEADLINE_S = 90.0  # the whole load phase; every loop below is bounded by it


class Worker(threading.Thread):
    """One annotator: fetch the session and the next item, then label until the queue is done. A failed request
    (server gone) is resent with the same request_id until it gets an answer."""

    def __init__(self, base: str, name: str, deadline: float):
        super().__init__(daemon=True)
        self.base, self.name, self.deadline = base, name, deadline
        self.acked: list[str] = []
        self.transport_errors = 0
        self.duplicates = 0
        self.failure: str | None = None
        self.latencies: list[float] = []

    def call(self, client: httpx.Client, method: str, path: str, **kw) -> httpx.Response:
        while time.monotonic() < self.deadline:
            try:
                t = time.perf_counter()
                r = client.request(method, path, **kw)
                self.latencies.append(time.perf_counter() - t)
                return r
            except httpx.TransportError:
                self.transport_errors += 1
                time.sleep(0.05)
        raise TimeoutError(f"{self.name}: no answer before the deadline")

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base, timeout=10.0) as client:
                csrf = self.call(client, "GET", "/api/session").json()["csrf"]
                item = self.call(client, "GET", "/api/next", params={"annotator": self.name}).json()["item"]
                k = 0
                while item is not None and k < PER_THREAD:
                    body = {
                        "annotator": self.name,
                        "item_id": item["item_id"],
                        "choice": ("A", "B", "tie", "skip", "A")[k % 5],
                        "reason": f"load {k}",
                        "request_id": f"{self.name}-{k:04d}-{uuid.uuid4().hex[:12]}",
                    }
                    r = self.call(client, "POST", "/api/label", json=body, headers={"X-CSRF-Token": csrf})
                    if not 200 <= r.status_code < 300:
                        self.failure = f"{self.name}: HTTP {r.status_code} {r.text[:200]}"
                        return
                    data = r.json()
                    self.acked.append(body["request_id"])
                    self.duplicates += data["duplicate"]
                    item = data["next"]
                    k += 1
        except Exception as e:  # reported by the test, never swallowed
            self.failure = f"{self.name}: {type(e).__name__}: {e}"


def test_concurrent_labels_survive_sigkill_and_restart(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", TOTAL)
    db = tmp_path / "labels.sqlite"
    names = [f"w{i}" for i in range(THREADS)]
    args = [str(pairs), "--db", str(db), "--annotators", ",".join(names), "--overlap", "0"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = start_server(args, port, log)
    restarted = None
    try:
        t0 = time.monotonic()
        deadline = t0 + DEADLINE_S
        workers = [Worker(base, n, deadline) for n in names]
        for w in workers:
            w.start()
        while sum(len(w.acked) for w in workers) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.kill()  # SIGKILL: no shutdown, no flush, requests cut off mid-flight
        proc.wait(10)
        acked_at_kill = sum(len(w.acked) for w in workers)
        t_kill = time.monotonic()
        restarted = start_server(args, port, log)  # same port, same db: the clients keep retrying meanwhile
        downtime = time.monotonic() - t_kill
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()) + 5)
        elapsed = time.monotonic() - t0
        assert not any(w.is_alive() for w in workers), "a client thread did not finish"
    finally:
        stop(proc)
        stop(restarted)

    failures = [w.failure for w in workers if w.failure]
    assert not failures, failures
    acked = [rid for w in workers for rid in w.acked]
    retries = sum(w.transport_errors for w in workers)
    assert len(acked) == len(set(acked)) == TOTAL
    assert 0 < acked_at_kill < TOTAL and retries > 0  # the kill really landed mid-load

    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = c.execute("SELECT request_id, annotator, item_id, undone_at FROM labels").fetchall()
    per_request = {}
    for rid, *_ in rows:
        per_request[rid] = per_request.get(rid, 0) + 1
    assert set(per_request) == set(acked)  # every acknowledged label is there, and nothing unacknowledged
    assert all(n == 1 for n in per_request.values())  # exactly once
    assert len(rows) == TOTAL and all(r[3] is None for r in rows)
    assert len({(a, i) for _, a, i, _ in rows}) == TOTAL  # one label per (annotator, item)

    out = tmp_path / "prefs.jsonl"
    assert cli(["export", "--db", str(db), "--out", str(out)]) == 0
    assert (
        len(out.read_text().splitlines()) == TOTAL * 3 // 5
    )  # A, B, tie, skip, A: 3 of 5 carry a preference

    lat = sorted(x for w in workers for x in w.latencies)
    report = {
        "threads": THREADS,
        "labels_acked": len(acked),
        "labels_in_db": len(rows),
        "acked_before_kill": acked_at_kill,
        "transport_errors_retried": retries,
        "duplicate_answers_after_restart": sum(w.duplicates for w in workers),
        "restart_downtime_s": round(downtime, 2),
        "load_phase_s": round(elapsed, 2),
        "labels_per_s": round(TOTAL / elapsed, 1),
        "latency_p50_ms": round(1000 * lat[len(lat) // 2], 1),
        "latency_p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1),
    }
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "label_load.json").write_text(json.dumps(report, indent=2) + "\n")
    print("label load:", json.dumps(report))

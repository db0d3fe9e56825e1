"""Load and faults on a real uvicorn process: 8 annotators (each with their own token) x 250 labels, the server
SIGKILLed mid-load and restarted on the same database. Every label that got a 2xx answer must be there exactly
once, nothing else. And a 100 MB body is refused at once while /api/health keeps answering."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import uuid

import httpx
from _label_helpers import ROOT, free_port, start_server, stop, write_pairs

from rlhf.label.cli import cli
from rlhf.label.store import Store

THREADS = 8
PER_THREAD = 250
TOTAL = THREADS * PER_THREAD
KILL_AFTER = 700  # acknowledged labels before the SIGKILL
DEADLINE_S = 90.0  # the whole load phase; every loop below is bounded by it


class Worker(threading.Thread):
    """One annotator: fetch the session and the next item, then label until the queue is done. A failed request
    (server gone) is resent with the same request_id until it gets an answer."""

    def __init__(self, base: str, name: str, token: str, deadline: float):
        super().__init__(daemon=True)
        self.base, self.name, self.token, self.deadline = base, name, token, deadline
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
            auth = {
                "Authorization": f"Bearer {self.token}"
            }  # the annotator's own link: identity from the token
            with httpx.Client(base_url=self.base, timeout=10.0, headers=auth) as client:
                session = self.call(client, "GET", "/api/session").json()
                if session["annotator"] != self.name:
                    self.failure = f"{self.name}: token belongs to {session['annotator']!r}"
                    return
                csrf = session["csrf"]
                item = self.call(client, "GET", "/api/next").json()["item"]
                k = 0
                while item is not None and k < PER_THREAD:
                    body = {
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
    assert cli(["serve", *args, "--no-serve", "--quiet"]) == 0
    store = Store(db)
    tokens = store.tokens()
    store.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    proc = start_server(args, port, log, token=tokens[names[0]])
    restarted = None
    try:
        t0 = time.monotonic()
        deadline = t0 + DEADLINE_S
        workers = [Worker(base, n, tokens[n], deadline) for n in names]
        for w in workers:
            w.start()
        while sum(len(w.acked) for w in workers) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.kill()  # SIGKILL: no shutdown, no flush, requests cut off mid-flight
        proc.wait(10)
        acked_at_kill = sum(len(w.acked) for w in workers)
        t_kill = time.monotonic()
        restarted = start_server(
            args, port, log, token=tokens[names[0]]
        )  # same port, same db: the clients keep retrying meanwhile
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


def _send_big_body(port: int, headers: bytes, body_chunks, result: dict) -> None:
    """Send a request with a huge body on a raw socket; record when and how the server answered."""
    t0 = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(headers)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server answered and closed the connection: the rest is never read
            pass
        s.settimeout(10)
        try:
            answer = s.recv(65536)
        except OSError:
            answer = b""
    result.update(status=answer.split(b" ", 2)[1:2], seconds=time.monotonic() - t0, sent=sent, answer=answer)


def test_100mb_body_is_refused_fast_while_health_answers(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 5)
    db = tmp_path / "labels.sqlite"
    port = free_port()
    limit = 100_000  # --max-body-bytes (default 65536)
    proc = start_server(
        [str(pairs), "--db", str(db), "--max-body-bytes", str(limit)], port, tmp_path / "server.log"
    )
    try:
        csrf = httpx.get(f"http://127.0.0.1:{port}/api/session").json()["csrf"]
        base_headers = (
            f"POST /api/label HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"X-CSRF-Token: {csrf}\r\n"
        )
        mb = b" " * (1 << 20)
        # 1) Content-Length: 100 MB, body streamed behind it; 2) the same 100 MB chunked, no length.
        declared = (base_headers + f"Content-Length: {100 << 20}\r\n\r\n").encode()
        chunked = (base_headers + "Transfer-Encoding: chunked\r\n\r\n").encode()
        plans = {
            "content-length": (declared, (mb for _ in range(100))),
            "chunked": (chunked, (b"%x\r\n" % len(mb) + mb + b"\r\n" for _ in range(100))),
        }
        for what, (headers, chunks) in plans.items():
            result: dict = {}
            t = threading.Thread(target=_send_big_body, args=(port, headers, chunks, result), daemon=True)
            t.start()
            health = []
            while t.is_alive() and len(health) < 50:
                t0 = time.monotonic()
                r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                health.append((r.status_code, time.monotonic() - t0))
                time.sleep(0.02)
            t.join(30)
            assert not t.is_alive(), what
            assert result["status"] == [b"413"], (what, result["answer"][:200])
            assert (
                f"limit of {limit} bytes".encode() in result["answer"] and b"   " not in result["answer"]
            )  # no echo
            assert result["seconds"] < 5, (what, result["seconds"])
            assert result["sent"] < 50 << 20, what  # cut off long before the 100 MB were read
            assert all(code == 200 and dt < 1.0 for code, dt in health), (what, max(dt for _, dt in health))
        r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
        assert r.status_code == 200
    finally:
        stop(proc)
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 0

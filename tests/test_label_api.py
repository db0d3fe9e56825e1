"""The labeling app through FastAPI's TestClient: queues, overlap, undo, token, CSRF, export, stats, CLI errors."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from _label_helpers import pair_row, write_pairs
from fastapi.testclient import TestClient

from rlhf.label import human_winrate
from rlhf.label.cli import cli
from rlhf.label.export import PREF_KEYS
from rlhf.label.pairs import load_pairs
from rlhf.label.server import create_app
from rlhf.label.stats import cohen_kappa, compute_stats, wilson
from rlhf.label.store import Store

TOKEN = "s3cret-token-for-tests"


def make_store(
    tmp_path: Path, n: int = 12, annotators=("alice",), overlap=0.0, overlap_k=2, seed=0, rows=None
):
    pairs = write_pairs(tmp_path / "pairs.jsonl", n, rows=rows)
    store = Store(tmp_path / "labels.sqlite", create=True)
    store.initialize(
        load_pairs(pairs),
        list(annotators),
        overlap=overlap,
        overlap_k=overlap_k,
        seed=seed,
        source=str(pairs),
    )
    return store


def client_for(store: Store, name: str | None = None, **app_kw) -> tuple[TestClient, str]:
    """A client for one annotator's link (their token), or tokenless (open access: one annotator, loopback)."""
    headers = {"Authorization": f"Bearer {store.tokens()[name]}"} if name else {}
    client = TestClient(create_app(store, allowed_hosts=["testserver"], **app_kw), headers=headers)
    csrf = client.get("/api/session").json()["csrf"]
    return client, csrf


def post(client: TestClient, csrf: str, path: str, body: dict, **headers):
    return client.post(path, json=body, headers={"X-CSRF-Token": csrf, **headers})


def label(client, csrf, annotator, item_id, choice, rid, reason=""):
    body = {"annotator": annotator, "item_id": item_id, "choice": choice, "request_id": rid, "reason": reason}
    return post(client, csrf, "/api/label", body)


# -- the pairs file is checked before anything starts ------------------------------------------------------


@pytest.mark.parametrize(
    "bad, where, what",
    [
        ({"responses": ["a", "b"], "instruction": "x"}, "line 2: key 'id'", "missing"),
        ({"id": "z", "instruction": "x", "responses": ["only one"]}, "line 2: key 'responses'", "at least 2"),
        (
            {"id": "z", "instruction": "x", "responses": ["a", "  "]},
            "line 2: key 'responses'",
            "element 1 is empty",
        ),
        ({"id": "z", "instruction": "x", "responses": "ab"}, "line 2: key 'responses'", "got str"),
        ({"id": "z", "input": "", "responses": ["a", "b"]}, "line 2", "needs 'instruction' or 'prompt'"),
        (
            {"id": "item-0000", "instruction": "x", "responses": ["a", "b"]},
            "line 2: key 'id'",
            "duplicate id",
        ),
        (
            {"id": "z", "prompt": "p", "responses": ["a", "b"], "sources": ["m", "m"]},
            "line 2: key 'sources'",
            "two",
        ),
        (
            {"id": "z", "prompt": "p", "responses": ["a", "b"], "sources": ["m"]},
            "line 2: key 'sources'",
            "at least 2",
        ),
        (
            {"id": "z", "prompt": "p", "responses": ["a", "b"], "policy": "x"},
            "line 2: key 'policy'",
            "an object",
        ),
    ],
)
def test_bad_pairs_file_is_one_error_line_and_exit_2(tmp_path, capsys, bad, where, what):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 0, rows=[pair_row(0), bad])
    db = tmp_path / "labels.sqlite"
    assert cli(["serve", str(pairs), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {pairs}:{where}: "), err[0]
    assert what in err[0]
    assert not db.exists()  # nothing was created, nothing was served


def test_malformed_json_names_the_line(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(pair_row(0)) + "\n{not json\n", encoding="utf-8")
    assert cli(["serve", str(pairs), "--db", str(tmp_path / "db.sqlite")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {pairs}:line 2: malformed JSON")


def test_non_loopback_host_always_uses_tokens_and_links_are_printed(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 3)
    db = tmp_path / "labels.sqlite"
    assert cli(["serve", str(pairs), "--db", str(db), "--host", "0.0.0.0", "--no-serve"]) == 0
    assert oct(db.stat().st_mode & 0o777) == "0o600"  # it holds the tokens
    capsys.readouterr()
    assert cli(["serve", "--db", str(db), "--token", "a-shared-secret", "--no-serve"]) == 2
    assert "the shared --token is gone" in capsys.readouterr().err  # not mistaken for --tokens
    assert cli(["links", "--db", str(db), "--port", "9000"]) == 0
    out = capsys.readouterr().out.splitlines()
    store = Store(db)
    assert out == [
        f"annotator: http://127.0.0.1:9000/?token={store.tokens()['annotator']}",
        f"(admin): http://127.0.0.1:9000/?token={store.meta()['admin_token']}",
    ]
    # Bound to a non-loopback address, even a one-person campaign needs the token.
    client = TestClient(create_app(store, allowed_hosts=["testserver"], open_ok=False))
    assert client.get("/api/session").status_code == 401
    token = store.tokens()["annotator"]
    assert client.get("/api/session", headers={"X-Label-Token": token}).json()["annotator"] == "annotator"


def test_busy_port_is_refused_before_anything_is_written(tmp_path, capsys):
    import socket

    pairs = write_pairs(tmp_path / "pairs.jsonl", 3)
    db = tmp_path / "labels.sqlite"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli(["serve", str(pairs), "--db", str(db), "--port", str(port)]) == 2
        assert capsys.readouterr().err.startswith("error: command line:--port: cannot listen on 127.0.0.1:")
        assert not db.exists() and list(tmp_path.iterdir()) == [pairs]
        # Resuming an old database on a busy port does not upgrade it either.
        old = tmp_path / "old.sqlite"
        shutil.copy(Path(__file__).parent / "data" / "label_db_v1.sqlite", old)
        before = old.read_bytes()
        assert cli(["serve", "--db", str(old), "--port", str(port)]) == 2
        assert old.read_bytes() == before


def test_resume_checks_the_database_matches(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 5)
    db = tmp_path / "labels.sqlite"
    assert cli(["serve", str(pairs), "--db", str(db), "--annotators", "alice,bob", "--no-serve"]) == 0
    assert "created" in capsys.readouterr().out
    assert cli(["serve", "--db", str(db), "--no-serve"]) == 0  # the pairs file may be left out
    assert "resumed" in capsys.readouterr().out
    assert cli(["serve", str(pairs), "--db", str(db), "--annotators", "alice,carol", "--no-serve"]) == 2
    assert "was created with annotators" in capsys.readouterr().err
    other = write_pairs(tmp_path / "other.jsonl", 6)
    assert cli(["serve", str(other), "--db", str(db), "--no-serve"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {db}: holds different pairs")
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- queues, overlap, display order ------------------------------------------------------------------------


def test_queue_serves_each_item_once_then_nothing(tmp_path):
    store = make_store(tmp_path, n=15)
    client, csrf = client_for(store)
    seen = []
    r = client.get("/api/next", params={"annotator": "alice"}).json()
    assert r["progress"] == {"done": 0, "total": 15}
    item = r["item"]
    # blind: no sources, no file order, no swap flag, no gold mark
    assert set(item) == {"item_id", "prompt", "prompt_html", "responses", "responses_html"}
    for k in range(15):
        seen.append(item["item_id"])
        res = label(client, csrf, "alice", item["item_id"], ["A", "B", "tie", "skip"][k % 4], f"req-{k:06d}")
        assert res.status_code == 200, res.text
        assert res.json()["progress"] == {"done": k + 1, "total": 15}
        item = res.json()["next"]
    assert item is None
    assert client.get("/api/next", params={"annotator": "alice"}).json()["item"] is None
    assert sorted(seen) == sorted(f"item-{i:04d}" for i in range(15))
    # A retry of an answered request is answered again and adds nothing; a second label for an item is refused.
    again = label(client, csrf, "alice", seen[0], "A", "req-000000")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert label(client, csrf, "alice", seen[0], "B", "req-other-1").status_code == 409
    assert label(client, csrf, "alice", "no-such-item", "B", "req-other-2").status_code == 404
    assert client.get("/api/next", params={"annotator": "mallory"}).status_code == 403  # identity = the token
    assert len(store.labels()) == 15


@pytest.mark.parametrize(
    "overlap, k, expect_shared", [(0.2, 2, 20), (0.0, 2, 0), (1.0, 2, 100), (0.5, 3, 50)]
)
def test_overlap_share_goes_to_several_annotators(tmp_path, overlap, k, expect_shared):
    store = make_store(tmp_path, n=100, annotators=("alice", "bob", "carol"), overlap=overlap, overlap_k=k)
    per_item = Counter(a["item_id"] for a in store.assignments())
    assert len(per_item) == 100
    assert sum(1 for c in per_item.values() if c > 1) == expect_shared
    assert set(per_item.values()) <= {1, k}
    loads = Counter(a["annotator"] for a in store.assignments())
    assert max(loads.values()) - min(loads.values()) <= 1  # balanced queues
    for name in ("alice", "bob", "carol"):
        client, _ = client_for(store, name)
        assert client.get("/api/next").json()["progress"]["total"] == loads[name]


def test_display_order_is_random_stored_and_decoded(tmp_path):
    store = make_store(tmp_path, n=60)
    swapped = {a["item_id"]: a["swapped"] for a in store.assignments()}
    assert 15 < sum(swapped.values()) < 45  # a coin per (annotator, item)
    client, csrf = client_for(store)
    texts = {
        r["id"]: r["responses"] for r in map(json.loads, (tmp_path / "pairs.jsonl").read_text().splitlines())
    }
    item = client.get("/api/next", params={"annotator": "alice"}).json()["item"]
    k = 0
    while item:
        r0, r1 = texts[item["item_id"]]
        assert item["responses"] == ([r1, r0] if swapped[item["item_id"]] else [r0, r1])
        item = label(client, csrf, "alice", item["item_id"], "A", f"req-{k:06d}").json()["next"]
        k += 1
    for lab in store.labels():  # "A" (left) won: the stored winner is whichever response was shown left
        assert lab["winner"] == lab["swapped"] == swapped[lab["item_id"]]


def test_undo_brings_the_last_item_back(tmp_path):
    store = make_store(tmp_path, n=6)
    client, csrf = client_for(store)
    item = client.get("/api/next", params={"annotator": "alice"}).json()["item"]
    order = []
    for k in range(3):
        order.append(item["item_id"])
        item = label(client, csrf, "alice", item["item_id"], "A", f"req-{k:06d}", reason=f"why {k}").json()[
            "next"
        ]
    r = post(client, csrf, "/api/undo", {"annotator": "alice"}).json()
    assert r["undone"] == {"item_id": order[2], "choice": "A", "reason": "why 2"}
    assert r["next"]["item_id"] == order[2] and r["progress"]["done"] == 2
    assert client.get("/api/next", params={"annotator": "alice"}).json()["item"]["item_id"] == order[2]
    r = post(client, csrf, "/api/undo", {"annotator": "alice"}).json()
    assert r["undone"]["item_id"] == order[1] and r["progress"]["done"] == 1
    # Relabel both, differently this time: one live label each, the undone ones kept as history.
    item = r["next"]
    for k in range(2):
        assert item["item_id"] == order[1 + k]
        item = label(client, csrf, "alice", item["item_id"], "B", f"req-again-{k}").json()["next"]
    live = {lab["item_id"]: lab["choice"] for lab in store.labels()}
    assert live == {order[0]: "A", order[1]: "B", order[2]: "B"}
    assert len(store.labels(live_only=False)) == 5
    for _ in range(3):
        post(client, csrf, "/api/undo", {"annotator": "alice"})
    r = post(client, csrf, "/api/undo", {"annotator": "alice"}).json()
    assert r["undone"] is None and r["progress"]["done"] == 0


# -- security ----------------------------------------------------------------------------------------------


def test_each_annotator_has_a_token_and_cannot_act_as_another(tmp_path):
    store = make_store(tmp_path, n=6, annotators=("alice", "bob"), overlap=1.0)
    tokens = store.tokens()
    assert set(tokens) == {"alice", "bob"} and tokens["alice"] != tokens["bob"]
    admin = store.meta()["admin_token"]
    client = TestClient(create_app(store, allowed_hosts=["testserver"]))
    for path in ("/", "/static/app.js", "/api/health", "/api/session", "/api/next", "/api/admin/stats"):
        assert client.get(path).status_code == 401, path  # two annotators: no open access
        assert client.get(path, headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401, path
    alice, alice_csrf = client_for(store, "alice")
    bob, bob_csrf = client_for(store, "bob")
    assert alice.get("/api/session").json()["annotator"] == "alice"
    assert alice_csrf != bob_csrf  # a CSRF token is bound to its identity
    item = alice.get("/api/next").json()["item"]
    # The body cannot choose the identity: naming someone else is refused, and nothing is written.
    assert label(alice, alice_csrf, "bob", item["item_id"], "A", "req-as-bob-1").status_code == 403
    assert post(alice, alice_csrf, "/api/undo", {"annotator": "bob"}).status_code == 403
    assert (
        post(
            alice,
            bob_csrf,
            "/api/label",
            {"item_id": item["item_id"], "choice": "A", "request_id": "req-x-0001"},
        ).status_code
        == 403
    )
    assert store.labels() == []
    ok = post(
        alice,
        alice_csrf,
        "/api/label",
        {"item_id": item["item_id"], "choice": "A", "request_id": "req-alice-1"},
    )
    assert ok.status_code == 200 and ok.json()["progress"]["done"] == 1
    assert bob.get("/api/next").json()["progress"]["done"] == 0
    assert post(bob, bob_csrf, "/api/undo", {}).json()["undone"] is None  # bob cannot undo alice's label
    assert [(lab["annotator"], lab["item_id"]) for lab in store.labels()] == [("alice", item["item_id"])]
    # The admin token sees stats and exports, and has no queue; annotators see no stats.
    assert alice.get("/api/admin/stats").status_code == 403
    stats = client.get("/api/admin/stats", headers={"Authorization": f"Bearer {admin}"}).json()
    assert stats["per_annotator"]["alice"]["labels"] == 1 and stats["per_annotator"]["bob"]["remaining"] == 6
    exported = client.get("/api/admin/export", headers={"Authorization": f"Bearer {admin}"})
    assert exported.status_code == 200 and len(exported.text.splitlines()) == 1
    assert client.get("/api/next", headers={"Authorization": f"Bearer {admin}"}).status_code == 403
    # ?token= on the page moves the token into an HttpOnly SameSite=Strict cookie and drops it from the URL.
    r = client.get("/", params={"token": tokens["bob"], "x": "1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?x=1"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/api/session").json()["annotator"] == "bob"  # the cookie alone now works
    client.cookies.clear()
    assert client.get("/api/session").status_code == 401


def test_add_annotator_joins_a_running_campaign(tmp_path, capsys):
    store = make_store(tmp_path, n=10)  # one annotator: open access on loopback
    client = TestClient(create_app(store, allowed_hosts=["testserver"]))
    assert client.get("/api/session").json()["annotator"] == "alice"
    assert cli(["add-annotator", "carol", "--db", str(store.path), "--items", "4", "--port", "9000"]) == 0
    out = capsys.readouterr().out
    token = Store(store.path).tokens()["carol"]
    assert out.strip() == f"label: added carol with 4 items; their link: http://127.0.0.1:9000/?token={token}"
    # The running app knows carol at once, and open access is over: everyone needs their link now.
    assert client.get("/api/session").status_code == 401
    carol = TestClient(create_app(store, allowed_hosts=["testserver"]), headers={"X-Label-Token": token})
    assert carol.get("/api/next").json()["progress"] == {"done": 0, "total": 4}
    assert cli(["add-annotator", "carol", "--db", str(store.path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_request_id_reused_with_another_answer_is_409(tmp_path):
    store = make_store(tmp_path, n=4)
    client, csrf = client_for(store)
    item = client.get("/api/next").json()["item"]
    assert label(client, csrf, "alice", item["item_id"], "A", "req-reuse-01").status_code == 200
    again = label(client, csrf, "alice", item["item_id"], "A", "req-reuse-01")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    changed = label(client, csrf, "alice", item["item_id"], "B", "req-reuse-01")
    assert changed.status_code == 409 and "different" in changed.json()["detail"]
    assert [lab["choice"] for lab in store.labels()] == ["A"]


def test_bad_bodies_get_422_without_the_body_echoed(tmp_path):
    store = make_store(tmp_path, n=3)
    client, csrf = client_for(store)
    h = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    for raw in (
        '{"item_id": NaN, "choice": "A", "request_id": "req-nan-001"}',
        '{"annotator": Infinity}',
        "[-Infinity]",
    ):
        r = client.post("/api/label", content=raw, headers=h)
        assert r.status_code == 422 and "non-finite" in r.text, raw
    marker = "SECRET-BODY-MARKER-" * 300
    for body in (
        {"item_id": marker, "choice": "A", "request_id": "req-long-001"},
        {"item_id": "x", "choice": marker, "request_id": "req-long-002"},
        {"item_id": "x", "choice": "A", "request_id": "req-long-003", "unexpected": marker},
    ):
        r = client.post("/api/label", json=body, headers=h)
        assert r.status_code == 422 and "SECRET-BODY-MARKER" not in r.text, r.text[:200]
    r = client.post("/api/label", content="{" + marker, headers=h)
    assert r.status_code == 422 and "SECRET-BODY-MARKER" not in r.text
    r = client.get("/api/next", params={"annotator": ["a", "b"]})
    assert "SECRET" not in r.text
    assert store.labels() == []


def test_body_limit_is_enforced_before_reading(tmp_path):
    store = make_store(tmp_path, n=3)
    client, csrf = client_for(store, max_body_bytes=2048)
    h = {"X-CSRF-Token": csrf, "Content-Type": "application/json"}
    r = client.post("/api/label", content=b" " * 4096, headers=h)
    assert r.status_code == 413 and "2048" in r.json()["detail"]
    assert r.headers["connection"] == "close"

    def chunks():  # no Content-Length: httpx sends it chunked
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/api/label", content=chunks(), headers=h)
    assert r.status_code == 413
    item = client.get("/api/next").json()["item"]
    assert label(client, csrf, "alice", item["item_id"], "A", "req-small-01").status_code == 200


def test_bidi_controls_are_neutralised_and_markdown_is_sanitised(tmp_path):
    from rlhf.label.render import render_markdown

    evil = "price: \u202e0.99$ \u2066x\u2069"
    store = make_store(
        tmp_path, n=1, rows=[pair_row(0, responses=[evil, "**bold** <script>alert(1)</script>"])]
    )
    client, _ = client_for(store)
    item = client.get("/api/next").json()["item"]
    i = item["responses"].index("price: [U+202E]0.99$ [U+2066]x[U+2069]")
    assert not any(c in json.dumps(item, ensure_ascii=False) for c in "\u202e\u2066\u2069")
    html = item["responses_html"][1 - i]
    assert html == "<p><strong>bold</strong> &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    md = render_markdown(
        "# T\n\n- a\n- `<b>`\n\n```\n<img src=x onerror=alert(1)>\n```\n"
        '[ok](https://example.com/a?b=1&c="x") [bad](javascript:alert(1)) ![i](https://x/y.png) <a href=x>z</a>'
    )
    assert "<h3>T</h3>" in md and "<ul><li>a</li><li><code>&lt;b&gt;</code></li></ul>" in md
    assert "<pre><code>&lt;img src=x onerror=alert(1)&gt;</code></pre>" in md
    assert (
        '<a href="https://example.com/a?b=1&amp;c=&quot;x&quot;" rel="noopener noreferrer nofollow">ok</a>'
        in md
    )
    assert "[bad](javascript:alert(1))" in md and "<img" not in md and "<a href=x>" not in md


def test_cross_site_posts_are_refused(tmp_path):
    store = make_store(tmp_path, n=3)
    client, csrf = client_for(store)
    item = client.get("/api/next", params={"annotator": "alice"}).json()["item"]
    body = {"annotator": "alice", "item_id": item["item_id"], "choice": "A", "request_id": "req-csrf-01"}
    assert client.post("/api/label", json=body).status_code == 403  # no CSRF header
    assert client.post("/api/label", json=body, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    h = {"X-CSRF-Token": csrf}
    assert (
        client.post("/api/label", json=body, headers={**h, "Origin": "https://evil.example"}).status_code
        == 403
    )
    assert (
        client.post("/api/label", json=body, headers={**h, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    )
    assert (
        client.post("/api/label", json=body, headers={**h, "Sec-Fetch-Site": "same-site"}).status_code == 403
    )
    # What an HTML form on another site can send: a "simple" content type, no custom header.
    assert client.post("/api/label", data=body).status_code == 415
    assert (
        client.post(
            "/api/label", content=json.dumps(body), headers={**h, "Content-Type": "text/plain"}
        ).status_code
        == 415
    )
    assert store.labels() == []
    ok = client.post(
        "/api/label", json=body, headers={**h, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status_code == 200, ok.text
    assert len(store.labels()) == 1
    bad = client.post(
        "/api/label", json={**body, "choice": "<script>", "request_id": "req-csrf-02"}, headers=h
    )
    assert bad.status_code == 422


def test_host_header_is_parsed_strictly(tmp_path):
    store = make_store(tmp_path, n=3)
    client = TestClient(create_app(store))  # default: only loopback names
    assert client.get("/api/session", headers={"Host": "evil.example"}).status_code == 403  # DNS rebinding
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "localhost", "127.0.0.1"):
        assert client.get("/api/session", headers={"Host": host}).status_code == 200, host
    for host in (
        "127.0.0.1:80@evil.com",
        "127.0.0.1@evil.com",
        "user@127.0.0.1",
        "127.0.0.1:80:80",
        "127.0.0.1 evil.com",
        "127.0.0.1/x",
        "[::1",
        "localhost:99999",
        "",
        "127.0.0.1:",
    ):
        assert client.get("/api/session", headers={"Host": host}).status_code in (400, 403), host
    page = client.get("/", headers={"Host": "127.0.0.1:8765"})
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"


# -- blind comparison, export, stats -----------------------------------------------------------------------


def compare_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        flip = i % 3 == 1  # some rows list the two sources the other way round (not the first one)
        resp = {"ckpt-a": f"answer from A {i}", "ckpt-b": f"answer from B {i}"}
        names = ["ckpt-b", "ckpt-a"] if flip else ["ckpt-a", "ckpt-b"]
        rows.append(pair_row(i, responses=[resp[s] for s in names], sources=names))
    return rows


def test_compare_pairs_stay_blind_and_winrate_is_oriented(tmp_path):
    rows = compare_rows(12)
    store = make_store(tmp_path, n=12, rows=rows)
    client, csrf = client_for(store)
    item = client.get("/api/next", params={"annotator": "alice"}).json()["item"]
    want = {}  # item -> verdict: 8 wins for ckpt-a, 2 for ckpt-b, 1 tie, 1 skip
    plan = ["a"] * 8 + ["b"] * 2 + ["tie", "skip"]
    k = 0
    while item:
        assert "ckpt" not in json.dumps(item)  # the page never learns the sources
        verdict = plan[k]
        if verdict in ("a", "b"):
            choice = "A" if item["responses"][0].startswith(f"answer from {verdict.upper()}") else "B"
        else:
            choice = verdict
        want[item["item_id"]] = verdict
        item = label(client, csrf, "alice", item["item_id"], choice, f"req-{k:06d}").json()["next"]
        k += 1
    w = human_winrate(store.path)
    assert w["available"] and (w["source_a"], w["source_b"]) == ("ckpt-a", "ckpt-b")
    assert (w["wins_a"], w["wins_b"], w["ties"], w["skips"], w["n"]) == (8, 2, 1, 1, 11)
    assert w["winrate_a"] == pytest.approx(8.5 / 11)
    lo, hi = w["ci95"]
    assert (lo, hi) == pytest.approx(wilson(8.5, 11)) and lo < 8.5 / 11 < hi
    assert "Wilson" in w["ci_method"] and "half" in w["ci_method"]


def test_export_round_trip(tmp_path, capsys):
    store = make_store(tmp_path, n=12, annotators=("alice", "bob"), overlap=1.0)
    texts = {
        r["id"]: r["responses"] for r in map(json.loads, (tmp_path / "pairs.jsonl").read_text().splitlines())
    }
    expected = []
    k = 0
    for name in ("alice", "bob"):
        client, csrf = client_for(store, name)
        item = client.get("/api/next").json()["item"]
        while item:
            choice = ["A", "B", "tie", "skip", "A", "B"][k % 6]
            reason = f"reason {k} <b>ok</b>" if k % 2 else ""
            if choice in ("A", "B"):
                shown, other = item["responses"] if choice == "A" else item["responses"][::-1]
                expected.append((item["item_id"], name, shown, other, reason))
            item = label(client, csrf, name, item["item_id"], choice, f"req-{k:06d}", reason=reason).json()[
                "next"
            ]
            k += 1
    out = tmp_path / "prefs.jsonl"
    assert cli(["export", "--db", str(store.path), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "wrote 16 preference rows" in summary and "4 ties, 4 skips, 0 with identical" in summary
    assert "0 on gold items" in summary
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(expected) == 16
    for row in rows:
        assert tuple(row) == PREF_KEYS
        assert row["source"] == "label-app"
        assert {row["chosen"], row["rejected"]} == set(texts[row["id"]])
        assert row["instruction"] and row["prompt"] and row["input"] == ""
    got = sorted((r["id"], r["annotator"], r["chosen"], r["rejected"], r["reason"]) for r in rows)
    assert got == sorted(expected)
    reward_data = pytest.importorskip("reward.data", reason="reward.data not in this checkout yet")
    loaded = reward_data.load_preferences(out, verbose=False)
    # The reward stage keeps one copy of a pair two annotators agree on.
    unique = {(r["instruction"], r["input"], r["chosen"], r["rejected"]) for r in rows}
    assert len(loaded) == len(unique) > 0
    assert {(p["id"], p["chosen"], p["rejected"]) for p in loaded} <= {
        (r["id"], r["chosen"], r["rejected"]) for r in rows
    }


def test_export_leaves_out_what_the_reward_stage_refuses(tmp_path, capsys):
    rows = [
        pair_row(0, responses=["same text", "same text"]),  # sampling can return one answer twice
        {
            "id": "hh-1",
            "prompt": "Human: hi\n\nAssistant:",
            "responses": ["Hello!", "Go away."],
        },  # prompt only
        pair_row(2),
    ]
    store = make_store(tmp_path, n=3, rows=rows)
    client, csrf = client_for(store)
    item = client.get("/api/next", params={"annotator": "alice"}).json()["item"]
    k = 0
    while item:
        item = label(client, csrf, "alice", item["item_id"], "A", f"req-{k:06d}").json()["next"]
        k += 1
    out = tmp_path / "prefs.jsonl"
    assert cli(["export", "--db", str(store.path), "--out", str(out)]) == 0
    assert "wrote 2 preference rows" in capsys.readouterr().out
    got = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(got) == {"hh-1", "item-0002"}
    assert got["hh-1"]["instruction"] == got["hh-1"]["prompt"] == "Human: hi\n\nAssistant:"
    reward_data = pytest.importorskip("reward.data", reason="reward.data not in this checkout yet")
    assert len(reward_data.load_preferences(out, verbose=False)) == 2


def test_stats_agreement_kappa_position_bias_and_rate(tmp_path, capsys):
    store = make_store(tmp_path, n=10, annotators=("alice", "bob"), overlap=1.0)
    swapped = {(a["annotator"], a["item_id"]): a["swapped"] for a in store.assignments()}
    ids = [f"item-{i:04d}" for i in range(10)]
    verdicts = {
        "alice": [0, 0, 0, 0, 0, 0, 1, 1, 1, "tie"],
        "bob": [0, 0, 0, 0, 0, 1, 1, 1, 0, "tie"],
    }
    t0 = 1_000_000.0
    for name, vs in verdicts.items():
        for i, (item_id, v) in enumerate(zip(ids, vs)):
            choice = "tie" if v == "tie" else ("A" if v == swapped[(name, item_id)] else "B")
            # alice: a label every 10 s with one 20-minute break (capped at 300 s); bob: every 6 s
            t = t0 + (10 * i + (1200 if i >= 5 else 0) if name == "alice" else 6 * i)
            store.add_label(name, item_id, choice, "", f"{name}-{i:06d}", now=t)
    s = compute_stats(store.path)
    ag = s["agreement"]
    assert ag["overlapping_items"] == 10 and ag["compared_pairs"] == 10
    assert ag["percent_agreement"] == pytest.approx(80.0)
    assert ag["cohen_kappa"] == pytest.approx((0.8 - 0.46) / (1 - 0.46))  # marginals 6/3/1 for both
    assert s["per_annotator"]["alice"]["labels_per_minute"] == pytest.approx(9 / ((8 * 10 + 300) / 60))
    assert s["per_annotator"]["bob"]["labels_per_minute"] == pytest.approx(10.0)
    lefts = sum(1 for lab in store.labels() if lab["choice"] == "A")
    assert s["position_bias"]["decisions"] == 18 and s["position_bias"]["left_wins"] == lefts
    assert s["human_winrate"]["available"] is False
    assert cli(["stats", "--db", str(store.path)]) == 0
    text = capsys.readouterr().out
    assert "80.0% agree" in text and "Cohen's kappa 0.63" in text and "position bias" in text
    assert cli(["stats", "--db", str(store.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == 20


def test_wilson_and_kappa_reference_values():
    lo, hi = wilson(7, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.3968, 0.8922)  # the textbook Wilson interval for 7/10
    assert wilson(0, 0) == (None, None)
    assert cohen_kappa([("x", "x")] * 5) is None  # chance agreement 1: undefined, not 1.0
    pairs = [("a", "a")] * 20 + [("a", "b")] * 5 + [("b", "a")] * 10 + [("b", "b")] * 15
    assert math.isclose(cohen_kappa(pairs), 0.4)  # the classic 2x2 example: po 0.7, pe 0.5


def test_stats_and_export_refuse_a_missing_or_foreign_db(tmp_path, capsys):
    assert cli(["stats", "--db", str(tmp_path / "nope.sqlite")]) == 2
    assert "no such labels database" in capsys.readouterr().err
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as c:
        c.execute("CREATE TABLE t (x)")
    assert cli(["export", "--db", str(foreign), "--out", str(tmp_path / "p.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {foreign}: not a labels database (no 'meta' table)"
    assert not (tmp_path / "p.jsonl").exists()


def test_compare_mode_generates_from_two_checkpoints(tmp_path, capsys):
    pytest.importorskip("torch")
    from rlhf.models import save_pretrained_dir
    from rlhf.tasks.demo_model import build_demo_model, train_bpe_tokenizer

    prompts = [{"instruction": f"Add {i} and {i + 2}.", "input": "" if i % 2 else f"{i}"} for i in range(4)]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
    tok = train_bpe_tokenizer([p["instruction"] + " The answer is 42." for p in prompts] * 5, vocab_size=300)
    ckpts = []
    for seed in (0, 1):
        model = build_demo_model(
            tok, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, seed=seed
        )
        ckpts.append(str(save_pretrained_dir(model, tok, tmp_path / f"policy{seed}")))
    db, saved = tmp_path / "labels.sqlite", tmp_path / "compare-pairs.jsonl"
    args = ["serve", "--compare", *ckpts, "--prompts", str(tmp_path / "prompts.json"), "--db", str(db)]
    args += [
        "--temperature",
        "0",
        "--max-new-tokens",
        "6",
        "--quiet",
        "--no-serve",
        "--save-pairs",
        str(saved),
    ]
    assert cli(args) == 0, capsys.readouterr().err
    store = Store(db)
    items = store.items()
    assert len(items) == 4 and all(it["sources"] == ckpts for it in items)
    assert [json.loads(line)["sources"] for line in saved.read_text().splitlines()] == [ckpts] * 4
    client, csrf = client_for(store)
    item = client.get("/api/next").json()["item"]
    k = 0
    while item:
        assert "policy" not in json.dumps(item)
        item = label(client, csrf, "annotator", item["item_id"], "tie", f"req-{k:06d}").json()["next"]
        k += 1
    w = human_winrate(db)
    assert (w["source_a"], w["source_b"], w["ties"], w["winrate_a"]) == (ckpts[0], ckpts[1], 4, 0.5)
    # An existing session is never overwritten by a new generation.
    assert cli(args) == 2
    assert "already holds a labeling session" in capsys.readouterr().err


# -- strength, rankings, gold, Krippendorff's alpha, interop ------------------------------------------------


def test_strength_scale_is_required_and_exported_as_margin(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 3)
    db = tmp_path / "labels.sqlite"
    assert cli(["serve", str(pairs), "--db", str(db), "--strength", "--no-serve"]) == 0
    store = Store(db)
    client, csrf = client_for(store)
    assert client.get("/api/session").json()["strength"] == ["slightly", "clearly", "much"]
    item = client.get("/api/next").json()["item"]
    body = {"item_id": item["item_id"], "choice": "A", "request_id": "req-str-0001"}
    assert post(client, csrf, "/api/label", body).status_code == 422  # how much better?
    assert post(client, csrf, "/api/label", {**body, "strength": "hugely"}).status_code == 422
    assert post(client, csrf, "/api/label", {**body, "choice": "tie", "strength": "much"}).status_code == 422
    got = {}
    for k, strength in enumerate(["much", "slightly", "clearly"]):
        r = post(
            client,
            csrf,
            "/api/label",
            {**body, "item_id": item["item_id"], "request_id": f"req-str-1{k:03d}", "strength": strength},
        )
        assert r.status_code == 200, r.text
        got[item["item_id"]] = (item["responses"][0], strength)
        item = r.json()["next"]
    out = tmp_path / "prefs.jsonl"
    assert cli(["export", "--db", str(db), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    margins = {"slightly": 1 / 3, "clearly": 2 / 3, "much": 1.0}
    assert len(rows) == 3
    for row in rows:
        chosen, strength = got[row["id"]]
        assert row["chosen"] == chosen and row["margin"] == pytest.approx(margins[strength])
    reward_data = pytest.importorskip("reward.data", reason="reward.data not in this checkout yet")
    assert sorted(p["margin"] for p in reward_data.load_preferences(out, verbose=False)) == pytest.approx(
        sorted(margins.values())
    )


def rank_rows(n: int) -> list[dict]:
    return [pair_row(i, responses=[f"best {i}", f"middle {i}", f"worst {i}"]) for i in range(n)]


def test_three_responses_are_ranked_and_exported_as_all_pairs(tmp_path, capsys):
    store = make_store(tmp_path, n=4, rows=rank_rows(4))
    client, csrf = client_for(store)
    item = client.get("/api/next").json()["item"]
    assert len(item["responses"]) == 3
    base = {"item_id": item["item_id"], "request_id": "req-rank-000"}
    for bad in (
        {"choice": "A"},
        {"choice": "tie"},
        {"choice": "rank", "ranking": [0, 1]},
        {"choice": "rank", "ranking": [0, 0, 1]},
        {"choice": "rank", "ranking": [0, 1, 2], "strength": "much"},
    ):
        assert post(client, csrf, "/api/label", {**base, **bad}).status_code == 422, bad
    k = 0
    while item:
        order = sorted(
            range(3), key=lambda p: ["best", "middle", "worst"].index(item["responses"][p].split()[0])
        )
        if k == 3:
            order = order[::-1]  # one annotator's ranking upside down
        r = post(
            client,
            csrf,
            "/api/label",
            {
                "item_id": item["item_id"],
                "choice": "rank",
                "ranking": order,
                "request_id": f"req-rank-{k:03d}",
            },
        )
        assert r.status_code == 200, r.text
        item = r.json()["next"]
        k += 1
    out = tmp_path / "prefs.jsonl"
    assert cli(["export", "--db", str(store.path), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 * 3
    by = {
        (r["chosen"].split()[0], r["rejected"].split()[0], r["margin"])
        for r in rows
        if r["id"] != "item-0003" or True
    }
    assert ("best", "middle", 0.5) in by and ("best", "worst", 1.0) in by and ("middle", "worst", 0.5) in by
    assert ("worst", "best", 1.0) in by  # the reversed ranking
    s = compute_stats(store.path)
    assert s["choices"]["rank"] == 4 and s["per_annotator"]["alice"]["rankings"] == 4


def test_gold_items_are_mixed_in_and_scored(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 20)
    # Gold ids are shown to the page like any id: they must not give the item away.
    gold_rows = [pair_row(100 + i, id=f"item-{900 + i:04d}", gold=0) for i in range(6)]  # response 0 is right
    gold = write_pairs(tmp_path / "gold.jsonl", 0, rows=gold_rows)
    db = tmp_path / "labels.sqlite"
    args = ["serve", str(pairs), "--db", str(db), "--annotators", "alice,bob", "--overlap", "0"]
    assert cli([*args, "--gold", str(gold), "--gold-rate", "0.2", "--no-serve"]) == 0
    store = Store(db)
    queues = Counter((a["annotator"], a["item_id"] >= "item-0900") for a in store.assignments())
    assert queues[("alice", False)] == queues[("bob", False)] == 10
    assert queues[("alice", True)] == queues[("bob", True)] == 2  # round(0.2 * 10 / 0.8) = 2 (a share of 1/6)
    for name in ("alice", "bob"):
        client, csrf = client_for(store, name)
        item = client.get("/api/next").json()["item"]
        k = 0
        while item:
            assert set(item) == {"item_id", "prompt", "prompt_html", "responses", "responses_html"}
            right = "A" if item["responses"][0].startswith("The answer") else "B"
            wrong = "B" if right == "A" else "A"
            choice = right if name == "alice" or k % 2 else wrong
            item = label(client, csrf, name, item["item_id"], choice, f"{name}-{k:06d}").json()["next"]
            k += 1
    s = compute_stats(db)
    assert s["items"] == 20 and s["gold_items"] == 6
    assert s["per_annotator"]["alice"]["gold"] == {"items": 2, "verdicts": 2, "agreement": 1.0}
    assert s["per_annotator"]["bob"]["gold"]["items"] == 2
    out = tmp_path / "prefs.jsonl"
    assert cli(["export", "--db", str(db), "--out", str(out)]) == 0
    assert "4 on gold items" in capsys.readouterr().out
    assert not any(json.loads(line)["id"] >= "item-0900" for line in out.read_text().splitlines())
    bad_gold = write_pairs(tmp_path / "bad.jsonl", 0, rows=[pair_row(7, id="g", gold=2)])
    assert (
        cli(["serve", str(pairs), "--db", str(tmp_path / "x.sqlite"), "--gold", str(bad_gold), "--no-serve"])
        == 2
    )
    assert f"error: {bad_gold}:line 1: key 'gold': got 2" in capsys.readouterr().err


def test_krippendorff_alpha_reference_and_stats_with_three_annotators(tmp_path):
    from rlhf.label.stats import krippendorff_alpha

    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, missing values.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in unit if v is not None] for unit in zip(*coders)]
    assert round(krippendorff_alpha(units), 3) == 0.743
    assert krippendorff_alpha([["a", "a"], ["a", "a"]]) is None
    assert krippendorff_alpha([["a", "b"], ["b", "a"]]) == pytest.approx(-0.5)

    store = make_store(tmp_path, n=6, annotators=("alice", "bob", "carol"), overlap=1.0, overlap_k=3)
    swapped = {(a["annotator"], a["item_id"]): a["swapped"] for a in store.assignments()}
    for name in ("alice", "bob", "carol"):
        for i in range(6):
            item_id = f"item-{i:04d}"
            v = 0 if (name != "carol" or i < 3) else 1
            store.add_label(
                name, item_id, "A" if v == swapped[(name, item_id)] else "B", "", f"{name}-{i:06d}"
            )
    ag = compute_stats(store.path)["agreement"]
    values = [[0, 0, 0]] * 3 + [[0, 0, 1]] * 3
    assert ag["alpha_units"] == 6
    assert ag["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(values))
    assert len(ag["by_pair"]) == 3


LS_TASKS = [
    {
        "id": 11,
        "data": {"prompt": "Say hi.", "answer1": "Hi!", "answer2": "Go away.", "topic": "greeting"},
        "annotations": [
            {
                "id": 101,
                "completed_by": 3,
                "was_cancelled": False,
                "created_at": "2024-05-01T10:00:00.000000Z",
                "result": [
                    {
                        "id": "a",
                        "from_name": "comparison",
                        "to_name": "answer1,answer2",
                        "type": "pairwise",
                        "value": {"selected": "left"},
                    }
                ],
            },
            {
                "id": 102,
                "completed_by": 4,
                "was_cancelled": False,
                "created_at": "2024-05-01T10:01:00.000000Z",
                "result": [
                    {
                        "id": "b",
                        "from_name": "comparison",
                        "to_name": "answer1,answer2",
                        "type": "pairwise",
                        "value": {"selected": "right"},
                    }
                ],
            },
        ],
    },
    {
        "id": 12,
        "data": {"prompt": "2+2?", "answer1": "5", "answer2": "4", "topic": "math"},
        "annotations": [
            {
                "id": 103,
                "completed_by": 3,
                "was_cancelled": True,
                "created_at": "2024-05-01T10:02:00.000000Z",
                "result": [],
            },
        ],
    },
    {
        "id": 13,
        "data": {"prompt": "Name a colour.", "answer1": "Blue", "answer2": "Seven", "topic": "x"},
        "annotations": [],
    },
]


def _ls_view(tasks: list[dict]) -> list:
    return [
        (
            t["id"],
            t["data"],
            sorted(
                (
                    a["id"],
                    a["completed_by"],
                    a["was_cancelled"],
                    [(r["type"], r["value"]["selected"]) for r in a["result"]],
                )
                for a in t["annotations"]
            ),
        )
        for t in tasks
    ]


def test_label_studio_round_trip_and_parquet_datasets_export(tmp_path, capsys):
    src = tmp_path / "ls.json"
    src.write_text(json.dumps(LS_TASKS), encoding="utf-8")
    db = tmp_path / "labels.sqlite"
    assert cli(["import", str(src), "--db", str(db)]) == 0
    assert "3 tasks, 3 labels by 3, 4" in capsys.readouterr().out
    out_ls = tmp_path / "back.json"
    out = tmp_path / "prefs.jsonl"
    args = ["export", "--db", str(db), "--out", str(out), "--label-studio", str(out_ls)]
    assert (
        cli([*args, "--parquet", str(tmp_path / "prefs.parquet"), "--datasets", str(tmp_path / "prefs_ds")])
        == 0
    )
    back = json.loads(out_ls.read_text())
    assert _ls_view(back) == _ls_view(LS_TASKS)
    assert back[0]["annotations"][0]["created_at"] == "2024-05-01T10:00:00.000000Z"
    # The imported campaign goes on in this app: user 3 still has task 13 (or 4 has), then it exports too.
    store = Store(db)
    assert sorted(store.annotators()) == ["3", "4"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["annotator"], r["chosen"]) for r in rows] == [("3", "Hi!"), ("4", "Go away.")]
    from datasets import Dataset, load_from_disk

    for ds in (
        Dataset.from_parquet(str(tmp_path / "prefs.parquet")),
        load_from_disk(str(tmp_path / "prefs_ds")),
    ):
        assert ds.num_rows == 2 and ds["chosen"] == ["Hi!", "Go away."] and ds["margin"] == [None, None]
    # An export of our own campaign imports back to the same labels.
    assert cli(["import", str(out_ls), "--db", str(tmp_path / "again.sqlite")]) == 0
    capsys.readouterr()
    assert (
        cli(
            [
                "export",
                "--db",
                str(tmp_path / "again.sqlite"),
                "--out",
                str(tmp_path / "p2.jsonl"),
                "--label-studio",
                str(tmp_path / "b2.json"),
            ]
        )
        == 0
    )
    assert _ls_view(json.loads((tmp_path / "b2.json").read_text())) == _ls_view(LS_TASKS)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"data": {"text": "x"}}]))
    assert cli(["import", str(bad), "--db", str(tmp_path / "bad.sqlite")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}:task 0: data needs a prompt")
    assert not (tmp_path / "bad.sqlite").exists()


def test_a_schema_1_database_is_upgraded_in_place(tmp_path, capsys):
    """tests/data/label_db_v1.sqlite was written by the first version of the app (alice, bob; 8 labels, one of
    them undone). Opening it upgrades it in one transaction; labels, undos and request_ids carry over."""
    db = tmp_path / "labels.sqlite"
    shutil.copy(Path(__file__).parent / "data" / "label_db_v1.sqlite", db)
    out = tmp_path / "prefs.jsonl"
    assert cli(["export", "--db", str(db), "--out", str(out)]) == 0
    assert "wrote 6 preference rows" in capsys.readouterr().out
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    store = Store(db)
    assert store.annotators() == ["alice", "bob"] and set(store.tokens()) == {"alice", "bob"}
    assert len(store.labels(live_only=False)) == 8 and len(store.labels()) == 7
    texts = {it["id"]: it["responses"] for it in store.items()}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # The verdicts as the first version stored them (winner = file index of the chosen response).
    want = {("alice", "item-0004"): 1, ("alice", "item-0002"): 1, ("alice", "item-0003"): 0}
    want |= {("bob", "item-0002"): 0, ("bob", "item-0001"): 0, ("bob", "item-0000"): 1}
    assert {(r["annotator"], r["id"]): texts[r["id"]].index(r["chosen"]) for r in rows} == want
    client, csrf = client_for(store, "alice")
    first = store.labels()[0]  # resent as the old page would have: the same answer, the same request_id
    resent = label(
        client, csrf, "alice", first["item_id"], first["choice"], first["request_id"], reason="why 0"
    )
    assert resent.status_code == 200 and resent.json()["duplicate"] is True
    assert cli(["serve", "--db", str(db), "--no-serve"]) == 0
    assert "resumed" in capsys.readouterr().out

"""A real browser on a real server: headless Debian Chromium labels 10 pairs with the keyboard only, and
responses carrying <script> / onerror payloads show up as text and run nothing (formatted or raw); two annotators
with their own links label the same items and one cannot write as the other; guidelines render and scripts in
them do not run; three responses are ranked with the keyboard."""

from __future__ import annotations

import json
import sqlite3

import pytest
from _label_helpers import ROOT, free_port, pair_row, start_server, stop, write_pairs
from conftest import CHROMIUM, CHROMIUM_ARGS, run_cli

from rlhf.label.store import Store

ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]

SCRIPT = '<script>window.__pwned = "script"</script>'
IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"
SVG = "<svg onload=\"window.__pwned = 'svg'\"></svg>"


def payload_row() -> dict:
    return pair_row(
        3,
        prompt=f"Reply to this markup: {IMG}",
        responses=[f"Sure. {SCRIPT} <b>bold?</b>", f"Here: {IMG} and {SVG}"],
    )


@pytest.fixture()
def server(tmp_path):
    rows = [pair_row(i) for i in range(10)]
    rows[3] = payload_row()
    pairs = write_pairs(tmp_path / "pairs.jsonl", 0, rows=rows)
    db = tmp_path / "labels.sqlite"
    port = free_port()
    proc = start_server(
        [str(pairs), "--db", str(db), "--annotators", "tester"], port, tmp_path / "server.log"
    )
    try:
        yield f"http://127.0.0.1:{port}", db
    finally:
        stop(proc)


def test_keyboard_labeling_progress_undo_and_no_script_runs(server):
    from playwright.sync_api import sync_playwright

    base, db = server
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(f"{base}/")
            page.wait_for_selector("#work:not([hidden])", timeout=10_000)

            def progress() -> tuple[float, str]:
                return page.eval_on_selector("#progress", "e => e.value"), page.text_content("#progress-text")

            assert progress() == (0, "0 / 10")
            keys = ["1", "2", "3", "s", "1", "2", "1", "2", "3", "1"]
            saw_payload = False
            for k, key in enumerate(keys):
                left, right = page.text_content("#resp-0"), page.text_content("#resp-1")
                if "pwned" in left + right:
                    saw_payload = True
                    # Formatted (sanitised markdown): no element was parsed out of the markup.
                    assert page.locator("#work img, #work script, #work svg, #work b").count() == 0
                    page.screenshot(path=str(ARTIFACTS / "label_page_payload.png"), full_page=True)
                    page.keyboard.press("m")  # raw text: the markup arrives exactly, as literal text
                    page.wait_for_selector("#resp-0.text")
                    left, right = page.text_content("#resp-0"), page.text_content("#resp-1")
                    assert {left, right} == set(payload_row()["responses"])
                    assert page.text_content("#prompt") == payload_row()["prompt"]
                    assert page.locator("#work img, #work script, #work svg, #work b").count() == 0
                    page.keyboard.press("m")
                    page.wait_for_selector("#resp-0.md")
                if k == 0:  # a reason, typed with the keyboard: keys inside the box must not label anything
                    page.keyboard.press("r")
                    page.keyboard.type("shorter, 1 2 3 s u")
                    page.keyboard.press("Escape")
                    assert progress() == (0, "0 / 10")
                page.keyboard.press(key)
                page.wait_for_function("n => document.getElementById('progress').value === n", arg=k + 1)
                assert progress() == (k + 1, f"{k + 1} / 10")
            assert saw_payload
            page.wait_for_selector("#done:not([hidden])")
            assert page.is_hidden("#work")

            # u brings the last comparison back (progress moves back), then it is labeled again.
            page.keyboard.press("u")
            page.wait_for_function("() => document.getElementById('progress').value === 9")
            assert page.is_visible("#work") and "Undone" in page.text_content("#status")
            page.keyboard.press("2")
            page.wait_for_function("() => document.getElementById('progress').value === 10")
            page.wait_for_selector("#done:not([hidden])")
            page.screenshot(path=str(ARTIFACTS / "label_page_done.png"), full_page=True)

            assert page.evaluate("typeof window.__pwned") == "undefined"  # no payload ran
        finally:
            browser.close()
    assert problems == []
    with sqlite3.connect(db) as c:
        live = c.execute("SELECT choice, reason FROM labels WHERE undone_at IS NULL ORDER BY id").fetchall()
        undone = c.execute("SELECT COUNT(*) FROM labels WHERE undone_at IS NOT NULL").fetchone()[0]
    assert len(live) == 10 and undone == 1
    assert live[0] == ("A", "shorter, 1 2 3 s u")
    assert [ch for ch, _ in live] == ["A", "B", "tie", "skip", "A", "B", "A", "B", "tie", "B"]


GUIDELINES = """# Rules

Prefer the **correct** answer; then the *shorter* one.

- check the arithmetic
- ignore `formatting`

<script>window.__pwned = "guidelines"</script>
<img src=x onerror="window.__pwned = 'guidelines-img'">
[help](javascript:window.__pwned='link')
"""


def launch(pw):
    return pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def test_two_annotators_with_own_links_guidelines_and_strength(tmp_path):
    from playwright.sync_api import sync_playwright

    pairs = write_pairs(tmp_path / "pairs.jsonl", 4)
    (tmp_path / "guide.md").write_text(GUIDELINES, encoding="utf-8")
    db = tmp_path / "labels.sqlite"
    args = [str(pairs), "--db", str(db), "--annotators", "alice,bob", "--overlap", "1", "--strength"]
    args += ["--guidelines", str(tmp_path / "guide.md")]
    port = free_port()
    run_cli("label", "serve", *args, "--no-serve", "--quiet")  # prepare, then read the two links' tokens
    store = Store(db)
    tokens = store.tokens()
    store.close()
    proc = start_server(args, port, tmp_path / "server.log", token=tokens["alice"])
    base = f"http://127.0.0.1:{port}"
    problems: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                pages = {}
                for name in ("alice", "bob"):
                    ctx = browser.new_context(viewport={"width": 1100, "height": 800})  # own cookie jar each
                    page = ctx.new_page()
                    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
                    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
                    page.goto(f"{base}/?token={tokens[name]}")
                    assert tokens[name] not in page.url  # moved into an HttpOnly cookie by a redirect
                    page.wait_for_selector("#work:not([hidden])")
                    assert page.text_content("#who") == f"Labeling as {name}"
                    pages[name] = page
                alice, bob = pages["alice"], pages["bob"]
                # Guidelines: rendered markdown, open on the first visit; their script and handlers never run.
                assert alice.is_visible("#guidelines h3")
                assert alice.text_content("#guidelines h3") == "Rules"
                assert alice.locator("#guidelines strong").all_text_contents() == ["correct"]
                assert alice.locator("#guidelines li").count() == 2
                assert alice.locator("#guidelines script, #guidelines img, #guidelines a").count() == 0
                assert "<script>" in alice.text_content("#guidelines")  # shown as text
                ARTIFACTS.mkdir(exist_ok=True)
                alice.screenshot(path=str(ARTIFACTS / "label_page_guidelines.png"), full_page=True)
                # Keyboard with a strength scale: 1 = A is better, then 3 = much better.
                alice.keyboard.press("1")
                alice.wait_for_selector("#strength-row:not([hidden])")
                alice.keyboard.press("3")
                alice.wait_for_function("() => document.getElementById('progress').value === 1")
                bob.keyboard.press("2")
                bob.keyboard.press("1")
                bob.wait_for_function("() => document.getElementById('progress').value === 1")
                # Alice's page cannot write as bob: the body's name is refused, the token decides.
                item = bob.get_attribute("#work", "data-item-id")
                status = alice.evaluate(
                    """async ([item]) => {
                        const s = await (await fetch('/api/session')).json();
                        const h = {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf};
                        const post = (path, body) => fetch(path, {method: 'POST', headers: h, body: JSON.stringify(body)});
                        const a = await post('/api/label', {annotator: 'bob', item_id: item, choice: 'B', request_id: 'forged-0001', strength: 'much'});
                        const b = await post('/api/undo', {annotator: 'bob'});
                        return [s.annotator, a.status, b.status];
                    }""",
                    [item],
                )
                assert status == ["alice", 403, 403]
                assert bob.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read the token
                for page in (alice, bob):
                    assert page.evaluate("typeof window.__pwned") == "undefined"
                other = browser.new_page()  # a fresh context: no cookie, no token
                assert other.goto(f"{base}/").status == 401
            finally:
                browser.close()
    finally:
        stop(proc)
    assert problems == []
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT annotator, choice, strength, margin FROM labels ORDER BY annotator"
        ).fetchall()
    assert rows == [("alice", "A", "much", 1.0), ("bob", "B", "slightly", 1 / 3)]


def test_ranking_three_responses_by_keyboard(tmp_path):
    from playwright.sync_api import sync_playwright

    rows = [pair_row(i, responses=[f"alpha {i}", f"beta {i}", f"gamma {i}"]) for i in range(2)]
    pairs = write_pairs(tmp_path / "pairs.jsonl", 0, rows=rows)
    db = tmp_path / "labels.sqlite"
    port = free_port()
    proc = start_server([str(pairs), "--db", str(db)], port, tmp_path / "server.log")
    shown_text = []
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("#work:not([hidden])")
                assert page.is_visible("#rank-help") and page.is_hidden("#pair-buttons")
                assert page.locator(".response").count() == 3
                page.keyboard.press("2")
                page.keyboard.press("3")  # two picks of three: the last one is implied
                assert [page.text_content(f"#rank-{k}") for k in range(3)] == ["#3", "#1", "#2"]
                page.keyboard.press("Backspace")  # start over
                assert [page.text_content(f"#rank-{k}") for k in range(3)] == ["", "", ""]
                page.keyboard.press("3")
                page.keyboard.press("1")
                assert [page.text_content(f"#rank-{k}") for k in range(3)] == ["#2", "#3", "#1"]
                shown_text.append([page.text_content(f"#resp-{k}") for k in range(3)])
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "label_page_ranking.png"), full_page=True)
                page.keyboard.press("Enter")
                page.wait_for_function("() => document.getElementById('progress').value === 1")
                page.keyboard.press("s")
                page.wait_for_selector("#done:not([hidden])")
            finally:
                browser.close()
    finally:
        stop(proc)
    with sqlite3.connect(db) as c:
        labs = c.execute("SELECT choice, ranking, winner FROM labels ORDER BY id").fetchall()
    assert [lab[0] for lab in labs] == ["rank", "skip"]
    # Keys 3, 1 (then 2 implied) ranked the shown responses 3rd, 1st, 2nd; stored as file indices, best first.
    best_first = [shown_text[0][2], shown_text[0][0], shown_text[0][1]]
    ranking = json.loads(labs[0][1])
    assert [["alpha", "beta", "gamma"][i] for i in ranking] == [t.split()[0] for t in best_first]
    assert labs[0][2] == ranking[0]

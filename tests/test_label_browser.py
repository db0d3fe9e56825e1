"""A real browser on a real server: headless Debian Chromium labels 10 pairs with the keyboard only, and
responses carrying <script> / onerror payloads show up as text and run nothing."""

from __future__ import annotations

import sqlite3

import pytest
from _label_helpers import ROOT, free_port, pair_row, start_server, stop, write_pairs
from conftest import CHROMIUM, CHROMIUM_ARGS

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
            page.goto(f"{base}/?annotator=tester")
            page.wait_for_selector("#work:not([hidden])", timeout=10_000)

            def progress() -> tuple[float, str]:
                return page.eval_on_selector("#progress", "e => e.value"), page.text_content("#progress-text")

            assert progress() == (0, "0 / 10")
            keys = ["1", "2", "3", "s", "1", "2", "1", "2", "3", "1"]
            saw_payload = False
            for k, key in enumerate(keys):
                left, right = page.text_content("#resp-a"), page.text_content("#resp-b")
                if SCRIPT in left + right:
                    saw_payload = True
                    # The markup arrives as literal text: no element was parsed out of it.
                    assert {left, right} == set(payload_row()["responses"])
                    assert page.text_content("#prompt") == payload_row()["prompt"]
                    assert page.locator("#work img, #work script, #work svg, #work b").count() == 0
                    page.screenshot(path=str(ARTIFACTS / "label_page_payload.png"), full_page=True)
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


def test_token_link_sets_cookie_then_picker_and_labeling_work(tmp_path):
    from playwright.sync_api import sync_playwright

    token = "browser-token-0123456789"
    pairs = write_pairs(tmp_path / "pairs.jsonl", 4)
    port = free_port()
    args = [
        str(pairs),
        "--db",
        str(tmp_path / "labels.sqlite"),
        "--annotators",
        "alice,bob",
        "--token",
        token,
    ]
    proc = start_server(args, port, tmp_path / "server.log", token=token)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 600})
                page.goto(f"{base}/?token={token}")
                assert token not in page.url  # moved into an HttpOnly cookie by a redirect
                page.wait_for_selector("#picker:not([hidden])")
                assert page.locator("#picker-names button").all_text_contents() == ["alice", "bob"]
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "label_page_picker.png"))
                page.click("#picker-names button:text('bob')")
                page.wait_for_selector("#work:not([hidden])")
                assert "annotator=bob" in page.url
                before = page.text_content("#progress-text")
                page.keyboard.press("1")
                page.wait_for_function("() => document.getElementById('progress').value === 1")
                assert before.startswith("0 / ")
                assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read the token
                page.click("#switch")  # back to the picker; alice's queue is untouched
                page.click("#picker-names button:text('alice')")
                page.wait_for_function(
                    "() => document.getElementById('progress-text').textContent.startsWith('0 / ')"
                )
                other = browser.new_page()  # a fresh context: no cookie, no token
                assert other.goto(f"{base}/").status == 401
            finally:
                browser.close()
    finally:
        stop(proc)

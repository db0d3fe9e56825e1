"""report.html in headless Debian Chromium, offline: one self-contained file (nothing fetched), every image loads,
the explorer's win/loss/tie filter and its search change the visible rows as the data says, and the page is not
blank."""

from __future__ import annotations

import io
import json

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, REPO

from rlhf.evaluation.compare import compare

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]
N = 16


@pytest.fixture(scope="module")
def report(tiny_chain, demo_base, tmp_path_factory):
    """SFT, the untrained base model and Best-of-2 over SFT on 16 demo prompts: wins, losses and ties to filter."""
    out = tmp_path_factory.mktemp("browser") / "report"
    metrics = compare(
        [str(tiny_chain["sft"]), str(demo_base), f"{tiny_chain['sft']}+bon:2"],
        str(tiny_chain["prompts"]),
        out,
        reward=str(tiny_chain["reward"]),
        limit=N,
        num_samples=1,
        max_new_tokens=8,
        sweep_temperatures=(0.7, 1.0),
        sweep_top_ps=(1.0,),
        sweep_prompts=4,
        overopt_prompts=0,
    )
    return out, metrics


def visible(page) -> int:
    return page.eval_on_selector_all("#explorer tbody tr", "rs => rs.filter(r => !r.hidden).length")


def test_report_in_headless_chromium(report):
    from PIL import Image, ImageStat
    from playwright.sync_api import sync_playwright

    out, metrics = report
    methods = [r for r in metrics["comparison"] if not r["baseline"]]
    assert [r["method"] for r in methods] == ["base", "bon2"]
    greedy = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    greedy = [r for r in greedy if r["setting"] == "greedy"]
    fetched, problems = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)

            def offline(route):
                url = route.request.url
                if url.startswith(("file:", "data:")):
                    return route.continue_()
                fetched.append(url)
                return route.abort()

            page.route("**/*", offline)
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")

            # every image is inline and loads
            imgs = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth, e.src.slice(0, 22)])"
            )
            assert {"winrates", "sampling_sweep"} <= {alt for alt, *_ in imgs}
            assert all(
                done and width > 0 and src == "data:image/png;base64," for _, done, width, src in imgs
            ), imgs

            # the filter: each method's wins, ties and losses against SFT, as many rows as the table counts
            assert visible(page) == N and page.text_content("#ex-count") == f"{N} of {N} prompts"
            changed = False
            for index, row in enumerate(methods):
                page.select_option("#ex-method", str(index))
                for outcome, field in (("win", "wins"), ("tie", "ties"), ("loss", "losses")):
                    page.select_option("#ex-outcome", outcome)
                    assert visible(page) == row[field], (row["method"], outcome)
                    assert page.text_content("#ex-count") == f"{row[field]} of {N} prompts"
                    changed = changed or 0 < row[field] < N
                page.select_option("#ex-outcome", "all")
                assert visible(page) == N
            assert changed, "every filter showed all rows or none: the data cannot tell a filter from none"

            # the search: case-insensitive, over prompts and answers
            answers: dict[int, str] = {}
            for r in greedy:
                answers[r["prompt_index"]] = (
                    answers.get(r["prompt_index"], r["prompt"]) + "\n" + r["response"]
                )
            expected = sum("smallest" in text.lower() for text in answers.values())
            assert 0 < expected < N
            page.fill("#ex-search", "SMALLEST")
            assert visible(page) == expected
            page.select_option("#ex-method", "0")
            page.select_option("#ex-outcome", "loss")  # both at once: the rows that pass both
            assert visible(page) <= min(expected, methods[0]["losses"])
            page.select_option("#ex-outcome", "all")
            page.fill("#ex-search", "no such text anywhere")
            assert visible(page) == 0 and page.text_content("#ex-count") == f"0 of {N} prompts"
            page.fill("#ex-search", "")
            assert visible(page) == N

            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            shot = page.screenshot(full_page=True, path=str(artifacts / "compare_report.png"))
        finally:
            browser.close()
    assert fetched == [] and problems == []
    gray = Image.open(io.BytesIO(shot)).convert("L")
    assert ImageStat.Stat(gray).stddev[0] > 20  # text, tables and plots on white, not a blank page
    assert len(gray.getcolors(maxcolors=1 << 20)) > 20

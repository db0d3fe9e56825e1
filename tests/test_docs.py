"""The docs that must not drift: the config reference is generated from the dataclasses; the README opens
with the two commands."""

import sys

from conftest import REPO


def test_config_reference_is_generated_from_the_dataclasses():
    sys.path.insert(0, str(REPO / "tools"))
    from config_reference import render

    assert (REPO / "docs" / "CONFIG.md").read_text() == render(), (
        "run: python tools/config_reference.py > docs/CONFIG.md   (or: make docs)"
    )


def test_readme_opens_with_the_two_commands():
    head = (REPO / "README.md").read_text().splitlines()[:15]
    assert any(line.startswith("make demo") for line in head) and any(
        line.startswith("make test") for line in head
    )
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci

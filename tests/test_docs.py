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


def test_architecture_doc_names_only_paths_that_exist():
    """docs/ARCHITECTURE.md says where each thing lives: every repo path it names must exist."""
    import re

    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:rlhf|sft|reward|ppo|tools|bench|tests|configs|docs)/[\w./-]*)`", text))
    assert len(named) > 30
    missing = sorted(p for p in named if not (REPO / p.rstrip("/")).exists())
    assert not missing, f"docs/ARCHITECTURE.md names paths that do not exist: {missing}"


def test_user_docs_and_configs_never_point_outside_the_repo():
    """Users do not have the developers' ../shared folder: no doc or config may send them there."""
    files = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "configs").rglob("*.yaml")]
    offenders = [str(f.relative_to(REPO)) for f in files if "../shared" in f.read_text()]
    assert not offenders, offenders

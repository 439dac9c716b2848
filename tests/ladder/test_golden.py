"""The text (Unicode and ASCII) and Mermaid drawings of every scenario, byte for byte against golden files
(regenerate with ``python -m tests.ladder.regenerate``), and docs/lifecycle.md against
its generator."""
from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from fasttcp.diagram import scenario_names
from fasttcp.diagram.docs import lifecycle_markdown
from tests.ladder.regenerate import GOLDEN, KINDS, drawings

ROOT = Path(__file__).resolve().parents[2]
DRAWN = drawings()


def _same(got: str, path: Path) -> None:
    want = path.read_text(encoding="utf-8")
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), str(path), "drawn"))
        pytest.fail(f"{path.name} differs (python -m tests.ladder.regenerate rewrites it):\n{diff}")


@pytest.mark.parametrize("file", sorted(DRAWN))
def test_scenario_drawing_matches_golden(file):
    _same(DRAWN[file], GOLDEN / file)


def test_every_scenario_has_both_golden_files_and_no_stray_ones():
    want = {f"{n}.{ext}" for n in scenario_names() for ext in KINDS}
    assert {p.name for p in GOLDEN.iterdir()} == want


def test_a_changed_drawing_fails_the_comparison(tmp_path):
    path = tmp_path / "three-way.txt"
    path.write_text(DRAWN["three-way.txt"].replace("SYN-SENT", "SYN-SEND"), encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match="SYN-SEND"):
        _same(DRAWN["three-way.txt"], path)


def test_lifecycle_doc_is_up_to_date():
    _same(lifecycle_markdown(), ROOT / "docs" / "lifecycle.md")


def test_lifecycle_doc_shows_every_scenario_with_both_pictures():
    doc = (ROOT / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    for name in scenario_names():
        section = doc.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "```mermaid\nsequenceDiagram" in section and "```text\n" in section

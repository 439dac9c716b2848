"""Rewrite the golden drawings of every scenario (tests/ladder/golden/NAME.txt,
NAME.ascii.txt and NAME.mmd) after a deliberate change to a scenario or a renderer:

    python -m tests.ladder.regenerate

Then read the diff (git diff tests/ladder/golden) before committing it.
"""
from __future__ import annotations

from pathlib import Path

from fasttcp.diagram import run_scenario, scenario_names

GOLDEN = Path(__file__).resolve().parent / "golden"
KINDS = {"txt": "text", "ascii.txt": "ascii", "mmd": "mermaid"}     # "ascii": text with ascii=True


def drawings() -> dict[str, str]:
    """File name -> drawing, for every scenario and golden format."""
    out = {}
    for name in scenario_names():
        ladder = run_scenario(name)
        for ext, fmt in KINDS.items():
            out[f"{name}.{ext}"] = ladder.render("text", ascii=True) if fmt == "ascii" else ladder.render(fmt)
    return out


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for file, text in drawings().items():
        (GOLDEN / file).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

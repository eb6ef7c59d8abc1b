"""The guide's code is the tested code: every code block of docs/guide/extending.md that
starts with a ``# <path>`` comment is quoted, line for line, from that file (which the
test suites run: the example project's ``shop`` app in tests/swapped, tests/adoption in
tests/test_adoption.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide" / "extending.md"
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def quoted_blocks() -> list[tuple[str, list[str]]]:
    blocks = []
    for match in BLOCK.finditer(GUIDE.read_text()):
        lines = [line.strip() for line in match.group(2).splitlines()]
        if lines and re.fullmatch(r"# [\w/.]+\.py", lines[0]):
            blocks.append((lines[0][2:], lines[1:]))
    return blocks


def test_the_guide_quotes_files() -> None:
    assert len(quoted_blocks()) >= 8


@pytest.mark.parametrize(("path", "lines"), quoted_blocks(), ids=lambda v: str(v)[:40])
def test_a_quoted_block_is_in_its_file(path: str, lines: list[str]) -> None:
    source = [line.strip() for line in (ROOT / path).read_text().splitlines()]
    windows = (source[i : i + len(lines)] for i in range(len(source) - len(lines) + 1))
    assert lines in windows, f"{GUIDE.name} quotes {path}, which no longer has:\n" + "\n".join(
        lines
    )

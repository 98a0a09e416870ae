"""Reading the project's Markdown pages in tests: a section by its heading, its code blocks.

The README and the pages under docs/ hold snippets a reader runs and tables the code must
match; the tests that run or compare them find them here by heading, so a page can be
reorganised without its checks going quiet (a missing heading fails, never skips).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def section(page: Path, title: str) -> str:
    """The text under the heading ``title`` (any level), up to the next heading of the same
    or a higher level."""
    text = page.read_text()
    found = re.search(rf"^(#+) {re.escape(title)}\n", text, flags=re.M)
    assert found is not None, f"{page.name} has no heading {title!r}"
    level = len(found.group(1))
    rest = text[found.end() :]
    end = re.search(rf"^#{{1,{level}}} ", _without_code(rest), flags=re.M)
    return rest if end is None else rest[: end.start()]


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in ``text``, in order."""
    return [str(block) for block in re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)]


def _without_code(text: str) -> str:
    """``text`` with the lines of fenced code blocks blanked, offsets kept: a ``# comment``
    in a shell snippet is not a heading."""
    return re.sub(
        r"^```.*?^```", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.M | re.S
    )

"""Every relative link and anchor in the README, docs/ and bench/README.md resolves.

A link is checked as GitHub renders it: the path, relative to the page, must name a file or
folder of the repository, and a ``#fragment`` must be the slug of a heading of the page it
points to. Links in code (fenced blocks and inline spans) are not links; links with a scheme
(``https:``) leave the repository and are not fetched.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.docs import DOCS, README, ROOT

PAGES = [README, *sorted(DOCS.glob("*.md")), ROOT / "bench" / "README.md"]

_FENCED = re.compile(r"^(```|~~~).*?^\1", flags=re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", flags=re.M)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", flags=re.I)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text as shown, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = re.sub(r"[`*_~]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets ``-1``, ``-2``, ..."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in _HEADING.findall(_FENCED.sub("", page.read_text())):
        base = slug(heading)
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def links(page: Path) -> list[str]:
    """The link targets of a page's prose, in order."""
    prose = _INLINE_CODE.sub("", _FENCED.sub("", page.read_text()))
    return _LINK.findall(prose)


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``page`` that does not resolve, with the reason."""
    problems = []
    for target in links(page):
        if _SCHEME.match(target):
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(root.resolve()):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and (resolved.suffix != ".md" or fragment not in anchors(resolved)):
            problems.append(f"{target}: no heading #{fragment} in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_readme_links_to_every_page_of_docs() -> None:
    """The README is the way in: no page under docs/ is left unreachable from it."""
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert {page.resolve() for page in DOCS.glob("*.md")} <= linked


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    """The check can fail: a missing file, a missing heading, a path out of the repository,
    while good links, code and external links pass."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text(
        "# Other\n\n## Flags, and `--db`\n## Flags, and `--db`\n"
    )
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n## The webhook's signature\n\n"
        "[ok](other.md) [ok](other.md#flags-and---db-1) [ok](#the-webhooks-signature)\n"
        "[ok](https://example.com/x#y) `[code](missing.md)`\n"
        "```md\n[code](missing.md)\n```\n"
        "[bad](missing.md) [bad](other.md#nowhere) [bad](../../outside.md) [bad](#nope)\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: no such file",
        "other.md#nowhere: no heading #nowhere in other.md",
        "../../outside.md: outside the repository",
        "#nope: no heading #nope in page.md",
    ]

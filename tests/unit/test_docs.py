"""The repository documents itself: README.md and docs/*.md link only inside the repository,
every relative link (file and #anchor) resolves, and every YAML example in the docs is valid."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from rules import load_rules
from rules.challenges import load_challenges

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    return _FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for line in _prose(page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def links(page: Path) -> list[str]:
    return _LINK.findall(_prose(page.read_text(encoding="utf-8")))


def test_the_reference_docs_exist() -> None:
    assert (ROOT / "docs" / "api.md").is_file() and (ROOT / "docs" / "rules.md").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_link_leaves_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text and "/work/" not in text
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            assert target.startswith("https://"), target  # only public web pages
            continue
        resolved = (page.parent / unquote(target.split("#", 1)[0])).resolve()
        assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / unquote(path)).resolve() if path else page
        if not file.exists() or (anchor and (file.suffix != ".md" or anchor not in anchors(file))):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def yaml_blocks(page: Path) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


@pytest.mark.parametrize(
    "block",
    [b for page in PAGES for b in yaml_blocks(page)],
    ids=lambda b: b.split("\n", 1)[0][:30],
)
def test_every_yaml_example_in_the_docs_is_valid(block: str) -> None:
    if block.startswith(("when:", "points:")):  # one expression per line
        for line in block.strip().splitlines():
            rest = "" if line.startswith("points:") else "\n    points: 1"
            load_rules(f"version: 1\nrules:\n  - id: r\n    event: e\n    {line}{rest}\n")
    elif "challenges:" in block:
        assert load_challenges(block).challenges
    elif block.startswith("version: 1"):
        load_rules(block)
    else:  # a fragment of a rules file
        load_rules("version: 1\n" + block)

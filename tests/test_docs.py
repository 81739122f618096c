"""The docs stay true: generated pages current, links resolving, named files and revisions existing."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from bflsync.store.check import KNOWN_REVISIONS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    pages = generator().generated()
    assert isinstance(pages, dict)
    return pages


@pytest.mark.parametrize("name", ["commands.md", "README.md"])
def test_the_generated_page_is_current(generated: dict[str, str], name: str) -> None:
    """When this fails, run `python3 tasks.py docs` and commit the result."""
    assert (DOCS / name).read_text(encoding="utf-8") == generated[name]


def test_the_index_lists_every_page(generated: dict[str, str]) -> None:
    listed = set(re.findall(r"\]\(([a-z0-9-]+\.md)\)", generated["README.md"]))
    assert listed == {path.name for path in DOCS.glob("*.md")} - {"README.md"}


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_the_readme_quick_start_gives_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "python3 tasks.py demo" in quick_start
    assert "python3 tasks.py test" in quick_start


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' dropped, spaces to '-'."""
    anchors = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#+ (.*)", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [link for link in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in link]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_between_pages_resolves(page: Path) -> None:
    for link in _links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: {link}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path.read_text(encoding="utf-8")), f"{page.name}: {link}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_file_a_page_names_exists(page: Path) -> None:
    named = re.findall(
        r"(?<![\w/.])((?:bflsync|tests|benchmarks|migrations)/[\w/.-]+\.py)\b", page.read_text()
    )
    missing = [name for name in named if "NNNN" not in name and not (ROOT / name).exists()]
    assert missing == [], page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_revision_a_page_names_exists(page: Path) -> None:
    named = set(re.findall(r"\b(\d{4}_[a-z][a-z_]*)\b", page.read_text(encoding="utf-8")))
    assert named - set(KNOWN_REVISIONS) == set(), page.name

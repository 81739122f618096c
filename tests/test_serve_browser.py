"""`bflsync serve` seen in a real browser: Debian's Chromium, headless, driven by Playwright.

One browser and one server for the module. Where Chromium or Playwright is missing the tests are
skipped with the reason (``python3 tasks.py test`` installs Chromium when it runs as root), except
under ``CI=true``, where a missing browser fails. Screenshots go to ``$BFLSYNC_SCREENSHOTS`` when
set (docs/img/ is refreshed that way), else to a temporary folder the run prints.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from datasette.utils import tilde_encode
from demostore import finetune_id
from serving import Served, build_store, start
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.store import access

COUNT = 72
TIMELINE_ID = finetune_id(70)
WIDTH, HEIGHT = 1400, 1000
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser tests: see tasks.py)")
    pytest.skip(reason)


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        unavailable("no Chromium on this machine: apt-get install chromium (tasks.py does, as root)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("BFLSYNC_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("serve-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {path}")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("browser") / "store.db", count=COUNT)


@pytest.fixture(scope="module")
def served(store: Path) -> Iterator[Served]:
    server = start(store, "--port", "0")
    yield server
    server.stop()


# Markup that would set window.pwned if a page let it run, and an unbroken value far wider than a screen.
PWN = ("<script>window.pwned=1</script>", '<img src=x onerror="window.pwned=2">', "javascript:window.pwned=3")
HOSTILE = PWN[0]
UNBROKEN_ID = "unbroken-" + "W" * 2_000
UNBROKEN = "W" * 200_000


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store with finetunes whose ids, parameters, labels and notes are markup, and one
    whose id is one unbroken 2,000-character word and comment a 200,000-character one."""
    path = build_store(tmp_path_factory.mktemp("hostile") / "store.db", count=3)
    opened = access.open_store_for_write(access.locate_store(str(path)))
    details = {"finetune_comment": PWN[1], "mode": PWN[0], "trigger_word": PWN[2], PWN[1]: PWN[0]}
    write_sync(opened.engine, {HOSTILE: details, UNBROKEN_ID: {"finetune_comment": UNBROKEN}}, now=day(20))
    write_sync(opened.engine, {HOSTILE: {**details, "mode": PWN[1]}}, now=day(21), tombstone=False)
    opened.engine.dispose()
    for arguments in (["label", HOSTILE, f'proj="{PWN[0]}"', f"url={PWN[2]}"], ["note", HOSTILE, PWN[1]]):
        result = CliRunner().invoke(cli, ["--db", str(path), *arguments], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def hostile_served(hostile_store: Path) -> Iterator[Served]:
    server = start(hostile_store, "--port", "0")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright's Python package is not installed (the test extra has it)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": WIDTH, "height": HEIGHT},
        )
        yield context
        context.close()


class Page:
    """A fresh tab that records console errors and uncaught exceptions."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on(
            "console", lambda message: self.errors.append(message.text) if message.type == "error" else None
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, url: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_load_state("networkidle")
        return self.page


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    page = Page(browser)
    yield page
    page.page.close()


def cli_ids(store: Path, words: str) -> set[str]:
    result = CliRunner().invoke(
        cli,
        ["--db", str(store), "query", "--text", words, "--format", "ids", "--limit", "0"],
        catch_exceptions=False,
    )
    return set(result.stdout.split())


def row_ids(page: Any) -> set[str]:
    return {
        cell.inner_text().strip()
        for cell in page.query_selector_all("table.rows-and-columns td.col-finetune_id")
    }


def test_the_first_screen_shows_finetune_rows_with_learning_rate_and_status(
    served: Served, tab: Page, screenshots: Path
) -> None:
    page = tab.open(served.url + "/")
    assert page.url == f"{served.url}/store/finetunes"
    first = page.query_selector("table.rows-and-columns tbody tr")
    box = first.bounding_box()
    assert box is not None and box["y"] + box["height"] <= HEIGHT  # data on the first screen
    cells = {
        name: first.query_selector(f"td.col-{name}").inner_text().strip()
        for name in ("finetune_id", "learning_rate", "status")
    }
    assert cells["finetune_id"].startswith("ft-")
    link = first.query_selector("td.col-finetune_id a")
    assert link.get_attribute("href") == f"/-/finetunes/{cells['finetune_id']}"
    assert float(cells["learning_rate"]) > 0
    assert cells["status"] in {"Ready", "Pending"}
    page.screenshot(path=str(screenshots / "serve-index.png"))
    assert tab.errors == []


def test_a_finetune_page_shows_its_timeline_with_an_old_new_change(
    served: Served, tab: Page, screenshots: Path
) -> None:
    page = tab.open(f"{served.url}/-/finetunes/{TIMELINE_ID}")
    assert page.inner_text("h1") == f"finetune {TIMELINE_ID}"
    changes = [item.inner_text() for item in page.query_selector_all("#timeline .bflsync-change")]
    assert "iterations: 300 → 400" in changes
    assert "project: acme → initech" in changes
    page.screenshot(path=str(screenshots / "serve-finetune.png"), full_page=True)
    assert tab.errors == []


def test_the_dashboard_renders_its_charts_without_console_errors(
    served: Served, tab: Page, screenshots: Path
) -> None:
    page = tab.open(served.url + "/-/dashboards/bflsync")
    page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 5")
    charts = page.query_selector_all(".vega-embed")
    assert len(charts) == 5
    assert all(chart.query_selector("canvas, svg") for chart in charts)
    page.screenshot(path=str(screenshots / "serve-dashboard.png"), full_page=True)
    assert tab.errors == []


def test_the_search_box_finds_a_cjk_substring(
    served: Served, store: Path, tab: Page, screenshots: Path
) -> None:
    page = tab.open(served.url + "/store/finetunes")
    page.fill("input[name=_text]", "日本")
    page.click("form.bflsync-search input[type=submit]")
    page.wait_for_load_state("networkidle")
    expected = cli_ids(store, "日本")
    assert expected
    assert row_ids(page) == expected
    page.screenshot(path=str(screenshots / "serve-search.png"))
    assert tab.errors == []


@pytest.mark.parametrize(
    "page",
    [
        "/store/finetunes",
        "/store/finetunes?_facet=label_list",
        "/store/labels",
        "/store/changes",
        f"/-/finetunes/{tilde_encode(HOSTILE)}",
        f"/-/compare?id={urllib.parse.quote(HOSTILE)}&id=ft-00001",
        f"/-/dashboards/bflsync?label={urllib.parse.quote('proj=' + PWN[0])}",
    ],
)
def test_markup_in_stored_data_never_runs(hostile_served: Served, tab: Page, page: str) -> None:
    opened = tab.open(hostile_served.url + page)
    assert opened.evaluate("window.pwned") is None
    links = opened.eval_on_selector_all("a[href]", "links => links.map(link => link.getAttribute('href'))")
    assert not [href for href in links if href.strip().lower().startswith("javascript:")]
    assert tab.errors == []


@pytest.mark.parametrize(
    "page",
    [
        f"/-/finetunes/{tilde_encode(UNBROKEN_ID)}",
        f"/-/compare?id={UNBROKEN_ID}&id=ft-00001",
        "/store/finetunes",
    ],
    ids=["finetune", "compare", "finetunes"],
)
def test_a_value_wider_than_the_screen_wraps_instead_of_widening_the_page(
    hostile_served: Served, tab: Page, page: str
) -> None:
    opened = tab.open(hostile_served.url + page)
    assert UNBROKEN_ID[:100] in opened.inner_text("body")
    assert opened.evaluate("document.documentElement.scrollWidth") <= WIDTH

"""Page load times of ``bflsync serve`` at 20,000 finetunes (issue 20: charts in <= 1 s at that size).

Builds a store of generated finetunes (tests/demostore.py: six weekly syncs, statuses, labels,
notes; cached in the temp directory), starts ``bflsync serve --port 0`` on loopback and times,
over loopback HTTP, each page a user opens: the first screen (live finetunes with facets), a
finetune's page with its timeline, the CLI's search (words and CJK substrings), the dashboard page
and each chart's statement as the dashboard fetches it. The same-run baseline is
``/-/versions.json``, a page that reads nothing from the store. Where Chromium and Playwright are
installed, the time until the dashboard has drawn all its charts in the browser is measured too.

Run: ``.venv/bin/python benchmarks/bench_serve.py`` (``--count 20000`` is the default, ``--rebuild``
to rebuild the store).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from demostore import finetune_id  # noqa: E402
from serving import build_store, start  # noqa: E402

REPEAT = 7


def timed(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (http on loopback)
        response.read()
        assert response.status == 200, url
    return time.perf_counter() - started


def measure(url: str) -> tuple[float, float]:
    timed(url)  # warm: the first request of a page pays for its templates and the page cache
    samples = [timed(url) for _ in range(REPEAT)]
    return min(samples), statistics.median(samples)


def chart_statements(base: str) -> dict[str, str]:
    with urllib.request.urlopen(f"{base}/-/dashboards/bflsync", timeout=120) as response:  # noqa: S310
        page = response.read().decode("utf-8")
    found = {}
    for part in page.split("renderChart('")[1:]:
        slug = part.split("'", 1)[0]
        spec = json.JSONDecoder().raw_decode(part.split(", ", 1)[1])[0]
        found[slug] = spec["query"]
    return found


def browser_dashboard(base: str) -> float | None:
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if executable is None:
        return None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/-/dashboards/bflsync")  # warm
        started = time.perf_counter()
        page.goto(f"{base}/-/dashboards/bflsync")
        page.wait_for_function("document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 5")
        elapsed = time.perf_counter() - started
        browser.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rebuild", action="store_true")
    options = parser.parse_args()
    store = Path(tempfile.gettempdir()) / f"bflsync-bench-serve-{options.count}" / "store.db"
    if options.rebuild or not store.exists():
        shutil.rmtree(store.parent, ignore_errors=True)
        store.parent.mkdir(parents=True)
        started = time.perf_counter()
        build_store(store, count=options.count)
        print(f"built {options.count} finetunes in {time.perf_counter() - started:.1f} s: {store}")
    server = start(store, "--port", "0")
    try:
        base = server.url
        pages = {
            "baseline /-/versions.json": "/-/versions.json",
            "first screen (finetunes, facets)": "/store/finetunes",
            "first screen as JSON": "/store/finetunes.json?_extra=facet_results",
            "finetune page (timeline)": f"/-/finetunes/{finetune_id(70)}",
            "search fox (word)": "/store/finetunes?_text=fox",
            "search 日本 (CJK, 2 chars)": "/store/finetunes?" + urllib.parse.urlencode({"_text": "日本"}),
            "search 日本の (CJK, 3 chars)": "/store/finetunes?" + urllib.parse.urlencode({"_text": "日本の"}),
            "dashboard page": "/-/dashboards/bflsync",
        }
        for slug, statement in chart_statements(base).items():
            pages[f"chart {slug}"] = "/store.json?" + urllib.parse.urlencode(
                {"sql": statement, "_shape": "objects"}
            )
        baseline = None
        print(f"{'page':<40} {'min ms':>8} {'median ms':>10} {'x baseline':>11}")
        for label, path in pages.items():
            low, median = measure(base + path)
            baseline = baseline or median
            print(f"{label:<40} {low * 1000:8.1f} {median * 1000:10.1f} {median / baseline:11.1f}")
        drawn = browser_dashboard(base)
        if drawn is not None:
            print(f"{'dashboard drawn in Chromium (5 charts)':<40} {drawn * 1000:8.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()

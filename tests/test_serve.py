"""`bflsync serve`: the real Datasette over the store, read-only, with bflsync's metadata."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from storebuild import day, file_digest, write_sync

from bflsync.cli import cli
from bflsync.web.metadata import datasette_metadata

RECORDS = {
    "fox-1": {"finetune_comment": "red fox in snow", "mode": "character", "learning_rate": 1e-5},
    "fox-2": {"finetune_comment": "Fox portrait", "extra": {"tag": "forest"}, "learning_rate": 2e-5},
    "owl": {"finetune_comment": "owl at night", "mode": "style", "learning_rate": 1e-5},
    "gone-fox": {"finetune_comment": "a fox that was deleted"},
}


@pytest.fixture
def store(store_engine: Engine, db_path: Path) -> Path:
    write_sync(store_engine, RECORDS, now=day(1))
    write_sync(store_engine, {k: v for k, v in RECORDS.items() if k != "gone-fox"}, now=day(2))
    store_engine.dispose()
    return db_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback only)
        return json.load(response)


@pytest.fixture
def served(store: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bflsync", "--db", str(store), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(f"{base}/-/versions.json")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "Datasette did not start"
                time.sleep(0.2)
        yield f"{base}/{store.stem}"
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stderr:
            process.stderr.close()


def text_ids(store: Path, words: str) -> set[str]:
    result = CliRunner().invoke(
        cli, ["--db", str(store), "query", "--text", words, "--format", "ids"], catch_exceptions=False
    )
    return set(result.stdout.split())


def search_ids(database_url: str, words: str, *, raw: bool = False) -> set[str]:
    """Datasette's search; it quotes every word, so a prefix (fo*) needs _searchmode=raw (docs/reading.md)."""
    params = {"_search": words, "deleted_at__isnull": "1", "_shape": "array", "_col": "finetune_id"}
    query = urllib.parse.urlencode({**params, "_size": "max", **({"_searchmode": "raw"} if raw else {})})
    return {row["finetune_id"] for row in get_json(f"{database_url}/finetune.json?{query}")}


@pytest.mark.slow
def test_datasette_search_gives_exactly_the_ids_of_query_text(
    served: str, store: Path, store_engine: Engine
) -> None:
    for words in ("fox", "forest", "owl night", "FOX portrait", "nothing-matches"):
        assert search_ids(served, words) == text_ids(store, words), words
    assert search_ids(served, "fo*", raw=True) == text_ids(store, "fo*") == {"fox-1", "fox-2"}
    assert search_ids(served, "fox") == {"fox-1", "fox-2"}
    # Not immutable: what a sync commits while Datasette runs is served at once.
    write_sync(store_engine, {**RECORDS, "fox-3": {"finetune_comment": "arctic fox"}}, now=day(3))
    store_engine.dispose()
    assert search_ids(served, "fox") == text_ids(store, "fox") == {"fox-1", "fox-2", "fox-3", "gone-fox"}


@pytest.mark.slow
def test_datasette_serves_the_metadata_facets_and_canned_queries(served: str, store: Path) -> None:
    table = get_json(f"{served}/finetune.json?_size=0&_extra=facet_results")
    assert set(table["facet_results"]) == {"mode", "finetune_type", "account", "status"}
    changes = get_json(f"{served}/changes_since.json?since=2026-01-02&_shape=array")
    assert [(row["finetune_id"], row["change"]) for row in changes] == [("gone-fox", "deleted")]
    rates = get_json(f"{served}/finetunes_by_learning_rate.json?mode=&_shape=array")
    assert [(row["learning_rate"], row["finetunes"]) for row in rates] == [(1e-05, 2), (2e-05, 1)]
    database = get_json(f"{served}.json")
    visible = {table["name"] for table in database["tables"] if not table["hidden"]}
    assert visible == {
        "finetune",
        "finetune_version",
        "sync_run",
        "sync_error",
        "account",
        "finetune_status",
        "finetune_label",
        "finetune_label_change",
        "finetune_note",
    }
    with pytest.raises(urllib.error.HTTPError) as denied:
        get_json(f"{served}/store_meta.json")
    assert denied.value.code == 403


def test_print_metadata_describes_the_store(store: Path) -> None:
    digest = file_digest(store)
    result = CliRunner().invoke(
        cli, ["--db", str(store), "serve", "--print-metadata"], catch_exceptions=False
    )
    assert result.exit_code == 0
    metadata = json.loads(result.stdout)
    tables = metadata["databases"]["store"]["tables"]
    assert tables["alembic_version"] == {"hidden": True}
    finetune = tables["finetune"]
    assert (finetune["fts_table"], finetune["fts_pk"], finetune["label_column"]) == (
        "finetune_fts",
        "id",
        "finetune_id",
    )
    assert finetune["facets"] == ["mode", "finetune_type", "account", "status"]
    assert "learning rate" in finetune["columns"]["learning_rate"]
    assert "UTC" in finetune["columns"]["last_changed_at"]
    assert set(metadata["databases"]["store"]["queries"]) == {"changes_since", "finetunes_by_learning_rate"}
    assert file_digest(store) == digest


def test_facets_follow_the_columns_the_store_has() -> None:
    columns = {
        "finetune": ["id", "finetune_id", "mode", "finetune_type", "account", "status"],
        "alembic_version": [],
    }
    metadata = datasette_metadata("x", columns)
    assert metadata["databases"]["x"]["tables"]["finetune"]["facets"] == [
        "mode",
        "finetune_type",
        "account",
        "status",
    ]


def test_serve_refuses_a_server_database_and_a_missing_store(tmp_path: Path) -> None:
    postgres = CliRunner().invoke(
        cli, ["--db", "postgresql+psycopg://u@localhost/x", "serve", "--print-metadata"]
    )
    assert (postgres.exit_code, postgres.stdout) == (2, "")
    assert "needs a SQLite store" in postgres.stderr
    missing = CliRunner().invoke(cli, ["--db", str(tmp_path / "none.db"), "serve"])
    assert missing.exit_code == 2
    assert "no bflsync store" in missing.stderr
    assert not (tmp_path / "none.db").exists()


def test_serve_without_datasette_says_how_to_install_it(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasette.cli", None)
    result = CliRunner().invoke(cli, ["--db", str(store), "serve"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "pipx install '.[serve]'" in result.stderr

"""Rows another tool wrote, and SQLite libraries too old for the read side, never break a read command.

Python's json module writes ``NaN`` for a float NaN; SQLite's JSON functions refuse it. A store
row holding it must not make read commands say the store is unusable: the finetune is named on
stderr and left out of answers that read its details' keys, and JSON output stays JSON.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from storebuild import day, file_digest, write_sync

from bflsync.cli import cli

BROKEN = "broken-by-another-tool"


@pytest.fixture
def nan_store(store_engine: Engine, db_path: Path) -> Path:
    write_sync(
        store_engine,
        {
            "fine": {"mode": "style", "extra": {"score": 1}},
            BROKEN: {"mode": "style", "extra": {"score": 1}},
        },
        now=day(1),
    )
    store_engine.dispose()
    # Closed here, not when garbage collected: closing checkpoints the WAL into the file, which
    # would change the digest the refusal tests compare.
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute(
            "UPDATE finetune SET details = ? WHERE finetune_id = ?",
            ('{"extra":{"score":NaN},"mode":"style"}', BROKEN),
        )
    connection.close()
    return db_path


def read(store: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", str(store), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def strict_json(text: str) -> object:
    """JSON as other tools read it: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> object:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_details_key_filter_names_the_unparsable_finetune_and_answers_without_it(nan_store: Path) -> None:
    result = read(nan_store, "query", "extra.score=1", "--format", "ids")
    assert result.stdout == "fine\n"
    assert BROKEN in result.stderr
    assert "not valid JSON" in result.stderr


def test_a_negated_details_key_filter_leaves_the_unparsable_finetune_out_too(nan_store: Path) -> None:
    result = read(nan_store, "query", "extra.score!=2", "--format", "ids")
    assert result.stdout == "fine\n"
    assert BROKEN in result.stderr


def test_facets_on_a_details_key_skip_the_unparsable_finetune(nan_store: Path) -> None:
    result = read(nan_store, "facets", "extra.score", "--format", "json")
    assert json.loads(result.stdout) == [{"field": "extra.score", "value": 1, "count": 1}]
    assert BROKEN in result.stderr


def test_json_output_of_an_unparsable_finetune_stays_json_with_null(nan_store: Path) -> None:
    records = strict_json(read(nan_store, "query", "--format", "json").stdout)
    assert isinstance(records, list)
    assert {record["finetune_id"]: record["details"]["extra"] for record in records} == {
        "fine": {"score": 1},
        BROKEN: {"score": None},
    }
    shown = strict_json(read(nan_store, "show", BROKEN, "--format", "json").stdout)
    assert isinstance(shown, dict)
    assert shown["details"] == {"extra": {"score": None}, "mode": "style"}


def test_column_filters_still_list_the_unparsable_finetune(nan_store: Path) -> None:
    assert read(nan_store, "query", "mode=style", "--format", "ids").stdout == f"{BROKEN}\nfine\n"


@pytest.mark.parametrize(
    "args",
    [["facets", "extra.score"], ["show", "fine", "--format", "request"], ["label", "fine", "x=1"]],
    ids=["lean reader", "lean reader, request", "write engine"],
)
def test_an_sqlite_library_older_than_3_38_is_refused_in_one_line(
    nan_store: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    digest = file_digest(nan_store)
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 37, 2))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.37.2")
    result = CliRunner().invoke(cli, ["--db", str(nan_store), *args])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1
    assert "needs SQLite 3.38.0 or newer" in result.stderr and "3.37.2" in result.stderr
    assert file_digest(nan_store) == digest

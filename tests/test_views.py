"""Revisions 0012_views and 0014_typed_label_views: ``finetunes``, ``changes``, ``status_changes`` and
``labels`` for SQL users, on both engines, and the recipes of docs/views.md for sqlite-utils, pandas and
DuckDB."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from demostore import fill, finetune_id
from sqlalchemy.engine import Engine

from bflsync.cli import cli
from bflsync.store import access

COUNT = 24


def rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.text(sql))]


def as_json(value: Any) -> Any:
    """SQLite hands JSON back as text, psycopg as the decoded value."""
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture
def filled(any_store: tuple[str, Engine]) -> tuple[str, Engine]:
    fill(any_store[1], count=COUNT)
    return any_store


def cli_ids(url: str, *arguments: str) -> list[str]:
    result = CliRunner().invoke(
        cli, ["--db", url, "query", *arguments, "--format", "ids", "--limit", "0"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout.split()


def test_finetunes_view_holds_exactly_the_live_finetunes_query_lists(filled: tuple[str, Engine]) -> None:
    url, engine = filled
    listed = rows(engine, "SELECT finetune_id FROM finetunes")
    assert sorted(row["finetune_id"] for row in listed) == sorted(cli_ids(url))
    assert finetune_id(22) not in {row["finetune_id"] for row in listed}  # deleted in the last week


def test_finetunes_view_puts_useful_columns_first_labels_as_an_object_and_details_last(
    filled: tuple[str, Engine],
) -> None:
    _, engine = filled
    [row] = rows(engine, f"SELECT * FROM finetunes WHERE finetune_id = '{finetune_id(5)}'")
    assert list(row)[:9] == [
        "finetune_id",
        "finetune_comment",
        "mode",
        "finetune_type",
        "learning_rate",
        "iterations",
        "lora_rank",
        "status",
        "labels",
    ]
    assert list(row)[-1] == "details"
    with engine.connect() as connection:
        stored = dict(
            connection.execute(
                sa.text(
                    "SELECT l.key, l.value FROM finetune_label l JOIN finetune f ON f.id = l.finetune_pk"
                    " WHERE f.finetune_id = :id"
                ),
                {"id": finetune_id(5)},
            ).all()
        )
    assert set(stored) == {"project", "reviewed"}
    # Values pass through as the table holds them, whatever text form the revision writes.
    assert as_json(row["labels"]) == stored
    assert as_json(row["label_list"]) == [f"project={stored['project']}", f"reviewed={stored['reviewed']}"]
    expected = {
        "finetune_id": finetune_id(5),
        "finetune_comment": "red fox in snow #5",
        "mode": "product",
        "finetune_type": "lora",
        "learning_rate": 2e-05,
        "iterations": 300,
        "lora_rank": 32,
        "status": "Pending",
        "account": "default",
        "source": "api.us1.bfl.ai",
        "version": 1,
    }
    assert {key: row[key] for key in expected} == expected
    [bare] = rows(engine, f"SELECT labels, label_list FROM finetunes WHERE finetune_id = '{finetune_id(1)}'")
    assert (as_json(bare["labels"]), as_json(bare["label_list"])) == ({}, [])


def test_changes_view_has_one_row_per_version_with_ids_and_changed_keys(filled: tuple[str, Engine]) -> None:
    _, engine = filled
    changes = rows(
        engine,
        "SELECT finetune_id, version, change, changed_keys FROM changes"
        f" WHERE finetune_id IN ('{finetune_id(7)}', '{finetune_id(22)}') ORDER BY finetune_id, version",
    )
    assert [(row["finetune_id"], row["version"], row["change"]) for row in changes] == [
        (finetune_id(7), 1, "created"),
        (finetune_id(7), 2, "updated"),
        (finetune_id(22), 1, "created"),
        (finetune_id(22), 2, "deleted"),
    ]
    assert json.loads(changes[1]["changed_keys"]) == ["iterations", "learning_rate"]
    [(total,)] = [tuple(row.values()) for row in rows(engine, "SELECT count(*) AS n FROM finetune_version")]
    assert len(rows(engine, "SELECT * FROM changes")) == total


def test_status_changes_view_lists_each_status_change_of_a_finetune(filled: tuple[str, Engine]) -> None:
    _, engine = filled
    statuses = rows(
        engine,
        f"SELECT status, progress FROM status_changes WHERE finetune_id = '{finetune_id(6)}' ORDER BY observed_at",
    )
    assert statuses == [{"status": "Pending", "progress": None}, {"status": "Ready", "progress": 1.0}]


def test_labels_view_passes_the_stored_values_through_with_the_finetune_id(
    filled: tuple[str, Engine],
) -> None:
    _, engine = filled
    view = rows(engine, "SELECT finetune_id, key, value, set_by FROM labels ORDER BY finetune_id, key")
    table = rows(
        engine,
        "SELECT f.finetune_id, l.key, l.value, l.set_by FROM finetune_label l"
        " JOIN finetune f ON f.id = l.finetune_pk ORDER BY f.finetune_id, l.key",
    )
    assert view == table
    assert {(row["finetune_id"], row["key"], row["set_by"]) for row in view} >= {
        (finetune_id(0), "project", "bo"),
        (finetune_id(5), "reviewed", "ana"),
    }


TYPED = {"count": 3, "ok": True, "project": "acme", "ratio": 0.5}


def set_typed_labels(url: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", url, "label", finetune_id(1), "count=3", "ratio=0.5", "ok=true", "project=acme"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr


def test_finetunes_view_labels_keep_their_json_type(filled: tuple[str, Engine]) -> None:
    url, engine = filled
    set_typed_labels(url)
    [row] = rows(engine, f"SELECT labels, label_list FROM finetunes WHERE finetune_id = '{finetune_id(1)}'")
    labels = as_json(row["labels"])
    assert labels == TYPED
    assert [type(labels[key]) for key in sorted(TYPED)] == [int, bool, str, float]
    assert as_json(row["label_list"]) == ["count=3", "ok=true", "project=acme", "ratio=0.5"]


def test_labels_view_has_value_json_next_to_the_plain_value(filled: tuple[str, Engine]) -> None:
    url, engine = filled
    set_typed_labels(url)
    view = rows(engine, f"SELECT * FROM labels WHERE finetune_id = '{finetune_id(1)}' ORDER BY key")
    assert list(view[0])[:4] == ["finetune_id", "key", "value", "value_json"]
    assert [(row["key"], row["value"], json.loads(row["value_json"])) for row in view] == [
        ("count", "3", 3),
        ("ok", "true", True),
        ("project", "acme", "acme"),
        ("ratio", "0.5", 0.5),
    ]


def test_downgrade_below_typed_label_views_restores_plain_label_values(
    filled: tuple[str, Engine], store_db: str
) -> None:
    url, engine = filled
    set_typed_labels(url)
    engine.dispose()
    location = access.locate_store(store_db)
    access.downgrade_store(location, revision="0011_iso_times")
    query = f"SELECT labels FROM finetunes WHERE finetune_id = '{finetune_id(1)}'"
    [row] = rows(engine, query)
    assert as_json(row["labels"]) == {"count": "3", "ok": "true", "project": "acme", "ratio": "0.5"}
    assert "value_json" not in rows(engine, "SELECT * FROM labels")[0]
    engine.dispose()
    access.upgrade_store(location, revision="head").engine.dispose()
    [row] = rows(engine, query)
    assert as_json(row["labels"]) == TYPED


def test_downgrade_drops_the_views_and_upgrade_brings_them_back(store_db: str) -> None:
    location = access.locate_store(store_db)
    access.upgrade_store(location, revision="head").engine.dispose()
    below = access.KNOWN_REVISIONS[access.KNOWN_REVISIONS.index("0012_views") - 1]
    access.downgrade_store(location, revision=below)
    engine = sa.create_engine(store_db if "://" in store_db else f"sqlite:///{store_db}")
    try:
        assert not set(sa.inspect(engine).get_view_names()) & {
            "finetunes",
            "changes",
            "status_changes",
            "labels",
        }
    finally:
        engine.dispose()
    access.upgrade_store(location, revision="head").engine.dispose()
    engine = sa.create_engine(store_db if "://" in store_db else f"sqlite:///{store_db}")
    try:
        assert set(sa.inspect(engine).get_view_names()) >= {
            "finetunes",
            "changes",
            "status_changes",
            "labels",
        }
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_store(store_engine: Engine, db_path: Path) -> Path:
    fill(store_engine, count=COUNT)
    store_engine.dispose()
    return db_path


def test_sqlite_utils_recipe_reads_the_finetunes_view(sqlite_store: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("sqlite-utils")),
            "query",
            str(sqlite_store),
            "SELECT finetune_id, mode FROM finetunes WHERE mode = 'style' ORDER BY finetune_id",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [row["finetune_id"] for row in json.loads(result.stdout)] == [
        finetune_id(n) for n in (2, 6, 10, 14, 18)
    ]


def test_sqlite_utils_recipe_does_arithmetic_on_a_numeric_label(sqlite_store: Path) -> None:
    set_typed_labels(str(sqlite_store))
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("sqlite-utils")),
            "query",
            str(sqlite_store),
            "SELECT json_type(labels, '$.count') AS type, json_extract(labels, '$.count') + 1 AS next"
            " FROM finetunes WHERE finetune_id = :id",
            "-p",
            "id",
            finetune_id(1),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == [{"type": "integer", "next": 4}]


def test_pandas_recipe_reads_a_view_into_a_dataframe(sqlite_store: Path) -> None:
    pandas = pytest.importorskip("pandas")
    with sqlite3.connect(sqlite_store) as connection:
        frame = pandas.read_sql_query("SELECT * FROM finetunes", connection)
    connection.close()
    per_mode = frame.groupby("mode")["finetune_id"].count().to_dict()
    assert per_mode == {"character": 5, "general": 6, "product": 6, "style": 5}


def test_duckdb_recipe_aggregates_a_view_read_through_python(sqlite_store: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    pandas = pytest.importorskip("pandas")
    with sqlite3.connect(sqlite_store) as connection:
        changes = pandas.read_sql_query("SELECT * FROM changes", connection)
    connection.close()
    counted = duckdb.sql(
        "SELECT change, count(*) AS n FROM changes GROUP BY change ORDER BY change"
    ).fetchall()
    assert counted == [("created", COUNT), ("deleted", 2), ("updated", 3)]
    assert len(changes) == COUNT + 5


def test_duckdb_attach_recipe_where_its_sqlite_extension_loads(sqlite_store: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    connection = duckdb.connect()
    try:
        connection.execute("LOAD sqlite")
    except duckdb.Error:
        pytest.skip("DuckDB's sqlite extension is not installed and cannot be downloaded here")
    connection.execute(f"ATTACH '{sqlite_store}' AS store (TYPE sqlite, READ_ONLY)")
    assert connection.execute("SELECT count(*) FROM store.finetunes").fetchone() == (22,)

"""Revisions 0005_search and 0009_search_text: PostgreSQL's copies of the details, kept by the sync.

A jsonb copy, a tsvector of FTS5's tokens, and ``search_text``, the text of SQLite's trigram index.

SQLite stores have neither (``json_extract`` and FTS5 answer there); the tests say so too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access

KEY = "search-test-key"
BELOW_SEARCH = access.KNOWN_REVISIONS[access.KNOWN_REVISIONS.index("0005_search") - 1]
BELOW_SEARCH_TEXT = access.KNOWN_REVISIONS[access.KNOWN_REVISIONS.index("0009_search_text") - 1]
NUL_KEY = {
    "finetune_comment": "a\u0000b",
    "a\u0000key": ["x\u0000", {"deep": "Café-au-lait"}],
    "mode": "style",
}
# "\\u0000" in JSON text is a backslash and then "u0000": it must survive as exactly that.
BACKSLASH = {"finetune_comment": "\\u0000 is not a NUL", "mode": "character"}


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"nul": NUL_KEY, "backslash": BACKSLASH}, api_key=KEY) as server:
        yield server


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env={"BFL_API_KEY": KEY}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def fetch(url: str, query: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(url if "://" in url else f"sqlite:///{url}")
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def lexemes(url: str, finetune_id: str) -> list[tuple[int, str]]:
    """(position, lexeme) pairs of a finetune's search_tsv, in position order."""
    rows = fetch(
        url,
        "SELECT u.lexeme, u.positions FROM finetune f, unnest(f.search_tsv) AS u"
        f" WHERE f.finetune_id = '{finetune_id}'",
    )
    return sorted((position, row["lexeme"]) for row in rows for position in row["positions"])


def test_sync_writes_the_jsonb_copy_and_the_tsvector_on_postgresql(pg_url: str, mock: MockBFL) -> None:
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    rows = {
        row["finetune_id"]: row
        for row in fetch(pg_url, "SELECT finetune_id, details, details_jsonb FROM finetune")
    }
    assert rows["nul"]["details_jsonb"] == {
        "finetune_comment": "a\ufffdb",
        "a\ufffdkey": ["x\ufffd", {"deep": "Café-au-lait"}],
        "mode": "style",
    }
    assert json.loads(rows["nul"]["details"]) == NUL_KEY
    assert rows["backslash"]["details_jsonb"] == BACKSLASH
    # In the order of the canonical JSON (sorted keys), as FTS5 indexes them on SQLite, each value
    # to its first U+0000 as SQLite's json_tree reads it ("a\u0000b" is "a").
    assert lexemes(pg_url, "nul") == [
        (1, "x"),
        (2, "cafe"),
        (3, "au"),
        (4, "lait"),
        (5, "a"),
        (6, "style"),
    ]
    # The trigram index's text: values joined by spaces, case folded, diacritics kept.
    texts = fetch(pg_url, "SELECT finetune_id, search_text FROM finetune ORDER BY 1")
    assert texts == [
        {"finetune_id": "backslash", "search_text": "\\u0000 is not a nul character"},
        {"finetune_id": "nul", "search_text": "x café-au-lait a style"},
    ]
    versions = fetch(
        pg_url,
        "SELECT f.finetune_id, v.details_jsonb = f.details_jsonb AS same"
        " FROM finetune_version v JOIN finetune f ON f.id = v.finetune_pk ORDER BY 1",
    )
    assert versions == [{"finetune_id": "backslash", "same": True}, {"finetune_id": "nul", "same": True}]


def test_changes_restores_and_tombstones_keep_the_search_columns_current(pg_url: str, mock: MockBFL) -> None:
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    mock.put("backslash", {"finetune_comment": "now plain"})
    mock.remove("nul")
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    assert lexemes(pg_url, "backslash") == [(1, "now"), (2, "plain")]
    assert fetch(
        pg_url,
        "SELECT f.finetune_id, v.version, v.change, v.details_jsonb FROM finetune_version v"
        " JOIN finetune f ON f.id = v.finetune_pk WHERE v.version = 2 ORDER BY 1",
    ) == [
        {
            "finetune_id": "backslash",
            "version": 2,
            "change": "updated",
            "details_jsonb": {"finetune_comment": "now plain"},
        },
        {"finetune_id": "nul", "version": 2, "change": "deleted", "details_jsonb": None},
    ]
    mock.put("nul", {"mode": "product"})
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    assert fetch(pg_url, "SELECT details_jsonb FROM finetune WHERE finetune_id = 'nul'") == [
        {"details_jsonb": {"mode": "product"}}
    ]
    assert lexemes(pg_url, "nul") == [(1, "product")]


def test_db_reextract_rewrites_stale_search_copies_on_postgresql(pg_url: str, mock: MockBFL) -> None:
    """Copies left by older tokenising rules (here: emptied) are derived again from the raw details."""
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    copies = "SELECT finetune_id, details_jsonb, search_tsv::text AS tsv, search_text FROM finetune ORDER BY finetune_id"
    versions = "SELECT id, details_jsonb FROM finetune_version ORDER BY id"
    fresh, fresh_versions = fetch(pg_url, copies), fetch(pg_url, versions)
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE finetune SET search_tsv = ''::tsvector, details_jsonb = '{}', search_text = ''"
                    " WHERE finetune_id = 'nul'"
                )
            )
            connection.execute(sa.text("UPDATE finetune_version SET details_jsonb = '[]'"))
    finally:
        engine.dispose()
    assert run("--db", pg_url, "db", "reextract") == "1 finetune rows updated\n"
    assert (fetch(pg_url, copies), fetch(pg_url, versions)) == (fresh, fresh_versions)
    assert run("--db", pg_url, "db", "reextract") == "0 finetune rows updated\n"


def test_json_filters_use_the_gin_indexes_on_postgresql(pg_url: str, mock: MockBFL) -> None:
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    indexes = fetch(
        pg_url,
        "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN"
        " ('ix_finetune_details_jsonb', 'ix_finetune_search_tsv') ORDER BY 1",
    )
    assert [(row["indexname"], "USING gin" in row["indexdef"]) for row in indexes] == [
        ("ix_finetune_details_jsonb", True),
        ("ix_finetune_search_tsv", True),
    ]
    assert "jsonb_path_ops" in indexes[0]["indexdef"]
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in connection.exec_driver_sql(
                    'EXPLAIN SELECT finetune_id FROM finetune WHERE details_jsonb @> \'{"mode": "style"}\''
                )
            )
            found = (
                connection.exec_driver_sql(
                    "SELECT finetune_id FROM finetune WHERE search_tsv @@ CAST('''cafe'' <-> ''au''' AS tsquery)"
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    assert "ix_finetune_details_jsonb" in plan
    assert found == ["nul"]


def test_upgrade_backfills_and_downgrade_removes_the_search_columns(pg_url: str, mock: MockBFL) -> None:
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    before = fetch(pg_url, "SELECT id, details_jsonb, search_tsv::text AS tsv FROM finetune ORDER BY id")
    run("--db", pg_url, "db", "downgrade", BELOW_SEARCH)
    columns = {
        row["column_name"]
        for row in fetch(
            pg_url,
            "SELECT column_name FROM information_schema.columns WHERE table_name IN ('finetune', 'finetune_version')",
        )
    }
    assert not columns & {"details_jsonb", "search_tsv"}
    run("--db", pg_url, "db", "upgrade")
    assert (
        fetch(pg_url, "SELECT id, details_jsonb, search_tsv::text AS tsv FROM finetune ORDER BY id") == before
    )
    assert fetch(pg_url, "SELECT count(*) AS n FROM finetune_version WHERE details_jsonb IS NULL") == [
        {"n": 0}
    ]
    assert run("--db", pg_url, "db", "check") == "models and migrations agree\n"


def test_upgrade_backfills_and_downgrade_removes_search_text(pg_url: str, mock: MockBFL) -> None:
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    texts = "SELECT id, search_text FROM finetune ORDER BY id"
    before = fetch(pg_url, texts)
    assert all(row["search_text"] for row in before)
    run("--db", pg_url, "db", "downgrade", BELOW_SEARCH_TEXT)
    columns = {
        row["column_name"]
        for row in fetch(
            pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'finetune'"
        )
    }
    assert "search_text" not in columns
    assert {"details_jsonb", "search_tsv"} <= columns
    fresh_lexemes = lexemes(pg_url, "nul")
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as connection:
            # What 0005_search wrote for "a\u0000b": the text past the NUL, which SQLite never sees.
            connection.execute(
                sa.text("UPDATE finetune SET search_tsv = 'a:1 b:2' WHERE finetune_id = 'nul'")
            )
    finally:
        engine.dispose()
    run("--db", pg_url, "db", "upgrade")
    assert fetch(pg_url, texts) == before
    assert lexemes(pg_url, "nul") == fresh_lexemes
    assert run("--db", pg_url, "query", "--format", "ids", "--text", "au-lait") == "nul\n"
    assert run("--db", pg_url, "db", "check") == "models and migrations agree\n"


def test_a_sqlite_store_has_no_search_columns(db_path: Path, mock: MockBFL) -> None:
    run("--db", str(db_path), "sync", "--base-url", mock.base_url)
    columns = {row["name"] for row in fetch(str(db_path), "SELECT name FROM pragma_table_info('finetune')")}
    assert not columns & {"details_jsonb", "search_tsv", "search_text"}
    assert run("--db", str(db_path), "db", "current") == f"{access.HEAD_REVISION} (head)\n"


def test_a_trigram_index_serves_text_substrings_where_pg_trgm_exists(pg_url: str, mock: MockBFL) -> None:
    mock.put("jp", {"finetune_comment": "日本の風景写真"})
    run("--db", pg_url, "sync", "--base-url", mock.base_url)
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in connection.exec_driver_sql(
                    "EXPLAIN SELECT finetune_id FROM finetune WHERE search_text LIKE '%%風景写%%'"
                )
            )
    finally:
        engine.dispose()
    assert "ix_finetune_search_text" in plan
    assert run("--db", pg_url, "query", "--format", "ids", "--text", "風景写") == "jp\n"


def test_without_pg_trgm_the_upgrade_goes_on_and_substrings_scan(pg_url: str, mock: MockBFL) -> None:
    """A role that may not create extensions (no CREATE on the database) still gets a working store."""
    role = f"plain_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        connection.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    url = pg_url.replace("bfl@", f"{role}@", 1)
    mock.put("jp", {"finetune_comment": "日本の風景写真"})
    try:
        run("--db", url, "sync", "--base-url", mock.base_url)
        indexes = fetch(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'finetune'")
        assert "ix_finetune_search_text" not in {row["indexname"] for row in indexes}
        assert run("--db", url, "query", "--format", "ids", "--text", "風景写") == "jp\n"
        assert run("--db", url, "db", "check") == "models and migrations agree\n"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
            connection.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()

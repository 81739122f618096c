"""Migration 0003_accounts on a store that the real 0002-era code populated, on SQLite and PostgreSQL.

``fixtures/store_0002.json`` holds every row of a store written by ``bflsync sync`` at commit
8db109d (schema 0002_fts): four runs against two mock servers, with created, updated, deleted
and restored versions, a failed finetune (sync_error), a name-style id and non-ASCII text.
The tests load those rows into a store at 0002, exactly as they were, then migrate.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlmodel import Session
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.store import access, writes

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "store_0002.json").read_text(encoding="utf-8"))
# Parents before children, for the foreign keys.
TABLES = ("sync_run", "finetune", "finetune_version", "sync_error")
FTS_TRIGGERS = ["finetune_fts_delete", "finetune_fts_insert", "finetune_fts_update"]


def engine_for(store_db: str) -> sa.Engine:
    return sa.create_engine(store_db if "://" in store_db else f"sqlite:///{store_db}")


def typed(column: str, value: Any) -> Any:
    """A fixture value as the store's column type wants it (the JSON holds SQLite's text and integers)."""
    if value is None:
        return None
    if column.endswith("_at"):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if column == "captioning":
        return bool(value)
    return value


def plain(value: Any) -> Any:
    """A value read back, comparable across engines: timestamps as naive UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def load_0002_store(store_db: str) -> None:
    access.upgrade_store(access.locate_store(store_db), revision="0002_fts").engine.dispose()
    engine = engine_for(store_db)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=TABLES)
        with engine.begin() as connection:
            for table in TABLES:
                rows = [{c: typed(c, v) for c, v in row.items()} for row in FIXTURE[table]]
                connection.execute(metadata.tables[table].insert(), rows)
                if engine.dialect.name == "postgresql":
                    connection.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
    finally:
        engine.dispose()


def dump(store_db: str, tables: tuple[str, ...] = TABLES) -> dict[str, list[dict[str, Any]]]:
    """Every row of ``tables``, read through reflected types so both engines give the same values."""
    engine = engine_for(store_db)
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=tables)
        with engine.connect() as connection:
            return {
                table: [
                    {key: plain(value) for key, value in row._mapping.items()}
                    for row in connection.execute(
                        sa.select(metadata.tables[table]).order_by(metadata.tables[table].c.id)
                    )
                ]
                for table in tables
            }
    finally:
        engine.dispose()


def only_columns_of(before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]) -> Any:
    return {table: [{c: row[c] for c in before[table][0]} for row in rows] for table, rows in after.items()}


def revision(store_db: str) -> str | None:
    engine = engine_for(store_db)
    try:
        with engine.connect() as connection:
            return access.read_revision(connection)
    finally:
        engine.dispose()


def test_the_fixture_rows_load_into_a_0002_store_unchanged(store_db: str) -> None:
    load_0002_store(store_db)
    expected = {t: [{c: plain(typed(c, v)) for c, v in row.items()} for row in FIXTURE[t]] for t in TABLES}
    assert dump(store_db) == expected
    assert revision(store_db) == "0002_fts"


def test_upgrading_a_0002_store_keeps_every_row_and_labels_it_default(store_db: str) -> None:
    load_0002_store(store_db)
    before = dump(store_db)

    access.open_store_for_write(access.locate_store(store_db)).engine.dispose()

    after = dump(store_db)
    assert revision(store_db) == access.HEAD_REVISION
    assert only_columns_of(before, after) == before
    assert {row["account"] for row in after["finetune"]} == {"default"}
    assert {(row["account"], row["key_changed"]) for row in after["sync_run"]} == {("default", False)}
    runs = before["sync_run"]
    sources = list(dict.fromkeys(run["source"] for run in runs))  # in the order first synced
    assert dump(store_db, ("account",))["account"] == [
        {
            "id": number,
            "source": source,
            "account": "default",
            "key_fingerprint": None,
            "first_synced_at": min(run["started_at"] for run in runs if run["source"] == source),
            "last_synced_at": max(run["started_at"] for run in runs if run["source"] == source),
            "last_run_id": max(run["id"] for run in runs if run["source"] == source),
        }
        for number, source in enumerate(sources, start=1)
    ]


def test_the_upgrade_makes_one_random_fingerprint_secret_per_store(tmp_path: Path) -> None:
    secrets = []
    for name in ("one.db", "two.db"):
        load_0002_store(str(tmp_path / name))
        access.open_store_for_write(access.locate_store(str(tmp_path / name))).engine.dispose()
        with sqlite3.connect(tmp_path / name) as connection:
            secrets.append(
                connection.execute(
                    "SELECT name, value FROM store_meta WHERE name = 'fingerprint_secret'"
                ).fetchall()
            )
        connection.close()
    assert [[name for name, _ in rows] for rows in secrets] == [["fingerprint_secret"]] * 2
    values = [rows[0][1] for rows in secrets]
    assert all(len(value) == 64 and int(value, 16) >= 0 for value in values)
    assert values[0] != values[1]


def test_after_the_upgrade_a_sync_of_the_default_account_continues_the_same_rows(store_db: str) -> None:
    load_0002_store(store_db)
    opened = access.open_store_for_write(access.locate_store(store_db))
    alpha = next(row for row in FIXTURE["finetune"] if row["finetune_id"] == "alpha")
    try:
        with Session(opened.engine) as session, session.begin():
            outcomes = writes.record_observations(
                session,
                [writes.Observation("alpha", json.loads(alpha["details"]))],
                source=alpha["source"],
                account="default",
                run_id=None,
                now=day(1),
            )
    finally:
        opened.engine.dispose()
    assert outcomes == {"alpha": writes.Outcome.UNCHANGED}
    assert len(dump(store_db)["finetune"]) == len(FIXTURE["finetune"])


def test_downgrade_to_0002_and_up_again_keeps_every_row_and_version(store_db: str) -> None:
    load_0002_store(store_db)
    before = dump(store_db)
    location = access.locate_store(store_db)
    access.open_store_for_write(location).engine.dispose()
    upgraded = dump(store_db)

    access.downgrade_store(location, revision="0002_fts")
    assert revision(store_db) == "0002_fts"
    assert dump(store_db) == before

    access.open_store_for_write(location).engine.dispose()
    assert dump(store_db) == upgraded


def assert_downgrade_refused_and_nothing_changed(store_db: str, reason: str) -> None:
    """`db downgrade 0002_fts` exits 2 naming ``reason``; rows, revision and files stay as they were."""
    before = dump(store_db)

    result = CliRunner().invoke(cli, ["--db", store_db, "db", "downgrade", "0002_fts"])

    assert result.exit_code == 2
    assert result.stderr == (
        f"bflsync: error: cannot downgrade below 0003_accounts: {reason}, which older revisions cannot "
        "represent; nothing was changed\n"
    )
    assert dump(store_db) == before
    assert revision(store_db) == access.HEAD_REVISION
    if "://" not in store_db:
        assert sorted(p.name for p in Path(store_db).parent.iterdir()) == ["store.db"]


def test_downgrade_is_refused_while_two_accounts_hold_one_id_and_changes_nothing(store_db: str) -> None:
    opened = access.open_store_for_write(access.locate_store(store_db))
    try:
        write_sync(opened.engine, {"org/shared": {"mode": "a"}, "only-a": {}}, now=day(1), account="team-a")
        write_sync(opened.engine, {"org/shared": {"mode": "b"}}, now=day(2), account="team-b")
    finally:
        opened.engine.dispose()
    assert_downgrade_refused_and_nothing_changed(
        store_db,
        "1 finetune id(s) are stored for several accounts (e.g. 'org/shared' at api.us1.bfl.ai)",
    )


def test_downgrade_is_refused_while_an_account_other_than_default_holds_finetunes(store_db: str) -> None:
    """0002 has no account column: team-b's rows would come back as 'default' and be tombstoned by its next sync."""
    opened = access.open_store_for_write(access.locate_store(store_db))
    try:
        write_sync(opened.engine, {"a1": {"mode": "a"}}, now=day(1))
        write_sync(opened.engine, {"b1": {"mode": "b"}, "b2": {}}, now=day(2), account="team-b")
    finally:
        opened.engine.dispose()
    assert_downgrade_refused_and_nothing_changed(
        store_db,
        "2 finetune(s) are stored for accounts other than 'default' (e.g. 'team-b' at api.us1.bfl.ai)",
    )


def test_the_migration_itself_refuses_to_merge_accounts_for_the_alembic_cli(db_path: Path) -> None:
    """A contributor's `alembic downgrade` goes straight to the migration: it refuses and rolls back."""
    from bflsync.errors import InputError

    opened = access.open_store_for_write(access.locate_store(str(db_path)))
    try:
        write_sync(opened.engine, {"x": {}}, now=day(1), account="team-a")
        write_sync(opened.engine, {"x": {}}, now=day(1), account="team-b")
        with pytest.raises(InputError, match="cannot downgrade below 0003_accounts"):
            access.run_migration(opened.engine, lambda command, config: command.downgrade(config, "0002_fts"))
    finally:
        opened.engine.dispose()
    assert revision(str(db_path)) == access.HEAD_REVISION
    assert len(dump(str(db_path))["finetune"]) == 2


def test_the_full_text_index_works_across_the_upgrade_and_the_downgrade(db_path: Path) -> None:
    load_0002_store(str(db_path))
    location = access.locate_store(str(db_path))

    def text_hits(words: str) -> list[str]:
        result = CliRunner().invoke(
            cli, ["--db", str(db_path), "query", "--text", words, "--format", "ids"], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return sorted(result.stdout.split())

    def trigger_names() -> list[str]:
        with sqlite3.connect(db_path) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
            names = [name for (name,) in rows]
        connection.close()
        return names

    access.open_store_for_write(location).engine.dispose()
    assert trigger_names() == FTS_TRIGGERS
    assert text_hits("red fox") == ["org-7/shared-lora"]
    alpha = next(row for row in FIXTURE["finetune"] if row["finetune_id"] == "alpha")
    opened = access.open_store_for_write(location)
    try:
        payload = {"alpha": {"finetune_comment": "blue whale"}}
        write_sync(opened.engine, payload, now=day(1), source=alpha["source"], tombstone=False)
    finally:
        opened.engine.dispose()
    assert text_hits("whale") == ["alpha"]

    access.downgrade_store(location, revision="0002_fts")
    assert trigger_names() == FTS_TRIGGERS
    with sqlite3.connect(db_path) as connection:
        query = "SELECT rowid FROM finetune_fts WHERE finetune_fts MATCH ? ORDER BY rowid"
        hits = [connection.execute(query, (words,)).fetchall() for words in ("fox", "whale", "portrait")]
    connection.close()
    shared_pk = next(row["id"] for row in FIXTURE["finetune"] if row["finetune_id"] == "org-7/shared-lora")
    assert hits == [[(shared_pk,)], [(alpha["id"],)], []]

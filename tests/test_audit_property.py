"""Property: every foreign edit of the record is found by `audit verify --checkpoint`, on both engines.

A store is built once per engine through the real commands (syncs with an update, a tombstone and
training statuses, labels set and changed, notes) and checkpointed. Each example copies it, applies one
random edit the way another tool would (the sqlite3 module, or psycopg's plain SQL), and expects exit 6
with one line. Edits: a changed value in any column of a chained row or of the current tables, a
deleted row, an inserted row, two rows whose places or ids are swapped, a key put twice into a JSON
object, a run set back to running, a time rewritten in another text form (SQLite). An edit the database itself
refuses (a constraint) is no edit, and is discarded.

Left out on purpose (see docs/audit.md): ``finetune.last_seen_at``, ``status_checked_at`` and
``ready_at`` (bookkeeping no history row records), PostgreSQL's derived search copies, and surrogate
ids of ``finetune_label``.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access, chain
from bflsync.store.schema import UTCDateTime

KEY = "property-key"
EDITED_TABLES = (*chain.CHAINED_TABLES, "finetune", "finetune_label")
NOT_COVERED = {
    "finetune": {"last_seen_at", "status_checked_at", "ready_at"},
    "finetune_label": {"id"},
}


JSON_OBJECT_COLUMNS = [
    ("finetune_version", "details"),
    ("finetune_status", "answer"),
    ("finetune", "details"),
]
# Times verify compares, in every table it covers (stored as text on SQLite).
TIME_COLUMNS = [
    (table.name, column.name)
    for table in SQLModel.metadata.sorted_tables
    if table.name in EDITED_TABLES
    for column in table.columns
    if isinstance(column.type, UTCDateTime) and column.name not in NOT_COVERED.get(table.name, set())
]


@dataclass(frozen=True)
class Template:
    """The built store: its rows' ids per table and the checkpoint taken after building it."""

    ids: dict[str, list[int]]
    places: list[int]
    checkpoint: str


def build(url: str) -> Template:
    with MockBFL.serve(count=4, seed=7, api_key=KEY) as mock:

        def sync() -> None:
            result = CliRunner().invoke(
                cli, ["--db", url, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
            )
            assert result.exit_code == 0, result.output

        sync()
        ids = sorted(mock.finetunes)
        mock.put(ids[0], {**mock.finetunes[ids[0]], "iterations": 4321})
        mock.remove(ids[1])
        sync()
    for args in (
        ["label", ids[0], "project=acme", "approved=true"],
        ["label", ids[0], "project=globex"],
        ["label", ids[2], "rank=3"],
        ["note", ids[0], "first"],
        ["note", ids[2], "second"],
    ):
        assert CliRunner().invoke(cli, ["--db", url, *args]).exit_code == 0
    checkpoint = CliRunner().invoke(cli, ["--db", url, "audit", "checkpoint"])
    assert CliRunner().invoke(cli, ["--db", url, "audit", "verify"]).exit_code == 0
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            table_ids = {
                name: [row[0] for row in connection.exec_driver_sql(f"SELECT id FROM {name} ORDER BY id")]
                for name in EDITED_TABLES
            }
            places = sorted(
                row[0]
                for name in chain.CHAINED_TABLES
                for row in connection.exec_driver_sql(f"SELECT chain_seq FROM {name}")
            )
    finally:
        engine.dispose()
    return Template(ids=table_ids, places=places, checkpoint=checkpoint.stdout)


def changed_value(table: str, column: sa.Column[Any], *, postgres: bool) -> str:
    """A SQL expression giving ``column`` another value of its kind (a NULL becomes a value)."""
    name = column.name
    if name in chain.JSON_COLUMNS.get(table, ()) or (table, name) in {
        ("finetune", "details"),
        ("finetune_label", "value"),
    }:
        return f"COALESCE('[' || {name} || ']', '{{\"forged\":1}}')"
    if isinstance(column.type, UTCDateTime):
        if postgres:
            return f"COALESCE({name}, '2026-01-01'::timestamptz) + interval '1 second'"
        return f"strftime('%Y-%m-%d %H:%M:%f', COALESCE({name}, '2026-01-01'), '+1 second')"
    if isinstance(column.type, sa.Boolean):
        return f"NOT COALESCE({name}, false)" if postgres else f"CASE WHEN {name} THEN 0 ELSE 1 END"
    if isinstance(column.type, sa.Float):
        return f"COALESCE({name}, 0) + 0.5"
    if isinstance(column.type, sa.Integer):
        return f"COALESCE({name}, 0) + 1"
    return f"CASE WHEN {name} = 'x' THEN 'y' ELSE 'x' END"


def edited_columns(table: str) -> list[sa.Column[Any]]:
    columns = SQLModel.metadata.tables[table].columns
    return [column for column in columns if column.name not in NOT_COVERED.get(table, set())]


@st.composite
def foreign_edits(draw: st.DrawFn, template: Template, postgres: bool) -> list[str]:
    """The statements of one foreign edit."""
    kinds = ["update", "delete", "insert", "swap places", "swap ids", "duplicate key", "set running"]
    # PostgreSQL keeps timestamptz, which has no text form to rewrite.
    kind = draw(st.sampled_from(kinds if postgres else [*kinds, "time form"]))
    if kind == "duplicate key":
        table, column = draw(st.sampled_from([pair for pair in JSON_OBJECT_COLUMNS if template.ids[pair[0]]]))
        row_id = draw(st.sampled_from(template.ids[table]))
        # Decoding keeps the last of two equal keys: the first "mode" is the one a hash of the
        # decoded value would not see.
        return [
            f'UPDATE {table} SET {column} = CASE WHEN {column} LIKE \'{{"%\' THEN \'{{"mode":"forged",\''
            f" || substr({column}, 2) ELSE '{{\"forged\":1}}' END WHERE id = {row_id}"
        ]
    if kind == "set running":
        row_id = draw(st.sampled_from(template.ids["sync_run"]))
        return [
            f"UPDATE sync_run SET status = 'running', chain_seq = NULL, row_hash = NULL WHERE id = {row_id}"
        ]
    if kind == "time form":
        table, column = draw(st.sampled_from([pair for pair in TIME_COLUMNS if template.ids[pair[0]]]))
        row_id = draw(st.sampled_from(template.ids[table]))
        return [
            f"UPDATE {table} SET {column} = COALESCE(replace(replace({column}, 'T', ' '), 'Z', ''),"
            f" '2026-01-01 00:00:00') WHERE id = {row_id}"
        ]
    if kind == "swap places":
        first, second = draw(st.lists(st.sampled_from(template.places), min_size=2, max_size=2, unique=True))
        return [
            *(
                f"UPDATE {name} SET chain_seq = -chain_seq WHERE chain_seq IN ({first}, {second})"
                for name in chain.CHAINED_TABLES
            ),
            *(
                f"UPDATE {name} SET chain_seq = CASE WHEN chain_seq = -{first} THEN {second} ELSE {first} END"
                f" WHERE chain_seq IN (-{first}, -{second})"
                for name in chain.CHAINED_TABLES
            ),
        ]
    table = draw(st.sampled_from([name for name in EDITED_TABLES if template.ids[name]]))
    row_id = draw(st.sampled_from(template.ids[table]))
    if kind == "update":
        column = draw(st.sampled_from(edited_columns(table)))
        return [
            f"UPDATE {table} SET {column.name} = {changed_value(table, column, postgres=postgres)} WHERE id = {row_id}"
        ]
    if kind == "delete":
        return [f"DELETE FROM {table} WHERE id = {row_id}"]
    if kind == "swap ids":
        if table == "finetune_label":
            reject()  # a label is found by (finetune, key): which surrogate id it has is no part of the record
        other = draw(st.sampled_from([i for i in template.ids[table] if i != row_id] or [row_id]))
        if other == row_id:
            reject()
        return [
            f"UPDATE {table} SET id = -1 WHERE id = {row_id}",
            f"UPDATE {table} SET id = {row_id} WHERE id = {other}",
            f"UPDATE {table} SET id = {other} WHERE id = -1",
        ]
    # insert: a copy of a row under a new id; a chained copy takes the next place with a made-up hash,
    # or no place at all.
    names = [column.name for column in SQLModel.metadata.tables[table].columns if column.name != "id"]
    values = list(names)
    unique_copy = {
        "finetune": ("finetune_id", "finetune_id || '-copy'"),
        "finetune_label": ("key", "key || 'copy'"),
    }
    unique_copy["finetune_version"] = ("version", "version + 100")
    if table in unique_copy:
        column, value = unique_copy[table]
        values[names.index(column)] = value
    if table in chain.CHAINED_TABLES:
        if draw(st.booleans()):
            values[names.index("chain_seq")] = str(max(template.places) + 1)
            values[names.index("row_hash")] = f"'{draw(st.binary(min_size=32, max_size=32)).hex()}'"
        else:
            values[names.index("chain_seq")] = "NULL"
            values[names.index("row_hash")] = "NULL"
    return [
        f"INSERT INTO {table} (id, {', '.join(names)}) SELECT {max(template.ids[table]) + 100}, {', '.join(values)}"
        f" FROM {table} WHERE id = {row_id}"
    ]


@contextmanager
def sqlite_copies(template_path: Path, tmp_path: Path) -> Iterator[Callable[[list[str]], str]]:
    def copy(statements: list[str]) -> str:
        path = tmp_path / f"{uuid.uuid4().hex}.db"
        with closing(sqlite3.connect(template_path)) as source, closing(sqlite3.connect(path)) as target:
            source.backup(target)
        connection = sqlite3.connect(path)
        try:
            for statement in statements:
                connection.execute(statement)
            connection.commit()
        except sqlite3.IntegrityError:
            reject()
        finally:
            connection.close()
        return str(path)

    yield copy


@contextmanager
def postgres_copies(server: str, template: str) -> Iterator[Callable[[list[str]], str]]:
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def copy(statements: list[str]) -> str:
        name = f"p_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        made.append(name)
        url = f"{server}/{name}"
        dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            with psycopg.connect(dsn) as connection:
                for statement in statements:
                    connection.execute(statement)
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
            reject()
        return url

    try:
        yield copy
    finally:
        with admin.connect() as connection:
            for name in made:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def engine_copies(
    store_db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Template, Callable[[list[str]], str], bool]]:
    template = build(store_db)
    if "://" not in store_db:
        with sqlite_copies(Path(store_db), tmp_path) as copy:
            yield template, copy, False
        return
    server = request.getfixturevalue("postgres_server")
    with postgres_copies(server, str(sa.make_url(store_db).database)) as copy:
        yield template, copy, True


def test_every_foreign_edit_is_found(
    engine_copies: tuple[Template, Callable[[list[str]], str], bool], tmp_path: Path
) -> None:
    template, copy, postgres = engine_copies
    checkpoint_file = tmp_path / "template.checkpoint"
    checkpoint_file.write_text(template.checkpoint)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
        ],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        statements = data.draw(foreign_edits(template, postgres))
        url = copy(statements)
        result = CliRunner().invoke(
            cli, ["--db", url, "audit", "verify", "--checkpoint", str(checkpoint_file)]
        )
        assert result.exit_code == 6, (statements, result.output)
        assert result.stderr.startswith("bflsync: error: ") and result.stderr.count("\n") == 1

    check()

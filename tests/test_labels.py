"""`bflsync label` and `bflsync note` on SQLite and PostgreSQL: what they write, what they refuse, and
that no sync ever touches what they wrote."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from readonly_fs import read_only_argv
from storebuild import day, file_digest, write_sync
from sync_support import process_env

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.lock import sync_lock_for

KEY = "label-test-key"
ALPHA = {"mode": "character", "iterations": 300, "learning_rate": 1e-5}
BRAVO = {"mode": "style", "iterations": "500"}
USER = getpass.getuser()


@pytest.fixture
def store_url(store_db: str) -> str:
    """A store at head holding alpha and bravo."""
    return build_store(store_db)


def build_store(url: str) -> str:
    opened = access.open_store_for_write(access.locate_store(url))
    try:
        write_sync(opened.engine, {"alpha": ALPHA, "bravo": BRAVO}, now=day(1))
    finally:
        opened.engine.dispose()
    return url


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args], catch_exceptions=False)


def table(url: str, sql: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def labels_of(url: str) -> list[dict[str, Any]]:
    return table(
        url,
        "SELECT f.finetune_id, l.key, l.value, l.value_json, l.set_by FROM finetune_label l"
        " JOIN finetune f ON f.id = l.finetune_pk ORDER BY f.finetune_id, l.key",
    )


def label_changes(url: str) -> list[dict[str, Any]]:
    return table(
        url,
        "SELECT f.finetune_id, c.key, c.change, c.value, c.changed_by FROM finetune_label_change c"
        " JOIN finetune f ON f.id = c.finetune_pk ORDER BY c.id",
    )


def written_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the three tables, times included: what a sync must leave exactly as it was."""
    return {
        name: table(url, f"SELECT * FROM {name} ORDER BY id")
        for name in ("finetune_label", "finetune_label_change", "finetune_note")
    }


def test_labels_are_set_typed_changed_and_removed_with_an_append_only_history(store_url: str) -> None:
    result = run(store_url, "label", "alpha", "project=acme", "approved=true", "score=3", 'code="007"')
    assert result.exit_code == 0
    assert result.stderr == "alpha: approved=true, code=007, project=acme, score=3\n"
    run(store_url, "label", "alpha", "project=globex", "approved=true", "--remove", "score")

    assert labels_of(store_url) == [
        {"finetune_id": "alpha", "key": "approved", "value": "true", "value_json": "true", "set_by": USER},
        {"finetune_id": "alpha", "key": "code", "value": "007", "value_json": '"007"', "set_by": USER},
        {
            "finetune_id": "alpha",
            "key": "project",
            "value": "globex",
            "value_json": '"globex"',
            "set_by": USER,
        },
    ]
    assert label_changes(store_url) == [
        {"finetune_id": "alpha", "key": "approved", "change": "set", "value": "true", "changed_by": USER},
        {"finetune_id": "alpha", "key": "code", "change": "set", "value": '"007"', "changed_by": USER},
        {"finetune_id": "alpha", "key": "project", "change": "set", "value": '"acme"', "changed_by": USER},
        {"finetune_id": "alpha", "key": "score", "change": "set", "value": "3", "changed_by": USER},
        {"finetune_id": "alpha", "key": "project", "change": "set", "value": '"globex"', "changed_by": USER},
        {"finetune_id": "alpha", "key": "score", "change": "removed", "value": None, "changed_by": USER},
    ]


def test_setting_a_label_to_its_value_or_removing_an_absent_one_writes_nothing(store_url: str) -> None:
    run(store_url, "label", "bravo", "project=acme")
    before = written_rows(store_url)
    result = run(store_url, "label", "bravo", "project=acme", "--remove", "never-set")
    assert (result.exit_code, result.stderr) == (0, "bravo: no change\n")
    assert written_rows(store_url) == before


def test_notes_are_appended_with_author_and_time(store_url: str) -> None:
    start = datetime.now().astimezone()
    assert run(store_url, "note", "alpha", "looks", "great").stderr == "alpha: note added\n"
    run(store_url, "note", "alpha", "approved by Zoë ✨\nsecond line")
    notes = table(
        store_url, "SELECT finetune_pk, text, written_by, written_at FROM finetune_note ORDER BY id"
    )
    assert [(row["text"], row["written_by"]) for row in notes] == [
        ("looks great", USER),
        ("approved by Zoë ✨\nsecond line", USER),
    ]
    written = [row["written_at"] for row in notes]
    # SQLite keeps naive UTC text; PostgreSQL an aware timestamp.
    assert all(str(start.astimezone().date()) in str(moment) for moment in written)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["label", "nosuch", "a=1"], "no finetune 'nosuch' in the store"),
        (["note", "nosuch", "hello"], "no finetune 'nosuch' in the store"),
        (["label", "alpha"], "nothing to do: give KEY=VALUE labels to set or --remove KEY"),
        (["label", "alpha", "project"], "bad label 'project': expected KEY=VALUE"),
        (["label", "alpha", "a.b=1"], "bad label key 'a.b'"),
        (["label", "alpha", "--", "-x=1"], "bad label key '-x'"),
        (["label", "alpha", "=1"], "bad label key ''"),
        (["label", "alpha", f"{'k' * 65}=1"], "bad label key"),
        (["label", "alpha", "a=null"], "a label cannot be null; use --remove a"),
        (["label", "alpha", "a="], "missing value after '='"),
        (["label", "alpha", "a>=1"], "bad label key 'a>'"),
        (["label", "alpha", "a=1", "a=2"], "label 'a' is given twice"),
        (["label", "alpha", "a=1", "--remove", "a"], "label 'a' is both set and removed"),
        (["label", "alpha", "--remove", "a b"], "bad label key 'a b'"),
        (["note", "alpha", "  "], "a note needs some text"),
        (["note", "alpha", "nul\x00here"], "a note contains a NUL character"),
    ],
)
def test_bad_labels_notes_and_unknown_ids_exit_2_and_write_nothing(
    store_url: str, args: list[str], message: str
) -> None:
    before = written_rows(store_url)
    result = CliRunner().invoke(cli, ["--db", store_url, *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("bflsync: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert written_rows(store_url) == before


def test_an_id_stored_for_several_sources_needs_source(store_url: str) -> None:
    opened = access.open_store_for_write(access.locate_store(store_url))
    try:
        write_sync(opened.engine, {"alpha": BRAVO}, now=day(2), source="api.eu1.bfl.ai")
    finally:
        opened.engine.dispose()
    result = CliRunner().invoke(cli, ["--db", store_url, "label", "alpha", "a=1"])
    assert result.exit_code == 2
    assert "pick one with --source" in result.stderr
    run(store_url, "label", "alpha", "--source", "api.eu1.bfl.ai", "region=eu")
    assert table(
        store_url,
        "SELECT f.source, l.key FROM finetune_label l JOIN finetune f ON f.id = l.finetune_pk",
    ) == [{"source": "api.eu1.bfl.ai", "key": "region"}]


def test_a_missing_store_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "store.db"
    for args in (["label", "x", "a=1"], ["note", "x", "hi"]):
        result = CliRunner().invoke(cli, ["--db", str(target), *args])
        assert result.exit_code == 2
        assert "run `bflsync sync` first" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_store_behind_head_is_refused_not_migrated(db_path: Path) -> None:
    access.upgrade_store(access.locate_store(str(db_path)), revision="0002_fts").engine.dispose()
    before = file_digest(db_path)
    result = CliRunner().invoke(cli, ["--db", str(db_path), "label", "x", "a=1"])
    assert result.exit_code == 2
    assert "bflsync db upgrade" in result.stderr
    assert file_digest(db_path) == before


def test_label_and_note_wait_for_a_sync_holding_the_lock_or_exit_4(store_url: str) -> None:
    with sync_lock_for(access.locate_store(store_url)):
        for args in (["label", "alpha", "a=1"], ["note", "alpha", "hi"]):
            result = CliRunner().invoke(cli, ["--db", store_url, *args, "--wait", "0.2"])
            assert result.exit_code == 4
            assert result.stderr.startswith("bflsync: error: another sync is running (")
    assert written_rows(store_url) == {"finetune_label": [], "finetune_label_change": [], "finetune_note": []}
    assert run(store_url, "label", "alpha", "a=1").exit_code == 0


def test_a_read_only_sqlite_store_exits_3_and_stays_unchanged(db_path: Path) -> None:
    store_url = build_store(str(db_path))
    # The lock file exists already (as after any sync), so the refusal comes from the store itself.
    with sync_lock_for(access.locate_store(store_url)):
        pass
    before = file_digest(db_path)
    for args in (["label", "alpha", "a=1"], ["note", "alpha", "hi"]):
        done = subprocess.run(
            read_only_argv(db_path, [sys.executable, "-m", "bflsync", "--db", store_url, *args]),
            env=process_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 3, done.stderr
        assert done.stderr == (
            f"bflsync: error: the store at {db_path} is read-only (attempt to write a readonly database)\n"
        )
    assert file_digest(db_path) == before


def test_a_read_only_postgresql_store_exits_3(pg_url: str) -> None:
    store_url = build_store(pg_url)
    location = access.locate_store(store_url)
    engine = sa.create_engine(location.url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            name = location.url.database
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    finally:
        engine.dispose()
    result = CliRunner().invoke(cli, ["--db", store_url, "label", "alpha", "a=1"])
    assert result.exit_code == 3
    assert "is read-only" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(finetunes={"alpha": ALPHA, "bravo": BRAVO}, api_key=KEY) as server:
        yield server


def test_syncs_never_change_labels_or_notes_through_update_delete_and_restore(
    store_db: str, mock: MockBFL
) -> None:
    store_url = store_db

    def sync() -> None:
        result = CliRunner().invoke(
            cli, ["--db", store_url, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
        )
        assert result.exit_code == 0, result.output

    sync()
    run(store_url, "label", "alpha", "project=acme", "approved=true")
    run(store_url, "label", "bravo", "project=globex")
    run(store_url, "note", "alpha", "the good one")
    written = written_rows(store_url)

    mock.put("alpha", {**ALPHA, "iterations": 900})
    sync()
    mock.remove("alpha")
    sync()
    tombstoned = table(store_url, "SELECT deleted_at FROM finetune WHERE finetune_id = 'alpha'")
    assert tombstoned[0]["deleted_at"] is not None
    assert written_rows(store_url) == written
    run(store_url, "note", "alpha", "deleted upstream, keep the notes")
    with_note = written_rows(store_url)

    mock.put("alpha", ALPHA)
    sync()
    changes = table(
        store_url,
        "SELECT v.change FROM finetune_version v JOIN finetune f ON f.id = v.finetune_pk"
        " WHERE f.finetune_id = 'alpha' ORDER BY v.version",
    )
    assert [row["change"] for row in changes] == ["created", "updated", "deleted", "restored"]
    assert written_rows(store_url) == with_note


def test_an_id_stored_for_several_accounts_needs_account(store_url: str) -> None:
    opened = access.open_store_for_write(access.locate_store(store_url))
    try:
        write_sync(opened.engine, {"alpha": BRAVO}, now=day(2), account="team-b")
    finally:
        opened.engine.dispose()
    for args in (["label", "alpha", "a=1"], ["note", "alpha", "hi"]):
        result = CliRunner().invoke(cli, ["--db", store_url, *args])
        assert result.exit_code == 2
        assert "--account" in result.stderr
    run(store_url, "label", "alpha", "--account", "team-b", "team=b")
    run(store_url, "note", "alpha", "--account", "team-b", "b's copy")
    assert table(
        store_url,
        "SELECT f.account, l.key FROM finetune_label l JOIN finetune f ON f.id = l.finetune_pk",
    ) == [{"account": "team-b", "key": "team"}]
    history = json.loads(run(store_url, "history", "alpha", "--account", "team-b", "--format", "json").stdout)
    assert [(entry["kind"], entry["account"]) for entry in history] == [
        ("version", "team-b"),
        ("label", "team-b"),
        ("note", "team-b"),
    ]

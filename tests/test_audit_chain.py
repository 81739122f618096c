"""The hash chain on SQLite and PostgreSQL: what writes append, what `audit verify` finds, the migration's
backfill, concurrent writers, and why the stored text form of a time or of JSON never changes a hash."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from storebuild import day, write_sync

from bflsync import annotate
from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access, chain
from bflsync.store.labels import Author

KEY = "chain-test-key"
OTHER_KEY = "chain-other-key"
ALPHA = {"mode": "character", "iterations": 300, "learning_rate": 1e-5, "trigger_word": "TOK"}
BRAVO = {"mode": "style", "iterations": 500}


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args])


def execute(url: str, *statements: str) -> None:
    """Foreign SQL, as another tool would run it: plain statements, committed."""
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def rows(url: str, sql: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def places(url: str) -> list[int]:
    """Every chain_seq of the store, sorted."""
    union = " UNION ALL ".join(f"SELECT chain_seq FROM {table}" for table in chain.CHAINED_TABLES)
    return sorted(row["chain_seq"] for row in rows(url, union) if row["chain_seq"] is not None)


def build(url: str) -> str:
    """Two syncs (a create, an update, a tombstone), a label set then changed, and a note."""
    opened = access.open_store_for_write(access.locate_store(url))
    try:
        write_sync(opened.engine, {"alpha": ALPHA, "bravo": BRAVO}, now=day(1))
        write_sync(opened.engine, {"alpha": {**ALPHA, "iterations": 900}}, now=day(2))
        for value in ("acme", "globex"):
            annotate.edit_labels(
                opened.engine,
                "alpha",
                annotate.build_edit([f"project={value}"], []),
                source=None,
                account=None,
                actor=Author("ann"),
                now=day(3),
            )
        annotate.add_note(
            opened.engine, "alpha", "the good one", source=None, account=None, actor=Author("bob"), now=day(4)
        )
    finally:
        opened.engine.dispose()
    return url


@pytest.fixture
def store_url(store_db: str) -> str:
    return build(store_db)


def test_every_write_appends_its_rows_to_one_chain_without_gaps(store_url: str) -> None:
    # 2 + 2 versions (alpha updated, bravo tombstoned), 2 runs, 2 label changes, 1 note.
    assert places(store_url) == list(range(1, 10))
    result = run(store_url, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 9 rows in the hash chain, head ")
    assert result.stdout.endswith(", 2 finetunes agree\n")
    assert result.stdout.count("\n") == 1


def test_a_sync_through_the_cli_chains_its_run_versions_and_statuses(store_db: str) -> None:
    with MockBFL.serve(count=6, seed=3, api_key=KEY) as mock:
        for _ in range(2):
            synced = CliRunner().invoke(
                cli, ["--db", store_db, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
            )
            assert synced.exit_code == 0, synced.output
    counts = rows(
        store_db,
        "SELECT (SELECT count(*) FROM finetune_version) AS versions,"
        " (SELECT count(*) FROM finetune_status) AS statuses, (SELECT count(*) FROM sync_run) AS runs",
    )[0]
    assert counts["statuses"] > 0
    assert places(store_db) == list(range(1, counts["versions"] + counts["statuses"] + counts["runs"] + 1))
    assert run(store_db, "audit", "verify").exit_code == 0


FOREIGN_EDITS = {
    "edited details": (
        "UPDATE finetune_version SET details = replace(details, '\"TOK\"', '\"OTHER\"') WHERE version = 1",
        "finetune_version row 1 (place 1) was edited: its content no longer matches its hash",
    ),
    "deleted version": (
        "DELETE FROM finetune_version WHERE id = 2",
        "place 2 of the chain is missing before",
    ),
    "inserted note": (
        "INSERT INTO finetune_note (finetune_pk, text, written_by, written_at)"
        " VALUES (1, 'forged', 'eve', '2026-01-05 00:00:00')",
        "finetune_note row 2 is not in the hash chain: it was inserted by something other than bflsync",
    ),
    "reordered versions": (
        "UPDATE finetune_version SET chain_seq = 100 WHERE id = 1;"
        "UPDATE finetune_version SET chain_seq = 1 WHERE id = 2;"
        "UPDATE finetune_version SET chain_seq = 2 WHERE id = 1",
        "finetune_version row 2 (place 1)",
    ),
    "edited current row": (
        "UPDATE finetune SET iterations = 1 WHERE finetune_id = 'alpha'",
        "finetune 'alpha' (api.us1.bfl.ai, default) against its last version (finetune_version row 3):"
        " iterations is 1 but the details say 900",
    ),
    "edited label": (
        "UPDATE finetune_label SET value = 'acme'",
        "label 'project' of finetune row 1, last changed by finetune_label_change row 2: finetune_label row 1"
        " has value 'acme', its typed value '\"globex\"'",
    ),
}


@pytest.mark.parametrize("edit", sorted(FOREIGN_EDITS))
def test_verify_names_the_first_broken_link_and_exits_6(store_url: str, edit: str) -> None:
    statements, message = FOREIGN_EDITS[edit]
    execute(store_url, *statements.split(";"))
    result = run(store_url, "audit", "verify")
    assert result.exit_code == 6
    assert result.stderr.startswith("bflsync: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_a_rewritten_row_hash_is_told_apart_from_an_edited_row(store_url: str) -> None:
    execute(store_url, f"UPDATE finetune_note SET row_hash = '{'0' * 64}'")
    result = run(store_url, "audit", "verify")
    assert result.exit_code == 6
    assert "finetune_note row 1 (place 9) does not link to the row before it: its row_hash was rewritten" in (
        result.stderr
    )


def test_json_re_encoded_by_another_tool_changes_no_hash(store_url: str) -> None:
    """Same keys, same values, other spacing: the chain hashes the decoded value."""
    execute(
        store_url,
        "UPDATE finetune_version SET details = replace(details, ':', ' : ') WHERE details IS NOT NULL",
    )
    assert rows(store_url, "SELECT details FROM finetune_version WHERE id = 2")[0]["details"].startswith(
        '{"iterations" : 500'
    )
    assert run(store_url, "audit", "verify").exit_code == 0


def test_the_migration_backfills_existing_rows_in_the_order_they_were_written(store_db: str) -> None:
    location = access.locate_store(store_db)
    access.upgrade_store(location, revision="0009_search_text").engine.dispose()
    execute(
        store_db,
        "INSERT INTO sync_run (id, started_at, finished_at, status, source, account, key_changed, pid,"
        " bflsync_version, listed, fetched, created, updated, unchanged, deleted, restored, failed,"
        " status_failed) VALUES (1, '2026-01-01 00:00:00', '2026-01-01 00:00:05', 'ok', 'api.us1.bfl.ai',"
        " 'default', false, 1, '0.1', 1, 1, 1, 0, 0, 0, 0, 0, 0),"
        " (2, '2026-01-02 00:00:00', NULL, 'running', 'api.us1.bfl.ai', 'default', false, 2, '0.1',"
        " 0, 0, 0, 0, 0, 0, 0, 0, 0)",
        "INSERT INTO finetune (id, source, account, finetune_id, details, mode, content_hash, version,"
        " first_seen_at, last_seen_at, last_changed_at) VALUES (1, 'api.us1.bfl.ai', 'default', 'alpha',"
        " '{\"mode\":\"style\"}', 'style', 'h', 1, '2026-01-01 00:00:01', '2026-01-01 00:00:01',"
        " '2026-01-01 00:00:01')",
        "INSERT INTO finetune_version (id, finetune_pk, version, change, details, content_hash, changed_keys,"
        " observed_at, sync_run_id) VALUES (1, 1, 1, 'created', '{\"mode\":\"style\"}', 'h', '[\"mode\"]',"
        " '2026-01-01 00:00:01', 1)",
        "INSERT INTO finetune_note (id, finetune_pk, text, written_by, written_at)"
        " VALUES (1, 1, 'older than the run end', 'ann', '2026-01-01 00:00:02')",
    )
    access.upgrade_store(location, revision="head").engine.dispose()
    chained = rows(
        store_db,
        "SELECT 'finetune_version' AS t, id, chain_seq FROM finetune_version"
        " UNION ALL SELECT 'finetune_note', id, chain_seq FROM finetune_note"
        " UNION ALL SELECT 'sync_run', id, chain_seq FROM sync_run",
    )
    assert sorted(chained, key=lambda row: (row["chain_seq"] is None, row["chain_seq"] or 0)) == [
        {"t": "finetune_version", "id": 1, "chain_seq": 1},
        {"t": "finetune_note", "id": 1, "chain_seq": 2},
        {"t": "sync_run", "id": 1, "chain_seq": 3},
        {"t": "sync_run", "id": 2, "chain_seq": None},
    ]
    assert run(store_db, "audit", "verify").exit_code == 0


def test_the_migration_downgrades_and_upgrades_again(store_url: str) -> None:
    location = access.locate_store(store_url)
    access.downgrade_store(location, revision="0009_search_text")
    assert "chain_seq" not in {row["name"] for row in _columns(store_url, "finetune_note")}
    access.upgrade_store(location, revision="head").engine.dispose()
    assert run(store_url, "audit", "verify").exit_code == 0


def _columns(url: str, table: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            return [dict(column) for column in sa.inspect(connection).get_columns(table)]
    finally:
        engine.dispose()


def test_concurrent_writers_without_the_sync_lock_never_fork_the_chain(store_url: str) -> None:
    """The chain's own transaction lock (PostgreSQL) or IMMEDIATE transactions (SQLite) serialise them."""
    engine = access.create_store_engine(access.locate_store(store_url), read_only=False)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for number in range(5):
                annotate.add_note(
                    engine,
                    "alpha" if worker % 2 else "bravo",
                    f"note {worker}.{number}",
                    source=None,
                    account=None,
                    actor=Author(f"w{worker}"),
                    now=day(5) + timedelta(seconds=number),
                )
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        engine.dispose()
    assert errors == []
    assert places(store_url) == list(range(1, 9 + 20 + 1))
    assert run(store_url, "audit", "verify").exit_code == 0


@pytest.fixture
def two_accounts() -> Iterator[MockBFL]:
    with MockBFL.serve(count=20, seed=1, api_key=KEY, latency_ms=5) as mock:
        mock.add_account(OTHER_KEY, {"other-1": ALPHA, "other-2": BRAVO})
        yield mock


def test_two_account_syncs_and_a_label_in_parallel_processes_keep_one_intact_chain(
    store_db: str, two_accounts: MockBFL
) -> None:
    first = CliRunner().invoke(
        cli, ["--db", store_db, "sync", "--base-url", two_accounts.base_url], env={"BFL_API_KEY": KEY}
    )
    assert first.exit_code == 0, first.output
    label_id = rows(store_db, "SELECT finetune_id FROM finetune ORDER BY id LIMIT 1")[0]["finetune_id"]
    base = [sys.executable, "-m", "bflsync", "--db", store_db]
    commands = [
        ([*base, "sync", "--base-url", two_accounts.base_url, "--wait", "60"], KEY),
        (
            [*base, "sync", "--base-url", two_accounts.base_url, "--account", "other", "--wait", "60"],
            OTHER_KEY,
        ),
        ([*base, "label", label_id, "reviewed=true", "--wait", "60"], KEY),
    ]
    processes = [
        subprocess.Popen(
            argv,
            env={**_env(), "BFL_API_KEY": key},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv, key in commands
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outcomes
    verified = run(store_db, "audit", "verify")
    assert verified.exit_code == 0, verified.stderr
    assert len(places(store_db)) == int(verified.stdout.split()[1])


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_a_foreign_row_stays_out_of_the_chain_while_later_writes_chain_their_own(store_url: str) -> None:
    # An id above every one the database will hand out next (PostgreSQL's sequence does not see it).
    execute(
        store_url,
        "INSERT INTO finetune_note (id, finetune_pk, text, written_by, written_at)"
        " VALUES (1000, 1, 'forged', 'eve', '2026-01-05 00:00:00')",
    )
    assert run(store_url, "note", "alpha", "written by bflsync").exit_code == 0
    assert places(store_url) == list(range(1, 11))
    result = run(store_url, "audit", "verify")
    assert result.exit_code == 6
    assert "finetune_note row 1000 is not in the hash chain" in result.stderr


def test_a_run_left_running_stays_out_until_the_next_sync_marks_it_interrupted(store_url: str) -> None:
    from sqlmodel import Session

    from bflsync.store import writes

    engine = access.create_store_engine(access.locate_store(store_url), read_only=False)
    try:
        with Session(engine) as session, session.begin():
            dead = writes.start_run(session, source="api.us1.bfl.ai", account="default", pid=1, now=day(6))
        assert run(store_url, "audit", "verify").exit_code == 0
        assert places(store_url) == list(range(1, 10))
        with Session(engine) as session, session.begin():
            assert writes.mark_interrupted_runs(session) == [dead]
    finally:
        engine.dispose()
    assert rows(store_url, f"SELECT status, chain_seq FROM sync_run WHERE id = {dead}") == [
        {"status": "interrupted", "chain_seq": 10}
    ]
    assert run(store_url, "audit", "verify").exit_code == 0


def verify_fails(url: str) -> str:
    """Run `audit verify`, expect the documented audit failure (one line, exit 6), return the line."""
    result = run(url, "audit", "verify")
    assert result.exit_code == 6, result.output
    assert result.stderr.startswith("bflsync: error: ")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    return result.stderr


def test_a_duplicate_key_added_to_a_versions_json_breaks_its_link(store_url: str) -> None:
    """JSON decoding keeps the last of two equal keys: a duplicate put first must not hash the same."""
    execute(
        store_url,
        "UPDATE finetune_version SET details = '{\"iterations\":1,' || substr(details, 2) WHERE id = 1",
    )
    assert rows(store_url, "SELECT details FROM finetune_version WHERE id = 1")[0]["details"].startswith(
        '{"iterations":1,"iterations":300,'
    )
    assert "finetune_version row 1 (place 1) was edited" in verify_fails(store_url)


def test_a_duplicate_key_added_to_the_current_details_is_found(store_url: str) -> None:
    execute(
        store_url,
        "UPDATE finetune SET details = '{\"iterations\":1,' || substr(details, 2) WHERE finetune_id = 'alpha'",
    )
    assert (
        "finetune 'alpha' (api.us1.bfl.ai, default) against its last version (finetune_version row 3):"
        " details differ from version 2's"
    ) in verify_fails(store_url)


def test_an_edited_tombstone_time_is_found(store_url: str) -> None:
    execute(
        store_url,
        "UPDATE finetune SET deleted_at = '2026-01-07T00:00:00.000000Z' WHERE finetune_id = 'bravo'",
    )
    assert (
        "finetune 'bravo' (api.us1.bfl.ai, default) against its last version (finetune_version row 4):"
        " deleted_at is 2026-01-07T00:00:00.000000Z but the tombstone was observed at 2026-01-02T00:00:00.000000Z"
    ) in verify_fails(store_url)


def test_a_label_whose_typed_value_is_not_json_is_an_audit_failure(store_url: str) -> None:
    execute(store_url, "UPDATE finetune_label SET value_json = 'not json'")
    assert (
        "label 'project' of finetune row 1, last changed by finetune_label_change row 2:"
        " finetune_label row 1 has a typed value that is not JSON: 'not json'"
    ) in verify_fails(store_url)


def test_an_old_run_set_back_to_running_is_found(store_url: str) -> None:
    """Unchained, as a run in progress is: only the newest run may be one."""
    execute(
        store_url, "UPDATE sync_run SET status = 'running', chain_seq = NULL, row_hash = NULL WHERE id = 1"
    )
    assert (
        "sync_run row 1 is 'running' but run 2 started after it: only the newest run can still be running"
    ) in verify_fails(store_url)


def test_a_forged_running_run_older_than_the_newest_is_found(store_url: str) -> None:
    execute(
        store_url,
        "INSERT INTO sync_run (id, started_at, status, source, account, key_changed, pid, bflsync_version,"
        " listed, fetched, created, updated, unchanged, deleted, restored, failed, status_failed)"
        " VALUES (0, '2026-01-01T00:00:00.000000Z', 'running', 'api.us1.bfl.ai', 'default', false, 7, '0.1',"
        " 0, 0, 0, 0, 0, 0, 0, 0, 0)",
    )
    assert (
        "sync_run row 0 is 'running' but run 2 started after it: only the newest run can still be running"
    ) in verify_fails(store_url)


NON_CANONICAL_TIMES = {
    "space separated": "2026-01-01 00:00:00.000000",
    "offset": "2026-01-01T00:00:00.000000+00:00",
    "no fraction": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize("form", sorted(NON_CANONICAL_TIMES))
def test_a_chained_time_rewritten_in_another_text_form_is_refused(db_path: Path, form: str) -> None:
    """SQLite keeps times as text (PostgreSQL as timestamptz): the hash uses the parsed value, so the
    one stored form is checked as such."""
    url = build(str(db_path))
    execute(url, f"UPDATE finetune_version SET observed_at = '{NON_CANONICAL_TIMES[form]}' WHERE id = 1")
    assert (
        f"finetune_version row 1 (place 1): observed_at is stored as {NON_CANONICAL_TIMES[form]!r},"
        " not in the store's one form (2026-01-01T00:00:00.000000Z): it was rewritten by another tool"
    ) in verify_fails(url)


@pytest.mark.parametrize(
    ("table", "column", "where"),
    [
        ("finetune", "first_seen_at", "finetune_id = 'alpha'"),
        ("finetune", "deleted_at", "finetune_id = 'bravo'"),
        ("finetune_label", "set_at", "id = 1"),
    ],
)
def test_a_current_time_rewritten_in_another_text_form_is_refused(
    db_path: Path, table: str, column: str, where: str
) -> None:
    url = build(str(db_path))
    execute(url, f"UPDATE {table} SET {column} = replace(replace({column}, 'T', ' '), 'Z', '') WHERE {where}")
    row_id = rows(url, f"SELECT id FROM {table} WHERE {where}")[0]["id"]
    assert f"{table} row {row_id}: {column} is stored as '2026-01-0" in verify_fails(url)


def test_a_place_that_is_no_whole_number_is_named_by_verify(db_path: Path) -> None:
    """SQLite keeps whatever another tool writes into an INTEGER column: text is no place in a chain."""
    url = build(str(db_path))
    execute(url, "UPDATE finetune_note SET chain_seq = 'nine'")

    result = run(url, "audit", "verify")

    assert (result.exit_code, result.stdout) == (6, "")
    assert result.stderr == (
        "bflsync: error: finetune_note row 1 has a place (chain_seq) that is no whole number: 'nine':"
        " it was rewritten by something other than bflsync\n"
    )


def assert_refused_for_a_damaged_head(url: str, damage: str) -> None:
    checkpoint = run(url, "audit", "checkpoint")
    note = run(url, "note", "alpha", "one more")

    for result in (checkpoint, note):
        assert (result.exit_code, result.stdout) == (6, "")
        assert result.stderr.startswith("bflsync: error: the hash chain's head, finetune_note row 1, ")
        assert damage in result.stderr
        assert result.stderr.endswith(": run bflsync audit verify\n")
        assert result.stderr.count("\n") == 1
    assert [row["text"] for row in rows(url, "SELECT text FROM finetune_note")] == ["the good one"]


def test_a_head_row_hash_that_is_no_digest_stops_every_writer_in_one_line(store_url: str) -> None:
    """The head's hash is what the next row links to: a writer that cannot read it appends nothing,
    and says which row to look at rather than failing as an internal error."""
    execute(store_url, "UPDATE finetune_note SET row_hash = 'zz'")

    assert_refused_for_a_damaged_head(store_url, "has a row_hash that is no SHA-256 hex digest")


def test_a_head_place_that_is_no_whole_number_stops_every_writer_in_one_line(db_path: Path) -> None:
    """SQLite keeps a fraction in an INTEGER column; int() would cut it and the next row follow it."""
    url = build(str(db_path))
    execute(url, "UPDATE finetune_note SET chain_seq = 9.5")

    assert_refused_for_a_damaged_head(url, "has a place (chain_seq) that is no whole number: 9.5")

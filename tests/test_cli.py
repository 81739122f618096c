"""The command-line frame: help, version, environment, exit codes, and the `db` commands."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from readonly_fs import read_only_argv
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bflsync import __version__
from bflsync.cli import cli
from bflsync.cli.app import COMMAND_SUMMARIES, LAZY_COMMANDS
from bflsync.store import access, writes

ROOT = Path(__file__).resolve().parent.parent


def all_commands() -> list[tuple[str, click.Command]]:
    """Every command path with its command object, groups included."""
    found: list[tuple[str, click.Command]] = []

    def walk(prefix: str, command: click.Command) -> None:
        found.append((prefix, command))
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(f"{prefix} {name}", sub)

    walk("bflsync", cli)
    return found


def test_version_option_prints_the_package_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"], catch_exceptions=False)
    assert result.output.splitlines()[0] == f"bflsync, version {__version__}"


def test_version_option_says_where_the_default_store_is(runner: CliRunner, isolated_env: Path) -> None:
    result = runner.invoke(cli, ["--version"], catch_exceptions=False)
    assert result.output.splitlines()[1] == f"default store: {isolated_env / 'bflsync' / 'bflsync.db'}"


def test_every_lazy_command_is_listed_in_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"], catch_exceptions=False)
    for name in LAZY_COMMANDS:
        assert f"  {name} " in result.output


@pytest.mark.parametrize(("path", "command"), all_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_help_that_ends_with_an_example(path: str, command: click.Command) -> None:
    assert command.help, path
    assert "Example:" in command.help, path
    assert "bflsync " in command.help.strip().splitlines()[-1], path


@pytest.mark.parametrize("path", [path for path, _ in all_commands()])
def test_every_command_is_documented_in_the_docs(path: str) -> None:
    """Beyond the generated reference (docs/commands.md), a page people wrote explains each command."""
    written = [
        ROOT / "README.md",
        *(page for page in (ROOT / "docs").glob("*.md") if page.name != "commands.md"),
    ]
    assert any(f"`{path}" in page.read_text(encoding="utf-8") for page in written), path
    assert f"## {path}\n" in (ROOT / "docs" / "commands.md").read_text(encoding="utf-8"), path


def test_db_upgrade_creates_the_default_store_privately(runner: CliRunner, isolated_env: Path) -> None:
    result = runner.invoke(cli, ["db", "upgrade"], catch_exceptions=False)
    store_path = isolated_env / "bflsync" / "bflsync.db"
    assert result.exit_code == 0
    assert result.stdout == f"{store_path}: at revision {access.HEAD_REVISION}\n"
    assert "created a new bflsync store" in result.stderr
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store_path.parent.stat().st_mode) == 0o700


def test_bflsync_db_env_var_locates_the_store(
    runner: CliRunner, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BFLSYNC_DB", str(db_path))
    result = runner.invoke(cli, ["db", "upgrade"], catch_exceptions=False)
    assert result.exit_code == 0
    assert db_path.exists()


def test_db_upgrade_is_idempotent(runner: CliRunner, db_path: Path) -> None:
    runner.invoke(cli, ["--db", str(db_path), "db", "upgrade"], catch_exceptions=False)
    again = runner.invoke(cli, ["--db", str(db_path), "db", "upgrade"], catch_exceptions=False)
    assert again.exit_code == 0
    assert again.stderr == ""


def test_quiet_silences_notices(runner: CliRunner, db_path: Path) -> None:
    result = runner.invoke(cli, ["--db", str(db_path), "-q", "db", "upgrade"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stderr == ""


def test_db_current_reports_head(runner: CliRunner, db_path: Path, store_engine: Engine) -> None:
    result = runner.invoke(cli, ["--db", str(db_path), "db", "current"], catch_exceptions=False)
    assert result.stdout == f"{access.HEAD_REVISION} (head)\n"


def test_db_current_on_a_missing_store_exits_2_without_creating_it(runner: CliRunner, db_path: Path) -> None:
    result = runner.invoke(cli, ["--db", str(db_path), "db", "current"])
    assert result.exit_code == 2
    assert result.stderr == f"bflsync: error: no bflsync store at {db_path} - run `bflsync sync` first\n"
    assert not db_path.exists()


def test_db_history_lists_revisions_oldest_first(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["db", "history"], catch_exceptions=False)
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert tuple(listed) == access.KNOWN_REVISIONS
    assert f"{access.HEAD_REVISION} (head)" in result.stdout


def test_db_check_passes_on_a_store_at_head(runner: CliRunner, db_path: Path, store_engine: Engine) -> None:
    result = runner.invoke(cli, ["--db", str(db_path), "db", "check"], catch_exceptions=False)
    assert (result.exit_code, result.stdout) == (0, "models and migrations agree\n")


def test_db_check_exits_1_when_the_schema_drifts(
    runner: CliRunner, db_path: Path, store_engine: Engine
) -> None:
    with store_engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE finetune ADD COLUMN hand_made TEXT")
    result = runner.invoke(cli, ["--db", str(db_path), "db", "check"])
    assert result.exit_code == 1
    assert "models and migrations differ" in result.stderr
    assert "hand_made" in result.stderr


def test_db_downgrade_to_an_unknown_revision_exits_2(
    runner: CliRunner, db_path: Path, store_engine: Engine
) -> None:
    result = runner.invoke(cli, ["--db", str(db_path), "db", "downgrade", "no_such_rev"])
    assert result.exit_code == 2
    assert result.stderr.startswith("bflsync: error: unknown schema revision 'no_such_rev'")
    assert result.stderr.count("\n") == 1
    assert not list(db_path.parent.glob("store.db.bak-*"))


def test_db_downgrade_to_the_current_revision_exits_2_without_a_backup(
    runner: CliRunner, db_path: Path, store_engine: Engine
) -> None:
    result = runner.invoke(cli, ["--db", str(db_path), "db", "downgrade", access.HEAD_REVISION])
    assert (result.exit_code, result.stderr) == (
        2,
        f"bflsync: error: the store is at schema revision {access.HEAD_REVISION}; {access.HEAD_REVISION} is not older:"
        " nothing to do\n",
    )
    assert not list(db_path.parent.glob("store.db.bak-*"))


def test_db_upgrade_to_an_older_revision_exits_2_pointing_at_downgrade(
    runner: CliRunner, db_path: Path, store_engine: Engine
) -> None:
    oldest = access.KNOWN_REVISIONS[0]
    result = runner.invoke(cli, ["--db", str(db_path), "db", "upgrade", oldest])
    assert result.exit_code == 2
    assert f"use `bflsync db downgrade {oldest}`" in result.stderr
    with store_engine.connect() as connection:
        assert access.read_revision(connection) == access.HEAD_REVISION


def test_db_reextract_recomputes_columns_from_raw_json(
    runner: CliRunner, db_path: Path, store_engine: Engine
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    details = {"mode": "character", "iterations": "300", "learning_rate": "2e-5"}
    with Session(store_engine) as session, session.begin():
        writes.record_observations(
            session, [writes.Observation("a", details)], source="h", account="default", run_id=None, now=now
        )
    with store_engine.begin() as connection:  # extraction rules of an older release left other values
        connection.exec_driver_sql("UPDATE finetune SET mode = NULL, iterations = NULL, learning_rate = 1")
    result = runner.invoke(cli, ["--db", str(db_path), "db", "reextract"], catch_exceptions=False)
    assert result.stdout == "1 finetune rows updated\n"
    with store_engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT mode, iterations, learning_rate, details FROM finetune"
        ).one()
    assert tuple(row) == ("character", 300, 2e-5, json.dumps(details, sort_keys=True, separators=(",", ":")))


def test_a_non_sqlite_file_exits_2_and_stays_untouched(runner: CliRunner, db_path: Path) -> None:
    db_path.write_text("not a database\n")
    result = runner.invoke(cli, ["--db", str(db_path), "db", "upgrade"])
    assert result.exit_code == 2
    assert result.stderr == f"bflsync: error: {db_path} is not a SQLite database; refusing to touch it\n"
    assert db_path.read_text() == "not a database\n"


def test_a_bad_option_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["db", "upgrade", "--no-such-option"])
    assert result.exit_code == 2


def test_an_internal_error_is_one_line_with_a_hint(
    runner: CliRunner, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_db: str | None) -> access.StoreLocation:
        raise RuntimeError("boom")

    monkeypatch.setattr(access, "locate_store", broken)
    result = runner.invoke(cli, ["--db", str(db_path), "db", "current"])
    assert result.exit_code == 70
    assert (
        result.stderr
        == "bflsync: error: internal error: RuntimeError: boom (rerun with -v for the traceback)\n"
    )


def test_an_internal_error_spanning_lines_is_reported_on_one(
    runner: CliRunner, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_db: str | None) -> access.StoreLocation:
        raise RuntimeError("(sqlite3.OperationalError) boom\n[SQL: SELECT 1]\n[parameters: ()]")

    monkeypatch.setattr(access, "locate_store", broken)
    result = runner.invoke(cli, ["--db", str(db_path), "db", "current"])
    assert result.stderr == (
        "bflsync: error: internal error: RuntimeError: (sqlite3.OperationalError) boom"
        " (rerun with -v for the traceback)\n"
    )


def test_an_internal_error_shows_the_traceback_with_verbose(
    runner: CliRunner, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_db: str | None) -> access.StoreLocation:
        raise RuntimeError("boom")

    monkeypatch.setattr(access, "locate_store", broken)
    result = runner.invoke(cli, ["-v", "--db", str(db_path), "db", "current"])
    assert result.exit_code == 70
    assert "Traceback (most recent call last)" in result.stderr


def test_module_entry_point_runs_as_a_subprocess(tmp_path: Path) -> None:
    store_path = tmp_path / "sub.db"
    completed = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(store_path), "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == f"{store_path}: at revision {access.HEAD_REVISION}\n"
    with sqlite3.connect(store_path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (access.HEAD_REVISION,)
        ]
    connection.close()


def test_subprocess_errors_never_print_a_traceback(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00" * 64)
    completed = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(garbage), "db", "current"],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.count("\n") == 1


def test_a_missing_database_driver_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--db", "postgresql+nosuchdriver://127.0.0.1/bfl", "db", "current"])
    assert result.exit_code == 2
    assert "no database driver for 'postgresql+nosuchdriver'" in result.stderr


def test_arguments_that_are_not_utf8_exit_2(tmp_path: Path) -> None:
    store_path = tmp_path / "s.db"
    subprocess.run([sys.executable, "-m", "bflsync", "--db", str(store_path), "db", "upgrade"], check=True)
    completed = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(store_path), "show", b"\xff"],
        capture_output=True,
        text=True,
    )
    assert (completed.returncode, completed.stderr.count("\n")) == (2, 1)
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(("output_format", "first_line"), [("ids", b"finetune-00000"), ("json", b"[")])
def test_a_reader_that_goes_away_ends_the_output_quietly(
    tmp_path: Path, output_format: str, first_line: bytes
) -> None:
    # One large write that the pipe takes only partly: the rest must fail loudly (141), not vanish.
    store_path = tmp_path / "s.db"
    opened = access.open_store_for_write(access.locate_store(str(store_path)))
    observations = [
        writes.Observation(f"finetune-{i:05d}-{'x' * 40}", {"mode": "style"}) for i in range(4000)
    ]
    with Session(opened.engine) as session, session.begin():
        writes.record_observations(
            session,
            observations,
            source="h",
            account="default",
            run_id=None,
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
    opened.engine.dispose()
    process = subprocess.Popen(
        [sys.executable, "-m", "bflsync", "--db", str(store_path), "query", "--format", output_format],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(first_line)
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read()
    assert (process.wait(timeout=30), stderr) == (141, b"")


def test_a_wal_store_on_a_read_only_mount_can_still_be_queried(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    store_path = directory / "store.db"
    opened = access.open_store_for_write(access.locate_store(str(store_path)))
    with Session(opened.engine) as session, session.begin():
        writes.record_observations(
            session,
            [writes.Observation("a", {"mode": "style"})],
            source="h",
            account="default",
            run_id=None,
            now=datetime.now(UTC),
        )
    opened.engine.dispose()
    assert sorted(p.name for p in directory.iterdir()) == ["store.db"]
    argv = [sys.executable, "-m", "bflsync", "--db", str(store_path), "query", "--format", "ids"]
    completed = subprocess.run(read_only_argv(directory, argv), capture_output=True, text=True)
    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "a\n", "")


def test_the_help_summaries_are_each_commands_own_short_help() -> None:
    assert set(COMMAND_SUMMARIES) == set(LAZY_COMMANDS)
    # The whole first sentence, as `bflsync --help` lists it (wrapped, never cut).
    with click.Context(cli) as ctx:
        for name, summary in COMMAND_SUMMARIES.items():
            command = cli.get_command(ctx, name)
            assert command is not None
            assert summary == command.get_short_help_str(limit=sys.maxsize), name


def test_help_imports_no_command_module() -> None:
    script = (
        "import sys\nfrom bflsync.cli import main\nsys.argv = ['bflsync', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('bflsync.cli.', 'sqlalchemy', 'httpx'))),"
        " file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "Commands:" in result.stdout
    assert result.stderr == "['bflsync.cli.app', 'bflsync.cli.common']\n"


@pytest.mark.parametrize("columns", ["60", "200", "30", "", "wide"])
def test_help_is_as_wide_as_click_would_make_it(columns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from bflsync.cli.app import _help_width

    monkeypatch.setenv("COLUMNS", columns)
    assert _help_width() == max(min(shutil.get_terminal_size().columns, 80) - 2, 50)


def test_help_wraps_at_columns() -> None:
    env = {**os.environ, "COLUMNS": "60"}
    result = subprocess.run(
        [sys.executable, "-m", "bflsync", "--help"], capture_output=True, text=True, env=env, check=True
    )
    assert "  --db PATH|URL  SQLite file or SQLAlchemy URL of the\n" in result.stdout

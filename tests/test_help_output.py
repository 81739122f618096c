"""Help and human-facing output without noise: no int64 bounds, whole summaries, rounded durations."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from storebuild import day, write_sync
from test_cli import all_commands

from bflsync.cli import cli
from bflsync.cli.render import human_duration

COMMANDS = [path.split()[1:] for path, _ in all_commands()]


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_no_help_shows_the_64_bit_cap(words: list[str]) -> None:
    result = CliRunner().invoke(cli, [*words, "--help"], catch_exceptions=False, terminal_width=80)
    assert result.exit_code == 0
    assert "9223372036854775807" not in result.output


def test_top_level_help_gives_each_command_its_whole_first_sentence() -> None:
    output = CliRunner().invoke(cli, ["--help"], catch_exceptions=False, terminal_width=80).output
    listing = " ".join(output.split("Commands:\n", 1)[1].split())
    assert "..." not in listing
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None and command.help is not None
        first_sentence = " ".join(command.help.split("\n\n")[0].split()).split(". ")[0]
        assert f"{name} {first_sentence}" in listing.replace("- ", "-"), name


def test_table_note_appears_only_when_rows_were_withheld(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, {f"ft-{n}": {"mode": "style"} for n in range(3)}, now=day(1))
    store_engine.dispose()

    def note(limit: str) -> str:
        result = CliRunner().invoke(
            cli, ["--db", str(db_path), "query", "--limit", limit], catch_exceptions=False
        )
        return result.stderr

    assert note("3") == ""
    assert note("4") == ""
    assert note("0") == ""
    assert note("2") == "(first 2 rows shown; --limit 0 for all)\n"
    assert note("1") == "(first 1 row shown; --limit 0 for all)\n"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, ""),
        (0.322832, "0.3 s"),
        (9.94, "9.9 s"),
        (12.4, "12 s"),
        (59.6, "1 min 00 s"),
        (245.2, "4 min 05 s"),
        (7385.0, "2 h 03 min"),
    ],
)
def test_durations_are_rounded_for_people(seconds: float | None, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_runs_table_and_run_view_round_durations_while_json_keeps_seconds(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(store_engine, {"a": {"mode": "style"}}, now=day(1))
    store_engine.dispose()
    table = CliRunner().invoke(cli, ["--db", str(db_path), "runs"], catch_exceptions=False).stdout
    header, row = table.splitlines()
    assert re.split(r"\s{2,}", header)[2] == "duration"
    assert re.split(r"\s{2,}", row)[2] == "3.0 s"
    one = CliRunner().invoke(cli, ["--db", str(db_path), "runs", "1"], catch_exceptions=False).stdout
    assert "duration         3.0 s\n" in one
    as_json = CliRunner().invoke(
        cli, ["--db", str(db_path), "runs", "--format", "json"], catch_exceptions=False
    )
    assert '"duration_s": 3.0' in as_json.stdout

"""One output vocabulary: json, jsonl and csv wherever records are listed; top-level options after the command."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from storebuild import day, write_sync
from sync_support import ALPHA, BETA, KEY

from bflsync.cli import cli
from bflsync.mock.server import MockBFL

ROOT = Path(__file__).resolve().parent.parent
LISTINGS = [
    ["query"],
    ["query", "--columns", "mode,iterations"],
    ["facets", "mode", "iterations"],
    ["history", "--since", "2026-01-01"],
    ["history", "alpha"],
    ["runs"],
    ["runs", "1"],
    ["diff", "alpha@1", "alpha@2"],
]


@pytest.fixture
def store(store_engine: Engine, db_path: Path) -> Path:
    write_sync(
        store_engine, {"alpha": {"mode": "style", "iterations": 300}, "beta": {"mode": "style"}}, now=day(1)
    )
    write_sync(
        store_engine,
        {"alpha": {"mode": "character", "iterations": 500}, "beta": {"mode": "style"}},
        now=day(2),
    )
    store_engine.dispose()
    return db_path


def out(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", LISTINGS, ids=" ".join)
def test_json_jsonl_and_csv_list_the_same_records(store: Path, command: list[str]) -> None:
    as_json = json.loads(out("--db", str(store), *command, "--format", "json"))
    records = as_json["differences"] if command[0] == "diff" else as_json
    records = records if isinstance(records, list) else [records]
    assert records
    lines = [json.loads(line) for line in out("--db", str(store), *command, "--format", "jsonl").splitlines()]
    assert lines == records
    table = list(csv.DictReader(io.StringIO(out("--db", str(store), *command, "--format", "csv"))))
    assert len(table) == len(records)
    for row, record in zip(table, records, strict=True):
        # (query --columns a,b writes exactly those CSV columns; its JSON adds finetune_id and source)
        assert set(row) <= set(record)
        for name, value in record.items():
            if name in row and isinstance(value, int | str) and not isinstance(value, bool):
                assert row[name] == str(value), name


def test_facets_json_is_an_array_like_every_other_listing(store: Path) -> None:
    assert json.loads(out("--db", str(store), "facets", "mode", "--format", "json")) == [
        {"field": "mode", "value": "style", "count": 1},
        {"field": "mode", "value": "character", "count": 1},
    ] or json.loads(out("--db", str(store), "facets", "mode", "--format", "json")) == [
        {"field": "mode", "value": "character", "count": 1},
        {"field": "mode", "value": "style", "count": 1},
    ]


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA, "beta": BETA}, api_key=KEY) as server:
        yield server


def test_sync_format_json_and_the_json_alias_print_the_same_object(db_path: Path, mock: MockBFL) -> None:
    def sync(*args: str) -> dict[str, object]:
        result = CliRunner().invoke(
            cli,
            ["--db", str(db_path), "sync", "--base-url", mock.base_url, *args],
            env={"BFL_API_KEY": KEY},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        parsed = json.loads(result.stdout)
        assert isinstance(parsed, dict)
        return parsed

    first, second = sync("--format", "json"), sync("--json")
    assert set(first) == set(second)
    assert (first["created"], second["unchanged"]) == (2, 2)


def test_db_v_and_q_are_accepted_after_the_command(store: Path) -> None:
    assert out("query", "--db", str(store), "--format", "ids") == "alpha\nbeta\n"
    assert out("db", "current", "--db", str(store)).startswith("0")
    noted = CliRunner().invoke(cli, ["query", "--db", str(store), "--limit", "1"], catch_exceptions=False)
    quiet = CliRunner().invoke(
        cli, ["query", "--db", str(store), "--limit", "1", "-q"], catch_exceptions=False
    )
    assert "rows shown" in noted.stderr or "row shown" in noted.stderr
    assert quiet.stderr == ""
    out("runs", "--db", str(store), "-vv")
    assert logging.getLogger("bflsync").level == logging.DEBUG
    out("runs", "--db", str(store))
    assert logging.getLogger("bflsync").level == logging.WARNING


def test_the_docs_list_every_format_of_every_command() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    rows: dict[str, str] = {}
    for page in pages:
        text = page.read_text(encoding="utf-8") if page.exists() else ""
        if "## Output formats" not in text:
            continue
        section = text.split("## Output formats", 1)[1].split("\n## ", 1)[0]
        for match in re.finditer(r"^\| `bflsync ([a-z -]+)` \| (.*) \|$", section, flags=re.MULTILINE):
            rows[match.group(1)] = rows.get(match.group(1), "") + " " + match.group(2)
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        option = next((p for p in command.params if p.name == "output_format"), None)
        if option is None:
            continue
        assert isinstance(option.type, click.Choice)
        assert name in rows, name
        assert {f"`{choice}`" for choice in option.type.choices} <= set(
            re.findall(r"`[a-z0-9]+`", rows[name])
        ), name

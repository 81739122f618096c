"""Tables on a real terminal (a pty sized 80 and 120 columns): ids and numbers whole, free text gives way."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from storebuild import day, write_sync
from terminal import read_until_closed

from bflsync.cli.table import cells
from bflsync.store import writes

UUID_A = "3f1c2d9e-0000-4000-8000-000000000001"
UUID_B = "001deb5e-9a7c-4c1e-8d7e-5b2f0c8a9e17"
LONG_COMMENT = "Portrait set shot over three days in Lisbon, soft window light, 35mm, mixed skin tones " * 2
CJK_COMMENT = "日本の風景写真、桜と富士山、夕暮れの柔らかい光で撮影したシリーズ" * 2
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def store_path(store_engine: Engine, db_path: Path) -> Path:
    details = {
        UUID_A: {
            "mode": "character",
            "finetune_type": "lora",
            "trigger_word": "ohwx",
            "iterations": 1000,
            "learning_rate": 1e-05,
            "lora_rank": 32,
            "finetune_comment": LONG_COMMENT,
        },
        UUID_B: {
            "mode": "style",
            "finetune_type": "full",
            "trigger_word": "TOK",
            "iterations": 300,
            "learning_rate": 0.0002,
            "lora_rank": 16,
            "finetune_comment": CJK_COMMENT,
        },
    }
    write_sync(store_engine, details, now=day(1))
    with Session(store_engine) as session, session.begin():
        run_id = writes.start_run(session, source="api.us1.bfl.ai", account="default", pid=1, now=day(2))
        counts = {"listed": 2000, "fetched": 2000, "unchanged": 1998, "updated": 2}
        writes.finish_run(
            session, run_id=run_id, status="ok", counts=counts, now=day(2) + timedelta(seconds=754)
        )
    store_engine.dispose()
    return db_path


def on_a_terminal(columns: int, *args: str) -> list[str]:
    """What a terminal of that width shows for `bflsync ARGS` (colours stripped), line by line."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(
        [sys.executable, "-m", "bflsync", *args], stdout=terminal, stderr=subprocess.PIPE, env=env
    )
    os.close(terminal)
    shown = read_until_closed(controller)
    assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    return _ANSI.sub("", shown.decode()).replace("\r\n", "\n").splitlines()


def _name_and_value(line: str) -> tuple[str, str]:
    """One line of a record block; a NULL shows as a name alone."""
    name, _, value = line.partition(" ")
    return name, value.strip()


def assert_fits(lines: list[str], columns: int) -> None:
    assert lines
    assert max(cells(line) for line in lines) <= columns


@pytest.mark.parametrize("columns", [80, 120])
def test_ids_and_numbers_stay_whole_while_comments_give_way(store_path: Path, columns: int) -> None:
    lines = on_a_terminal(
        columns,
        "--db",
        str(store_path),
        "query",
        "--columns",
        "finetune_id,finetune_comment,iterations,learning_rate",
    )
    assert_fits(lines, columns)
    rule = next(index for index, line in enumerate(lines) if set(line.replace(" ", "")) == {"─"})
    # The comment's header may wrap after its underscore (finetune_ / comment) when the column gives way.
    assert lines[0].split()[0] == "finetune_id"
    assert {"iterations", "learning_rate"} <= set(lines[0].split())
    rows = lines[rule + 1 :]
    by_id = {row.split()[0]: row for row in rows}
    assert set(by_id) == {UUID_A, UUID_B}
    assert by_id[UUID_A].split()[-2:] == ["1000", "1e-05"]
    assert by_id[UUID_B].split()[-2:] == ["300", "0.0002"]
    assert "…" in by_id[UUID_A] and "…" in by_id[UUID_B]
    assert "Portrait set" in by_id[UUID_A]
    assert "日本の" in by_id[UUID_B]


def test_the_default_query_table_fits_140_columns_with_ids_whole(store_path: Path) -> None:
    lines = on_a_terminal(140, "--db", str(store_path), "query")
    assert_fits(lines, 140)
    rows = [line.split() for line in lines if line.startswith((UUID_A, UUID_B))]
    assert sorted(row[0] for row in rows) == sorted([UUID_A, UUID_B])
    assert next(row for row in rows if row[0] == UUID_A)[1:7] == [
        "character",
        "lora",
        "ohwx",
        "1000",
        "1e-05",
        "32",
    ]
    assert "…" not in "".join(lines)


def test_at_80_columns_the_default_query_falls_back_to_one_block_per_record(store_path: Path) -> None:
    lines = on_a_terminal(80, "--db", str(store_path), "query")
    assert_fits(lines, 80)
    records = "\n".join(lines).split("\n\n")
    assert [dict(_name_and_value(line) for line in record.splitlines()) for record in records] == [
        {
            "finetune_id": UUID_B,
            "mode": "style",
            "finetune_type": "full",
            "trigger_word": "TOK",
            "iterations": "300",
            "learning_rate": "0.0002",
            "lora_rank": "16",
            "status": "",
            "last_changed_at": "2026-01-01T00:00:00.000000Z",
        },
        {
            "finetune_id": UUID_A,
            "mode": "character",
            "finetune_type": "lora",
            "trigger_word": "ohwx",
            "iterations": "1000",
            "learning_rate": "1e-05",
            "lora_rank": "32",
            "status": "",
            "last_changed_at": "2026-01-01T00:00:00.000000Z",
        },
    ]


@pytest.mark.parametrize("columns", [80, 120])
def test_runs_never_cut_a_count(store_path: Path, columns: int) -> None:
    lines = on_a_terminal(columns, "--db", str(store_path), "runs")
    assert_fits(lines, columns)
    newest = "\n".join(lines).split("\n\n")[0]
    fields = dict(_name_and_value(line) for line in newest.splitlines())
    assert (fields["id"], fields["fetched"], fields["unchanged"], fields["duration"]) == (
        "2",
        "2000",
        "1998",
        "12 min 34 s",
    )


def test_wide_enough_runs_are_one_table(store_path: Path) -> None:
    lines = on_a_terminal(220, "--db", str(store_path), "runs")
    assert_fits(lines, 220)
    assert lines[0].split()[:3] == ["id", "started_at", "duration"]
    assert lines[2].split()[:2] == ["2", "2026-01-02T00:00:00.000000Z"]
    assert "2000" in lines[2].split()


@pytest.mark.parametrize("columns", [80, 140])
def test_cjk_text_is_padded_by_display_width_on_a_terminal(store_path: Path, columns: int) -> None:
    lines = on_a_terminal(
        columns, "--db", str(store_path), "query", "--columns", "finetune_comment,iterations"
    )
    assert_fits(lines, columns)
    # The CJK comment is two cells a character: `iterations` starts in the same cell on every line.
    rows = [line for line in lines if not set(line) <= {"─", " "}]
    assert any(CJK_COMMENT[:8] in line for line in rows), lines
    starts = {cells(line[: match.start(1)]) for line in rows if (match := re.search(r"\s{2,}(\S+)$", line))}
    assert len(starts) == 1 and len(rows) == 3, lines

"""Shell completion through click's ``_BFLSYNC_COMPLETE``: candidates read from the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from storebuild import day, write_sync

from bflsync import annotate
from bflsync.cli import cli
from bflsync.store.labels import Author

PAYLOADS = {
    "alpha": {"mode": "character", "extra": {"images": 3, "tags": ["x"]}},
    "alpine": {"mode": "style", "learning_rate": 1e-5},
    "bravo": {"mode": "style"},
}


@pytest.fixture
def target(any_store: tuple[str, Engine]) -> str:
    db, engine = any_store
    write_sync(engine, {**PAYLOADS, "with-label": {"mode": "style", "label": {"x": 1}}}, now=day(1))
    edit = annotate.build_edit(["project=acme", "priority=1"], [])
    annotate.edit_labels(engine, "bravo", edit, source=None, account=None, actor=Author("tester"), now=day(2))
    return db


def candidates(db: str, *words: str) -> list[str]:
    """What bash completion offers for the last word of ``bflsync --db DB WORDS...``."""
    line = ["bflsync", "--db", db, *words]
    result = CliRunner().invoke(
        cli,
        [],
        prog_name="bflsync",
        env={
            "_BFLSYNC_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(line),
            "COMP_CWORD": str(len(line) - 1),
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    return [item.split(",", 1)[1] for item in result.stdout.splitlines() if item]


@pytest.mark.parametrize(
    "command",
    [["show"], ["history"], ["diff", "bravo"], ["compare"], ["compare", "bravo"], ["label"], ["note"]],
)
def test_finetune_ids_complete_from_the_store(target: str, command: list[str]) -> None:
    assert candidates(target, *command, "alp") == ["alpha", "alpine"]


def test_filter_fields_complete_columns_and_details_keys(target: str) -> None:
    assert candidates(target, "query", "lea") == ["learning_rate"]
    assert candidates(target, "query", "extra.") == ["extra.images", "extra.tags"]
    assert candidates(target, "query", "lea>") == []
    assert candidates(target, "facets", "mo") == ["mode"]


def test_stored_values_complete_after_field_equals_for_small_enumerations(target: str) -> None:
    assert candidates(target, "query", "mode=") == ["mode=character", "mode=style"]
    assert candidates(target, "query", "mode=s") == ["mode=style"]
    assert candidates(target, "query", "mode!=c") == ["mode!=character"]


def test_label_keys_complete_as_label_fields(target: str) -> None:
    assert candidates(target, "query", "label.") == ["label.priority", "label.project"]
    assert candidates(target, "query", "label.pro") == ["label.project"]
    assert candidates(target, "query", "--sort", "label.pri") == ["label.priority"]
    assert candidates(target, "compare", "bravo", "--columns", "mode,label.p") == [
        "mode,label.priority",
        "mode,label.project",
    ]
    assert candidates(target, "facets", "lab") == ["label", "label.priority", "label.project"]


def test_sort_and_columns_complete_the_field_being_typed(target: str) -> None:
    assert candidates(target, "query", "--sort", "extra.im") == ["extra.images"]
    assert candidates(target, "query", "--columns", "mode,extra.t") == ["mode,extra.tags"]


@pytest.mark.parametrize("command", [["runs"], ["compare", "alpha"], ["label", "alpha"], ["note", "alpha"]])
def test_account_names_complete_from_the_store(target: str, command: list[str]) -> None:
    assert candidates(target, *command, "--account", "") == ["default"]


def test_completion_without_a_store_offers_nothing_and_creates_nothing(db_path: Path) -> None:
    assert candidates(str(db_path), "show", "a") == []
    assert not db_path.exists()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_is_printed_for_each_shell(shell: str) -> None:
    env = {**os.environ, "_BFLSYNC_COMPLETE": f"{shell}_source"}
    result = subprocess.run(
        [sys.executable, "-m", "bflsync"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0
    assert "_BFLSYNC_COMPLETE" in result.stdout

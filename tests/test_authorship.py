"""Who wrote a label or a note: the OS account of the real uid, the PostgreSQL role, and ``--as`` text."""

from __future__ import annotations

import json
import os
import pwd
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.store import access

ACCOUNT = pwd.getpwuid(os.getuid()).pw_name
FORGED = {"LOGNAME": "forged", "USER": "forged", "LNAME": "forged", "USERNAME": "forged"}


def run(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args], env=FORGED, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def rows(url: str, sql: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def role_of(url: str) -> str | None:
    """What the store records as the database role: the session user on PostgreSQL, nothing on SQLite."""
    return sa.make_url(url).username if url.startswith("postgresql") else None


def test_labels_and_notes_record_the_real_uid_account_whatever_logname_and_user_say(alpha_store: str) -> None:
    run(alpha_store, "label", "alpha", "a=1")
    run(alpha_store, "note", "alpha", "hello")
    assert rows(alpha_store, "SELECT set_by FROM finetune_label") == [{"set_by": ACCOUNT}]
    assert rows(alpha_store, "SELECT changed_by FROM finetune_label_change") == [{"changed_by": ACCOUNT}]
    assert rows(alpha_store, "SELECT written_by FROM finetune_note") == [{"written_by": ACCOUNT}]


def test_labels_and_notes_record_the_database_role_in_its_own_column(alpha_store: str) -> None:
    run(alpha_store, "label", "alpha", "a=1")
    run(alpha_store, "note", "alpha", "hello")
    role = role_of(alpha_store)
    assert rows(alpha_store, "SELECT set_by_role, set_as FROM finetune_label") == [
        {"set_by_role": role, "set_as": None}
    ]
    assert rows(alpha_store, "SELECT changed_by_role, changed_as FROM finetune_label_change") == [
        {"changed_by_role": role, "changed_as": None}
    ]
    assert rows(alpha_store, "SELECT written_by_role, written_as FROM finetune_note") == [
        {"written_by_role": role, "written_as": None}
    ]


def test_as_adds_a_free_text_attribution_beside_the_account(alpha_store: str) -> None:
    run(alpha_store, "label", "alpha", "a=1", "--as", "Zoë (design)")
    run(alpha_store, "note", "alpha", "hello", "--as", "Zoë (design)")
    assert rows(alpha_store, "SELECT changed_by, changed_as FROM finetune_label_change") == [
        {"changed_by": ACCOUNT, "changed_as": "Zoë (design)"}
    ]
    assert rows(alpha_store, "SELECT written_by, written_as FROM finetune_note") == [
        {"written_by": ACCOUNT, "written_as": "Zoë (design)"}
    ]


def test_history_and_show_print_the_account_the_role_and_the_attribution(alpha_store: str) -> None:
    run(alpha_store, "label", "alpha", "a=1", "--as", "Zoë")
    run(alpha_store, "note", "alpha", "hello", "--as", "Zoë")
    role = role_of(alpha_store)
    who = f'{ACCOUNT} (role {role}; as "Zoë")' if role else f'{ACCOUNT} (as "Zoë")'
    history = run(alpha_store, "history", "alpha").stdout
    assert "label set  " in history and f"by {who}\n" in history
    assert "note  " in history
    assert history.count(f"by {who}") == 2
    assert f"  {who}: hello\n" in run(alpha_store, "show", "alpha").stdout
    entries = json.loads(run(alpha_store, "history", "alpha", "--format", "json").stdout)
    authored = [entry for entry in entries if entry["kind"] in ("label", "note")]
    assert [
        {key: value for key, value in entry.items() if key.startswith(("changed_", "written_"))}
        for entry in authored
    ] == [
        {"changed_by": ACCOUNT, "changed_by_role": role, "changed_as": "Zoë"},
        {"written_by": ACCOUNT, "written_by_role": role, "written_as": "Zoë"},
    ]
    shown = json.loads(run(alpha_store, "show", "alpha", "--format", "json").stdout)
    assert [(note["written_by"], note["written_by_role"], note["written_as"]) for note in shown["notes"]] == [
        (ACCOUNT, role, "Zoë")
    ]


@pytest.mark.parametrize("attribution", ["", "two\nlines", "nul\x00"])
def test_an_attribution_that_is_blank_multiline_or_holds_nul_is_refused(
    alpha_store: str, attribution: str
) -> None:
    result = CliRunner().invoke(cli, ["--db", alpha_store, "note", "alpha", "hello", "--as", attribution])
    assert result.exit_code == 2
    assert result.stderr.startswith("bflsync: error: --as") and result.stderr.count("\n") == 1
    assert rows(alpha_store, "SELECT count(*) AS n FROM finetune_note") == [{"n": 0}]

"""The API key echoed back inside an answer never reaches the store; stored webhooks stay out of retraining bodies."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.redaction import MARKER

KEY = "bfl-redaction-canary-7f3a9c"
ECHOED = {
    "mode": "character",
    "finetune_comment": f"pasted by mistake: {KEY}",
    "extra": {"deep": [{"auth": KEY}], KEY: "as a key"},
}


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(finetunes={"leaky": ECHOED, "clean": {"mode": "style"}}, api_key=KEY) as server:
        yield server


def run(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def dump(url: str) -> str:
    """Every row of every table, as text."""
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            return "\n".join(
                repr(connection.execute(sa.text(f"SELECT * FROM {table}")).all()) for table in sorted(tables)
            )
    finally:
        engine.dispose()


def versions(url: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            return [
                tuple(row)
                for row in connection.execute(
                    sa.text(
                        "SELECT f.finetune_id, v.redacted FROM finetune_version v"
                        " JOIN finetune f ON f.id = v.finetune_pk ORDER BY f.finetune_id"
                    )
                )
            ]
    finally:
        engine.dispose()


def test_the_api_key_anywhere_in_an_answer_is_replaced_by_the_marker_and_the_version_says_so(
    store_db: str, mock: MockBFL
) -> None:
    run(store_db, "sync", "--base-url", mock.base_url, env={"BFL_API_KEY": KEY})
    stored = dump(store_db)
    assert KEY not in stored
    assert MARKER in stored
    assert versions(store_db) == [("clean", False), ("leaky", True)]
    shown = json.loads(run(store_db, "show", "leaky", "--format", "json").stdout)
    assert shown["details"]["finetune_comment"] == f"pasted by mistake: {MARKER}"
    assert shown["details"]["extra"] == {"deep": [{"auth": MARKER}], MARKER: "as a key"}
    request = run(store_db, "show", "leaky", "--format", "request")
    assert KEY not in request.output


ENCODED_ECHOES = {
    "base64": base64.b64encode(KEY.encode()).decode(),
    "hex": KEY.encode().hex().upper(),
    "upper": KEY.upper(),
    "html": "".join(f"&#{ord(ch)};" for ch in KEY),
    "percent": "".join(f"%{byte:02X}" for byte in KEY.encode()),
}


def test_the_api_key_echoed_in_an_encoding_is_replaced_by_the_marker_too(store_db: str) -> None:
    with MockBFL.serve(finetunes={"encoded": {"mode": "style", **ENCODED_ECHOES}}, api_key=KEY) as server:
        run(store_db, "sync", "--base-url", server.base_url, env={"BFL_API_KEY": KEY})
    stored = dump(store_db)
    assert [name for name, echo in ENCODED_ECHOES.items() if echo in stored] == []
    assert versions(store_db) == [("encoded", True)]
    shown = json.loads(run(store_db, "show", "encoded", "--format", "json").stdout)
    assert [name for name in ENCODED_ECHOES if MARKER not in shown["details"][name]] == []


@pytest.fixture
def webhook_store(store_db: str) -> str:
    opened = access.open_store_for_write(access.locate_store(store_db))
    try:
        write_sync(
            opened.engine,
            {
                "hooked": {
                    "mode": "style",
                    "webhook_url": "https://hooks.example/a",
                    "webhook_secret": "whsec",
                }
            },
            now=day(1),
        )
    finally:
        opened.engine.dispose()
    return store_db


def test_show_request_leaves_the_stored_webhook_out_and_says_so(webhook_store: str) -> None:
    result = run(webhook_store, "show", "hooked", "--format", "request")
    assert json.loads(result.stdout) == {"mode": "style"}
    assert "hooks.example" not in result.stdout and "whsec" not in result.output
    assert "left out webhook_url: a stored webhook would receive the new training's events" in result.stderr
    assert "left out webhook_secret: " in result.stderr


def test_keep_webhook_copies_the_stored_webhook_into_the_body(webhook_store: str) -> None:
    result = run(webhook_store, "show", "hooked", "--format", "request", "--keep-webhook")
    assert json.loads(result.stdout) == {
        "mode": "style",
        "webhook_url": "https://hooks.example/a",
        "webhook_secret": "whsec",
    }
    assert "webhook" not in result.stderr

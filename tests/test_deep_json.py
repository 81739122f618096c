"""JSON nested deeper than recursive code can walk: stored, or one finetune's storage error; never an exit 70."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access

KEY = "deep-json-test-key-0001"


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    finetunes = {"deep": {"mode": "style", "extra": nested(900)}, "plain": {"mode": "character"}}
    with MockBFL.serve(finetunes=finetunes, api_key=KEY) as server:
        yield server


def sync(url: str, mock: MockBFL) -> Result:
    return CliRunner().invoke(
        cli, ["--db", url, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
    )


def rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.begin() as connection:
            result = connection.execute(sa.text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_a_deeply_nested_finetune_is_stored_or_fails_alone_and_the_batch_is_kept(
    store_db: str, mock: MockBFL
) -> None:
    for _ in range(2):
        result = sync(store_db, mock)
        assert result.exit_code in (0, 1), result.output
        stored = {finetune_id for (finetune_id,) in rows(store_db, "SELECT finetune_id FROM finetune")}
        assert "plain" in stored
        if "deep" not in stored:
            assert result.exit_code == 1
            assert rows(store_db, "SELECT finetune_id, kind FROM sync_error ORDER BY id")[-1] == (
                "deep",
                "storage",
            )


@pytest.mark.parametrize(
    "command",
    [
        ["show", "plain"],
        ["show", "plain", "--format", "json"],
        ["show", "plain", "--format", "request"],
        ["query", "--format", "json"],
        ["query", "mode=character"],
        ["compare", "plain", "deep"],
        ["history", "plain", "--format", "json"],
        ["db", "reextract"],
    ],
)
def test_details_nested_thousands_deep_by_another_tool_never_exit_70(
    store_db: str, mock: MockBFL, command: list[str]
) -> None:
    assert sync(store_db, mock).exit_code in (0, 1)
    text = '{"k":' * 5000 + "1" + "}" * 5000
    rows(store_db, "UPDATE finetune SET details = :text WHERE finetune_id = 'plain'", text=text)
    rows(store_db, "UPDATE finetune_version SET details = :text", text=text)

    result = CliRunner().invoke(cli, ["--db", store_db, *command])

    assert result.exit_code in (0, 2, 3), result.output
    if result.exit_code:
        assert result.stderr.startswith("bflsync: error: ") and result.stderr.count("\n") == 1
        assert "internal error" not in result.stderr

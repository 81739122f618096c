"""The forgotten-``--account`` guard holds whatever state the account's finetunes are in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.mock.server import MockBFL

KEY_A = "key-of-team-a"
KEY_B = "key-of-team-b"


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    """Key A lists a1 and a2; key B lists b1."""
    with MockBFL.serve(
        finetunes={"a1": {"mode": "style"}, "a2": {"mode": "general"}}, api_key=KEY_A
    ) as server:
        server.add_account(KEY_B, {"b1": {"mode": "product"}})
        yield server


def sync(store_db: str, mock: MockBFL, key: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--db", store_db, "sync", "--base-url", mock.base_url, *args], env={"BFL_API_KEY": key}
    )


def test_a_foreign_key_is_refused_when_every_finetune_of_the_account_is_tombstoned(
    store_db: str, mock: MockBFL
) -> None:
    assert sync(store_db, mock, KEY_A).exit_code == 0
    mock.remove("a1", key=KEY_A)
    mock.remove("a2", key=KEY_A)
    assert sync(store_db, mock, KEY_A, "--allow-empty-listing").exit_code == 0

    refused = sync(store_db, mock, KEY_B)

    assert refused.exit_code == 2
    assert refused.stderr.startswith("bflsync: error: this key lists none of the 2 finetunes stored")
    assert sync(store_db, mock, KEY_A, "--allow-empty-listing").exit_code == 0


def test_a_foreign_key_is_refused_when_the_account_has_a_key_but_no_finetune_yet(
    store_db: str, mock: MockBFL
) -> None:
    mock.remove("a1", key=KEY_A)
    mock.remove("a2", key=KEY_A)
    assert sync(store_db, mock, KEY_A).exit_code == 0

    refused = sync(store_db, mock, KEY_B)

    assert refused.exit_code == 2
    assert "no finetune of the account is stored to tell whose it is" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert sync(store_db, mock, KEY_A).exit_code == 0
    assert sync(store_db, mock, KEY_B, "--account", "team-b").exit_code == 0


def test_a_rotated_key_is_taken_once_accepted_when_nothing_is_stored(store_db: str, mock: MockBFL) -> None:
    mock.remove("a1", key=KEY_A)
    mock.remove("a2", key=KEY_A)
    assert sync(store_db, mock, KEY_A).exit_code == 0
    assert sync(store_db, mock, KEY_B, "--accept-new-key").exit_code == 0
    assert sync(store_db, mock, KEY_B).exit_code == 0

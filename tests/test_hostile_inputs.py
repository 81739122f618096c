"""Inputs that used to crash (exit 70) or leak: store URLs with secrets, folded base URLs, huge label integers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from bflsync.cli import cli

PASSWORD = "hunter2/x?y@z#w"


def one_line_error(result_stderr: str) -> None:
    assert result_stderr.startswith("bflsync: error: ") and result_stderr.count("\n") == 1


def password_forms(password: str) -> set[str]:
    """Every spelling of the password a user could type back: raw, percent-encoded, its pieces."""
    forms = {password, quote(password, safe=""), quote(password)}
    forms.update(piece for piece in password.replace("?", "/").replace("@", "/").replace("#", "/").split("/"))
    return {form for form in forms if len(form) >= 2}


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:{PASSWORD}@127.0.0.1:1/db",
        f"postgresql+psycopg://bob:{PASSWORD}@127.0.0.1:1/db",
        "postgresql://bob:kq7@zv9@127.0.0.1:1/db",
        "postgresql://bob:kq7#zv9@127.0.0.1:1/db",
    ],
)
@pytest.mark.parametrize("command", [["runs"], ["label", "x", "a=1"], ["sync"], ["db", "upgrade"]])
def test_a_store_url_with_an_unencoded_password_is_refused_without_showing_it(
    url: str, command: list[str]
) -> None:
    # As a subprocess: nothing of the process (a DNS lookup of a piece of the password) may run first.
    done = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", url, *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={"BFL_API_KEY": "k", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    one_line_error(done.stderr)
    assert "percent-encode" in done.stderr
    password = url.partition("bob:")[2].rpartition("@")[0]
    assert not any(form in done.stderr + done.stdout for form in password_forms(password))


@pytest.mark.parametrize("option", ["password", "sslpassword", "SSLPASSWORD", "ssl%70assword"])
def test_a_secret_in_the_store_url_options_is_masked(option: str) -> None:
    url = f"postgresql://bob@127.0.0.1:1/db?{option}=s3cr3tvalue"
    result = CliRunner().invoke(cli, ["--db", url, "runs"])
    assert result.exit_code in (2, 3)
    one_line_error(result.stderr)
    assert "s3cr3tvalue" not in result.output


def test_an_encoded_password_is_masked() -> None:
    url = f"postgresql://bob:{quote(PASSWORD, safe='')}@127.0.0.1:1/db"
    result = CliRunner().invoke(cli, ["--db", url, "runs"])
    assert result.exit_code == 3
    one_line_error(result.stderr)
    assert "bob:***@127.0.0.1:1/db" in result.stderr
    assert not any(form in result.output for form in password_forms(PASSWORD))


def test_an_unknown_libpq_option_is_refused_before_connecting() -> None:
    result = CliRunner().invoke(cli, ["--db", "postgresql://bob@127.0.0.1:1/db?bogus=1", "label", "x", "a=1"])
    assert (result.exit_code, result.stderr) == (
        2,
        "bflsync: error: --db: 'bogus' is not a PostgreSQL connection option\n",
    )


@pytest.mark.parametrize("port", ["99999", "0"])
@pytest.mark.parametrize("command", [["runs"], ["label", "x", "a=1"]], ids=" ".join)
def test_a_port_out_of_range_is_an_input_error_before_connecting(port: str, command: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--db", f"postgresql://bob@127.0.0.1:{port}/db", *command])
    assert (result.exit_code, result.stderr) == (
        2,
        f"bflsync: error: --db: port={port!r} is not a port number (1 to 65535)\n",
    )


@pytest.mark.parametrize(
    "host", ["a\uff0fb.example", "a\uff03b.example", "x\u2100y.example", "\uff41pi.example"]
)
def test_a_base_url_that_idna_would_fold_is_refused(db_path: Path, host: str) -> None:
    result = CliRunner().invoke(
        cli, ["--db", str(db_path), "sync", "--base-url", f"https://{host}"], env={"BFL_API_KEY": "k"}
    )
    assert result.exit_code == 2
    one_line_error(result.stderr)
    assert "IDNA would fold" in result.stderr
    assert not db_path.exists()


@pytest.mark.parametrize("number", [str(2**63), str(-(2**63) - 1), "123456789012345678901234567890"])
def test_a_label_integer_beyond_64_bits_is_refused_not_rounded(alpha_store: str, number: str) -> None:
    result = CliRunner().invoke(cli, ["--db", alpha_store, "label", "alpha", f"big={number}"])
    assert result.exit_code == 2
    one_line_error(result.stderr)
    assert "does not fit in 64 bits" in result.stderr
    history = CliRunner().invoke(cli, ["--db", alpha_store, "history", "alpha", "--format", "json"])
    assert [entry for entry in json.loads(history.stdout) if entry["kind"] == "label"] == []


@pytest.mark.parametrize("number", [str(2**63 - 1), str(-(2**63))])
def test_a_label_integer_at_the_64_bit_limits_is_stored_exactly(alpha_store: str, number: str) -> None:
    result = CliRunner().invoke(
        cli, ["--db", alpha_store, "label", "alpha", f"big={number}"], catch_exceptions=False
    )
    assert result.exit_code == 0
    history = CliRunner().invoke(cli, ["--db", alpha_store, "history", "alpha", "--format", "json"])
    assert [
        entry["new"] for entry in __import__("json").loads(history.stdout) if entry["kind"] == "label"
    ] == [int(number)]


@pytest.mark.parametrize("number", ["1e-400", "-2e-324", "0.1e-330"])
def test_a_label_number_too_small_for_a_double_is_refused_not_stored_as_zero(
    alpha_store: str, number: str
) -> None:
    result = CliRunner().invoke(cli, ["--db", alpha_store, "label", "alpha", f"tiny={number}"])
    assert (result.exit_code, result.stderr) == (
        2,
        f"bflsync: error: label 'tiny': the number {number} is too small for a double and would be "
        f"stored as 0; quote it to keep it as text (tiny='\"{number}\"')\n",
    )


def test_a_label_without_a_value_is_called_a_label_not_a_filter(alpha_store: str) -> None:
    result = CliRunner().invoke(cli, ["--db", alpha_store, "label", "alpha", "k="])
    assert (result.exit_code, result.stderr) == (
        2,
        "bflsync: error: bad label 'k=': missing value after '=' (write \"\" for an empty string)\n",
    )

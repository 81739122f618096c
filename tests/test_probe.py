"""``bflsync probe`` against the mock: as a subprocess against ``bflsync mock-api --gone``, and in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.mock.server import MockBFL

KEY = "probe-key"


def start_mock(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bflsync",
            "mock-api",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            KEY,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.fixture
def retired_mock(tmp_path: Path) -> Iterator[str]:
    """``bflsync mock-api --gone ...`` in a process of its own, as a user rehearses a shutdown."""
    process, base_url = start_mock(
        tmp_path, "--count", "5", "--gone", "my_finetunes,finetune_details,get_result"
    )
    try:
        assert base_url.startswith("http://127.0.0.1:")
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)


def bflsync_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BFL_API_KEY": KEY, "BFLSYNC_DB": str(tmp_path / "never.db")}
    return subprocess.run(
        [sys.executable, "-m", "bflsync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_probe_as_a_process_finds_every_retired_endpoint_and_exits_1(
    tmp_path: Path, retired_mock: str
) -> None:
    result = bflsync_process(tmp_path, "probe", "--base-url", retired_mock, "--id", "any", "--format", "json")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "gone"
    assert [(e["endpoint"], e["answer"], e["status"]) for e in report["endpoints"]] == [
        ("/v1/my_finetunes", "gone", 410),
        ("/v1/finetune_details", "gone", 410),
        ("/v1/get_result", "gone", 410),
    ]
    assert not (tmp_path / "never.db").exists()


def test_sync_as_a_process_against_a_retired_listing_fails_in_one_line(
    tmp_path: Path, retired_mock: str
) -> None:
    result = bflsync_process(tmp_path, "--db", str(tmp_path / "s.db"), "sync", "--base-url", retired_mock)

    host = retired_mock.removeprefix("http://")
    assert result.returncode == 3
    created, error = result.stderr.splitlines()
    assert created.startswith("created a new bflsync store at ")
    # The request id depends on whether the credits request (sent alongside) came first.
    assert error.startswith(
        f"bflsync: error: upstream_gone: cannot list finetunes at {host}, nothing was marked deleted: the "
        "finetune list is gone (410): the endpoint looks retired; GET /v1/my_finetunes -> 410; "
        "detail: This endpoint has been retired; request id: mock-"
    )


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": {"mode": "style"}, "beta": {"mode": "product"}}, api_key=KEY) as server:
        yield server


def probe(*args: str, key: str = KEY) -> Result:
    return CliRunner().invoke(cli, ["probe", *args], env={"BFL_API_KEY": key})


def test_a_healthy_api_exits_0_with_status_latency_and_count(mock: MockBFL) -> None:
    result = probe("--base-url", mock.base_url, "--format", "json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "ok"
    rows = [(e["endpoint"], e["answer"], e["status"], e["listed"]) for e in report["endpoints"]]
    assert rows == [
        ("/v1/my_finetunes", "ok", 200, 2),
        ("/v1/finetune_details", "ok", 200, None),
        ("/v1/get_result", "ok", 200, None),
    ]
    assert all(e["latency_ms"] >= 0 for e in report["endpoints"])
    assert [r.query for r in mock.requests if r.path != "/v1/my_finetunes"] == [
        {"finetune_id": "alpha"},
        {"id": "alpha"},
    ]


def test_text_output_is_a_table_and_diagnostics_go_to_stderr(mock: MockBFL) -> None:
    mock.retire("finetune_details", status=404)

    result = probe("--base-url", mock.base_url)

    host = mock.base_url.removeprefix("http://")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].split() == [
        "source",
        "endpoint",
        "answer",
        "status",
        "latency_ms",
        "listed",
    ]
    assert result.stdout.splitlines()[2].split()[:4] == [host, "/v1/finetune_details", "gone", "404"]
    assert result.stderr.startswith(
        f"bflsync: warning: {host} /v1/finetune_details: finetune 'alpha' not found; "
    )


def test_every_diagnostic_line_carries_the_warning_prefix_every_command_uses(mock: MockBFL) -> None:
    mock.retire("finetune_details", status=404)
    mock.retire("get_result")

    result = probe("--base-url", mock.base_url)

    host = mock.base_url.removeprefix("http://")
    assert result.exit_code == 1
    first, second = result.stderr.splitlines()
    assert first.startswith(f"bflsync: warning: {host} /v1/finetune_details: finetune 'alpha' not found; ")
    assert second.startswith(f"bflsync: warning: {host} /v1/get_result: ")


def test_a_get_result_404_is_a_forgotten_task_not_a_retired_endpoint(mock: MockBFL) -> None:
    mock.retire("get_result", status=404)

    result = probe("--base-url", mock.base_url, "--format", "json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["endpoints"][2]["answer"] == "ok"


def test_a_refused_key_exits_3_and_probes_nothing_else(mock: MockBFL) -> None:
    result = probe("--base-url", mock.base_url, "--format", "json", key="wrong-key")

    assert result.exit_code == 3
    report = json.loads(result.stdout)
    assert report["verdict"] == "unknown"
    assert [(e["answer"], e["status"]) for e in report["endpoints"]] == [
        ("refused", 401),
        ("not_probed", None),
        ("not_probed", None),
    ]


def test_an_unreachable_base_url_exits_3(mock: MockBFL) -> None:
    url = mock.base_url
    mock.close()

    result = probe("--base-url", url, "--format", "json", "--timeout", "2")

    assert result.exit_code == 3
    assert json.loads(result.stdout)["endpoints"][0]["answer"] == "error"


def test_every_base_url_is_probed_in_turn(mock: MockBFL) -> None:
    with MockBFL.serve({"gamma": {}}, api_key=KEY) as other:
        other.retire("my_finetunes")
        result = probe("--base-url", mock.base_url, "--base-url", other.base_url, "--format", "json")

    assert result.exit_code == 1
    sources = [(e["source"], e["answer"]) for e in json.loads(result.stdout)["endpoints"]]
    assert sources == [
        (mock.base_url.removeprefix("http://"), "ok"),
        (mock.base_url.removeprefix("http://"), "ok"),
        (mock.base_url.removeprefix("http://"), "ok"),
        (other.base_url.removeprefix("http://"), "gone"),
        (other.base_url.removeprefix("http://"), "not_probed"),
        (other.base_url.removeprefix("http://"), "not_probed"),
    ]


def test_probe_without_a_key_exits_2() -> None:
    result = CliRunner().invoke(cli, ["probe", "--base-url", "http://127.0.0.1:9"])

    assert result.exit_code == 2
    assert result.stderr == "bflsync: error: no API key: set BFL_API_KEY or pass --api-key-file PATH\n"


def test_the_key_never_appears_in_probe_output(mock: MockBFL) -> None:
    mock.retire("my_finetunes")
    result = probe("--base-url", mock.base_url, key="wrong-but-secret-key-123")

    assert "wrong-but-secret-key-123" not in result.output

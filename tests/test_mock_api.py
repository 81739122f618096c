"""The mock BFL API over a real socket on 127.0.0.1, driven by the project's own client."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bflsync.bfl.client import BflClient, RetryPolicy
from bflsync.cli import cli
from bflsync.config import Secret
from bflsync.errors import (
    ApiTimeoutError,
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    InputError,
    NotFoundError,
    ServerError,
    UpstreamGoneError,
)
from bflsync.mock.server import (
    LISTING,
    AccountSpec,
    MockBFL,
    RequestRecord,
    account_finetunes,
    generate_finetunes,
    load_data_file,
)

KEY = "mock-key"
FINETUNES: dict[str, dict[str, Any]] = {
    "3f1c2d9e-0000-4000-8000-000000000001": {"mode": "character", "iterations": 300, "lora_rank": 16},
    "acme-labs/portrait-lora-7": {"finetune_comment": "Café — 日本 🐶", "learning_rate": 1e-05},
    "sparse": {},
}
FAST_RETRY = RetryPolicy(max_retries=4, backoff_base_s=0.01, backoff_cap_s=0.05)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BFL_API_KEY", "BFL_API_URL", "BFLSYNC_DB", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(FINETUNES) as server:
        yield server


def call(
    server: MockBFL | str,
    action: Callable[[BflClient], Coroutine[Any, Any, Any]],
    *,
    key: str = KEY,
    retry: RetryPolicy = FAST_RETRY,
    **options: Any,
) -> Any:
    async def main() -> Any:
        base_url = server if isinstance(server, str) else server.base_url
        async with BflClient(api_key=Secret(key), base_url=base_url, retry=retry, **options) as client:
            return await action(client)

    return asyncio.run(main())


def raw_get(
    server: MockBFL, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def raw_request(
    server: MockBFL,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def statuses(server: MockBFL, finetune_id: str) -> list[int | None]:
    return [r.status for r in server.requests if r.finetune_id == finetune_id]


# --- the happy path ----------------------------------------------------------------------------


def test_listing_and_details_round_trip(mock: MockBFL) -> None:
    async def fetch_all(client: BflClient) -> tuple[list[str], dict[str, dict[str, Any]]]:
        ids = await client.list_finetunes()
        details = await asyncio.gather(*(client.get_details(i) for i in ids))
        return ids, dict(zip(ids, details, strict=True))

    ids, details = call(mock, fetch_all)
    assert ids == list(FINETUNES)
    assert details == FINETUNES


def test_put_and_remove_change_what_is_served(mock: MockBFL) -> None:
    mock.put("new", {"mode": "style"})
    mock.put("sparse", {"mode": "product"})
    mock.remove("acme-labs/portrait-lora-7")

    async def fetch(client: BflClient) -> tuple[list[str], dict[str, Any]]:
        return await client.list_finetunes(), await client.get_details("sparse")

    ids, sparse = call(mock, fetch)
    assert ids == ["3f1c2d9e-0000-4000-8000-000000000001", "sparse", "new"]
    assert sparse == {"mode": "product"}
    with pytest.raises(NotFoundError):
        call(mock, lambda c: c.get_details("acme-labs/portrait-lora-7"))
    assert mock.finetunes["new"] == {"mode": "style"}


def test_request_log_records_shape_but_never_the_key(mock: MockBFL) -> None:
    call(mock, lambda c: c.get_details("acme-labs/portrait-lora-7"))
    raw_get(mock, "/v1/my_finetunes")
    assert mock.requests == [
        RequestRecord(
            method="GET",
            path="/v1/finetune_details",
            query={"finetune_id": "acme-labs/portrait-lora-7"},
            status=200,
            key_present=True,
        ),
        RequestRecord(method="GET", path="/v1/my_finetunes", query={}, status=403, key_present=False),
    ]
    assert KEY not in repr(mock.requests)
    mock.clear_requests()
    assert mock.requests == []


# --- the API's own errors ----------------------------------------------------------------------


def test_wrong_key_is_401(mock: MockBFL) -> None:
    with pytest.raises(AuthError) as info:
        call(mock, lambda c: c.list_finetunes(), key="wrong-key")
    assert (info.value.status, info.value.detail, info.value.attempts) == (401, "Invalid API key", 1)
    assert info.value.request_id is not None and info.value.request_id.startswith("mock-")


def test_missing_key_is_403() -> None:
    with MockBFL.serve(FINETUNES) as server:
        status, headers, body = raw_get(server, "/v1/my_finetunes")
    assert status == 403
    assert json.loads(body) == {"detail": "Not authenticated"}
    assert headers["content-length"] == str(len(body))


def test_unknown_id_is_404(mock: MockBFL) -> None:
    with pytest.raises(NotFoundError) as info:
        call(mock, lambda c: c.get_details("nope"))
    assert (info.value.status, info.value.detail) == (404, "Finetune not found")
    assert statuses(mock, "nope") == [404]


def test_missing_finetune_id_is_a_fastapi_422(mock: MockBFL) -> None:
    status, headers, body = raw_get(mock, "/v1/finetune_details", {"x-key": KEY})
    assert status == 422
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "detail": [
            {"type": "missing", "loc": ["query", "finetune_id"], "msg": "Field required", "input": None}
        ]
    }


def test_unknown_path_is_404_and_other_methods_405(mock: MockBFL) -> None:
    assert raw_get(mock, "/v1/nothing", {"x-key": KEY})[0] == 404
    status, headers, body = raw_request(mock, "POST", "/v1/my_finetunes", body=b"{}", headers={"x-key": KEY})
    assert (status, headers["allow"], json.loads(body)) == (
        405,
        "GET, HEAD",
        {"detail": "Method Not Allowed"},
    )


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PUT", "PATCH", "DELETE", "PROPFIND", "CONNECT"])
def test_every_method_but_get_and_head_gets_405_json_like_bfls_framework(mock: MockBFL, method: str) -> None:
    status, headers, body = raw_request(mock, method, "/v1/finetune_details?finetune_id=x")
    assert (status, headers["content-type"], headers["allow"]) == (405, "application/json", "GET, HEAD")
    assert json.loads(body) == {"detail": "Method Not Allowed"}
    assert mock.requests[-1].method == method


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/my_finetunes", KEY),
        ("/v1/finetune_details?finetune_id=acme-labs/portrait-lora-7", KEY),
        ("/v1/finetune_details?finetune_id=gone", KEY),
        ("/v1/finetune_details", KEY),
        ("/v1/my_finetunes", None),
    ],
)
def test_head_answers_like_get_without_a_body(mock: MockBFL, path: str, key: str | None) -> None:
    headers = {"x-key": key} if key else {}
    get_status, get_headers, get_body = raw_request(mock, "GET", path, headers=headers)
    head_status, head_headers, head_body = raw_request(mock, "HEAD", path, headers=headers)
    without_id = {name: value for name, value in get_headers.items() if name not in ("x-request-id", "date")}
    assert head_status == get_status
    assert {name: value for name, value in head_headers.items() if name in without_id} == without_id
    assert head_headers["content-length"] == str(len(get_body))
    assert head_body == b""
    assert mock.requests[-1].method == "HEAD"


def test_a_connection_keeps_working_after_a_head(mock: MockBFL) -> None:
    host, port = mock.base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for method in ("HEAD", "GET", "HEAD", "GET"):
            connection.request(method, "/v1/my_finetunes", headers={"x-key": KEY})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200
            assert (body == b"") == (method == "HEAD")
    finally:
        connection.close()


def test_keep_alive_reuses_one_connection(mock: MockBFL) -> None:
    host, port = mock.base_url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    for _ in range(3):
        connection.request("GET", "/v1/my_finetunes", headers={"x-key": KEY})
        response = connection.getresponse()
        assert response.status == 200
        response.read()
    assert connection.sock is not None
    connection.close()


# --- simulated conditions ----------------------------------------------------------------------


def test_latency_is_added_per_request_without_serializing() -> None:
    with MockBFL.serve(FINETUNES, latency_ms=200) as server:
        ids = list(FINETUNES) * 3

        async def fetch(client: BflClient) -> list[dict[str, Any]]:
            return await asyncio.gather(*(client.get_details(i) for i in ids))

        call(server, lambda c: c.get_details("sparse"), concurrency=9)  # warm-up connect
        started = time.perf_counter()
        results = call(server, fetch, concurrency=9)
        elapsed = time.perf_counter() - started
    assert len(results) == 9
    assert 0.2 <= elapsed < 0.2 * 9 / 2


def test_error_rate_produces_5xx_that_retries_absorb() -> None:
    with MockBFL.serve(FINETUNES, error_rate=0.4, seed=3) as server:
        ids = list(FINETUNES) * 10

        async def fetch(client: BflClient) -> list[dict[str, Any]]:
            return await asyncio.gather(*(client.get_details(i) for i in ids))

        results = call(
            server, fetch, retry=RetryPolicy(max_retries=10, backoff_base_s=0.001, backoff_cap_s=0.01)
        )
        seen = {r.status for r in server.requests}
    assert results == [FINETUNES[i] for i in ids]
    assert 200 in seen
    assert seen & {500, 502, 503}
    assert seen <= {200, 500, 502, 503}


def test_error_rate_one_fails_every_answer() -> None:
    with MockBFL.serve(FINETUNES, error_rate=1.0) as server, pytest.raises(ServerError) as info:
        call(server, lambda c: c.list_finetunes(), retry=RetryPolicy(max_retries=0))
    assert info.value.status in (500, 502, 503)


def test_over_max_in_flight_is_429_then_the_client_recovers() -> None:
    with MockBFL.serve(FINETUNES, latency_ms=150, max_in_flight=2) as server:
        ids = [*FINETUNES, "3f1c2d9e-0000-4000-8000-000000000001"]

        async def fetch(client: BflClient) -> list[dict[str, Any]]:
            return await asyncio.gather(*(client.get_details(i) for i in ids))

        results = call(server, fetch, concurrency=4)
        seen = [r.status for r in server.requests]
    assert results == [FINETUNES[i] for i in ids]
    assert seen.count(429) >= 1
    assert seen.count(200) == 4


def test_429_carries_retry_after() -> None:
    with MockBFL.serve(FINETUNES, max_in_flight=1) as server:
        server.hang("sparse", seconds=0.5, times=1)
        path = "/v1/finetune_details?finetune_id=sparse"
        busy = threading.Thread(target=raw_get, args=(server, path, {"x-key": KEY}))
        busy.start()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            status, headers, body = raw_get(server, "/v1/my_finetunes", {"x-key": KEY})
            if status == 429:
                break
            time.sleep(0.02)
        busy.join()
    assert (status, headers["retry-after"]) == (429, "1")
    assert json.loads(body) == {"detail": "Too many active requests"}


# --- scripted faults ---------------------------------------------------------------------------


def test_transient_status_fault_is_retried(mock: MockBFL) -> None:
    mock.fail("sparse", status=500, times=2)
    assert call(mock, lambda c: c.get_details("sparse")) == {}
    assert statuses(mock, "sparse") == [500, 500, 200]


def test_permanent_fault_until_cleared_with_html_body(mock: MockBFL) -> None:
    mock.fail("sparse", status=502, body="<html><title>502 Bad Gateway</title></html>")
    with pytest.raises(ServerError) as info:
        call(mock, lambda c: c.get_details("sparse"), retry=RetryPolicy(max_retries=1, backoff_base_s=0.001))
    assert (info.value.status, info.value.detail, info.value.attempts) == (
        502,
        "non-JSON body: 502 Bad Gateway",
        2,
    )
    mock.clear_faults("sparse")
    assert call(mock, lambda c: c.get_details("sparse")) == {}


def test_fault_headers_and_json_body(mock: MockBFL) -> None:
    mock.fail("sparse", status=429, times=1, headers={"Retry-After": "0"}, body={"detail": "slow down"})
    assert call(mock, lambda c: c.get_details("sparse")) == {}
    assert statuses(mock, "sparse") == [429, 200]


def test_422_string_detail_fault_means_not_found(mock: MockBFL) -> None:
    mock.fail("sparse", status=422, body={"detail": "Finetune not found"})
    with pytest.raises(NotFoundError) as info:
        call(mock, lambda c: c.get_details("sparse"))
    assert (info.value.status, info.value.detail) == (422, "Finetune not found")


def test_faults_only_touch_their_target(mock: MockBFL) -> None:
    mock.fail("sparse", status=500)
    assert (
        call(mock, lambda c: c.get_details("acme-labs/portrait-lora-7"))
        == FINETUNES["acme-labs/portrait-lora-7"]
    )


def test_hang_longer_than_the_timeout_is_a_timeout(mock: MockBFL) -> None:
    mock.hang("sparse", seconds=5)
    started = time.perf_counter()
    with pytest.raises(ApiTimeoutError) as info:
        call(mock, lambda c: c.get_details("sparse"), retry=RetryPolicy(max_retries=0), read_timeout_s=0.3)
    assert info.value.attempts == 1
    mock.close()
    assert time.perf_counter() - started < 2


def test_transient_hang_recovers_on_retry(mock: MockBFL) -> None:
    mock.hang("sparse", seconds=0.6, times=1)
    assert call(mock, lambda c: c.get_details("sparse"), read_timeout_s=0.3) == {}
    # a request enters the log once answered: the hung one answers (to nobody) after the retry
    deadline = time.monotonic() + 3
    while len(statuses(mock, "sparse")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses(mock, "sparse") == [200, 200]


def test_dropped_connection_is_retried_then_reported(mock: MockBFL) -> None:
    mock.drop("sparse", times=1)
    assert call(mock, lambda c: c.get_details("sparse")) == {}
    assert statuses(mock, "sparse") == [None, 200]
    mock.drop("sparse")
    with pytest.raises(ConnectionFailedError):
        call(mock, lambda c: c.get_details("sparse"), retry=RetryPolicy(max_retries=0))


@pytest.mark.parametrize(
    ("script", "error_type", "message"),
    [
        (lambda m: m.bad_json("sparse"), BadResponseError, "not valid JSON"),
        (lambda m: m.non_object("sparse", value=["a"]), BadResponseError, "finetune_details is a list"),
        (lambda m: m.non_object("sparse"), BadResponseError, "finetune_details is a string"),
        (lambda m: m.missing_details("sparse"), NotFoundError, "'sparse' not found"),
    ],
)
def test_body_faults_on_details(
    mock: MockBFL, script: Callable[[MockBFL], None], error_type: type[Exception], message: str
) -> None:
    script(mock)
    with pytest.raises(error_type, match=message):
        call(mock, lambda c: c.get_details("sparse"))
    assert statuses(mock, "sparse") == [200]


@pytest.mark.parametrize(
    "script",
    [
        lambda m: m.bad_json(LISTING),
        lambda m: m.non_object(LISTING),
        lambda m: m.missing_details(LISTING),
    ],
)
def test_body_faults_on_listing(mock: MockBFL, script: Callable[[MockBFL], None]) -> None:
    script(mock)
    with pytest.raises(UpstreamGoneError):
        call(mock, lambda c: c.list_finetunes())


def test_listing_status_fault_then_recovery(mock: MockBFL) -> None:
    mock.fail(LISTING, status=503, times=1)
    assert call(mock, lambda c: c.list_finetunes()) == list(FINETUNES)
    assert [r.status for r in mock.requests] == [503, 200]


def test_faults_queue_in_order(mock: MockBFL) -> None:
    mock.fail("sparse", status=500, times=1)
    mock.drop("sparse", times=1)
    mock.fail("sparse", status=504, times=1)
    assert call(mock, lambda c: c.get_details("sparse")) == {}
    assert statuses(mock, "sparse") == [500, None, 504, 200]


def test_times_must_be_positive(mock: MockBFL) -> None:
    with pytest.raises(ValueError, match="times"):
        mock.fail("sparse", times=0)


# --- construction, data, generated finetunes ---------------------------------------------------


def test_refuses_non_loopback_bind() -> None:
    with pytest.raises(InputError, match="loopback"):
        MockBFL(host="0.0.0.0")  # noqa: S104 - the refusal is the point


def test_generated_finetunes_are_deterministic_and_span_the_parameter_space() -> None:
    first = generate_finetunes(200, seed=1)
    assert first == generate_finetunes(200, seed=1)
    assert first != generate_finetunes(200, seed=2)
    assert len(first) == 200
    values = list(first.values())

    def seen(key: str) -> set[Any]:
        return {d[key] for d in values if key in d}

    assert seen("mode") == {"general", "character", "style", "product"}
    assert seen("finetune_type") == {"lora", "full"}
    assert seen("lora_rank") == {16, 32}
    assert seen("priority") == {"speed", "quality", "high_res_only"}
    assert seen("captioning") == {True, False}
    assert {1e-6, 0.005, None} <= seen("learning_rate")
    assert {100, 300, 1000} <= seen("iterations")
    assert any(isinstance(d.get("iterations"), str) and d["iterations"].isdigit() for d in values)
    assert any("/" in finetune_id for finetune_id in first)
    assert any(len(d) < 6 for d in values)
    assert any(any(ord(ch) > 127 for ch in d.get("finetune_comment", "")) for d in values)
    json.dumps(first)


def test_load_data_file(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(FINETUNES, ensure_ascii=False), encoding="utf-8")
    assert load_data_file(path) == FINETUNES


# --- the mock-api command ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read --data file"),
        ("{not json", "is not valid JSON"),
        ('["a"]', "must hold a JSON object"),
        ('{"a": [1]}', "entry 'a' must map a non-empty id to an object"),
    ],
)
def test_command_rejects_a_bad_data_file(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "data.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(cli, ["mock-api", "--data", str(path)])
    assert result.exit_code == 2
    assert message in result.output


def test_command_refuses_a_non_loopback_host() -> None:
    result = CliRunner().invoke(cli, ["mock-api", "--host", "0.0.0.0"])  # noqa: S104
    assert result.exit_code == 2
    assert "not a loopback address" in result.output


def test_command_help_ends_with_an_example() -> None:
    result = CliRunner().invoke(cli, ["mock-api", "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "mock-key" in result.output
    description = result.output.split("Options:")[0].rstrip().splitlines()
    assert description[-3].strip() == "Example:"
    assert description[-1].strip().endswith("bflsync sync")


def start_command(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bflsync", "--db", str(tmp_path / "x.db"), "mock-api", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_command_serves_until_signalled(tmp_path: Path, stop_signal: signal.Signals) -> None:
    process, base_url = start_command(tmp_path, "--count", "5", "--api-key", "k-123")
    try:
        assert base_url.startswith("http://127.0.0.1:")

        async def fetch() -> tuple[list[str], dict[str, Any]]:
            async with BflClient(api_key=Secret("k-123"), base_url=base_url) as client:
                ids = await client.list_finetunes()
                return ids, await client.get_details(ids[3])

        ids, details = asyncio.run(fetch())
        assert ids == list(generate_finetunes(5, seed=0))
        assert details == generate_finetunes(5, seed=0)[ids[3]]
    finally:
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "serving 5 finetunes" in stderr


@pytest.mark.parametrize(
    ("host", "url_prefix"), [(" 127.0.0.1 ", "http://127.0.0.1:"), ("[::1]", "http://[::1]:")]
)
def test_command_binds_the_host_it_checked(tmp_path: Path, host: str, url_prefix: str) -> None:
    process, base_url = start_command(tmp_path, "--host", host)
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert base_url.startswith(url_prefix), stderr
    assert process.returncode == 0


def test_command_serves_a_data_file(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps(FINETUNES, ensure_ascii=False), encoding="utf-8")
    process, base_url = start_command(tmp_path, "--data", str(path))
    try:
        details = call(base_url, lambda c: c.get_details("acme-labs/portrait-lora-7"))
        assert details == FINETUNES["acme-labs/portrait-lora-7"]
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_module_import_boundaries() -> None:
    code = (
        "import sys, bflsync.mock.server, bflsync.cli.mock_command\n"
        "assert 'httpx' not in sys.modules, 'mock imports httpx'\n"
        "import bflsync.bfl.client\n"
        "assert not {'sqlmodel', 'sqlalchemy'} & set(sys.modules), 'api imports the database side'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- several accounts -----------------------------------------------------------------------------


def test_command_serves_other_keys_their_own_finetunes_and_the_shared_ones(tmp_path: Path) -> None:
    process, base_url = start_command(
        tmp_path, "--count", "6", "--account", "key-b=4:7", "--account", "key-c=3", "--shared", "2"
    )
    try:

        def listing(key: str) -> list[str]:
            async def fetch() -> list[str]:
                async with BflClient(api_key=Secret(key), base_url=base_url) as client:
                    return await client.list_finetunes()

            return asyncio.run(fetch())

        default, b, c = listing("mock-key"), listing("key-b"), listing("key-c")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert default == list(generate_finetunes(6, seed=0))
    assert (len(b), len(c)) == (6, 5)
    assert b[:2] == c[:2] == default[:2]
    assert not set(b[2:]) & set(c[2:]) and not (set(b[2:]) | set(c[2:])) & set(default)
    assert "serving 6 finetunes, 6 to another key, 5 to another key (2 shared by every key)" in stderr


def test_account_finetunes_are_deterministic_and_disjoint_but_for_the_shared_ones() -> None:
    default = generate_finetunes(40, seed=0)
    specs = [AccountSpec("b", 40, 0), AccountSpec("c", 40)]  # b's seed is the default's: ids would collide
    first = account_finetunes(specs, default=default, shared=3)
    assert first == account_finetunes(specs, default=default, shared=3)
    assert [len(first[key]) for key in ("b", "c")] == [43, 43]
    assert set(first["b"]) & set(first["c"]) == set(first["b"]) & set(default) == set(list(default)[:3])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "no-count"], "expected KEY=COUNT or KEY=COUNT:SEED"),
        (["--account", "k=x"], "expected KEY=COUNT or KEY=COUNT:SEED"),
        (["--account", "k=3:x"], "SEED must be an integer"),
        (["--account", " k=3"], "without surrounding spaces"),
        (["--account", "k=1", "--account", "k=2"], "each key may be given once"),
        (["--account", "mock-key=1"], "that is already the --api-key"),
        (["--count", "2", "--account", "k=1", "--shared", "3"], "serves only 2 finetunes"),
        (["--shared", "1"], "give at least one"),
    ],
)
def test_command_rejects_bad_account_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["mock-api", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_added_accounts_are_served_by_key_and_path_prefix_only() -> None:
    with MockBFL.serve({"mine": {"n": 1}}, api_key=KEY) as mock:
        mock.add_account("eu-key", {"eu": {"n": 2}}, prefix="/eu1/")
        mock.add_account("other", {"theirs": {"n": 3}})

        def get(path: str, key: str) -> tuple[int, Any]:
            host, port = mock.base_url.removeprefix("http://").split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=5)
            try:
                connection.request("GET", path, headers={"x-key": key})
                answer = connection.getresponse()
                return answer.status, json.loads(answer.read())
            finally:
                connection.close()

        assert get("/v1/my_finetunes", KEY) == (200, {"finetunes": ["mine"]})
        assert get("/v1/my_finetunes", "other") == (200, {"finetunes": ["theirs"]})
        assert get("/eu1/v1/my_finetunes", "eu-key") == (200, {"finetunes": ["eu"]})
        assert get("/eu1/v1/finetune_details?finetune_id=eu", "eu-key") == (
            200,
            {"finetune_details": {"n": 2}},
        )
        assert get("/eu1/v1/finetune_details?finetune_id=mine", "eu-key")[0] == 404
        assert get("/eu1/v1/my_finetunes", KEY) == (401, {"detail": "Invalid API key"})
        assert get("/v1/my_finetunes", "eu-key") == (401, {"detail": "Invalid API key"})
        assert get("/us1/v1/my_finetunes", KEY)[0] == 404
        mock.put("more", {"n": 4}, key="eu-key", prefix="eu1")
        mock.remove("theirs", key="other")
        assert mock.finetunes_of("eu-key", prefix="/eu1") == {"eu": {"n": 2}, "more": {"n": 4}}
        assert mock.finetunes_of("other") == {}
        assert mock.finetunes == {"mine": {"n": 1}}

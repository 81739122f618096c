"""BflClient against plain-function httpx.MockTransport handlers: no sockets, no real sleeping."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from bflsync import __version__
from bflsync.bfl.client import BflClient, RetryPolicy, load_api_key, resolve_base_url, source_of
from bflsync.config import ApiSettings, Secret
from bflsync.errors import (
    ApiError,
    ApiTimeoutError,
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    CreditsError,
    InputError,
    InvalidRequestError,
    MissingApiKeyError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UpstreamGoneError,
)

KEY = "test-key-123"
BASE = "https://api.test"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BFL_API_KEY", "BFL_API_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


class FakeTime:
    """Wall clock that only moves when the client sleeps, so waits are measured, not endured."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_client(handler: Handler, fake_time: FakeTime, **options: Any) -> BflClient:
    return BflClient(
        api_key=Secret(KEY),
        base_url=BASE,
        transport=httpx.MockTransport(handler),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        rng=random.Random(7),
        **options,
    )


def run(client: BflClient, call: Callable[[BflClient], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        async with client:
            return await call(client)

    return asyncio.run(main())


def details_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"finetune_details": {"mode": "style", "id": request.url.params["finetune_id"]}}
    )


class Script:
    """Answers in order from a list of responses or exceptions, then repeats the last; counts calls."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


# --- request shape -----------------------------------------------------------------------------


def test_details_request_shape_encodes_name_style_ids(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(200, json={"finetune_details": {"mode": "style"}}))
    result = run(make_client(script, fake_time), lambda c: c.get_details("org-id/my-lora"))

    assert result == {"mode": "style"}
    (request,) = script.requests
    assert request.method == "GET"
    assert request.url.raw_path == b"/v1/finetune_details?finetune_id=org-id%2Fmy-lora"
    assert request.url.host == "api.test"
    assert request.headers["x-key"] == KEY
    assert request.headers["user-agent"] == f"bflsync/{__version__}"


def test_listing_request_shape(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(200, json={"finetunes": ["a", "b"]}))
    assert run(make_client(script, fake_time), lambda c: c.list_finetunes()) == ["a", "b"]
    (request,) = script.requests
    assert request.url.raw_path == b"/v1/my_finetunes"
    assert request.headers["x-key"] == KEY


def test_timeouts_default_to_10s_connect_30s_read(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(200, json={"finetunes": []}))
    run(make_client(script, fake_time), lambda c: c.list_finetunes())
    timeout = script.requests[0].extensions["timeout"]
    assert timeout == {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}


def test_read_timeout_option_applies(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(200, json={"finetunes": []}))
    run(make_client(script, fake_time, read_timeout_s=5.0), lambda c: c.list_finetunes())
    assert script.requests[0].extensions["timeout"]["read"] == 5.0


def test_from_settings_carries_every_setting() -> None:
    script = Script(httpx.Response(503), httpx.Response(200, json={"finetunes": ["x"]}))
    settings = ApiSettings(
        api_key=Secret(KEY), base_url="http://127.0.0.1:9", read_timeout_s=3.0, max_retries=0, concurrency=2
    )
    client = BflClient.from_settings(settings, transport=httpx.MockTransport(script))
    with pytest.raises(ServerError) as info:
        run(client, lambda c: c.list_finetunes())
    assert info.value.attempts == 1
    assert client.source == "127.0.0.1:9"
    assert script.requests[0].extensions["timeout"]["read"] == 3.0


# --- status -> error mapping -------------------------------------------------------------------

VALIDATION = {"detail": [{"loc": ["query", "finetune_id"], "msg": "Field required", "type": "missing"}]}
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"


@pytest.mark.parametrize(
    ("response", "error_type", "detail"),
    [
        (httpx.Response(401, json={"detail": "Invalid key"}), AuthError, "Invalid key"),
        (httpx.Response(403, json={"detail": "Not authenticated"}), AuthError, "Not authenticated"),
        (httpx.Response(402, json={"detail": "Insufficient credits"}), CreditsError, "Insufficient credits"),
        (httpx.Response(404, json={"detail": "Not Found"}), NotFoundError, "Not Found"),
        (httpx.Response(422, json={"detail": "Finetune not found"}), NotFoundError, "Finetune not found"),
        (httpx.Response(422, json=VALIDATION), InvalidRequestError, "query.finetune_id: Field required"),
        (httpx.Response(400, json={"detail": "bad"}), InvalidRequestError, "bad"),
        (httpx.Response(409, text="conflict"), ApiError, "non-JSON body (text/plain, 8 bytes)"),
    ],
)
def test_final_statuses_map_to_typed_errors_without_retry(
    fake_time: FakeTime, response: httpx.Response, error_type: type[ApiError], detail: str
) -> None:
    response.headers["x-request-id"] = "req-42"
    script = Script(response)
    with pytest.raises(error_type) as info:
        run(make_client(script, fake_time), lambda c: c.get_details("ft-1"))
    error = info.value
    assert type(error) is error_type
    assert (error.status, error.method, error.path) == (
        response.status_code,
        "GET",
        "/v1/finetune_details?finetune_id=ft-1",
    )
    assert error.detail == detail
    assert error.request_id == "req-42"
    assert error.attempts == 1
    assert len(script.requests) == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    ("response", "error_type", "detail"),
    [
        (httpx.Response(429, json={"detail": "Too many"}), RateLimitedError, "Too many"),
        (httpx.Response(500, json={"detail": "Internal Server Error"}), ServerError, "Internal Server Error"),
        (httpx.Response(502, content=HTML_502, headers={"content-type": "text/html"}), ServerError, None),
        (httpx.Response(503, json={"detail": "down"}), ServerError, "down"),
        (httpx.Response(504, content=b"gateway timeout"), ServerError, None),
    ],
)
def test_retryable_statuses_give_up_after_max_retries(
    fake_time: FakeTime, response: httpx.Response, error_type: type[ApiError], detail: str | None
) -> None:
    response.headers["cf-ray"] = "8a1b2c3d-FRA"
    script = Script(response)
    with pytest.raises(error_type) as info:
        run(make_client(script, fake_time, retry=RetryPolicy(max_retries=2)), lambda c: c.get_details("x"))
    error = info.value
    assert error.status == response.status_code
    assert error.attempts == 3
    assert error.request_id == "8a1b2c3d-FRA"
    assert len(script.requests) == 3
    assert len(fake_time.sleeps) == 2
    if detail is not None:
        assert error.detail == detail
    else:
        assert error.detail is not None and error.detail.startswith("non-JSON body")
    assert f"-> {response.status_code}" in str(error)


def test_html_error_body_is_summarised_by_its_title(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(502, content=HTML_502, headers={"content-type": "text/html"}))
    with pytest.raises(ServerError) as info:
        run(make_client(script, fake_time, retry=RetryPolicy(max_retries=0)), lambda c: c.list_finetunes())
    assert info.value.detail == "non-JSON body: 502 Bad Gateway"


def test_long_validation_details_are_truncated(fake_time: FakeTime) -> None:
    items = [{"loc": ["query", f"field{i}"], "msg": "x" * 40, "type": "t"} for i in range(20)]
    script = Script(httpx.Response(422, json={"detail": items}))
    with pytest.raises(InvalidRequestError) as info:
        run(make_client(script, fake_time), lambda c: c.get_details("x"))
    assert info.value.detail is not None
    assert len(info.value.detail) == 300
    assert info.value.detail.startswith("query.field0: xxxx")


# --- retries that recover ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(429),
        httpx.Response(500),
        httpx.Response(502, content=HTML_502),
        httpx.Response(503),
        httpx.Response(504),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
    ],
    ids=["429", "500", "502", "503", "504", "connect", "read-timeout", "dropped", "reset"],
)
def test_transient_failures_are_retried_until_success(
    fake_time: FakeTime, failure: httpx.Response | Exception
) -> None:
    script = Script(failure, failure, httpx.Response(200, json={"finetune_details": {"mode": "general"}}))
    result = run(make_client(script, fake_time), lambda c: c.get_details("x"))
    assert result == {"mode": "general"}
    assert len(script.requests) == 3
    assert len(fake_time.sleeps) == 2
    # full jitter: each wait is within [0, base * 2**(retry-1)]
    assert 0 <= fake_time.sleeps[0] <= 0.5
    assert 0 <= fake_time.sleeps[1] <= 1.0


@pytest.mark.parametrize(
    ("failure", "error_type"),
    [
        (httpx.ConnectError("connection refused"), ConnectionFailedError),
        (httpx.ConnectTimeout("timed out"), ApiTimeoutError),
        (httpx.ReadTimeout("timed out"), ApiTimeoutError),
        (httpx.RemoteProtocolError("Server disconnected"), ConnectionFailedError),
    ],
)
def test_transport_failures_map_to_transport_errors_after_retries(
    fake_time: FakeTime, failure: Exception, error_type: type[ApiError]
) -> None:
    script = Script(failure)
    with pytest.raises(error_type) as info:
        run(make_client(script, fake_time), lambda c: c.get_details("x"))
    assert type(info.value) is error_type
    assert info.value.attempts == 5
    assert info.value.status is None
    assert info.value.path == "/v1/finetune_details?finetune_id=x"
    assert "api.test" in str(info.value)
    assert len(script.requests) == 5


def test_protocol_errors_on_our_side_are_not_retried(fake_time: FakeTime) -> None:
    script = Script(httpx.UnsupportedProtocol("no"))
    with pytest.raises(ConnectionFailedError):
        run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert len(script.requests) == 1


def test_backoff_is_exponential_full_jitter_and_capped(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(500))
    policy = RetryPolicy(max_retries=8, backoff_base_s=0.5, backoff_cap_s=3.0, max_total_sleep_s=1000)
    with pytest.raises(ServerError) as info:
        run(make_client(script, fake_time, retry=policy), lambda c: c.list_finetunes())
    assert info.value.attempts == 9
    bounds = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert len(fake_time.sleeps) == len(bounds)
    assert all(0 <= slept <= bound for slept, bound in zip(fake_time.sleeps, bounds, strict=True))
    # jitter, not a constant: the waits differ
    assert len(set(fake_time.sleeps)) == len(bounds)


def test_default_policy_bounds_total_wait(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(503))
    with pytest.raises(ServerError) as info:
        run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert info.value.attempts == 5
    assert sum(fake_time.sleeps) <= 0.5 + 1 + 2 + 4


# --- Retry-After -------------------------------------------------------------------------------


def test_retry_after_seconds_is_honoured(fake_time: FakeTime) -> None:
    script = Script(
        httpx.Response(503, headers={"retry-after": "7"}),
        httpx.Response(200, json={"finetunes": ["a"]}),
    )
    assert run(make_client(script, fake_time), lambda c: c.list_finetunes()) == ["a"]
    assert fake_time.sleeps == [7.0]


def test_retry_after_http_date_is_honoured(fake_time: FakeTime) -> None:
    when = email.utils.formatdate(fake_time.now + 12, usegmt=True)
    script = Script(
        httpx.Response(429, headers={"retry-after": when}),
        httpx.Response(200, json={"finetunes": []}),
    )
    run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert fake_time.sleeps == [12.0]


def test_retry_after_in_the_past_retries_at_once(fake_time: FakeTime) -> None:
    when = email.utils.formatdate(fake_time.now - 100, usegmt=True)
    script = Script(
        httpx.Response(503, headers={"retry-after": when}), httpx.Response(200, json={"finetunes": []})
    )
    run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert fake_time.sleeps == [0.0]
    assert len(script.requests) == 2


def test_retry_after_is_capped_at_60s(fake_time: FakeTime) -> None:
    script = Script(
        httpx.Response(429, headers={"retry-after": "3600"}), httpx.Response(200, json={"finetunes": []})
    )
    run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert fake_time.sleeps == [60.0]


@pytest.mark.parametrize("garbage", [b"soon", b"\xb2"])  # b"\xb2" reads as "²", a digit to str.isdigit
def test_garbage_retry_after_falls_back_to_backoff(fake_time: FakeTime, garbage: bytes) -> None:
    script = Script(
        httpx.Response(503, headers=[(b"retry-after", garbage)]), httpx.Response(200, json={"finetunes": []})
    )
    run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert len(fake_time.sleeps) == 1
    assert 0 <= fake_time.sleeps[0] <= 0.5


def test_total_sleep_per_request_is_bounded(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(503, headers={"retry-after": "60"}))
    policy = RetryPolicy(max_retries=10, max_total_sleep_s=150)
    with pytest.raises(ServerError) as info:
        run(make_client(script, fake_time, retry=policy), lambda c: c.list_finetunes())
    assert fake_time.sleeps == [60.0, 60.0]
    assert info.value.attempts == 3


# --- the shared 429 pause ----------------------------------------------------------------------


def test_a_429_pauses_every_request_of_the_client(fake_time: FakeTime) -> None:
    seen_at: dict[str, float] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        finetune_id = request.url.params["finetune_id"]
        if finetune_id == "busy":
            return httpx.Response(429, headers={"retry-after": "5"})
        seen_at[finetune_id] = fake_time.now
        return details_ok(request)

    start = fake_time.now
    client = make_client(handler, fake_time, retry=RetryPolicy(max_retries=0), concurrency=4)

    async def scenario(c: BflClient) -> list[dict[str, Any]]:
        with pytest.raises(RateLimitedError):
            await c.get_details("busy")
        return await asyncio.gather(*(c.get_details(name) for name in ("a", "b", "c")))

    results = run(client, scenario)
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert seen_at == {"a": start + 5, "b": start + 5, "c": start + 5}


def test_requests_in_flight_during_a_429_wait_for_the_pause(fake_time: FakeTime) -> None:
    calls: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        finetune_id = request.url.params["finetune_id"]
        calls.append((finetune_id, fake_time.now))
        if finetune_id == "a" and len([c for c in calls if c[0] == "a"]) == 1:
            return httpx.Response(429, headers={"retry-after": "4"})
        return details_ok(request)

    start = fake_time.now
    client = make_client(handler, fake_time, concurrency=1)

    async def scenario(c: BflClient) -> list[dict[str, Any]]:
        return await asyncio.gather(c.get_details("a"), c.get_details("b"))

    run(client, scenario)
    # with one slot, "b" is sent after a's 429 and must not go out before the pause ends
    assert calls[0] == ("a", start)
    assert all(at >= start + 4 for name, at in calls[1:])
    assert sorted(name for name, _ in calls) == ["a", "a", "b"]


# --- bodies ------------------------------------------------------------------------------------


def test_details_are_returned_exactly_as_parsed(fake_time: FakeTime) -> None:
    details = {
        "finetune_comment": "Café — 日本 🐶",
        "learning_rate": 1e-05,
        "iterations": "300",
        "lora_rank": 16,
        "captioning": False,
        "nested": {"new_key": [1, 2.5, None]},
        "timestamp": "2024-10-02T13:14:15.123456",
    }
    body = json.dumps({"finetune_details": details}, ensure_ascii=False).encode()
    script = Script(httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    assert run(make_client(script, fake_time), lambda c: c.get_details("x")) == details


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"finetune_details": {"mode": ', "not valid JSON"),
        (b"<html>ok</html>", "not valid JSON"),
        (b'{"finetune_details": {"learning_rate": NaN}}', "not JSON bflsync can store (NaN is not JSON)"),
        (
            b'{"finetune_details": {"learning_rate": 1e400}}',
            "not JSON bflsync can store (1e400 does not fit a double)",
        ),
        (b'{"finetune_details": {"learning_rate": 1e-400}}', "(1e-400 is too small for a double)"),
        (b'{"finetune_details": {"learning_rate": -2e-324}}', "(-2e-324 is too small for a double)"),
        (b'{"finetune_details": {"mode": "st\xffyle"}}', "the response body is not UTF-8"),
        (b'{"finetune_details": {"comment": "cut mid-emoji \\ud83d"}}', "not valid Unicode"),
        (b'[{"finetune_details": {}}]', "expected a JSON object, got a list"),
        (b'{"finetune_details": ["a"]}', "finetune_details is a list, not an object"),
        (b'{"finetune_details": "text"}', "finetune_details is a string, not an object"),
        (b'{"finetune_details": 3}', "finetune_details is a number, not an object"),
    ],
)
def test_malformed_details_bodies_are_bad_responses_without_retry(
    fake_time: FakeTime, body: bytes, message: str
) -> None:
    script = Script(httpx.Response(200, content=body, headers={"x-request-id": "r1"}))
    with pytest.raises(BadResponseError) as info:
        run(make_client(script, fake_time), lambda c: c.get_details("x"))
    assert message in str(info.value)
    assert (info.value.status, info.value.request_id, info.value.attempts) == (200, "r1", 1)
    assert len(script.requests) == 1


def test_a_zero_written_with_an_exponent_is_zero_not_an_underflow(fake_time: FakeTime) -> None:
    body = b'{"finetune_details": {"learning_rate": 0.000e-999, "tiny": 5e-324}}'
    script = Script(httpx.Response(200, content=body))
    assert run(make_client(script, fake_time), lambda c: c.get_details("x")) == {
        "learning_rate": 0.0,
        "tiny": 5e-324,
    }


@pytest.mark.parametrize("body", [{}, {"finetune_details": None}, {"other": 1}])
def test_200_without_finetune_details_is_not_found(fake_time: FakeTime, body: dict[str, Any]) -> None:
    script = Script(httpx.Response(200, json=body))
    with pytest.raises(NotFoundError) as info:
        run(make_client(script, fake_time), lambda c: c.get_details("gone"))
    assert info.value.status == 200
    assert "'gone' not found" in str(info.value)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["a", "org-id/my-lora"], ["a", "org-id/my-lora"]),
        ([{"finetune_id": "a"}, {"id": "b"}, "c"], ["a", "b", "c"]),
        ([{"finetune_id": "a", "id": "ignored"}], ["a"]),
        (["a", "b", "a"], ["a", "b"]),
        ([], []),
    ],
)
def test_listing_accepts_strings_and_objects(
    fake_time: FakeTime, items: list[Any], expected: list[str]
) -> None:
    script = Script(httpx.Response(200, json={"finetunes": items}))
    assert run(make_client(script, fake_time), lambda c: c.list_finetunes()) == expected


@pytest.mark.parametrize("body", [{}, {"finetunes": "a"}, {"finetunes": {"a": 1}}, ["a", "b"]])
def test_a_listing_that_is_no_listing_looks_like_a_retired_endpoint(fake_time: FakeTime, body: Any) -> None:
    script = Script(httpx.Response(200, json=body))
    with pytest.raises(UpstreamGoneError) as info:
        run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert info.value.path == "/v1/my_finetunes"
    assert info.value.kind == "upstream_gone"
    assert len(script.requests) == 1


@pytest.mark.parametrize("status", [404, 410])
def test_a_listing_answered_404_or_410_looks_like_a_retired_endpoint(
    fake_time: FakeTime, status: int
) -> None:
    script = Script(httpx.Response(status, json={"detail": "Not Found"}))
    with pytest.raises(UpstreamGoneError, match=f"the finetune list is gone \\({status}\\)"):
        run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert len(script.requests) == 1


def test_details_answered_410_are_upstream_gone_and_404_not_found(fake_time: FakeTime) -> None:
    gone = Script(httpx.Response(410, json={"detail": "Gone"}))
    with pytest.raises(UpstreamGoneError):
        run(make_client(gone, fake_time), lambda c: c.get_details("a"))
    with pytest.raises(NotFoundError):
        run(
            make_client(Script(httpx.Response(404, json={"detail": "x"})), fake_time),
            lambda c: c.get_details("a"),
        )


@pytest.mark.parametrize(
    "body",
    [
        {"finetunes": [1]},
        {"finetunes": [None]},
        {"finetunes": [""]},
        {"finetunes": [{"name": "a"}]},
        {"finetunes": [["a"]]},
    ],
)
def test_bad_listing_items_are_bad_responses(fake_time: FakeTime, body: Any) -> None:
    script = Script(httpx.Response(200, json=body))
    with pytest.raises(BadResponseError) as info:
        run(make_client(script, fake_time), lambda c: c.list_finetunes())
    assert info.value.path == "/v1/my_finetunes"
    assert len(script.requests) == 1


# --- logging -----------------------------------------------------------------------------------


def test_each_attempt_is_logged_at_info(fake_time: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    script = Script(httpx.Response(502), httpx.Response(200, json={"finetune_details": {}}))
    with caplog.at_level(logging.INFO, logger="bflsync.bfl.client"):
        run(make_client(script, fake_time), lambda c: c.get_details("org/x"))
    messages = [r.getMessage() for r in caplog.records if r.name == "bflsync.bfl.client"]
    attempts = [m for m in messages if " -> " in m]
    assert len(attempts) == 2
    assert "GET /v1/finetune_details?finetune_id=org%2Fx: retry 1 of 4 in 0." in messages[1]
    assert attempts[0].startswith("GET /v1/finetune_details?finetune_id=org%2Fx -> 502 (attempt 1, ")
    assert attempts[1].startswith("GET /v1/finetune_details?finetune_id=org%2Fx -> 200 (attempt 2, ")
    assert attempts[1].endswith(" ms)")


# --- base URL, source, key ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "base_url", "expected"),
    [
        (None, None, "https://api.us1.bfl.ai"),
        ("us1", None, "https://api.us1.bfl.ai"),
        ("EU1", None, "https://api.eu1.bfl.ai"),
        ("eu1", "https://proxy.example.com/bfl/", "https://proxy.example.com/bfl"),
        (None, "http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        (None, "http://127.5.6.7:80/", "http://127.5.6.7:80"),
        (None, "http://localhost:9000", "http://localhost:9000"),
        (None, "http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_resolve_base_url(region: str | None, base_url: str | None, expected: str) -> None:
    assert resolve_base_url(region=region, base_url=base_url) == expected


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://api.us1.bfl.ai", "clear text"),
        ("http://10.0.0.5:8123", "clear text"),
        ("http://localhost.evil.com", "clear text"),
        ("ftp://api.us1.bfl.ai", "invalid base URL"),
        ("api.us1.bfl.ai", "invalid base URL"),
        ("https://user:pw@api.us1.bfl.ai", "credentials"),
        ("https://api.us1.bfl.ai:notaport", "invalid port"),
        ("https://exa mple.com", "invalid host"),
        ("https://xn--/us1", "invalid host"),
        ("https://a..b/us1", "invalid host"),
        ("https://api.us1.bfl.ai/?x=1", "no query"),
    ],
)
def test_unsafe_or_broken_base_urls_are_refused(base_url: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve_base_url(region=None, base_url=base_url)


def test_unknown_region_is_refused() -> None:
    with pytest.raises(InputError, match="unknown region 'ap1': expected one of eu1, us1"):
        resolve_base_url(region="ap1", base_url=None)


def test_client_refuses_plain_http_off_loopback() -> None:
    with pytest.raises(InputError, match="clear text"):
        BflClient(api_key=Secret(KEY), base_url="http://api.us1.bfl.ai")


@pytest.mark.parametrize(
    ("base_url", "source"),
    [
        ("https://api.us1.bfl.ai", "api.us1.bfl.ai"),
        ("https://API.eu1.bfl.ai:443/", "api.eu1.bfl.ai"),
        ("https://api.us1.bfl.ai:8443", "api.us1.bfl.ai:8443"),
        ("http://127.0.0.1:8123", "127.0.0.1:8123"),
        ("http://localhost", "localhost"),
        ("http://[::1]:8123/prefix", "[::1]:8123/prefix"),
        ("https://gw.example.com/us1", "gw.example.com/us1"),
        ("https://GW.example.com:443/eu1/", "gw.example.com/eu1"),
        ("https://gw.example.com/bfl/us1//", "gw.example.com/bfl/us1"),
        ("https://gw.example.com/", "gw.example.com"),
        ("https://api.us1.bfl.ai./", "api.us1.bfl.ai"),
        ("https://gw.example.com./us1", "gw.example.com/us1"),
        ("https://bücher.example/us1", "xn--bcher-kva.example/us1"),
        ("https://XN--BCHER-KVA.example/us1", "xn--bcher-kva.example/us1"),
        ("https://gw.example.com/%75s%31", "gw.example.com/us1"),
        ("https://gw.example.com/a%2fb", "gw.example.com/a%2Fb"),
    ],
)
def test_source_of(base_url: str, source: str) -> None:
    assert source_of(base_url) == source


def test_key_from_env_value() -> None:
    assert load_api_key(env_value="  abc-123\n", key_file=None) == Secret("abc-123")


def test_key_file_is_read_stripped_and_wins_over_env(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert load_api_key(env_value="from-env", key_file=key_file) == Secret("from-file")


@pytest.mark.parametrize("env_value", [None, "", "   "])
def test_missing_key_names_the_env_var(env_value: str | None) -> None:
    with pytest.raises(MissingApiKeyError, match="BFL_API_KEY") as info:
        load_api_key(env_value=env_value, key_file=None)
    assert info.value.exit_code == 2


def test_empty_key_file_is_a_missing_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    with pytest.raises(MissingApiKeyError, match="BFL_API_KEY"):
        load_api_key(env_value=None, key_file=key_file)


def test_unreadable_key_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read API key file"):
        load_api_key(env_value=None, key_file=tmp_path / "absent")


@pytest.mark.parametrize("bad", ["two words", "tab\there", "caf\u00e9-key", "nul\x00"])
def test_keys_unfit_for_a_header_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(InputError) as info:
        load_api_key(env_value=bad, key_file=None)
    assert bad.strip() not in str(info.value)
    assert "BFL_API_KEY" in str(info.value)


def test_client_repr_hides_the_key() -> None:
    client = BflClient(api_key=Secret(KEY), base_url=BASE)
    assert KEY not in repr(client)
    asyncio.run(client.aclose())


def test_a_key_echoed_across_the_truncation_point_leaves_no_prefix(fake_time: FakeTime) -> None:
    detail = "x" * 290 + KEY + " rejected"  # the 300-character cut falls inside the key
    script = Script(httpx.Response(401, json={"detail": detail}))
    with pytest.raises(AuthError) as info:
        run(make_client(script, fake_time), lambda c: c.get_details("x"))
    assert KEY[:9] not in str(info.value)
    assert info.value.detail == "x" * 290 + "*** rejec…"


def test_a_body_that_cannot_be_decoded_is_a_bad_response_without_retry(fake_time: FakeTime) -> None:
    body = httpx.ByteStream(b"not gzip")
    script = Script(httpx.Response(200, stream=body, headers={"content-encoding": "gzip"}))
    with pytest.raises(BadResponseError, match="cannot decode the answer") as info:
        run(make_client(script, fake_time), lambda c: c.get_details("x"))
    assert (info.value.attempts, len(script.requests)) == (1, 1)


def test_json_nested_too_deeply_is_a_bad_response(fake_time: FakeTime) -> None:
    body = b'{"finetune_details": {"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}"
    script = Script(httpx.Response(200, content=body))
    with pytest.raises(BadResponseError, match=r"the response body is JSON nested too deeply to read"):
        run(make_client(script, fake_time), lambda c: c.get_details("x"))


def test_a_request_id_header_echoing_the_key_is_scrubbed(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(404, json={"detail": "Not found"}, headers={"x-request-id": f"req-{KEY}"}))
    with pytest.raises(NotFoundError) as info:
        run(make_client(script, fake_time), lambda c: c.get_details("x"))
    assert info.value.request_id == "req-***"
    assert KEY not in str(info.value)


def test_a_key_echoed_inside_a_json_detail_is_scrubbed_in_its_escaped_form(fake_time: FakeTime) -> None:
    key = 'k"ey\\with-quotes'
    script = Script(httpx.Response(401, json={"detail": {"received": key}}))
    client = BflClient(
        api_key=Secret(key), base_url=BASE, transport=httpx.MockTransport(script), sleep=fake_time.sleep
    )
    with pytest.raises(AuthError) as info:
        run(client, lambda c: c.get_details("x"))
    assert info.value.detail == '{"received": "***"}'


# --- get_result and credits --------------------------------------------------------------------


def test_get_result_request_shape_and_answer(fake_time: FakeTime) -> None:
    body = {"id": "org/lora", "status": "Pending", "result": None, "progress": 0.4, "details": {}}
    script = Script(httpx.Response(200, json=body))
    assert run(make_client(script, fake_time), lambda c: c.get_result("org/lora")) == body
    (request,) = script.requests
    assert request.url.raw_path == b"/v1/get_result?id=org%2Flora"
    assert request.headers["x-key"] == KEY


def test_get_result_task_not_found_is_an_answer(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(200, json={"id": "x", "status": "Task not found"}))
    assert run(make_client(script, fake_time), lambda c: c.get_result("x")) == {
        "id": "x",
        "status": "Task not found",
    }


def test_get_result_404_is_task_not_found_without_retry(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(404, json={"detail": "Not Found"}))
    assert run(make_client(script, fake_time), lambda c: c.get_result("x")) == {
        "id": "x",
        "status": "Task not found",
    }
    assert len(script.requests) == 1


def test_get_result_failures_are_errors(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(503))
    with pytest.raises(ServerError):
        run(make_client(script, fake_time, retry=RetryPolicy(max_retries=1)), lambda c: c.get_result("x"))
    assert len(script.requests) == 2
    with pytest.raises(BadResponseError):
        run(make_client(Script(httpx.Response(200, json=[1])), fake_time), lambda c: c.get_result("x"))


@pytest.mark.parametrize("credits", [12.5, 0, 300])
def test_credits_returns_the_number(fake_time: FakeTime, credits: float) -> None:
    script = Script(httpx.Response(200, json={"credits": credits}))
    assert run(make_client(script, fake_time), lambda c: c.credits()) == credits
    (request,) = script.requests
    assert request.url.raw_path == b"/v1/credits"


@pytest.mark.parametrize("body", [{}, {"credits": "12"}, {"credits": None}, {"credits": True}])
def test_credits_without_a_number_is_a_bad_response(fake_time: FakeTime, body: dict[str, Any]) -> None:
    with pytest.raises(BadResponseError, match="credits"):
        run(make_client(Script(httpx.Response(200, json=body)), fake_time), lambda c: c.credits())

"""A unique canary key goes through every success and failure path; it must surface nowhere.

Runs over a real socket so httpx's and httpcore's own DEBUG logging is exercised too.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from bflsync.bfl.client import BflClient, RetryPolicy, load_api_key
from bflsync.config import Secret
from bflsync.errors import ApiError, BflsyncError
from bflsync.mock.server import LISTING, MockBFL

CANARY = f"canary-{uuid.uuid4().hex}"
FINETUNES = {"ft-1": {"mode": "style"}, "org/ft-2": {"mode": "product"}}
QUICK = RetryPolicy(max_retries=1, backoff_base_s=0.001, backoff_cap_s=0.002)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BFL_API_KEY", "BFL_API_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def debug_everything(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in (None, "httpx", "httpcore", "bflsync", "bflsync.bfl.client", "bflsync.mock.server"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


Action = Callable[[BflClient], Coroutine[Any, Any, Any]]


def scenarios(mock: MockBFL) -> list[tuple[str, Callable[[], None], Action, dict[str, Any]]]:
    """(name, fault script, client call, client options): each a distinct path through the client."""

    def nothing() -> None:
        pass

    def details(finetune_id: str) -> Action:
        return lambda c: c.get_details(finetune_id)

    def listing(c: BflClient) -> Coroutine[Any, Any, Any]:
        return c.list_finetunes()

    return [
        ("listing ok", nothing, listing, {}),
        ("details ok", nothing, details("org/ft-2"), {}),
        ("404", nothing, details("absent"), {}),
        (
            "422 string",
            lambda: mock.fail("ft-1", status=422, body={"detail": "Finetune not found"}),
            details("ft-1"),
            {},
        ),
        (
            "422 list",
            lambda: mock.fail("ft-1", status=422, body={"detail": [{"loc": ["q"], "msg": "m"}]}),
            details("ft-1"),
            {},
        ),
        ("400", lambda: mock.fail("ft-1", status=400), details("ft-1"), {}),
        ("402", lambda: mock.fail("ft-1", status=402), details("ft-1"), {}),
        ("403", lambda: mock.fail("ft-1", status=403), details("ft-1"), {}),
        ("429", lambda: mock.fail("ft-1", status=429, headers={"retry-after": "0"}), details("ft-1"), {}),
        ("500 json", lambda: mock.fail("ft-1", status=500), details("ft-1"), {}),
        (
            "502 html",
            lambda: mock.fail("ft-1", status=502, body="<html><title>502</title></html>"),
            details("ft-1"),
            {},
        ),
        (
            "echoed key",
            lambda: mock.fail("ft-1", status=500, body={"detail": f"bad key {CANARY}"}),
            details("ft-1"),
            {},
        ),
        (
            "echoed key html",
            lambda: mock.fail("ft-1", status=503, body=f"<title>{CANARY}</title>"),
            details("ft-1"),
            {},
        ),
        ("bad json", lambda: mock.bad_json("ft-1"), details("ft-1"), {}),
        ("non object", lambda: mock.non_object("ft-1"), details("ft-1"), {}),
        ("missing details", lambda: mock.missing_details("ft-1"), details("ft-1"), {}),
        ("bad listing", lambda: mock.non_object(LISTING), listing, {}),
        ("dropped", lambda: mock.drop("ft-1"), details("ft-1"), {}),
        ("timeout", lambda: mock.hang("ft-1", seconds=2), details("ft-1"), {"read_timeout_s": 0.2}),
        ("wrong key", lambda: setattr(mock, "api_key", "another-key"), details("ft-1"), {}),
    ]


def test_canary_key_never_surfaces(
    debug_everything: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    errors: list[BaseException] = []
    outcomes: dict[str, str] = {}
    with MockBFL.serve(FINETUNES, api_key=CANARY) as mock:
        for name, script, action, options in scenarios(mock):
            mock.clear_faults()
            mock.api_key = CANARY
            script()

            async def run(action: Action = action, options: dict[str, Any] = options) -> Any:
                async with BflClient(
                    api_key=Secret(CANARY), base_url=mock.base_url, retry=QUICK, **options
                ) as client:
                    assert CANARY not in repr(client)
                    return await action(client)

            try:
                asyncio.run(run())
                outcomes[name] = "ok"
            except ApiError as exc:
                errors.append(exc)
                outcomes[name] = type(exc).__name__
        # the key reached the server on every request, so the scenarios really carried it
        assert all(r.key_present for r in mock.requests)

    async def unreachable() -> None:
        async with BflClient(
            api_key=Secret(CANARY), base_url=f"http://127.0.0.1:{free_port()}", retry=QUICK
        ) as c:
            await c.list_finetunes()

    with pytest.raises(ApiError) as info:
        asyncio.run(unreachable())
    errors.append(info.value)

    for bad in (f"{CANARY} tail", f"{CANARY}\u00e9"):
        with pytest.raises(BflsyncError) as key_error:
            load_api_key(env_value=bad, key_file=None)
        errors.append(key_error.value)

    assert outcomes == {
        "listing ok": "ok",
        "details ok": "ok",
        "404": "NotFoundError",
        "422 string": "NotFoundError",
        "422 list": "InvalidRequestError",
        "400": "InvalidRequestError",
        "402": "CreditsError",
        "403": "AuthError",
        "429": "RateLimitedError",
        "500 json": "ServerError",
        "502 html": "ServerError",
        "echoed key": "ServerError",
        "echoed key html": "ServerError",
        "bad json": "BadResponseError",
        "non object": "BadResponseError",
        "missing details": "NotFoundError",
        "bad listing": "UpstreamGoneError",
        "dropped": "ConnectionFailedError",
        "timeout": "ApiTimeoutError",
        "wrong key": "AuthError",
    }
    texts = [debug_everything.text]
    for record in debug_everything.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        texts.append(repr(record.__dict__))
    for error in errors:
        texts.extend([str(error), repr(error), repr(vars(error)), "".join(traceback.format_exception(error))])
    captured = capsys.readouterr()
    texts.extend([captured.out, captured.err])

    # the capture really saw the libraries' DEBUG output
    assert any(r.name.startswith("httpcore") and r.levelno == logging.DEBUG for r in debug_everything.records)
    assert any(r.name == "bflsync.bfl.client" for r in debug_everything.records)
    leaks = [text for text in texts if CANARY in text]
    assert leaks == []

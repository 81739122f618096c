"""A BFL-compatible finetune API on loopback, for the demo, end-to-end tests and trying bflsync keyless.

It answers like the real endpoints (x-key auth with 401/403, 404 and FastAPI-style 422, 429 above an
in-flight cap, 5xx with JSON or HTML bodies, 405 JSON for any method but GET and HEAD) and lets tests script per-id faults between syncs.
Besides the listing and the details it serves ``get_result`` (each finetune's training status, which
moves from ``Pending`` through rising progress to ``Ready`` poll by poll, or ends in ``Error`` or a
moderated status, and is forgotten ``forget_after_s`` after it became Ready) and ``credits`` (a
balance that falls by a training's cost whenever a finetune is created). It is
a server, so it does not import httpx; ``http.server`` with TCP_NODELAY and keep-alive is fast enough
that a sync benchmark measures the client, not the mock.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import json
import logging
import random
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias
from urllib.parse import parse_qsl, urlsplit

from bflsync.bfl.endpoints import CREDITS_PATH, DETAILS_PATH, LIST_PATH, RESULT_PATH, TASK_NOT_FOUND
from bflsync.bfl.net import is_loopback_host
from bflsync.errors import InputError

logger = logging.getLogger("bflsync.mock.server")

DEFAULT_MOCK_API_KEY: Final = "mock-key"
DEFAULT_MAX_IN_FLIGHT: Final = 24  # BFL's documented cap on concurrent requests
DEFAULT_CREDITS: Final = 10_000.0
_REQUEST_LOG_MAX: Final = 100_000  # a long-running demo server must not grow without bound
_RATE_LIMIT_RETRY_AFTER_S: Final = "1"
# What ``retire`` accepts: the endpoints a shutdown can take away, by the name in their path.
RETIRABLE: Final = {
    "my_finetunes": LIST_PATH,
    "finetune_details": DETAILS_PATH,
    "get_result": RESULT_PATH,
    "credits": CREDITS_PATH,
}
GONE_STATUS: Final = 410
GONE_DETAIL: Final = "This endpoint has been retired"
# Every endpoint is GET (HEAD answered as GET without a body); any other method gets 405 JSON.
ALLOWED_METHODS: Final = "GET, HEAD"

_HTML_502: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)
_HTML_503: Final = (
    b"<!DOCTYPE html><html><head><title>503 Service Temporarily Unavailable</title></head>"
    b"<body><h1>Service Temporarily Unavailable</h1></body></html>"
)


class Endpoint(enum.Enum):
    """Fault targets that are not finetune ids (ids are plain strings and could be anything)."""

    LISTING = "listing"
    CREDITS = "credits"


LISTING: Final = Endpoint.LISTING
CREDITS: Final = Endpoint.CREDITS


@dataclass(frozen=True)
class StatusOf:
    """Fault target: the ``get_result`` answers for one finetune, apart from the faults of its details."""

    finetune_id: str


def status_of(finetune_id: str) -> StatusOf:
    """The fault target for ``get_result?id=finetune_id``."""
    return StatusOf(finetune_id)


FaultTarget: TypeAlias = str | Endpoint | StatusOf
StatusStep: TypeAlias = tuple[str, float | None]
"""One answer of ``get_result``: the status string and the progress (None: the API sends null)."""


@dataclass(frozen=True)
class RequestRecord:
    """One request as the mock saw it; whether x-key was sent, never its value."""

    method: str
    path: str
    query: dict[str, str]
    status: int | None  # None: the connection was dropped without an answer
    key_present: bool

    @property
    def finetune_id(self) -> str | None:
        return self.query.get("finetune_id")

    @property
    def task_id(self) -> str | None:
        """The ``id`` a ``get_result`` request asked about (BFL's finetune id doubles as the task id)."""
        return self.query.get("id") if self.path == RESULT_PATH else None


@dataclass
class _Fault:
    kind: Literal["status", "hang", "drop", "bad_json", "non_object", "missing_details"]
    remaining: int | None  # None: until cleared
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    value: Any = None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def _json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload, ensure_ascii=False).encode(), headers=headers or {})


@dataclass
class _Lifecycle:
    """A finetune's scripted status answers: one step per poll, the last one repeated."""

    steps: list[StatusStep]
    polls: int = 0
    ready_since: float | None = None  # monotonic time of the first Ready answer

    def answer(self, *, now: float, forget_after_s: float | None) -> StatusStep:
        step = self.steps[min(self.polls, len(self.steps) - 1)]
        self.polls += 1
        if step[0] != "Ready":
            return step
        if self.ready_since is None:
            self.ready_since = now
        elif forget_after_s is not None and now - self.ready_since >= forget_after_s:
            return (TASK_NOT_FOUND, None)
        return step


def _steps(sequence: Sequence[str | StatusStep]) -> list[StatusStep]:
    steps = [(item, None) if isinstance(item, str) else (item[0], item[1]) for item in sequence]
    if not steps:
        raise ValueError("a status sequence needs at least one step")
    return steps


def training_cost(details: Mapping[str, Any]) -> float:
    """What the mock charges for creating a finetune: a credit per 100 iterations (300 when unknown)."""
    try:
        iterations = int(details.get("iterations", 300))
    except (TypeError, ValueError):
        iterations = 300
    return max(iterations, 0) / 100


class MockBFL:
    """The mock's state and server. Settings (``latency_ms``, ``error_rate``, ``max_in_flight``,
    ``api_key``) are plain attributes a test may change between requests; everything else goes
    through thread-safe methods.

    Besides the finetunes served to ``api_key``, :meth:`add_account` serves other keys other
    finetunes, optionally under a path prefix (``/us1``), as one gateway fronting several
    regions would: the whole accounts feature can be exercised over loopback.
    """

    def __init__(
        self,
        finetunes: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        api_key: str = DEFAULT_MOCK_API_KEY,
        latency_ms: float = 0.0,
        error_rate: float = 0.0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        statuses: Mapping[str, Sequence[str | StatusStep]] | None = None,
        credits: float = DEFAULT_CREDITS,
        forget_after_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Binds at once (``port=0`` picks a free port), so ``base_url`` is known before serving.

        ``statuses`` scripts the ``get_result`` answers per id (finetunes without a script are
        ``Ready``); ``credits`` is the balance before ``finetunes`` were created, each of which
        costs :func:`training_cost`; a Ready finetune answers ``Task not found`` once
        ``forget_after_s`` seconds of ``clock`` have passed since its first Ready answer.
        """
        if not is_loopback_host(host):
            raise InputError(f"refusing to bind {host!r}: the mock API only listens on loopback")
        self.api_key = api_key
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.max_in_flight = max_in_flight
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._credits: dict[tuple[str, str | None], float] = {("", None): credits}
        self._lifecycles: dict[str, _Lifecycle] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        # Finetunes per (path prefix, key); the key None stands for whatever ``api_key`` is now.
        self._datasets: dict[tuple[str, str | None], dict[str, bytes]] = {("", None): {}}
        self._faults: dict[FaultTarget, list[_Fault]] = {}
        self._requests: deque[RequestRecord] = deque(maxlen=_REQUEST_LOG_MAX)
        self._in_flight = 0
        self._retired: dict[str, int] = {}
        self._connections: set[socket.socket] = set()
        self._request_ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        for finetune_id, details in (finetunes or {}).items():
            self.put(finetune_id, details)
        for finetune_id, sequence in (statuses or {}).items():
            self.script_status(finetune_id, sequence)
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host.strip("[]"), port), self)
        bound_host, bound_port = self._server.server_address[:2]
        assert isinstance(bound_host, str)
        shown = f"[{bound_host}]" if server_class is _Server6 else bound_host
        self.base_url = f"http://{shown}:{bound_port}"

    @classmethod
    def serve(
        cls,
        finetunes: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        count: int = 0,
        seed: int = 0,
        api_key: str = DEFAULT_MOCK_API_KEY,
        latency_ms: float = 0.0,
        error_rate: float = 0.0,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        host: str = "127.0.0.1",
        port: int = 0,
        statuses: Mapping[str, Sequence[str | StatusStep]] | None = None,
        credits: float = DEFAULT_CREDITS,
        forget_after_s: float | None = None,
    ) -> MockBFL:
        """A mock serving in a background thread; use it as a context manager so it stops.

        Without ``finetunes`` it serves ``count`` generated ones and their generated training
        statuses (both deterministic per ``seed``); ``statuses`` scripts some or all of them.
        """
        data = finetunes if finetunes is not None else generate_finetunes(count, seed=seed)
        if finetunes is None:
            statuses = {**generate_statuses(data, seed=seed), **(statuses or {})}
        mock = cls(
            data,
            api_key=api_key,
            latency_ms=latency_ms,
            error_rate=error_rate,
            max_in_flight=max_in_flight,
            seed=seed,
            host=host,
            port=port,
            statuses=statuses,
            credits=credits,
            forget_after_s=forget_after_s,
        )
        mock._thread = threading.Thread(target=mock.serve_forever, name="mock-bfl", daemon=True)
        mock._thread.start()
        return mock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``shutdown()`` is called from another thread."""
        self._server.serve_forever(poll_interval=0.05)

    def shutdown(self) -> None:
        """Make ``serve_forever`` return; blocks until it does, so call it from another thread."""
        self._server.shutdown()

    def close(self) -> None:
        """Stop serving and free the port; open keep-alive connections and sleeping handlers end too."""
        self._closing.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # --- data ---------------------------------------------------------------------------------

    def add_account(
        self,
        key: str,
        finetunes: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        prefix: str = "",
        credits: float = DEFAULT_CREDITS,
    ) -> None:
        """Serve ``finetunes`` to requests with this key (under ``prefix``, e.g. ``/eu1``), and only to them.

        The account's balance starts at ``credits`` and pays for each of them.
        """
        with self._lock:
            self._datasets[(_clean_prefix(prefix), key)] = {}
            self._credits[(_clean_prefix(prefix), key)] = credits
        for finetune_id, details in (finetunes or {}).items():
            self.put(finetune_id, details, key=key, prefix=prefix)

    def put(
        self, finetune_id: str, details: Mapping[str, Any], *, key: str | None = None, prefix: str = ""
    ) -> None:
        """Add or replace a finetune; encoded now, so later edits to ``details`` do not leak in.

        ``key``/``prefix`` pick an account added with :meth:`add_account`; by default, ``api_key``'s.
        """
        encoded = json.dumps(dict(details), ensure_ascii=False).encode()
        with self._lock:
            data = self._dataset(key, prefix)
            if finetune_id not in data:
                self._credits[self._account_of(key, prefix)] -= training_cost(details)
            data[finetune_id] = encoded

    def remove(self, finetune_id: str, *, key: str | None = None, prefix: str = "") -> None:
        with self._lock:
            self._dataset(key, prefix).pop(finetune_id, None)

    @property
    def finetunes(self) -> dict[str, dict[str, Any]]:
        """A decoded copy of what is being served to ``api_key``."""
        return self.finetunes_of()

    def finetunes_of(self, key: str | None = None, *, prefix: str = "") -> dict[str, dict[str, Any]]:
        """A decoded copy of what is being served to one account."""
        with self._lock:
            snapshot = dict(self._dataset(key, prefix))
        return {finetune_id: json.loads(body) for finetune_id, body in snapshot.items()}

    def _dataset(self, key: str | None, prefix: str) -> dict[str, bytes]:
        """The finetunes of one account; the caller holds the lock."""
        try:
            return self._datasets[self._account_of(key, prefix)]
        except KeyError:
            raise KeyError(f"no account {key!r} at prefix {prefix!r}: add it with add_account") from None

    def _account_of(self, key: str | None, prefix: str) -> tuple[str, str | None]:
        prefix = _clean_prefix(prefix)
        if key == self.api_key and prefix == "":
            key = None
        return (prefix, key)

    def script_status(self, finetune_id: str, sequence: Sequence[str | StatusStep]) -> None:
        """Answer ``get_result`` for ``finetune_id`` with these steps, one per poll from now on, the last
        repeated: ``["Pending", ("Pending", 0.5), "Ready"]``. Any string is served, ``Task not found`` too.
        Statuses are per finetune id, whichever account asks.
        """
        lifecycle = _Lifecycle(_steps(sequence))
        with self._lock:
            self._lifecycles[finetune_id] = lifecycle

    def forget(self, finetune_id: str) -> None:
        """From now on ``get_result`` says ``Task not found`` for this finetune, as BFL does after a while."""
        self.script_status(finetune_id, [TASK_NOT_FOUND])

    def status_polls(self, finetune_id: str) -> int:
        """How many ``get_result`` answers this finetune's script has given."""
        with self._lock:
            lifecycle = self._lifecycles.get(finetune_id)
            return lifecycle.polls if lifecycle else 0

    @property
    def credits(self) -> float:
        """The balance ``/v1/credits`` answers ``api_key`` with."""
        return self.credits_of()

    def credits_of(self, key: str | None = None, *, prefix: str = "") -> float:
        """The balance of one account."""
        with self._lock:
            return self._credits[self._account_of(key, prefix)]

    def set_credits(self, value: float, *, key: str | None = None, prefix: str = "") -> None:
        with self._lock:
            self._credits[self._account_of(key, prefix)] = value

    # --- retired endpoints --------------------------------------------------------------------

    def retire(self, name: str, *, status: int = GONE_STATUS) -> None:
        """From now on the endpoint ``name`` (``my_finetunes``, ``finetune_details``, ``get_result``,
        ``credits``) answers ``status`` (410 Gone, or 404 as a removed route does) to every request, key
        or no key, as a shut-down endpoint would: a rehearsal of BFL retiring the finetune API."""
        if name not in RETIRABLE:
            raise InputError(f"unknown endpoint {name!r}: expected one of {', '.join(sorted(RETIRABLE))}")
        if status not in (404, 410):
            raise InputError(f"a retired endpoint answers 404 or 410, not {status}")
        with self._lock:
            self._retired[RETIRABLE[name]] = status

    def restore(self, name: str) -> None:
        """Serve a retired endpoint again."""
        with self._lock:
            self._retired.pop(RETIRABLE[name], None)

    # --- scripted faults ----------------------------------------------------------------------
    # A target is a finetune id (its details), status_of(id) (its get_result), LISTING or CREDITS.
    # Faults queue per target; each answers the next
    # ``times`` matching requests (None: every one until ``clear_faults``). They apply after the
    # auth and validation checks, like a backend failing behind a healthy gateway.

    def fail(
        self,
        target: FaultTarget,
        *,
        status: int = 500,
        times: int | None = None,
        body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer with ``status``; ``body`` as JSON (dict/list), raw text (HTML if it starts with '<')."""
        reply = _fault_reply(status, body, headers)
        self._add(
            target,
            _Fault(
                "status",
                times,
                status=status,
                body=reply.body,
                headers={"content-type": reply.content_type, **reply.headers},
            ),
        )

    def hang(self, target: FaultTarget, *, seconds: float, times: int | None = None) -> None:
        """Sleep ``seconds`` before answering normally: longer than a client timeout, it is a timeout."""
        self._add(target, _Fault("hang", times, seconds=seconds))

    def drop(self, target: FaultTarget, *, times: int | None = None) -> None:
        """Close the connection without answering (the client sees a dropped connection)."""
        self._add(target, _Fault("drop", times))

    def bad_json(self, target: FaultTarget, *, times: int | None = None) -> None:
        """Answer 200 with a body that is not valid JSON."""
        self._add(target, _Fault("bad_json", times))

    def non_object(
        self, target: FaultTarget, *, value: Any = "not an object", times: int | None = None
    ) -> None:
        """Answer 200 with ``finetune_details`` (``finetunes`` for LISTING, ``credits`` for CREDITS) set
        to ``value``; for a ``status_of`` target the whole body is ``value``.
        """
        self._add(target, _Fault("non_object", times, value=value))

    def missing_details(self, target: FaultTarget, *, times: int | None = None) -> None:
        """Answer 200 with ``{}``: no ``finetune_details`` (no ``finetunes`` for LISTING)."""
        self._add(target, _Fault("missing_details", times))

    def clear_faults(self, target: FaultTarget | None = None) -> None:
        with self._lock:
            if target is None:
                self._faults.clear()
            else:
                self._faults.pop(target, None)

    def _add(self, target: FaultTarget, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("times must be at least 1 (or None for a permanent fault)")
        with self._lock:
            self._faults.setdefault(target, []).append(fault)

    def _take_fault(self, target: FaultTarget) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(target)
            if not queue:
                return None
            fault = queue[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.pop(0)
            return fault

    # --- request log --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests answered so far, in the order answered (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # --- serving (called from handler threads) ------------------------------------------------

    def _answer(self, path: str, query: dict[str, str], key: str | None) -> _Reply | None:
        """The reply to one GET, or None to drop the connection."""
        with self._lock:
            self._in_flight += 1
            over_cap = self._in_flight > self.max_in_flight
        try:
            if over_cap:
                return _json_reply(
                    429,
                    {"detail": "Too many active requests"},
                    {"retry-after": _RATE_LIMIT_RETRY_AFTER_S},
                )
            if self.latency_ms > 0:
                self._closing.wait(self.latency_ms / 1000)
            prefix, endpoint = _split_prefix(path)
            with self._lock:
                retired = self._retired.get(endpoint) if endpoint is not None else None
            if retired is not None:
                return _json_reply(retired, {"detail": GONE_DETAIL if retired == 410 else "Not Found"})
            if key is None:
                return _json_reply(403, {"detail": "Not authenticated"})
            with self._lock:
                known_prefix = any(known == prefix for known, _ in self._datasets)
                served = (prefix, None if key == self.api_key and prefix == "" else key)
                data = self._datasets.get(served)
            if not known_prefix or endpoint is None:
                return _json_reply(404, {"detail": "Not Found"})
            if data is None:
                return _json_reply(401, {"detail": "Invalid API key"})
            target: FaultTarget
            if endpoint == LIST_PATH:
                target = LISTING
            elif endpoint == CREDITS_PATH:
                target = CREDITS
            else:
                name = "id" if endpoint == RESULT_PATH else "finetune_id"
                if name not in query:
                    return _json_reply(
                        422,
                        {
                            "detail": [
                                {
                                    "type": "missing",
                                    "loc": ["query", name],
                                    "msg": "Field required",
                                    "input": None,
                                }
                            ]
                        },
                    )
                target = StatusOf(query[name]) if endpoint == RESULT_PATH else query[name]
            return self._serve_target(target, served, data)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _serve_target(
        self, target: FaultTarget, account: tuple[str, str | None], data: dict[str, bytes]
    ) -> _Reply | None:
        payload_key = _PAYLOAD_KEYS.get(target, "finetune_details") if isinstance(target, Endpoint) else None
        fault = self._take_fault(target)
        if fault is not None:
            if fault.kind == "status":
                return _Reply(fault.status, fault.body, fault.headers["content-type"], fault.headers)
            if fault.kind == "drop":
                return None
            if fault.kind == "bad_json":
                key = payload_key or ("status" if isinstance(target, StatusOf) else "finetune_details")
                return _Reply(200, b'{"' + key.encode() + b'": {"trigger_word": "TOK",')
            if fault.kind == "non_object":
                if isinstance(target, StatusOf):
                    return _json_reply(200, fault.value)
                return _json_reply(200, {payload_key or "finetune_details": fault.value})
            if fault.kind == "missing_details":
                return _json_reply(200, {})
            self._closing.wait(fault.seconds)  # hang, then answer as usual
        random_failure = self._random_failure()
        if random_failure is not None:
            return random_failure
        if isinstance(target, StatusOf):
            return self._serve_status(target.finetune_id, data)
        with self._lock:
            if target is LISTING:
                return _json_reply(200, {"finetunes": list(data)})
            if target is CREDITS:
                return _json_reply(200, {"credits": round(self._credits[account], 2)})
            assert isinstance(target, str)
            details = data.get(target)
        if details is None:
            return _json_reply(404, {"detail": "Finetune not found"})
        return _Reply(200, b'{"finetune_details": ' + details + b"}")

    def _serve_status(self, finetune_id: str, data: dict[str, bytes]) -> _Reply:
        """``get_result`` as BFL answers it; a finetune the account is not served is a task it never knew."""
        with self._lock:
            lifecycle = self._lifecycles.get(finetune_id)
            if lifecycle is None and finetune_id in data:
                lifecycle = self._lifecycles[finetune_id] = _Lifecycle([("Ready", 1.0)])
            if lifecycle is None:
                status, progress = TASK_NOT_FOUND, None
            else:
                status, progress = lifecycle.answer(now=self._clock(), forget_after_s=self.forget_after_s)
        result = {"finetune_id": finetune_id} if status == "Ready" else None
        details: dict[str, Any] | None = None
        if status in ("Error", "Failed"):
            details = {"error": "training failed: the dataset could not be processed"}
        elif status.endswith("Moderated"):
            details = {"moderation_reasons": ["the training images were flagged"]}
        body = {
            "id": finetune_id,
            "status": status,
            "result": result,
            "progress": progress,
            "details": details,
        }
        return _json_reply(200, body)

    def _random_failure(self) -> _Reply | None:
        with self._lock:
            if self.error_rate <= 0 or self._rng.random() >= self.error_rate:
                return None
            kind = self._rng.randrange(4)
        if kind == 0:
            return _json_reply(500, {"detail": "Internal Server Error"})
        if kind == 1:
            return _Reply(502, _HTML_502, "text/html")
        if kind == 2:
            return _json_reply(503, {"detail": "Service temporarily unavailable"})
        return _Reply(503, _HTML_503, "text/html; charset=utf-8")

    def _record(self, record: RequestRecord) -> str:
        """Log the request; returns the x-request-id its answer carries."""
        with self._lock:
            self._requests.append(record)
            return f"mock-{next(self._request_ids):08d}"

    def _track(self, sock: socket.socket, *, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)


_PAYLOAD_KEYS: Final[Mapping[FaultTarget, str]] = {LISTING: "finetunes", CREDITS: "credits"}


def _clean_prefix(prefix: str) -> str:
    """``us1``, ``/us1/`` -> ``/us1``; nothing -> ``""``."""
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


def _split_prefix(path: str) -> tuple[str, str | None]:
    """A request path as (prefix, endpoint); the endpoint is None when the path names none."""
    for endpoint in (LIST_PATH, DETAILS_PATH, RESULT_PATH, CREDITS_PATH):
        if path.endswith(endpoint):
            return _clean_prefix(path.removesuffix(endpoint)), endpoint
    return "", None


def _fault_reply(
    status: int,
    body: bytes | str | Mapping[str, Any] | list[Any] | None,
    headers: Mapping[str, str] | None,
) -> _Reply:
    extra = {name.lower(): value for name, value in (headers or {}).items()}
    if body is None:
        reply = _json_reply(status, {"detail": _phrase(status)})
    elif isinstance(body, Mapping | list):
        reply = _json_reply(status, body)
    else:
        raw = body.encode() if isinstance(body, str) else body
        content_type = "text/html" if raw.lstrip().startswith(b"<") else "text/plain"
        reply = _Reply(status, raw, content_type)
    content_type = extra.pop("content-type", reply.content_type)
    return _Reply(status, reply.body, content_type, extra)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a sync reuses its connections
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms to every answer
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.mock._track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.mock._track(self.connection, opened=False)

    def do_GET(self) -> None:
        self._answer_get(send_body=True)

    def do_HEAD(self) -> None:
        """As the real API's framework does: the GET's status and headers, without the body."""
        self._answer_get(send_body=False)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server answers a method it has no do_<METHOD> for with 501 HTML; BFL's framework
        # answers every method a path does not take (OPTIONS, TRACE, PROPFIND, …) with 405 JSON.
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _answer_get(self, *, send_body: bool) -> None:
        mock = self.server.mock
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        key = self.headers.get("x-key")
        reply = mock._answer(parts.path, query, key)
        request_id = mock._record(
            RequestRecord(
                method=self.command,
                path=parts.path,
                query=query,
                status=reply.status if reply else None,
                key_present=key is not None,
            )
        )
        if reply is None:
            self.close_connection = True
            return
        self._send(reply, request_id, send_body=send_body)

    def _method_not_allowed(self) -> None:
        request_id = self.server.mock._record(
            RequestRecord(
                method=self.command,
                path=urlsplit(self.path).path,
                query={},
                status=405,
                key_present="x-key" in self.headers,
            )
        )
        self.close_connection = True  # the request body, if any, is left unread
        self._send(_json_reply(405, {"detail": "Method Not Allowed"}, {"allow": ALLOWED_METHODS}), request_id)

    do_POST = do_PUT = do_PATCH = do_DELETE = _method_not_allowed

    def _send(self, reply: _Reply, request_id: str, *, send_body: bool = True) -> None:
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        self.send_header("content-length", str(len(reply.body)))
        self.send_header("x-request-id", request_id)
        for name, value in reply.headers.items():
            if name not in ("content-type", "content-length"):
                self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(reply.body)

    def version_string(self) -> str:
        return "bflsync-mock"

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when a sync opens 16 at once

    def __init__(self, address: tuple[str, int], mock: MockBFL) -> None:
        self.mock = mock
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up is business as usual for this server.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


def load_data_file(path: Path) -> dict[str, dict[str, Any]]:
    """Finetunes from a JSON file shaped ``{id: details}``; anything else is the user's to fix."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read --data file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"--data file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"--data file {path} must hold a JSON object {{id: details}}")
    for finetune_id, details in data.items():
        if not finetune_id or not isinstance(details, dict):
            raise InputError(
                f"--data file {path}: entry {finetune_id!r} must map a non-empty id to an object"
            )
    return data


# --- generated data -----------------------------------------------------------------------------

_MODES: Final = ("general", "character", "style", "product")
_PRIORITIES: Final = ("speed", "quality", "high_res_only")
_LEARNING_RATES: Final = (1e-6, 5e-6, 1e-5, 2e-5, 4e-5, 1e-4, 2e-4, 5e-4, 1e-3, 0.005, None)
_ITERATIONS: Final = (100, 150, 200, 250, 300, 300, 300, 300, 400, 500, 600, 800, 1000)
_TRIGGER_WORDS: Final = ("TOK", "ohwx", "sks", "zxc_style", "BRUNO", "ÆON", "mascot_v2")
_COMMENTS: Final = (
    "Portrait of my dog Bruno 🐶",
    "Café logo — v2",
    "日本の風景スタイル",
    "Портрет в стиле акварели",
    "Ñandú product shots, white background",
    "Ελληνικά γράμματα / Greek lettering",
    "emoji test 🎨✨🚀",
    "",
    'brand "hero" shots\nsecond line',
    "watercolor style, soft edges",
    "product: sneaker AIR-7 (studio light)",
)
_ORGS: Final = ("acme-labs", "pixel-forge", "studio-nord")
_SLUGS: Final = ("portrait-lora", "product-shots", "watercolor-style", "brand-mascot")
_EPOCH: Final = datetime(2024, 8, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One extra key of ``mock-api --account KEY=COUNT[:SEED]``."""

    key: str
    count: int
    seed: int | None = None


def parse_account_spec(text: str) -> AccountSpec:
    """``KEY=COUNT`` or ``KEY=COUNT:SEED``; InputError for anything else."""
    key, equals, amount = text.rpartition("=")
    count_text, _, seed_text = amount.partition(":")
    if not equals or not key or not count_text.isascii() or not count_text.isdigit():
        raise InputError(f"--account {text!r}: expected KEY=COUNT or KEY=COUNT:SEED, e.g. team-b-key=20:7")
    if seed_text and not (seed_text.isascii() and seed_text.lstrip("-").isdigit()):
        raise InputError(f"--account {text!r}: SEED must be an integer")
    if key.strip() != key or any(not character.isprintable() for character in key):
        raise InputError(f"--account {text!r}: the key must be printable, without surrounding spaces")
    return AccountSpec(key=key, count=int(count_text), seed=int(seed_text) if seed_text else None)


def account_finetunes(
    specs: Sequence[AccountSpec], *, default: Mapping[str, Mapping[str, Any]], shared: int = 0, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """The finetunes each extra key lists: ``count`` generated ones of its own, plus the first
    ``shared`` of the default key's (the same ids and details, as an org-shared LoRA is).

    Generated ids never collide with another account's by accident: only ``shared`` ones are
    common. A key without its own seed gets one derived from ``seed`` and its position.
    """
    if shared > len(default):
        raise InputError(f"--shared {shared}: the default key serves only {len(default)} finetunes")
    keys = [spec.key for spec in specs]
    if len(set(keys)) != len(keys):
        raise InputError("--account: each key may be given once")
    common = dict(itertools.islice(((k, dict(v)) for k, v in default.items()), shared))
    taken = set(default)
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for position, spec in enumerate(specs, start=1):
        own_seed = spec.seed if spec.seed is not None else seed + 1000 * position
        generated = generate_finetunes(spec.count + len(taken), seed=own_seed)
        own = dict(itertools.islice(((k, v) for k, v in generated.items() if k not in taken), spec.count))
        taken |= own.keys()
        result[spec.key] = {**common, **own}
    return result


def generate_finetunes(count: int, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``count`` realistic finetunes, identical for the same seed.

    Spans every mode, type, rank, priority, learning rate and iteration count, with unicode
    comments and, at fixed strides so even small sets show them: name-style ids, sparse records,
    numeric strings ("300"), unknown new keys and a second timestamp format.
    """
    rng = random.Random(seed)
    finetunes: dict[str, dict[str, Any]] = {}
    for i in range(count):
        if i % 17 == 3:
            finetune_id = f"{rng.choice(_ORGS)}/{rng.choice(_SLUGS)}-{i}"
        else:
            finetune_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        finetune_type = "full" if i % 5 == 4 else "lora"
        iterations: int | str = rng.choice(_ITERATIONS)
        learning_rate: float | str | None = rng.choice(_LEARNING_RATES)
        when = _EPOCH + timedelta(seconds=rng.randrange(300 * 86_400), microseconds=rng.randrange(1_000_000))
        details: dict[str, Any] = {
            "finetune_comment": rng.choice(_COMMENTS),
            "trigger_word": rng.choice(_TRIGGER_WORDS),
            "mode": _MODES[i % len(_MODES)],
            "iterations": iterations,
            "learning_rate": learning_rate,
            "finetune_type": finetune_type,
            "priority": _PRIORITIES[i % len(_PRIORITIES)],
            "captioning": rng.random() < 0.7,
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ")
            if i % 19 == 11
            else when.replace(tzinfo=None).isoformat(),
        }
        if finetune_type == "lora":
            details["lora_rank"] = rng.choice((16, 32))
        if i % 11 == 7:
            details["iterations"] = str(iterations)
            if learning_rate is not None:
                details["learning_rate"] = str(learning_rate)
        if i % 23 == 9:
            details["image_count"] = rng.randrange(5, 40)
        if i % 13 == 5:
            for key in rng.sample(sorted(details), k=rng.randrange(3, len(details))):
                del details[key]
        finetunes[finetune_id] = details
    return finetunes


def generate_statuses(finetunes: Mapping[str, Any], *, seed: int = 0) -> dict[str, list[StatusStep]]:
    """Training status scripts for generated finetunes, identical for the same ids and seed.

    Most are Ready; at fixed strides, so even the default 25 show each: a quarter still train
    (Pending, progress rising over 3 to 8 polls, then Ready), and a few end in Error, Request
    Moderated or Content Moderated.
    """
    rng = random.Random(seed)
    statuses: dict[str, list[StatusStep]] = {}
    for i, finetune_id in enumerate(finetunes):
        polls = rng.randrange(3, 9)
        if i % 4 == 1:
            rising = [("Pending", round(step / polls, 2)) for step in range(polls)]
            statuses[finetune_id] = [*rising, ("Ready", 1.0)]
        elif i % 29 == 14:
            statuses[finetune_id] = [("Pending", 0.0), ("Error", None)]
        elif i % 31 == 15:
            statuses[finetune_id] = [("Request Moderated", None)]
        elif i % 37 == 18:
            statuses[finetune_id] = [("Pending", 0.0), ("Content Moderated", None)]
        else:
            statuses[finetune_id] = [("Ready", 1.0)]
    return statuses

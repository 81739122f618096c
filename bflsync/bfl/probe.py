"""``bflsync probe``'s requests: which finetune endpoints still answer at a base URL, and how.

One request per endpoint, no retries, each timed: the listing, then the details and the training
status of one finetune (the first the listing names, or one the caller gives). Each answer is
classified as a monitor needs it (:data:`ANSWERS`). ``get_result`` answering 404 is ``ok``: BFL
forgets finished tasks, so only its 410 says the endpoint is gone. Nothing here touches a store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from bflsync.bfl.client import BflClient
from bflsync.bfl.endpoints import DETAILS_PATH, LIST_PATH, RESULT_PATH
from bflsync.errors import ApiError, AuthError, UpstreamGoneError

OK: Final = "ok"
GONE: Final = "gone"
REFUSED: Final = "refused"
ERROR: Final = "error"
NOT_PROBED: Final = "not_probed"
ANSWERS: Final = {
    OK: "answered as BFL documents",
    GONE: "410; 404 from the listing or the details; a listing body that is not a listing: the endpoint looks retired",
    REFUSED: "401/403: the key was refused here",
    ERROR: "anything else: a timeout, no connection, a 5xx, a malformed answer; it says nothing yet",
    NOT_PROBED: "no finetune id to ask about (the listing failed or was empty, and no --id)",
}
_GONE_STATUSES: Final = frozenset({404, 410})


@dataclass(frozen=True, kw_only=True)
class EndpointAnswer:
    """How one endpoint answered one request."""

    source: str
    endpoint: str
    answer: str
    status: int | None
    latency_ms: float | None
    listed: int | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "endpoint": self.endpoint,
            "answer": self.answer,
            "status": self.status,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "listed": self.listed,
            "detail": self.detail,
        }


async def probe(client: BflClient, *, finetune_id: str | None) -> list[EndpointAnswer]:
    """The listing's, the details' and the status endpoint's answers at the client's base URL."""
    listing, ids = await _timed(client, LIST_PATH, client.list_finetunes)
    if ids is not None:
        listing = EndpointAnswer(**{**listing.__dict__, "listed": len(ids)})
    asked = finetune_id if finetune_id is not None else (ids[0] if ids else None)
    if asked is None:
        skipped = [
            EndpointAnswer(
                source=client.source, endpoint=path, answer=NOT_PROBED, status=None, latency_ms=None
            )
            for path in (DETAILS_PATH, RESULT_PATH)
        ]
        return [listing, *skipped]
    details, _ = await _timed(client, DETAILS_PATH, lambda: client.get_details(asked))
    status, _ = await _timed(client, RESULT_PATH, lambda: client.get_result(asked))
    return [listing, details, status]


async def _timed(
    client: BflClient, endpoint: str, call: Callable[[], Awaitable[Any]]
) -> tuple[EndpointAnswer, Any]:
    started = time.perf_counter()
    try:
        value = await call()
    except ApiError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return EndpointAnswer(
            source=client.source,
            endpoint=endpoint,
            answer=_classify(exc),
            status=exc.status,
            latency_ms=elapsed if exc.status is not None else None,
            detail=str(exc),
        ), None
    elapsed = (time.perf_counter() - started) * 1000
    return EndpointAnswer(
        source=client.source, endpoint=endpoint, answer=OK, status=200, latency_ms=elapsed
    ), value


def _classify(error: ApiError) -> str:
    # A get_result 404 never gets here (it is an answer); a 404 of the details of a listed finetune is.
    if isinstance(error, UpstreamGoneError) or error.status in _GONE_STATUSES:
        return GONE
    if isinstance(error, AuthError):
        return REFUSED
    return ERROR


def verdict(answers: list[EndpointAnswer]) -> str:
    """The worst that was seen: ``gone`` over ``refused``/``error`` (``unknown``) over ``ok``."""
    seen = {answer.answer for answer in answers}
    if GONE in seen:
        return GONE
    if seen & {REFUSED, ERROR}:
        return "unknown"
    return OK

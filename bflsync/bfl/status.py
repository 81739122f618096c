"""Training status as BFL's ``get_result`` reports it, and what a sync does with an answer. Pure.

BFL answers ``{"id", "status", "result", "progress", "details"}`` for a finetune id (which doubles
as the task id) and forgets finished tasks after a while, answering ``Task not found`` even for
finetunes that were Ready. So the store keeps what it saw: a status string as sent (strings BFL
adds later are data, not errors), the progress, and when it first saw ``Ready``. ``Task not
found`` is never stored over a status the store knows; for a finetune the store never saw in any
status it becomes ``unknown`` (it trained before anything recorded it).

While a finetune trains BFL answers ``Pending``, ``Reasoning`` or ``Generating`` (any status not in
:data:`SETTLED_STATUSES` counts as still training, and is asked again by the next sync); ``Ready``,
``Error``, ``Failed`` and the moderated statuses are terminal and never asked again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bflsync.bfl.endpoints import TASK_NOT_FOUND
from bflsync.extract import canonical_json

READY: Final = "Ready"
PENDING: Final = "Pending"
UNKNOWN: Final = "unknown"
TERMINAL_STATUSES: Final = frozenset({"Ready", "Error", "Request Moderated", "Content Moderated", "Failed"})
# Not asked again either: ``unknown`` comes from ``Task not found``, which BFL never takes back.
SETTLED_STATUSES: Final = TERMINAL_STATUSES | {UNKNOWN}


class BadStatusAnswer(ValueError):
    """A ``get_result`` body that is not the documented shape (no status string)."""


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """One ``get_result`` answer: the status as sent, its progress, and the body as canonical JSON."""

    status: str
    progress: float | None
    answer: str

    @property
    def task_not_found(self) -> bool:
        return self.status == TASK_NOT_FOUND


@dataclass(frozen=True, slots=True)
class StoredStatus:
    """What the store knows of a finetune's status before this answer."""

    status: str | None
    progress: float | None
    ready_at: datetime | None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What to write for one answer: the new current values, and whether a timeline row is due."""

    status: str | None
    progress: float | None
    ready_at: datetime | None
    timeline: bool


def parse_answer(body: Mapping[str, Any]) -> StatusAnswer:
    """The status of a ``get_result`` body; a missing or non-string status is a bad answer."""
    status = body.get("status")
    if not isinstance(status, str) or not status:
        raise BadStatusAnswer(f"get_result answered without a status string: {canonical_json(body)[:200]}")
    return StatusAnswer(status=status, progress=_progress(body.get("progress")), answer=canonical_json(body))


def apply(stored: StoredStatus, answer: StatusAnswer, *, now: datetime) -> StatusChange:
    """The finetune's status after ``answer``: one timeline row per change of status or progress.

    ``stored.status`` is None for a finetune never checked (new in this sync, or stored before
    bflsync asked for statuses).
    """
    if answer.task_not_found:
        if stored.status is not None:
            # Known (or already unknown): BFL forgot, the store did not.
            return StatusChange(stored.status, stored.progress, stored.ready_at, timeline=False)
        return StatusChange(UNKNOWN, None, stored.ready_at, timeline=True)
    ready_at = stored.ready_at
    if answer.status == READY and ready_at is None:
        ready_at = now
    changed = (stored.status, stored.progress) != (answer.status, answer.progress)
    return StatusChange(answer.status, answer.progress, ready_at, timeline=changed)


def _progress(value: Any) -> float | None:
    """A number as float; numeric strings are coerced losslessly, anything else is NULL."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None

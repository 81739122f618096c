"""Reading the labels and notes people keep on finetunes (``bflsync label`` and ``note`` write them).

Read commands call these through any object with a ``rows(sql, params)`` method taking SQL
text with ``?`` placeholders (the read side's reader), so they import nothing but the
standard library. Label values are stored as canonical JSON and come back as the values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

# Well under SQLite's limit of bound parameters per statement.
_CHUNK = 900


class RowSource(Protocol):
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    written_by: str
    written_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "written_by": self.written_by, "written_at": self.written_at}


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """One label set or removed, with the value it had before (``None`` when it had none)."""

    finetune_pk: int
    key: str
    change: str
    old: Any
    new: Any
    changed_by: str
    changed_at: datetime


def labels_by_pk(reader: RowSource, pks: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Current labels of each finetune, keys sorted; finetunes without labels are absent."""
    found: dict[int, dict[str, Any]] = {}
    unique = sorted(set(pks))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        for pk, key, value in reader.rows(
            f"SELECT finetune_pk, key, value FROM finetune_label WHERE finetune_pk IN ({marks})"
            " ORDER BY finetune_pk, key",
            chunk,
        ):
            found.setdefault(int(pk), {})[key] = json.loads(value)
    return found


def notes_of(reader: RowSource, pk: int) -> list[Note]:
    """Every note on one finetune, oldest first."""
    return [
        Note(text=text, written_by=by, written_at=utc(at))
        for text, by, at in reader.rows(
            "SELECT text, written_by, written_at FROM finetune_note WHERE finetune_pk = ? ORDER BY written_at, id",
            [pk],
        )
    ]


def label_events(reader: RowSource, pks: Sequence[int]) -> list[LabelEvent]:
    """The label history of the given finetunes, oldest first, each change with its old value."""
    events: list[LabelEvent] = []
    unique = sorted(set(pks))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        current: dict[tuple[int, str], Any] = {}
        for pk, key, change, value, by, at in reader.rows(
            "SELECT finetune_pk, key, change, value, changed_by, changed_at FROM finetune_label_change"
            f" WHERE finetune_pk IN ({marks}) ORDER BY finetune_pk, id",
            chunk,
        ):
            new = json.loads(value) if value is not None else None
            events.append(
                LabelEvent(
                    finetune_pk=int(pk),
                    key=key,
                    change=change,
                    old=current.get((pk, key)),
                    new=new,
                    changed_by=by,
                    changed_at=utc(at),
                )
            )
            current[(pk, key)] = new
    return sorted(events, key=lambda event: (event.changed_at, event.finetune_pk))


def utc(value: str | datetime) -> datetime:
    """A stored timestamp as aware UTC: SQLite keeps naive UTC text, PostgreSQL gives a datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

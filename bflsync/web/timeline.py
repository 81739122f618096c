"""One finetune's page: its parameters and one timeline of everything that happened to it, newest first.

Built by the read side's own functions (the lookup of ``show``, the versions and statuses of
``history``, the labels and notes of ``label``/``note``, the request of ``show --format request``)
over any :class:`~bflsync.read.reader.Reader`, so the page and the CLI never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bflsync.errors import InputError
from bflsync.read import audit_trail, label_reads, retrain
from bflsync.read.lookup import find_finetune
from bflsync.read.reader import Reader

# The parameters listed first, in this order; the other keys of the details follow, sorted.
PARAMETERS = (
    "finetune_comment",
    "mode",
    "finetune_type",
    "learning_rate",
    "iterations",
    "lora_rank",
    "priority",
    "trigger_word",
    "captioning",
)
MISSING = "(missing)"


@dataclass(frozen=True)
class Change:
    key: str
    old: str
    new: str


@dataclass(frozen=True)
class Event:
    """One line of the timeline: when, what kind (version, status, label, note), a title, and old -> new."""

    at: datetime
    kind: str
    title: str
    changes: list[Change] = field(default_factory=list)
    by: str | None = None


@dataclass(frozen=True)
class FinetunePage:
    finetune_id: str
    source: str
    account: str
    deleted: bool
    status: str | None
    parameters: list[tuple[str, str]]
    labels: dict[str, Any]
    timeline: list[Event]
    request: str | None
    """``show --format request``: the body that would train it again, or None where it cannot be built."""
    details: str


def finetune_page(
    reader: Reader, finetune_id: str, *, source: str | None = None, account: str | None = None
) -> FinetunePage:
    """The page of one finetune; :class:`InputError` for an unknown or ambiguous id, as ``show`` says it."""
    found = find_finetune(reader, finetune_id, source=source, account=account)
    record = found.record
    details = record.details if isinstance(record.details, dict) else {}
    keys = [key for key in PARAMETERS if key in details] + sorted(set(details) - set(PARAMETERS))
    events = _versions_and_statuses(reader, record.finetune_id, record.source, record.account)
    events += [
        Event(
            at=event.changed_at,
            kind="label",
            title=f"label {event.key} {'removed' if event.change == 'removed' else 'set'}",
            changes=[Change(event.key, _text(event.old), _text(event.new))],
            by=event.changed_by,
        )
        for event in label_reads.label_events(reader, pk=found.pk)
    ]
    events += [
        Event(at=note.written_at, kind="note", title=note.text, by=note.written_by)
        for note in label_reads.notes(reader, pk=found.pk)
    ]
    events.sort(key=lambda event: event.at, reverse=True)
    try:
        request: str | None = json.dumps(
            retrain.request_body(record.details).body, indent=2, ensure_ascii=False
        )
    except InputError:
        request = None
    return FinetunePage(
        finetune_id=record.finetune_id,
        source=record.source,
        account=record.account,
        deleted=record.deleted_at is not None,
        status=record.column("status"),
        parameters=[(key, _text(details[key])) for key in keys],
        labels=record.labels,
        timeline=events,
        request=request,
        details=json.dumps(record.details, indent=2, ensure_ascii=False, sort_keys=True),
    )


def _versions_and_statuses(reader: Reader, finetune_id: str, source: str, account: str) -> list[Event]:
    events: list[Event] = []
    previous_status: str | None = None
    for entry in audit_trail.history(reader, finetune_id=finetune_id, source=source, account=account):
        if isinstance(entry, audit_trail.StatusEntry):
            if entry.status != previous_status:
                events.append(
                    Event(
                        at=entry.observed_at,
                        kind="status",
                        title="status",
                        changes=[Change("status", previous_status or MISSING, entry.status)],
                    )
                )
            previous_status = entry.status
            continue
        changes = (
            []
            if entry.change in ("created", "deleted")
            else [
                Change(key, _text(value.get("old", MISSING)), _text(value.get("new", MISSING)))
                for key, value in sorted(entry.changes.items())
            ]
        )
        events.append(
            Event(
                at=entry.observed_at,
                kind="version",
                title=f"{entry.change} (version {entry.version})",
                changes=changes,
            )
        )
    return events


def _text(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)

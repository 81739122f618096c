"""Reading the labels and notes people keep on finetunes (``bflsync label`` and ``note`` write them).

Read commands call these through any object with a ``rows(sql, params)`` method taking SQL
text with ``?`` placeholders (the read side's reader), so they import nothing but the
standard library. Label values are stored as canonical JSON and come back as the values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from bflsync.timeform import parse_utc


class RowSource(Protocol):
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def time_param(self, moment: datetime) -> Any: ...


class Note(NamedTuple):
    finetune_id: str
    source: str
    account: str
    text: str
    written_by: str
    written_at: datetime
    written_by_role: str | None = None
    """The PostgreSQL role of the session that wrote it (``written_by`` is the OS account)."""
    written_as: str | None = None
    """``--as`` free text: an attribution the writer typed, not an identity."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "written_by": self.written_by,
            "written_by_role": self.written_by_role,
            "written_as": self.written_as,
            "written_at": self.written_at,
        }


class LabelEvent(NamedTuple):
    """One label set or removed, with the value it had before (``None`` when it had none)."""

    finetune_id: str
    source: str
    account: str
    key: str
    change: str
    old: Any
    new: Any
    changed_by: str
    changed_at: datetime
    changed_by_role: str | None = None
    changed_as: str | None = None


def labels_object_sql(dialect: str, *, pk: str) -> str:
    """SQL for one finetune's labels as a JSON object (``pk`` its id expression), for any statement.

    SQLite gives ``{}`` text for a finetune without labels, PostgreSQL NULL; readers take both.
    """
    if dialect == "sqlite":
        aggregate = "json_group_object(l.key, json(l.value_json))"
    else:
        aggregate = "json_object_agg(l.key, CAST(l.value_json AS json))"
    return f"(SELECT {aggregate} FROM finetune_label l WHERE l.finetune_pk = {pk})"


def label_value_sql(*, pk: str) -> str:
    """SQL for one label's value (canonical JSON text) with one ``?`` for its key; NULL when unset."""
    return f"(SELECT l.value_json FROM finetune_label l WHERE l.finetune_pk = {pk} AND l.key = ?)"


def decode_labels(value: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The labels object a statement returned (JSON text, a driver-decoded dict, or NULL), keys sorted."""

    labels = json.loads(value) if isinstance(value, str) else (value or {})
    return dict(sorted(labels.items()))


def notes(
    reader: RowSource,
    *,
    pk: int | None = None,
    since: datetime | None = None,
    source: str | None = None,
    account: str | None = None,
) -> list[Note]:
    """Notes oldest first: of one finetune (``pk``), or of every finetune since ``since``."""
    where, params = _scope(
        "n.finetune_pk", "n.written_at", reader, pk=pk, since=since, source=source, account=account
    )
    return [
        Note(
            finetune_id=finetune_id,
            source=found_source,
            account=found_account,
            text=text,
            written_by=by,
            written_at=utc(at),
            written_by_role=role,
            written_as=as_,
        )
        for finetune_id, found_source, found_account, text, by, at, role, as_ in reader.rows(
            "SELECT f.finetune_id, f.source, f.account, n.text, n.written_by, n.written_at,"
            " n.written_by_role, n.written_as FROM finetune_note n"
            f" JOIN finetune f ON f.id = n.finetune_pk WHERE {where} ORDER BY n.written_at, n.id",
            params,
        )
    ]


def label_events(
    reader: RowSource,
    *,
    pk: int | None = None,
    since: datetime | None = None,
    source: str | None = None,
    account: str | None = None,
) -> list[LabelEvent]:
    """Label changes oldest first, each with the value it replaced: of one finetune or since a moment."""
    params: list[Any] = []
    if pk is not None:
        touched = "c.finetune_pk = ?"
        params.append(pk)
    else:
        # Every change of the finetunes touched since then: the old values come from before.
        touched = "c.finetune_pk IN (SELECT finetune_pk FROM finetune_label_change WHERE changed_at >= ?)"
        params.append(reader.time_param(since) if since is not None else None)
    for column, value in (("f.source", source), ("f.account", account)):
        if value is not None:
            touched += f" AND {column} = ?"
            params.append(value)

    events: list[LabelEvent] = []
    before: dict[tuple[int, str], Any] = {}
    for (
        finetune_pk,
        finetune_id,
        found_source,
        found_account,
        key,
        change,
        value,
        by,
        at,
        role,
        as_,
    ) in reader.rows(
        "SELECT c.finetune_pk, f.finetune_id, f.source, f.account, c.key, c.change, c.value, c.changed_by,"
        " c.changed_at, c.changed_by_role, c.changed_as"
        f" FROM finetune_label_change c JOIN finetune f ON f.id = c.finetune_pk WHERE {touched}"
        " ORDER BY c.finetune_pk, c.id",
        params,
    ):
        new = json.loads(value) if value is not None else None
        moment = utc(at)
        if since is None or moment >= since:
            events.append(
                LabelEvent(
                    finetune_id=finetune_id,
                    source=found_source,
                    account=found_account,
                    key=key,
                    change=change,
                    old=before.get((finetune_pk, key)),
                    new=new,
                    changed_by=by,
                    changed_at=moment,
                    changed_by_role=role,
                    changed_as=as_,
                )
            )
        before[(finetune_pk, key)] = new
    return sorted(
        events, key=lambda event: (event.changed_at, event.finetune_id, event.source, event.account)
    )


def _scope(
    pk_column: str,
    time_column: str,
    reader: RowSource,
    *,
    pk: int | None,
    since: datetime | None,
    source: str | None,
    account: str | None,
) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if pk is not None:
        conditions.append(f"{pk_column} = ?")
        params.append(pk)
    if since is not None:
        conditions.append(f"{time_column} >= ?")
        params.append(reader.time_param(since))
    for column, value in (("f.source", source), ("f.account", account)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(conditions) or "1 = 1", params


def author_text(by: str, role: str | None, attribution: str | None) -> str:
    """``alice``, ``alice (role bfl_writer)``, ``alice (role bfl_writer; as "Zoë")`` for humans."""
    extra = [f"role {role}"] if role else []
    if attribution:
        extra.append(f'as "{attribution}"')
    return f"{by} ({'; '.join(extra)})" if extra else by


def utc(value: str | datetime) -> datetime:
    """A stored timestamp as aware UTC: SQLite keeps text (:mod:`bflsync.timeform`), PostgreSQL gives a datetime."""
    if isinstance(value, str):
        return parse_utc(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

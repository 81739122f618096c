"""Reading the audit trail: version history with old and new values, status changes, sync runs,
credit balances over time, and diffs.

A version row stores the full details it saw and the top-level keys that changed; the old
values come from the previous version that had details (a deletion has none, so a restore
is compared with what was there before the deletion, as the store compared it). A status row
records one observed change of a finetune's training status or progress.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bflsync.errors import InputError
from bflsync.extract import INT64_MAX, canonical_json, loads_stored
from bflsync.models import Account, Finetune, FinetuneStatus, FinetuneVersion, SyncError, SyncRun
from bflsync.query import find_finetune, finetune_pk, format_path

_finetune: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
_version: sa.Table = FinetuneVersion.__table__  # type: ignore[attr-defined]
_run: sa.Table = SyncRun.__table__  # type: ignore[attr-defined]
_error: sa.Table = SyncError.__table__  # type: ignore[attr-defined]
_status: sa.Table = FinetuneStatus.__table__  # type: ignore[attr-defined]
_account: sa.Table = Account.__table__  # type: ignore[attr-defined]

_VERSION_SUFFIX = re.compile(r"(.+)@([0-9]+)")


@dataclass(frozen=True, slots=True)
class VersionEntry:
    """One audit version with, per changed key, ``{"old": ..., "new": ...}`` (a missing side is left out)."""

    finetune_id: str
    source: str
    account: str
    version: int
    change: str
    observed_at: datetime
    sync_run_id: int | None
    changes: dict[str, dict[str, Any]]
    details: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "finetune_id": self.finetune_id,
            "source": self.source,
            "account": self.account,
            "version": self.version,
            "change": self.change,
            "observed_at": self.observed_at,
            "sync_run_id": self.sync_run_id,
            "changes": self.changes,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One observed change of a finetune's training status or progress (``change`` is ``"status"``)."""

    finetune_id: str
    source: str
    account: str
    status: str
    progress: float | None
    observed_at: datetime
    sync_run_id: int | None
    answer: Any

    change = "status"

    def as_dict(self) -> dict[str, Any]:
        return {
            "finetune_id": self.finetune_id,
            "source": self.source,
            "account": self.account,
            "change": self.change,
            "status": self.status,
            "progress": self.progress,
            "observed_at": self.observed_at,
            "sync_run_id": self.sync_run_id,
            "answer": self.answer,
        }


HistoryEntry = VersionEntry | StatusEntry


@dataclass(frozen=True, slots=True)
class CreditInterval:
    """A run's credit balance, what it dropped by since the previous reading, and what was new then.

    ``drop`` is the previous balance minus this one (positive when credits were spent; None for
    the first reading). ``new_finetunes`` are the finetunes first seen by the runs after the
    previous reading up to this one: the trainings the drop paid for, as far as the store knows.
    """

    run_id: int
    started_at: datetime
    source: str
    account: str
    credits: float
    drop: float | None
    new_finetunes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "source": self.source,
            "account": self.account,
            "credits": self.credits,
            "drop": self.drop,
            "new_finetunes": self.new_finetunes,
        }


@dataclass(frozen=True, slots=True)
class VersionRef:
    """``ID`` (the current record) or ``ID@N`` (version N) as given to ``bflsync diff``.

    Ids may themselves contain ``@`` and ``/`` and even end in ``@<digits>``, so the text
    alone cannot say which it is: :meth:`resolve` asks the store.
    """

    text: str

    def resolve(
        self, connection: Connection, *, source: str | None = None, account: str | None = None
    ) -> tuple[str, int | None]:
        """``(id, None)`` when the whole text is a stored id, else ``(id, N)`` for a trailing ``@N``.

        Text that is neither is returned whole, for the caller's "no finetune" error.
        """
        match = _VERSION_SUFFIX.fullmatch(self.text)
        if match is None or _is_stored(connection, self.text, source=source, account=account):
            return self.text, None
        finetune_id, digits = match.groups()
        # Length first: int() refuses over 4300 digits, and SQLite binds at most 64 bits.
        if len(digits.lstrip("0")) > len(str(INT64_MAX)) or int(digits) > INT64_MAX:
            raise InputError(f"{self.text!r}: version {digits} is out of range (see `bflsync history`)")
        return finetune_id, int(digits)


@dataclass(frozen=True, slots=True)
class DiffSide:
    finetune_id: str
    source: str
    account: str
    version: int
    details: Any


@dataclass(frozen=True, slots=True)
class Diff:
    """Keys (dotted for nested objects) whose values differ; a side where the key is missing is left out."""

    a: DiffSide
    b: DiffSide
    differences: list[dict[str, Any]]


def history(
    connection: Connection,
    *,
    finetune_id: str | None = None,
    source: str | None = None,
    account: str | None = None,
    since: datetime | None = None,
) -> list[HistoryEntry]:
    """Versions and status changes oldest first: of one finetune, or (``finetune_id=None``) of every
    finetune since ``since``. At the same moment a finetune's version comes before its status.
    """
    if finetune_id is not None:
        pk, _, _ = finetune_pk(connection, finetune_id, source=source, account=account)
        which = _version.c.finetune_pk == pk
        which_status = _status.c.finetune_pk == pk
    else:
        if since is None:
            raise InputError("history needs a finetune ID or --since")
        touched = sa.select(_version.c.finetune_pk).where(_version.c.observed_at >= since).distinct()
        scope = [
            column == value
            for column, value in ((_finetune.c.source, source), (_finetune.c.account, account))
            if value is not None
        ]
        if scope:
            touched = touched.join(_finetune, _finetune.c.id == _version.c.finetune_pk).where(*scope)
        # A subquery rather than a list of ids: no bound-parameter limit to batch around.
        which = _version.c.finetune_pk.in_(touched)
        which_status = sa.and_(_status.c.observed_at >= since, *scope)
    entries: list[HistoryEntry] = [
        entry for entry in _entries(connection, which) if since is None or entry.observed_at >= since
    ]
    entries.extend(status_entries(connection, which_status))
    return sorted(entries, key=_history_order)


def _history_order(entry: HistoryEntry) -> tuple[datetime, str, str, str, int, int]:
    if isinstance(entry, VersionEntry):
        return (entry.observed_at, entry.finetune_id, entry.source, entry.account, 0, entry.version)
    return (entry.observed_at, entry.finetune_id, entry.source, entry.account, 1, 0)


def status_entries(connection: Connection, which: sa.ColumnElement[bool]) -> list[StatusEntry]:
    """The status timeline rows ``which`` selects, oldest first (in the order they were written)."""
    statement = (
        sa.select(_finetune.c.finetune_id, _finetune.c.source, _finetune.c.account, _status)
        .join(_finetune, _finetune.c.id == _status.c.finetune_pk)
        .where(which)
        .order_by(_status.c.finetune_pk, _status.c.id)
    )
    return [
        StatusEntry(
            finetune_id=row.finetune_id,
            source=row.source,
            account=row.account,
            status=row.status,
            progress=row.progress,
            observed_at=row.observed_at,
            sync_run_id=row.sync_run_id,
            answer=json.loads(row.answer),
        )
        for row in connection.execute(statement)
    ]


def status_timeline(
    connection: Connection, finetune_id: str, *, source: str | None = None, account: str | None = None
) -> list[StatusEntry]:
    """Every recorded status change of one finetune, oldest first."""
    pk, _, _ = finetune_pk(connection, finetune_id, source=source, account=account)
    return status_entries(connection, _status.c.finetune_pk == pk)


def credit_history(
    connection: Connection,
    *,
    source: str | None = None,
    account: str | None = None,
    since: datetime | None = None,
) -> list[CreditInterval]:
    """Each run's credit balance per ``(source, account)``, oldest first, with the drop since that
    account's reading before and the finetunes first seen since then; ``since`` keeps runs started
    at or after it.
    """
    query = sa.select(_run.c.id, _run.c.started_at, _run.c.source, _run.c.account, _run.c.credits).where(
        _run.c.credits.is_not(None)
    )
    created = (
        sa.select(_version.c.sync_run_id, _finetune.c.source, _finetune.c.account, _finetune.c.finetune_id)
        .join(_finetune, _finetune.c.id == _version.c.finetune_pk)
        .where(_version.c.change == "created")
    )
    if source is not None:
        query = query.where(_run.c.source == source)
        created = created.where(_finetune.c.source == source)
    if account is not None:
        query = query.where(_run.c.account == account)
        created = created.where(_finetune.c.account == account)
    first_seen: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for run_id, run_source, run_account, finetune_id in connection.execute(created):
        if run_id is not None:
            first_seen.setdefault((run_source, run_account), []).append((run_id, finetune_id))
    previous: dict[tuple[str, str], tuple[int, float]] = {}
    intervals = []
    for run_id, started_at, run_source, run_account, credits in connection.execute(query.order_by(_run.c.id)):
        scope = (run_source, run_account)
        before = previous.get(scope)
        after_id = before[0] if before is not None else 0
        new = sorted(
            finetune_id for seen_in, finetune_id in first_seen.get(scope, []) if after_id < seen_in <= run_id
        )
        drop = round(before[1] - credits, 6) if before is not None else None
        previous[scope] = (run_id, credits)
        if since is None or started_at >= since:
            intervals.append(CreditInterval(run_id, started_at, run_source, run_account, credits, drop, new))
    return intervals


def runs(connection: Connection, *, limit: int | None, account: str | None = None) -> list[dict[str, Any]]:
    """Sync runs (of one account, if given), newest first, each with its ``duration_s`` (``None`` while
    running) and ``credits_change``: its balance minus the one the account's previous run with a
    balance read.
    """
    statement = (
        sa.select(_run, _previous_credits().label("previous_credits"))
        .order_by(_run.c.started_at.desc(), _run.c.id.desc())
        .limit(limit)
    )
    if account is not None:
        statement = statement.where(_run.c.account == account)
    return [_run_dict(row) for row in connection.execute(statement)]


def _previous_credits() -> sa.ScalarSelect[Any]:
    before = _run.alias("before")
    return (
        sa.select(before.c.credits)
        .where(
            before.c.source == _run.c.source,
            before.c.account == _run.c.account,
            before.c.id < _run.c.id,
            before.c.credits.is_not(None),
        )
        .order_by(before.c.id.desc())
        .limit(1)
        .correlate(_run)
        .scalar_subquery()
    )


def accounts(connection: Connection) -> list[dict[str, Any]]:
    """Each (source, account) in the store: finetune counts, its last sync and key fingerprint.

    Pairs that hold finetunes but no ``account`` row (written by library code rather than a
    sync) are listed too, with what is known about them.
    """
    live = sa.func.count().filter(_finetune.c.deleted_at.is_(None))
    counts = {
        (row.source, row.account): (row.live, row.total - row.live)
        for row in connection.execute(
            sa.select(
                _finetune.c.source, _finetune.c.account, live.label("live"), sa.func.count().label("total")
            ).group_by(_finetune.c.source, _finetune.c.account)
        )
    }
    synced = {
        (row.source, row.account): row
        for row in connection.execute(
            sa.select(
                _account.c.source,
                _account.c.account,
                _account.c.key_fingerprint,
                _account.c.first_synced_at,
                _account.c.last_synced_at,
                _account.c.last_run_id,
                _run.c.status.label("last_status"),
            ).outerjoin(_run, _run.c.id == _account.c.last_run_id)
        )
    }
    listed = []
    for source, account in sorted(counts.keys() | synced.keys()):
        row = synced.get((source, account))
        live_count, deleted_count = counts.get((source, account), (0, 0))
        listed.append(
            {
                "source": source,
                "account": account,
                "live": live_count,
                "deleted": deleted_count,
                "first_synced_at": row.first_synced_at if row else None,
                "last_synced_at": row.last_synced_at if row else None,
                "last_run_id": row.last_run_id if row else None,
                "last_status": row.last_status if row else None,
                "key_fingerprint": row.key_fingerprint if row else None,
            }
        )
    return listed


def run_with_errors(connection: Connection, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One sync run and the per-finetune errors it recorded."""
    row = connection.execute(
        sa.select(_run, _previous_credits().label("previous_credits")).where(_run.c.id == run_id)
    ).first()
    if row is None:
        raise InputError(f"no sync run {run_id} in the store (see `bflsync runs`)")
    errors = connection.execute(
        sa.select(_error).where(_error.c.sync_run_id == run_id).order_by(_error.c.finetune_id, _error.c.id)
    )
    return _run_dict(row), [dict(error._mapping) for error in errors]


def diff(
    connection: Connection,
    a: VersionRef,
    b: VersionRef,
    *,
    source: str | None = None,
    account: str | None = None,
) -> Diff:
    """Parameter differences between two finetunes, or two versions of one."""
    left = _side(connection, a, source=source, account=account)
    right = _side(connection, b, source=source, account=account)
    flat_left, flat_right = _flatten(left.details), _flatten(right.details)
    differences = []
    for path in sorted(flat_left.keys() | flat_right.keys()):
        values = {side: flat[path] for side, flat in (("a", flat_left), ("b", flat_right)) if path in flat}
        if len(values) == 2 and canonical_json(values["a"]) == canonical_json(values["b"]):
            continue
        differences.append({"key": format_path(path), **values})
    return Diff(a=left, b=right, differences=differences)


def _entries(connection: Connection, which: sa.ColumnElement[bool]) -> Iterable[VersionEntry]:
    """Every version of the finetunes ``which`` selects, with old values from the one before."""
    statement = (
        sa.select(_finetune.c.finetune_id, _finetune.c.source, _finetune.c.account, _version)
        .join(_finetune, _finetune.c.id == _version.c.finetune_pk)
        .where(which)
        .order_by(_version.c.finetune_pk, _version.c.version)
    )
    previous: dict[int, Any] = {}
    for row in connection.execute(statement):
        details = loads_stored(row.details) if row.details is not None else None
        before = previous.get(row.finetune_pk)
        keys = json.loads(row.changed_keys) if row.changed_keys else []
        yield VersionEntry(
            finetune_id=row.finetune_id,
            source=row.source,
            account=row.account,
            version=row.version,
            change=row.change,
            observed_at=row.observed_at,
            sync_run_id=row.sync_run_id,
            changes={key: _old_new(before, details, key) for key in keys},
            details=details,
        )
        if details is not None:
            previous[row.finetune_pk] = details


def _old_new(before: Any, after: Any, key: str) -> dict[str, Any]:
    change = {}
    if isinstance(before, Mapping) and key in before:
        change["old"] = before[key]
    if isinstance(after, Mapping) and key in after:
        change["new"] = after[key]
    return change


def _run_dict(row: sa.Row[Any]) -> dict[str, Any]:
    run = dict(row._mapping)
    finished = run["finished_at"]
    run["duration_s"] = (finished - run["started_at"]).total_seconds() if finished is not None else None
    previous = run.pop("previous_credits")
    credits = run["credits"]
    run["credits_change"] = (
        round(credits - previous, 6) if credits is not None and previous is not None else None
    )
    return run


def _side(connection: Connection, ref: VersionRef, *, source: str | None, account: str | None) -> DiffSide:
    finetune_id, version = ref.resolve(connection, source=source, account=account)
    if version is None:
        record = find_finetune(connection, finetune_id, source=source, account=account)
        return DiffSide(record.finetune_id, record.source, record.account, record.version, record.details)
    pk, found_source, found_account = finetune_pk(connection, finetune_id, source=source, account=account)
    row = connection.execute(
        sa.select(_version.c.change, _version.c.details).where(
            _version.c.finetune_pk == pk, _version.c.version == version
        )
    ).first()
    label = f"{finetune_id}@{version}"
    if row is None:
        raise InputError(f"{label}: no such version (see `bflsync history {finetune_id}`)")
    if row.details is None:
        raise InputError(f"{label} records the finetune's deletion and has no details to compare")
    return DiffSide(finetune_id, found_source, found_account, version, loads_stored(row.details))


def _is_stored(connection: Connection, finetune_id: str, *, source: str | None, account: str | None) -> bool:
    condition = _finetune.c.finetune_id == finetune_id
    if source is not None:
        condition = sa.and_(condition, _finetune.c.source == source)
    if account is not None:
        condition = sa.and_(condition, _finetune.c.account == account)
    return bool(connection.execute(sa.select(sa.exists().where(condition))).scalar())


def _flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Nested objects become dotted keys, so a change deep inside ``extra`` shows where it is."""
    if not isinstance(value, Mapping) or (prefix and not value):
        return {prefix: value}
    flat: dict[tuple[str, ...], Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, (*prefix, key)))
    return flat


def resolve_side(
    connection: Connection, ref: VersionRef, *, source: str | None = None, account: str | None = None
) -> DiffSide:
    """The details ``ID`` (current record) or ``ID@N`` (version N) names, as ``diff`` and ``compare`` read them."""
    return _side(connection, ref, source=source, account=account)

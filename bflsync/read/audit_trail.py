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
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from bflsync.columns import ERROR_FIELDS, RUN_FIELDS
from bflsync.errors import InputError
from bflsync.extract import INT64_MAX, canonical_json, flatten_details
from bflsync.read.filters import field_name
from bflsync.read.lookup import find_finetune, is_stored
from bflsync.read.reader import Reader
from bflsync.read.records import decode_details, decode_time

_VERSION_SUFFIX = re.compile(r"(.+)@([0-9]+)")
_RUN_TIMES = ("started_at", "finished_at")
_RUN_FLAGS = ("key_changed",)


class VersionEntry(NamedTuple):
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


class StatusEntry(NamedTuple):
    """One observed change of a finetune's training status or progress (``change`` is ``"status"``)."""

    finetune_id: str
    source: str
    account: str
    status: str
    progress: float | None
    observed_at: datetime
    sync_run_id: int | None
    answer: Any

    @property
    def change(self) -> str:
        return "status"

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


class CreditInterval(NamedTuple):
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


class VersionRef(NamedTuple):
    """``ID`` (the current record) or ``ID@N`` (version N) as given to ``bflsync diff``.

    Ids may themselves contain ``@`` and ``/`` and even end in ``@<digits>``, so the text
    alone cannot say which it is: :meth:`resolve` asks the store.
    """

    text: str

    def resolve(
        self, reader: Reader, *, source: str | None = None, account: str | None = None
    ) -> tuple[str, int | None]:
        """``(id, None)`` when the whole text is a stored id, else ``(id, N)`` for a trailing ``@N``.

        Text that is neither is returned whole, for the caller's "no finetune" error.
        """
        match = _VERSION_SUFFIX.fullmatch(self.text)
        if match is None or is_stored(reader, self.text, source=source, account=account):
            return self.text, None
        finetune_id, digits = match.groups()
        # Length first: int() refuses over 4300 digits, and SQLite binds at most 64 bits.
        if len(digits.lstrip("0")) > len(str(INT64_MAX)) or int(digits) > INT64_MAX:
            raise InputError(f"{self.text!r}: version {digits} is out of range (see `bflsync history`)")
        return finetune_id, int(digits)


class DiffSide(NamedTuple):
    finetune_id: str
    source: str
    account: str
    version: int
    details: Any


class Diff(NamedTuple):
    """Keys (dotted for nested objects) whose values differ; a side where the key is missing is left out."""

    a: DiffSide
    b: DiffSide
    differences: list[dict[str, Any]]


def history(
    reader: Reader,
    *,
    finetune_id: str | None = None,
    source: str | None = None,
    account: str | None = None,
    since: datetime | None = None,
) -> list[HistoryEntry]:
    """Versions and status changes oldest first: of one finetune, or (``finetune_id=None``) of every
    finetune since ``since``. At the same moment a finetune's version comes before its status.
    """
    params: list[Any]
    status_params: list[Any]
    if finetune_id is not None:
        found = find_finetune(reader, finetune_id, source=source, account=account)
        which, params = "v.finetune_pk = ?", [found.pk]
        which_status, status_params = "s.finetune_pk = ?", [found.pk]
    else:
        if since is None:
            raise InputError("history needs a finetune ID or --since")
        # A subquery rather than a list of ids: no bound-parameter limit to batch around.
        touched = (
            "SELECT t.finetune_pk FROM finetune_version t JOIN finetune s ON s.id = t.finetune_pk"
            " WHERE t.observed_at >= ?"
        )
        params = [reader.time_param(since)]
        which_status, status_params = "s.observed_at >= ?", [reader.time_param(since)]
        for column, value in (("source", source), ("account", account)):
            if value is not None:
                touched += f" AND s.{column} = ?"
                params.append(value)
                which_status += f" AND f.{column} = ?"
                status_params.append(value)
        which = f"v.finetune_pk IN ({touched})"
    entries: list[HistoryEntry] = [
        e for e in _entries(reader, which, params) if since is None or e.observed_at >= since
    ]
    entries.extend(_status_entries(reader, which_status, status_params))
    return sorted(entries, key=_history_order)


def _history_order(entry: HistoryEntry) -> tuple[datetime, str, str, str, int, int]:
    if isinstance(entry, VersionEntry):
        return (entry.observed_at, entry.finetune_id, entry.source, entry.account, 0, entry.version)
    return (entry.observed_at, entry.finetune_id, entry.source, entry.account, 1, 0)


def _status_entries(reader: Reader, which: str, params: Sequence[Any]) -> list[StatusEntry]:
    """The status timeline rows ``which`` selects, oldest first (in the order they were written)."""
    rows = reader.rows(
        "SELECT f.finetune_id, f.source, f.account, s.status, s.progress, s.observed_at, s.sync_run_id,"
        " s.answer FROM finetune_status s JOIN finetune f ON f.id = s.finetune_pk"
        f" WHERE {which} ORDER BY s.finetune_pk, s.id",
        params,
    )
    entries = []
    for finetune_id, source, account, status, progress, observed_at, run_id, answer in rows:
        observed = decode_time(observed_at)
        assert observed is not None
        entries.append(
            StatusEntry(
                finetune_id=finetune_id,
                source=source,
                account=account,
                status=status,
                progress=progress,
                observed_at=observed,
                sync_run_id=run_id,
                answer=json.loads(answer),
            )
        )
    return entries


def status_timeline(reader: Reader, pk: int) -> list[StatusEntry]:
    """Every recorded status change of one finetune (by its primary key), oldest first."""
    return _status_entries(reader, "s.finetune_pk = ?", [pk])


def credit_history(
    reader: Reader,
    *,
    source: str | None = None,
    account: str | None = None,
    since: datetime | None = None,
) -> list[CreditInterval]:
    """Each run's credit balance per ``(source, account)``, oldest first, with the drop since that
    account's reading before and the finetunes first seen since then; ``since`` keeps runs started
    at or after it.
    """
    runs_sql = "SELECT id, started_at, source, account, credits FROM sync_run WHERE credits IS NOT NULL"
    created_sql = (
        "SELECT v.sync_run_id, f.source, f.account, f.finetune_id FROM finetune_version v"
        " JOIN finetune f ON f.id = v.finetune_pk WHERE v.change = 'created'"
    )
    run_params: list[Any] = []
    created_params: list[Any] = []
    for column, value in (("source", source), ("account", account)):
        if value is not None:
            runs_sql += f" AND {column} = ?"
            run_params.append(value)
            created_sql += f" AND f.{column} = ?"
            created_params.append(value)
    first_seen: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for run_id, run_source, run_account, finetune_id in reader.rows(created_sql, created_params):
        if run_id is not None:
            first_seen.setdefault((run_source, run_account), []).append((run_id, finetune_id))
    for seen in first_seen.values():
        seen.sort()
    # Per scope: the previous reading's run and balance, and how far into first_seen it reached.
    # Runs come in id order, so each creation is looked at once, not once per later run.
    previous: dict[tuple[str, str], tuple[int, float, int]] = {}
    intervals = []
    for run_id, started, run_source, run_account, credits in reader.rows(
        runs_sql + " ORDER BY id", run_params
    ):
        started_at = decode_time(started)
        assert started_at is not None
        scope = (run_source, run_account)
        before = previous.get(scope)
        after_id, start = (before[0], before[2]) if before is not None else (0, 0)
        seen = first_seen.get(scope, [])
        end = bisect_right(seen, run_id, lo=start, key=itemgetter(0))
        new = sorted(finetune_id for seen_in, finetune_id in seen[start:end] if seen_in > after_id)
        drop = round(before[1] - credits, 6) if before is not None else None
        previous[scope] = (run_id, credits, end)
        if since is None or started_at >= since:
            intervals.append(CreditInterval(run_id, started_at, run_source, run_account, credits, drop, new))
    return intervals


_RUN_SELECT = ", ".join(f"r.{name}" for name in RUN_FIELDS)
# The balance the same (source, account)'s previous run with a balance read, for credits_change.
_PREVIOUS_CREDITS = (
    "(SELECT b.credits FROM sync_run b WHERE b.source = r.source AND b.account = r.account"
    " AND b.id < r.id AND b.credits IS NOT NULL ORDER BY b.id DESC LIMIT 1)"
)


def runs(reader: Reader, *, limit: int | None, account: str | None = None) -> list[dict[str, Any]]:
    """Sync runs (of one account, if given), newest first, each with its ``duration_s`` (``None`` while
    running) and ``credits_change``: its balance minus the one the account's previous run with a
    balance read.
    """
    statement = f"SELECT {_RUN_SELECT}, {_PREVIOUS_CREDITS} AS previous_credits FROM sync_run r"
    params: list[Any] = []
    if account is not None:
        statement += " WHERE r.account = ?"
        params.append(account)
    statement += " ORDER BY r.started_at DESC, r.id DESC"
    if limit is not None:
        statement += " LIMIT ?"
        params.append(limit)
    names, rows = reader.named_rows(statement, params)
    return [_run_dict(names, row) for row in rows]


def accounts(reader: Reader) -> list[dict[str, Any]]:
    """Each (source, account) in the store: finetune counts, its last sync and key fingerprint.

    Pairs that hold finetunes but no ``account`` row (written by library code rather than a
    sync) are listed too, with what is known about them.
    """
    counts = {
        (source, account): (int(live), int(total) - int(live))
        for source, account, live, total in reader.rows(
            "SELECT source, account, SUM(CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END), COUNT(*)"
            " FROM finetune GROUP BY source, account"
        )
    }
    synced = {
        (row[0], row[1]): row[2:]
        for row in reader.rows(
            "SELECT a.source, a.account, a.key_fingerprint, a.first_synced_at, a.last_synced_at,"
            " a.last_run_id, r.status FROM account a LEFT JOIN sync_run r ON r.id = a.last_run_id"
        )
    }
    listed = []
    for source, account in sorted(counts.keys() | synced.keys()):
        fingerprint, first_synced, last_synced, last_run_id, last_status = synced.get(
            (source, account), (None, None, None, None, None)
        )
        live_count, deleted_count = counts.get((source, account), (0, 0))
        listed.append(
            {
                "source": source,
                "account": account,
                "live": live_count,
                "deleted": deleted_count,
                "first_synced_at": decode_time(first_synced),
                "last_synced_at": decode_time(last_synced),
                "last_run_id": last_run_id,
                "last_status": last_status,
                "key_fingerprint": fingerprint,
            }
        )
    return listed


def run_with_errors(reader: Reader, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One sync run and the per-finetune errors it recorded."""
    names, rows = reader.named_rows(
        f"SELECT {_RUN_SELECT}, {_PREVIOUS_CREDITS} AS previous_credits FROM sync_run r WHERE r.id = ?",
        [run_id],
    )
    if not rows:
        raise InputError(f"no sync run {run_id} in the store (see `bflsync runs`)")
    error_names, errors = reader.named_rows(
        f"SELECT {', '.join(ERROR_FIELDS)} FROM sync_error WHERE sync_run_id = ? ORDER BY finetune_id, id",
        [run_id],
    )
    return _run_dict(names, rows[0]), [dict(zip(error_names, error, strict=True)) for error in errors]


def diff(
    reader: Reader, a: VersionRef, b: VersionRef, *, source: str | None = None, account: str | None = None
) -> Diff:
    """Parameter differences between two finetunes, or two versions of one."""
    left = _side(reader, a, source=source, account=account)
    right = _side(reader, b, source=source, account=account)
    flat_left, flat_right = flatten_details(left.details), flatten_details(right.details)
    differences = []
    for path in sorted(flat_left.keys() | flat_right.keys()):
        values = {side: flat[path] for side, flat in (("a", flat_left), ("b", flat_right)) if path in flat}
        if len(values) == 2 and canonical_json(values["a"]) == canonical_json(values["b"]):
            continue

        differences.append({"field": field_name(path), **values})
    return Diff(a=left, b=right, differences=differences)


def _entries(reader: Reader, which: str, params: Sequence[Any]) -> Iterable[VersionEntry]:
    """Every version of the finetunes ``which`` selects, with old values from the one before."""
    rows = reader.rows(
        "SELECT f.finetune_id, f.source, f.account, v.finetune_pk, v.version, v.change, v.details, v.changed_keys,"
        " v.observed_at, v.sync_run_id FROM finetune_version v JOIN finetune f ON f.id = v.finetune_pk"
        f" WHERE {which} ORDER BY v.finetune_pk, v.version",
        params,
    )
    previous: dict[int, Any] = {}
    for finetune_id, source, account, pk, version, change, text, changed, observed_at, run_id in rows:
        details, _ = decode_details(text)
        before = previous.get(pk)
        keys = _json_list(changed)
        observed = decode_time(observed_at)
        assert observed is not None
        yield VersionEntry(
            finetune_id=finetune_id,
            source=source,
            account=account,
            version=version,
            change=change,
            observed_at=observed,
            sync_run_id=run_id,
            changes={key: _old_new(before, details, key) for key in keys},
            details=details,
        )
        if details is not None:
            previous[pk] = details


def _json_list(text: str | None) -> list[str]:
    return list(json.loads(text)) if text else []


def _old_new(before: Any, after: Any, key: str) -> dict[str, Any]:
    change = {}
    if isinstance(before, Mapping) and key in before:
        change["old"] = before[key]
    if isinstance(after, Mapping) and key in after:
        change["new"] = after[key]
    return change


def _run_dict(names: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    run = dict(zip(names, row, strict=True))
    for name in _RUN_TIMES:
        run[name] = decode_time(run[name])
    for name in _RUN_FLAGS:
        # SQLite keeps booleans as 0 and 1.
        if run.get(name) is not None:
            run[name] = bool(run[name])
    finished = run["finished_at"]
    run["duration_s"] = (finished - run["started_at"]).total_seconds() if finished is not None else None
    previous = run.pop("previous_credits")
    credits = run["credits"]
    run["credits_change"] = (
        round(credits - previous, 6) if credits is not None and previous is not None else None
    )
    return run


def _side(reader: Reader, ref: VersionRef, *, source: str | None, account: str | None) -> DiffSide:
    finetune_id, version = ref.resolve(reader, source=source, account=account)
    found = find_finetune(reader, finetune_id, source=source, account=account)
    record = found.record
    if version is None:
        return DiffSide(record.finetune_id, record.source, record.account, record.version, record.details)
    rows = reader.rows(
        "SELECT change, details FROM finetune_version WHERE finetune_pk = ? AND version = ?",
        [found.pk, version],
    )
    label = f"{finetune_id}@{version}"
    if not rows:
        raise InputError(f"{label}: no such version (see `bflsync history {finetune_id}`)")
    if rows[0][1] is None:
        raise InputError(f"{label} records the finetune's deletion and has no details to compare")
    return DiffSide(finetune_id, record.source, record.account, version, decode_details(rows[0][1])[0])


def resolve_side(
    reader: Reader, ref: VersionRef, *, source: str | None = None, account: str | None = None
) -> DiffSide:
    """The details ``ID`` (current record) or ``ID@N`` (version N) names, as ``diff`` and ``compare`` read them."""
    return _side(reader, ref, source=source, account=account)


def statuses_before(
    reader: Reader, since: datetime, *, source: str | None = None, account: str | None = None
) -> dict[tuple[str, str, str], str]:
    """Each finetune's training status as last observed before ``since``, keyed by (id, source, account):
    what a status seen at or after ``since`` changed from."""
    conditions, params = (
        ["s.id IN (SELECT max(id) FROM finetune_status WHERE observed_at < ? GROUP BY finetune_pk)"],
        [reader.time_param(since)],
    )
    for column, value in (("f.source", source), ("f.account", account)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    rows = reader.rows(
        "SELECT f.finetune_id, f.source, f.account, s.status FROM finetune_status s"
        f" JOIN finetune f ON f.id = s.finetune_pk WHERE {' AND '.join(conditions)}",
        params,
    )
    return {(str(i), str(s), str(a)): str(status) for i, s, a, status in rows}


def last_change(
    reader: Reader, finetune_id: str, *, source: str | None = None, account: str | None = None
) -> tuple[str, str]:
    """``ID@N-1`` and ``ID@N`` for a finetune whose current version is N: what ``diff ID`` compares.

    A finetune with one version has nothing to compare: an :class:`InputError`.
    """
    found = find_finetune(reader, finetune_id, source=source, account=account).record
    if found.version <= 1:
        raise InputError(
            f"finetune {found.finetune_id!r} has one version only: nothing to compare "
            "(give a second ID to compare two finetunes)"
        )
    return f"{found.finetune_id}@{found.version - 1}", f"{found.finetune_id}@{found.version}"

"""What ``bflsync status`` reports: per (source, account), the last run and last success, the finetunes
and the balance; for the store, its schema revision and who holds the sync lock.

Everything is read through a :class:`~bflsync.read.reader.Reader`, so the command imports no
SQLAlchemy on SQLite, and the same queries serve the metrics file after a sync (through the
sync's own connection). Staleness is judged on the last run with status ``ok``: a partial run
stored most finetunes, but it is not the success an alert should wait for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from bflsync.bfl.status import SETTLED_STATUSES
from bflsync.columns import RUN_COUNTERS
from bflsync.read.reader import Reader
from bflsync.read.records import decode_time
from bflsync.store.flock_holder import flock_holder, process_alive

Key = tuple[str, str]
RUN_COLUMNS: Final = ("id", "status", "started_at", "finished_at", *RUN_COUNTERS, "credits", "error")
_SETTLED_SQL: Final = ", ".join("'" + status.replace("'", "''") + "'" for status in sorted(SETTLED_STATUSES))


@dataclass(frozen=True, kw_only=True)
class AccountHealth:
    """One (source, account): its newest run, its newest ``ok`` run and what the store holds for it."""

    source: str
    account: str
    last_run: dict[str, Any] | None
    last_success: dict[str, Any] | None
    live: int
    deleted: int
    training: int
    credits: float | None

    @property
    def key(self) -> Key:
        return (self.source, self.account)

    @property
    def last_success_at(self) -> datetime | None:
        return self.last_success["finished_at"] if self.last_success else None

    def age(self, now: datetime) -> timedelta | None:
        """How long ago the last success ended; None when there never was one."""
        at = self.last_success_at
        return None if at is None else now - at

    def is_stale(self, now: datetime, max_age: timedelta) -> bool:
        age = self.age(now)
        return age is None or age > max_age

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "account": self.account,
            "last_run": self.last_run,
            "last_success": self.last_success,
            "finetunes": {"live": self.live, "deleted": self.deleted, "training": self.training},
            "credits": self.credits,
        }


@dataclass(frozen=True, kw_only=True)
class LockState:
    """Whether a sync holds the store's lock, and its pid where that can be told (None: unknown)."""

    held: bool | None
    pid: int | None

    def as_json(self) -> dict[str, Any]:
        return {"held": self.held, "pid": self.pid}


def schema_revision(reader: Reader) -> str | None:
    rows = reader.rows("SELECT version_num FROM alembic_version")
    return str(rows[0][0]) if rows else None


def accounts(reader: Reader, *, source: str | None = None, account: str | None = None) -> list[AccountHealth]:
    """Every (source, account) with runs or finetunes in the store, sorted, optionally only one source/account."""
    last_runs = _runs_by_key(reader, "")
    successes = _runs_by_key(reader, "status = 'ok'")
    credits = {
        (row[0], row[1]): row[2]
        for row in reader.rows(
            "SELECT r.source, r.account, r.credits FROM sync_run r WHERE r.id = (SELECT max(s.id) FROM"
            " sync_run s WHERE s.source = r.source AND s.account = r.account AND s.credits IS NOT NULL)"
        )
    }
    counts = {
        (row[0], row[1]): (int(row[2]), int(row[3]), int(row[4]))
        for row in reader.rows(
            "SELECT source, account, SUM(CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END),"
            " SUM(CASE WHEN deleted_at IS NULL AND status IS NOT NULL"
            f" AND status NOT IN ({_SETTLED_SQL}) THEN 1 ELSE 0 END)"
            " FROM finetune GROUP BY source, account"
        )
    }
    keys = sorted(last_runs.keys() | counts.keys())
    return [
        AccountHealth(
            source=key[0],
            account=key[1],
            last_run=last_runs.get(key),
            last_success=successes.get(key),
            live=counts.get(key, (0, 0, 0))[0],
            deleted=counts.get(key, (0, 0, 0))[1],
            training=counts.get(key, (0, 0, 0))[2],
            credits=credits.get(key),
        )
        for key in keys
        if (source is None or key[0] == source) and (account is None or key[1] == account)
    ]


def _runs_by_key(reader: Reader, condition: str) -> dict[Key, dict[str, Any]]:
    """The newest run of each (source, account) meeting ``condition`` (a constant SQL condition)."""
    inner = f" AND s.{condition}" if condition else ""
    names, rows = reader.named_rows(
        f"SELECT r.source, r.account, {', '.join('r.' + name for name in RUN_COLUMNS)} FROM sync_run r"
        " WHERE r.id = (SELECT max(s.id) FROM sync_run s WHERE s.source = r.source"
        f" AND s.account = r.account{inner})"
    )
    found = {}
    for row in rows:
        run = dict(zip(names[2:], row[2:], strict=True))
        run["started_at"] = decode_time(run["started_at"])
        run["finished_at"] = decode_time(run["finished_at"])
        found[(row[0], row[1])] = run
    return found


def lock_state(reader: Reader, *, path: str | None) -> LockState:
    """Who holds the sync lock: the ``flock`` on a SQLite file (``path``), or PostgreSQL's advisory lock."""
    if path is not None:
        return _sqlite_lock(reader, path)
    held = bool(reader.rows(_PG_LOCK_HELD))
    return LockState(held=held, pid=_running_pid(reader) if held else None)


# The lock bflsync.store.lock takes: at head the one row of bflsync_lock (FOR UPDATE holds a
# RowShareLock on the table), before 0013_hardening an advisory lock on hashtext(...) as a bigint,
# which is (classid << 32) | objid.
_PG_LOCK_HELD: Final = (
    "SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'relation' AND granted"
    " AND mode = 'RowShareLock' AND relation = pg_catalog.to_regclass('bflsync_lock')"
    " AND pid <> pg_catalog.pg_backend_pid()"
    " UNION ALL"
    " SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    " AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
    " AND ((classid::bigint << 32) | objid::bigint) = hashtext('bflsync sync ' || current_database())::bigint"
)


def _sqlite_lock(reader: Reader, path: str) -> LockState:
    """The holder from Linux's ``/proc/locks`` (exact); elsewhere, a running run whose process is alive."""
    try:
        pid = flock_holder(os.stat(path))
    except OSError:
        pid = _running_pid(reader)
        alive = pid if pid is not None and process_alive(pid) else None
        return LockState(held=True if alive is not None else None, pid=alive)
    return LockState(held=pid is not None, pid=pid or None)


def _running_pid(reader: Reader) -> int | None:
    rows = reader.rows("SELECT pid FROM sync_run WHERE status = 'running' ORDER BY id DESC LIMIT 1")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None

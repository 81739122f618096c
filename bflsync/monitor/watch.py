"""One sync invocation as monitoring sees it: a start ping, then the metrics file and the exit-code ping.

:class:`RunWatch` is driven by the sync command: :meth:`~RunWatch.watching` wraps everything from
taking the lock to the end of the run, :meth:`~RunWatch.finished` records a run that ran, and an
error that stopped the sync before a run could (the lock held by another sync, a store that cannot
be opened) is recorded on its way out with the exit code it will have. Neither the metrics file
nor a ping can change the outcome: what goes wrong with them is a warning line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bflsync.columns import RUN_COUNTERS
from bflsync.errors import BflsyncError, ExitCode, InputError, StoppedBySignalError, SyncLockedError
from bflsync.monitor import health, metrics
from bflsync.monitor.ping import Pinger
from bflsync.read.reader import open_reader
from bflsync.sync.run import SyncResult

Warn = Callable[[str], None]


def check_metrics_path(path: Path) -> Path:
    """The metrics file's path, if it can be written there: its directory must exist (exit 2 otherwise)."""
    if path.is_dir():
        raise InputError(f"--metrics-file {path} is a directory; name a file such as {path / 'bflsync.prom'}")
    if not path.parent.is_dir():
        raise InputError(f"--metrics-file {path}: directory {path.parent} does not exist")
    return path


@dataclass(kw_only=True)
class RunWatch:
    """The monitoring side of one sync of ``(source, account)``."""

    source: str
    account: str
    metrics_file: Path | None
    pinger: Pinger | None
    now: Callable[[], datetime]
    warn: Warn
    # False under --quiet: a ping that never arrives is what the healthcheck service alerts on.
    warn_pings: bool = True
    _done: bool = False

    @contextmanager
    def watching(self) -> Iterator[RunWatch]:
        """Ping the start; if the sync stops on an error before :meth:`finished`, record that error."""
        started = self.now()
        try:
            self._ping("start")  # inside: a signal during the ping is recorded too
            yield self
        except Exception as exc:
            if not self._done:
                self._record_error(exc, duration_s=(self.now() - started).total_seconds())
            raise
        finally:
            if self.pinger is not None:
                self.pinger.close()

    def _record_error(self, exc: Exception, *, duration_s: float) -> None:
        """A sync that stopped before its run could: refused by the lock, or failed with ``exc``."""
        if isinstance(exc, BflsyncError):
            status = _status_of(exc)
            exit_code, error = int(exc.exit_code), str(exc)
        else:  # the CLI reports it as an internal error
            status, exit_code, error = (
                "failed",
                int(ExitCode.INTERNAL),
                f"internal error: {type(exc).__name__}",
            )
        summary = {
            "status": status,
            "source": self.source,
            "account": self.account,
            "exit_code": exit_code,
            "error": error,
        }
        self._record(status=status, exit_code=exit_code, duration_s=duration_s, summary=summary, db=None)

    def finished(self, result: SyncResult, *, exit_code: int, db: str | None) -> None:
        """Record a run that ran, whatever its status; the store ``db`` (``--db``) is read for its figures."""
        self._record(
            status=result.status,
            exit_code=exit_code,
            duration_s=result.duration_s,
            summary={**result.as_json(), "exit_code": exit_code, "error": result.error},
            db=db,
            counts=result.counts(),
            credits=result.credits,
            run_id=result.run_id,
        )

    def _record(
        self,
        *,
        status: str,
        exit_code: int,
        duration_s: float,
        summary: dict[str, Any],
        db: str | None,
        counts: dict[str, int] | None = None,
        credits: float | None = None,
        run_id: int | None = None,
    ) -> None:
        self._done = True
        if self.metrics_file is not None:
            ended = self.now().timestamp()
            item = metrics.AccountMetrics(
                source=self.source,
                account=self.account,
                last_run_at=ended,
                status=status,
                exit_code=exit_code,
                duration_s=round(duration_s, 3),
                counts=counts or dict.fromkeys(RUN_COUNTERS, 0),
                last_success_at=ended if status == "ok" else None,
                credits=credits,
            )
            try:
                metrics.update_file(self.metrics_file, self._with_store_figures(item, db, run_id))
            except OSError as exc:
                self.warn(f"cannot write the metrics file {self.metrics_file}: {exc.strerror or exc}")
        self._ping(str(exit_code), json.dumps(summary, sort_keys=True).encode())

    def _with_store_figures(
        self, item: metrics.AccountMetrics, db: str | None, run_id: int | None
    ) -> metrics.AccountMetrics:
        """``item`` with what the store records for this account: its run's end, the last success, the
        finetune counts and the balance, so the file agrees with ``bflsync status`` to the microsecond."""
        if run_id is None:
            return item  # no run row to read: the sync stopped before its run
        try:
            with open_reader(db) as reader:
                found = health.accounts(reader, source=self.source, account=self.account)
        except Exception as exc:  # the run's outcome stands; the file keeps what it knew
            self.warn(f"cannot read the store's figures for the metrics file: {type(exc).__name__}")
            return item
        if not found:
            return item
        figures = found[0]
        last_run = figures.last_run or {}
        ended = last_run.get("finished_at") if last_run.get("id") == run_id else None
        last_success = figures.last_success_at
        return replace(
            item,
            last_run_at=ended.timestamp() if ended is not None else item.last_run_at,
            last_success_at=last_success.timestamp() if last_success is not None else item.last_success_at,
            live=figures.live,
            deleted=figures.deleted,
            credits=item.credits if item.credits is not None else figures.credits,
        )

    def _ping(self, suffix: str, body: bytes = b"") -> None:
        if self.pinger is None:
            return
        problem = self.pinger.ping(suffix, body)
        if problem is not None and self.warn_pings:
            self.warn(problem)


def _status_of(exc: BflsyncError) -> str:
    """The status a sync stopped before its run by ``exc`` is recorded with."""
    if isinstance(exc, SyncLockedError):
        return metrics.LOCKED
    if isinstance(exc, StoppedBySignalError):
        return "interrupted"
    return "failed"

"""One sync run: list the account's finetunes, fetch their details concurrently, store, report.

The network side and the database side meet at one bounded queue, in one task group. A fixed
window of fetch tasks feeds it (the client's semaphore decides how many requests are actually
in flight); a single writer drains it and stores a batch every ``batch_size`` results or
``flush_interval_s`` seconds, each batch one short write transaction. So the write lock is
never held across network I/O, a crash loses at most the batch being written, and memory
stays flat however many finetunes the account has: the queue, the batch and the fetch
window are all bounded.

Nothing here prints, reads the environment or handles signals: the caller passes ``now``,
a progress callback and a ``stop`` event, and renders the returned :class:`SyncResult`, which
says how the run ended, failures included.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from bflsync.bfl.client import BflClient
from bflsync.bfl.endpoints import DETAILS_PATH, LIST_PATH, RESULT_PATH
from bflsync.bfl.key_forms import key_pattern
from bflsync.bfl.server_text import printable, truncate
from bflsync.bfl.status import BadStatusAnswer, parse_answer
from bflsync.columns import RUN_COUNTERS
from bflsync.config import DEFAULT_ACCOUNT, MAX_CONCURRENCY, Secret
from bflsync.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    BflsyncError,
    CreditsError,
    ExitCode,
    RunFailedError,
    RunLimitError,
    UpstreamGoneError,
)
from bflsync.store import redaction, status_writes, writes
from bflsync.store.fingerprint import key_fingerprint
from bflsync.sync.gone import GoneTally

logger = logging.getLogger("bflsync.sync.run")
T = TypeVar("T")

DEFAULT_BATCH_SIZE: Final = 2000
DEFAULT_FLUSH_INTERVAL_S: Final = 1.0
# Fetch tasks alive at once. The client's semaphore caps the requests actually in flight at its
# concurrency (at most MAX_CONCURRENCY); the window only bounds how many ids are picked up.
FETCH_WINDOW: Final = MAX_CONCURRENCY

# Counted in a batch's outcomes for each finetune the store refused (a ``storage`` sync_error).
STORAGE_FAILED: Final = "storage_failed"

ProgressCallback = Callable[[int, int], None]
"""Called with (finetunes finished, finetunes to fetch) after each finetune's requests, success or not."""
STATUS_CHANGED: Final = "status_changed"


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """What to sync; the defaults are a full sync of every listed finetune of the ``default`` account."""

    account: str = DEFAULT_ACCOUNT
    only_ids: tuple[str, ...] = ()
    new_only: bool = False
    dry_run: bool = False
    allow_empty_listing: bool = False
    accept_new_key: bool = False
    # Training status: asked for listed finetunes whose recorded status is not settled.
    status: bool = True
    refresh_status: bool = False
    strict_status: bool = False
    credits: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S


@dataclass(frozen=True, kw_only=True)
class FetchFailure:
    """A finetune whose details (or, with ``of_status``, whose status) could not be used in this run, and why."""

    finetune_id: str
    kind: str
    http_status: int | None
    message: str
    attempts: int
    of_status: bool = False


@dataclass(kw_only=True)
class SyncResult:
    """How a run ended: its status, its counts and, for a failed run, the error that failed it.

    ``run_id`` is None for a dry run, which records nothing.
    """

    run_id: int | None
    status: str
    source: str
    account: str
    dry_run: bool
    listed: int = 0
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    restored: int = 0
    failed: int = 0
    status_failed: int = 0
    status_checked: int = 0
    status_changed: int = 0
    credits: float | None = None
    key_changed: bool = False
    duration_s: float = 0.0
    # Why the run did not finish, as its run row says it (an interrupted run's too).
    error: str | None = None
    # What a failed run ended on: a RunFailedError when the run could not do its job (the listing
    # failed, a foreign or refused key, a limit of the run), else the unexpected error as raised.
    failure: Exception | None = None
    # The signal (SIGINT, SIGTERM) the caller stopped the run on, if any.
    signum: int | None = None

    def exit_code(self, *, signum: int | None = None) -> int:
        """The documented exit code of this outcome; ``signum`` is the signal that stopped the run, if any
        (default :attr:`signum`).

        A signal that came after fetching had ended changed nothing: the code follows the run.
        """
        signum = signum if signum is not None else self.signum
        if self.status == "ok":
            return int(ExitCode.OK)
        if self.status == "partial":
            return int(ExitCode.PARTIAL)
        if self.status == "interrupted":
            return 128 + (signum if signum is not None else signal.SIGINT)
        if isinstance(self.failure, BflsyncError):
            return int(self.failure.exit_code)
        return int(ExitCode.CANNOT_RUN)

    def counts(self) -> dict[str, int]:
        """The ``sync_run`` counter columns."""
        return {name: getattr(self, name) for name in RUN_COUNTERS}

    def as_json(self) -> dict[str, Any]:
        """The documented ``sync --json`` object."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "source": self.source,
            "account": self.account,
            **self.counts(),
            "status_checked": self.status_checked,
            "status_changed": self.status_changed,
            "credits": self.credits,
            "key_changed": self.key_changed,
            "duration_s": round(self.duration_s, 3),
        }


_Fetched = writes.Observation | status_writes.StatusObservation | FetchFailure
_AccountClaim = tuple[str, bool]
"""The key fingerprint a run may record for its account, and whether it replaces the recorded one."""
# What one finetune's requests gave, queued as one item: a stop or error between its details and its
# status must not leave half of it to be stored.
_Finished = tuple[_Fetched, ...]


async def run_sync(
    *,
    engine: Engine | None,
    client: BflClient,
    options: SyncOptions,
    now: Callable[[], datetime],
    pid: int,
    progress: ProgressCallback | None = None,
    stop: asyncio.Event | None = None,
) -> SyncResult:
    """Run one sync against ``engine`` (None only for a dry run against a store that does not exist).

    The caller holds the sync lock (so every ``running`` run is a dead process's) and has brought
    the store to head, or for a dry run opened it read-only. However a started run ends, the
    result says so, with everything fetched until then stored and counted: ``ok``, ``partial``,
    ``interrupted`` (``stop`` was set: in-flight fetches are abandoned, nothing is tombstoned) or
    ``failed`` (the error in ``failure``, unexpected ones included). Raised are only an error
    before the run began (there is no run to report) and a ``BaseException`` such as
    ``KeyboardInterrupt``, after the run is marked failed.
    """
    if engine is None and not options.dry_run:
        raise ValueError("only a dry run can go without a store")
    started = time.monotonic()
    with _recorder(
        engine, source=client.source, account=options.account, now=now, pid=pid, dry_run=options.dry_run
    ) as recorder:
        run = _Run(client=client, recorder=recorder, options=options, progress=progress, stop=stop)
        result = await run.execute()
    result.duration_s = time.monotonic() - started
    return result


class _Recorder(Protocol):
    """Every database step of a run. Writing, previewing (``--dry-run``) and running without a store
    are three implementations, so the run itself never asks which one it has.
    """

    run_id: int | None
    account: str
    # This run's key against the one recorded for the account; None when there is no store to ask.
    key_state: _KeyState | None

    def begin_run(self, api_key: Secret) -> None: ...

    def note_listed(self, listed: int) -> None:
        """Remember the listing's size, for the first batch to record (a killed run still tells it)."""
        ...

    def live_ids(self) -> set[str]: ...

    def settled_ids(self) -> set[str]:
        """Stored finetune ids whose status is settled (Ready, Error, moderated, unknown…)."""
        ...

    def record(self, batch: Sequence[_Fetched]) -> Counter[str]:
        """Store one batch of results; return how many finetunes each outcome took."""
        ...

    def finish(
        self, result: SyncResult, *, listed_ids: Iterable[str] | None, account_claim: _AccountClaim | None
    ) -> None:
        """Tombstone what the listing lost (when given), record the account's key (when claimed) and
        close the run."""
        ...

    def fail_quietly(self, result: SyncResult) -> None:
        """Best effort after an unexpected error."""
        ...


@contextmanager
def _recorder(
    engine: Engine | None,
    *,
    source: str,
    account: str,
    now: Callable[[], datetime],
    pid: int,
    dry_run: bool,
) -> Iterator[_Recorder]:
    if engine is None:
        yield _NoStore(account=account)
        return
    with Session(engine) as session:
        if dry_run:
            yield _Preview(session, source=source, account=account)
        else:
            yield _Writer(session, source=source, account=account, now=now, pid=pid)


def _split(
    batch: Sequence[_Fetched],
) -> tuple[list[writes.Observation], list[status_writes.StatusObservation]]:
    observations = [item for item in batch if isinstance(item, writes.Observation)]
    statuses = [item for item in batch if isinstance(item, status_writes.StatusObservation)]
    return observations, statuses


class _NoStore:
    """A dry run with no store yet: every finetune would be created, nothing is read or written."""

    def __init__(self, *, account: str) -> None:
        self.account = account
        self.run_id: int | None = None
        self.key_state: _KeyState | None = None

    def begin_run(self, api_key: Secret) -> None:
        return None

    def note_listed(self, listed: int) -> None:
        return None

    def live_ids(self) -> set[str]:
        return set()

    def settled_ids(self) -> set[str]:
        return set()

    def record(self, batch: Sequence[_Fetched]) -> Counter[str]:
        observations, _ = _split(batch)
        return Counter({writes.Outcome.CREATED.value: len({o.finetune_id for o in observations})})

    def finish(
        self, result: SyncResult, *, listed_ids: Iterable[str] | None, account_claim: _AccountClaim | None
    ) -> None:
        return None

    def fail_quietly(self, result: SyncResult) -> None:
        return None


class _Preview:
    """A dry run against a store: reads what a run would change, each read in a transaction of its own."""

    def __init__(self, session: Session, *, source: str, account: str) -> None:
        self.session = session
        self.source = source
        self.account = account
        self.run_id: int | None = None
        self.key_state: _KeyState | None = None

    def begin_run(self, api_key: Secret) -> None:
        with self.session.begin():
            self.key_state = _read_key_state(self.session, api_key, source=self.source, account=self.account)

    def note_listed(self, listed: int) -> None:
        return None

    def live_ids(self) -> set[str]:
        with self.session.begin():
            return writes.stored_ids(self.session, source=self.source, account=self.account, live_only=True)

    def settled_ids(self) -> set[str]:
        with self.session.begin():
            return status_writes.settled_ids(self.session, source=self.source, account=self.account)

    def record(self, batch: Sequence[_Fetched]) -> Counter[str]:
        observations, _ = _split(batch)
        with self.session.begin():
            outcomes = writes.preview_observations(
                self.session, observations, source=self.source, account=self.account
            )
        return Counter(outcome.value for outcome in outcomes.values())

    def finish(
        self, result: SyncResult, *, listed_ids: Iterable[str] | None, account_claim: _AccountClaim | None
    ) -> None:
        if listed_ids is None:
            return
        with self.session.begin():
            gone = writes.missing_from_listing(
                self.session, source=self.source, account=self.account, listed_ids=listed_ids
            )
        result.deleted = len(gone)

    def fail_quietly(self, result: SyncResult) -> None:
        return None


class _Writer:
    """A real run: every step in a short write transaction of its own, logged as a ``sync_run``."""

    def __init__(
        self, session: Session, *, source: str, account: str, now: Callable[[], datetime], pid: int
    ) -> None:
        self.session = session
        self.source = source
        self.account = account
        self.now = now
        self.pid = pid
        self.run_id: int | None = None
        self._settled: set[str] = set()
        self.key_state: _KeyState | None = None
        self.listed_unrecorded: int | None = None

    def begin_run(self, api_key: Secret) -> None:
        with self.session.begin():
            # Read when the run begins, so nothing waits on the database between listing and fetching.
            self.key_state = _read_key_state(self.session, api_key, source=self.source, account=self.account)
            interrupted = writes.mark_interrupted_runs(self.session)
            self.run_id = writes.start_run(
                self.session, source=self.source, account=self.account, pid=self.pid, now=self.now()
            )
            # Read here, in the write transaction the run takes anyway: a transaction of its own would
            # wait for the write lock before any request is made.
            self._settled = status_writes.settled_ids(self.session, source=self.source, account=self.account)
        if interrupted:
            logger.info("marked runs %s interrupted: their processes ended mid-run", interrupted)

    def live_ids(self) -> set[str]:
        with self.session.begin():
            return writes.stored_ids(self.session, source=self.source, account=self.account, live_only=True)

    def note_listed(self, listed: int) -> None:
        """Not a transaction of its own: fetching must not wait for the write lock."""
        self.listed_unrecorded = listed

    def settled_ids(self) -> set[str]:
        return self._settled

    def record(self, batch: Sequence[_Fetched]) -> Counter[str]:
        """Store one batch of results; return how many finetunes each outcome took.

        A value the database refuses fails only its own finetune: the batch is rolled back and
        stored again one finetune per savepoint, and each refused one becomes a ``storage``
        error (counted under ``STORAGE_FAILED``), so the run ends ``partial``, not lost.
        """
        observations, statuses = _split(batch)
        failures = [item for item in batch if isinstance(item, FetchFailure)]
        assert self.run_id is not None
        now = self.now()  # one time for the whole batch: its versions and its statuses
        try:
            with self.session.begin():
                counts = Counter(outcome.value for outcome in self._store(observations, now=now).values())
                counts[STATUS_CHANGED] = self._record_the_rest(statuses, failures, now=now)
        except (SQLAlchemyError, RecursionError) as exc:
            if not writes.is_storage_error(exc):
                raise
            logger.debug("a batch was refused by the store; storing it one finetune at a time", exc_info=exc)
            with self.session.begin():
                counts, refused = self._store_one_by_one(observations, now=now)
                kept = [status for status in statuses if status.finetune_id not in refused]
                counts[STATUS_CHANGED] = self._record_the_rest(kept, failures, now=now)
        self.listed_unrecorded = None  # committed with this batch
        return counts

    def _store(
        self, observations: Sequence[writes.Observation], *, now: datetime
    ) -> dict[str, writes.Outcome]:
        return writes.record_observations(
            self.session,
            observations,
            source=self.source,
            account=self.account,
            run_id=self.run_id,
            now=now,
        )

    def _store_one_by_one(
        self, observations: Sequence[writes.Observation], *, now: datetime
    ) -> tuple[Counter[str], set[str]]:
        """Each finetune in a savepoint of its own; return the outcomes and the ids the store refused."""
        assert self.run_id is not None
        counts: Counter[str] = Counter()
        refused: set[str] = set()
        latest = {observation.finetune_id: observation for observation in observations}
        for finetune_id, observation in latest.items():
            try:
                with self.session.begin_nested():
                    outcomes = self._store([observation], now=now)
            except (SQLAlchemyError, RecursionError) as exc:
                if not writes.is_storage_error(exc):
                    raise
                message = writes.storage_error_message(finetune_id, exc)
                logger.warning("finetune %s not stored: %s", shown_id(finetune_id), message)
                writes.record_failure(
                    self.session, run_id=self.run_id, finetune_id=finetune_id, kind="storage", message=message
                )
                counts[STORAGE_FAILED] += 1
                refused.add(finetune_id)
                continue
            counts.update(outcome.value for outcome in outcomes.values())
        return counts, refused

    def _record_the_rest(
        self,
        statuses: Sequence[status_writes.StatusObservation],
        failures: Sequence[FetchFailure],
        *,
        now: datetime,
    ) -> int:
        """The batch's statuses and fetch failures, and the listing's count if no batch has recorded it
        yet; return how many statuses changed. The statuses of finetunes the store refused are left
        out by the caller: their ids may be what the store refuses."""
        assert self.run_id is not None
        changed = status_writes.record_statuses(
            self.session,
            statuses,
            source=self.source,
            account=self.account,
            run_id=self.run_id,
            now=now,
        )
        if self.listed_unrecorded is not None:
            writes.note_listed(self.session, run_id=self.run_id, listed=self.listed_unrecorded)
        for failure in failures:
            writes.record_failure(
                self.session,
                run_id=self.run_id,
                finetune_id=failure.finetune_id,
                kind=failure.kind,
                message=failure.message,
                http_status=failure.http_status,
                attempts=failure.attempts,
            )
        return changed

    def finish(
        self, result: SyncResult, *, listed_ids: Iterable[str] | None, account_claim: _AccountClaim | None
    ) -> None:
        deleted_before = result.deleted
        try:
            self._finish(result, listed_ids=listed_ids, account_claim=account_claim)
        except BaseException:
            result.deleted = deleted_before  # the tombstones were rolled back with the transaction
            raise

    def _finish(
        self, result: SyncResult, *, listed_ids: Iterable[str] | None, account_claim: _AccountClaim | None
    ) -> None:
        assert self.run_id is not None
        with self.session.begin():
            if listed_ids is not None:
                gone = writes.tombstone_missing(
                    self.session,
                    source=self.source,
                    account=self.account,
                    listed_ids=listed_ids,
                    run_id=self.run_id,
                    now=self.now(),
                )
                result.deleted = len(gone)
            now = self.now()
            if account_claim is not None:
                fingerprint, replace = account_claim
                writes.record_account(
                    self.session,
                    source=self.source,
                    account=self.account,
                    fingerprint=fingerprint,
                    replace_fingerprint=replace,
                    run_id=self.run_id,
                    now=now,
                )
            if result.credits is not None:
                status_writes.record_credits(self.session, run_id=self.run_id, credits=result.credits)
            writes.finish_run(
                self.session,
                run_id=self.run_id,
                status=result.status,
                counts=result.counts(),
                now=now,
                error=result.error,
                key_changed=result.key_changed,
            )

    def fail_quietly(self, result: SyncResult) -> None:
        """The run is marked ``interrupted`` by the next sync anyway if this fails too.

        The caller has ended the writer first: the session is used by one thread at a time.
        """
        if self.run_id is None:
            return
        with suppress(SQLAlchemyError), self.session.begin():
            writes.finish_run(
                self.session,
                run_id=self.run_id,
                status="failed",
                # What was stored stays stored: the counts say so, whatever ended the run.
                counts=result.counts(),
                now=self.now(),
                error=result.error,
            )


@dataclass(frozen=True, kw_only=True)
class _KeyState:
    """This run's key fingerprint, the one recorded for its account, and the account's finetunes.

    ``stored_ids`` holds every finetune stored for the account, tombstoned ones too: a key whose
    listing shares none of them is another account's, whether they are deleted now or not.
    """

    fingerprint: str
    recorded: str | None
    stored_ids: frozenset[str]


def _read_key_state(session: Session, api_key: Secret, *, source: str, account: str) -> _KeyState:
    secret = writes.fingerprint_secret(session)
    return _KeyState(
        fingerprint=key_fingerprint(api_key, secret=secret),
        recorded=writes.recorded_fingerprint(session, source=source, account=account),
        stored_ids=frozenset(writes.stored_ids(session, source=source, account=account)),
    )


@dataclass(frozen=True, slots=True)
class _Job:
    """The requests one finetune takes in this run."""

    finetune_id: str
    details: bool
    status: bool


@dataclass(frozen=True, slots=True)
class _Done:
    """Every job was done; ``listed_ids`` is the complete listing, None for a ``--id`` run."""

    listed_ids: list[str] | None


class _Stopped:
    """The caller's stop event came before the work was done."""


_STOPPED: Final = _Stopped()

_Ending = _Done | _Stopped | Exception
"""How the network side of a run ended: every job done, stopped, or the error that ended it (a
``RunFailedError`` when the run could not do its job, any other error unexpected)."""


class _Run:
    """One run. ``execute`` reads top to bottom: begin the run, fetch and store, record the ending."""

    def __init__(
        self,
        *,
        client: BflClient,
        recorder: _Recorder,
        options: SyncOptions,
        progress: ProgressCallback | None,
        stop: asyncio.Event | None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.options = options
        self.progress = progress
        self.stop = stop
        self.result = SyncResult(
            run_id=None,
            status="running",
            source=client.source,
            account=options.account,
            dry_run=options.dry_run,
        )
        # Set once the run may speak for the account; recorded when the run is closed.
        self.account_claim: _AccountClaim | None = None
        self.balance: float | None = None
        self.credits_error: ApiError | None = None
        self.gone = GoneTally(source=client.source, logger=logger)
        # The key in every form an echo uses: none of them may reach the store.
        self.key_echo = key_pattern(client.api_key.reveal())

    async def execute(self) -> SyncResult:
        """The run's outcome, however it ended; only what no outcome can say is raised (see ``run_sync``)."""
        self.recorder.begin_run(self.client.api_key)
        self.result.run_id = self.recorder.run_id
        try:
            ending = await self._fetch_and_store()
            if isinstance(ending, Exception) and not isinstance(ending, RunFailedError):
                self._fail(ending)
            else:
                self._close(ending)
        except Exception as exc:  # the writer's or the closing's: the run cannot be closed as it went
            self._fail(_one_error(exc))
        except BaseException as exc:
            self._fail(exc)
            raise
        return self.result

    async def _fetch_and_store(self) -> _Ending:
        """List, fetch and store, all in one task group; return how the network side ended.

        The network side (the listing, then a window of fetch workers) fills one bounded queue
        that a single writer drains, a batch per transaction; the credits request runs alongside.
        A stop cuts short only the network side, and whatever ends it comes back as a value, so
        the end mark always follows it into the queue and the writer stores everything queued
        before it. Only the writer failing ends the group early: it cancels the rest and its error
        is raised from the group.
        """
        queue: asyncio.Queue[_Finished | None] = asyncio.Queue(maxsize=2 * self.options.batch_size)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._write(queue))
            credits = group.create_task(self._read_credits()) if self.options.credits else None
            ending = await self._unless_stopped(self._list_and_fetch(queue))
            await queue.put(None)
            if credits is not None:
                # Waited for only when the run did its job, and then only until a stop.
                if isinstance(ending, _Done):
                    await self._unless_stopped(credits)
                credits.cancel()
        return ending

    async def _list_and_fetch(self, queue: asyncio.Queue[_Finished | None]) -> _Done | Exception:
        """The network side: the listing (unless ``--id``), then every finetune's requests, queued.

        What ends it early is returned, not raised, so that the writer still stores all that was
        queued before: a ``RunFailedError`` for the run's own reasons, any other error as raised.
        """
        try:
            listed_ids = await self._ids_to_list()
            await self._fetch(self._jobs(listed_ids), queue)
        except Exception as exc:
            return _one_error(exc)
        return _Done(listed_ids)

    def _close(self, ending: _Done | _Stopped | RunFailedError) -> None:
        """Record the run's status; tombstones only after a complete listing was fully fetched."""
        result = self.result
        result.credits = self.balance
        listed_ids = None
        if isinstance(ending, RunFailedError):
            # What was fetched is stored; nothing is tombstoned from a run that could not finish.
            result.status, result.error, result.failure = "failed", str(ending), ending
        elif isinstance(ending, _Stopped):
            # A stop request means do as little as possible: tombstones wait for the next full run.
            result.status = "interrupted"
            result.error = "stopped before finishing (interrupted by a signal)"
        else:
            strict_failed = self.options.strict_status and result.status_failed
            result.status = "partial" if result.failed or strict_failed else "ok"
            listed_ids = ending.listed_ids
        gone = self.gone.report()
        if gone is not None and result.error is None:
            result.error = gone  # the run's record says it once too
        # A refused key or failed listing is reported already: the credits' failure would repeat it.
        if self.credits_error is not None and result.status != "failed":
            logger.warning("credits not recorded: %s", self.credits_error)
        self.recorder.finish(result, listed_ids=listed_ids, account_claim=self.account_claim)

    def _fail(self, error: BaseException) -> None:
        """The run ended on an unexpected error: mark it failed, with what it stored counted."""
        result = self.result
        self.gone.report()
        result.status = "failed"
        result.error = f"{type(error).__name__}: {error}"
        result.failure = error if isinstance(error, Exception) else None
        self.recorder.fail_quietly(result)

    async def _read_credits(self) -> None:
        """The balance, read alongside the listing; a failure never fails the run."""
        try:
            self.balance = await self.client.credits()
        except ApiError as exc:
            self.credits_error = exc

    async def _ids_to_list(self) -> list[str] | None:
        """The full listing, or None when only ``--id`` finetunes are synced (then nothing is tombstoned)."""
        if self.options.only_ids:
            self._check_key(listed_ids=None)
            return None
        try:
            listed = await self.client.list_finetunes()
            if not listed and not self.options.allow_empty_listing:
                self._refuse_to_empty_the_store()
        except ApiError as exc:
            raise RunFailedError(self._listing_error(exc), exc.exit_code) from exc
        self.result.listed = len(listed)
        self._check_key(listed_ids=listed)
        self.recorder.note_listed(len(listed))
        return listed

    def _check_key(self, *, listed_ids: list[str] | None) -> None:
        """Catch a key synced under another account's label before it writes or tombstones anything.

        A key other than the one recorded for ``(source, account)`` (or any key, when none is
        recorded yet but finetunes are stored) whose complete listing shares no finetune with
        the account's stored ones, live or tombstoned, is almost surely another account's, run
        without ``--account``: obeying it would mark all of them deleted. A rotated key still
        lists them, and is taken. With a key recorded and nothing stored, nothing can confirm a
        rotation, so a different key is refused too.
        A ``--id`` run cannot tell, so it never replaces the recorded fingerprint, and with a key
        other than the recorded one it is refused: the foreign finetunes it would store under the
        account would make that key's next full listing "overlap" and tombstone all the others.
        """
        state = self.recorder.key_state
        if state is None:
            return
        if listed_ids is None:
            if state.recorded not in (None, state.fingerprint) and not self.options.accept_new_key:
                raise RunFailedError(self._unconfirmed_key_error(), ExitCode.INPUT)
            self.account_claim = (state.fingerprint, False)
            return
        if state.fingerprint != state.recorded:
            stored = state.stored_ids
            if not self.options.accept_new_key:
                if stored and stored.isdisjoint(listed_ids):
                    raise RunFailedError(self._foreign_key_error(len(stored)), ExitCode.INPUT)
                if not stored and state.recorded is not None:
                    # Nothing stored to recognise the account by, and a key was recorded: whose is this one?
                    raise RunFailedError(self._unrecognisable_key_error(), ExitCode.INPUT)
            self.result.key_changed = state.recorded is not None
            if self.result.key_changed:
                logger.warning(
                    "the API key of account %r at %s changed; recording the new key's fingerprint",
                    self.recorder.account,
                    self.client.source,
                )
        self.account_claim = (state.fingerprint, True)

    def _foreign_key_error(self, live: int) -> str:
        stored = "the finetune" if live == 1 else f"the {live} finetunes"
        return (
            f"this key lists none of {stored} stored for account {self.recorder.account!r} at "
            f"{self.client.source}: pass --account NAME for another account, or --accept-new-key "
            "if the old finetunes are really gone"
        )

    def _unrecognisable_key_error(self) -> str:
        return (
            f"this key is not the one recorded for account {self.recorder.account!r} at "
            f"{self.client.source}, and no finetune of the account is stored to tell whose it is: "
            "pass --account NAME for another account, or --accept-new-key if the key was rotated"
        )

    def _unconfirmed_key_error(self) -> str:
        return (
            f"this key is not the one recorded for account {self.recorder.account!r} at "
            f"{self.client.source} and a --id run cannot tell whose it is: pass --account NAME for "
            "another account, run a full sync to confirm a rotated key, or --accept-new-key"
        )

    def _refuse_to_empty_the_store(self) -> None:
        """An empty listing while finetunes are stored is more often an API hiccup than an emptied account.

        Believing it would write a ``deleted`` version for every finetune, and the next run a
        ``restored`` one: treat it as a failed listing unless the user says it is true.
        """
        live = len(self.recorder.live_ids())
        if live:
            raise BadResponseError(
                f"the API listed no finetunes while {live} are stored; nothing was marked deleted "
                "(pass --allow-empty-listing if the account really has none left)",
                method="GET",
                path=LIST_PATH,
            )

    def _jobs(self, listed_ids: list[str] | None) -> list[_Job]:
        """What to ask per finetune: details as before, and the status of those not settled yet.

        With ``--new-only`` the finetunes already stored are not fetched, but a listed one that is
        still training is still asked for its status.
        """
        details_ids = self._ids_to_fetch(listed_ids)
        if not self.options.status:
            return [_Job(finetune_id, details=True, status=False) for finetune_id in details_ids]
        settled = set() if self.options.refresh_status else self.recorder.settled_ids()
        jobs = [
            _Job(finetune_id, details=True, status=finetune_id not in settled) for finetune_id in details_ids
        ]
        if listed_ids is not None and self.options.new_only:
            fetching = set(details_ids)
            jobs.extend(
                _Job(finetune_id, details=False, status=True)
                for finetune_id in listed_ids
                if finetune_id not in fetching and finetune_id not in settled
            )
        return jobs

    def _ids_to_fetch(self, listed_ids: list[str] | None) -> list[str]:
        if listed_ids is None:
            return list(dict.fromkeys(self.options.only_ids))
        if self.options.new_only:
            # Tombstoned finetunes count as not stored: listed again, they must be restored.
            known = self.recorder.live_ids()
            return [finetune_id for finetune_id in listed_ids if finetune_id not in known]
        return listed_ids

    def _listing_error(self, exc: ApiError) -> str:
        if isinstance(exc, AuthError):
            return self._refusal_error(exc)
        if isinstance(exc, UpstreamGoneError):
            return f"{exc.kind}: cannot list finetunes at {self.client.source}, nothing was marked deleted: {exc}"
        return f"cannot list finetunes at {self.client.source}: {exc}"

    def _refusal_error(self, exc: ApiError) -> str:
        if isinstance(exc, AuthError):
            where = str(exc).removeprefix(exc.message).lstrip("; ")
            return f"the API key was refused by {self.client.source} ({where})"
        return f"stopped fetching from {self.client.source}: {exc}"

    async def _unless_stopped(self, work: Awaitable[T]) -> T | _Stopped:
        """``work``'s result, or ``_STOPPED`` with ``work`` cancelled if the stop event comes first.

        The run's one way of stopping: a deadline (``--max-duration``) and the circuit breaker
        end a run through its requests' errors instead (``RunLimitError``).
        """
        if self.stop is None:
            return await work
        task = asyncio.ensure_future(work)
        stop_wait = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        return _STOPPED if task.cancelled() else task.result()

    async def _fetch(self, jobs: list[_Job], queue: asyncio.Queue[_Finished | None]) -> None:
        pending = iter(jobs)
        total = len(jobs)
        finished = 0

        async def worker() -> None:
            nonlocal finished
            for job in pending:
                results, refusal = await self._do(job)
                await queue.put(tuple(results))
                finished += 1
                if self.progress is not None:
                    self.progress(finished, total)
                if refusal is not None:
                    # Every other request would fail alike: the group cancels the other workers.
                    raise RunFailedError(self._refusal_error(refusal), refusal.exit_code)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(FETCH_WINDOW, total)):
                group.create_task(worker())

    async def _do(self, job: _Job) -> tuple[list[_Fetched], ApiError | None]:
        """A finetune's details and then its status, as the job asks; the status of a finetune whose
        details failed is not asked (its row stays as it was). Also the refusal error, if any.
        """
        results: list[_Fetched] = []
        if job.details:
            fetched, refusal = await self._fetch_one(job.finetune_id)
            results.append(fetched)
            if isinstance(fetched, FetchFailure):
                return results, refusal
        if job.status:
            checked, refusal = await self._check_status(job.finetune_id)
            results.append(checked)
            return results, refusal
        return results, None

    async def _check_status(self, finetune_id: str) -> tuple[_Fetched, ApiError | None]:
        """The finetune's ``get_result`` answer, or a failure of kind ``status_<kind>``."""
        self.gone.ask(RESULT_PATH)
        try:
            body, _ = redaction.redact(await self.client.get_result(finetune_id), self.key_echo)
            answer = parse_answer(body)
        except ApiError as exc:
            warning = f"status of finetune {shown_id(finetune_id)} not recorded: {exc}"
            if not self.gone.hold(RESULT_PATH, exc, warning):
                logger.warning("%s", warning)
            failure = FetchFailure(
                finetune_id=finetune_id,
                kind=f"status_{exc.kind}",
                http_status=exc.status,
                message=str(exc),
                attempts=exc.attempts,
                of_status=True,
            )
            return failure, exc if isinstance(exc, AuthError | CreditsError | RunLimitError) else None
        except BadStatusAnswer as exc:
            logger.warning("status of finetune %s not recorded: %s", shown_id(finetune_id), exc)
            return FetchFailure(
                finetune_id=finetune_id,
                kind="status_bad_json",
                http_status=200,
                message=str(exc),
                attempts=1,
                of_status=True,
            ), None
        return status_writes.StatusObservation(finetune_id, answer), None

    async def _fetch_one(self, finetune_id: str) -> tuple[_Fetched, ApiError | None]:
        """The finetune's details or failure, and the error when the run cannot go on: the key or account
        was refused (401/403/402) or a limit of the run (deadline, circuit breaker) was reached."""
        self.gone.ask(DETAILS_PATH)
        try:
            details = await self.client.get_details(finetune_id)
        except ApiError as exc:
            warning = f"finetune {shown_id(finetune_id)} not stored: {exc}"
            if not self.gone.hold(DETAILS_PATH, exc, warning):
                logger.warning("%s", warning)
            failure = FetchFailure(
                finetune_id=finetune_id,
                kind=exc.kind,
                http_status=exc.status,
                message=str(exc),
                attempts=exc.attempts,
            )
            return failure, exc if isinstance(exc, AuthError | CreditsError | RunLimitError) else None
        details, redacted = redaction.redact(details, self.key_echo)
        if redacted:
            logger.warning(
                "finetune %s: the API key was in the answer; stored as %s",
                shown_id(finetune_id),
                redaction.MARKER,
            )
        return writes.Observation(finetune_id, details, redacted), None

    async def _write(self, queue: asyncio.Queue[_Finished | None]) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Fetched] = []
        deadline: float | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    item = await queue.get()
            except TimeoutError:
                await self._flush(batch)
                batch, deadline = [], None
                continue
            if item is None:
                break
            if not batch:
                deadline = loop.time() + self.options.flush_interval_s
            batch.extend(item)
            if len(batch) >= self.options.batch_size:
                await self._flush(batch)
                batch, deadline = [], None
        if batch:
            await self._flush(batch)

    async def _flush(self, batch: list[_Fetched]) -> None:
        # The batch is written in a worker thread so fetches go on meanwhile; only this writer
        # task touches the session, one batch at a time.
        writing = asyncio.ensure_future(asyncio.to_thread(self.recorder.record, batch))
        try:
            outcomes = await asyncio.shield(writing)
        except asyncio.CancelledError:
            # A thread cannot be interrupted: the writer ends only once its batch is written (and
            # counted), so whoever cancelled it may use the session as soon as it has ended.
            self._count(batch, await writing)
            raise
        self._count(batch, outcomes)

    def _count(self, batch: list[_Fetched], outcomes: Counter[str]) -> None:
        result = self.result
        for item in batch:
            if isinstance(item, writes.Observation):
                result.fetched += 1
            elif isinstance(item, status_writes.StatusObservation):
                result.status_checked += 1
            elif item.of_status:
                result.status_failed += 1
            else:
                result.failed += 1
        # Fetched but refused by the store: it counts as failed, not fetched.
        result.fetched -= outcomes[STORAGE_FAILED]
        result.failed += outcomes[STORAGE_FAILED]
        result.status_changed += outcomes[STATUS_CHANGED]
        result.created += outcomes[writes.Outcome.CREATED.value]
        result.updated += outcomes[writes.Outcome.UPDATED.value]
        result.unchanged += outcomes[writes.Outcome.UNCHANGED.value]
        result.restored += outcomes[writes.Outcome.RESTORED.value]
        logger.debug("stored a batch of %d results", len(batch))


def _one_error(error: Exception) -> Exception:
    """The first error inside an exception group (a task group's), so the run reports one error.

    Workers failing at the same moment are rare; the others are logged rather than lost.
    """
    while isinstance(error, ExceptionGroup):
        for other in error.exceptions[1:]:
            logger.debug("another fetch task failed too", exc_info=other)
        error = error.exceptions[0]
    return error


def shown_id(finetune_id: str) -> str:
    """An id as a warning line prints it: escaped, and capped, since a listing may make ids of any length."""
    return truncate(printable(finetune_id))

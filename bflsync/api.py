"""bflsync's public Python API: open a store and read it, or run a sync, without the CLI.

The CLI is a thin layer over this module: every read command opens a :class:`Store` with
:func:`open_store` and renders what its methods return; ``bflsync sync`` calls :func:`sync`.

    import bflsync

    with bflsync.open_store("~/bflsync.db") as store:
        options = bflsync.QueryOptions(sort="-iterations")
        for record in store.query(["mode=character", "learning_rate>=2e-5"], options).records:
            print(record.finetune_id, record.column("learning_rate"))

A :class:`Store` only reads: it never creates, migrates or writes the database, and takes one
snapshot for its whole life (one read transaction), so a sync writing meanwhile is not seen
half-way. Errors are :class:`bflsync.errors.BflsyncError` subclasses, each with its ``exit_code``.

Each method imports the read modules it uses, not this module's top: reading a SQLite store
imports neither SQLAlchemy, SQLModel, pydantic, alembic nor httpx (``tests/test_read_commands.py``
checks every read command), and start-up is most of a small query's time, so ``show`` does not
load the filter parser nor ``query --format ids`` the JSON of the audit trail. :func:`sync` imports
the write side (SQLAlchemy, httpx) when it is called.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple

from bflsync.read.reader import Reader, open_reader
from bflsync.read.records import ALL_COLUMNS

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from bflsync.config import ApiSettings, Secret
    from bflsync.read.audit_trail import CreditInterval, Diff, StatusEntry, VersionEntry
    from bflsync.read.compare import Entry, Field, Matrix
    from bflsync.read.filters import FieldRef, Filter, Query, Sort
    from bflsync.read.label_reads import LabelEvent, Note
    from bflsync.read.records import FinetuneRecord
    from bflsync.read.search import FacetCount, Found
    from bflsync.store.access import OpenedStore, StoreLocation
    from bflsync.sync.run import ProgressCallback, SyncOptions, SyncResult

    HistoryEntry = VersionEntry | StatusEntry | LabelEvent | Note
    """One line of a finetune's history: a version, a status change, a label change or a note."""

__all__ = [
    "Facets",
    "FoundIds",
    "QueryOptions",
    "RunDetail",
    "Shown",
    "Store",
    "history_kind",
    "history_time",
    "make_query",
    "open_store",
    "sync",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryOptions:
    """What a question asks besides its filters: the options of ``bflsync query`` in one value.

    :meth:`Store.query`, :meth:`Store.ids`, :meth:`Store.facets` and :func:`make_query` take this one
    bundle, so an option added to the question is added once, and a caller who asks the same question
    several ways (records, then ids) passes the same value rather than repeating seven keywords.
    Frozen: a bundle can be shared and reused without one caller changing another's question.
    """

    text: str | None = None
    """``--text``: words and prefixes (``fo*``) searched in the comment, trigger word and labels."""
    include_deleted: bool = False
    """``--include-deleted``: finetunes gone from the API are listed too."""
    source: str | None = None
    """``--source``: only finetunes read from this API host."""
    account: str | None = None
    """``--account``: only this account's finetunes."""
    as_of: datetime | str | None = None
    """``--as-of``: the store as it stood then (an aware datetime, ISO 8601, or ``7d``, ``yesterday``)."""
    sort: str | Sort | None = None
    """``--sort``: a field, ``-`` first for descending (default ``finetune_id``)."""
    limit: int | None = None
    """``--limit``: at most this many (``None``: every one). Facets count every match and refuse it."""


class FoundIds(NamedTuple):
    """The ids a search found, sorted as asked, and the finetunes it had to set aside."""

    ids: list[str]
    unreadable: tuple[str, ...]
    """Finetunes whose stored details the database cannot read as JSON (NaN written by another tool)."""


class Facets(NamedTuple):
    """Per field name, how many matching finetunes hold each value, most common first."""

    counts: dict[str, list[FacetCount]]
    unreadable: tuple[str, ...]


class Shown(NamedTuple):
    """One finetune as ``bflsync show`` prints it."""

    record: FinetuneRecord
    status_timeline: list[StatusEntry]
    notes: list[Note]


class RunDetail(NamedTuple):
    """One sync run (the columns of ``bflsync runs``) with the per-finetune errors it recorded."""

    run: dict[str, Any]
    errors: list[dict[str, Any]]


def open_store(db: str | os.PathLike[str] | None = None) -> Store:
    """Open the store read-only: a SQLite file path, a ``postgresql://`` URL, or (``None``) the default store.

    The default is the one ``bflsync`` uses without ``--db`` or ``BFLSYNC_DB`` (this function reads no
    environment variable of bflsync's own; libpq reads its ``PG*`` ones for a PostgreSQL URL). A store
    that does not exist, is behind the code's schema or is not a bflsync store is refused with a
    :class:`~bflsync.errors.StoreError`. Close the store, or use it as a context manager.
    """
    stack = ExitStack()
    reader = stack.enter_context(open_reader(os.fspath(db) if db is not None else None))
    return Store(reader, close=stack.close)


class Store:
    """A read-only, consistent view of one store (see :func:`open_store`)."""

    def __init__(self, reader: Reader, *, close: Callable[[], None]) -> None:
        self._reader = reader
        self._close = close

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._reader.dialect

    def close(self) -> None:
        """End the read transaction and close the connection; closing twice does nothing."""
        self._close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def query(
        self,
        filters: Query | Iterable[str | Filter] = (),
        options: QueryOptions | None = None,
        *,
        columns: Sequence[str] = ALL_COLUMNS,
    ) -> Found:
        """The finetunes matching every filter (the language of ``bflsync query``), as records.

        ``options`` are the rest of the question (:class:`QueryOptions`). ``columns`` are the stored
        columns to read (default all; leaving out ``details`` saves the most). ``filters`` may instead
        be a whole :class:`~bflsync.read.filters.Query` (see :func:`make_query`); ``options`` must
        then be left out.
        """
        from bflsync.read import search

        return search.search(self._reader, _question(filters, options), columns=columns)

    def ids(
        self, filters: Query | Iterable[str | Filter] = (), options: QueryOptions | None = None
    ) -> FoundIds:
        """Only the ids of :meth:`query`'s answer, read without decoding any record."""
        from bflsync.read import search

        return FoundIds(*search.search_ids(self._reader, _question(filters, options)))

    def facets(
        self,
        fields: Sequence[str | FieldRef],
        filters: Query | Iterable[str | Filter] = (),
        options: QueryOptions | None = None,
    ) -> Facets:
        """Per field, how many finetunes matching ``filters`` hold each value; missing and null count as ``None``.

        Every match is counted, so a ``sort`` or ``limit`` in ``options`` is refused, not ignored.
        """
        from bflsync.read import search

        if options is not None and (options.sort is not None or options.limit is not None):
            raise TypeError("facets count every match: sort and limit do not apply")
        question = _question(filters, options)
        return Facets(*search.facet_counts(self._reader, [_field(field) for field in fields], question))

    def unknown_field(self, field: str | FieldRef) -> str | None:
        """A one-line note when no stored finetune has the key ``field`` names (a typo?), else ``None``."""
        from bflsync.read import fieldnames

        return fieldnames.unknown_field(self._reader, _field(field))

    def unmatched_values(self, question: Query) -> list[str]:
        """Notes for ``FIELD=text`` filters that matched nothing on a field of few values (``pending`` vs ``Pending``)."""
        from bflsync.read import suggest

        return suggest.unmatched_values(self._reader, question)

    def before_the_record(self, as_of: datetime | None) -> str | None:
        """A note when ``as_of`` is earlier than the store's first observation (an empty answer's reason)."""
        from bflsync.read import suggest

        return suggest.before_the_record(self._reader, as_of)

    def unknown_scope(self, *, source: str | None = None, account: str | None = None) -> list[str]:
        """Notes for a ``source`` or ``account`` nothing in the store carries (``--account defualt``)."""
        from bflsync.read import suggest

        return suggest.unknown_scope(self._reader, source=source, account=account)

    def finetune(
        self, finetune_id: str, *, source: str | None = None, account: str | None = None
    ) -> FinetuneRecord:
        """One finetune's current record, deleted or not; ``source``/``account`` pick one of an id stored for several."""
        from bflsync.read import lookup

        return lookup.find_finetune(self._reader, finetune_id, source=source, account=account).record

    def show(self, finetune_id: str, *, source: str | None = None, account: str | None = None) -> Shown:
        """One finetune's current record with its status timeline and notes, oldest first."""
        from bflsync.read import audit_trail, label_reads, lookup

        found = lookup.find_finetune(self._reader, finetune_id, source=source, account=account)
        return Shown(
            record=found.record,
            status_timeline=audit_trail.status_timeline(self._reader, found.pk),
            notes=label_reads.notes(self._reader, pk=found.pk),
        )

    def history(
        self,
        finetune_id: str | None = None,
        *,
        since: datetime | str | None = None,
        source: str | None = None,
        account: str | None = None,
        kinds: Iterable[str] | None = None,
        changes: Iterable[str] | None = None,
    ) -> list[HistoryEntry]:
        """Versions, status changes, label changes and notes oldest first: of one finetune, or (without
        ``finetune_id``) of every finetune since ``since``; ``source``/``account`` narrow either.

        ``kinds`` keeps only those kinds of entry (:func:`history_kind`); ``changes`` keeps only versions
        with those changes (``created``, ``updated``, ``deleted``, ``restored``) and, unless ``kinds``
        says otherwise, only versions.
        """
        from bflsync.errors import InputError
        from bflsync.read import audit_trail, label_reads, lookup

        if finetune_id is None and since is None:
            raise InputError("history needs a finetune ID, or --since TIMESTAMP for the account-wide log")
        start = _timestamp(since)
        versions = audit_trail.history(
            self._reader, finetune_id=finetune_id, source=source, account=account, since=start
        )
        pk = (
            lookup.find_finetune(self._reader, finetune_id, source=source, account=account).pk
            if finetune_id is not None
            else None
        )
        label_events = label_reads.label_events(
            self._reader, pk=pk, since=start, source=source, account=account
        )
        notes = label_reads.notes(self._reader, pk=pk, since=start, source=source, account=account)
        wanted_changes = None if changes is None else frozenset(changes)
        wanted_kinds = frozenset(kinds) if kinds is not None else None
        if wanted_changes is not None and wanted_kinds is None:
            wanted_kinds = frozenset({"version"})
        return sorted(
            (
                entry
                for entry in [*versions, *label_events, *notes]
                if (wanted_kinds is None or history_kind(entry) in wanted_kinds)
                and (
                    wanted_changes is None
                    or not isinstance(entry, audit_trail.VersionEntry)
                    or entry.change in wanted_changes
                )
            ),
            key=lambda entry: (
                history_time(entry),
                entry.finetune_id,
                entry.source,
                entry.account,
                _KIND_ORDER[history_kind(entry)],
            ),
        )

    def statuses_before(
        self, since: datetime | str, *, source: str | None = None, account: str | None = None
    ) -> dict[tuple[str, str, str], str]:
        """Each finetune's training status as last observed before ``since``, keyed by (id, source,
        account): what the first status :meth:`history` lists from ``since`` changed from."""
        from bflsync.read import audit_trail

        start = _timestamp(since)
        assert start is not None
        return audit_trail.statuses_before(self._reader, start, source=source, account=account)

    def runs(self, *, limit: int | None = 20, account: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` sync runs (all with ``None``), newest first, as ``bflsync runs`` lists them."""
        from bflsync.read import audit_trail

        return audit_trail.runs(self._reader, limit=limit, account=account)

    def run(self, run_id: int) -> RunDetail:
        """One sync run with its per-finetune errors; an unknown id is an :class:`~bflsync.errors.InputError`."""
        from bflsync.read import audit_trail

        return RunDetail(*audit_trail.run_with_errors(self._reader, run_id))

    def diff(
        self, a: str, b: str | None = None, *, source: str | None = None, account: str | None = None
    ) -> Diff:
        """The details keys whose values differ between two finetunes, or versions (``ID@VERSION``);
        without ``b``, between finetune ``a``'s previous version and its current one."""
        from bflsync.read import audit_trail

        if b is None:
            a, b = audit_trail.last_change(self._reader, a, source=source, account=account)
        return audit_trail.diff(
            self._reader, audit_trail.VersionRef(a), audit_trail.VersionRef(b), source=source, account=account
        )

    def compare(
        self,
        ids: Sequence[str],
        *,
        fields: Sequence[str | FieldRef] | None = None,
        only_changed: bool = False,
        source: str | None = None,
        account: str | None = None,
    ) -> Matrix:
        """The parameter x finetune matrix of ``bflsync compare``: one entry per id (or ``ID@VERSION``).

        Without ``fields``: the extracted fields, the other details keys (dotted when nested), the
        labels and the status when recorded. ``only_changed`` keeps the rows whose values differ.
        """
        from bflsync.read import compare, filters

        entries = [self._compared(text, source=source, account=account) for text in ids]
        chosen = (
            [_compare_field(_field(field)) for field in fields]
            if fields is not None
            else compare.default_fields(entries, name_of_path=filters.field_name)
        )
        return compare.matrix(entries, chosen, only_changed=only_changed)

    def accounts(self) -> list[dict[str, Any]]:
        """Each (source, account) in the store: live and deleted finetunes, last sync, key fingerprint."""
        from bflsync.read import audit_trail

        return audit_trail.accounts(self._reader)

    def credits(
        self,
        *,
        source: str | None = None,
        account: str | None = None,
        since: datetime | str | None = None,
    ) -> list[CreditInterval]:
        """The credit balance each sync read, oldest first, with the drop since the reading before."""
        from bflsync.read import audit_trail

        return audit_trail.credit_history(
            self._reader, source=source, account=account, since=_timestamp(since)
        )

    def _compared(self, text: str, *, source: str | None, account: str | None) -> Entry:
        from bflsync.extract import extract_fields
        from bflsync.read import audit_trail, compare, lookup

        ref = audit_trail.VersionRef(text)
        side = audit_trail.resolve_side(self._reader, ref, source=source, account=account)
        found = lookup.find_finetune(self._reader, side.finetune_id, source=side.source, account=side.account)
        current = ref.resolve(self._reader, source=source, account=account)[1] is None
        columns: dict[str, Any] = {**extract_fields(side.details), "version": side.version}
        if current:
            columns.update(found.record.as_dict())
            del columns["details"], columns["labels"]
        return compare.Entry(
            heading=text,
            finetune_id=side.finetune_id,
            source=side.source,
            account=side.account,
            version=side.version,
            columns=columns,
            details=side.details,
            labels=found.record.labels,
        )


def make_query(filters: Iterable[str | Filter] = (), options: QueryOptions | None = None) -> Query:
    """A parsed question for :meth:`Store.query`, :meth:`Store.ids` and :meth:`Store.facets`.

    Texts are parsed as on the command line (a bad one is a :class:`~bflsync.errors.FilterError`);
    a relative ``as_of`` or time filter value (``7d``, ``yesterday``) counts back from now.
    """
    from bflsync.read.filters import Query, parse_filter, parse_sort, resolve_relative_times

    given = options or QueryOptions()
    now = datetime.now(UTC)
    return Query(
        filters=[
            resolve_relative_times(parse_filter(item) if isinstance(item, str) else item, now=now)
            for item in filters
        ],
        text=given.text,
        include_deleted=given.include_deleted,
        source=given.source,
        account=given.account,
        as_of=_timestamp(given.as_of, now=now),
        sort=parse_sort(given.sort) if isinstance(given.sort, str) else given.sort,
        limit=given.limit,
    )


def _question(filters: Query | Iterable[str | Filter], options: QueryOptions | None) -> Query:
    from bflsync.read.filters import Query

    if not isinstance(filters, Query):
        return make_query(filters, options)
    if options is not None:
        raise TypeError("options given both in the Query and as QueryOptions: a made Query holds its own")
    return filters


def _timestamp(moment: datetime | str | None, *, now: datetime | None = None) -> datetime | None:
    if not isinstance(moment, str):
        return moment
    from bflsync.read.filters import parse_timestamp

    return parse_timestamp(moment, now=now or datetime.now(UTC))


def _field(field: str | FieldRef) -> FieldRef:
    if not isinstance(field, str):
        return field
    from bflsync.read.filters import parse_field

    return parse_field(field)


def _compare_field(ref: FieldRef) -> Field:
    from bflsync.read.compare import Field

    if ref.label is not None:
        return Field(name=ref.name, label=ref.label)
    if ref.column is not None:
        return Field(name=ref.name, column=ref.column)
    return Field(name=ref.name, path=ref.path)


_KIND_ORDER = {"version": 0, "status": 1, "label": 2, "note": 3}


def history_kind(entry: HistoryEntry) -> str:
    """``"version"``, ``"status"``, ``"label"`` or ``"note"``: which kind of history entry this is."""
    from bflsync.read.audit_trail import StatusEntry, VersionEntry
    from bflsync.read.label_reads import LabelEvent

    if isinstance(entry, VersionEntry):
        return "version"
    if isinstance(entry, StatusEntry):
        return "status"
    return "label" if isinstance(entry, LabelEvent) else "note"


def history_time(entry: HistoryEntry) -> datetime:
    """When a history entry happened: observed (versions, status), changed (labels) or written (notes)."""
    from bflsync.read.audit_trail import StatusEntry, VersionEntry
    from bflsync.read.label_reads import LabelEvent

    if isinstance(entry, VersionEntry | StatusEntry):
        return entry.observed_at
    return entry.changed_at if isinstance(entry, LabelEvent) else entry.written_at


def sync(
    db: str | os.PathLike[str] | None = None,
    *,
    api_key: str | Secret,
    base_url: str | None = None,
    region: str | None = None,
    account: str | None = None,
    concurrency: int | None = None,
    timeout_s: float | None = None,
    max_duration_s: float | None = None,
    max_consecutive_failures: int | None = None,
    max_retries: int | None = None,
    only_ids: Sequence[str] = (),
    new_only: bool = False,
    dry_run: bool = False,
    allow_empty_listing: bool = False,
    accept_new_key: bool = False,
    status: bool = True,
    refresh_status: bool = False,
    strict_status: bool = False,
    credits: bool = True,
    wait_s: float = 0.0,
    progress: ProgressCallback | None = None,
    on_open: Callable[[StoreLocation, OpenedStore], None] | None = None,
    stop_on_signals: bool = False,
) -> SyncResult:
    """Run one sync of the account's finetunes into the store, as ``bflsync sync`` does, and return its result.

    ``base_url`` (e.g. a mock on loopback) or ``region`` (default ``us1``) say which API; options left
    ``None`` take the CLI's defaults. The store is created or upgraded first (``on_open`` is told
    how it was opened); a dry run only reads it. One sync per store at a time: another one running
    raises :class:`~bflsync.errors.SyncLockedError` unless it ends within ``wait_s``. A run that started
    is reported, however it ended, by the result (``status``, counts, and ``failure`` for a failed
    one, never raised here); errors before it started (bad input, a locked or unusable store) are
    raised. ``stop_on_signals`` lets SIGINT/SIGTERM stop the run cleanly (``status`` ``interrupted``,
    the signal in ``signum``); call it from the main thread then.
    """
    from bflsync.config import DEFAULT_ACCOUNT, validate_account_name
    from bflsync.errors import InputError
    from bflsync.sync.run import SyncOptions

    account = validate_account_name(account if account is not None else DEFAULT_ACCOUNT)
    if only_ids and new_only:
        raise InputError("--new-only filters the listing; it cannot be combined with --id")
    if not status and (refresh_status or strict_status):
        raise InputError("--no-status cannot be combined with --refresh-status or --strict-status")
    if region is not None and base_url is not None:
        raise InputError("give either --region or --base-url, not both")
    options = SyncOptions(
        account=account,
        only_ids=tuple(only_ids),
        new_only=new_only,
        dry_run=dry_run,
        allow_empty_listing=allow_empty_listing,
        accept_new_key=accept_new_key,
        status=status,
        refresh_status=refresh_status,
        strict_status=strict_status,
        credits=credits,
    )
    return _sync(
        os.fspath(db) if db is not None else None,
        options,
        api_key=api_key,
        base_url=base_url,
        region=region,
        limits={
            "concurrency": concurrency,
            "timeout_s": timeout_s,
            "max_duration_s": max_duration_s,
            "max_consecutive_failures": max_consecutive_failures,
            "max_retries": max_retries,
        },
        wait_s=wait_s,
        progress=progress,
        on_open=on_open,
        stop_on_signals=stop_on_signals,
    )


def _sync(
    db: str | None,
    options: SyncOptions,
    *,
    api_key: str | Secret,
    base_url: str | None,
    region: str | None,
    limits: dict[str, Any],
    wait_s: float,
    progress: ProgressCallback | None,
    on_open: Callable[[StoreLocation, OpenedStore], None] | None,
    stop_on_signals: bool,
) -> SyncResult:
    """The write side of :func:`sync`: the lock, the store, the client and the event loop."""
    from bflsync import config
    from bflsync.bfl.client import load_api_key, resolve_base_url
    from bflsync.errors import StoreMissingError
    from bflsync.store import access
    from bflsync.store.lock import sync_lock_for

    def limit(name: str, default: Any) -> Any:
        return limits[name] if limits[name] is not None else default

    timeout_s = limit("timeout_s", config.DEFAULT_READ_TIMEOUT_S)
    settings = config.ApiSettings(
        # A plain string is checked as BFL_API_KEY would be (no whitespace or control characters).
        api_key=api_key
        if isinstance(api_key, config.Secret)
        else load_api_key(env_value=api_key, key_file=None),
        base_url=resolve_base_url(region=region, base_url=base_url),
        connect_timeout_s=min(config.DEFAULT_CONNECT_TIMEOUT_S, timeout_s),
        read_timeout_s=timeout_s,
        max_retries=limit("max_retries", config.DEFAULT_MAX_RETRIES),
        concurrency=limit("concurrency", config.DEFAULT_CONCURRENCY),
        max_duration_s=limit("max_duration_s", config.DEFAULT_MAX_DURATION_S),
        max_consecutive_failures=limit("max_consecutive_failures", config.DEFAULT_MAX_CONSECUTIVE_FAILURES),
    )
    location = access.locate_store(db)
    if options.dry_run:
        # A dry run reads the store if there is one, and never creates or changes it; one behind
        # head is refused as a read command refuses it.
        try:
            engine = access.open_store_for_read(location)
        except StoreMissingError:
            return _translated(location, _run(None, settings, options, progress, stop_on_signals))
        try:
            with access.translate_errors(location):
                return _translated(location, _run(engine, settings, options, progress, stop_on_signals))
        finally:
            engine.dispose()
    with sync_lock_for(location, wait_s=wait_s):
        opened = access.open_store_for_write(location)
        try:
            if on_open is not None:
                on_open(location, opened)
            with access.translate_errors(location):
                return _translated(
                    location, _run(opened.engine, settings, options, progress, stop_on_signals)
                )
        finally:
            opened.engine.dispose()


def _translated(location: StoreLocation, result: SyncResult) -> SyncResult:
    """A run that failed on the database file itself fails with the one-line store error a command would raise."""
    if result.failure is None:
        return result
    from bflsync.store import access

    try:
        with access.translate_errors(location):
            raise result.failure
    except Exception as exc:  # the failure itself, or the store error it means
        result.failure = exc
    return result


def _run(
    engine: Engine | None,
    settings: ApiSettings,
    options: SyncOptions,
    progress: ProgressCallback | None,
    stop_on_signals: bool,
) -> SyncResult:
    """Run the sync on a fresh event loop; with ``stop_on_signals``, SIGINT/SIGTERM stop it cleanly."""
    import asyncio
    import signal

    from bflsync.bfl.client import BflClient
    from bflsync.sync.run import run_sync

    received: list[int] = []
    handled = (signal.SIGINT, signal.SIGTERM) if stop_on_signals else ()

    async def main() -> SyncResult:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            received.append(signum)
            stop.set()
            loop.remove_signal_handler(signum)

        for signum in handled:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            async with BflClient.from_settings(settings) as client:
                return await run_sync(
                    engine=engine,
                    client=client,
                    options=options,
                    now=lambda: datetime.now(UTC),
                    pid=os.getpid(),
                    progress=progress,
                    stop=stop,
                )
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    result = asyncio.run(main())
    result.signum = received[0] if received else None
    return result

"""Persistence of sync results on a caller's Session: current rows, audit versions, run log.

Every function that reads or writes finetunes takes the ``(source, account)`` it works for and
touches no other: a sync of one key never sees, updates or tombstones another key's finetunes.

Nothing here commits: the caller owns the transaction, so a batch of observations lands
completely or not at all, and a crash leaves every finetune row in step with its latest
version. Set-based statements (one per kind of change per batch) keep a 20,000-finetune
sync close to the cost of raw ``executemany``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlmodel import Session

from bflsync.extract import (
    EXTRACTED_FIELDS,
    canonical_json,
    changed_keys,
    content_hash,
    extract_fields,
    hash_canonical,
    storable_text,
    without_nul,
)
from bflsync.store import chain
from bflsync.store.schema import (
    FINGERPRINT_META_NAME,
    Account,
    Finetune,
    FinetuneVersion,
    StoreMeta,
    SyncError,
    SyncRun,
    UTCDateTime,
)
from bflsync.text.tokens import substring_text, tsvector_text
from bflsync.version import __version__

# SQLite allows 32,766 bound parameters per statement; stay far below for IN lists.
IN_CHUNK = 900

finetune_table: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
version_table: sa.Table = FinetuneVersion.__table__  # type: ignore[attr-defined]
run_table: sa.Table = SyncRun.__table__  # type: ignore[attr-defined]
error_table: sa.Table = SyncError.__table__  # type: ignore[attr-defined]
account_table: sa.Table = Account.__table__  # type: ignore[attr-defined]
meta_table: sa.Table = StoreMeta.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _Tables:
    """The tables a dialect's store has at head; ``search`` when they carry PostgreSQL's search columns."""

    finetune: sa.TableClause
    version: sa.TableClause
    search: bool


def _columns_of(table: sa.Table) -> list[sa.ColumnClause[Any]]:
    return [sa.column(column.name, column.type) for column in table.columns]


_PLAIN_TABLES = _Tables(finetune_table, version_table, search=False)
# Revision 0005_search adds these on PostgreSQL only; they stay out of the models so SQLite's schema
# does not change. They are written here, with every insert or change of details, rather than by
# triggers: jsonb needs the parsed details without NUL, and the tsvector FTS5's tokens (see fulltext).
_SEARCH_TABLES = _Tables(
    sa.table(
        "finetune",
        *_columns_of(finetune_table),
        sa.column("details_jsonb", JSONB),
        sa.column("search_tsv", TSVECTOR),
        sa.column("search_text", sa.Text),
    ),
    sa.table("finetune_version", *_columns_of(version_table), sa.column("details_jsonb", JSONB)),
    search=True,
)


def _tables(session: Session) -> _Tables:
    return _SEARCH_TABLES if session.get_bind().dialect.name == "postgresql" else _PLAIN_TABLES


def search_columns(details: Any) -> dict[str, Any]:
    """PostgreSQL's copies of a finetune's details for filters: ``details_jsonb``, ``search_tsv`` and
    ``search_text``."""
    return {
        "details_jsonb": without_nul(details),
        "search_tsv": tsvector_text(details),
        "search_text": substring_text(details),
    }


class Outcome(enum.StrEnum):
    """What storing one observation did; the values double as ``sync_run`` counter names."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class Observation:
    """The details of one finetune as fetched in a sync."""

    finetune_id: str
    details: Mapping[str, Any]
    # The API key was found in the answer and replaced (bflsync.store.redaction); kept on the version.
    redacted: bool = False


@dataclass(frozen=True, slots=True)
class _Stored:
    pk: int
    content_hash: str
    version: int
    deleted: bool


def chunked(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def start_run(session: Session, *, source: str, account: str, pid: int, now: datetime) -> int:
    """Log a new run as ``running`` and return its id."""
    run_id = session.execute(
        sa.insert(run_table)
        .values(
            started_at=now,
            status="running",
            source=source,
            account=account,
            pid=pid,
            bflsync_version=__version__,
        )
        .returning(run_table.c.id)
    ).scalar_one()
    assert isinstance(run_id, int)
    return run_id


def finish_run(
    session: Session,
    *,
    run_id: int,
    status: str,
    counts: Mapping[str, int],
    now: datetime,
    error: str | None = None,
    key_changed: bool = False,
) -> None:
    """Close a run with its final status and counters, and append it to the hash chain."""
    session.execute(
        sa.update(run_table)
        .where(run_table.c.id == run_id)
        .values(status=status, finished_at=now, error=error, key_changed=key_changed, **counts)
    )
    chain.append(session.connection(), "sync_run", ids=[run_id])


def fingerprint_secret(session: Session) -> str:
    """The store's own secret for key fingerprints (made once by migration 0003_accounts)."""
    value = session.execute(
        sa.select(meta_table.c.value).where(meta_table.c.name == FINGERPRINT_META_NAME)
    ).scalar_one()
    assert isinstance(value, str)
    return value


def recorded_fingerprint(session: Session, *, source: str, account: str) -> str | None:
    """The fingerprint of the key that last synced ``(source, account)``; None if unknown or never synced."""
    value = session.execute(
        sa.select(account_table.c.key_fingerprint).where(
            account_table.c.source == source, account_table.c.account == account
        )
    ).scalar_one_or_none()
    assert value is None or isinstance(value, str)
    return value


def record_account(
    session: Session,
    *,
    source: str,
    account: str,
    fingerprint: str,
    replace_fingerprint: bool,
    run_id: int,
    now: datetime,
) -> None:
    """Note that ``run_id`` synced ``(source, account)``; a new account row gets ``fingerprint``.

    An existing row takes the new fingerprint only when ``replace_fingerprint``: a run that did
    not list the account (``--id``) cannot tell whether its key belongs to it.
    """
    where = (account_table.c.source == source, account_table.c.account == account)
    values: dict[str, Any] = {"last_synced_at": now, "last_run_id": run_id}
    if replace_fingerprint:
        values["key_fingerprint"] = fingerprint
    updated = session.execute(sa.update(account_table).where(*where).values(**values))
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(
            sa.insert(account_table).values(
                source=source,
                account=account,
                key_fingerprint=fingerprint,
                first_synced_at=now,
                last_synced_at=now,
                last_run_id=run_id,
            )
        )


def note_listed(session: Session, *, run_id: int, listed: int) -> None:
    """Record the listing's size as soon as it is known, so a run killed later still tells it."""
    session.execute(sa.update(run_table).where(run_table.c.id == run_id).values(listed=listed))


def mark_interrupted_runs(session: Session) -> list[int]:
    """Runs still ``running`` belong to dead processes: the caller holds the sync lock.

    A killed run never wrote its counters; they are recomputed from what it stored.
    """
    running = session.execute(
        sa.select(run_table.c.id, run_table.c.started_at, run_table.c.source, run_table.c.account).where(
            run_table.c.status == "running"
        )
    ).all()
    for run_id, started_at, source, account in running:
        session.execute(
            sa.update(run_table)
            .where(run_table.c.id == run_id)
            .values(
                status="interrupted",
                error="the process ended before finishing the run",
                **_counts_stored_by(
                    session, run_id=run_id, started_at=started_at, source=source, account=account
                ),
            )
        )
    interrupted = [run_id for run_id, *_ in running]
    chain.append(session.connection(), "sync_run", ids=interrupted)
    return interrupted


def _counts_stored_by(
    session: Session, *, run_id: int, started_at: datetime, source: str, account: str
) -> dict[str, int]:
    """A dead run's counters from the versions and errors that reference it.

    Unchanged finetunes leave no version, only ``last_seen_at``: they are the finetunes of the
    run's ``(source, account)`` seen since it started without a version from it. No other run has written
    since (the sync lock, and marking happens before the next run writes anything).
    """
    versions = dict(
        session.execute(
            sa.select(version_table.c.change, sa.func.count())
            .where(version_table.c.sync_run_id == run_id)
            .group_by(version_table.c.change)
        ).all()
    )
    with_version = sa.select(version_table.c.finetune_pk).where(version_table.c.sync_run_id == run_id)
    unchanged = session.execute(
        sa.select(sa.func.count()).where(
            account_scope(source, account),
            finetune_table.c.last_seen_at >= started_at,
            finetune_table.c.id.not_in(with_version),
        )
    ).scalar_one()
    failed = session.execute(
        sa.select(sa.func.count()).where(error_table.c.sync_run_id == run_id)
    ).scalar_one()
    counts = {
        change: int(versions.get(change, 0)) for change in ("created", "updated", "deleted", "restored")
    }
    fetched = counts["created"] + counts["updated"] + counts["restored"] + unchanged
    return {**counts, "unchanged": unchanged, "fetched": fetched, "failed": failed}


def record_failure(
    session: Session,
    *,
    run_id: int,
    finetune_id: str,
    kind: str,
    message: str,
    http_status: int | None = None,
    attempts: int = 1,
) -> None:
    """Log why a finetune was not stored; NUL in its id or message is stored as U+FFFD, like every text column."""
    session.execute(
        sa.insert(error_table).values(
            sync_run_id=run_id,
            finetune_id=storable_text(finetune_id),
            kind=kind,
            http_status=http_status,
            message=storable_text(message),
            attempts=attempts,
        )
    )


# PostgreSQL SQLSTATE class 54, "program limit exceeded": a tsvector over 1 MB, an index entry
# over a B-tree page's third. Class 22 (data exception) reaches us as DataError.
_PROGRAM_LIMIT_EXCEEDED = "54"


def is_storage_error(error: BaseException) -> bool:
    """True when the database refused a value it was given, not when the database itself failed.

    Such an error belongs to one finetune (a string over SQLite's length limit, NUL where
    PostgreSQL takes none): the caller stores the rest of the batch and records a ``storage``
    error for that one. Errors of the store itself (locked, full, gone) are not storage errors.
    """
    if isinstance(error, sa.exc.DataError | RecursionError):
        # RecursionError: details nested deeper than a recursive step of storing them can walk.
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    return (
        isinstance(error, sa.exc.DBAPIError)
        and isinstance(sqlstate, str)
        and sqlstate.startswith(_PROGRAM_LIMIT_EXCEEDED)
    )


def storage_error_message(finetune_id: str, error: BaseException) -> str:
    """One line naming the finetune and the database's reason, without the statement or its values."""
    if isinstance(error, RecursionError):
        return f"cannot store finetune {finetune_id!r}: its details nest too deeply to store"
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"cannot store finetune {finetune_id!r}: {reason[0] if reason else type(error).__name__}"


def stored_ids(session: Session, *, source: str, account: str, live_only: bool = False) -> set[str]:
    """Every finetune id stored for ``(source, account)``: tombstoned ones too, unless ``live_only``."""
    query = sa.select(finetune_table.c.finetune_id).where(account_scope(source, account))
    if live_only:
        query = query.where(finetune_table.c.deleted_at.is_(None))
    return set(session.execute(query).scalars())


def record_observations(
    session: Session,
    observations: Sequence[Observation],
    *,
    source: str,
    account: str,
    run_id: int | None,
    now: datetime,
) -> dict[str, Outcome]:
    """Store a batch: new, changed and restored finetunes get a version; unchanged ones get ``last_seen_at``.

    A finetune id appearing twice in one batch keeps its last observation.
    """
    latest = {observation.finetune_id: observation for observation in observations}
    stored = _load_stored(session, source=source, account=account, finetune_ids=list(latest))
    tables = _tables(session)
    unchained = chain.unchained(session.connection(), "finetune_version")
    outcomes: dict[str, Outcome] = {}
    new_rows: list[dict[str, Any]] = []
    new_keys: list[list[str]] = []
    new_redactions: list[bool] = []
    changed: list[tuple[_Stored, Observation, str, str, Outcome]] = []
    unchanged_pks: list[int] = []

    for finetune_id, observation in latest.items():
        canonical = canonical_json(observation.details)
        digest = hash_canonical(canonical)
        current = stored.get(finetune_id)
        outcome = _outcome(current, digest)
        outcomes[finetune_id] = outcome
        if current is None:
            new_keys.append(changed_keys(None, observation.details))
            new_redactions.append(observation.redacted)
            new_rows.append(
                {
                    "source": source,
                    "account": account,
                    "finetune_id": finetune_id,
                    "details": canonical,
                    **extract_fields(observation.details),
                    "content_hash": digest,
                    "version": 1,
                    **(search_columns(observation.details) if tables.search else {}),
                }
            )
        elif outcome is Outcome.UNCHANGED:
            unchanged_pks.append(current.pk)
        else:
            changed.append((current, observation, canonical, digest, outcome))

    _insert_new(session, tables, new_rows, new_keys, new_redactions, run_id=run_id, now=now)
    _apply_changes(session, tables, changed, run_id=run_id, now=now)
    chain.append(session.connection(), "finetune_version", skip=unchained)
    for pks in chunked(unchanged_pks):
        session.execute(
            sa.update(finetune_table).where(finetune_table.c.id.in_(pks)).values(last_seen_at=now)
        )
    return outcomes


def preview_observations(
    session: Session, observations: Sequence[Observation], *, source: str, account: str
) -> dict[str, Outcome]:
    """What :func:`record_observations` would do with a batch, read without writing (``sync --dry-run``)."""
    latest = {observation.finetune_id: observation for observation in observations}
    stored = _load_stored(session, source=source, account=account, finetune_ids=list(latest))
    return {
        finetune_id: _outcome(stored.get(finetune_id), content_hash(observation.details))
        for finetune_id, observation in latest.items()
    }


def missing_from_listing(
    session: Session, *, source: str, account: str, listed_ids: Iterable[str]
) -> list[str]:
    """Live (not tombstoned) finetune ids of ``(source, account)`` that a listing no longer has, sorted."""
    gone = _live_missing(session, source=source, account=account, listed_ids=listed_ids)
    return sorted(finetune_id for _, finetune_id, _ in gone)


def tombstone_missing(
    session: Session,
    *,
    source: str,
    account: str,
    listed_ids: Iterable[str],
    run_id: int | None,
    now: datetime,
) -> list[str]:
    """Mark stored, live finetunes of ``(source, account)`` the listing no longer has; never delete rows.

    Only that account's: another key's finetunes are not in this key's listing, and are not gone.
    """
    gone = _live_missing(session, source=source, account=account, listed_ids=listed_ids)
    old_details = _load_details(session, [pk for pk, _, _ in gone])
    versions = [
        {
            "finetune_pk": pk,
            "version": version + 1,
            "change": "deleted",
            "details": None,
            "content_hash": None,
            "changed_keys": canonical_json(changed_keys(old_details[pk], None)),
            "observed_at": now,
            "sync_run_id": run_id,
        }
        for pk, _, version in gone
    ]
    if versions:
        unchained = chain.unchained(session.connection(), "finetune_version")
        session.execute(sa.insert(version_table), versions)
        chain.append(session.connection(), "finetune_version", skip=unchained)
        session.execute(
            sa.update(finetune_table)
            .where(finetune_table.c.id == sa.bindparam("pk"))
            .values(
                deleted_at=now,
                last_changed_at=now,
                version=sa.bindparam("new_version"),
            ),
            [{"pk": pk, "new_version": version + 1} for pk, _, version in gone],
        )
    return sorted(finetune_id for _, finetune_id, _ in gone)


def reextract(session: Session, *, batch_size: int = 2000) -> int:
    """Recompute every column derived from the stored raw JSON; return how many finetune rows changed.

    Used after extraction rules change, and by migrations that add a column. Walks the
    table in primary-key pages so memory stays flat however large the store is. On PostgreSQL
    the search copies (``details_jsonb``, ``search_tsv``, ``search_text``, and the versions' ``details_jsonb``) are
    derived too, so a change of tokenising rules reaches the rows already stored.
    """
    columns = [finetune_table.c[name] for name in EXTRACTED_FIELDS]
    statement = (
        sa.update(finetune_table)
        .where(finetune_table.c.id == sa.bindparam("pk"))
        .values({name: sa.bindparam(f"new_{name}") for name in EXTRACTED_FIELDS})
    )
    search = _tables(session).search
    changed: set[int] = set()
    last_pk = 0
    while True:
        page = session.execute(
            sa.select(finetune_table.c.id, finetune_table.c.details, *columns)
            .where(finetune_table.c.id > last_pk)
            .order_by(finetune_table.c.id)
            .limit(batch_size)
        ).all()
        if not page:
            break
        last_pk = page[-1].id
        updates = []
        for row in page:
            fields = extract_fields(json.loads(row.details))
            if any(getattr(row, name) != value for name, value in fields.items()):
                updates.append({"pk": row.id, **{f"new_{name}": value for name, value in fields.items()}})
        if updates:
            session.execute(statement, updates)
        changed.update(update["pk"] for update in updates)
        if search:
            changed.update(
                _refresh_search_copies(session, "finetune", [(row.id, row.details) for row in page])
            )
    if search:
        _refresh_version_copies(session, batch_size=batch_size)
    return len(changed)


# PostgreSQL's search copies per table: (column, type), as revisions 0005_search and 0009_search_text add them.
_SEARCH_COPIES: dict[str, list[tuple[str, str]]] = {
    "finetune": [("details_jsonb", "jsonb"), ("search_tsv", "tsvector"), ("search_text", "text")],
    "finetune_version": [("details_jsonb", "jsonb")],
}


def _refresh_version_copies(session: Session, *, batch_size: int) -> None:
    last_pk = 0
    while page := session.execute(
        sa.select(version_table.c.id, version_table.c.details)
        # A ``deleted`` version has no details, hence no copies.
        .where(version_table.c.id > last_pk, version_table.c.details.is_not(None))
        .order_by(version_table.c.id)
        .limit(batch_size)
    ).all():
        last_pk = page[-1].id
        _refresh_search_copies(session, "finetune_version", [(row.id, row.details) for row in page])


def _refresh_search_copies(session: Session, table: str, rows: Sequence[tuple[int, str]]) -> list[int]:
    """Rewrite the PostgreSQL search copies of ``rows`` (pk, details) that differ; return their pks.

    The comparison runs in the database, which alone knows a ``tsvector``'s normal form. A row
    whose details no ``jsonb`` can hold (NaN written by another tool) keeps its copies.
    """
    pks, jsonbs, tsvs, texts = [], [], [], []
    for pk, details in rows:
        parsed = json.loads(details)
        try:
            jsonbs.append(json.dumps(without_nul(parsed), allow_nan=False))
        except ValueError:
            continue
        pks.append(pk)
        tsvs.append(tsvector_text(parsed))
        texts.append(substring_text(parsed))
    if not pks:
        return []
    copies = _SEARCH_COPIES[table]
    values: dict[str, list[str]] = {"details_jsonb": jsonbs, "search_tsv": tsvs, "search_text": texts}
    fresh = ", ".join(f"unnest(CAST(:{name} AS {kind}[])) AS {name}" for name, kind in copies)
    assign = ", ".join(f"{name} = fresh.{name}" for name, _ in copies)
    differs = " OR ".join(f"t.{name} IS DISTINCT FROM fresh.{name}" for name, _ in copies)
    refresh = sa.text(
        f"UPDATE {table} AS t SET {assign}"
        f" FROM (SELECT unnest(CAST(:pks AS bigint[])) AS id, {fresh}) AS fresh"
        f" WHERE t.id = fresh.id AND ({differs}) RETURNING t.id"
    )
    params: dict[str, Any] = {"pks": pks, **{name: values[name] for name, _ in copies}}
    return [int(pk) for (pk,) in session.execute(refresh, params)]


def _outcome(current: _Stored | None, digest: str) -> Outcome:
    if current is None:
        return Outcome.CREATED
    if current.deleted:
        return Outcome.RESTORED
    return Outcome.UNCHANGED if current.content_hash == digest else Outcome.UPDATED


def account_scope(source: str, account: str) -> sa.ColumnElement[bool]:
    """The finetunes of one ``(source, account)``."""
    return sa.and_(finetune_table.c.source == source, finetune_table.c.account == account)


def _live_missing(
    session: Session, *, source: str, account: str, listed_ids: Iterable[str]
) -> list[tuple[int, str, int]]:
    """(pk, finetune id, version) of live finetunes of ``(source, account)`` absent from ``listed_ids``."""
    listed = set(listed_ids)
    live = session.execute(
        sa.select(finetune_table.c.id, finetune_table.c.finetune_id, finetune_table.c.version).where(
            account_scope(source, account), finetune_table.c.deleted_at.is_(None)
        )
    ).all()
    return [(pk, finetune_id, version) for pk, finetune_id, version in live if finetune_id not in listed]


def _load_stored(
    session: Session, *, source: str, account: str, finetune_ids: Sequence[str]
) -> dict[str, _Stored]:
    stored: dict[str, _Stored] = {}
    columns = (
        finetune_table.c.finetune_id,
        finetune_table.c.id,
        finetune_table.c.content_hash,
        finetune_table.c.version,
        # Only whether it is set: parsing every timestamp would cost more than the query.
        finetune_table.c.deleted_at.is_not(None),
    )
    for ids in chunked(finetune_ids):
        query = sa.select(*columns).where(
            account_scope(source, account), finetune_table.c.finetune_id.in_(ids)
        )
        for finetune_id, pk, digest, version, deleted in session.execute(query).all():
            stored[finetune_id] = _Stored(pk, digest, version, bool(deleted))
    return stored


def _load_details(session: Session, pks: Sequence[int]) -> dict[int, dict[str, Any] | None]:
    details: dict[int, dict[str, Any] | None] = {}
    for batch in chunked(pks):
        query = sa.select(finetune_table.c.id, finetune_table.c.details).where(finetune_table.c.id.in_(batch))
        for pk, text in session.execute(query):
            value = json.loads(text)
            details[pk] = value if isinstance(value, dict) else None
    return details


def _insert_new(
    session: Session,
    tables: _Tables,
    rows: list[dict[str, Any]],
    keys_per_row: list[list[str]],
    redactions: list[bool],
    *,
    run_id: int | None,
    now: datetime,
) -> None:
    """Insert new finetunes and their version 1 with two executemany statements.

    No RETURNING: SQLAlchemy would then insert row by row to match keys to rows. Version 1
    copies the row it belongs to, found by its unique (source, account, finetune_id).
    """
    if not rows:
        return
    stamp = _timestamp(session, now)
    finetune = tables.finetune
    session.execute(
        sa.insert(finetune).values(first_seen_at=stamp, last_seen_at=stamp, last_changed_at=stamp),
        rows,
    )
    copied = ["details", "content_hash", *(["details_jsonb"] if tables.search else [])]
    created_version = sa.insert(tables.version).from_select(
        [
            "finetune_pk",
            "version",
            "change",
            *copied,
            "changed_keys",
            "observed_at",
            "sync_run_id",
            "redacted",
        ],
        sa.select(
            finetune.c.id,
            finetune.c.version,
            sa.literal("created"),
            *(finetune.c[name] for name in copied),
            sa.bindparam("v_changed_keys", type_=sa.Text()),
            stamp,
            sa.literal(run_id, sa.Integer()),
            sa.bindparam("v_redacted", type_=sa.Boolean()),
        ).where(
            finetune.c.source == sa.bindparam("v_source"),
            finetune.c.account == sa.bindparam("v_account"),
            finetune.c.finetune_id == sa.bindparam("v_finetune_id"),
        ),
    )
    session.execute(
        created_version,
        [
            {
                "v_source": row["source"],
                "v_account": row["account"],
                "v_finetune_id": row["finetune_id"],
                "v_changed_keys": canonical_json(keys),
                "v_redacted": redacted,
            }
            for row, keys, redacted in zip(rows, keys_per_row, redactions, strict=True)
        ],
    )


def _timestamp(session: Session, now: datetime) -> sa.BindParameter[Any]:
    """``now`` for an executemany: on SQLite converted to its stored text once, not once per row."""
    dialect = session.get_bind().dialect
    if dialect.name != "sqlite":
        return sa.literal(now, UTCDateTime())
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    # String processes nothing, and SQLite's typeless columns take the converted text as is.
    return sa.literal(processor(now), sa.String())


def _apply_changes(
    session: Session,
    tables: _Tables,
    changed: list[tuple[_Stored, Observation, str, str, Outcome]],
    *,
    run_id: int | None,
    now: datetime,
) -> None:
    if not changed:
        return
    old_details = _load_details(session, [current.pk for current, *_ in changed])
    row_updates = []
    versions = []
    derived = [*EXTRACTED_FIELDS, *(["details_jsonb", "search_tsv", "search_text"] if tables.search else [])]
    for current, observation, canonical, digest, outcome in changed:
        search = search_columns(observation.details) if tables.search else {}
        row_updates.append(
            {
                "pk": current.pk,
                "new_details": canonical,
                "new_hash": digest,
                "new_version": current.version + 1,
                **{f"new_{name}": value for name, value in extract_fields(observation.details).items()},
                **{f"new_{name}": value for name, value in search.items()},
            }
        )
        versions.append(
            {
                "finetune_pk": current.pk,
                "version": current.version + 1,
                "change": outcome.value,
                "details": canonical,
                "content_hash": digest,
                "changed_keys": canonical_json(
                    changed_keys(old_details.get(current.pk), observation.details)
                ),
                "observed_at": now,
                "sync_run_id": run_id,
                "redacted": observation.redacted,
                **({"details_jsonb": search["details_jsonb"]} if tables.search else {}),
            }
        )
    finetune = tables.finetune
    session.execute(
        sa.update(finetune)
        .where(finetune.c.id == sa.bindparam("pk"))
        .values(
            details=sa.bindparam("new_details"),
            content_hash=sa.bindparam("new_hash"),
            version=sa.bindparam("new_version"),
            last_seen_at=now,
            last_changed_at=now,
            deleted_at=None,
            **{name: sa.bindparam(f"new_{name}", type_=finetune.c[name].type) for name in derived},
        ),
        row_updates,
    )
    session.execute(sa.insert(tables.version), versions)

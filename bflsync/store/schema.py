"""The store's tables. Migrations in ``migrations/`` create them; nothing else does.

``finetune`` holds the current state of each finetune per ``(source, account)``,
``finetune_version`` the append-only audit history, ``finetune_status`` the append-only
history of its training status, ``sync_run`` one row per sync (with the credit balance it
read) and ``sync_error`` one row per finetune that failed in a run. ``account`` records which key
last synced each ``(source, account)``, as a keyed fingerprint whose secret lives in
``store_meta``. ``details`` columns hold canonical JSON text; the typed columns beside them
are derived from it by :mod:`bflsync.extract`.

A finetune's identity is ``(source, account, finetune_id)``: ``source`` is where it was
fetched from (see :func:`bflsync.bfl.client.source_of`), ``account`` the label the user gave the
key (``sync --account``), so two keys, or two regions, never see each other's finetunes.

``finetune_label``, ``finetune_label_change`` and ``finetune_note`` hold what people write
about a finetune (``bflsync label`` and ``note``): BFL has no such fields, and a sync never
writes these tables, so they survive every sync, deletion and restore of their finetune.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from bflsync import timeform
from bflsync.config import DEFAULT_ACCOUNT

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

# What revisions 0005_search and 0009_search_text add on PostgreSQL only (written by bflsync.store.writes):
# kept out of the classes so a SQLite store's schema has none of it, and not counted as drift.
POSTGRES_ONLY_COLUMNS = frozenset(
    {
        ("finetune", "details_jsonb"),
        ("finetune", "search_tsv"),
        ("finetune", "search_text"),
        ("finetune_version", "details_jsonb"),
    }
)
POSTGRES_ONLY_INDEXES = frozenset(
    {"ix_finetune_details_jsonb", "ix_finetune_search_tsv", "ix_finetune_search_text"}
)

CHANGE_KINDS = ("created", "updated", "deleted", "restored")
RUN_STATUSES = ("running", "ok", "partial", "failed", "interrupted")
LABEL_CHANGES = ("set", "removed")
# The store_meta entry holding the per-store secret of the key fingerprints.
FINGERPRINT_META_NAME = "fingerprint_secret"
# The store_meta entry holding the origin line of the store's checkpoints (made by 0010_hash_chain).
CHAIN_ORIGIN_META_NAME = "chain_origin"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, whatever the backend keeps.

    SQLite has no time zone type: values are stored as text in the one form of
    :mod:`bflsync.timeform` (``2026-12-04T13:18:17.637556Z``, which sorts and compares correctly
    in plain SQL and is what the CLI prints) and come back with ``tzinfo=UTC``. PostgreSQL keeps
    ``timestamptz``. Naive datetimes are refused on the way in, because guessing their zone is
    how audit logs go wrong.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[datetime]:
        if dialect.name == "sqlite":
            stored = sqlite.DATETIME(  # type: ignore[no-untyped-call]
                storage_format=timeform.SQLITE_STORAGE_FORMAT, regexp=timeform.SQLITE_REGEXP
            )
            return dialect.type_descriptor(stored)
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: bflsync stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Finetune(SQLModel, table=True):
    """Current state of one finetune as last seen by one account at one source."""

    __tablename__ = "finetune"
    __table_args__ = (sa.UniqueConstraint("source", "account", "finetune_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    # The server default fills the rows a 0002 store already has, and plain-SQL inserts.
    account: str = Field(
        default=DEFAULT_ACCOUNT, index=True, sa_column_kwargs={"server_default": DEFAULT_ACCOUNT}
    )
    finetune_id: str = Field(index=True)
    details: str = Field(sa_type=sa.Text)

    finetune_comment: str | None = None
    trigger_word: str | None = Field(default=None, index=True)
    mode: str | None = Field(default=None, index=True)
    finetune_type: str | None = Field(default=None, index=True)
    priority: str | None = Field(default=None, index=True)
    iterations: int | None = Field(default=None, index=True)
    lora_rank: int | None = Field(default=None, index=True)
    learning_rate: float | None = Field(default=None, index=True)
    captioning: bool | None = None
    remote_timestamp: str | None = None

    content_hash: str
    version: int
    first_seen_at: datetime = Field(sa_type=UTCDateTime)
    last_seen_at: datetime = Field(sa_type=UTCDateTime)
    last_changed_at: datetime = Field(sa_type=UTCDateTime, index=True)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)

    # Training status from get_result: NULL until a sync has asked.
    status: str | None = Field(default=None, index=True)
    progress: float | None = None
    status_checked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ready_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class FinetuneVersion(SQLModel, table=True):
    """One observed change of a finetune; rows are only ever appended."""

    __tablename__ = "finetune_version"
    __table_args__ = (
        sa.UniqueConstraint("finetune_pk", "version"),
        sa.CheckConstraint(_in("change", CHANGE_KINDS), name="change"),
    )

    id: int | None = Field(default=None, primary_key=True)
    finetune_pk: int = Field(foreign_key="finetune.id", index=True)
    version: int
    change: str
    details: str | None = Field(default=None, sa_type=sa.Text)
    content_hash: str | None = None
    changed_keys: str | None = Field(default=None, sa_type=sa.Text)
    observed_at: datetime = Field(sa_type=UTCDateTime, index=True)
    sync_run_id: int | None = Field(default=None, foreign_key="sync_run.id", index=True)
    # Its place in the store's hash chain and its link hash (bflsync.store.chain), written in the
    # transaction that writes the row.
    chain_seq: int | None = Field(default=None, sa_type=sa.BigInteger, index=True, unique=True)
    row_hash: str | None = Field(default=None, sa_type=sa.String(64))
    # The API key was found in the answer and replaced by a marker before storage (bflsync.store.redaction).
    redacted: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})


class FinetuneStatus(SQLModel, table=True):
    """One observed change of a finetune's training status or progress; rows are only ever appended.

    ``answer`` is the ``get_result`` answer as canonical JSON, ``result`` included, because BFL
    forgets it after a while.
    """

    __tablename__ = "finetune_status"

    id: int | None = Field(default=None, primary_key=True)
    finetune_pk: int = Field(foreign_key="finetune.id", index=True)
    status: str
    progress: float | None = None
    answer: str = Field(sa_type=sa.Text)
    observed_at: datetime = Field(sa_type=UTCDateTime, index=True)
    sync_run_id: int | None = Field(default=None, foreign_key="sync_run.id", index=True)
    # Its place in the store's hash chain and its link hash (bflsync.store.chain), written in the
    # transaction that writes the row.
    chain_seq: int | None = Field(default=None, sa_type=sa.BigInteger, index=True, unique=True)
    row_hash: str | None = Field(default=None, sa_type=sa.String(64))


class SyncRun(SQLModel, table=True):
    """One invocation of ``bflsync sync``: what it saw and how it ended."""

    __tablename__ = "sync_run"
    __table_args__ = (sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),)

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(index=True)
    source: str
    account: str = Field(default=DEFAULT_ACCOUNT, sa_column_kwargs={"server_default": DEFAULT_ACCOUNT})
    # The key differed from the one last recorded for (source, account), and the run went ahead.
    key_changed: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    pid: int
    bflsync_version: str
    listed: int = 0
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    restored: int = 0
    failed: int = 0
    status_failed: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    credits: float | None = None
    error: str | None = Field(default=None, sa_type=sa.Text)
    # Its place in the store's hash chain and its link hash (bflsync.store.chain), written in the
    # transaction that finishes the run (NULL while it runs).
    chain_seq: int | None = Field(default=None, sa_type=sa.BigInteger, index=True, unique=True)
    row_hash: str | None = Field(default=None, sa_type=sa.String(64))


class SyncError(SQLModel, table=True):
    """A finetune whose details could not be stored in a run, and why."""

    __tablename__ = "sync_error"

    id: int | None = Field(default=None, primary_key=True)
    sync_run_id: int = Field(foreign_key="sync_run.id", index=True)
    finetune_id: str = Field(index=True)
    kind: str
    http_status: int | None = None
    message: str = Field(sa_type=sa.Text)
    attempts: int = 1


class Account(SQLModel, table=True):
    """One ``(source, account)`` that has been synced, and which key synced it last.

    ``key_fingerprint`` is the first 16 hex digits of HMAC-SHA256 of the API key under the
    store's own random secret (``store_meta``): enough to notice that a different key is
    syncing under this label, useless for guessing the key or matching it across stores.
    """

    __tablename__ = "account"
    __table_args__ = (sa.UniqueConstraint("source", "account"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    account: str
    # NULL for accounts carried over from a store synced before fingerprints existed (0002).
    key_fingerprint: str | None = None
    first_synced_at: datetime = Field(sa_type=UTCDateTime)
    last_synced_at: datetime = Field(sa_type=UTCDateTime)
    last_run_id: int | None = Field(default=None, foreign_key="sync_run.id")


class StoreMeta(SQLModel, table=True):
    """Named values that belong to the store itself, e.g. the fingerprint secret."""

    __tablename__ = "store_meta"

    name: str = Field(primary_key=True)
    value: str = Field(sa_type=sa.Text)


class FinetuneLabel(SQLModel, table=True):
    """A label's current value on one finetune; ``finetune_label_change`` keeps how it got there."""

    __tablename__ = "finetune_label"
    __table_args__ = (sa.UniqueConstraint("finetune_pk", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    finetune_pk: int = Field(foreign_key="finetune.id", index=True)
    key: str = Field(index=True)
    value: str = Field(sa_type=sa.Text)
    """The value as people write it in SQL: text as is (``value='acme'`` finds it), numbers and
    booleans as JSON spells them (``300``, ``true``)."""
    value_json: str | None = Field(default=None, sa_type=sa.Text)
    """Canonical JSON of the string, number or boolean, typed as filter values are: what queries read.
    Always written; nullable only so that revision 0011_iso_times adds it without rebuilding the table."""
    set_by: str
    set_at: datetime = Field(sa_type=UTCDateTime)
    set_by_role: str | None = None
    """The PostgreSQL ``session_user`` that set it; NULL on SQLite (``set_by`` is the OS account)."""
    set_as: str | None = None
    """Free text given with ``--as NAME``: an attribution, not an identity."""


class FinetuneLabelChange(SQLModel, table=True):
    """One label set or removed: who (the OS user name) and when; rows are only ever appended."""

    __tablename__ = "finetune_label_change"
    __table_args__ = (sa.CheckConstraint(_in("change", LABEL_CHANGES), name="change"),)

    id: int | None = Field(default=None, primary_key=True)
    finetune_pk: int = Field(foreign_key="finetune.id", index=True)
    key: str
    change: str
    value: str | None = Field(default=None, sa_type=sa.Text)
    """The new value as canonical JSON; NULL when the label was removed."""
    changed_by: str
    changed_at: datetime = Field(sa_type=UTCDateTime, index=True)
    # Its place in the store's hash chain and its link hash (bflsync.store.chain), written in the
    # transaction that writes the row.
    chain_seq: int | None = Field(default=None, sa_type=sa.BigInteger, index=True, unique=True)
    row_hash: str | None = Field(default=None, sa_type=sa.String(64))
    changed_by_role: str | None = None
    changed_as: str | None = None


class FinetuneNote(SQLModel, table=True):
    """A note appended to a finetune by someone; rows are only ever appended."""

    __tablename__ = "finetune_note"

    id: int | None = Field(default=None, primary_key=True)
    finetune_pk: int = Field(foreign_key="finetune.id", index=True)
    text: str = Field(sa_type=sa.Text)
    written_by: str
    written_at: datetime = Field(sa_type=UTCDateTime, index=True)
    # Its place in the store's hash chain and its link hash (bflsync.store.chain), written in the
    # transaction that writes the row.
    chain_seq: int | None = Field(default=None, sa_type=sa.BigInteger, index=True, unique=True)
    row_hash: str | None = Field(default=None, sa_type=sa.String(64))
    written_by_role: str | None = None
    written_as: str | None = None


class BflsyncLock(SQLModel, table=True):
    """One row that a PostgreSQL sync locks ``FOR UPDATE``: only a role that may UPDATE it can lock.

    See :mod:`bflsync.store.lock`; SQLite stores lock the file instead.
    """

    __tablename__ = "bflsync_lock"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})

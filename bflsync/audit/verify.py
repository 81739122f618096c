"""``bflsync audit verify``: recompute the hash chain and check the current tables against it.

What a pass proves: every chained row still holds the content it was written with, in its place;
no row was inserted into the chain, removed from its middle or moved; every row of the chained
tables is in it (runs still ``running`` apart); each finetune's current row (its details, the
columns extracted from them, its version, tombstone, first-seen and last-changed times and training
status) and its current labels agree with the last of its history. Not covered: the bookkeeping no
history row records (``last_seen_at``, ``status_checked_at``, ``ready_at``), ``sync_error``,
``account``, and PostgreSQL's derived search copies (rebuilt by ``db reextract``). What it cannot prove alone: that the newest rows were not
removed, or the whole chain recomputed by someone who can write to the store. A checkpoint kept
elsewhere proves that (``checkpoint=``): the chain's first ``size`` rows must hash to its head.

The first problem found is raised as an :class:`~bflsync.errors.AuditError` naming the table,
the row and what differs; the walk streams the chain, so memory holds one page of rows plus a
little per finetune.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bflsync.audit.checkpoint import Checkpoint
from bflsync.errors import AuditError
from bflsync.extract import EXTRACTED_FIELDS, extract_fields
from bflsync.store import chain
from bflsync.store.labels import plain_text
from bflsync.store.schema import Finetune

finetune_table: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
# The time columns of each chained table, by their place in its hashed values.
_TIME_POSITIONS = {
    name: tuple(index for index, kind in enumerate(spec.kinds) if kind is chain.Kind.TIME)
    for name, spec in chain.SPECS.items()
}
# The current-table times verify compares with the history, held to the one form as the chain's are.
_FINETUNE_TIMES = ("first_seen_at", "last_changed_at", "deleted_at")
# What the walk keeps beside the hashed values: which finetune a row belongs to.
_EXTRA = {name: ("finetune_pk",) for name in ("finetune_version", "finetune_status", "finetune_label_change")}


@dataclass(frozen=True, slots=True)
class Verified:
    """An intact record: the chain's size and head, and how many finetunes were checked against it."""

    size: int
    head: bytes
    finetunes: int
    checkpoint: Checkpoint | None = None

    def summary(self) -> str:
        line = f"ok: {self.size} rows in the hash chain, head {self.head.hex()[:16]}…, {self.finetunes} finetunes agree"
        if self.checkpoint is not None:
            line += f"; extends the checkpoint of size {self.checkpoint.size}"
        return line


@dataclass
class _History:
    """What the walk remembers per finetune for the current-table check."""

    version: dict[int, tuple[int, str, int]] = field(default_factory=dict)  # pk -> (version, change, row id)
    observed: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # pk -> (first, last observed_at)
    details: dict[int, tuple[str, str | None, int]] = field(
        default_factory=dict
    )  # pk -> (details, hash, version)
    status: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # pk -> (status, progress)
    labels: dict[tuple[int, str], chain.ChainedRow] = field(default_factory=dict)

    def note(self, row: chain.ChainedRow) -> None:
        table = row.spec.name
        if table == "sync_run" or table == "finetune_note":
            return
        pk = row.extra[0]
        if table == "finetune_version":
            self.version[pk] = (row.value("version"), row.value("change"), row.row_id)
            observed = chain.normal_value(chain.Kind.TIME, row.value("observed_at"))
            self.observed[pk] = (self.observed.get(pk, (observed, None))[0], observed)
            if row.value("details") is not None:
                self.details[pk] = (row.value("details"), row.value("content_hash"), row.value("version"))
        elif table == "finetune_status":
            self.status[pk] = (row.value("status"), row.value("progress"))
        else:
            self.labels[(pk, row.value("key"))] = row


def verify(connection: Connection, *, checkpoint: Checkpoint | None = None) -> Verified:
    """Check the whole record; return what was verified, or raise AuditError at the first problem."""
    if checkpoint is not None and checkpoint.origin != chain.origin(connection):
        raise AuditError(
            f"the checkpoint is for {checkpoint.origin!r}, not this store ({chain.origin(connection)!r})"
        )
    _refuse_unchained(connection)
    history = _History()
    size, head = _walk(connection, history, checkpoint=checkpoint)
    finetunes = _check_finetunes(connection, history)
    _check_labels(connection, history)
    return Verified(size=size, head=head, finetunes=finetunes, checkpoint=checkpoint)


def _where(row: chain.ChainedRow) -> str:
    return f"{row.spec.name} row {row.row_id} (place {row.value('chain_seq')})"


def _refuse_unchained(connection: Connection) -> None:
    """Every row of a chained table is in the chain, except the newest run while it is still running."""
    _refuse_odd_places(connection)
    _refuse_stale_running(connection)
    for table in chain.CHAINED_TABLES:
        rows = sa.table(table, sa.column("id"), sa.column("chain_seq"), sa.column("status"))
        query = sa.select(rows.c.id).where(rows.c.chain_seq.is_(None)).order_by(rows.c.id).limit(1)
        if table == "sync_run":
            query = query.where(sa.or_(rows.c.status.is_(None), rows.c.status != "running"))
        row_id = connection.execute(query).scalar()
        if row_id is not None:
            raise AuditError(
                f"{table} row {row_id} is not in the hash chain: it was inserted by something other than bflsync"
            )


def _refuse_odd_places(connection: Connection) -> None:
    """A place must be a whole number before the chain can be walked in order of it. SQLite keeps
    text or a fraction that another tool writes into its INTEGER column (PostgreSQL's bigint cannot
    hold them)."""
    if connection.dialect.name != "sqlite":
        return
    for table in chain.CHAINED_TABLES:
        rows = sa.table(table, sa.column("id"), sa.column("chain_seq"))
        odd = connection.execute(
            sa.select(rows.c.id, rows.c.chain_seq)
            .where(sa.func.typeof(rows.c.chain_seq).not_in(["integer", "null"]))
            .order_by(rows.c.id)
            .limit(1)
        ).first()
        if odd is not None:
            raise AuditError(
                f"{table} row {odd[0]} {chain.place_damage(odd[1])}: it was rewritten by something other than bflsync"
            )


def _refuse_stale_running(connection: Connection) -> None:
    """A run is chained when it finishes; until then only the newest run can be ``running``.

    Runs start under the store's sync lock, one at a time, and the next sync marks a run whose
    process died ``interrupted``: so a live run, or one that died since, is always the newest, and
    a ``running`` row older than another run was inserted or set back by another tool. (A forged
    newest run cannot be told from one whose process died; the next sync chains either as
    ``interrupted``, which a checkpoint taken meanwhile does not cover.)
    """
    runs = sa.table("sync_run", sa.column("id"), sa.column("status"), sa.column("chain_seq"))
    newest = connection.execute(sa.select(sa.func.max(runs.c.id))).scalar()
    stale = connection.execute(
        sa.select(runs.c.id)
        .where(runs.c.status == "running", runs.c.chain_seq.is_(None), runs.c.id != newest)
        .order_by(runs.c.id)
        .limit(1)
    ).scalar()
    if stale is not None:
        raise AuditError(
            f"sync_run row {stale} is 'running' but run {newest} started after it: "
            "only the newest run can still be running (the row was inserted or set back by another tool)"
        )


def _walk(connection: Connection, history: _History, *, checkpoint: Checkpoint | None) -> tuple[int, bytes]:
    """Recompute every link in chain order; return the size and head."""
    previous = chain.GENESIS
    expected = 1
    last: chain.ChainedRow | None = None
    rows: Iterator[chain.ChainedRow] = chain.chained_rows(connection, extra=_EXTRA)
    if checkpoint is not None and checkpoint.size == 0:
        _check_checkpoint(checkpoint, previous)
    for row in rows:
        if row.seq != expected:
            raise AuditError(_place_problem(row, last, expected))
        if row.row_hash is None or not row.links_to(previous):
            raise AuditError(_link_problem(row, next(rows, None)))
        _check_time_forms(row)
        previous = bytes.fromhex(row.row_hash)
        history.note(row)
        if checkpoint is not None and expected == checkpoint.size:
            _check_checkpoint(checkpoint, previous)
        last = row
        expected += 1
    size = expected - 1
    if checkpoint is not None and size < checkpoint.size:
        raise AuditError(
            f"the chain has {size} rows but the checkpoint has {checkpoint.size}: "
            "rows were removed from its end, or the store was replaced"
        )
    return size, previous


def _time_form_problem(where: str, column: str, value: Any) -> str:
    normal = chain.normal_value(chain.Kind.TIME, value)
    return (
        f"{where}: {column} is stored as {value!r}, not in the store's one form ({normal}): "
        "it was rewritten by another tool"
    )


def _check_time_forms(row: chain.ChainedRow) -> None:
    """A time's hash is of its parsed value, so its stored text is held to the one form bflsync writes."""
    for position in _TIME_POSITIONS[row.spec.name]:
        value = row.values[position]
        if not chain.canonical_time_text(value):
            raise AuditError(_time_form_problem(_where(row), row.spec.columns[position], value))


def _check_checkpoint(checkpoint: Checkpoint, head: bytes) -> None:
    if head != checkpoint.root:
        raise AuditError(
            f"the chain's first {checkpoint.size} rows do not hash to the checkpoint's head: "
            "history up to the checkpoint was rewritten"
        )


def _place_problem(row: chain.ChainedRow, last: chain.ChainedRow | None, expected: int) -> str:
    if row.seq < expected and last is not None:
        return (
            f"{_where(row)} claims a place {_where(last)} holds already: "
            "a row was inserted into the chain or moved"
        )
    if row.seq < expected:
        return f"{_where(row)} holds a place the chain does not have: the row was inserted or moved"
    if expected == row.seq - 1:
        return f"place {expected} of the chain is missing before {_where(row)}: a row was deleted"
    return (
        f"places {expected} to {row.seq - 1} of the chain are missing before {_where(row)}: rows were deleted"
    )


def _link_problem(row: chain.ChainedRow, following: chain.ChainedRow | None) -> str:
    """Why a link fails: the row changed (its successor still links to its hash), or the hash did."""
    stored = row.row_hash
    if stored is None:
        return f"{_where(row)} has no row_hash: the row was inserted or its hash erased"
    try:
        own = bytes.fromhex(stored)
    except ValueError:
        return f"{_where(row)} has a row_hash that is no SHA-256 hex digest: it was rewritten"
    if following is not None and following.links_to(own):
        return (
            f"{_where(row)} was edited: its content no longer matches its hash "
            "(a value changed, or the row was moved or renumbered)"
        )
    return (
        f"{_where(row)} does not link to the row before it: its row_hash was rewritten, "
        "or rows were reordered or replaced"
    )


def _name(finetune: sa.Row[Any]) -> str:
    return f"finetune {finetune.finetune_id!r} ({finetune.source}, {finetune.account})"


def _json(text: str | None) -> Any:
    """JSON text as the chain hashes it: canonical, unless it is not JSON or repeats a key."""
    return chain.normal_value(chain.Kind.JSON, text)


def _check_finetunes(connection: Connection, history: _History) -> int:
    """Each finetune's current row against the last of its versions and statuses; return the count."""
    columns = [
        # Times untyped: the text SQLite holds, to be held to the one form (a datetime on PostgreSQL).
        sa.type_coerce(finetune_table.c[name], sa.Text).label(name)
        if name in _FINETUNE_TIMES
        else finetune_table.c[name]
        for name in (
            "id",
            "source",
            "account",
            "finetune_id",
            "details",
            "content_hash",
            "version",
            "deleted_at",
            "first_seen_at",
            "last_changed_at",
            "status",
            "progress",
            *EXTRACTED_FIELDS,
        )
    ]
    count = 0
    for finetune in connection.execute(sa.select(*columns).order_by(finetune_table.c.id)):
        count += 1
        last = history.version.get(finetune.id)
        if last is None:
            raise AuditError(f"{_name(finetune)} has no version in the hash chain: its row was inserted")
        version, change, version_row = last
        where = f"{_name(finetune)} against its last version (finetune_version row {version_row})"
        if finetune.version != version:
            raise AuditError(f"{where}: version is {finetune.version}, the history's last is {version}")
        for name in _FINETUNE_TIMES:
            if not chain.canonical_time_text(getattr(finetune, name)):
                raise AuditError(
                    _time_form_problem(f"finetune row {finetune.id}", name, getattr(finetune, name))
                )
        if (finetune.deleted_at is not None) != (change == "deleted"):
            state = "tombstoned" if finetune.deleted_at is not None else "live"
            raise AuditError(f"{where}: the row is {state} but the last change is {change!r}")
        first, latest = history.observed[finetune.id]
        deleted_at = chain.normal_value(chain.Kind.TIME, finetune.deleted_at)
        if deleted_at is not None and deleted_at != latest:
            raise AuditError(
                f"{where}: deleted_at is {deleted_at} but the tombstone was observed at {latest}"
            )
        details, digest, details_version = history.details.get(finetune.id, (None, None, 0))
        if finetune.details != details and _json(finetune.details) != _json(details):
            raise AuditError(f"{where}: details differ from version {details_version}'s")
        if finetune.content_hash != digest:
            raise AuditError(f"{where}: content_hash differs from version {details_version}'s")
        _check_extracted(finetune, where)
        for name, expected in (("first_seen_at", first), ("last_changed_at", latest)):
            stored = chain.normal_value(chain.Kind.TIME, getattr(finetune, name))
            if stored != expected:
                raise AuditError(f"{where}: {name} is {stored} but the history says {expected}")
        status = history.status.get(finetune.id)
        if status is not None and (finetune.status, finetune.progress) != status:
            raise AuditError(
                f"{_name(finetune)}: status {finetune.status!r} at progress {finetune.progress!r} "
                f"differs from its last status row ({status[0]!r} at {status[1]!r})"
            )
    return count


def _check_extracted(finetune: sa.Row[Any], where: str) -> None:
    try:
        details = json.loads(finetune.details)
    except ValueError:
        raise AuditError(f"{where}: details are not JSON") from None
    for name, value in extract_fields(details).items():
        stored = getattr(finetune, name)
        if stored != value:
            raise AuditError(f"{where}: {name} is {stored!r} but the details say {value!r}")


def _check_labels(connection: Connection, history: _History) -> None:
    """The current labels are what replaying their changes gives: same keys, values, authors, times."""
    labels = sa.table(
        "finetune_label",
        sa.column("id"),
        sa.column("finetune_pk"),
        sa.column("key"),
        sa.column("value"),
        sa.column("value_json"),
        sa.column("set_by"),
        sa.column("set_at"),
        sa.column("set_by_role"),
        sa.column("set_as"),
    )
    current = {
        (row.finetune_pk, row.key): row for row in connection.execute(sa.select(labels).order_by(labels.c.id))
    }
    for (pk, key), change in history.labels.items():
        label = current.pop((pk, key), None)
        where = (
            f"label {key!r} of finetune row {pk}, last changed by finetune_label_change row {change.row_id}"
        )
        if change.value("change") == "removed":
            if label is not None:
                raise AuditError(f"{where}: removed there, yet finetune_label row {label.id} holds it")
            continue
        if label is None:
            raise AuditError(f"{where}: set there, yet finetune_label has no such row: it was deleted")
        expected = (
            _json(change.value("value")),
            change.value("changed_by"),
            chain.normal_value(chain.Kind.TIME, change.value("changed_at")),
            change.value("changed_by_role"),
            change.value("changed_as"),
        )
        found = (
            _json(label.value_json),
            label.set_by,
            chain.normal_value(chain.Kind.TIME, label.set_at),
            label.set_by_role,
            label.set_as,
        )
        if not chain.canonical_time_text(label.set_at):
            raise AuditError(_time_form_problem(f"finetune_label row {label.id}", "set_at", label.set_at))
        if label.value_json is not None:
            try:
                typed = json.loads(label.value_json)
            except ValueError:
                raise AuditError(
                    f"{where}: finetune_label row {label.id} has a typed value that is not JSON: "
                    f"{label.value_json!r}"
                ) from None
            if label.value != plain_text(typed):
                raise AuditError(
                    f"{where}: finetune_label row {label.id} has value {label.value!r}, "
                    f"its typed value {label.value_json!r}"
                )
        fields = ("value", "set_by", "set_at", "set_by_role", "set_as")
        for what, want, got in zip(fields, expected, found, strict=True):
            if want != got:
                raise AuditError(
                    f"{where}: finetune_label row {label.id} has {what} {got!r}, the change {want!r}"
                )
    for (pk, key), label in current.items():
        raise AuditError(
            f"finetune_label row {label.id} (label {key!r} of finetune row {pk}) has no label change: it was inserted"
        )

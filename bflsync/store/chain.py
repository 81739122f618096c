"""The store's hash chain: each append-only row's canonical content, its link hash, and appending.

One chain per store, across five tables: ``finetune_version``, ``finetune_status``,
``finetune_label_change``, ``finetune_note`` and each finished ``sync_run``. Every chained row
holds its place in the chain (``chain_seq``, 1, 2, 3, ... across the five tables) and

    row_hash = hex(SHA-256(previous row's hash, 32 raw bytes  ||  canonical content, UTF-8))

where the first row's previous hash is 32 zero bytes (:data:`GENESIS`). One chain for the whole
store, rather than one per account, because labels, notes and runs interleave with versions and a
single head is what a checkpoint has to name.

The canonical content of a row is the JSON text (sorted keys, compact separators ``,`` and ``:``,
UTF-8 as is, floats in Python's shortest round-trip form) of::

    {"table": "finetune_version", "finetune": [source, account, finetune_id], "row": {...}}

``row`` holds every column of the row as the models declare it (so a column added later is
covered), except ``row_hash`` and ``finetune_pk``, whose place ``finetune`` takes: the finetune's
identity, not the store's internal key. A NULL column is left out, and so is a column holding what
:data:`CHAIN_BEGAN_WITH` says rows written before it was added hold: a column added by a later
revision leaves the hashes of older rows as they were. Values are written engine-independently:

* a timestamp as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, six fractional digits) from its parsed
  value, so the text form a store keeps it in never changes a hash (the backfill of
  ``0010_hash_chain`` ran before ``0011_iso_times`` rewrote SQLite's times in that form); ``audit
  verify`` refuses a stored time in any other text form instead (:func:`canonical_time_text`);
* a boolean as ``true``/``false`` (SQLite keeps 0 and 1);
* a JSON column (``details``, ``changed_keys``, ``answer``, a label's ``value``) as the store's
  canonical JSON text (:func:`bflsync.extract.canonical_json`: also integral floats as integers) of
  its decoded value, so re-encoding stored JSON never changes a hash; text that is not JSON, and JSON
  text in which an object holds the same key twice, is hashed as it is (decoding keeps only the last
  of two equal keys, so a duplicate key put in front of the real one would otherwise hash the same);
* anything else as the driver returns it.

``chain_seq`` and ``id`` are part of ``row``: a row moved to another place, renumbered, deleted or
inserted breaks the chain there. A table's rows are appended in the transaction that writes them,
after taking :func:`lock_chain`, under the store's sync lock; rows a writer did not write itself
(another tool's inserts) are never taken into the chain, so ``bflsync audit verify`` keeps naming them.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bflsync.errors import AuditError
from bflsync.extract import canonical_json
from bflsync.store import schema

GENESIS = bytes(32)
CHAINED_TABLES = ("finetune_version", "finetune_status", "finetune_label_change", "finetune_note", "sync_run")
# Columns holding JSON text: hashed as the canonical JSON of their decoded value.
JSON_COLUMNS: Mapping[str, frozenset[str]] = {
    "finetune_version": frozenset({"details", "changed_keys"}),
    "finetune_status": frozenset({"answer"}),
    "finetune_label_change": frozenset({"value"}),
}
_LINK_COLUMNS = frozenset({"row_hash"})
# What a column added after the chain began holds in the rows written before it, where that is not
# NULL: a column is left out of the content while it holds that value (or NULL), so the migration
# that adds it (and fills the older rows) changes no hash. Table -> column -> value.
CHAIN_BEGAN_WITH: Mapping[str, Mapping[str, Any]] = {
    "finetune_version": {"redacted": False},  # 0013_hardening
}
_FINETUNE_KEY = "finetune_pk"
# Chain writers in a PostgreSQL database exclude each other with this transaction-level lock,
# whatever lock the caller holds: two transactions never read the same head.
_PG_CHAIN_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext('bflsync chain ' || current_database()))")


class Kind(Enum):
    """How a column's value is written into the canonical content."""

    PLAIN = "plain"
    TIME = "time"
    BOOL = "bool"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class TableSpec:
    """What of one chained table is hashed: its columns (in select order) and how each is written."""

    name: str
    columns: tuple[str, ...]
    kinds: tuple[Kind, ...]
    has_finetune: bool
    converters: tuple[Callable[[Any], Any], ...]
    stored_converters: tuple[Callable[[Any], Any], ...]
    position: Mapping[str, int]
    began_with: Mapping[str, Any]
    """:data:`CHAIN_BEGAN_WITH` for this table."""

    def clause(self) -> sa.TableClause:
        """The table with untyped columns: no SQLAlchemy result processing, so a writer and ``verify``
        see the values exactly as the driver returns them."""
        names = (*self.columns, *((_FINETUNE_KEY,) if self.has_finetune else ()))
        return sa.table(self.name, *(sa.column(name) for name in names))

    def select(
        self, table: sa.TableClause, *, present: Collection[str], extra: Sequence[str] = ()
    ) -> sa.Select[Any]:
        """The hashed columns of ``table`` (from :meth:`clause`), ``extra`` columns, then the
        finetune's identity (source, account, finetune_id) when the table has one.

        A hashed column the database does not have yet (``present`` lacks it: a migration before
        the one that adds it is running) is selected as NULL, which the content leaves out.
        """
        columns = [
            table.c[name] if name in present else sa.null().label(name) for name in (*self.columns, *extra)
        ]
        if not self.has_finetune:
            return sa.select(*columns).select_from(table)
        finetune = sa.table("finetune", sa.column("id"), *(sa.column(n) for n in _IDENTITY))
        return sa.select(*columns, *(finetune.c[name] for name in _IDENTITY)).select_from(
            table.outerjoin(finetune, finetune.c.id == table.c[_FINETUNE_KEY])
        )


_IDENTITY = ("source", "account", "finetune_id")


def _kind(table: str, column: sa.Column[Any]) -> Kind:
    if column.name in JSON_COLUMNS.get(table, ()):
        return Kind.JSON
    if isinstance(column.type, schema.UTCDateTime):
        return Kind.TIME
    if isinstance(column.type, sa.Boolean):
        return Kind.BOOL
    return Kind.PLAIN


def _spec(name: str) -> TableSpec:
    table = SQLModel.metadata.tables[name]
    hashed = [c for c in table.columns if c.name not in _LINK_COLUMNS and c.name != _FINETUNE_KEY]
    return TableSpec(
        name=name,
        columns=tuple(c.name for c in hashed),
        kinds=tuple(_kind(name, c) for c in hashed),
        has_finetune=_FINETUNE_KEY in table.columns,
        converters=tuple(_CONVERTERS[_kind(name, c)] for c in hashed),
        stored_converters=tuple(
            _plain if _kind(name, c) is Kind.JSON else _CONVERTERS[_kind(name, c)] for c in hashed
        ),
        position={c.name: index for index, c in enumerate(hashed)},
        began_with=CHAIN_BEGAN_WITH.get(name, {}),
    )


def utc_text(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``; a naive value is UTC (as SQLite stores it)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


def normal_value(kind: Kind, value: Any) -> Any:
    """A stored value as the canonical content writes it (see the module docstring)."""
    if value is None:
        return None
    if kind is Kind.TIME:
        return _time(value)
    if kind is Kind.BOOL:
        return _boolean(value)
    if kind is Kind.JSON:
        return _json_text(value)
    return _plain(value)


def _time(value: Any) -> Any:
    if isinstance(value, str):
        # SQLite's own form, and the form issue 19 stores: no parsing needed.
        if len(value) == 26 and value[10] == " " and value[19] == ".":
            return f"{value[:10]}T{value[11:]}Z"
        if len(value) == 27 and value[10] == "T" and value[19] == "." and value[26] == "Z":
            return value
        try:
            return utc_text(datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, datetime):
        return utc_text(value)
    return _plain(value)


def _boolean(value: Any) -> Any:
    if type(value) in (bool, int) and value in (0, 1):
        return bool(value)
    return _plain(value)


def _json_text(value: Any) -> Any:
    """The store's canonical JSON text of a JSON column's decoded value; other text as it is."""
    if not isinstance(value, str):
        return _plain(value)
    integral = False

    def parse_float(text: str) -> float:
        nonlocal integral
        number = float(text)
        integral = integral or number.is_integer()
        return number

    try:
        decoded = json.loads(value, parse_float=parse_float, object_pairs_hook=_unique_keys)
    except (ValueError, _DuplicateKeyError):
        return value
    # Without an integral float, canonical_json's second pass would change nothing: skip it.
    return canonical_json(decoded) if integral else _ENCODER.encode(decoded)


class _DuplicateKeyError(Exception):
    """An object holds one key twice: decoding would keep only the last, so the text is hashed as it is."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    decoded = dict(pairs)
    if len(decoded) != len(pairs):
        raise _DuplicateKeyError
    return decoded


def canonical_time_text(value: Any) -> bool:
    """Whether a stored time is text in the store's one form (``2026-12-04T13:18:17.637556Z``), or
    no text at all (PostgreSQL's driver returns a datetime): the form every revision since
    ``0011_iso_times`` writes, which :func:`normal_value` does not insist on."""
    return not isinstance(value, str) or _TIME_FORM.fullmatch(value) is not None


_TIME_FORM = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)
_SIMPLE = frozenset({str, int, float, bool})


def _plain(value: Any) -> Any:
    if type(value) in _SIMPLE:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"blob": bytes(value).hex()}
    if isinstance(value, str | int | float):
        return value
    return str(value)


_CONVERTERS = {Kind.PLAIN: _plain, Kind.TIME: _time, Kind.BOOL: _boolean, Kind.JSON: _json_text}
# The envelope's encoding: sorted keys, compact separators, UTF-8 as is; floats in Python's shortest
# round-trip form (a REAL or double precision column returns the same float on both engines).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


SPECS: Mapping[str, TableSpec] = {name: _spec(name) for name in CHAINED_TABLES}


def canonical_content(
    spec: TableSpec, values: Sequence[Any], identity: Sequence[Any] | None, *, stored_json: bool = False
) -> bytes:
    """The bytes a row's link hashes: ``values`` in ``spec.columns`` order, ``identity`` its finetune's.

    ``stored_json`` takes JSON columns' text as stored, without decoding it: the same bytes whenever
    the store holds canonical JSON, as bflsync writes it. A shortcut for ``verify`` only: a hash
    that matches this way matches the canonical content; one that does not must be recomputed.
    """
    converters = spec.stored_converters if stored_json else spec.converters
    began_with = spec.began_with
    row = {
        name: convert(value)
        for name, convert, value in zip(spec.columns, converters, values, strict=True)
        if value is not None and (name not in began_with or value != began_with[name])
    }
    content: dict[str, Any] = {"table": spec.name, "row": row}
    if spec.has_finetune:
        content["finetune"] = list(identity) if identity is not None and None not in identity else None
    # surrogatepass: a lone surrogate that JSON escapes decoded to still hashes, as its UTF-8-like bytes.
    return _ENCODER.encode(content).encode("utf-8", "surrogatepass")


def link(previous: bytes, content: bytes) -> bytes:
    """One link of the chain: SHA-256 over the previous row's hash and this row's content."""
    return hashlib.sha256(previous + content).digest()


def lock_chain(connection: Connection) -> None:
    """Exclude other chain writers until this transaction ends (PostgreSQL; a SQLite write
    transaction, begun IMMEDIATE, already excludes every other writer)."""
    if connection.dialect.name == "postgresql":
        connection.execute(_PG_CHAIN_LOCK)


def head(connection: Connection) -> tuple[int, bytes]:
    """The chain's size (the last place taken) and its head hash; ``(0, GENESIS)`` when empty.

    AuditError when another tool damaged the head row (SQLite keeps text or a fraction in an
    INTEGER column, and any text in ``row_hash``): nothing can link to it.
    """
    parts = []
    for name in CHAINED_TABLES:
        table = sa.table(name, sa.column("id"), sa.column("chain_seq"), sa.column("row_hash"))
        last = sa.select(sa.func.max(table.c.chain_seq)).scalar_subquery()
        parts.append(
            sa.select(sa.literal(name), table.c.id, table.c.chain_seq, table.c.row_hash).where(
                table.c.chain_seq == last
            )
        )
    rows = connection.execute(sa.union_all(*parts)).all()
    if not rows:
        return 0, GENESIS
    for name, row_id, seq, row_hash in rows:
        damage = place_damage(seq) or hash_damage(row_hash)
        if damage:
            raise AuditError(
                f"the hash chain's head, {name} row {row_id}, {damage}: run bflsync audit verify"
            )
    _, _, seq, row_hash = max(rows, key=lambda row: int(row[2]))
    return int(seq), bytes.fromhex(row_hash)


def place_damage(seq: Any) -> str | None:
    """What is wrong with a stored ``chain_seq``, if anything (None: a whole number or no place)."""
    if seq is None or type(seq) is int:
        return None
    return f"has a place (chain_seq) that is no whole number: {seq!r}"


def hash_damage(row_hash: Any) -> str | None:
    """What is wrong with a stored ``row_hash``, if anything (None: 64 hex digits)."""
    if isinstance(row_hash, str) and _HASH_FORM.fullmatch(row_hash):
        return None
    return "has a row_hash that is no SHA-256 hex digest"


_HASH_FORM = re.compile(r"[0-9a-f]{64}", re.ASCII)


def unchained(connection: Connection, table: str) -> frozenset[int]:
    """Ids of ``table``'s rows outside the chain (normally none): read before a writer inserts, so that
    :func:`append` takes only the writer's own rows, whatever ids the database gives them."""
    rows = sa.table(table, sa.column("id"), sa.column("chain_seq"))
    return frozenset(connection.execute(sa.select(rows.c.id).where(rows.c.chain_seq.is_(None))).scalars())


def append(
    connection: Connection,
    table: str,
    *,
    skip: frozenset[int] = frozenset(),
    ids: Iterable[int] | None = None,
) -> int:
    """Chain the rows of ``table`` this transaction wrote: the unchained ones but those in ``skip``
    (what :func:`unchained` said before the writes), or only those in ``ids``. Return how many.

    Rows are appended in id order. Call it in the transaction that wrote them, before it commits.
    """
    spec = SPECS[table]
    rows_table = spec.clause()
    query = (
        spec.select(rows_table, present=present_columns(connection, table))
        .where(rows_table.c.chain_seq.is_(None))
        .order_by(rows_table.c.id)
    )
    if ids is not None:
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        query = query.where(rows_table.c.id.in_(wanted))
    lock_chain(connection)
    id_at = spec.position["id"]
    rows = [row for row in connection.execute(query) if row[id_at] not in skip]
    if not rows:
        return 0
    seq, previous = head(connection)
    width = len(spec.columns)
    seq_at = spec.position["chain_seq"]
    updates = []
    for row in rows:
        seq += 1
        values = list(row[:width])
        values[seq_at] = seq
        identity = tuple(row[width:]) if spec.has_finetune else None
        previous = link(previous, canonical_content(spec, values, identity))
        updates.append({"pk": values[id_at], "new_seq": seq, "new_hash": previous.hex()})
    target = sa.table(table, sa.column("id"), sa.column("chain_seq"), sa.column("row_hash"))
    connection.execute(
        target.update()
        .where(target.c.id == sa.bindparam("pk"))
        .values(chain_seq=sa.bindparam("new_seq"), row_hash=sa.bindparam("new_hash")),
        updates,
    )
    return len(updates)


def origin(connection: Connection) -> str:
    """The origin line of this store's checkpoints, made once by revision 0010_hash_chain."""
    meta = sa.table("store_meta", sa.column("name"), sa.column("value"))
    value = connection.execute(
        sa.select(meta.c.value).where(meta.c.name == schema.CHAIN_ORIGIN_META_NAME)
    ).scalar()
    return str(value) if value is not None else "bflsync/store"


@dataclass(frozen=True, slots=True)
class ChainedRow:
    """One row as the chain holds it: its place, stored link hash and hashed values."""

    spec: TableSpec
    values: tuple[Any, ...]
    row_hash: str | None
    extra: tuple[Any, ...]
    identity: tuple[Any, ...] | None

    def value(self, name: str) -> Any:
        return self.values[self.spec.position[name]]

    @property
    def seq(self) -> int:
        return int(self.value("chain_seq"))

    @property
    def row_id(self) -> Any:
        return self.value("id")

    def content(self, *, stored_json: bool = False) -> bytes:
        return canonical_content(self.spec, self.values, self.identity, stored_json=stored_json)

    def links_to(self, previous: bytes) -> bool:
        """Whether ``row_hash`` is the link from ``previous`` over this row's canonical content."""
        if self.row_hash is None:
            return False
        if link(previous, self.content(stored_json=True)).hex() == self.row_hash:
            return True
        return link(previous, self.content()).hex() == self.row_hash


def table_rows(
    connection: Connection, table: str, *, extra: Sequence[str] = (), page: int = 2000
) -> Iterator[ChainedRow]:
    """The chained rows of one table in chain order, read ``page`` rows at a time (keyset on
    ``chain_seq``), so memory stays flat whatever the store's size."""
    spec = SPECS[table]
    selected = ("row_hash", *extra)
    clause = sa.table(table, *(sa.column(name) for name in {*spec.columns, *selected, *_finetune_key(spec)}))
    width = len(spec.columns)
    present = present_columns(connection, table)
    after = 0
    while True:
        rows = connection.execute(
            spec.select(clause, present=present, extra=selected)
            .where(clause.c.chain_seq > after)
            .order_by(clause.c.chain_seq)
            .limit(page)
        ).all()
        for row in rows:
            yield ChainedRow(
                spec=spec,
                values=tuple(row[:width]),
                row_hash=row[width],
                extra=tuple(row[width + 1 : width + len(selected)]),
                identity=tuple(row[width + len(selected) :]) if spec.has_finetune else None,
            )
        if len(rows) < page:
            return
        after = int(rows[-1][spec.columns.index("chain_seq")])


def present_columns(connection: Connection, table: str) -> frozenset[str]:
    """The columns ``table`` has in this database now (read each time: migrations add columns)."""
    return frozenset(column["name"] for column in sa.inspect(connection).get_columns(table))


def _finetune_key(spec: TableSpec) -> tuple[str, ...]:
    return (_FINETUNE_KEY,) if spec.has_finetune else ()


def chained_rows(
    connection: Connection, *, extra: Mapping[str, Sequence[str]] | None = None
) -> Iterator[ChainedRow]:
    """Every chained row of the store in chain order (``chain_seq``), the five tables merged."""
    streams = [table_rows(connection, table, extra=(extra or {}).get(table, ())) for table in CHAINED_TABLES]
    return heapq.merge(*streams, key=lambda row: row.seq)

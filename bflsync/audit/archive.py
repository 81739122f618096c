"""The archive format that ``bflsync export`` writes and ``bflsync import`` reads: tables, rows, manifest.

An archive is a directory that outlives the API and any one database engine::

    manifest.json          what the archive holds and how to check it (:class:`Manifest`)
    <table>.jsonl          one row per line, a JSON object with sorted keys, in primary-key order
    finetunes/<pk>-<id>.json   with ``--split`` only: one finetune's row and every row that refers
                           to it (its versions, statuses, labels, notes), pretty-printed for git

The tables and their columns are read from the database, not listed here, so a column or table a
later revision adds (the hash chain's ``row_hash``) is archived without a change to this module.
Left out are what the store derives and rebuilds itself: ``alembic_version`` (the manifest names
the revision), SQLite's full-text tables and PostgreSQL's search copies of ``details``.

A value is written as JSON holds it; a timestamp as ISO 8601 in UTC with microseconds, bytes as hex.
``details`` stays the text the store holds, byte for byte. Identical data therefore gives identical
files whichever engine it was exported from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bflsync.errors import ArchiveError
from bflsync.store.schema import POSTGRES_ONLY_COLUMNS
from bflsync.timeform import iso_utc

FORMAT: Final = "bflsync-archive"
FORMAT_VERSION: Final = 1
MANIFEST_NAME: Final = "manifest.json"
SPLIT_DIR: Final = "finetunes"
LAYOUTS: Final = ("tables", "split")
# The table whose rows --split gives a file each, with the rows of every table that refers to it.
OWNER_TABLE: Final = "finetune"
# Filled by the migrations themselves (the fingerprint secret): import replaces its rows by name
# rather than asking for it to be empty.
META_TABLE: Final = "store_meta"
# Tables that are machinery, not record: the PostgreSQL sync lock's one row (0013_hardening),
# which every store's migrations make for themselves.
MACHINERY_TABLES: Final = frozenset({"bflsync_lock"})
# What the manifest says about the key fingerprints (see docs/archive.md).
FINGERPRINTS_OMITTED: Final = "omitted"
FINGERPRINTS_INCLUDED: Final = "included"
_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")
_NAME_ID_CHARS: Final = 80


@dataclass(frozen=True)
class ArchivedTable:
    """One table as archived: typed columns (search copies left out), primary key and parents."""

    table: sa.Table
    key: tuple[str, ...]
    parents: Mapping[str, str]
    """Column name -> the table its foreign key refers to."""

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def columns(self) -> list[str]:
        return sorted(self.table.c.keys())

    @cached_property
    def names(self) -> list[str]:
        return list(self.table.c.keys())

    @cached_property
    def encoders(self) -> list[tuple[str, Callable[[Any], Any]]]:
        """The columns whose values JSON cannot hold as they are, and how to write them."""
        return [(c.name, _ENCODERS[_kind(c)]) for c in self.table.columns if _kind(c) in _ENCODERS]

    @cached_property
    def decoders(self) -> list[tuple[str, Callable[[Any], Any]]]:
        return [(c.name, _DECODERS[_kind(c)]) for c in self.table.columns if _kind(c) in _DECODERS]

    @cached_property
    def checks(self) -> list[tuple[str, Callable[[Any], bool]]]:
        """What each column's archived value must be before a driver sees it: an object, a list or
        an integer no column holds would otherwise fail inside the driver, not as a refusal."""
        return [(c.name, _check(c)) for c in self.table.columns]

    @property
    def owner_column(self) -> str | None:
        """The column that ties a row to one finetune (``finetune_pk``), for ``--split``."""
        if self.name == OWNER_TABLE:
            return None
        return next(
            (column for column, parent in sorted(self.parents.items()) if parent == OWNER_TABLE), None
        )

    @property
    def split(self) -> bool:
        """Whether ``--split`` puts this table's rows in the finetune files."""
        return self.name == OWNER_TABLE or self.owner_column is not None


def archived_tables(connection: Connection) -> list[ArchivedTable]:
    """bflsync's tables in this database, parents before children (the order import inserts them).

    A table counts when the models know its name; its columns are the database's own, typed by the
    model where the model has the column (timestamps in UTC) and as reflected otherwise.
    """
    inspector = sa.inspect(connection)
    known = SQLModel.metadata.tables
    found: dict[str, ArchivedTable] = {}
    for name in sorted(set(inspector.get_table_names()) & set(known) - MACHINERY_TABLES):
        model = known[name]
        columns = []
        for reflected in inspector.get_columns(name):
            column_name = reflected["name"]
            if (name, column_name) in POSTGRES_ONLY_COLUMNS:
                continue
            kind = model.c[column_name].type if column_name in model.c else reflected["type"]
            columns.append(sa.Column(column_name, kind))
        key = tuple(inspector.get_pk_constraint(name)["constrained_columns"])
        parents = {
            column: foreign_key["referred_table"]
            for foreign_key in inspector.get_foreign_keys(name)
            for column in foreign_key["constrained_columns"]
        }
        table = sa.Table(name, sa.MetaData(), *columns)
        found[name] = ArchivedTable(table=table, key=key, parents=parents)
    return _parents_first(found)


def _parents_first(tables: Mapping[str, ArchivedTable]) -> list[ArchivedTable]:
    ordered: list[ArchivedTable] = []
    placed: set[str] = set()
    pending = sorted(tables)
    while pending:
        ready = [
            name
            for name in pending
            if all(
                parent in placed or parent == name or parent not in tables
                for parent in tables[name].parents.values()
            )
        ]
        if not ready:
            raise ArchiveError(f"the tables {', '.join(pending)} refer to each other in a cycle")
        ordered.extend(tables[name] for name in ready)
        placed.update(ready)
        pending = [name for name in pending if name not in placed]
    return ordered


def _kind(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, sa.TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, sa.DateTime):
        return "datetime"
    if isinstance(kind, sa.LargeBinary):
        return "bytes"
    return "plain"


def _encode_datetime(value: datetime) -> str:
    return iso_utc(value)


def _decode_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a timestamp without a time zone")
    return moment


def _decode_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not hex")
    return bytes.fromhex(value)


_INT64: Final = range(-(2**63), 2**63)


def _is_integer(value: Any) -> bool:
    return type(value) is int and value in _INT64


def _is_number(value: Any) -> bool:
    return type(value) is float or _is_integer(value)


def _is_bool(value: Any) -> bool:
    return type(value) is bool


def _is_text(value: Any) -> bool:
    return type(value) is str


def _is_scalar(value: Any) -> bool:
    return _is_text(value) or _is_bool(value) or _is_number(value)


_EXPECTED: Final[dict[Callable[[Any], bool], str]] = {
    _is_integer: "a 64-bit integer",
    _is_number: "a number",
    _is_bool: "true or false",
    _is_text: "text",
    _is_scalar: "a single value",
}


def _check(column: sa.Column[Any]) -> Callable[[Any], bool]:
    """The test an archived value of ``column`` must pass (timestamps and bytes: text, decoded after)."""
    kind = column.type
    if isinstance(kind, sa.TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, sa.Boolean):
        return _is_bool
    if isinstance(kind, sa.Integer):
        return _is_integer
    if isinstance(kind, sa.Float | sa.Numeric):
        return _is_number
    if isinstance(kind, sa.String | sa.DateTime | sa.LargeBinary):
        return _is_text
    return _is_scalar


_ENCODERS: Final[dict[str, Callable[[Any], Any]]] = {
    "datetime": _encode_datetime,
    "bytes": lambda v: bytes(v).hex(),
}
_DECODERS: Final[dict[str, Callable[[Any], Any]]] = {"datetime": _decode_datetime, "bytes": _decode_bytes}


def encode_row(table: ArchivedTable, row: Mapping[str, Any]) -> dict[str, Any]:
    """A database row as the archive writes it (see the module docstring)."""
    encoded = {name: row[name] for name in table.names}
    for name, encode in table.encoders:
        if encoded[name] is not None:
            encoded[name] = encode(encoded[name])
    return encoded


def decode_row(table: ArchivedTable, encoded: Mapping[str, Any]) -> dict[str, Any]:
    """An archived row as the database takes it; ValueError for a value of the wrong shape."""
    row = {name: encoded[name] for name in table.names}
    for name, check in table.checks:
        if row[name] is not None and not check(row[name]):
            raise ValueError(f"{name} is not {_EXPECTED[check]}")
    for name, decode in table.decoders:
        if row[name] is not None:
            try:
                row[name] = decode(row[name])
            except ValueError as exc:
                raise ValueError(f"{name} is {exc}") from None
    return row


def row_line(encoded: Mapping[str, Any]) -> str:
    """One JSON Lines line: compact, keys sorted, UTF-8 as is."""
    return json.dumps(encoded, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def pretty_json(value: Any) -> str:
    """A file meant to be read and diffed: keys sorted, two-space indent, a final newline."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def pretty_document(document: Mapping[str, Mapping[str, Any] | list[Mapping[str, Any]]]) -> str:
    """:func:`pretty_json` of a finetune file (tables of rows of plain values), character for character.

    ``json`` indents in pure Python; writing the known shape here with its C encoder for each value
    makes ``export --split`` several times faster.
    """
    if not document:
        return "{}\n"
    lines = ["{"]
    tables = sorted(document.items())
    for position, (table, content) in enumerate(tables):
        comma = "," if position < len(tables) - 1 else ""
        head = f"  {_SCALAR.encode(table)}: "
        if isinstance(content, Mapping):
            _object_lines(lines, content, head=head, indent="  ", comma=comma)
        elif not content:
            lines.append(f"{head}[]{comma}")
        else:
            lines.append(f"{head}[")
            for index, row in enumerate(content):
                _object_lines(
                    lines, row, head="    ", indent="    ", comma="," if index < len(content) - 1 else ""
                )
            lines.append(f"  ]{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _object_lines(lines: list[str], row: Mapping[str, Any], *, head: str, indent: str, comma: str) -> None:
    if not row:
        lines.append(f"{head}{{}}{comma}")
        return
    lines.append(f"{head}{{")
    items = sorted(row.items())
    last = len(items) - 1
    for number, (key, item) in enumerate(items):
        separator = "," if number < last else ""
        lines.append(f"{indent}  {_SCALAR.encode(key)}: {_SCALAR.encode(item)}{separator}")
    lines.append(f"{indent}}}{comma}")


_SCALAR: Final = json.JSONEncoder(ensure_ascii=False)


def table_file(name: str) -> str:
    return f"{name}.jsonl"


def finetune_file(pk: int, finetune_id: str) -> str:
    """``finetunes/<pk>-<id>.json``: the key keeps names unique, the id (made file-safe) readable."""
    readable = _UNSAFE_NAME.sub("_", finetune_id)[:_NAME_ID_CHARS]
    return f"{SPLIT_DIR}/{pk}-{readable}.json"


class Hasher:
    """SHA-256 and size of what is written through it."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> bytes:
        self._digest.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Manifest:
    """``manifest.json``: enough to refuse an archive that is not whole before anything is loaded.

    ``checkpoint`` is the hash chain's checkpoint at export time (``bflsync audit checkpoint``'s
    text), None until the chain exists: with it, a restored store can prove it holds the history
    the exporting store had.
    """

    schema_revision: str
    bflsync_version: str
    exported_at: str
    layout: str
    accounts: list[str] | None
    key_fingerprints: str
    tables: dict[str, dict[str, Any]]
    """Table name -> {"rows": count, "columns": sorted names}."""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Path inside the archive -> {"sha256": hex, "bytes": size}."""
    checkpoint: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_revision": self.schema_revision,
            "bflsync_version": self.bflsync_version,
            "exported_at": self.exported_at,
            "layout": self.layout,
            "accounts": self.accounts,
            "key_fingerprints": self.key_fingerprints,
            "tables": self.tables,
            "files": self.files,
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest of a parsed ``manifest.json``; ArchiveError if it is not one this bflsync reads."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArchiveError("manifest.json is not a bflsync archive manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise ArchiveError(
                f"the archive has format version {data.get('format_version')!r}; "
                f"this bflsync reads version {FORMAT_VERSION}"
            )
        try:
            manifest = cls(
                schema_revision=_text(data, "schema_revision"),
                bflsync_version=_text(data, "bflsync_version"),
                exported_at=_text(data, "exported_at"),
                layout=_text(data, "layout"),
                accounts=data["accounts"],
                key_fingerprints=_text(data, "key_fingerprints"),
                tables=data["tables"],
                files=data["files"],
                checkpoint=data.get("checkpoint"),
            )
            if not isinstance(manifest.checkpoint, str):
                # Every revision an import accepts has the chain, and export always writes its
                # checkpoint: an archive without one had it removed, and with it the check of its history.
                raise ArchiveError("manifest.json: 'checkpoint' is not a checkpoint")
        except KeyError as exc:
            raise ArchiveError(f"manifest.json has no {exc.args[0]!r}") from None
        manifest._check_shape()
        return manifest

    def _check_shape(self) -> None:
        if self.accounts is not None and not (
            isinstance(self.accounts, list) and all(isinstance(name, str) for name in self.accounts)
        ):
            raise ArchiveError("manifest.json: 'accounts' is not null or a list of account names")
        if self.layout not in LAYOUTS:
            raise ArchiveError(f"manifest.json: unknown layout {self.layout!r}")
        if self.key_fingerprints not in (FINGERPRINTS_OMITTED, FINGERPRINTS_INCLUDED):
            raise ArchiveError(f"manifest.json: unknown key_fingerprints {self.key_fingerprints!r}")
        if not isinstance(self.tables, dict) or not all(
            isinstance(spec, dict)
            and type(spec.get("rows")) is int
            and isinstance(spec.get("columns"), list)
            and all(isinstance(column, str) for column in spec["columns"])
            for spec in self.tables.values()
        ):
            raise ArchiveError("manifest.json: 'tables' is not {name: {rows, columns}}")
        if not isinstance(self.files, dict) or not all(
            isinstance(spec, dict) and isinstance(spec.get("sha256"), str) for spec in self.files.values()
        ):
            raise ArchiveError("manifest.json: 'files' is not {path: {sha256, bytes}}")
        for name in self.files:
            parts = Path(name).parts
            if Path(name).is_absolute() or ".." in parts or not parts:
                raise ArchiveError(f"manifest.json names a file outside the archive: {name!r}")


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ArchiveError(f"manifest.json: {name!r} is not text")
    return value


def total_rows(tables: Iterable[Mapping[str, Any]]) -> int:
    return sum(int(spec["rows"]) for spec in tables)

"""``bflsync export``: write a store (or some accounts of it) as an archive directory.

Every table is read in one read transaction (``REPEATABLE READ`` on PostgreSQL), so a sync running
meanwhile never tears the archive; the files are written into a private temporary directory beside
the destination and renamed into place at the end, so a destination that exists is a whole archive.
"""

from __future__ import annotations

import itertools
import operator
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bflsync.audit.archive import (
    FINGERPRINTS_INCLUDED,
    FINGERPRINTS_OMITTED,
    MANIFEST_NAME,
    OWNER_TABLE,
    SPLIT_DIR,
    ArchivedTable,
    Hasher,
    Manifest,
    archived_tables,
    encode_row,
    finetune_file,
    pretty_document,
    pretty_json,
    row_line,
    table_file,
)
from bflsync.audit.checkpoint import current_checkpoint
from bflsync.errors import ArchiveError
from bflsync.store.schema import FINGERPRINT_META_NAME
from bflsync.timeform import iso_utc
from bflsync.version import __version__

_PAGE = 2000


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What to export: every account unless ``accounts`` names some; ``split`` for the git layout;
    ``key_fingerprints`` to keep the accounts' key fingerprints and the store's secret for them."""

    accounts: tuple[str, ...] = ()
    split: bool = False
    key_fingerprints: bool = False


def export_store(engine: Engine, destination: Path, *, options: ExportOptions, now: datetime) -> Manifest:
    """Write the archive at ``destination`` (which must not exist, or be an empty directory)."""
    _check_destination(destination)
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    except OSError as exc:
        raise ArchiveError(f"cannot write the archive beside {destination}: {exc.strerror}") from exc
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                manifest = _write(connection, workdir, options=options, now=now)
        _write_text(workdir / MANIFEST_NAME, pretty_json(manifest.as_json()))
        if destination.is_dir():
            destination.rmdir()  # checked empty above
        workdir.rename(destination)
    except OSError as exc:
        raise ArchiveError(f"cannot write the archive at {destination}: {exc}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return manifest


def _check_destination(destination: Path) -> None:
    if destination.is_dir():
        if any(destination.iterdir()):
            raise ArchiveError(f"{destination} is not empty: export into a new or empty directory")
    elif destination.exists():
        raise ArchiveError(f"{destination} exists and is not a directory")
    if not destination.parent.is_dir():
        raise ArchiveError(f"{destination.parent} is not a directory")


def _write(connection: Connection, workdir: Path, *, options: ExportOptions, now: datetime) -> Manifest:
    revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
    tables = archived_tables(connection)
    by_name = {table.name: table for table in tables}
    manifest = Manifest(
        schema_revision=revision,
        bflsync_version=__version__,
        exported_at=iso_utc(now),
        layout="split" if options.split else "tables",
        accounts=sorted(options.accounts) if options.accounts else None,
        key_fingerprints=FINGERPRINTS_INCLUDED if options.key_fingerprints else FINGERPRINTS_OMITTED,
        tables={},
        checkpoint=current_checkpoint(connection).text(),
    )
    scopes = _Scopes(by_name, options.accounts)
    for table in tables:
        manifest.tables[table.name] = {"rows": 0, "columns": table.columns}
        if options.split and table.split:
            continue
        hasher = Hasher()
        name = table_file(table.name)
        with (workdir / name).open("wb") as handle:
            for row in _rows(connection, table, scopes, options):
                handle.write(hasher.update(row_line(row).encode("utf-8")))
                manifest.tables[table.name]["rows"] += 1
        manifest.files[name] = {"sha256": hasher.hexdigest(), "bytes": hasher.size}
    if options.split:
        _write_finetune_files(connection, workdir, [t for t in tables if t.split], scopes, options, manifest)
    return manifest


class _Scopes:
    """The WHERE clause that keeps a table's rows to the exported accounts (none: every row).

    A table with an ``account`` column is filtered on it; any other on its foreign key to a
    filtered table (a version through its finetune, an error through its run); a table with
    neither (``store_meta``) belongs to the store and is exported whole.
    """

    def __init__(self, tables: Mapping[str, ArchivedTable], accounts: tuple[str, ...]) -> None:
        self.tables = tables
        self.accounts = accounts

    def of(self, table: ArchivedTable) -> sa.ColumnElement[bool] | None:
        if not self.accounts:
            return None
        if "account" in table.table.c:
            return table.table.c.account.in_(self.accounts)
        # The finetune first: a version's run is its finetune's account's anyway.
        for column, parent_name in sorted(table.parents.items(), key=lambda item: item[1] != OWNER_TABLE):
            parent = self.tables.get(parent_name)
            if parent is None or parent_name == table.name or len(parent.key) != 1:
                continue
            parent_scope = self.of(parent)
            if parent_scope is not None:
                keys = sa.select(parent.table.c[parent.key[0]]).where(parent_scope)
                return table.table.c[column].in_(keys)
        return None


def _select(table: ArchivedTable, scopes: _Scopes, *order: str) -> sa.Select[Any]:
    statement = sa.select(table.table)
    scope = scopes.of(table)
    if scope is not None:
        statement = statement.where(scope)
    return statement.order_by(*(table.table.c[name] for name in (*order, *table.key)))


def _rows(
    connection: Connection, table: ArchivedTable, scopes: _Scopes, options: ExportOptions, *order: str
) -> Iterator[dict[str, Any]]:
    """The table's rows as the archive writes them, in order, a page at a time."""
    result = connection.execution_options(yield_per=_PAGE).execute(_select(table, scopes, *order))
    names = table.names
    for values in result:
        encoded = _without_key_material(
            table.name, encode_row(table, dict(zip(names, values, strict=True))), options
        )
        if encoded is not None:
            yield encoded


def _without_key_material(name: str, row: dict[str, Any], options: ExportOptions) -> dict[str, Any] | None:
    """Unless asked to keep them, the fingerprint secret is left out and the fingerprints are null.

    With both, whoever holds the archive can test a guessed key against a fingerprint; without the
    secret a fingerprint is of no use, so neither is written by default (see docs/archive.md).
    """
    if options.key_fingerprints:
        return row
    if name == "store_meta" and row.get("name") == FINGERPRINT_META_NAME:
        return None
    if name == "account" and "key_fingerprint" in row:
        row["key_fingerprint"] = None
    return row


def _write_finetune_files(
    connection: Connection,
    workdir: Path,
    tables: list[ArchivedTable],
    scopes: _Scopes,
    options: ExportOptions,
    manifest: Manifest,
) -> None:
    """One file per finetune, holding its row and the rows of every table that refers to it.

    Each child table is read once, ordered by its finetune, and merged with the finetunes in step,
    so memory holds one finetune's rows at a time.
    """
    (workdir / SPLIT_DIR).mkdir()
    owner = next(table for table in tables if table.name == OWNER_TABLE)
    children = [table for table in tables if table.name != OWNER_TABLE]
    streams = {}
    for table in children:
        column = table.owner_column
        assert column is not None
        streams[table.name] = itertools.groupby(
            _rows(connection, table, scopes, options, column), key=operator.itemgetter(column)
        )
    heads: dict[str, tuple[Any, Iterator[dict[str, Any]]] | None] = {
        name: next(stream, None) for name, stream in streams.items()
    }
    for finetune in _rows(connection, owner, scopes, options):
        document: dict[str, Any] = {OWNER_TABLE: finetune}
        for table in children:
            rows: list[dict[str, Any]] = []
            head = heads[table.name]
            if head is not None and head[0] < finetune["id"]:
                _orphans(table, head[0])
            if head is not None and head[0] == finetune["id"]:
                rows = list(head[1])
                heads[table.name] = next(streams[table.name], None)
            document[table.name] = rows
            manifest.tables[table.name]["rows"] += len(rows)
        manifest.tables[OWNER_TABLE]["rows"] += 1
        name = finetune_file(finetune["id"], finetune["finetune_id"])
        hasher = Hasher()
        _write_bytes(workdir / name, hasher.update(pretty_document(document).encode("utf-8")))
        manifest.files[name] = {"sha256": hasher.hexdigest(), "bytes": hasher.size}
    for table_name, head in heads.items():
        if head is not None:
            _orphans(_by_name(children, table_name), head[0])


def _by_name(tables: list[ArchivedTable], name: str) -> ArchivedTable:
    return next(table for table in tables if table.name == name)


def _orphans(table: ArchivedTable, pk: Any) -> None:
    """Rows whose finetune is missing: only another tool with foreign keys off can leave them."""
    raise ArchiveError(
        f"{table.name} has rows of finetune {pk}, which does not exist (written by another tool?): "
        "export without --split, or remove them first"
    )


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    handle: IO[bytes]
    with path.open("wb") as handle:
        handle.write(data)

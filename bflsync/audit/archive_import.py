"""``bflsync import``: load an archive into an empty store, all of it or nothing.

Two steps, so a damaged archive never reaches the database: :func:`read_archive` checks the
manifest, the schema revision and the SHA-256 of every file (and that the archive holds no symbolic
link) before any store is opened; then :func:`load_archive` inserts every row with its own primary
key in one transaction, checking each line as it goes (a truncated line, a missing column or a row
count unlike the manifest's rolls all of it back), and verifies the loaded hash chain against the
manifest's checkpoint before committing. On PostgreSQL the id sequences are moved past the imported ids and the search copies
of ``details`` are rebuilt, as a sync would have written them.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from bflsync.audit.archive import (
    MANIFEST_NAME,
    META_TABLE,
    OWNER_TABLE,
    SPLIT_DIR,
    ArchivedTable,
    Manifest,
    archived_tables,
    decode_row,
    file_sha256,
    table_file,
)
from bflsync.audit.checkpoint import parse_checkpoint
from bflsync.audit.verify import verify
from bflsync.errors import ArchiveError, AuditError, InputError
from bflsync.store import chain, schema
from bflsync.store.check import HEAD_REVISION
from bflsync.store.writes import reextract

_BATCH = 1000


@dataclass(frozen=True)
class Archive:
    """A checked archive: its directory and manifest."""

    path: Path
    manifest: Manifest


def read_archive(path: Path) -> Archive:
    """The archive at ``path``, refused (ArchiveError) unless every file is there, whole and of this schema."""
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise ArchiveError(f"{path} is not a directory holding a bflsync archive")
    _refuse_links(path)
    try:
        if not stat.S_ISREG(manifest_path.stat().st_mode):
            # Opening a FIFO would wait for a writer forever; a device could be read without end.
            raise ArchiveError(f"{MANIFEST_NAME} is not a regular file: not a bflsync archive")
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArchiveError(f"{path} has no {MANIFEST_NAME}: not a bflsync archive") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read {manifest_path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArchiveError(f"{manifest_path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise ArchiveError(f"{manifest_path} is not valid JSON (it nests too deeply)") from None
    manifest = Manifest.from_json(data)
    if manifest.schema_revision != HEAD_REVISION:
        raise ArchiveError(
            f"the archive has schema revision {manifest.schema_revision}, this bflsync imports "
            f"{HEAD_REVISION} only: import it with the bflsync that exported it"
        )
    for name, spec in sorted(manifest.files.items()):
        file_path = path / name
        if not file_path.is_file():
            raise ArchiveError(f"the archive is missing {name}, which its manifest lists")
        if file_sha256(file_path) != spec["sha256"]:
            raise ArchiveError(f"{name} does not match the SHA-256 in the manifest: the archive was changed")
    return Archive(path=path, manifest=manifest)


def _refuse_links(path: Path) -> None:
    """Refuse an archive holding a symbolic link anywhere inside it: export writes none, and a linked
    table file would load whatever file it names that the importing user can read (an SSH key, another
    store) into a store others may read."""
    for directory, names, files in os.walk(path):
        for name in sorted([*names, *files]):
            if (Path(directory) / name).is_symlink():
                inside = (Path(directory) / name).relative_to(path).as_posix()
                raise ArchiveError(
                    f"{inside} is a symbolic link: an archive holds none (it could name any file)"
                )


def _check_history(connection: Connection, manifest: Manifest) -> None:
    """The loaded chain must be exactly the one the manifest's checkpoint names, checked by ``audit
    verify`` before the transaction commits: a row changed and the file's SHA-256 recomputed is
    refused. Only an ``--account`` archive that holds part of the chain is loaded unchecked: a row
    after a missing place has no previous hash to link from. Left with those gaps, the imported store
    would fail ``audit verify`` for good, so its rows start a chain of their own instead. A manifest
    that merely claims accounts while holding every row is checked all the same, and one without a
    checkpoint never gets here."""
    problem = "the archive's history does not verify against its manifest's checkpoint"
    try:
        expected = parse_checkpoint(manifest.checkpoint or "")
        if manifest.accounts is not None and _chained_rows(connection) != expected.size:
            _start_own_chain(connection)
            return
        verified = verify(connection, checkpoint=expected)
    except (AuditError, InputError) as exc:
        raise ArchiveError(f"{problem}: {exc}") from None
    if verified.size != expected.size:
        raise ArchiveError(
            f"{problem}: the chain has {verified.size} rows, the checkpoint {expected.size}: rows were added"
        )


def _start_own_chain(connection: Connection) -> None:
    """Chain the loaded rows anew, in the order the exporting store had chained them, under a new
    origin: the exporting store's checkpoints name a chain this store holds only part of."""
    order = [(row.spec.name, row.row_id) for row in chain.chained_rows(connection)]
    for name in chain.CHAINED_TABLES:
        table = sa.table(name, sa.column("chain_seq"), sa.column("row_hash"))
        connection.execute(
            table.update().where(table.c.chain_seq.is_not(None)).values(chain_seq=None, row_hash=None)
        )
    for name, rows in itertools.groupby(order, key=operator.itemgetter(0)):
        chain.append(connection, name, ids=[row_id for _, row_id in rows])
    meta = sa.table("store_meta", sa.column("name"), sa.column("value"))
    connection.execute(
        meta.update()
        .where(meta.c.name == schema.CHAIN_ORIGIN_META_NAME)
        .values(value=f"bflsync/store/{uuid.uuid4().hex}")
    )


def _chained_rows(connection: Connection) -> int:
    """How many loaded rows hold a place in the chain: fewer than the checkpoint's size in an
    ``--account`` archive of a store with other accounts."""
    total = 0
    for name in chain.CHAINED_TABLES:
        table = sa.table(name, sa.column("chain_seq"))
        total += connection.execute(sa.select(sa.func.count(table.c.chain_seq))).scalar_one()
    return int(total)


def load_archive(engine: Engine, archive: Archive) -> dict[str, int]:
    """Insert the archive's rows into the empty store behind ``engine``; return rows per table."""
    with engine.connect() as connection, connection.begin():
        tables = archived_tables(connection)
        _check_tables(tables, archive.manifest)
        _check_empty(connection, tables)
        split = _split_rows(archive, tables) if archive.manifest.layout == "split" else {}
        counts: dict[str, int] = {}
        for table in tables:
            rows = iter(split[table.name]) if table.name in split else _table_rows(archive, table)
            counts[table.name] = _insert(connection, table, rows)
            expected = archive.manifest.tables[table.name]["rows"]
            if counts[table.name] != expected:
                raise ArchiveError(
                    f"{table.name}: the archive holds {counts[table.name]} rows, its manifest says {expected}"
                )
        if connection.dialect.name == "postgresql":
            _move_sequences(connection, tables)
            with Session(bind=connection) as session:
                reextract(session)
        _check_history(connection, archive.manifest)
    return counts


def _check_tables(tables: list[ArchivedTable], manifest: Manifest) -> None:
    ours = {table.name: table.columns for table in tables}
    theirs = {name: sorted(spec["columns"]) for name, spec in manifest.tables.items()}
    if set(ours) != set(theirs):
        raise ArchiveError(
            f"the archive's tables ({', '.join(sorted(theirs))}) are not this store's ({', '.join(sorted(ours))})"
        )
    for name, columns in ours.items():
        if columns != theirs[name]:
            raise ArchiveError(f"the archive's columns of {name} are not this store's")


def _check_empty(connection: Connection, tables: list[ArchivedTable]) -> None:
    for table in tables:
        if table.name == META_TABLE:
            continue
        if connection.execute(sa.select(sa.func.count()).select_from(table.table)).scalar_one():
            raise ArchiveError(
                f"the store is not empty ({table.name} has rows): import into a new store (a new --db)"
            )


def _table_rows(archive: Archive, table: ArchivedTable) -> Iterator[dict[str, Any]]:
    name = table_file(table.name)
    if name not in archive.manifest.files:
        raise ArchiveError(f"the manifest lists no file for table {table.name}")
    with (archive.path / name).open("r", encoding="utf-8", newline="\n") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                raise ArchiveError(f"{name}: line {number} is truncated")
            try:
                encoded = json.loads(line)
            except (ValueError, RecursionError):
                raise ArchiveError(f"{name}: line {number} is not JSON") from None
            yield _decoded(table, encoded, where=f"{name}: line {number}")


def _split_rows(archive: Archive, tables: list[ArchivedTable]) -> dict[str, list[dict[str, Any]]]:
    """The rows of the finetune files, gathered per table (their tables are inserted in order)."""
    owned = [table for table in tables if table.split]
    rows: dict[str, list[dict[str, Any]]] = {table.name: [] for table in owned}
    for name in sorted(archive.manifest.files):
        if not name.startswith(f"{SPLIT_DIR}/"):
            continue
        try:
            document = json.loads((archive.path / name).read_text(encoding="utf-8"))
        except (ValueError, RecursionError):
            raise ArchiveError(f"{name} is not JSON") from None
        if not isinstance(document, dict) or set(document) != set(rows):
            raise ArchiveError(f"{name} does not hold one finetune's tables ({', '.join(sorted(rows))})")
        for table in owned:
            found = document[table.name]
            for encoded in [found] if table.name == OWNER_TABLE else found:
                rows[table.name].append(_decoded(table, encoded, where=f"{name}: {table.name}"))
    for table in owned:
        rows[table.name].sort(key=operator.itemgetter(*table.key))
    return rows


def _decoded(table: ArchivedTable, encoded: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(encoded, dict) or sorted(encoded) != table.columns:
        raise ArchiveError(f"{where} is not a row of {table.name} (its columns differ)")
    try:
        return decode_row(table, encoded)
    except ValueError as exc:
        raise ArchiveError(f"{where}: {exc}") from None


def _insert(connection: Connection, table: ArchivedTable, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        if table.name == META_TABLE:
            # The migrations made the store's own values; the archive's replace them by name.
            key = table.table.c[table.key[0]]
            connection.execute(sa.delete(table.table).where(key == row[table.key[0]]))
        batch.append(row)
        count += 1
        if len(batch) >= _BATCH:
            _execute(connection, table, batch)
            batch = []
    if batch:
        _execute(connection, table, batch)
    return count


def _execute(connection: Connection, table: ArchivedTable, batch: list[dict[str, Any]]) -> None:
    try:
        connection.execute(table.table.insert(), batch)
    except sa.exc.DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ArchiveError(f"the archive's {table.name} rows do not fit the store ({first})") from None


def _move_sequences(connection: Connection, tables: list[ArchivedTable]) -> None:
    """Explicit ids leave PostgreSQL's sequences where they were: the next insert must come after them."""
    for table in tables:
        if table.key != ("id",):
            continue
        connection.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence(:name, 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
            ),
            {"name": table.name},
        )

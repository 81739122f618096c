"""Finding one stored finetune by its id: the lookup ``show``, ``history`` and ``diff`` share.

The same id can be stored under several sources (API hosts); a lookup that does not say
which one and finds several is ambiguous rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from bflsync.errors import AmbiguousIdError, InputError
from bflsync.reading import Reader
from bflsync.records import ALL_COLUMNS, FinetuneRecord, record_index


@dataclass(frozen=True, slots=True)
class StoredFinetune:
    """A finetune's primary key with its current record."""

    pk: int
    record: FinetuneRecord


def find_finetune(reader: Reader, finetune_id: str, *, source: str | None = None) -> StoredFinetune:
    """The current record of one finetune, tombstoned or not.

    Raises :class:`InputError` for an unknown id and :class:`AmbiguousIdError` when the id is
    stored under several sources and ``source`` does not pick one.
    """
    columns = ", ".join(f'"{name}"' for name in ALL_COLUMNS)
    statement = f"SELECT id, {columns} FROM finetune WHERE finetune_id = ?"
    params: list[str] = [finetune_id]
    if source is not None:
        statement += " AND source = ?"
        params.append(source)
    rows = reader.rows(statement + " ORDER BY source", params)
    if not rows:
        where = f" from source {source!r}" if source is not None else ""
        raise InputError(f"no finetune {finetune_id!r}{where} in the store")
    if len(rows) > 1:
        sources = ", ".join(sorted(FinetuneRecord(row[1:], _INDEX).source for row in rows))
        raise AmbiguousIdError(
            f"finetune {finetune_id!r} is stored for several sources ({sources}): pick one with --source"
        )
    return StoredFinetune(pk=int(rows[0][0]), record=FinetuneRecord(rows[0][1:], _INDEX))


def is_stored(reader: Reader, finetune_id: str, *, source: str | None = None) -> bool:
    statement = "SELECT 1 FROM finetune WHERE finetune_id = ?"
    params = [finetune_id]
    if source is not None:
        statement += " AND source = ?"
        params.append(source)
    return bool(reader.rows(statement + " LIMIT 1", params))


_INDEX = record_index(ALL_COLUMNS)

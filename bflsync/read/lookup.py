"""Finding one stored finetune by its id: the lookup ``show``, ``history`` and ``diff`` share.

The same id can be stored for several (source, account) pairs: API hosts, and keys labelled
with ``sync --account``. A lookup that does not say which and finds several is ambiguous
rather than a guess, and says which option tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from bflsync.errors import AmbiguousIdError, InputError
from bflsync.read.label_reads import labels_object_sql
from bflsync.read.reader import Reader
from bflsync.read.records import ALL_COLUMNS, LABELS, FinetuneRecord, record_index


class StoredFinetune(NamedTuple):
    """A finetune's primary key with its current record."""

    pk: int
    record: FinetuneRecord


def find_finetune(
    reader: Reader, finetune_id: str, *, source: str | None = None, account: str | None = None
) -> StoredFinetune:
    """The current record of one finetune, tombstoned or not.

    A unique prefix of a stored id (at least :data:`MIN_PREFIX` characters) stands for that id,
    as in git. Raises :class:`InputError` for an unknown id (naming close ones) and
    :class:`AmbiguousIdError` when a prefix starts several ids, or the id is stored for several
    (source, account) and ``source``/``account`` do not pick one.
    """
    if not is_stored(reader, finetune_id, source=source, account=account):
        finetune_id = _expand_prefix(reader, finetune_id, source=source, account=account)
    columns = ", ".join(
        labels_object_sql(reader.dialect, pk="finetune.id") if name == LABELS else f'"{name}"'
        for name in ALL_COLUMNS
    )
    where, params = _which(finetune_id, source=source, account=account)
    rows = (
        []
        if _never_stored(reader, params)
        else reader.rows(f"SELECT id, {columns} FROM finetune WHERE {where}", params)
    )
    if not rows:
        scope = "".join(
            f" {label} {value!r}"
            for label, value in (("from source", source), ("of account", account))
            if value
        )
        raise InputError(f"no finetune {finetune_id!r}{scope} in the store{_close_ids(reader, finetune_id)}")
    if len(rows) > 1:
        records = [FinetuneRecord(row[1:], _INDEX) for row in rows]
        raise AmbiguousIdError(_ambiguity(finetune_id, sorted((r.source, r.account) for r in records)))
    return StoredFinetune(pk=int(rows[0][0]), record=FinetuneRecord(rows[0][1:], _INDEX))


def is_stored(
    reader: Reader, finetune_id: str, *, source: str | None = None, account: str | None = None
) -> bool:
    where, params = _which(finetune_id, source=source, account=account)
    if _never_stored(reader, params):
        return False
    return bool(reader.rows(f"SELECT 1 FROM finetune WHERE {where} LIMIT 1", params))


MIN_PREFIX = 6
"""The shortest id prefix that stands for an id: shorter ones match too much to be meant."""
CANDIDATES_SHOWN = 10


def _expand_prefix(reader: Reader, prefix: str, *, source: str | None, account: str | None) -> str:
    """The one stored id starting with ``prefix``; ``prefix`` itself when none does (for "not found")."""
    if len(prefix) < MIN_PREFIX or _never_stored(reader, [prefix]):
        return prefix
    where, params = _which(prefix, source=source, account=account)
    where = where.replace("finetune_id = ?", "substr(finetune_id, 1, ?) = ?", 1)
    rows = reader.rows(
        f"SELECT DISTINCT finetune_id FROM finetune WHERE {where} ORDER BY 1 LIMIT ?",
        [len(prefix), *params, CANDIDATES_SHOWN + 1],
    )
    ids = [str(row[0]) for row in rows]
    if len(ids) > 1:
        more = ", …" if len(ids) > CANDIDATES_SHOWN else ""
        listed = ", ".join(ids[:CANDIDATES_SHOWN]) + more
        raise AmbiguousIdError(
            f"id prefix {prefix!r} starts several finetunes: {listed}; give more of the id"
        )
    return ids[0] if ids else prefix


def _close_ids(reader: Reader, finetune_id: str) -> str:
    """``; did you mean …?`` with the stored ids closest to an unknown one, or nothing."""
    import difflib  # only for a miss

    stored = sorted(str(row[0]) for row in reader.rows("SELECT DISTINCT finetune_id FROM finetune"))
    # A short prefix is no match by spelling: the ids it starts come first.
    started = [candidate for candidate in stored if finetune_id and candidate.startswith(finetune_id)]
    close = list(dict.fromkeys([*started, *difflib.get_close_matches(finetune_id, stored, n=3, cutoff=0.6)]))[
        :3
    ]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def ids_starting_with(reader: Reader, prefix: str, *, limit: int) -> list[str]:
    """Stored finetune ids that start with ``prefix``, sorted, at most ``limit`` (for completion)."""
    rows = reader.rows(
        "SELECT DISTINCT finetune_id FROM finetune WHERE substr(finetune_id, 1, ?) = ? ORDER BY 1 LIMIT ?",
        [len(prefix), prefix, limit],
    )
    return [str(row[0]) for row in rows]


def account_names(reader: Reader) -> list[str]:
    """Every account that has stored finetunes, sorted."""
    return [str(row[0]) for row in reader.rows("SELECT DISTINCT account FROM finetune ORDER BY 1")]


def _never_stored(reader: Reader, values: Sequence[str]) -> bool:
    """Whether a value holds U+0000, which PostgreSQL text cannot hold (nor be asked about)."""
    return reader.dialect == "postgresql" and any("\x00" in value for value in values)


def _which(finetune_id: str, *, source: str | None, account: str | None) -> tuple[str, list[str]]:
    conditions, params = ["finetune_id = ?"], [finetune_id]
    for column, value in (("source", source), ("account", account)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(conditions), params


def _ambiguity(finetune_id: str, candidates: Sequence[tuple[str, str]]) -> str:
    """Which (source, account) rows hold the id, and the option(s) that pick one."""
    listed = ", ".join(f"{source} (account {account})" for source, account in candidates)
    options = [
        option
        for option, position in (("--source HOST", 0), ("--account NAME", 1))
        if len({candidate[position] for candidate in candidates}) > 1
    ]
    return (
        f"finetune {finetune_id!r} is stored several times: {listed}; pick one with {' and '.join(options)}"
    )


_INDEX = record_index(ALL_COLUMNS)

"""Which field names a store knows: its columns and the keys its finetunes' details hold.

A filter on a key no finetune has is valid and simply matches nothing, which looks the same
as a typo: :func:`unknown_field` says so, with the closest known name. Shell completion
offers the same names (:func:`field_names`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from bflsync.columns import COLUMN_NAMES
from bflsync.errors import DetailsNotJsonError
from bflsync.read.filters import LABEL_PREFIX, FieldRef, format_path
from bflsync.read.reader import Reader


def close_matches(wanted: str, candidates: Sequence[str], *, n: int = 3) -> list[str]:
    """Candidates equal to ``wanted`` but for case first, then the closest spellings."""
    folded = [candidate for candidate in candidates if candidate.casefold() == wanted.casefold()]
    close = difflib.get_close_matches(wanted, candidates, n=n, cutoff=0.6)
    return list(dict.fromkeys([*folded, *close]))[:n]


def unknown_field(reader: Reader, field: FieldRef) -> str | None:
    """A one-line note when no stored finetune has the key ``field`` names; ``None`` when one does."""
    if field.label is not None:
        return _unknown_label(reader, field.label)
    if field.column is not None or _any_holds(reader, field.path):
        return None
    note = f"no stored finetune has a key {field.name!r}"
    parent = field.path[:-1]
    candidates = [format_path((*parent, key)) for key in stored_keys(reader, parent)]
    if not parent:
        candidates.extend(COLUMN_NAMES)

    close = close_matches(field.name, candidates, n=1)
    return f"{note} (did you mean {close[0]}?)" if close else note


def field_names(reader: Reader, prefix: str = "") -> list[str]:
    """Column names, ``label.KEY`` of stored labels and details keys (dotted below a complete
    ``prefix`` path) starting with ``prefix``."""
    head, _, _ = prefix.rpartition(".")
    parent = tuple(head.split(".")) if head else ()
    labelled = [f"{LABEL_PREFIX}.{key}" for key in label_keys(reader)] if len(parent) <= 1 else []
    if parent == (LABEL_PREFIX,):
        # `label.` is the start of a label field (a details object called "label" is `label`).
        names = labelled
    else:
        keys = [format_path((*parent, key)) for key in stored_keys(reader, parent)]
        names = [*COLUMN_NAMES, *keys, *labelled] if not parent else keys
    return sorted({name for name in names if name.startswith(prefix)})


def label_keys(reader: Reader) -> list[str]:
    """The keys of every stored label, sorted."""
    return [str(row[0]) for row in reader.rows("SELECT DISTINCT key FROM finetune_label ORDER BY 1")]


def _unknown_label(reader: Reader, key: str) -> str | None:
    if reader.rows("SELECT 1 FROM finetune_label WHERE key = ? LIMIT 1", [key]):
        return None

    note = f"no stored finetune has a label {key!r}"
    close = close_matches(key, label_keys(reader), n=1)
    return f"{note} (did you mean {LABEL_PREFIX}.{close[0]}?)" if close else note


def stored_keys(reader: Reader, parent: Sequence[str] = ()) -> list[str]:
    """The keys of the objects at ``parent`` in any stored finetune's details, sorted."""
    if reader.dialect == "sqlite":
        statement = (
            "SELECT DISTINCT j.key FROM finetune, json_each(CASE WHEN json_valid(finetune.details)"
            " THEN finetune.details END, ?) AS j WHERE j.key IS NOT NULL"
        )
        params: list[object] = ["$" + "".join(f'."{key}"' for key in parent)]
    else:
        statement = (
            f"SELECT DISTINCT jsonb_object_keys({_pg_json(reader)} #> ?) FROM finetune"
            f" WHERE jsonb_typeof({_pg_json(reader)} #> ?) = 'object'"
        )
        params = [list(parent), list(parent)]
    return sorted(str(row[0]) for row in reader.rows(statement, params))


def _any_holds(reader: Reader, path: Sequence[str]) -> bool:
    """Whether any stored finetune (or, failing that, any stored version) has the key path."""
    if reader.dialect == "sqlite":
        json_path = "$" + "".join(f'."{key}"' for key in path)
        for table in ("finetune", "finetune_version"):
            statement = f"SELECT 1 FROM {table} WHERE json_type(details, ?) IS NOT NULL LIMIT 1"
            try:
                found = reader.rows(statement, [json_path])
            except DetailsNotJsonError:
                guarded = (
                    f"SELECT 1 FROM {table} WHERE json_valid(details)"
                    " AND json_type(CASE WHEN json_valid(details) THEN details END, ?) IS NOT NULL LIMIT 1"
                )
                found = reader.rows(guarded, [json_path])
            if found:
                return True
        return False
    statement = f"SELECT 1 FROM finetune WHERE ({_pg_json(reader)} #> ?) IS NOT NULL LIMIT 1"
    return bool(reader.rows(statement, [list(path)]))


def _pg_json(reader: Reader) -> str:
    return "details_jsonb" if "details_jsonb" in reader.finetune_columns else "CAST(details AS jsonb)"

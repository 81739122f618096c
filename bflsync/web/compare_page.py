"""The web form of ``bflsync compare ID ID…``: the parameters of several finetunes side by side.

The entries are the current records (``compare`` on the command line also takes ``ID@VERSION``),
lined up by :func:`bflsync.read.compare.matrix` with the fields ``compare`` shows by default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bflsync.extract import MISSING, extract_fields
from bflsync.read import compare, filters
from bflsync.read.lookup import find_finetune
from bflsync.read.reader import Reader


def comparison(reader: Reader, finetune_ids: Sequence[str], *, only_changed: bool = False) -> compare.Matrix:
    """The matrix of the finetunes named (each id once, in order); unknown ids raise as ``show`` does."""
    entries = []
    for finetune_id in dict.fromkeys(finetune_ids):
        found = find_finetune(reader, finetune_id)
        record = found.record
        columns: dict[str, Any] = {**extract_fields(record.details), **record.as_dict()}
        del columns["details"], columns["labels"]
        entries.append(
            compare.Entry(
                heading=finetune_id,
                finetune_id=record.finetune_id,
                source=record.source,
                account=record.account,
                version=record.version,
                columns=columns,
                details=record.details,
                labels=record.labels,
            )
        )
    fields = compare.default_fields(entries, name_of_path=filters.field_name)
    return compare.matrix(entries, fields, only_changed=only_changed)


def cell(value: Any) -> str:
    """A value as the page shows it: empty where the finetune has no such field."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)

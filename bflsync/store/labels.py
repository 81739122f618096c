"""The rows of labels and notes: current values, their history, and how a value is stored.

A label's value is kept twice: ``value_json``, its canonical JSON (typed: ``3``, ``true``,
``"acme"``), and ``value``, plain text as people write it in SQL (``value='acme'``). Every
change is appended to ``finetune_label_change`` and, like a note, to the hash chain, on the
caller's transaction (never committed here). What people type, and finding the finetune it
names, is :mod:`bflsync.annotate`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bflsync.extract import canonical_json
from bflsync.store import chain
from bflsync.store.schema import FinetuneLabel, FinetuneLabelChange, FinetuneNote

LabelValue = str | int | float | bool

label_table: sa.Table = FinetuneLabel.__table__  # type: ignore[attr-defined]
label_change_table: sa.Table = FinetuneLabelChange.__table__  # type: ignore[attr-defined]
note_table: sa.Table = FinetuneNote.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class LabelEdit:
    """What one ``bflsync label`` asks for: values to set and keys to remove (never both for a key)."""

    assign: Mapping[str, LabelValue]
    remove: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class LabelChange:
    """One label that really changed; ``old``/``new`` are ``None`` where the label was absent."""

    key: str
    change: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Author:
    """Who makes a change: the OS account of the process's real uid, and ``--as`` free text if given.

    The database role is added by the write itself (``session_user`` on PostgreSQL).
    """

    os_user: str
    attribution: str | None = None


def _authorship(connection: Connection, actor: Author, verb: str) -> dict[str, str | None]:
    """The ``{verb}_by``, ``{verb}_by_role`` and ``{verb}_as`` columns of a row ``actor`` writes."""
    role = None
    if connection.dialect.name == "postgresql":
        # A SQL keyword, not a function name: nothing planted in a schema can stand in for it.
        role = connection.scalar(sa.text("SELECT session_user"))
    return {f"{verb}_by": actor.os_user, f"{verb}_by_role": role, f"{verb}_as": actor.attribution}


# Bound parameters per statement stay far below PostgreSQL's 65,535 and SQLite's 32,766.
_KEYS_PER_SELECT = 5000


def apply_edit(
    connection: Connection, *, finetune_pk: int, edit: LabelEdit, actor: Author, now: datetime
) -> list[LabelChange]:
    """Write the label rows and their history (appended to the hash chain) on the caller's
    transaction. Never commits."""
    keys = sorted({*edit.assign, *edit.remove})
    current: dict[str, str] = {}
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start : start + _KEYS_PER_SELECT]
        current.update(
            (row.key, row.value_json)
            for row in connection.execute(
                sa.select(label_table.c.key, label_table.c.value_json).where(
                    label_table.c.finetune_pk == finetune_pk, label_table.c.key.in_(chunk)
                )
            )
        )
    setter = _authorship(connection, actor, "set")
    changer = _authorship(connection, actor, "changed") if keys else {}
    changes: list[LabelChange] = []
    unchained = chain.unchained(connection, "finetune_label_change")
    for key in keys:
        # Only keys that change cost a statement: removing 70,000 absent keys builds no SQL per key.
        old = current.get(key)
        if key in edit.assign:
            new: str | None = canonical_json(edit.assign[key])
            if new == old:
                continue
            row = {"value": plain_text(edit.assign[key]), "value_json": new, "set_at": now, **setter}
            if old is None:
                connection.execute(sa.insert(label_table).values(finetune_pk=finetune_pk, key=key, **row))
            else:
                connection.execute(sa.update(label_table).where(*_label_row(finetune_pk, key)).values(**row))
            change = LabelChange(key, "set", decode(old), edit.assign[key])
        elif old is not None:
            new = None
            connection.execute(sa.delete(label_table).where(*_label_row(finetune_pk, key)))
            change = LabelChange(key, "removed", decode(old), None)
        else:
            continue
        connection.execute(
            sa.insert(label_change_table).values(
                finetune_pk=finetune_pk,
                key=key,
                change=change.change,
                value=new,
                changed_at=now,
                **changer,
            )
        )
        changes.append(change)
    chain.append(connection, "finetune_label_change", skip=unchained)
    return changes


def _label_row(finetune_pk: int, key: str) -> tuple[sa.ColumnElement[bool], ...]:
    """The condition that picks one finetune's label ``key``."""
    return (label_table.c.finetune_pk == finetune_pk, label_table.c.key == key)


def append_note(connection: Connection, *, finetune_pk: int, text: str, actor: Author, now: datetime) -> None:
    """Append a note and its link in the hash chain on the caller's transaction. Never commits."""
    unchained = chain.unchained(connection, "finetune_note")
    connection.execute(
        sa.insert(note_table).values(
            finetune_pk=finetune_pk, text=text, written_at=now, **_authorship(connection, actor, "written")
        )
    )
    chain.append(connection, "finetune_note", skip=unchained)


def plain_text(value: LabelValue) -> str:
    """A label value as people write it in SQL (``value='acme'``): text as is, others as JSON spells them."""
    return value if isinstance(value, str) else canonical_json(value)


def decode(value: str | None) -> Any:
    """A stored label value (canonical JSON text) as the value it holds."""
    return None if value is None else json.loads(value)

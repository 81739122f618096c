"""Labels and notes that people keep on finetunes: parsing what they type, and the writes.

BFL names a finetune by an id and a comment fixed at creation; teams need to say more
("approved for product shots", "project acme"). A label is a ``KEY=VALUE`` pair, typed as
filter values are (``approved=true`` is the boolean, ``rank=3`` the number, ``"3"`` the
text), so ``bflsync query label.approved=true`` compares it exactly as it would a details
key. A note is free text, appended. Every change is appended to a history with the OS user
who made it and when; the current values are kept beside it for fast filtering.

Only ``bflsync label`` and ``bflsync note`` write these tables (never a sync), each in one
short transaction that the caller runs under the store's lock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bflsync.audit import chain
from bflsync.errors import InputError
from bflsync.extract import canonical_json
from bflsync.read.filters import parse_filter
from bflsync.read.lookup import find_finetune
from bflsync.read.reader import ConnectionReader
from bflsync.store.schema import FinetuneLabel, FinetuneLabelChange, FinetuneNote

LabelValue = str | int | float | bool

# Plain names only, so `label.KEY` needs no quoting in a filter, a --columns list or a CSV header.
LABEL_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
KEY_RULE = "1-64 ASCII letters, digits, '_' and '-', not starting with '-'"

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


@dataclass(frozen=True, slots=True)
class EditOutcome:
    finetune_id: str
    source: str
    changes: list[LabelChange]


def check_key(key: str) -> str:
    if not LABEL_KEY.fullmatch(key):
        raise InputError(f"bad label key {key!r}: a label key is {KEY_RULE}")
    return key


def parse_assignment(text: str) -> tuple[str, LabelValue]:
    """``KEY=VALUE`` with VALUE typed as in filters: numbers, true/false, "quoted" text, else text."""
    key, separator, _ = text.partition("=")
    if not separator:
        raise InputError(f"bad label {text!r}: expected KEY=VALUE (remove a label with --remove KEY)")
    check_key(key)
    parsed = parse_filter(text)
    if parsed.op != "=":
        raise InputError(f"bad label {text!r}: expected KEY=VALUE")
    if parsed.value is None:
        raise InputError(
            f'bad label {text!r}: a label cannot be null; use --remove {key} (or "null" for text)'
        )
    _refuse_nul(parsed.value, what=f"label {key!r}")
    _refuse_inexact_integer(key, text.partition("=")[2], parsed.value)
    return key, parsed.value


def build_edit(assignments: Sequence[str], removals: Sequence[str]) -> LabelEdit:
    """Validate a whole command line: each key once, and not both set and removed."""
    assign: dict[str, LabelValue] = {}
    for text in assignments:
        key, value = parse_assignment(text)
        if key in assign:
            raise InputError(f"label {key!r} is given twice")
        assign[key] = value
    remove: dict[str, None] = {}  # ordered and without repeats, in linear time
    for key in removals:
        check_key(key)
        if key in assign:
            raise InputError(f"label {key!r} is both set and removed")
        remove[key] = None
    if not assign and not remove:
        raise InputError("nothing to do: give KEY=VALUE labels to set or --remove KEY")
    return LabelEdit(assign=assign, remove=tuple(remove))


def check_note(text: str) -> str:
    """A note is any non-blank text; NUL is refused since PostgreSQL cannot store it in text."""
    if not text.strip():
        raise InputError("a note needs some text")
    _refuse_nul(text, what="a note")
    return text


def edit_labels(
    engine: Engine,
    finetune_id: str,
    edit: LabelEdit,
    *,
    source: str | None,
    account: str | None,
    actor: Author,
    now: datetime,
) -> EditOutcome:
    """Apply ``edit`` to one finetune's labels in one transaction; unchanged values write nothing."""
    with engine.begin() as connection:
        pk, found_source = _find(connection, finetune_id, source=source, account=account)
        changes = apply_edit(connection, finetune_pk=pk, edit=edit, actor=actor, now=now)
    return EditOutcome(finetune_id=finetune_id, source=found_source, changes=changes)


def add_note(
    engine: Engine,
    finetune_id: str,
    text: str,
    *,
    source: str | None,
    account: str | None,
    actor: Author,
    now: datetime,
) -> str:
    """Append a note to one finetune; returns the source it was found under."""
    with engine.begin() as connection:
        pk, found_source = _find(connection, finetune_id, source=source, account=account)
        unchained = chain.unchained(connection, "finetune_note")
        connection.execute(
            sa.insert(note_table).values(
                finetune_pk=pk,
                text=check_note(text),
                written_at=now,
                **_authorship(connection, actor, "written"),
            )
        )
        chain.append(connection, "finetune_note", skip=unchained)
    return found_source


def _find(
    connection: Connection, finetune_id: str, *, source: str | None, account: str | None
) -> tuple[int, str]:
    """The finetune's primary key and source, found (or refused as unknown or ambiguous) as ``show`` finds it."""
    reader = ConnectionReader(connection, where="the store")
    found = find_finetune(reader, finetune_id, source=source, account=account)
    return found.pk, found.record.source


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
        old = current.get(key)
        where = (label_table.c.finetune_pk == finetune_pk, label_table.c.key == key)
        if key in edit.assign:
            new: str | None = canonical_json(edit.assign[key])
            if new == old:
                continue
            row = {"value": plain_text(edit.assign[key]), "value_json": new, "set_at": now, **setter}
            if old is None:
                connection.execute(sa.insert(label_table).values(finetune_pk=finetune_pk, key=key, **row))
            else:
                connection.execute(sa.update(label_table).where(*where).values(**row))
            change = LabelChange(key, "set", decode(old), edit.assign[key])
        elif old is not None:
            new = None
            connection.execute(sa.delete(label_table).where(*where))
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


def plain_text(value: LabelValue) -> str:
    """A label value as people write it in SQL (``value='acme'``): text as is, others as JSON spells them."""
    return value if isinstance(value, str) else canonical_json(value)


def decode(value: str | None) -> Any:
    """A stored label value (canonical JSON text) as the value it holds."""
    return None if value is None else json.loads(value)


_INTEGER = re.compile(r"\s*[-+]?[0-9]+\s*")
_INT64 = range(-(2**63), 2**63)


def _refuse_inexact_integer(key: str, typed: str, value: LabelValue) -> None:
    """An integer the filter language would read as a rounded float, or beyond 64 bits, is refused.

    Labels compare as numbers on both engines, and neither keeps integers past 64 bits exactly
    (SQLite's JSON functions read them as floats), so storing one would silently change it.
    """
    if _INTEGER.fullmatch(typed) and (not isinstance(value, int) or value not in _INT64):
        raise InputError(
            f"label {key!r}: the integer {typed.strip()} does not fit in 64 bits and would not be kept "
            f"exactly; quote it to keep it as text ({key}='\"{typed.strip()}\"')"
        )


def check_attribution(text: str) -> str:
    """``--as NAME``: free text on one line, that the store can keep."""
    if not text.strip():
        raise InputError("--as needs a name")
    if any(character in text for character in "\n\r"):
        raise InputError("--as is one line of text")
    _refuse_nul(text, what="--as")
    return text


def _refuse_nul(value: LabelValue, *, what: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise InputError(f"{what} contains a NUL character, which the store cannot keep")

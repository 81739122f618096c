"""Labels and notes that people keep on finetunes: what they type, the finetune it names, one transaction.

BFL names a finetune by an id and a comment fixed at creation; teams need to say more
("approved for product shots", "project acme"). A label is a ``KEY=VALUE`` pair, typed as
filter values are (``approved=true`` is the boolean, ``rank=3`` the number, ``"3"`` the
text), so ``bflsync query label.approved=true`` compares it exactly as it would a details
key. A note is free text, appended. The finetune is found as ``show`` finds it (an id or a
unique prefix), and the rows are written by :mod:`bflsync.store.labels`.

Only ``bflsync label`` and ``bflsync note`` write these tables (never a sync), each in one
short transaction that the caller runs under the store's lock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from bflsync.errors import FilterError, InputError
from bflsync.read.filters import parse_filter
from bflsync.read.lookup import find_finetune
from bflsync.read.reader import ConnectionReader
from bflsync.store.labels import Author, LabelChange, LabelEdit, LabelValue, append_note, apply_edit

# Plain names only, so `label.KEY` needs no quoting in a filter, a --columns list or a CSV header.
LABEL_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
KEY_RULE = "1-64 ASCII letters, digits, '_' and '-', not starting with '-'"


@dataclass(frozen=True, slots=True)
class EditOutcome:
    """What ``bflsync label`` did: the finetune, the source it was found under, and the real changes."""

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
    try:
        parsed = parse_filter(text)
    except FilterError as exc:
        # The value grammar is the filter language's; the message names what the user typed.
        raise InputError(str(exc).replace("bad filter", "bad label", 1)) from None
    if parsed.op != "=":
        raise InputError(f"bad label {text!r}: expected KEY=VALUE")
    if parsed.value is None:
        raise InputError(
            f'bad label {text!r}: a label cannot be null; use --remove {key} (or "null" for text)'
        )
    _refuse_nul(parsed.value, what=f"label {key!r}")
    _refuse_inexact_integer(key, text.partition("=")[2], parsed.value)
    _refuse_underflow(key, text.partition("=")[2], parsed.value)
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
        append_note(connection, finetune_pk=pk, text=check_note(text), actor=actor, now=now)
    return found_source


def _find(
    connection: Connection, finetune_id: str, *, source: str | None, account: str | None
) -> tuple[int, str]:
    """The finetune's primary key and source, found (or refused as unknown or ambiguous) as ``show`` finds it."""
    reader = ConnectionReader(connection, where="the store")
    found = find_finetune(reader, finetune_id, source=source, account=account)
    return found.pk, found.record.source


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


_NONZERO_MANTISSA = re.compile(r"[1-9]")


def _refuse_underflow(key: str, typed: str, value: LabelValue) -> None:
    """A number that reads as 0.0 though its digits are not all zero (``1e-400``) is refused, as in details.

    Stored, it would silently be 0 (docs/guarantees.md, Numbers).
    """
    mantissa = typed.strip().lower().partition("e")[0]
    if isinstance(value, float) and value == 0.0 and _NONZERO_MANTISSA.search(mantissa):
        raise InputError(
            f"label {key!r}: the number {typed.strip()} is too small for a double and would be stored "
            f"as 0; quote it to keep it as text ({key}='\"{typed.strip()}\"')"
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

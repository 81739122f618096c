"""Notes for answers that would otherwise be silently empty: values nobody has, ids nobody has,
and a ``--source`` or ``--account`` nothing in the store carries.

``status=pending`` matches nothing when the store holds ``Pending``: the filter is valid and the
answer is honest, but a user cannot tell it from "no finetune is pending". When a text equality
matches nothing and the field holds a small set of values (:data:`ENUMERATION_LIMIT`), the note
names the close value and the values there are. ``=`` stays exact (case included) on both
engines, so every filter means what the Python predicates of the property tests say; the note
says so instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bflsync.read.fieldnames import close_matches
from bflsync.read.filters import Query, Test, predicate
from bflsync.read.reader import Reader
from bflsync.read.records import decode_time
from bflsync.read.search import facet_counts
from bflsync.timeform import iso_utc

ENUMERATION_LIMIT = 50
"""At most this many distinct stored values make a field an enumeration worth listing."""
VALUES_SHOWN = 12


def unmatched_values(reader: Reader, query: Query) -> list[str]:
    """One note per ``FIELD=text`` filter that no finetune in the query's scope matches, on a field
    holding at most :data:`ENUMERATION_LIMIT` distinct values."""
    scope = query._replace(filters=(), text=None, sort=None, limit=None)
    notes = []
    for item in query.filters:
        test = predicate(item)
        if test.negated or test.test is not Test.COMPARE or test.op != "=" or not isinstance(test.value, str):
            continue
        counts, _ = facet_counts(reader, [item.field], scope)
        values = [count.value for count in counts[item.field.name] if count.value is not None]
        if not values or len(values) > ENUMERATION_LIMIT or test.value in values:
            continue
        texts = [value for value in values if isinstance(value, str)]
        close = close_matches(test.value, texts, n=1)
        listed = _listed(values)
        guess = f" did you mean {close[0]}?" if close else ""
        notes.append(
            f"no finetune has {item.field.name} {test.value!r};{guess} values: {listed} "
            "(= compares text exactly, case included)"
        )
    return notes


# Every (source, account) a finetune, a synced account or a run carries: what --source and --account can name.
_SCOPE_SQL = (
    "SELECT source, account FROM finetune UNION SELECT source, account FROM account"
    " UNION SELECT source, account FROM sync_run"
)


def unknown_scope(reader: Reader, *, source: str | None, account: str | None) -> list[str]:
    """One note per ``--source``/``--account`` value nothing in the store carries, with the close
    one and those there are: ``--account defualt`` would otherwise answer an empty listing."""
    if source is None and account is None:
        return []
    pairs = reader.rows(_SCOPE_SQL)
    notes = []
    for name, wanted, column in (("source", source, 0), ("account", account, 1)):
        known = sorted({pair[column] for pair in pairs})
        if wanted is None or wanted in known:
            continue
        close = close_matches(wanted, known, n=1)
        guess = f" did you mean {close[0]}?" if close else ""
        listed = _listed(known)
        there = f" {name}s: {listed}" if known else " the store holds none yet"
        notes.append(f"nothing is stored for {name} {wanted!r};{guess}{there}")
    return notes


def before_the_record(reader: Reader, as_of: datetime | None) -> str | None:
    """A note when ``--as-of`` is earlier than anything the store observed: an empty answer then says
    nothing about the finetunes, only that the store did not exist yet."""
    if as_of is None:
        return None
    ((first,),) = reader.rows("SELECT MIN(observed_at) FROM finetune_version")
    start = decode_time(first)
    if start is None or as_of >= start:
        return None
    return f"the store's record starts at {iso_utc(start)}; nothing was stored as of {iso_utc(as_of)}"


def _listed(values: Sequence[object]) -> str:
    """The first :data:`VALUES_SHOWN` values, comma-separated, an ellipsis marking the rest."""
    return ", ".join(map(str, values[:VALUES_SHOWN])) + (", …" if len(values) > VALUES_SHOWN else "")

"""SQL text with its bound parameters, composed without ever pasting a value into the text.

The renderers in :mod:`bflsync.read.search` build statements from fragments; a fragment used
twice carries its parameters twice, in order, so positional ``?`` placeholders stay right
however the pieces are nested.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Sql(NamedTuple):
    text: str
    params: tuple[Any, ...] = ()


class Param(NamedTuple):
    """A value to bind: it reaches the database only as a parameter."""

    value: Any


def sql(template: str, *parts: Sql | Param | str) -> Sql:
    """Fill each ``{}`` of ``template`` with a fragment, a bound parameter, or trusted SQL text."""
    pieces = template.split("{}")
    if len(pieces) != len(parts) + 1:
        raise ValueError(f"{len(parts)} parts for {len(pieces) - 1} slots in {template!r}")
    text = [pieces[0]]
    params: list[Any] = []
    for part, piece in zip(parts, pieces[1:], strict=True):
        if isinstance(part, Sql):
            text.append(part.text)
            params.extend(part.params)
        elif isinstance(part, Param):
            text.append("?")
            params.append(part.value)
        else:
            text.append(part)
        text.append(piece)
    return Sql("".join(text), tuple(params))


def join(separator: str, fragments: list[Sql]) -> Sql:
    return Sql(
        separator.join(fragment.text for fragment in fragments),
        tuple(param for fragment in fragments for param in fragment.params),
    )

"""Python's full case folding beyond lowercase, as tables: what ``~`` needs on PostgreSQL.

``~`` matches by :meth:`str.casefold`. PostgreSQL has ``lower()``; the tables here list the
characters (already lowercase) whose casefold differs, one-to-one or expanding, and the
characters whose lowercase expands. They are computed from this Python's Unicode data on first
use (whatever its version: 14.0 on Python 3.11, 15.0 on 3.12, 15.1 on 3.13) and kept for the
process. Looking at one code point at a time takes longer than a query (~0.4 s of CPU), so the
code points are compared a block at a time (:meth:`str.casefold` and :meth:`str.lower` of a
whole block, in C) and only the few blocks that differ are looked at character by character:
about a tenth of that, paid only by a PostgreSQL query that uses ``~`` (docs/performance.md).
"""

from __future__ import annotations

from functools import cache

Folding = tuple[str, str]
# Code points compared at once.
_BLOCK = 512


@cache
def fold_tables() -> tuple[tuple[Folding, ...], tuple[Folding, ...]]:
    """(character, casefold) pairs beyond lowercase: one-to-one ones, then expansions."""
    singles: list[Folding] = []
    expansions: list[Folding] = []
    for block in _blocks():
        # Each character folds on its own; str.lower() of a block may differ from the characters'
        # lowercase by context alone (a final sigma), which only sends the block to the slow path.
        if block.casefold() == block.lower():
            continue
        for char in block:
            if char.lower() != char:
                continue
            folded = char.casefold()
            if folded != char:
                (singles if len(folded) == 1 else expansions).append((char, folded))
    return tuple(singles), tuple(expansions)


@cache
def lowercase_expansions() -> tuple[Folding, ...]:
    """Characters whose lowercase is longer than themselves, with their casefold.

    PostgreSQL's lower() maps them one to one (U+0130 to a plain ``i``), Python to their casefold
    (``i`` and a combining dot above), so ``~`` replaces them before lower().
    """
    return tuple(
        (char, char.casefold())
        for block in _blocks()
        if len(block.lower()) != len(block)
        for char in block
        if len(char.lower()) > 1
    )


@cache
def _blocks() -> tuple[str, ...]:
    """Every code point, in blocks of :data:`_BLOCK` (lone surrogates included: they fold to themselves)."""
    count = 0x110000
    # UTF-32-LE of 0..U+10FFFF, laid out byte column by byte column in C: ~10x faster than chr() each.
    units = bytearray(4 * count)
    units[0::4] = bytes(range(256)) * (count // 256)
    units[1::4] = b"".join(bytes([high]) * 256 for high in range(256)) * (count // 65536)
    units[2::4] = b"".join(bytes([plane]) * 65536 for plane in range(count // 65536))
    text = units.decode("utf-32-le", "surrogatepass")
    return tuple(text[start : start + _BLOCK] for start in range(0, count, _BLOCK))

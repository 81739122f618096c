"""Tables fitted to a terminal's width, for people reading ``query``, ``runs``, ``facets`` and ``diff``.

What a user copies from a table must be whole: ids go into ``show``, numbers into filters. So
id columns (``id``, ``*_id``) and columns whose every value is a number, a timestamp or a
duration are *rigid*: never cut. The other (free-text) columns give way when the row is too
wide, the widest first, down to a few characters each, cut with ``…``. Headers wrap after an
underscore (``learning_`` over ``rate``) before anything is cut. When even that does not fit,
each record is printed as a block of ``name  value`` lines instead, every value whole.

Widths are terminal cells: East Asian wide characters count two. Timestamps are shown whole in
the one form the store holds (``2026-01-31T12:00:05.000000Z``), which ``--as-of``, ``--since`` and
SQL accept as they are.
Only text is laid out here; :func:`bflsync.cli.render.write_table` turns values into it and says which
columns are rigid. Only called on a terminal: piped tables stay plain and whole.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

SEPARATOR = "  "
MIN_FREE_TEXT = 8
"""Narrowest a free-text column gets (or its natural width, when that is less)."""
ELLIPSIS = "…"
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
_ESCAPE = re.compile("\x1b\\[[0-9]m")


@dataclass(frozen=True)
class Column:
    header: str
    texts: list[str]
    rigid: bool

    @property
    def natural(self) -> int:
        return max([cells(self.header), *(cells(text) for text in self.texts)])

    @property
    def narrowest(self) -> int:
        """The least width: rigid columns keep every value whole, headers may wrap after ``_``."""
        header = max(cells(part) for part in header_parts(self.header))
        if self.rigid:
            return max([header, *(cells(text) for text in self.texts)])
        return min(self.natural, max(header, MIN_FREE_TEXT))


def write_columns(columns: Sequence[Column], *, width: int, styled: bool = True) -> None:
    """Write the columns within ``width`` terminal cells, or as record blocks when they cannot fit.

    Unless ``styled``, headers are not bold nor the rule dim: no escape code at all.
    """
    widths = fit(columns, width=width)
    out = sys.stdout
    lines = blocks(columns) if widths is None else table_lines(columns, widths)
    out.writelines(lines if styled else [_ESCAPE.sub("", line) for line in lines])


def fit(columns: Sequence[Column], *, width: int) -> list[int] | None:
    """Column widths that fit, or None when even the narrowest do not.

    Free text gives way first (the widest column first); only then do the headers of rigid
    columns wrap after an underscore.
    """
    spacing = len(SEPARATOR) * (len(columns) - 1)
    natural = [column.natural for column in columns]
    narrowest = [column.narrowest for column in columns]
    for rigid in (natural, narrowest):
        widths = [rigid[index] if column.rigid else narrowest[index] for index, column in enumerate(columns)]
        if sum(widths) + spacing <= width:
            return _widen_free_text(columns, widths, natural, budget=width - spacing)
    return None


def _widen_free_text(
    columns: Sequence[Column], widths: list[int], natural: Sequence[int], *, budget: int
) -> list[int]:
    """Share what is left among free-text columns: the widest cap they can all be held to."""
    free = [index for index, column in enumerate(columns) if not column.rigid]
    fixed = sum(width for index, width in enumerate(widths) if index not in free)

    def capped(cap: int) -> list[int]:
        return [min(natural[index], max(cap, widths[index])) for index in free]

    cap = max([natural[index] for index in free], default=0)
    while cap > 0 and fixed + sum(capped(cap)) > budget:
        cap -= 1
    for index, width in zip(free, capped(cap), strict=True):
        widths[index] = width
    return widths


def table_lines(columns: Sequence[Column], widths: Sequence[int]) -> list[str]:
    wrapped = [wrap_header(column.header, width) for column, width in zip(columns, widths, strict=True)]
    height = max(len(lines) for lines in wrapped)
    lines = []
    for line in range(height):
        parts = [lines_[line] if line < len(lines_) else "" for lines_ in wrapped]
        lines.append(_BOLD + join(parts, widths) + _RESET + "\n")
    lines.append(_DIM + SEPARATOR.join("─" * width for width in widths) + _RESET + "\n")
    for row in range(len(columns[0].texts) if columns else 0):
        parts = [cut(column.texts[row], width) for column, width in zip(columns, widths, strict=True)]
        lines.append(join(parts, widths) + "\n")
    return lines


def blocks(columns: Sequence[Column]) -> list[str]:
    """One block of ``name  value`` lines per record, blank lines between, every value whole."""
    label = max((cells(column.header) for column in columns), default=0)
    lines: list[str] = []
    for row in range(len(columns[0].texts) if columns else 0):
        if row:
            lines.append("\n")
        for column in columns:
            name = column.header + " " * (label - cells(column.header))
            lines.append(f"{_BOLD}{name}{_RESET}{SEPARATOR}{column.texts[row]}".rstrip() + "\n")
    return lines


def join(parts: Sequence[str], widths: Sequence[int]) -> str:
    return SEPARATOR.join(pad(part, width) for part, width in zip(parts, widths, strict=True)).rstrip()


def header_parts(header: str) -> list[str]:
    """``last_changed_at`` -> ``last_``, ``changed_``, ``at``: where a header may wrap."""
    return re.findall(r"[^_]+_*|_+", header) or [header]


def wrap_header(header: str, width: int) -> list[str]:
    lines: list[str] = []
    for part in header_parts(header):
        if lines and cells(lines[-1]) + cells(part) <= width:
            lines[-1] += part
        else:
            lines.append(part)
    return [cut(line, width) for line in lines]


def cells(text: str) -> int:
    """Terminal cells ``text`` takes: wide and fullwidth characters two, combining marks none."""
    return sum(_char_cells(char) for char in text)


def _char_cells(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cut(text: str, width: int) -> str:
    """``text`` within ``width`` cells, ending in ``…`` when something was left out."""
    if cells(text) <= width:
        return text
    kept, used = [], 0
    for char in text:
        size = _char_cells(char)
        if used + size > width - 1:
            break
        kept.append(char)
        used += size
    return "".join(kept) + ELLIPSIS


def pad(text: str, width: int) -> str:
    return text + " " * (width - cells(text))

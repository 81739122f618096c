"""The case-folding tables ``~`` uses on PostgreSQL, computed from whatever Unicode this Python has."""

from __future__ import annotations

import unicodedata

from bflsync.text.casefold import Folding, fold_tables, lowercase_expansions


def scan_every_code_point() -> tuple[tuple[Folding, ...], tuple[Folding, ...], tuple[Folding, ...]]:
    """The tables by their definition, one code point at a time (slow, so here only)."""
    singles: list[Folding] = []
    expansions: list[Folding] = []
    lowercase: list[Folding] = []
    for code in range(0x110000):
        char = chr(code)
        lowered = char.lower()
        if len(lowered) > 1:
            lowercase.append((char, char.casefold()))
        if lowered != char:
            continue
        folded = char.casefold()
        if folded != char:
            (singles if len(folded) == 1 else expansions).append((char, folded))
    return tuple(singles), tuple(expansions), tuple(lowercase)


def test_the_tables_are_this_pythons_casefold_whatever_its_unicode_version() -> None:
    singles, expansions, lowercase = scan_every_code_point()
    assert fold_tables() == (singles, expansions), unicodedata.unidata_version
    assert lowercase_expansions() == lowercase, unicodedata.unidata_version


def test_the_tables_hold_the_foldings_people_type() -> None:
    singles, expansions = fold_tables()
    # long s, final sigma, micro sign; sharp s, the fi ligature, n preceded by apostrophe; dotted I
    assert {("\u017f", "s"), ("\u03c2", "\u03c3"), ("\xb5", "\u03bc")} <= set(singles)
    assert {("\xdf", "ss"), ("\ufb01", "fi"), ("\u0149", "\u02bcn")} <= set(expansions)
    assert lowercase_expansions() == (("\u0130", "i\u0307"),)

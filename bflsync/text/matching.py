"""``--text`` on both engines: words through the word index, runs of unspaced scripts as substrings.

FTS5's ``unicode61`` tokenizer splits on spaces and punctuation, which suits Latin, Greek or
Cyrillic text, but Chinese, Japanese, Thai and similar scripts do not put spaces between
words: a whole run (``日本の風景写真``) is one token, and ``日本`` matched nothing. So each word
of the search is planned on its own:

- a word in a spaced script goes to the word index ``finetune_fts`` as today (a quoted phrase,
  ``word*`` a prefix; diacritics and case folded);
- a word containing a character of an unspaced script is a substring: three characters or
  more are looked up in the trigram index ``finetune_fts_trigram``; one or two characters are
  too short for trigrams and are found by scanning the string values of the details (a cheap
  ``instr`` on the JSON text first, then the exact test over ``json_tree``).

All words must match (AND), as before. PostgreSQL follows the same :func:`plan` on copies of
the two indexes (``search_tsv`` and ``search_text``, see :mod:`bflsync.text.tokens`), so both
engines answer alike. Control characters (C0, DEL, C1) separate words on both. Everything the
user typed reaches SQL as a bound parameter. This module holds no SQLAlchemy: it returns SQL
text over the caller's column names, so any SQLite read path can use it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

from bflsync.errors import FilterError

WORD_INDEX = "finetune_fts"
TRIGRAM_INDEX = "finetune_fts_trigram"
TRIGRAM = 3
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Scripts written without spaces between words (Unicode character names start with these).
_UNSPACED_SCRIPTS = (
    "CJK",
    "HIRAGANA",
    "KATAKANA",
    "HALFWIDTH KATAKANA",
    "HANGUL",
    "THAI",
    "LAO",
    "KHMER",
    "MYANMAR",
    "TIBETAN",
    "BOPOMOFO",
    "IDEOGRAPHIC",
)


class TextPlan(NamedTuple):
    """How one ``--text`` value is searched, on either engine.

    ``words``: the words in spaced scripts, ``(word, is_prefix)``, for the word index (SQLite) or
    ``search_tsv`` (PostgreSQL); ``trigrams``: substrings of three characters or more, for the
    trigram index or ``search_text``; ``substrings``: shorter ones, scanned. A NamedTuple, not a
    dataclass: creating a dataclass costs a read process about a millisecond.
    """

    words: list[tuple[str, bool]]
    trigrams: list[str]
    substrings: list[str]


def terms(text: str) -> list[str]:
    """The words of ``--text``: separated by whitespace and by control characters (C0, DEL, C1).

    The one rule for both engines; a full-text engine would cut its query at a NUL.
    """
    return CONTROL.sub(" ", text).split()


def plan(text: str) -> TextPlan:
    """Split the user's words by how they can be found; FilterError when there is no word."""
    words: list[tuple[str, bool]] = []
    trigrams: list[str] = []
    substrings: list[str] = []
    for word in terms(text):
        if is_unspaced(word):
            needle = word.rstrip("*") or word
            (trigrams if len(needle) >= TRIGRAM else substrings).append(needle)
        else:
            words.append(word_term(word))
    if not (words or trigrams or substrings):
        raise FilterError("--text needs at least one word")
    return TextPlan(words=words, trigrams=trigrams, substrings=substrings)


def word_term(word: str) -> tuple[str, bool]:
    """A word as ``(word, is_prefix)``: ``word*`` is the prefix ``word``; a lone ``*`` is literal."""
    stem = word.rstrip("*")
    return (stem, True) if stem and stem != word else (word, False)


def fts5_query(words: list[tuple[str, bool]]) -> str:
    """Words as the word index's FTS5 query: each a quoted phrase (``word*`` a prefix), ANDed.

    Quoting every word means FTS5 operators (AND, OR, NEAR, ``:``, ``^``, parentheses) in the
    input are searched for as text, never interpreted.
    """
    return " ".join(_phrase(word) + ("*" if prefix else "") for word, prefix in words)


def is_unspaced(word: str) -> bool:
    """Whether ``word`` holds a character of a script written without spaces between words."""
    return any(ord(char) > 0x7F and unicodedata.name(char, "").startswith(_UNSPACED_SCRIPTS) for char in word)


def sqlite_condition(text: str, *, id_column: str, details_column: str) -> tuple[str, tuple[str, ...]]:
    """SQL (true for the matching rows) and its ``?`` parameters in order, over the given column expressions.

    ``id_column`` is the rowid both indexes are keyed on (``finetune.id``); ``details_column``
    the raw JSON, scanned for substrings too short for trigrams.
    """
    chosen = plan(text)
    parts: list[str] = []
    params: list[str] = []
    if chosen.words:
        parts.append(f"{id_column} IN (SELECT rowid FROM {WORD_INDEX} WHERE {WORD_INDEX} MATCH ?)")
        params.append(fts5_query(chosen.words))
    if chosen.trigrams:
        parts.append(f"{id_column} IN (SELECT rowid FROM {TRIGRAM_INDEX} WHERE {TRIGRAM_INDEX} MATCH ?)")
        params.append(" ".join(_phrase(needle) for needle in chosen.trigrams))
    for needle in chosen.substrings:
        exact = (
            f"CASE WHEN json_valid({details_column}) THEN EXISTS (SELECT 1 FROM json_tree({details_column})"
            " WHERE type = 'text' AND instr(value, ?) > 0) ELSE 0 END"
        )
        # The JSON text holds the needle as typed unless JSON escapes one of its characters.
        if any(char in needle for char in '"\\'):
            parts.append(f"({exact})")
        else:
            parts.append(f"(instr({details_column}, ?) > 0 AND {exact})")
            params.append(needle)
        params.append(needle)
    return " AND ".join(parts), tuple(params)


def _phrase(word: str) -> str:
    """A word as an FTS5 phrase: quoted, so FTS5 operators in the input are searched for as text."""
    return '"' + word.replace('"', '""') + '"'

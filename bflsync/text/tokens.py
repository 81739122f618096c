"""The words ``bflsync query --text`` searches, tokenised exactly as SQLite's FTS5 index does.

On SQLite, ``finetune_fts`` (revision ``0002_fts``) indexes every string value of a finetune's
details with FTS5's ``unicode61 remove_diacritics 2`` tokenizer. On PostgreSQL the same words
go into ``finetune.search_tsv``, a ``tsvector`` built here rather than by ``to_tsvector``:
PostgreSQL's parsers split and fold text by other rules (hyphenated words, e-mail addresses,
the database's locale), so the two engines would answer ``--text`` differently. Here each
character is classified and folded by asking SQLite's own FTS5 tokenizer once (cached), so the
lexemes and their positions are the ones FTS5 stores; :func:`tsquery_text` turns the user's
words into the query FTS5 would run, as a ``tsquery``. For substrings of unspaced scripts,
:func:`substring_text` is ``finetune.search_text``: the text SQLite's trigram index holds, folded
by asking SQLite's ``trigram`` tokenizer the same way.

What still differs, by PostgreSQL's limits: a token over 2,047 bytes is left out of the
``tsvector``, positions stop counting at 16,383 and at 256 per lexeme (a phrase match far into
a huge record can differ), and lexemes beyond about 1 MB per finetune are dropped.

Only the standard library (and :mod:`bflsync.text.matching`, the words of ``--text``): the PostgreSQL
write path and read path import this.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from bflsync.text import matching

# PostgreSQL's tsvector limits (MAXSTRLEN, MAXENTRYPOS, MAXNUMPOS, MAXSTRPOS less headroom).
MAX_LEXEME_BYTES: Final = 2047
MAX_POSITION: Final = 16383
MAX_POSITIONS_PER_LEXEME: Final = 256
MAX_TSVECTOR_BYTES: Final = 1_000_000

# ASCII is FTS5's fast path too: letters and digits are token characters, everything else separates.
_RUN = re.compile(r"[0-9A-Za-z\x80-\U0010ffff]+")
_PROBE_MARK = "q"


class _Fts5Characters:
    """How FTS5's unicode61 tokenizer treats each non-ASCII character: ``None`` separates words,
    a string (possibly empty: a dropped diacritic) is what the character folds to inside a word.

    FTS5 decides per code point from its own Unicode tables, which are older than Python's, so
    they are read from SQLite itself, once per character seen. One in-memory database serves
    every thread (the PostgreSQL write path runs in a worker thread), behind a lock.
    """

    def __init__(self, tokenizer: str) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._known: dict[str, str | None] = {}
        self._connection: sqlite3.Connection | None = None

    def fold(self, character: str) -> str | None:
        try:
            return self._known[character]
        except KeyError:
            pass
        with self._lock:
            if character not in self._known:
                self._known[character] = self._probe(character)
            return self._known[character]

    def _probe(self, character: str) -> str | None:
        if self._connection is None:
            self._connection = sqlite3.connect(":memory:", check_same_thread=False)
            self._connection.execute(
                f"CREATE VIRTUAL TABLE probe USING fts5(body, tokenize='{self._tokenizer}')"
            )
            self._connection.execute("CREATE VIRTUAL TABLE probe_terms USING fts5vocab(probe, 'instance')")
        connection = self._connection
        connection.execute("DELETE FROM probe")
        connection.execute(
            "INSERT INTO probe (rowid, body) VALUES (1, ?)", (_PROBE_MARK + character + _PROBE_MARK,)
        )
        terms = [term for (term,) in connection.execute("SELECT term FROM probe_terms ORDER BY offset")]
        if len(terms) != 1:
            return None
        return str(terms[0])[len(_PROBE_MARK) : -len(_PROBE_MARK)]


_CHARACTERS = _Fts5Characters("unicode61 remove_diacritics 2")
# The trigram tokenizer keeps every character and folds case (``case_sensitive 0``): one term per probe.
_TRIGRAM_CHARACTERS = _Fts5Characters("trigram")


def tokens(text: str) -> Iterator[str]:
    """The tokens FTS5 makes of ``text``, in order."""
    for run in _RUN.findall(text):
        if run.isascii():
            yield run.lower()
            continue
        word: list[str] = []
        for character in run:
            folded = character.lower() if character.isascii() else _CHARACTERS.fold(character)
            if folded is None:
                if word:
                    yield "".join(word)
                    word = []
            else:
                word.append(folded)
        if word:
            yield "".join(word)


def string_values(value: Any) -> Iterator[str]:
    """Every string value of a JSON value (keys excluded), in the order of its canonical JSON text.

    The order of ``json_tree`` over the stored details, which is what ``finetune_fts`` indexes;
    like ``json_tree``, a value ends at its first U+0000 (SQLite's text values stop there).
    """
    if isinstance(value, str):
        yield value.partition("\x00")[0]
    elif isinstance(value, Mapping):
        for key in sorted(value):
            yield from string_values(value[key])
    elif isinstance(value, list):
        for item in value:
            yield from string_values(item)


def details_tokens(details: Any) -> Iterator[str]:
    """The tokens ``finetune_fts`` holds for a finetune's details."""
    for text in string_values(details):
        yield from tokens(text)


def tsvector_text(details: Any) -> str:
    """``search_tsv`` for a finetune's details, as ``tsvector`` input text (lexemes with positions)."""
    positions: dict[str, list[int]] = {}
    size = 0
    position = 0
    for position, token in enumerate(details_tokens(details), start=1):
        if not token:
            continue  # a lone accent, emptied by remove_diacritics: no tsvector holds ''
        at = positions.get(token)
        if at is None:
            length = len(token.encode("utf-8")) if not token.isascii() else len(token)
            if length > MAX_LEXEME_BYTES or size + length > MAX_TSVECTOR_BYTES:
                continue
            size += length
            positions[token] = [position]
        elif len(at) < MAX_POSITIONS_PER_LEXEME:
            at.append(position)
    if position > MAX_POSITION:
        # Rare: only records of more than 16,383 words pay for clamping (and the duplicates it makes).
        positions = {
            token: list(dict.fromkeys(min(p, MAX_POSITION) for p in at)) for token, at in positions.items()
        }
    return " ".join(f"{_quoted(token)}:{','.join(map(str, at))}" for token, at in positions.items())


def trigram_fold(text: str) -> str:
    """``text`` case-folded as ``finetune_fts_trigram`` (FTS5's ``trigram`` tokenizer) folds it."""
    if text.isascii():
        return text.lower()
    return "".join(
        character.lower() if character.isascii() else (_TRIGRAM_CHARACTERS.fold(character) or character)
        for character in text
    )


def substring_text(details: Any) -> str:
    """``search_text`` for a finetune's details: the text ``finetune_fts_trigram`` indexes, case-folded.

    Every string value (to its first U+0000, as ``json_tree`` reads it) joined by a space, as
    revision 0007_fts_discoverable gathers them, and folded as the trigram tokenizer folds. A
    ``--text`` substring never holds a space, so it cannot match across two values.
    """
    return trigram_fold(" ".join(string_values(details)))


def tsquery_text(words: str) -> str | None:
    """The words of ``--text`` as ``tsquery`` input, every word read as a spaced-script word.

    The word part of :func:`bflsync.text.matching.plan`'s search, for the tests that compare it
    with FTS5's answer word by word.
    """
    return tsquery_of_terms([matching.word_term(word) for word in matching.terms(words)])


def tsquery_of_terms(terms: Sequence[tuple[str, bool]]) -> str | None:
    """``--text`` terms ``(word, is_prefix)`` as ``tsquery`` input, for ``search_tsv @@ CAST(:q AS tsquery)``.

    Each word is a phrase of its tokens (``<->``), a prefix word's last token a prefix (``:*``),
    and the phrases are ANDed: FTS5's reading of a quoted word. A word without tokens (``--``)
    is ignored, as FTS5 ignores an empty phrase beside others; None when no word has a token,
    which FTS5 answers with no match, and when a token is longer than ``search_tsv`` stores
    (:data:`MAX_LEXEME_BYTES`; PostgreSQL refuses it in a ``tsquery`` too): no record has it there. The text is cast, not given to ``to_tsquery``, whose
    parser would split and fold the words by PostgreSQL's rules instead of FTS5's.
    """
    phrases = []
    for word, prefix in terms:
        # FTS5 passes over an empty token (a lone accent) in a query; a tsquery cannot hold one.
        found = [token for token in tokens(word) if token]
        if any(len(token.encode("utf-8")) > MAX_LEXEME_BYTES for token in found):
            return None
        parts = [_quoted(token) for token in found]
        if not parts:
            continue
        if prefix:
            parts[-1] += ":*"
        phrases.append(" <-> ".join(parts) if len(parts) > 1 else parts[0])
    if not phrases:
        return None
    return _all_of([f"({phrase})" if " " in phrase else phrase for phrase in phrases])


def _all_of(operands: Sequence[str]) -> str:
    """``a & b & …`` as a balanced tree: PostgreSQL walks a tsquery recursively, and a chain of
    some 20,000 words (a long ``--text`` argument) exceeds its stack depth."""
    if len(operands) == 1:
        return operands[0]
    middle = len(operands) // 2
    halves = (_all_of(operands[:middle]), _all_of(operands[middle:]))
    return " & ".join(f"({half})" if " & " in half else half for half in halves)


def _quoted(lexeme: str) -> str:
    """A lexeme quoted for ``tsvector``/``tsquery`` input, which treats a backslash as an escape."""
    if "'" in lexeme or "\\" in lexeme:
        lexeme = lexeme.replace("\\", "\\\\").replace("'", "''")
    return f"'{lexeme}'"

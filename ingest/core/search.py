"""Search terms: the one tokenizer both databases index, and a reader's query as clauses over its tokens. Pure.

Both SQLite FTS5 and PostgreSQL's ``simple`` text search are given text already cut into ``[a-z0-9]+`` tokens
(accents folded, lower-cased) with spaces between, so both split it the same way and find the same stories.

A word joined by hyphens, slashes or dots ("HER2-positive", "PD-1", "CDK4/6") is indexed as its parts and as their
concatenation: ``her2 positive her2positive``. In a query such a word means its parts as a phrase, or the
concatenation: "PD-1" finds "PD-1", "PD 1" and "PD1", but not "PD-L1"; "pd1" finds "PD-1" too. Query syntax, as
PostgreSQL's ``websearch_to_tsquery`` reads it: words must all appear; ``or`` between two words takes either;
``-word`` leaves out what has it; a ``"quoted phrase"`` needs its words in that order.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_CLAUSES", "Clause", "search_query", "search_text"]

#: Clauses read from one query: a pasted paragraph stays cheap.
MAX_CLAUSES = 8
_CHUNK = re.compile(r'-?"[^"]*"?|\S+')
_PART = re.compile(r"[a-z0-9]+")

#: One clause of a query: (negated, alternatives); an alternative is one token or several (a phrase), space-joined.
Clause = tuple[bool, tuple[str, ...]]


def _fold(text: str) -> str:
    folded = text.casefold()
    if folded.isascii():  # nothing to decompose: the common case, and a character-by-character walk saved
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _parts(chunk: str) -> list[str]:
    return _PART.findall(chunk)


def search_text(text: str) -> str:
    """``text`` as the space-separated tokens the search index holds."""
    tokens: list[str] = []
    for chunk in _fold(text).split():
        if chunk.isalnum() and chunk.isascii():  # a plain word (most are): its own one token, no regex needed
            tokens.append(chunk)
            continue
        parts = _parts(chunk)
        tokens.extend(parts)
        if len(parts) > 1:
            tokens.append("".join(parts))
    return " ".join(tokens)


def _alternatives(chunk: str) -> tuple[str, ...]:
    parts = _parts(chunk)
    if len(parts) > 1:
        return (" ".join(parts), "".join(parts))
    return tuple(parts)


def search_query(text: str) -> tuple[Clause, ...]:
    """The clauses of a reader's query; empty when it has nothing to look for (no word, or only left-out words)."""
    clauses: list[Clause] = []
    pending_or = False
    for chunk in _CHUNK.findall(_fold(text)):
        if chunk == "or" and clauses and not clauses[-1][0]:
            pending_or = True
            continue
        negated = chunk.startswith("-") and len(chunk) > 1
        body = chunk[1:] if negated else chunk
        if body.startswith('"'):
            words = _parts(body)
            found: tuple[str, ...] = (" ".join(words),) if words else ()
        else:
            found = _alternatives(body)
        if not found:
            continue
        if pending_or and not negated:
            clauses[-1] = (False, clauses[-1][1] + found)
        else:
            clauses.append((negated, found))
        pending_or = False
    clauses = clauses[:MAX_CLAUSES]
    return tuple(clauses) if any(not negated for negated, _ in clauses) else ()

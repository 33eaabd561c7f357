"""Plain-text cleaning shared by every parser: entities, odd spaces, characters XML cannot carry; counts in words.

Pure functions on strings; no I/O. HTML sanitizing lives in :mod:`ingest.sanitize`.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime

# XML 1.0 section 2.2: Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
# Anything else (C0 controls, lone surrogates, U+FFFE/U+FFFF) breaks a feed, so it is replaced at ingest.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# C1 controls are legal XML but never meant in text; they arrive from cp1252 text read as latin-1.
_C1 = re.compile("[\x80-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
_WS = re.compile(r"\s+")

REPLACEMENT = "\ufffd"


def xml_safe(text: str) -> str:
    """Replace every character XML 1.0 cannot carry (and C1 controls) with U+FFFD."""
    return _C1.sub(REPLACEMENT, _NOT_XML.sub(REPLACEMENT, text))


def clean_line(text: str) -> str:
    """One line of human text as stored: entities decoded, odd spaces made plain, XML-safe, trimmed."""
    text = html.unescape(text)
    text = _ZERO_WIDTH.sub("", text)
    text = _SPACES.sub(" ", text)
    return xml_safe(text).strip()


def collapse(text: str) -> str:
    """Runs of whitespace, newlines included, become one space."""
    return _WS.sub(" ", text).strip()


def counted(count: int, singular: str, plural: str) -> str:
    """``1 story``, ``2 stories``, ``0 stories``: a count and its noun agreeing in number (English)."""
    return f"{count} {singular if count == 1 else plural}"


def html_datetime(value: datetime) -> str:
    """A moment for ``<time datetime>``: RFC 3339 as Python writes it, but with at most milliseconds (cut, not
    rounded), which is all HTML allows (a "valid global date and time string" takes 1 to 3 fractional digits; the
    six of a real clock make the page invalid)."""
    return value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def truncate_words(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, marking the cut."""
    text = collapse(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ellipsis) + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else cut[: limit - len(ellipsis)]
    return cut.rstrip(" ,;:.-–—") + ellipsis


_SENTENCE_END = re.compile(r"(?<=[a-z0-9\)\]\"'”’])[.!?](?=\s+[A-Z\"“‘(]|$)")


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph (abbreviations such as 'Dr.' may cut it early; titles are best effort)."""
    text = collapse(text)
    m = _SENTENCE_END.search(text)
    return text[: m.start()] if m else text.rstrip(".")


#: A tag is at most this long; an entry or a feed carries at most TAGS_MAX of them.
TAG_MAX_CHARS = 100
TAGS_MAX = 50


def normalize_tag(value: str) -> str:
    """One tag as stored and compared: cleaned like a line of text, spaces collapsed, lower case, capped."""
    return clean_line(" ".join(value.split())).lower()[:TAG_MAX_CHARS].strip()


def normalize_tags(values: Iterable[str], *, limit: int = TAGS_MAX) -> tuple[str, ...]:
    """Tags as stored: each :func:`normalize_tag`-ed, empty ones dropped, duplicates (``A`` and ``a``) once, first
    appearance first, at most ``limit``. The one normalisation for config, CLI, OPML and feed categories."""
    out: dict[str, None] = {}
    for value in values:
        tag = normalize_tag(str(value))
        if tag:
            out[tag] = None
            if len(out) >= limit:
                break
    return tuple(out)

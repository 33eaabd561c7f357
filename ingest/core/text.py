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


#: A derived headline: a first sentence up to this long is taken whole ([seeds] title_max_chars, feed entries too).
HEADLINE_CHARS = 120
#: Keys hashed before issue 14 included the title derived then (the first sentence cut at 90 characters): an item
#: without a headline of its own still hashes that title (:func:`key_title`), so that it keeps its key.
_KEY_TITLE_CHARS = 90
# Where a sentence may be cut into a headline: a colon, semicolon or comma, or a dash set apart by spaces, then a
# space and a word. An unspaced em dash usually opens an aside ("the regimen—trastuzumab, ...—has been") and is not.
_CLAUSE_END = re.compile(r"(?:[,;:]| [—–-])(?= \S)")
_OPENERS, _CLOSERS = "([{“", ")]}”"
_ELLIPSIS = "…"


def headline(text: str, limit: int = HEADLINE_CHARS) -> str:
    """A headline for a story that came without one, from its first paragraph: the first sentence when it is at most
    ``limit`` characters; else the sentence up to its last clause boundary within ``limit``, else up to its first
    one within one and a half times ``limit`` (a long headline, but a whole clause); else the sentence cut between
    two words before ``limit``, marked "…". A clause shorter than a third of ``limit`` is no headline ("Recap:")."""
    text = collapse(text)
    m = _SENTENCE_END.search(text)
    sentence = (text[: m.end()] if text[m.start()] in "?!" else text[: m.start()]) if m else text.rstrip(".")
    if len(sentence) <= limit:
        return sentence
    ends = [end for end in _clause_ends(sentence) if end >= limit // 3]
    within = [end for end in ends if end <= limit]
    if within:
        return sentence[: within[-1]]
    if ends and ends[0] <= limit * 3 // 2:
        return sentence[: ends[0]]
    return truncate_words(sentence, limit, _ELLIPSIS)


def _clause_ends(sentence: str) -> list[int]:
    """Where each clause of ``sentence`` ends, outside brackets and curly quotes."""
    ends: list[int] = []
    depth = 0
    boundaries = {m.start(): m for m in _CLAUSE_END.finditer(sentence)}
    for i, char in enumerate(sentence):
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth = max(depth - 1, 0)
        elif depth == 0 and i in boundaries:
            ends.append(i)
    return ends


def after_headline(title: str, text: str, *, derived: bool) -> str:
    """``text`` without the headline it begins with, so that a summary never repeats its story's title: from the
    next sentence on when the title is its whole first sentence; for a title ``derived`` from ``text``
    (:func:`headline`), "…" and the rest of the sentence it was a clause (or a cut) of. ``text`` unchanged otherwise
    (a real headline the summary goes on from: "Lung cancer, the big killer, ...")."""
    text = collapse(text)
    cut = title.endswith(_ELLIPSIS)
    stem = collapse(title.removesuffix(_ELLIPSIS) if cut else title)
    if not stem or not text.startswith(stem):
        return text
    rest = text[len(stem) :]
    if stem[-1] in ".?!" or rest[:1] in (".", "?", "!", ""):
        return rest.lstrip(".?! ")
    if not derived or not (cut or _CLAUSE_END.match(rest)):
        return text
    rest = rest.lstrip(" ,;:—–-")
    return _ELLIPSIS + rest if rest else ""


def key_title(text: str) -> str:
    """The title an item derived from ``text`` was keyed by before issue 14 (see _KEY_TITLE_CHARS)."""
    return truncate_words(first_sentence(text), _KEY_TITLE_CHARS)


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

"""The raw records every reader of a feed fills in (feedparser, the fast path, JSON Feed) before normalization.

Plain data only: no parsing and no imports of the parsers, so each of them can import these without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/html", "application/xhtml+xml"})


@dataclass(slots=True)
class Text:
    value: str
    type: str  # text/plain, text/html or application/xhtml+xml
    base: str | None = None


@dataclass(slots=True)
class RawEntry:
    """An entry as feedparser would describe it, before our normalization."""

    id: str | None = None
    link: str | None = None
    title: Text | None = None
    summary: Text | None = None
    content: Text | None = None
    published: str | None = None
    published_parsed: datetime | None = None
    updated: str | None = None
    updated_parsed: datetime | None = None
    author: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RawFeed:
    version: str
    title: Text | None = None
    link: str | None = None
    ttl: str | None = None
    entries: list[RawEntry] = field(default_factory=list)
    problem: str | None = None  # why the document is not well-formed, when it is not
    cut_fields: int = 0  # fields whose text was over its raw cap and cut before parsing (prolog.cap_fields)
    fast: bool = False  # which path produced it (for tests and the benchmark)

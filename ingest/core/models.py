"""Frozen records that travel between stages. A parser's dict or a database row never leaves its module.

- :class:`ParsedItem`: one appearance of an item as a parser saw it (a page's article or teaser, a feed entry).
- :class:`Source`, :class:`Sighting`, :class:`Story`: what the store holds, as read back from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ItemKind = Literal["article", "teaser", "entry"]
SourceKind = Literal["page", "feed"]
#: A source's state (README "Feeds"): a seed page is active or error; a feed any of the others.
SourceStatus = Literal["active", "failing", "gone", "empty", "not_a_feed", "error", "removed"]
#: A digest: pending (delivering), sent, skipped (too late to send), empty (no story).
DigestStatus = Literal["pending", "sent", "skipped", "empty"]
#: A delivery: pending (due or waiting for a retry), sending (claimed, under a lease), sent, failed, cancelled.
DeliveryStatus = Literal["pending", "sending", "sent", "failed", "cancelled"]
SubscriberStatus = Literal["pending", "confirmed", "unsubscribed", "bounced"]


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """One raw appearance of an item, before it is stored as a sighting."""

    kind: ItemKind
    key: str  # stable within its source: the same item parsed again gets the same key
    position: int  # 0 for a page's article, 1.. along a page's rail or down a feed
    title: str
    published: datetime | None  # timezone-aware, or None when the source gave no usable date
    summary: str  # plain text: a teaser's blurb, an article's standfirst, a feed entry's summary
    content: str = ""  # sanitized HTML of the full body when known
    link: str | None = None
    author: str | None = None
    tags: tuple[str, ...] = ()
    title_derived: bool = False  # True when the title was made from the first sentence
    raw_date: str | None = None  # the date exactly as written


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """A seed page: its article (None when the page holds only a rail) and its teasers."""

    article: ParsedItem | None
    teasers: tuple[ParsedItem, ...]
    warnings: tuple[str, ...] = ()

    @property
    def items(self) -> tuple[ParsedItem, ...]:
        return ((self.article,) if self.article else ()) + self.teasers


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    kind: SourceKind
    location: str  # a page's absolute path, or a feed's URL as configured
    name: str | None
    status: SourceStatus
    last_error: str | None
    content_hash: str | None
    sightings: int = 0
    folder: str | None = None
    url: str | None = None  # a feed's current URL (after a permanent redirect)
    tags: tuple[str, ...] = ()
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_status: int | None = None
    error_count: int = 0
    next_check_at: datetime | None = None
    warning: str | None = None
    interval: int | None = None
    origin: str = "config"
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Sighting:
    id: int
    source_id: int
    source_location: str
    kind: ItemKind
    key: str
    position: int
    title: str
    published: datetime | None
    summary: str
    content: str
    link: str | None
    tags: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    story_id: int | None
    title_derived: bool = False
    match_rule: str | None = None
    match_score: float | None = None


@dataclass(frozen=True, slots=True)
class Story:
    id: int
    uid: str  # tag: URI minted at creation, never changed
    title: str
    summary: str
    content: str
    link: str | None
    published: datetime | None
    first_seen: datetime
    updated: datetime
    tags: tuple[str, ...]
    sightings: int = 0
    sources: tuple[str, ...] = field(default=())

    @property
    def is_recap(self) -> bool:
        return "recap" in self.tags


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one ingest pass did to one source, for the per-source line the CLI prints and the service's log line."""

    location: str
    new: int = 0
    seen: int = 0
    new_stories: int = 0
    unchanged: bool = False
    error: str | None = None
    warning: str | None = None

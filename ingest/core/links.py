"""Every public URL and permanent id the service mints, in one place: pages, feeds, digests, subscriber links,
and the tag: URIs of stories. Pure string building from ``[publish]``; no I/O, no clock (dates are passed in).

The web routes answer at exactly these paths (``newsletter.web``); nothing else builds them.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ingest.core.text import xml_safe

if TYPE_CHECKING:  # for annotations only: the CLI imports this module on every start, pydantic only when it must
    from ingest.core.config import PublishConfig
    from ingest.core.models import Story

__all__ = [
    "DEFAULT_UID_AUTHORITY",
    "MAX_ID",
    "base_url",
    "confirm_url",
    "digest_url",
    "digests_url",
    "entry_link",
    "feed_url",
    "is_row_id",
    "is_web_link",
    "mint_uid",
    "parse_row_id",
    "preferences_url",
    "site_root",
    "story_url",
    "uid_authority",
    "unsubscribe_url",
]

#: The tagging authority of story ids when the config names none (RFC 2606 reserves .invalid).
DEFAULT_UID_AUTHORITY = "feed-newsletter.invalid"
#: The largest row id on both engines: PostgreSQL's INTEGER is 32-bit (SQLite's is 64). An id from a URL, a token or
#: an argument outside 1..MAX_ID names nothing; handed to a query it is an overflow error (a 500), not "not found".
MAX_ID = 2**31 - 1


def is_row_id(value: int) -> bool:
    """Whether ``value`` can be the id of a stored row (story, subscriber, source)."""
    return 1 <= value <= MAX_ID


def parse_row_id(text: str) -> int | None:
    """The row id ``text`` spells (ASCII digits, no sign, no leading zero), or None when it cannot be one."""
    if not (0 < len(text) <= len(str(MAX_ID)) and text.isascii() and text.isdigit()) or text[0] == "0":
        return None
    value = int(text)
    return value if is_row_id(value) else None


def base_url(config: PublishConfig) -> str:
    """``[publish] base_url`` ending in ``/``, so relative paths join under it rather than beside it."""
    url = config.base_url.strip()
    return url if url.endswith("/") else url + "/"


def site_root(config: PublishConfig) -> str:
    """The path our pages live under (``/`` unless the site sits in a folder of its host)."""
    path = urlsplit(base_url(config)).path
    return path if path.endswith("/") else path + "/"


def feed_url(config: PublishConfig, path: str) -> str:
    """A published document (``feed.atom``, ``tags/x.atom``, ``archive/3.atom``) by its path."""
    return base_url(config) + path


def story_url(config: PublishConfig, story_id: int) -> str:
    """A story's own page on our site."""
    return f"{base_url(config)}stories/{story_id}"


def is_web_link(link: str | None) -> bool:
    """An absolute http(s) URL without spaces or characters XML cannot carry: safe to print as a link out."""
    text = (link or "").strip()
    return (
        text.lower().startswith(("http://", "https://"))
        and text == xml_safe(text)
        and not any(c.isspace() for c in text)
    )


def entry_link(config: PublishConfig, story: Story) -> str:
    """Where an entry points: the story's own link when it is http(s), else its page on our site
    (``javascript:``, ``data:`` and broken URLs point to our page instead)."""
    link = (story.link or "").strip()
    return link if is_web_link(link) else story_url(config, story.id)


def digests_url(config: PublishConfig) -> str:
    return f"{base_url(config)}digests/"


def digest_url(config: PublishConfig, period: str) -> str:
    """A past digest's page (``period`` such as ``2026-W48``)."""
    return f"{base_url(config)}digests/{period}"


def preferences_url(config: PublishConfig, token: str) -> str:
    """A subscriber's "manage preferences" page: topics, unsubscribe."""
    return f"{base_url(config)}preferences/{token}"


def unsubscribe_url(config: PublishConfig, token: str) -> str:
    """The page with the unsubscribe button, and the RFC 8058 one-click POST target."""
    return f"{base_url(config)}unsubscribe/{token}"


def confirm_url(config: PublishConfig, token: str) -> str:
    return f"{base_url(config)}confirm/{token}"


def uid_authority(config: PublishConfig) -> str:
    """The tagging authority of new stories' ids: that of ``[publish] id`` when it is a tag: URI, else our host."""
    feed_id = config.id
    if feed_id.startswith("tag:") and "," in feed_id:
        return feed_id[4:].split(",", 1)[0]
    return urlsplit(config.base_url).hostname or DEFAULT_UID_AUTHORITY


def mint_uid(authority: str, created: datetime) -> str:
    """A tag: URI (RFC 4151) for a new story: the authority, the creation date and a random part. Never changes."""
    return f"tag:{authority},{created:%Y-%m-%d}:story:{secrets.token_hex(8)}"

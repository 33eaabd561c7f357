"""JSON Feed 1.0 and 1.1, read with :mod:`json` (feedparser 6.0 does not read it) into the raw records."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from feedparser.urls import _urljoin

from ingest.parse.adapter import feed_date
from ingest.parse.normalize import (
    RAW_AUTHOR_MAX,
    RAW_BODY_MAX,
    RAW_FIELD_MAX,
    ParsedFeed,
    content_type_note,
    failed,
)
from ingest.parse.raw import RawEntry, RawFeed, Text

_JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "http://jsonfeed.org/version/1")


def looks_like_json(body: bytes) -> bool:
    # By the body, not the content-type: servers label RSS as application/json and JSON Feeds as text/plain.
    return body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"{", b"[")


def parse_json_feed(body: bytes, *, url: str, content_type: str) -> RawFeed | ParsedFeed:
    """The raw records of a JSON Feed, or the ParsedFeed that says why the body is not one."""
    try:
        doc = json.loads(body.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError):
        return failed("not_a_feed", f"{url}: not a feed (the body is not valid JSON{content_type_note(content_type)})")
    version = doc.get("version") if isinstance(doc, dict) else None
    if not (isinstance(version, str) and version.startswith(_JSON_FEED_VERSIONS)):
        return failed("not_a_feed", f"{url}: not a feed (JSON, but not a JSON Feed: no jsonfeed.org version)")
    raw = RawFeed(version="json1")
    cap = _Caps()
    title = cap(doc.get("title"), RAW_FIELD_MAX)
    raw.title = Text(title, "text/plain") if title is not None else None
    raw.link = _json_url(cap(doc.get("home_page_url"), RAW_FIELD_MAX), url)
    items = doc.get("items")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            raw.entries.append(_json_entry(item, url, cap))
    raw.cut_fields = cap.cuts
    return raw


class _Caps:
    """A string field cut to its raw cap (as prolog.cap_fields cuts XML, in characters here) before any regex of the
    date parser or the URL joiner reads it; anything but a string is None. Counts the cuts."""

    def __init__(self) -> None:
        self.cuts = 0

    def __call__(self, value: object, limit: int) -> str | None:
        if not isinstance(value, str):
            return None
        if len(value) > limit:
            self.cuts += 1
            return value[:limit]
        return value


def _json_url(value: str | None, base: str) -> str | None:
    if not value or not value.strip():
        return None
    return str(_urljoin(base, value.strip()))


def _json_entry(item: Mapping[str, Any], base: str, cap: _Caps) -> RawEntry:
    raw = RawEntry()
    item_id = item.get("id")
    if isinstance(item_id, str | int | float) and not isinstance(item_id, bool):
        raw.id = cap(str(item_id), RAW_FIELD_MAX)
    raw.link = _json_url(cap(item.get("url"), RAW_FIELD_MAX), base) or _json_url(
        cap(item.get("external_url"), RAW_FIELD_MAX), base
    )
    title = cap(item.get("title"), RAW_FIELD_MAX)
    raw.title = Text(title, "text/plain") if title is not None else None
    if (html := cap(item.get("content_html"), RAW_BODY_MAX)) is not None:
        raw.content = Text(html, "text/html", base)
    elif (text := cap(item.get("content_text"), RAW_BODY_MAX)) is not None:
        raw.content = Text(text, "text/plain", base)
    if (summary := cap(item.get("summary"), RAW_BODY_MAX)) is not None:
        raw.summary = Text(summary, "text/plain", base)
    elif raw.content is not None:
        raw.summary = raw.content
    for key, attr in (("date_published", "published"), ("date_modified", "updated")):
        value = cap(item.get(key), RAW_FIELD_MAX)
        if value is not None:
            setattr(raw, attr, value)
            setattr(raw, f"{attr}_parsed", feed_date(value))
    authors = item.get("authors")
    if not isinstance(authors, list):
        authors = [item.get("author")]  # JSON Feed 1.0
    for author in authors:
        if isinstance(author, Mapping) and (name := cap(author.get("name"), RAW_AUTHOR_MAX)) is not None:
            raw.author = name
            break
    raw_tags = item.get("tags")
    tags = raw_tags if isinstance(raw_tags, list) else []
    raw.tags = [t for t in (cap(t, RAW_FIELD_MAX) for t in tags) if t is not None]
    return raw

"""JSON Feed 1.0 and 1.1, read with :mod:`json` (feedparser 6.0 does not read it) into the raw records."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from feedparser.urls import _urljoin

from ingest.parse.adapter import feed_date
from ingest.parse.normalize import ParsedFeed, content_type_note, failed, finish
from ingest.parse.raw import RawEntry, RawFeed, Text

_JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "http://jsonfeed.org/version/1")


def looks_like_json(body: bytes) -> bool:
    # By the body, not the content-type: servers label RSS as application/json and JSON Feeds as text/plain.
    return body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"{", b"[")


def parse_json_feed(body: bytes, *, url: str, content_type: str, tags: Sequence[str]) -> ParsedFeed:
    try:
        doc = json.loads(body.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError):
        return failed("not_a_feed", f"{url}: not a feed (the body is not valid JSON{content_type_note(content_type)})")
    version = doc.get("version") if isinstance(doc, dict) else None
    if not (isinstance(version, str) and version.startswith(_JSON_FEED_VERSIONS)):
        return failed("not_a_feed", f"{url}: not a feed (JSON, but not a JSON Feed: no jsonfeed.org version)")
    raw = RawFeed(version="json1")
    title = doc.get("title")
    raw.title = Text(title, "text/plain") if isinstance(title, str) else None
    raw.link = _json_url(doc.get("home_page_url"), url)
    items = doc.get("items")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            raw.entries.append(_json_entry(item, url))
    return finish(raw, url=url, content_type=content_type, body=body, tags=tags)


def _json_url(value: object, base: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return str(_urljoin(base, value.strip()))


def _json_entry(item: Mapping[str, Any], base: str) -> RawEntry:
    raw = RawEntry()
    item_id = item.get("id")
    if isinstance(item_id, str | int | float) and not isinstance(item_id, bool):
        raw.id = str(item_id)
    raw.link = _json_url(item.get("url"), base) or _json_url(item.get("external_url"), base)
    title = item.get("title")
    raw.title = Text(title, "text/plain") if isinstance(title, str) else None
    if isinstance(item.get("content_html"), str):
        raw.content = Text(item["content_html"], "text/html", base)
    elif isinstance(item.get("content_text"), str):
        raw.content = Text(item["content_text"], "text/plain", base)
    if isinstance(item.get("summary"), str):
        raw.summary = Text(item["summary"], "text/plain", base)
    elif raw.content is not None:
        raw.summary = raw.content
    for key, attr in (("date_published", "published"), ("date_modified", "updated")):
        value = item.get(key)
        if isinstance(value, str):
            setattr(raw, attr, value)
            setattr(raw, f"{attr}_parsed", feed_date(value))
    authors = item.get("authors")
    if not isinstance(authors, list):
        authors = [item.get("author")]  # JSON Feed 1.0
    for author in authors:
        if isinstance(author, Mapping) and isinstance(author.get("name"), str):
            raw.author = author["name"]
            break
    raw_tags = item.get("tags")
    raw.tags = [t for t in raw_tags if isinstance(t, str)] if isinstance(raw_tags, list) else []
    return raw

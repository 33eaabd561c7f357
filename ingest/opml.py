"""OPML subscription lists: read with listparser, written as OPML 2.0 with the standard library's ElementTree.

listparser, like feedparser, fetches a URL when handed a string: it only ever receives bytes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.etree import ElementTree as ET

import listparser

from ingest.core.errors import UsageError
from ingest.core.text import normalize_tags, xml_safe

MAX_OPML_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    url: str
    title: str | None
    tags: tuple[str, ...]


def read_opml(data: bytes, *, name: str) -> list[OpmlFeed]:
    """The feeds listed in an OPML document (folders become tags). Raises :class:`UsageError` if it is not OPML."""
    if len(data) > MAX_OPML_BYTES:
        raise UsageError(f"{name}: {len(data):,} bytes is too large for an OPML file (at most {MAX_OPML_BYTES:,})")
    if not data.strip():
        raise UsageError(f"{name}: the file is empty, expected an OPML document")
    result = listparser.parse(bytes(data))
    feeds = result.get("feeds") or []
    if not feeds and (result.get("bozo") or result.get("version") == ""):
        raise UsageError(f"{name}: not an OPML subscription list (no <outline xmlUrl=...> found)")
    out = []
    for feed in feeds:
        tags = normalize_tags(str(t) for t in feed.get("tags", ()))
        title = str(feed.get("title") or "").strip() or None
        out.append(OpmlFeed(url=str(feed.get("url", "")), title=title, tags=tags))
    return out


def write_opml(feeds: Sequence[OpmlFeed], *, title: str, now: datetime) -> bytes:
    """An OPML 2.0 document listing ``feeds`` (tags written as the ``category`` attribute)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = xml_safe(title)
    ET.SubElement(head, "dateCreated").text = format_datetime(now)
    body = ET.SubElement(root, "body")
    for feed in feeds:
        text = xml_safe(feed.title or feed.url)
        attrs = {"type": "rss", "text": text, "title": text, "xmlUrl": feed.url}
        if feed.tags:
            attrs["category"] = ",".join(xml_safe(t) for t in feed.tags)
        ET.SubElement(body, "outline", attrs)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"

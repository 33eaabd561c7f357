"""feedparser run on a guarded body, and its dicts turned into the raw records; no feedparser dict leaves this module.

Also feedparser's date parser, which the fast path and JSON Feed use to read dates exactly as feedparser does.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import feedparser
from feedparser.datetimes import _parse_date
from feedparser.namespaces import _base as _fp_base

from ingest.parse.raw import TEXT_TYPES, RawEntry, RawFeed, Text

# RSS reads a <guid> without isPermaLink="false" as the item's link, and feedparser joins it with the base URL
# first, so <guid>same</guid> becomes the link "<feed URL>/same". A guid is a link only when the feed wrote an
# absolute http(s) URL (written_as_url), and feedparser keeps no trace of what was written: this hook keeps it, in
# the entry (or feed) under _WRITTEN_GUID. The joined value stays the entry's id, as ever (the store's keys).
_WRITTEN_GUID = "feed_newsletter_written_guid"
_feedparser_end_guid = _fp_base.Namespace._end_guid


def _end_guid_keeping_what_was_written(self: Any) -> None:
    stack = self.elementstack
    written = "".join(stack[-1][2]).strip() if stack and stack[-1][0] == "id" else ""
    _feedparser_end_guid(self)
    self._get_context()[_WRITTEN_GUID] = written


_fp_base.Namespace._end_guid = _fp_base.Namespace._end_id = _end_guid_keeping_what_was_written


def written_as_url(value: str | None) -> bool:
    """Whether a guid, as the feed wrote it, is an absolute http(s) URL (and so may be the entry's link)."""
    if not value:
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def with_feedparser(data: bytes, headers: Mapping[str, str], *, sanitize: bool) -> RawFeed:
    try:
        # A stream, never bytes or str: feedparser tries open() on both first, so b"/etc/passwd" would be read.
        parsed = feedparser.parse(
            io.BytesIO(data),
            response_headers=dict(headers),
            sanitize_html=sanitize,
            resolve_relative_uris=sanitize,
        )
    except Exception as crash:  # a parser crash on hostile bytes is a state of the source, not a bug of ours
        return RawFeed(version="", problem=f"the parser failed ({type(crash).__name__}: {crash})")
    problem = None
    if _get(parsed, "bozo"):
        bozo = _get(parsed, "bozo_exception")
        # A wrong content-type or a charset the body contradicts is common and harmless: not worth a warning.
        if type(bozo).__name__ not in ("NonXMLContentType", "CharacterEncodingOverride"):
            problem = _describe_bozo(bozo)
    fd = _get(parsed, "feed") or {}
    raw = RawFeed(
        version=str(_get(parsed, "version") or ""),
        title=_fp_text(fd, "title"),
        link=_link(fd),
        ttl=_str(_get(fd, "ttl")),
        problem=problem,
    )
    for entry in _get(parsed, "entries") or ():
        if isinstance(entry, Mapping):
            raw.entries.append(_from_feedparser_entry(entry))
    return raw


def _describe_bozo(exc: object) -> str:
    if exc is None:
        return "the document has errors"
    name = type(exc).__name__
    if name in ("SAXParseException", "ExpatError"):
        return f"not well-formed XML ({exc})"
    if name == "CharacterEncodingUnknown":
        return "its character encoding could not be determined"
    return f"{exc}" or name


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _get(d: Mapping[str, Any], key: str) -> Any:
    # FeedParserDict.get maps some missing keys onto others ("updated" onto "published", with a DeprecationWarning);
    # we want exactly what the parser stored.
    return dict.get(d, key) if isinstance(d, dict) else d.get(key)


def _fp_text(d: Mapping[str, Any], key: str) -> Text | None:
    value = _get(d, key)
    if not isinstance(value, str):
        return None
    detail = _get(d, f"{key}_detail")
    if isinstance(detail, Mapping) and _get(detail, "value") == value:
        return Text(value, str(_get(detail, "type") or "text/plain"), _str(_get(detail, "base")))
    return Text(value, "text/html")


def _from_feedparser_entry(e: Mapping[str, Any]) -> RawEntry:
    raw = RawEntry(
        id=_str(_get(e, "id")),
        link=_link(e),
        title=_fp_text(e, "title"),
        published=_str(_get(e, "published")),
        published_parsed=_struct_to_datetime(_get(e, "published_parsed")),
        updated=_str(_get(e, "updated")),
        updated_parsed=_struct_to_datetime(_get(e, "updated_parsed")),
    )
    contents = [c for c in _get(e, "content") or () if isinstance(c, Mapping) and isinstance(_get(c, "value"), str)]
    usable = [c for c in contents if str(_get(c, "type") or "") in TEXT_TYPES]
    if usable:
        c = usable[0]
        raw.content = Text(c["value"], str(_get(c, "type")), _str(_get(c, "base")))
    summary = _get(e, "summary")
    if isinstance(summary, str):
        detail = _get(e, "summary_detail")
        if isinstance(detail, Mapping) and _get(detail, "value") == summary:
            raw.summary = Text(summary, str(_get(detail, "type") or "text/plain"), _str(_get(detail, "base")))
        else:  # copied from the content by feedparser, which then keeps no detail of its own
            same = next((c for c in contents if _get(c, "value") == summary), None)
            raw.summary = (
                Text(summary, str(_get(same, "type")), _str(_get(same, "base"))) if same else Text(summary, "text/html")
            )
    detail = _get(e, "author_detail")
    name = _get(detail, "name") or _get(detail, "email") if isinstance(detail, Mapping) else None
    raw.author = _str(name) or _str(_get(e, "author"))
    for tag in _get(e, "tags") or ():
        if isinstance(tag, Mapping) and isinstance(_get(tag, "term"), str):
            raw.tags.append(tag["term"])
    return raw


def _link(d: Mapping[str, Any]) -> str | None:
    """The entry's (or feed's) link, unless feedparser took it from a guid the feed did not write as a URL."""
    link = _str(_get(d, "link"))
    links = _get(d, "links") or ()
    from_guid = (
        _get(d, "guidislink")
        and link == _get(d, "id")
        and not any(isinstance(x, Mapping) and _get(x, "href") == link for x in links)
    )
    return None if from_guid and not written_as_url(_str(_get(d, _WRITTEN_GUID))) else link


def _struct_to_datetime(value: object) -> datetime | None:
    if not isinstance(value, tuple) or len(value) < 6:
        return None
    try:
        year, month, day, hour, minute, second = (int(v) for v in value[:6])
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def feed_date(text: str | None) -> datetime | None:
    """A date in any form feedparser reads, as an aware UTC datetime; None when it cannot be read."""
    if not text:
        return None
    try:
        return _struct_to_datetime(_parse_date(text))
    except Exception:  # feedparser's date handlers raise more than they catch on odd input
        return None

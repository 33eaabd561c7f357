"""Feed bodies parsed into :class:`ParsedFeed` records: the only module that imports feedparser.

Bytes and the response headers in, frozen records out; no I/O, no clock. RSS 0.9x, 1.0 and 2.0 and Atom 0.3 and
1.0 go through feedparser, JSON Feed 1.0 and 1.1 through :mod:`json` (feedparser 6.0 does not read it).

Three things happen before any parser sees the body:

- it is decoded to UTF-8 the way feedparser would decode it (HTTP charset, BOM, XML declaration, fallbacks);
- any DOCTYPE internal subset is removed: feedparser keeps "safe" entity declarations, and a 40 KB feed whose title
  repeats one big entity ("quadratic blowup") expands to hundreds of megabytes;
- numeric character references to characters that cannot exist (lone surrogates, beyond U+10FFFF) are replaced,
  because feedparser's lenient parser crashes on them.

Speed: feedparser spends most of its time in its own HTML sanitizer and relative-URI resolver, and the rest in a
Python callback per chunk of text. HTML is sanitized by :mod:`ingest.sanitize` (nh3) anyway, so feedparser runs with
both turned off, and a well-formed RSS 2.0 or Atom 1.0 document takes a fast path: :mod:`xml.etree.ElementTree`
builds the tree in C, and :func:`_FastPath` reads it the way feedparser would, using feedparser's own helpers for
dates, URL joining and its text fix-ups (feedparser 6.0 internals, pinned by ``feedparser>=6,<7``). Anything the
fast path does not reproduce exactly (an element it does not know, a field given twice, an encoding quirk) sends the
whole document to feedparser. ``tests/test_parse.py`` checks that both paths give the same entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import re
import xml.etree.ElementTree as ET
import xml.sax.saxutils
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NoReturn
from urllib.parse import quote, urlsplit

import feedparser
from feedparser.datetimes import _parse_date
from feedparser.encodings import convert_to_utf8
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.sanitizer import RE_ENTITY_PATTERN
from feedparser.urls import _urljoin, make_safe_absolute_uri

from ingest.core.models import ParsedItem
from ingest.core.text import clean_line, collapse, first_sentence, normalize_tags, truncate_words, xml_safe
from ingest.sanitize import html_to_text, sanitize_html, text_of_sanitized

FeedKind = Literal["feed", "empty", "not_a_feed"]

# Per-field caps: a hostile or broken feed gets truncated fields, never a failure.
TITLE_MAX = 1_000
SUMMARY_MAX = 10_000
CONTENT_MAX = 200_000
LINK_MAX = 2_000
AUTHOR_MAX = 500
KEY_MAX = 1_000
TAGS_PER_ENTRY = 50
DERIVED_TITLE_MAX = 90  # a title made from the summary's first sentence, as for seed pages
# The text we feed to nh3 is cut first: a summary of 10,000 characters needs no more than this much HTML.
_TEXT_INPUT_MAX = 100_000
_HTML_INPUT_MAX = 2 * CONTENT_MAX
# A date outside these years is a typo or a placeholder (0001-01-01, 9999-12-31): the store uses first seen.
YEAR_MIN = 1990
YEAR_MAX = 2100
TTL_MAX_MINUTES = 366 * 24 * 60

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_TYPES = frozenset({"text/plain", "text/html", "application/xhtml+xml"})
_JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "http://jsonfeed.org/version/1")


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """One fetched body, parsed: its entries as :class:`ParsedItem` (``kind="entry"``, positions 1.. in feed order)."""

    kind: FeedKind
    title: str | None
    link: str | None
    items: tuple[ParsedItem, ...]
    ttl: int | None  # RSS <ttl> in minutes
    warning: str | None  # the feed had a defect (not well-formed, repeated ids); its entries were recovered anyway
    error: str | None  # for not_a_feed and empty: what is wrong, for a person, naming the URL
    duplicates: int = 0  # entries dropped because an earlier entry of the same feed had the same key


def parse_feed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    tags: Sequence[str] = (),
) -> ParsedFeed:
    """Parse one fetched body; never raises for what is in ``body``.

    ``url`` names the feed in messages and is the base of relative links, and of relative guids too: feedparser
    reads a guid without ``isPermaLink="false"`` as a URL, so "123" becomes "<url>/123". Pass the source's current
    URL (the one a 301 adopted), not a temporary redirect's target, or such keys change with the redirect.
    ``headers`` are the response headers (any case; Content-Type's charset is used, Content-Location is not).
    ``tags`` are added to every entry's own categories."""
    return _parse(body, url=url, headers=headers, tags=tags, engine="auto")


Engine = Literal["auto", "feedparser", "feedparser_defaults"]


def _parse(body: bytes, *, url: str, headers: Mapping[str, str], tags: Sequence[str], engine: Engine) -> ParsedFeed:
    """``engine``: ``auto`` (fast path, else feedparser), ``feedparser`` (never the fast path) or
    ``feedparser_defaults`` (feedparser with its own sanitizer and resolver on; the reference the tests compare to)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if not body.strip(b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"):
        return _failed("empty", f"{url}: empty response (the server sent {len(body)} bytes and no feed)")
    if _looks_like_json(body):
        return _parse_json_feed(body, url=url, content_type=content_type, tags=tags)
    lowered["content-location"] = url
    raw = _parse_xml(body, url=url, headers=lowered, engine=engine)
    return _finish(raw, url=url, content_type=content_type, body=body, tags=tags)


# --- XML: decoding, the DOCTYPE guard, then the fast path or feedparser --------------------------------------------


@dataclass(slots=True)
class _Text:
    value: str
    type: str  # text/plain, text/html or application/xhtml+xml
    base: str | None = None


@dataclass(slots=True)
class _RawEntry:
    """An entry as feedparser would describe it, before our normalization."""

    id: str | None = None
    link: str | None = None
    title: _Text | None = None
    summary: _Text | None = None
    content: _Text | None = None
    published: str | None = None
    published_parsed: datetime | None = None
    updated: str | None = None
    updated_parsed: datetime | None = None
    author: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _RawFeed:
    version: str
    title: _Text | None = None
    link: str | None = None
    ttl: str | None = None
    entries: list[_RawEntry] = field(default_factory=list)
    problem: str | None = None  # why the document is not well-formed, when it is not
    fast: bool = False  # which path produced it (for tests and the benchmark)


def _parse_xml(body: bytes, *, url: str, headers: dict[str, str], engine: Engine) -> _RawFeed:
    if engine == "feedparser_defaults":
        data, fp_headers = _strip_internal_subset(body), headers
    else:
        data, fp_headers = _to_utf8(body, headers)
        data = _strip_internal_subset(data)
    if engine == "auto":
        fast = _FastPath.parse(data, url)
        if fast is not None:
            return fast
    return _with_feedparser(_replace_impossible_charrefs(data), fp_headers, sanitize=engine == "feedparser_defaults")


def _to_utf8(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The body as UTF-8 with a UTF-8 XML declaration, decoded exactly as feedparser decodes it.

    Done here once, so the DOCTYPE guard sees the text the parser will see (a UTF-16 body hides its DOCTYPE from a
    byte search) and the fast path reads the same characters as feedparser. The headers handed on declare UTF-8."""
    scratch: dict[str, Any] = {}
    try:
        data = convert_to_utf8(headers, body, scratch)
    except (UnicodeDecodeError, ValueError):
        # An encoding name with a non-ASCII byte or a NUL in it (declaration or charset) crashes feedparser; such a
        # name is garbage anyway: keep its printable ASCII, drop the charset, and let the usual fallbacks decide.
        start = body.find(b"<?", 0, 1024)
        end = body.find(b"?>", start, 1024) if start >= 0 else -1
        if end >= 0:
            body = body[:start] + bytes(b for b in body[start:end] if 0x20 <= b < 0x7F) + body[end:]
        mime = headers.get("content-type", "").split(";")[0]
        headers = {**headers, "content-type": mime} if mime else headers
        try:
            data = convert_to_utf8(headers, body, scratch)
        except (UnicodeDecodeError, ValueError):
            return body, headers
    if not isinstance(data, bytes) or not scratch.get("encoding"):
        return body, headers
    mime = headers.get("content-type", "").split(";")[0].strip()
    return data, {**headers, "content-type": f"{mime or 'application/xml'}; charset=utf-8"}


_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_FIRST_ELEMENT = re.compile(rb"<\w")


def _strip_internal_subset(data: bytes) -> bytes:
    """Remove a DOCTYPE's internal subset (``<!DOCTYPE x [ ... ]>`` becomes ``<!DOCTYPE x >``) and any stray entity
    declaration before the root element, so that no parser ever expands an entity the document defines.

    The DOCTYPE is looked for where expat looks (the prolog, comments and processing instructions skipped) and where
    feedparser looks (before the first ``<`` followed by a letter), which differ when a comment holds a tag."""
    if b"<!" not in data:
        return data
    for _ in range(8):  # one DOCTYPE is legal; a few more cover a hostile document repeating it
        span = _subset_to_remove(data)
        if span is None:
            break
        data = data[: span[0]] + data[span[1] :]
    end = max(_prolog_end(data), _first_element(data) + 1)
    head = data[:end]
    if b"<!ENTITY" in head.upper():
        # feedparser re-inserts the "safe" declarations it finds here (RE_ENTITY_PATTERN); leave none to find.
        head = _ENTITY_DECL.sub(b"", RE_ENTITY_PATTERN.sub(b"", head))
        data = head + data[end:]
    return data


_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_SPACE = re.compile(rb"[ \t\r\n]+")


def _subset_to_remove(data: bytes) -> tuple[int, int] | None:
    first = _first_element(data)
    found = _DOCTYPE.search(data, 0, first if first >= 0 else len(data))
    candidates = [found.end()] if found else []
    candidates += _prolog_doctypes(data)
    for pos in candidates:
        start, end = _internal_subset(data, pos)
        if start >= 0:
            return start, end
    return None


def _prolog_doctypes(data: bytes) -> list[int]:
    return _scan_prolog(data)[1]


def _prolog_end(data: bytes) -> int:
    return _scan_prolog(data)[0]


def _scan_prolog(data: bytes) -> tuple[int, list[int]]:
    """Where the prolog ends (the root element, or whatever expat would stop at), and where each DOCTYPE name starts."""
    n = len(data)
    i = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    doctypes: list[int] = []
    while i < n:
        if data[i] in b" \t\r\n":
            i = _SPACE.match(data, i).end()  # type: ignore[union-attr]
        elif data.startswith(b"<?", i):
            close = data.find(b"?>", i + 2)
            i = n if close < 0 else close + 2
        elif data.startswith(b"<!--", i):
            close = data.find(b"-->", i + 4)
            i = n if close < 0 else close + 3
        elif data[i : i + 9].upper() == b"<!DOCTYPE":
            doctypes.append(i + 9)
            start, end = _internal_subset(data, i + 9)
            close = data.find(b">", end if start >= 0 else i + 9)
            i = n if close < 0 else close + 1
        else:
            break
    return i, doctypes


def _first_element(data: bytes) -> int:
    match = _FIRST_ELEMENT.search(data)
    return match.start() if match else -1


_DOCTYPE_HEAD_TOKEN = re.compile(rb"[\"'\[>]")
_SUBSET_TOKEN = re.compile(rb"[\"'\]]|<!--|<\?")


def _internal_subset(data: bytes, pos: int) -> tuple[int, int]:
    """Where the internal subset of the DOCTYPE whose name starts at ``pos`` begins and ends (-1 when there is none).

    Quoted strings, comments and processing instructions are skipped, so a ``]>`` inside an entity value does not
    end the subset early. An unterminated subset runs to the end of the document. Regular expressions jump from
    token to token: a hostile megabyte-long DOCTYPE costs no Python loop per byte."""
    n = len(data)
    i = pos
    while True:  # the name and the external id, up to '[' or '>'
        token = _DOCTYPE_HEAD_TOKEN.search(data, i)
        if token is None:
            return -1, -1
        c = data[token.start()]
        if c == 0x3E:  # >
            return -1, -1
        if c == 0x5B:  # [
            break
        close = data.find(bytes([c]), token.end())
        if close < 0:
            return -1, -1
        i = close + 1
    start = token.start()
    i = token.end()
    while True:
        token = _SUBSET_TOKEN.search(data, i)
        if token is None:
            return start, n
        found = token.group()
        if found == b"]":
            return start, token.end()
        closer = {b"<!--": b"-->", b"<?": b"?>"}.get(found, found)
        close = data.find(closer, token.end())
        if close < 0:
            return start, n
        i = close + len(closer)


_CHARREF = re.compile(rb"&#([0-9]{1,12}|[xX][0-9a-fA-F]{1,12});")
_CHARREF_ANY = re.compile(rb"&#(?:[0-9]{13,}|[xX][0-9a-fA-F]{13,});")


def _replace_impossible_charrefs(data: bytes) -> bytes:
    """``&#xD800;`` and ``&#x110000;`` make feedparser's lenient parser raise; they become U+FFFD."""
    if b"&#" not in data:
        return data

    def fix(match: re.Match[bytes]) -> bytes:
        ref = match.group(1)
        code = int(ref[1:], 16) if ref[:1] in (b"x", b"X") else int(ref)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return b"&#xFFFD;"
        return match.group(0)

    return _CHARREF_ANY.sub(b"&#xFFFD;", _CHARREF.sub(fix, data))


def _with_feedparser(data: bytes, headers: Mapping[str, str], *, sanitize: bool) -> _RawFeed:
    try:
        # A stream, never bytes or str: feedparser tries open() on both first, so b"/etc/passwd" would be read.
        parsed = feedparser.parse(
            io.BytesIO(data),
            response_headers=dict(headers),
            sanitize_html=sanitize,
            resolve_relative_uris=sanitize,
        )
    except Exception as crash:  # a parser crash on hostile bytes is a state of the source, not a bug of ours
        return _RawFeed(version="", problem=f"the parser failed ({type(crash).__name__}: {crash})")
    problem = None
    if _get(parsed, "bozo"):
        bozo = _get(parsed, "bozo_exception")
        # A wrong content-type or a charset the body contradicts is common and harmless: not worth a warning.
        if type(bozo).__name__ not in ("NonXMLContentType", "CharacterEncodingOverride"):
            problem = _describe_bozo(bozo)
    fd = _get(parsed, "feed") or {}
    raw = _RawFeed(
        version=str(_get(parsed, "version") or ""),
        title=_fp_text(fd, "title"),
        link=_str(_get(fd, "link")),
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


def _fp_text(d: Mapping[str, Any], key: str) -> _Text | None:
    value = _get(d, key)
    if not isinstance(value, str):
        return None
    detail = _get(d, f"{key}_detail")
    if isinstance(detail, Mapping) and _get(detail, "value") == value:
        return _Text(value, str(_get(detail, "type") or "text/plain"), _str(_get(detail, "base")))
    return _Text(value, "text/html")


def _from_feedparser_entry(e: Mapping[str, Any]) -> _RawEntry:
    raw = _RawEntry(
        id=_str(_get(e, "id")),
        link=_str(_get(e, "link")),
        title=_fp_text(e, "title"),
        published=_str(_get(e, "published")),
        published_parsed=_struct_to_datetime(_get(e, "published_parsed")),
        updated=_str(_get(e, "updated")),
        updated_parsed=_struct_to_datetime(_get(e, "updated_parsed")),
    )
    contents = [c for c in _get(e, "content") or () if isinstance(c, Mapping) and isinstance(_get(c, "value"), str)]
    usable = [c for c in contents if str(_get(c, "type") or "") in _TEXT_TYPES]
    if usable:
        c = usable[0]
        raw.content = _Text(c["value"], str(_get(c, "type")), _str(_get(c, "base")))
    summary = _get(e, "summary")
    if isinstance(summary, str):
        detail = _get(e, "summary_detail")
        if isinstance(detail, Mapping) and _get(detail, "value") == summary:
            raw.summary = _Text(summary, str(_get(detail, "type") or "text/plain"), _str(_get(detail, "base")))
        else:  # copied from the content by feedparser, which then keeps no detail of its own
            same = next((c for c in contents if _get(c, "value") == summary), None)
            raw.summary = (
                _Text(summary, str(_get(same, "type")), _str(_get(same, "base")))
                if same
                else _Text(summary, "text/html")
            )
    detail = _get(e, "author_detail")
    name = _get(detail, "name") or _get(detail, "email") if isinstance(detail, Mapping) else None
    raw.author = _str(name) or _str(_get(e, "author"))
    for tag in _get(e, "tags") or ():
        if isinstance(tag, Mapping) and isinstance(_get(tag, "term"), str):
            raw.tags.append(tag["term"])
    return raw


def _struct_to_datetime(value: object) -> datetime | None:
    if not isinstance(value, tuple) or len(value) < 6:
        return None
    try:
        year, month, day, hour, minute, second = (int(v) for v in value[:6])
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return _struct_to_datetime(_parse_date(text))
    except Exception:  # feedparser's date handlers raise more than they catch on odd input
        return None


# --- the fast path ---------------------------------------------------------------------------------------------------


class _Fallback(Exception):
    """The fast path met something it does not reproduce exactly; feedparser takes the whole document."""


_ATOM = "http://www.w3.org/2005/Atom"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_XHTML = "http://www.w3.org/1999/xhtml"
_KNOWN_NS: dict[str, str] = {uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()}
_STANDARD_PREFIXES = frozenset(p for p in _KNOWN_NS.values() if p)
# Elements feedparser has a handler for, in its own naming ("content:encoded" for _start_content_encoded).
_HANDLED = frozenset(name.split("_", 2)[2] for name in dir(_FeedParserMixin) if name.startswith(("_start_", "_end_")))
_HANDLER_PREFIXES = frozenset(
    rest.split("_", 1)[0]
    for name in dir(_FeedParserMixin)
    if name.startswith(("_start_", "_end_"))
    for rest in [name.split("_", 2)[2]]
    if "_" in rest
)
_EMAIL = re.compile(
    r"""(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?"""
)
_BAD_QUERY_ENTITY = re.compile("&([A-Za-z0-9_]+);")
_C1 = re.compile("[\x80-\x9f]")

# What each element means to an entry, by feedparser's name for it. "kind" values repeat where feedparser maps several
# elements onto one field; an entry holding two elements of a kind (other than link and category) is left to
# feedparser, whose rules for which one wins depend on document order and nesting depth.
_FIELDS: dict[str, tuple[str, str]] = {
    # name: (kind, default content type)
    "title": ("title", "text/plain"),
    "dc:title": ("title", "text/plain"),
    "link": ("link", ""),
    "guid": ("id", ""),
    "id": ("id", ""),
    "description": ("summary", "text/html"),
    "dc:description": ("summary", "text/html"),
    "summary": ("summary", "text/plain"),
    "itunes:summary": ("summary", "text/plain"),
    "abstract": ("summary", "text/plain"),
    "content:encoded": ("content", "text/html"),
    "fullitem": ("content", "text/html"),
    "content": ("content", "text/plain"),
    "pubdate": ("published", ""),
    "published": ("published", ""),
    "issued": ("published", ""),
    "dcterms:issued": ("published", ""),
    "updated": ("updated", ""),
    "modified": ("updated", ""),
    "lastbuilddate": ("updated", ""),
    "dc:date": ("updated", ""),
    "dcterms:modified": ("updated", ""),
    "author": ("author", ""),
    "dc:creator": ("author", ""),
    "dc:author": ("author", ""),
    "itunes:author": ("author", ""),
    "managingeditor": ("author", ""),
    "category": ("category", ""),
    "dc:subject": ("category", ""),
    "keywords": ("category", ""),
}
# Elements feedparser handles that touch none of the fields we read, wherever they are.
_HARMLESS = frozenset(
    {
        "enclosure", "source", "comments", "contributor", "name", "email", "url", "uri", "homepage", "rights",
        "copyright", "subtitle", "tagline", "info", "language", "generator", "cloud", "width", "height",
        "expirationdate", "newlocation", "created", "webmaster", "dc:language", "dc:rights", "dc:publisher",
        "dc:contributor", "dcterms:created", "dcterms:valid", "media:content", "media:thumbnail", "media:group",
        "media:credit", "media:rating", "media:restriction", "media:license", "media:player", "itunes:image",
        "itunes:link", "itunes:block", "itunes:explicit", "itunes:subtitle", "itunes:owner", "itunes:name",
        "itunes:email", "cc:license", "creativecommons:license", "feedburner:browserfriendly", "psc:chapters",
        "psc:chapter", "where", "georss:where", "georss:point", "georss:line", "georss:polygon", "georss:box",
        "gml:point", "gml:linestring", "gml:polygon", "gml:exterior", "gml:linearring", "gml:pos", "gml:poslist",
    }
)  # fmt: skip
# Keys of feedparser's entry dict that we read: an unhandled element of one of these names would overwrite them.
_OUR_KEYS = frozenset(
    {
        "title", "title_detail", "link", "links", "id", "guidislink", "summary", "summary_detail", "content",
        "published", "published_parsed", "updated", "updated_parsed", "author", "author_detail", "authors", "tags",
        "description", "item", "entry", "channel", "feed", "rss", "image", "textinput",
    }
)  # fmt: skip


class _FastPath:
    """Reads a well-formed RSS 2.0 or Atom 1.0 tree into the :class:`_RawFeed` feedparser would give.

    Every rule here mirrors a line of feedparser 6.0 (``mixin.py`` ``pop`` and ``namespaces/_base.py``); where the
    rule would depend on document order or nesting, :class:`_Fallback` hands the document to feedparser instead."""

    def __init__(self, declarations: list[tuple[str, str]], url: str) -> None:
        self.url = url
        self.names: dict[str, str] = {}
        self.unknown_prefix: dict[str, str] = {}
        self.atom = False
        self._namespaces(declarations)

    @classmethod
    def parse(cls, data: bytes, url: str) -> _RawFeed | None:
        if not url.lower().startswith(("http://", "https://")):
            return None
        try:
            # Entity declarations were removed before this point; the namespace declarations come along.
            events = ET.iterparse(io.BytesIO(data), events=("start-ns",))  # noqa: S314
            declarations = [declaration for _event, declaration in events]
            root = events.root  # type: ignore[attr-defined]
        except (ET.ParseError, ValueError, RecursionError):
            return None
        try:
            return cls(declarations, url)._feed(root)
        except (_Fallback, RecursionError):  # deep nesting: feedparser's parsers do not recurse
            return None

    def _namespaces(self, declarations: list[tuple[str, str]]) -> None:
        prefixes: dict[str, set[str]] = {}
        uris: dict[str, set[str]] = {}
        for prefix, uri in declarations:
            prefixes.setdefault(prefix, set()).add(uri)
            uris.setdefault(uri, set()).add(prefix)
        for prefix, bound in prefixes.items():
            if len(bound) > 1 and prefix:
                raise_fallback()  # feedparser maps a prefix to one namespace for the whole document
            for uri in bound:
                self._declare(prefix, uri, uris)

    def _declare(self, prefix: str, uri: str, uris: dict[str, set[str]]) -> None:
        standard = _standard_prefix(uri)
        if standard is None:
            # feedparser names an element of an unknown namespace by the document's prefix, so a prefix that
            # is also one of its own ("dc", "content") would reach a handler; a default unknown namespace too.
            if not prefix or prefix in _STANDARD_PREFIXES or prefix in _HANDLER_PREFIXES or len(uris[uri]) > 1:
                raise_fallback()
            self.unknown_prefix[uri] = prefix
        elif prefix and prefix != standard and (prefix in _STANDARD_PREFIXES or prefix in _HANDLER_PREFIXES):
            raise_fallback()
        if uri.lower() in ("http://purl.org/rss/1.0/", "http://my.netscape.com/rdf/simple/0.9/"):
            raise_fallback()  # these set feedparser's version to RSS 1.0 / 0.90 whatever the root says

    def name(self, tag: str) -> str:
        """feedparser's name for an element: the standard prefix of its namespace, a colon, the lower-cased name."""
        known = self.names.get(tag)
        if known is not None:
            return known
        if tag[:1] == "{":
            uri, _, local = tag[1:].partition("}")
            prefix = _standard_prefix(uri)
            if prefix is None:
                prefix = self.unknown_prefix.get(uri)
                if prefix is None:
                    raise_fallback()
        else:
            prefix, local = "", tag
        name = f"{prefix}:{local.lower()}" if prefix else local.lower()
        self.names[tag] = name
        return name

    def _feed(self, root: ET.Element) -> _RawFeed:
        if root.tag == f"{{{_ATOM}}}feed":
            self.atom = True
            container = root
            version = "atom10"
        elif root.tag == "rss":
            channels = [c for c in root if self.name(c.tag) == "channel"]
            if len(channels) != 1:
                raise_fallback()
            container = channels[0]
            version = "rss20" if root.get("version", "").startswith("2.") else "rss"
        else:
            raise_fallback()
        entry_name = "entry" if self.atom else "item"
        entries = [c for c in container if self.name(c.tag) == entry_name]
        census = 0
        for el in root.iter():
            if self.name(el.tag) in ("item", "entry", "channel", "feed", "rss"):
                census += 1
        if census != len(entries) + (1 if self.atom else 2):
            raise_fallback()  # entries elsewhere in the tree, or nested feeds: feedparser's own walk decides
        base = _child_base(root, self.url)
        if not self.atom:
            base = _child_base(container, base)
        raw = _RawFeed(version=version, fast=True)
        self._feed_fields(container, base, raw)
        raw.entries = [self._entry(e, _child_base(e, base)) for e in entries]
        return raw

    def _feed_fields(self, container: ET.Element, base: str, raw: _RawFeed) -> None:
        titles = ids = 0
        guid_link: str | None = None
        for child in container:
            name = self.name(child.tag)
            kind = _FIELDS.get(name, ("", ""))[0]
            if kind == "title":
                titles += 1
                if titles > 1:
                    raise_fallback()
                raw.title = self._content(child, _child_base(child, base))
            elif kind == "link":
                link, text_link = self._link(child, _child_base(child, base))
                if link is not None:
                    raw.link = link if not text_link else _BAD_QUERY_ENTITY.sub(r"&\g<1>", link)
            elif kind == "id":  # feedparser takes a feed's id as its link when there is no other (_end_guid)
                ids += 1
                if ids > 1:
                    raise_fallback()
                id_base = _child_base(child, base)
                is_link = _attrs(child).get("ispermalink", "true") == "true"
                value = self._text(child)
                guid_link = _fixups(_urljoin(id_base, value) if value and is_link else value) if is_link else None
            elif name == "ttl":
                raw.ttl = self._text(child)
        if raw.link is None:
            raw.link = guid_link

    def _entry(self, item: ET.Element, base: str) -> _RawEntry:
        for key in item.attrib:
            if key not in (f"{{{_XML_NS}}}base", f"{{{_XML_NS}}}lang"):
                raise_fallback()  # rdf:about, lastmod and href on an item feed feedparser's id, date and link
        raw = _RawEntry()
        seen: set[str] = set()
        link: str | None = None
        guid_link: str | None = None
        tags: list[tuple[str | None, str | None, str | None]] = []
        for child in item:
            name = self.name(child.tag)
            spec = _FIELDS.get(name)
            if spec is None:
                self._check_harmless(child, name)
                continue
            kind, default_type = spec
            if kind in seen and kind not in ("link", "category"):
                raise_fallback()
            seen.add(kind)
            child_base = _child_base(child, base)
            if kind == "title":
                raw.title = self._content(child, child_base, default_type)
            elif kind == "summary":
                raw.summary = self._content(child, child_base, default_type)
            elif kind == "content":
                if child.get("src") is not None:
                    raise_fallback()
                raw.content = self._content(child, child_base, default_type)
            elif kind == "link":
                value, text_link = self._link(child, child_base)
                if value is not None:
                    link = value.replace("&amp;", "&") if text_link else value
                    if text_link:
                        link = _BAD_QUERY_ENTITY.sub(r"&\g<1>", link)
            elif kind == "id":
                is_link = _attrs(child).get("ispermalink", "true") == "true"
                value = self._text(child)
                if value and is_link:
                    value = _urljoin(child_base, value)
                raw.id = _fixups(value)
                if is_link:
                    guid_link = raw.id
            elif kind == "published":
                raw.published = _fixups(self._text(child))
                raw.published_parsed = _date(raw.published)
            elif kind == "updated":
                raw.updated = _fixups(self._text(child))
                raw.updated_parsed = _date(raw.updated)
            elif kind == "author":
                raw.author = self._author(child)
            elif kind == "category":
                self._category(child, tags)
        if "content" in seen and raw.content is not None and raw.summary is None and raw.content.type in _TEXT_TYPES:
            raw.summary = _Text(raw.content.value, raw.content.type, raw.content.base)
        raw.link = link if "link" in seen and link is not None else guid_link
        raw.tags = [term for term, _scheme, _label in tags if term]
        return raw

    def _check_harmless(self, el: ET.Element, name: str) -> None:
        flat = name.replace(":", "_")
        if name in _FIELDS or (name not in _HARMLESS and (flat in _HANDLED or flat in _OUR_KEYS)):
            raise_fallback()
        for child in el:
            self._check_harmless(child, self.name(child.tag))

    def _text(self, el: ET.Element) -> str:
        if len(el):
            raise_fallback()  # markup inside a text element: feedparser turns it into XHTML content
        return (el.text or "").strip()

    def _content(self, el: ET.Element, base: str, default_type: str = "text/plain") -> _Text:
        attrs = _attrs(el)
        if "mode" in attrs:
            raise_fallback()
        content_type = _map_content_type(attrs.get("type", default_type))
        if content_type not in _TEXT_TYPES:
            raise_fallback()  # base64 and other media types
        if content_type == "application/xhtml+xml":
            if not self.atom:
                raise_fallback()
            value = self._xhtml(el)
        else:
            value = self._text(el)
            if not self.atom and content_type == "text/plain" and _FeedParserMixin.looks_like_html(value):
                content_type = "text/html"
        return _Text(_fixups(value), content_type, base)

    def _xhtml(self, el: ET.Element) -> str:
        """Inline XHTML serialised as feedparser does, without the wrapping <div> it removes (Atom 1.0 only)."""
        children = list(el)
        if (
            len(children) == 1
            and children[0].tag == f"{{{_XHTML}}}div"
            and not (el.text or "").strip()
            and not (children[0].tail or "").strip()
        ):
            return _serialize_inner(children[0]).strip()
        return _serialize_inner(el).strip()

    def _link(self, el: ET.Element, base: str) -> tuple[str | None, bool]:
        """(the entry's link if this element sets it, whether it came from text rather than href)."""
        attrs = _attrs(el)
        rel = attrs.setdefault("rel", "alternate")
        attrs.setdefault("type", "application/atom+xml" if rel == "self" else "text/html")
        href = attrs.get("url", attrs.get("uri", attrs.get("href")))
        if href:
            attrs["href"] = href
        if "href" in attrs:
            if len(el):
                raise_fallback()
            if rel == "alternate" and _map_content_type(attrs["type"]) in _HTML_TYPES:
                return _urljoin(base, attrs["href"]), False
            return None, False
        value = self._text(el)
        if value:
            value = _urljoin(base, value)
        return _fixups(value), True

    def _author(self, el: ET.Element) -> str | None:
        children = list(el)
        if not children:
            return _author_name(_fixups((el.text or "").strip()))
        name = email = None
        for child in children:
            child_name = self.name(child.tag)
            if len(child) or child_name not in ("name", "email", "uri", "url", "homepage"):
                raise_fallback()
            if child_name == "name":
                name = (child.text or "").strip()  # feedparser pops name and email raw (expecting_text=0)
            elif child_name == "email":
                email = (child.text or "").strip()
        return name or email or None

    def _category(self, el: ET.Element, tags: list[tuple[str | None, str | None, str | None]]) -> None:
        # mirrors _start_category, _end_category and _add_tag
        attrs = _attrs(el)
        term, scheme, label = attrs.get("term"), attrs.get("scheme", attrs.get("domain")), attrs.get("label")
        if term or scheme or label:
            _add_tag(tags, (term, scheme, label))
        value = _fixups(self._text(el))
        if not value:
            return
        if tags and not tags[-1][0]:
            tags[-1] = (value, tags[-1][1], tags[-1][2])
        else:
            _add_tag(tags, (value, None, None))


def raise_fallback() -> NoReturn:
    raise _Fallback


def _standard_prefix(uri: str) -> str | None:
    lowered = uri.lower()
    if "backend.userland.com/rss" in lowered:
        lowered = "http://backend.userland.com/rss"
    return _KNOWN_NS.get(lowered)


def _child_base(el: ET.Element, parent: str) -> str:
    given = el.get(f"{{{_XML_NS}}}base")
    if given is None:
        given = el.get("base")
    if not given:
        return parent
    return str(make_safe_absolute_uri(parent, given) or parent)


def _attrs(el: ET.Element) -> dict[str, str]:
    """The element's attributes as feedparser's strict parser names them (lower-cased; rel and type values too)."""
    attrs: dict[str, str] = {}
    for given, value in el.attrib.items():
        name = given
        if given[:1] == "{":
            uri, _, local = given[1:].partition("}")
            prefix = _KNOWN_NS.get(uri.lower(), "")
            name = f"{prefix}:{local}" if prefix else local
        name = name.lower()
        attrs[name] = value.lower() if name in ("rel", "type") else value
    return attrs


def _map_content_type(value: str) -> str:
    value = value.lower()
    return {"text": "text/plain", "plain": "text/plain", "html": "text/html", "xhtml": "application/xhtml+xml"}.get(
        value, value
    )


def _fixups(value: str) -> str:
    """feedparser's last steps on every text value: undo UTF-8 read as Latin-1, map cp1252's C1 characters."""
    if value.isascii():
        return value
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        value = value.encode("iso-8859-1").decode("utf-8")
    return value.translate(_cp1252) if _C1.search(value) else value  # translate is slow on long text


def _author_name(author: str) -> str | None:
    """feedparser's _sync_author_detail on 'jo@example.org (Jo Smith)': the name if there is one, else the email."""
    if not author:
        return None
    email = None
    match = _EMAIL.search(author)
    if match:
        email = match.group(0)
        author = author.replace(email, "").replace("()", "").replace("<>", "").replace("&lt;&gt;", "").strip()
        if author and author[0] == "(":
            author = author[1:]
        if author and author[-1] == ")":
            author = author[:-1]
        author = author.strip()
    return author or email or None


def _add_tag(
    tags: list[tuple[str | None, str | None, str | None]], tag: tuple[str | None, str | None, str | None]
) -> None:
    if tag not in tags:
        tags.append(tag)


def _serialize_inner(el: ET.Element) -> str:
    parts: list[str] = [xml.sax.saxutils.escape(el.text or "")]
    for child in el:
        _serialize(child, parts)
        parts.append(xml.sax.saxutils.escape(child.tail or ""))
    return "".join(parts)


def _serialize(el: ET.Element, parts: list[str]) -> None:
    tag = el.tag.rpartition("}")[2].lower()
    if tag in ("svg", "math"):
        raise_fallback()  # feedparser adds namespace attributes to these
    attrs = "".join(f' {k}="{xml.sax.saxutils.escape(v, {chr(34): "&quot;"})}"' for k, v in _attrs(el).items())
    parts.append(f"<{tag}{attrs}>")
    parts.append(xml.sax.saxutils.escape(el.text or ""))
    for child in el:
        _serialize(child, parts)
        parts.append(xml.sax.saxutils.escape(child.tail or ""))
    parts.append(f"</{tag}>")


# --- JSON Feed ------------------------------------------------------------------------------------------------------


def _looks_like_json(body: bytes) -> bool:
    # By the body, not the content-type: servers label RSS as application/json and JSON Feeds as text/plain.
    return body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] in (b"{", b"[")


def _parse_json_feed(body: bytes, *, url: str, content_type: str, tags: Sequence[str]) -> ParsedFeed:
    try:
        doc = json.loads(body.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError):
        return _failed("not_a_feed", f"{url}: not a feed (the body is not valid JSON{_ct(content_type)})")
    version = doc.get("version") if isinstance(doc, dict) else None
    if not (isinstance(version, str) and version.startswith(_JSON_FEED_VERSIONS)):
        return _failed("not_a_feed", f"{url}: not a feed (JSON, but not a JSON Feed: no jsonfeed.org version)")
    raw = _RawFeed(version="json1")
    title = doc.get("title")
    raw.title = _Text(title, "text/plain") if isinstance(title, str) else None
    raw.link = _json_url(doc.get("home_page_url"), url)
    items = doc.get("items")
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            raw.entries.append(_json_entry(item, url))
    return _finish(raw, url=url, content_type=content_type, body=body, tags=tags)


def _json_url(value: object, base: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return str(_urljoin(base, value.strip()))


def _json_entry(item: Mapping[str, Any], base: str) -> _RawEntry:
    raw = _RawEntry()
    item_id = item.get("id")
    if isinstance(item_id, str | int | float) and not isinstance(item_id, bool):
        raw.id = str(item_id)
    raw.link = _json_url(item.get("url"), base) or _json_url(item.get("external_url"), base)
    title = item.get("title")
    raw.title = _Text(title, "text/plain") if isinstance(title, str) else None
    if isinstance(item.get("content_html"), str):
        raw.content = _Text(item["content_html"], "text/html", base)
    elif isinstance(item.get("content_text"), str):
        raw.content = _Text(item["content_text"], "text/plain", base)
    if isinstance(item.get("summary"), str):
        raw.summary = _Text(item["summary"], "text/plain", base)
    elif raw.content is not None:
        raw.summary = raw.content
    for key, attr in (("date_published", "published"), ("date_modified", "updated")):
        value = item.get(key)
        if isinstance(value, str):
            setattr(raw, attr, value)
            setattr(raw, f"{attr}_parsed", _date(value))
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


# --- normalization: the same for every path ------------------------------------------------------------------------


def _finish(raw: _RawFeed, *, url: str, content_type: str, body: bytes, tags: Sequence[str]) -> ParsedFeed:
    title = _plain(raw.title, TITLE_MAX) or None
    link = _link(raw.link)
    ttl = _ttl(raw.ttl)
    if not raw.entries:
        if raw.version:
            return ParsedFeed("empty", title, link, (), ttl, None, f"{url}: the feed has no entries")
        return _failed("not_a_feed", f"{url}: not a feed ({_what_it_is(body, content_type, raw.problem)})")
    extra = _tags(tags, limit=TAGS_PER_ENTRY)
    items: list[ParsedItem] = []
    seen: set[str] = set()
    duplicates = 0
    for entry in raw.entries:
        item = _item(entry, len(items) + 1, extra)
        if item.key in seen:
            duplicates += 1
            continue
        seen.add(item.key)
        items.append(item)
    warnings = []
    if raw.problem:
        warnings.append(f"{url}: {raw.problem}; {len(items)} entries recovered")
    if duplicates:
        warnings.append(f"{url}: {duplicates} entries repeat the id of an earlier entry; the first of each was kept")
    return ParsedFeed("feed", title, link, tuple(items), ttl, "; ".join(warnings) or None, None, duplicates)


def _failed(kind: FeedKind, error: str) -> ParsedFeed:
    return ParsedFeed(kind, None, None, (), None, None, error)


def _ct(content_type: str) -> str:
    return f", content-type {content_type}" if content_type else ""


def _what_it_is(body: bytes, content_type: str, problem: str | None) -> str:
    start = body.lstrip(b" \t\r\n\xef\xbb\xbf")[:512].lower()
    if "html" in content_type or start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return f"the server sent an HTML page{_ct(content_type)}"
    detail = f": {problem}" if problem else ""
    return f"no RSS, Atom or JSON Feed found{_ct(content_type)}{detail}"


def _item(raw: _RawEntry, position: int, extra_tags: tuple[str, ...]) -> ParsedItem:
    content_source = raw.content or raw.summary
    content = _html(content_source)
    if raw.summary is None:
        summary = ""
    elif (
        content_source is not None and raw.summary.value == content_source.value and content_source.type != "text/plain"
    ):
        summary = _capped(text_of_sanitized(content), SUMMARY_MAX)
    else:
        summary = _plain(raw.summary, SUMMARY_MAX)
    title = _plain(raw.title, TITLE_MAX)
    derived = False
    if not title and summary:
        title, derived = truncate_words(first_sentence(summary), DERIVED_TITLE_MAX), True
    when, raw_date = _when(raw)
    link = _link(raw.link)
    key = _key(raw, title, raw_date, summary)
    author = clean_line(raw.author)[:AUTHOR_MAX] if raw.author else ""
    entry_tags = _tags(raw.tags, limit=TAGS_PER_ENTRY)
    return ParsedItem(
        kind="entry",
        key=key,
        position=position,
        title=title,
        published=when,
        summary=summary,
        content=content,
        link=link,
        author=author or None,
        tags=entry_tags + tuple(t for t in extra_tags if t not in entry_tags),
        title_derived=derived,
        raw_date=xml_safe(raw_date)[:200] if raw_date else None,
    )


def _plain(text: _Text | None, limit: int) -> str:
    if text is None or not text.value:
        return ""
    value = text.value[:_TEXT_INPUT_MAX]
    plain = html_to_text(value) if text.type in _HTML_TYPES else clean_line(" ".join(value.split()))
    return _capped(plain, limit)


def _capped(text: str, limit: int) -> str:
    # truncate_words collapses whitespace first, which the callers have done: skip it when nothing is cut.
    return truncate_words(text, limit) if len(text) > limit else text


def _html(text: _Text | None) -> str:
    if text is None or not text.value:
        return ""
    value = text.value[:_HTML_INPUT_MAX]
    if text.type not in _HTML_TYPES:
        value = html.escape(value, quote=False).replace("\n\n", "<br><br>")
    clean = sanitize_html(value, base_url=text.base)
    if len(clean) > CONTENT_MAX:  # cut, then let nh3 close what the cut left open
        clean = sanitize_html(clean[: CONTENT_MAX - 2_000], base_url=text.base)[:CONTENT_MAX]
    return clean


def _when(raw: _RawEntry) -> tuple[datetime | None, str | None]:
    for parsed, text in ((raw.published_parsed, raw.published), (raw.updated_parsed, raw.updated)):
        if parsed is not None and YEAR_MIN <= parsed.year <= YEAR_MAX:
            return parsed, text
    return None, raw.published or raw.updated or None


def _link(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if len(value) > LINK_MAX:
        return None  # a cut URL points somewhere else; better none
    value = quote(value, safe="%/:=&?~#+!$,;'@()*[]")  # spaces and control characters, not the URL's syntax
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return xml_safe(value)


def _key(raw: _RawEntry, title: str, raw_date: str | None, summary: str) -> str:
    for candidate in (raw.id, raw.link):
        if candidate and candidate.strip():
            key = xml_safe(candidate.strip())
            return key if len(key) <= KEY_MAX else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    parts = (title, raw_date or "", summary)
    digest = hashlib.sha256("\x1f".join(collapse(p).casefold() for p in parts).encode()).hexdigest()
    return "hash:" + digest[:32]


def _tags(values: Iterable[str], *, limit: int) -> tuple[str, ...]:
    return normalize_tags(values, limit=limit)


def _ttl(value: str | None) -> int | None:
    if not value or not value.strip().isdigit():
        return None
    minutes = int(value.strip())
    return minutes if minutes <= TTL_MAX_MINUTES else None

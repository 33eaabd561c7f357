"""The fast path: a well-formed RSS 2.0 or Atom 1.0 tree read with :mod:`xml.etree.ElementTree` into the raw record
feedparser would give, or None to leave the whole document to feedparser. Reads bytes already through the prolog guard.
"""

from __future__ import annotations

import contextlib
import io
import re
import xml.etree.ElementTree as ET
import xml.sax.saxutils
from typing import NoReturn

from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin, make_safe_absolute_uri

from ingest.parse.adapter import feed_date, written_as_url
from ingest.parse.raw import HTML_TYPES, TEXT_TYPES, RawEntry, RawFeed, Text


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


class FastPath:
    """Reads a well-formed RSS 2.0 or Atom 1.0 tree into the :class:`RawFeed` feedparser would give.

    Every rule here mirrors a line of feedparser 6.0 (``mixin.py`` ``pop`` and ``namespaces/_base.py``); where the
    rule would depend on document order or nesting, :class:`_Fallback` hands the document to feedparser instead."""

    def __init__(self, declarations: list[tuple[str, str]], url: str) -> None:
        self.url = url
        self.names: dict[str, str] = {}
        self.unknown_prefix: dict[str, str] = {}
        self.atom = False
        self._namespaces(declarations)

    @classmethod
    def parse(cls, data: bytes, url: str) -> RawFeed | None:
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

    def _feed(self, root: ET.Element) -> RawFeed:
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
        raw = RawFeed(version=version, fast=True)
        self._feed_fields(container, base, raw)
        raw.entries = [self._entry(e, _child_base(e, base)) for e in entries]
        return raw

    def _feed_fields(self, container: ET.Element, base: str, raw: RawFeed) -> None:
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
                value = self._text(child)
                is_link = _attrs(child).get("ispermalink", "true") == "true" and written_as_url(value)
                guid_link = _fixups(_urljoin(_child_base(child, base), value)) if is_link else None
            elif name == "ttl":
                raw.ttl = self._text(child)
        if raw.link is None:
            raw.link = guid_link

    def _entry(self, item: ET.Element, base: str) -> RawEntry:
        for key in item.attrib:
            if key not in (f"{{{_XML_NS}}}base", f"{{{_XML_NS}}}lang"):
                raise_fallback()  # rdf:about, lastmod and href on an item feed feedparser's id, date and link
        raw = RawEntry()
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
                value = written = self._text(child)
                if value and is_link:
                    value = _urljoin(child_base, value)  # the id, as feedparser joins it: the store's key
                raw.id = _fixups(value)
                if is_link and written_as_url(written):  # <guid>same</guid> is no link to "<base>/same"
                    guid_link = raw.id
            elif kind == "published":
                raw.published = _fixups(self._text(child))
                raw.published_parsed = feed_date(raw.published)
            elif kind == "updated":
                raw.updated = _fixups(self._text(child))
                raw.updated_parsed = feed_date(raw.updated)
            elif kind == "author":
                raw.author = self._author(child)
            elif kind == "category":
                self._category(child, tags)
        if "content" in seen and raw.content is not None and raw.summary is None and raw.content.type in TEXT_TYPES:
            raw.summary = Text(raw.content.value, raw.content.type, raw.content.base)
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

    def _content(self, el: ET.Element, base: str, default_type: str = "text/plain") -> Text:
        attrs = _attrs(el)
        if "mode" in attrs:
            raise_fallback()
        content_type = _map_content_type(attrs.get("type", default_type))
        if content_type not in TEXT_TYPES:
            raise_fallback()  # base64 and other media types
        if content_type == "application/xhtml+xml":
            if not self.atom:
                raise_fallback()
            value = self._xhtml(el)
        else:
            value = self._text(el)
            if not self.atom and content_type == "text/plain" and _FeedParserMixin.looks_like_html(value):
                content_type = "text/html"
        return Text(_fixups(value), content_type, base)

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
            if rel == "alternate" and _map_content_type(attrs["type"]) in HTML_TYPES:
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

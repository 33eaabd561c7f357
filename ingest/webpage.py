"""Reading fetched HTML pages: the feeds a page announces, and an article page as the seed parser reads a saved one.
Pure: bytes in, data out; the home of lxml and of readability-lxml (the article extraction library).

Nothing in a page is trusted: it may be huge (the fetcher caps it), malformed (lxml's HTML parser recovers), or
point anywhere (only http and https links are kept; the fetcher refuses private addresses when they are fetched).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import lxml.etree
import lxml.html
import readability

from ingest.core.errors import PageError
from ingest.seeds import match_date

UTC_ZONE = ZoneInfo("UTC")

#: Link types of the feed formats we read (RSS, RSS 1.0/RDF, Atom, JSON Feed; JSON Feed is often plain JSON).
FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/rdf+xml",
        "application/atom+xml",
        "application/feed+json",
        "application/json",
    }
)
#: Alternates taken from one page: a page listing thousands would otherwise cost a fetch each.
MAX_FEED_LINKS = 10


def parse_html(body: bytes, encoding: str | None = None) -> lxml.html.HtmlElement | None:
    """The page's tree, or None for a body no HTML parser finds anything in. ``encoding``: None lets the page's
    ``<meta charset>`` decide; given, it wins over the page's own (libxml2 would switch at the ``<meta>``)."""
    parser = lxml.html.HTMLParser(no_network=True, remove_comments=True, remove_pis=True)
    source: bytes | str = body
    if encoding is not None:
        # An XML declaration in a str makes lxml refuse it; the charset it names is overruled anyway.
        source = _XML_DECLARATION.sub("", body.decode(encoding, errors="replace"), count=1)
    try:
        return lxml.html.document_fromstring(source, parser=parser)
    except (lxml.etree.ParserError, ValueError):  # an empty or all-whitespace body
        return None


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def feed_links(body: bytes, page_url: str) -> list[str]:
    """The feeds a page announces (``<link rel="alternate">`` of a feed type), absolute, in page order, at most
    :data:`MAX_FEED_LINKS`; relative hrefs resolve against the page's ``<base href>``, itself against the page URL."""
    doc = parse_html(body)
    if doc is None:
        return []
    base = _base_url(doc, page_url)
    found: list[str] = []
    for element in doc.iter("link"):
        rel = (element.get("rel") or "").lower().split()
        kind = (element.get("type") or "").split(";")[0].strip().lower()
        href = (element.get("href") or "").strip()
        if "alternate" not in rel or kind not in FEED_TYPES or not href:
            continue
        url = _absolute(base, href)
        if url is not None and url not in found:
            found.append(url)
            if len(found) == MAX_FEED_LINKS:
                break
    return found


def looks_like_html(body: bytes, content_type: str) -> bool:
    start = body.lstrip(b" \t\r\n\xef\xbb\xbf")[:1024].lower()
    return "html" in content_type.lower() or start.startswith((b"<!doctype html", b"<html")) or b"<html" in start


def _absolute(base: str, href: str) -> str | None:
    try:
        url = urljoin(base, href)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url.split("#", 1)[0]


# --- live pages: an article page read into the shape of a saved seed page ---------------------------------------

#: Elements whose text is never part of what a page says.
_UNSEEN = ("script", "style", "noscript", "template", "svg", "iframe", "object", "form", "button", "select")
#: A teaser card is short; an element this long holding a date is an article (its byline), not a teaser.
MAX_TEASER_CHARS = 1200
#: Teasers taken from one page.
MAX_TEASERS = 100
#: Elements of a page read (scripts and styles not counted): an article page has a few thousand. The extraction
#: library's scoring grows faster than the page (about 2 s for 10,000 elements here), so a hostile page of a
#: million empty paragraphs is refused instead of read for minutes.
MAX_ELEMENTS = 15_000
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
#: Elements that hold one paragraph of an article when nothing of these is inside them.
_BLOCKS = ("p", "div", "li", "blockquote", "pre", "td", *_HEADINGS)


@dataclass(frozen=True, slots=True)
class Teaser:
    title: str
    date: str  # as written, or the <time datetime> date when the text is no date
    blurb: str
    link: str | None


@dataclass(frozen=True, slots=True)
class PageText:
    """A live page as the seed parser reads a saved one, and the links the text cannot carry."""

    text: str  # article paragraphs, boilerplate line(s), then each teaser's title line and "date blurb" line
    canonical: str  # the page's canonical URL (else the URL it was fetched from)
    links: dict[str, str]  # a teaser's title -> its link


def page_charset(body: bytes, content_type: str) -> str | None:
    """How to decode a page: the HTTP charset (it wins over the page's own, as browsers do), else the page's
    ``<meta>`` (None: lxml reads it), else UTF-8 when the bytes are UTF-8 (libxml2 would guess Latin-1)."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            try:
                return codecs.lookup(value.strip().strip("\"'")).name
            except LookupError:
                break
    if b"charset" in body[:4096].lower():
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "utf-8"


def page_text(body: bytes, page_url: str, *, boilerplate: Sequence[str], content_type: str = "") -> PageText | None:
    """Reduce an article page to the seed shape: its main article (readability-lxml, on the page without its rail and
    boilerplate), the boilerplate lines found, then the rail of dated teasers. None for a body with no HTML; raises
    :class:`PageError` for a page too big to read. ``content_type``: the response's, for its charset."""
    doc = parse_html(body, page_charset(body, content_type))
    if doc is None:
        return None
    for element in list(doc.iter(*_UNSEEN)):
        _drop(element)
    elements = sum(1 for _ in doc.iter())
    if elements > MAX_ELEMENTS:
        raise PageError(
            f"{page_url}: the page has {elements:,} elements, over the {MAX_ELEMENTS:,} a page is read with"
        )
    base = _base_url(doc, page_url)
    canonical = page_url
    for element in doc.iter("link"):
        if "canonical" in (element.get("rel") or "").lower().split():
            canonical = _absolute(page_url, (element.get("href") or "").strip()) or page_url
            break
    body_el = doc.find("body")
    root = body_el if body_el is not None else doc
    wanted = {_norm(b) for b in boilerplate}
    found_boiler: list[str] = []
    for element in list(root.iter()):
        if not isinstance(element.tag, str) or not _contains(root, element):  # gone with an ancestor already
            continue
        text = _text(element)
        if text and _norm(text) in wanted:
            if text not in found_boiler:
                found_boiler.append(text)
            _drop(_outermost_with_text(element, text))
    teasers = _teasers(root, base, _is_date)
    for card, _ in teasers:
        _drop(card)
    article = _article(lxml.html.tostring(doc, encoding="unicode"))
    lines = [*article, *found_boiler]
    for _, t in teasers:
        lines += [t.title, f"{t.date} {t.blurb}".strip()]
    links = {t.title: t.link for _, t in teasers if t.link}
    return PageText(text="\n".join(_one_line(line) for line in lines), canonical=canonical, links=links)


def _is_date(text: str) -> bool:
    dated = match_date(text, UTC_ZONE)
    return dated is not None and len(dated[1]) == len(text.strip())


def _article(html: str) -> list[str]:
    """The main article's paragraphs, by readability-lxml: it scores the page's blocks and keeps the best one with
    the sibling paragraphs that belong to it (a standfirst outside the body's container: decision 0019)."""
    summary = readability.Document(html).summary(html_partial=True)
    doc = parse_html(summary.encode(), "utf-8")
    if doc is None:
        return []
    lines = []
    for element in doc.iter(*_BLOCKS):
        inner = any(isinstance(child.tag, str) and child.tag in _BLOCKS for child in element.iterdescendants())
        if not inner and (text := _text(element)):
            lines.append(text)
    return lines


def _teasers(root: Any, base: str, is_date: Callable[[str], bool]) -> list[tuple[Any, Teaser]]:
    """Each dated card of the page: the smallest element around a date that also holds a title, in page order."""
    # Capped: each date is checked against the others, and a page of 10,000 <time> elements is no article page.
    anchors = [e for e in root.iter() if isinstance(e.tag, str) and _date_of(e, is_date) is not None]
    anchors = anchors[: 2 * MAX_TEASERS]
    cards: list[tuple[Any, Teaser]] = []
    taken: set[Any] = set()
    for anchor in anchors:
        card = _card_of(anchor, anchors)
        if card is None or card in taken or len(_text(card)) > MAX_TEASER_CHARS:
            continue
        title_el = _title_element(card, anchor)
        if title_el is None:
            continue
        taken.add(card)
        date = _date_of(anchor, is_date) or ""
        title = _text(title_el)
        blurb = " ".join(_text_skipping(card, {title_el, anchor}).split())
        cards.append((card, Teaser(title, date, blurb, _link_of(card, title_el, base))))
        if len(cards) == MAX_TEASERS:
            break
    return cards


def _date_of(element: Any, is_date: Callable[[str], bool]) -> str | None:
    """The date an element states: a <time>'s text (else its datetime's day), or a short text that is a date."""
    text = _text(element)
    if element.tag == "time":
        if is_date(text):
            return text
        stamp = (element.get("datetime") or "")[:10]
        return stamp if is_date(stamp) else None
    if len(element) == 0 and len(text) <= 40 and is_date(text):
        return text
    return None


def _card_of(anchor: Any, anchors: Sequence[Any]) -> Any | None:
    """The smallest ancestor of a date that holds a title, as long as it holds no other date."""
    current = anchor.getparent()
    while current is not None and current.tag not in ("body", "html"):
        inside = sum(1 for a in anchors if a is not anchor and _contains(current, a))
        if inside:
            return None
        if _title_element(current, anchor) is not None:
            return current
        current = current.getparent()
    return None


def _title_element(card: Any, anchor: Any) -> Any | None:
    """A teaser's title: its first heading (not the page's h1), else its first link with text of its own."""
    for element in card.iter(*_HEADINGS):
        if element.tag != "h1" and _text(element) and not _contains(element, anchor):
            return element
    for element in card.iter("a"):
        # Three words at least: a byline's author link ("By Staff, April 2nd 2025") is no teaser's title.
        if len(_text(element).split()) >= 3 and not _contains(element, anchor) and not _contains(anchor, element):
            return element
    return None


def _link_of(card: Any, title_el: Any, base: str) -> str | None:
    """The link of the title (on it, inside it or around it), else the card's first link."""
    candidates = [title_el, *title_el.iterancestors("a"), *title_el.iter("a"), *card.iter("a")]
    for element in candidates:
        if element.tag == "a" and (href := (element.get("href") or "").strip()):
            url = _absolute(base, href)
            if url is not None:
                return url
    return None


def _contains(outer: Any, inner: Any) -> bool:
    return outer is inner or any(a is outer for a in inner.iterancestors())


def _text(element: Any) -> str:
    return " ".join(str(element.text_content()).split())


def _text_skipping(card: Any, skipped: set[Any]) -> str:
    """The card's text without the skipped elements' own text (their tails, which follow them, are kept)."""
    parts: list[str] = []

    def walk(element: Any) -> None:
        if element in skipped:
            return
        parts.append(element.text or "")
        for child in element:
            if isinstance(child.tag, str):
                walk(child)
            parts.append(child.tail or "")

    walk(card)
    return " ".join(parts)


def _outermost_with_text(element: Any, text: str) -> Any:
    """The largest ancestor whose whole text is the same line (a <p> inside an <aside> with only it)."""
    current = element
    while (parent := current.getparent()) is not None and parent.tag not in ("body", "html") and _text(parent) == text:
        current = parent
    return current


def _drop(element: Any) -> None:
    """Remove an element but keep its tail text in place."""
    element.drop_tree()


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip(".")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _base_url(doc: Any, page_url: str) -> str:
    for element in doc.iter("base"):
        href = str(element.get("href") or "").strip()
        if href:
            return urljoin(page_url, href)
    return page_url

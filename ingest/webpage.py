"""Reading fetched HTML pages: the feeds a page announces. Pure: bytes in, data out; the home of lxml.

Nothing in a page is trusted: it may be huge (the fetcher caps it), malformed (lxml's HTML parser recovers), or
point anywhere (only http and https links are kept; the fetcher refuses private addresses when they are fetched).
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import lxml.etree
import lxml.html

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


def parse_html(body: bytes) -> lxml.html.HtmlElement | None:
    """The page's tree, or None for a body no HTML parser finds anything in."""
    parser = lxml.html.HTMLParser(no_network=True, remove_comments=True, remove_pis=True)
    try:
        return lxml.html.document_fromstring(body, parser=parser)
    except (lxml.etree.ParserError, ValueError):  # an empty or all-whitespace body
        return None


def feed_links(body: bytes, page_url: str) -> list[str]:
    """The feeds a page announces (``<link rel="alternate">`` of a feed type), absolute, in page order, at most
    :data:`MAX_FEED_LINKS`; relative hrefs resolve against the page's ``<base href>``, itself against the page URL."""
    doc = parse_html(body)
    if doc is None:
        return []
    base = page_url
    for element in doc.iter("base"):
        href = (element.get("href") or "").strip()
        if href:
            base = urljoin(page_url, href)
            break
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

"""Feed bodies parsed into :class:`ParsedFeed` records: the only package that imports feedparser.

Bytes and the response headers in, frozen records out; no I/O, no clock. RSS 0.9x, 1.0 and 2.0 and Atom 0.3 and
1.0 go through feedparser, JSON Feed 1.0 and 1.1 through :mod:`json` (feedparser 6.0 does not read it). The worker
processes (:mod:`ingest.workers`) import only this package: it must not import httpx, :mod:`ingest.fetch` or the store.

Four things happen before any parser sees the body (:mod:`ingest.parse.prolog`):

- it is decoded to UTF-8 the way feedparser would decode it (HTTP charset, BOM, XML declaration, fallbacks);
- any DOCTYPE internal subset is removed: feedparser keeps "safe" entity declarations, and a 40 KB feed whose title
  repeats one big entity ("quadratic blowup") expands to hundreds of megabytes;
- the text of each field is cut to its cap (an author to 512 bytes, a title, link, id, category or date to 32 KB, a
  body to 1.6 MB): feedparser runs its regular expressions while it parses, and its e-mail pattern is quadratic in an
  author's length (a 100 KB ``<author>`` cost 49 s); both paths then read the same capped document;
- numeric character references to characters that cannot exist (lone surrogates, beyond U+10FFFF) are replaced,
  because feedparser's lenient parser crashes on them.

Speed: feedparser spends most of its time in its own HTML sanitizer and relative-URI resolver, and the rest in a
Python callback per chunk of text. HTML is sanitized by :mod:`ingest.sanitize` (nh3) anyway, so feedparser runs with
both turned off (:mod:`ingest.parse.adapter`), and a well-formed RSS 2.0 or Atom 1.0 document takes a fast path
(:mod:`ingest.parse.fastpath`): :mod:`xml.etree.ElementTree` builds the tree in C, and the fast path reads it the way
feedparser would, using feedparser's own helpers for dates, URL joining and its text fix-ups (feedparser 6.0
internals, pinned by ``feedparser>=6,<7``). Anything the fast path does not reproduce exactly (an element it does not
know, a field given twice, an encoding quirk) sends the whole document to feedparser. ``tests/test_parse.py`` checks
that both paths give the same entries.

Every path fills in the raw records of :mod:`ingest.parse.raw` (JSON Feed in :mod:`ingest.parse.jsonfeed`), and
:mod:`ingest.parse.normalize` turns them into :class:`ParsedFeed`, the same way for all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Literal

from ingest.parse.adapter import with_feedparser
from ingest.parse.fastpath import FastPath
from ingest.parse.jsonfeed import looks_like_json, parse_json_feed
from ingest.parse.normalize import CONTENT_MAX, SUMMARY_MAX, TITLE_MAX, FeedKind, ParsedFeed, failed, finish
from ingest.parse.prolog import cap_fields, replace_impossible_charrefs, strip_internal_subset, to_utf8
from ingest.parse.raw import RawFeed

__all__ = ["CONTENT_MAX", "SUMMARY_MAX", "TITLE_MAX", "Engine", "FeedKind", "ParsedFeed", "parse_feed"]


def parse_feed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    now: datetime,
    tags: Sequence[str] = (),
    max_entries: int | None = None,
    known: Collection[str] = frozenset(),
) -> ParsedFeed:
    """Parse one fetched body; never raises for what is in ``body``.

    ``url`` names the feed in messages and is the base of relative links, and of relative guids too: feedparser
    reads a guid without ``isPermaLink="false"`` as a URL, so "123" becomes "<url>/123". Pass the source's current
    URL (the one a 301 adopted), not a temporary redirect's target, or such keys change with the redirect.
    ``headers`` are the response headers (any case; Content-Type's charset is used, Content-Location is not).
    ``now`` is when the body was fetched: an entry dated more than a day after it gets no date (first seen is used).
    ``tags`` are added to every entry's own categories. ``max_entries``: keep only the newest that many entries
    (dated ones newest first, then undated ones in the feed's order), with a warning naming how many were dropped.
    ``known``: keys of this feed's entries already stored; such an entry is not normalized but listed in
    ``ParsedFeed.known`` (its key and position), to be marked seen again."""
    return _parse(
        body, url=url, headers=headers, tags=tags, engine="auto", now=now, max_entries=max_entries, known=known
    )


Engine = Literal["auto", "feedparser", "feedparser_defaults"]


def _parse(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    tags: Sequence[str],
    engine: Engine,
    now: datetime,
    max_entries: int | None = None,
    known: Collection[str] = frozenset(),
) -> ParsedFeed:
    """``engine``: ``auto`` (fast path, else feedparser), ``feedparser`` (never the fast path) or
    ``feedparser_defaults`` (feedparser with its own sanitizer and resolver on; the reference the tests compare to)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if not body.strip(b" \t\r\n\x00\xef\xbb\xbf\xfe\xff"):
        return failed("empty", f"{url}: empty response (the server sent {len(body)} bytes and no feed)")
    if looks_like_json(body):
        raw = parse_json_feed(body, url=url, content_type=content_type)
        if isinstance(raw, ParsedFeed):
            return raw
    else:
        lowered["content-location"] = url
        raw = _parse_xml(body, url=url, headers=lowered, engine=engine)
    return finish(
        raw, url=url, content_type=content_type, body=body, tags=tags, now=now, max_entries=max_entries, known=known
    )


def _parse_xml(body: bytes, *, url: str, headers: dict[str, str], engine: Engine) -> RawFeed:
    if engine == "feedparser_defaults":
        data, fp_headers = strip_internal_subset(body), headers
    else:
        data, fp_headers = to_utf8(body, headers)
        data = strip_internal_subset(data)
    data, cuts = cap_fields(data)
    raw = FastPath.parse(data, url) if engine == "auto" else None
    if raw is None:
        raw = with_feedparser(replace_impossible_charrefs(data), fp_headers, sanitize=engine == "feedparser_defaults")
    raw.cut_fields = cuts
    return raw

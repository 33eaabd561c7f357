"""Feed autodiscovery: given any address, the feeds it is or announces, each checked through the guarded fetcher.

A feed's own URL is itself. An HTML page offers its ``<link rel="alternate">`` feeds; when none of those answers
with a feed, the usual paths of its site are tried (as Miniflux and FreshRSS do). Every candidate is fetched (GET:
a HEAD would not tell a feed from a login page) by :func:`ingest.fetch.fetch_all_sync`, so a page pointing at a
private address gets that candidate refused like any feed would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ingest.core.config import FetchConfig
from ingest.fetch import FetchRequest, FetchResult, Outcome, fetch_all_sync
from ingest.parse import parse_feed
from ingest.webpage import feed_links, looks_like_html

#: Where sites usually keep their feed, tried on the site's root when a page announces none.
USUAL_PATHS = ("/feed", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml")

DiscoveryKind = Literal["feed", "page", "other", "unreachable"]


@dataclass(frozen=True, slots=True)
class FoundFeed:
    url: str  # as the page (or the person) wrote it
    final_url: str  # where it answered from, after redirects
    title: str | None


@dataclass(frozen=True, slots=True)
class Discovery:
    """What one address turned out to be. ``kind``: a feed itself, an HTML page, something else, or no answer."""

    url: str
    kind: DiscoveryKind
    final_url: str | None = None
    feeds: tuple[FoundFeed, ...] = ()
    refused: tuple[str, ...] = ()  # candidates that were not feeds, each with why, for a person
    error: str | None = None  # why the address itself gave nothing usable
    outcome: Outcome | None = None  # the fetch's, when unreachable
    status: int | None = None  # the last HTTP status, when unreachable


def discover(
    url: str, config: FetchConfig, now: datetime, *, exclude: Sequence[str] = (), look_for_feeds: bool = True
) -> Discovery:
    """What ``url`` is, and for a page the feeds it offers (unless not ``look_for_feeds``). Never raises for what a
    server sends. ``exclude``: URLs not to offer (a broken feed looking for where it went must not suggest itself)."""
    first = _fetch([url], config, now)[0]
    if first.outcome != "ok" or first.body is None:
        error = first.error or f"{url}: {first.outcome}"
        return Discovery(url, "unreachable", first.final_url, error=error, outcome=first.outcome, status=first.status)
    if (found := _as_feed(first, now)) is not None:
        return Discovery(url, "feed", first.final_url, feeds=(found,))
    content_type = first.headers.get("content-type", "")
    if not looks_like_html(first.body, content_type):
        shown = f" ({content_type})" if content_type else ""
        return Discovery(
            url, "other", first.final_url, error=f"{url}: neither a feed nor an HTML page{shown}; expected either"
        )
    if not look_for_feeds:
        return Discovery(url, "page", first.final_url)
    skip = {*exclude, url, first.final_url}
    alternates = [u for u in feed_links(first.body, first.final_url) if u not in skip]
    feeds, refused = _check(alternates, config, now)
    if not feeds:
        root = urlsplit(first.final_url)
        usual = [urlunsplit((root.scheme, root.netloc, path, "", "")) for path in USUAL_PATHS]
        more, _ = _check([u for u in usual if u not in skip and u not in alternates], config, now)
        feeds = more
    return Discovery(url, "page", first.final_url, feeds=tuple(feeds), refused=tuple(refused))


def find_on_site(url: str, config: FetchConfig, now: datetime, *, exclude: Sequence[str] = ()) -> FoundFeed | None:
    """A feed on ``url``'s site other than ``exclude``: what its home page offers, else the usual paths. For a feed
    that broke (not a feed any more, 404, gone): a suggestion for the operator, never adopted by itself."""
    parts = urlsplit(url)
    home = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    found = discover(home, config, now, exclude=exclude)
    if found.kind in ("unreachable", "other"):  # no home page to read: the usual paths may still answer
        usual = [urlunsplit((parts.scheme, parts.netloc, path, "", "")) for path in USUAL_PATHS]
        feeds, _ = _check([u for u in usual if u not in exclude], config, now)
        return feeds[0] if feeds else None
    return next((f for f in found.feeds if f.url not in exclude and f.final_url not in exclude), None)


def _fetch(urls: Sequence[str], config: FetchConfig, now: datetime) -> list[FetchResult]:
    requests = [FetchRequest(source_id=i, url=u) for i, u in enumerate(urls)]
    return fetch_all_sync(requests, config, clock=lambda: now)


def _check(candidates: Sequence[str], config: FetchConfig, now: datetime) -> tuple[list[FoundFeed], list[str]]:
    """The candidates that answer with a feed, in their order, and why each other one does not."""
    if not candidates:
        return [], []
    feeds: list[FoundFeed] = []
    refused: list[str] = []
    for result in _fetch(candidates, config, now):
        found = _as_feed(result, now) if result.outcome == "ok" else None
        if found is not None:
            feeds.append(found)
        else:
            refused.append(result.error or f"{result.request.url}: not a feed")
    return feeds, refused


def _as_feed(result: FetchResult, now: datetime) -> FoundFeed | None:
    if result.body is None or not result.body.strip():  # an empty 200 is no evidence of a feed
        return None
    parsed = parse_feed(result.body, url=result.final_url, headers=result.headers, now=now, max_entries=1)
    if parsed.kind == "not_a_feed":
        return None
    return FoundFeed(result.request.url, result.final_url, parsed.title)

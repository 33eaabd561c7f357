"""The HTML pages: home (latest stories, search, a topic's stories, feed autodiscovery), a story's own page (410
once the operator hid it), the 404 page. No SQL here.

Plain server-rendered HTML from ``templates/web/``, readable on a phone, usable without JavaScript. Templates escape
every value; a story's body is sanitized again here before the template may print it as HTML. :func:`page` is the
one way to answer with a page, so other routes (the subscribe pages) get the same headers and site context.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ingest.core import links
from ingest.core.config import Settings
from ingest.core.models import Story
from ingest.core.sources import reader_sources
from ingest.core.text import after_headline, collapse, truncate_words
from ingest.sanitize import sanitize_html
from ingest.store import Store
from ingest.topics import taxonomy_of
from newsletter.publish import ATOM_TYPE, JSON_TYPE, RSS_TYPE, UNTITLED, published_tags, tag_name, topic_name
from newsletter.render import render
from newsletter.web.conditional import gzip_body

__all__ = [
    "FeedLink",
    "StoryItem",
    "digests_feed",
    "not_found_page",
    "page",
    "page_routes",
    "site_path",
    "site_root",
]

#: Stories a page of the home page (or of search results) lists; ``?page=N`` goes further back.
PAGE_SIZE = 50
_FIRST_PARAGRAPH = re.compile(r"\s*<p>([^<]*)</p>")  # a plain first paragraph, as a seed page's article has
MAX_QUERY = 200
SUMMARY_CHARS = 320
#: Pages load nothing but their inline stylesheet and pictures in story bodies; forms post back to us.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class StoryItem:
    """A story as a page lists it; formatting decisions made here, not in the template."""

    id: int
    title: str
    url: str  # its page on our site
    link: str | None  # the link out, http(s) only
    date: datetime
    dated: bool  # False: ``date`` is when we first saw it
    summary: str
    tags: tuple[str, ...]
    sightings: int

    @classmethod
    def of(cls, story: Story, settings: Settings, summary_chars: int | None = SUMMARY_CHARS) -> StoryItem:
        link = story.link if story.link and story.link.lower().startswith(("http://", "https://")) else None
        summary = after_headline(story.title, story.summary, derived=story.title_derived)
        summary = summary if summary_chars is None else truncate_words(summary, summary_chars)
        return cls(
            id=story.id,
            title=story.title.strip() or UNTITLED,
            url=site_path(settings, links.story_url(settings.publish, story.id)),
            link=link,
            date=story.published or story.first_seen,
            dated=story.published is not None,
            summary=summary,
            tags=story.tags,
            sightings=story.sightings,
        )


@dataclass(frozen=True, slots=True)
class FeedLink:
    title: str
    type: str
    href: str


@dataclass(frozen=True, slots=True)
class TopicLink:
    slug: str
    name: str
    page: str  # the home page filtered to it
    feed: str


def site_root(settings: Settings) -> str:
    """The path our pages live under, from ``[publish] base_url`` (``/`` unless the site sits in a folder)."""
    return links.site_root(settings.publish)


def site_path(settings: Settings, url: str) -> str:
    """A public URL from :mod:`ingest.core.links` as our pages link to it: a path on this host (``/digests/``)."""
    base = links.base_url(settings.publish)
    assert url.startswith(base), url
    return site_root(settings) + url.removeprefix(base)


def _after_headline_html(story: Story, body: str) -> str:
    """A story's body without the headline its first paragraph begins with (a headline derived from that paragraph,
    or a whole sentence of it), so that no sentence shows twice on the page."""
    first = _FIRST_PARAGRAPH.match(body)
    if first is None:
        return body
    text = html.unescape(first.group(1))
    rest = after_headline(story.title, text, derived=story.title_derived)
    if rest == collapse(text):
        return body
    return (f"<p>{html.escape(rest, quote=False)}</p>" if rest else "") + body[first.end() :]


def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``templates/<template>`` with the site context (``site_title``, ``root``) and the page headers."""
    settings = _settings(request)
    html = render(template, site_title=settings.publish.title, root=site_root(settings), **context)
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    body = gzip_body(request, html.encode("utf-8"), headers)
    return HTMLResponse(body, status_code=status_code, headers=headers)


def not_found_page(request: Request, exc: Exception | None = None) -> Response:
    return page(request, "web/404.html", status_code=404)


def _feeds(settings: Settings, tags: Sequence[str]) -> tuple[list[FeedLink], list[FeedLink]]:
    title = settings.publish.title

    def path(name: str) -> str:
        return site_path(settings, links.feed_url(settings.publish, name))

    main = [
        FeedLink(f"{title} (Atom)", ATOM_TYPE, path("feed.atom")),
        FeedLink(f"{title} (RSS)", RSS_TYPE, path("feed.rss")),
        FeedLink(f"{title} (JSON Feed)", JSON_TYPE, path("feed.json")),
    ]
    by_tag = [FeedLink(tag, ATOM_TYPE, path(tag_name(tag))) for tag in tags]
    return main, by_tag


def _listing_url(root: str, query: str, number: int, topic: str | None = None) -> str:
    """Page ``number`` of the home page, or of the results for ``query`` (within ``topic``): page 1 without
    ``page``."""
    params = {"topic": topic} if topic else {}
    if query:
        params["q"] = query
    if number > 1:
        params["page"] = str(number)
    return root + ("?" + urlencode(params, quote_via=quote) if params else "")


def digests_feed(settings: Settings) -> FeedLink:
    """The digests' own feed (served by :mod:`newsletter.web.digests`), as pages link to it."""
    return FeedLink(
        f"{settings.publish.title}: weekly digests",
        ATOM_TYPE,
        site_path(settings, links.feed_url(settings.publish, "digests.atom")),
    )


def page_routes(settings: Settings, store: Store) -> list[Route]:
    """``GET /`` (with ``?q=`` to search) and ``GET /stories/{id}``."""
    root = site_root(settings)
    taxonomy = taxonomy_of(settings.topics)
    counted: list[tuple[int, int]] = []  # (publish generation, visible stories) of the last count

    def count_live() -> int:
        """Counted once per publish generation: a count reads every story, far too much for each request."""
        generation = store.publish_generation()
        if not counted or counted[-1][0] != generation:
            counted[:] = [(generation, store.count_live())]
        return counted[-1][1]

    topic_links = [
        TopicLink(
            t.slug,
            t.name,
            _listing_url(root, "", 1, t.slug),
            site_path(settings, links.feed_url(settings.publish, topic_name(t.slug))),
        )
        for t in taxonomy.topics
    ]

    def home(request: Request) -> Response:
        query = " ".join(request.query_params.get("q", "").split())[:MAX_QUERY]
        topic = request.query_params.get("topic") or None
        chosen = taxonomy.get(topic) if topic is not None else None
        if topic is not None and chosen is None:  # not a topic of ours: no such page, like a page past the last
            return not_found_page(request)
        asked = request.query_params.get("page")
        number = 1 if asked is None else links.parse_row_id(asked)
        if number is None:
            return not_found_page(request)
        if asked is not None and number == 1:  # page 1 has one address: without the parameter
            return RedirectResponse(_listing_url(root, query, 1, topic), status_code=301)
        total = count_live()
        filtered = bool(query) or topic is not None
        matches = store.count_matches(query, topic=topic) if filtered else total
        pages = max(1, -(-matches // PAGE_SIZE))
        if number > pages:
            return not_found_page(request)
        offset = (number - 1) * PAGE_SIZE
        stories = (
            store.search(query, PAGE_SIZE, offset=offset, topic=topic)
            if filtered
            else store.stories(PAGE_SIZE, offset=offset)
        )
        known = published_tags(settings)  # the tag feeds that exist; reading every story's tags costs a scan
        feeds, tag_feeds = _feeds(settings, store.tags() if known is None else known)
        return page(
            request,
            "web/home.html",
            query=query,
            topic=chosen,
            topics=topic_links,
            stories=[StoryItem.of(s, settings) for s in stories],
            matches=matches,
            page_number=number,
            pages=pages,
            prev_url=_listing_url(root, query, number - 1, topic) if number > 1 else None,
            next_url=_listing_url(root, query, number + 1, topic) if number < pages else None,
            total=total,
            feeds=feeds,
            tag_feeds=tag_feeds,
            subscribe_url=f"{root}subscribe",
            digests_url=site_path(settings, links.digests_url(settings.publish)),
            digests_feed=digests_feed(settings),
        )

    def story_page(request: Request) -> Response:
        story_id = int(request.path_params["story_id"])
        live = store.resolve_story(story_id)
        if live is None:
            return not_found_page(request)
        if live != story_id:  # merged into another story: its address moves for good
            return RedirectResponse(site_path(settings, links.story_url(settings.publish, live)), status_code=301)
        story = store.story(live)
        if story is None:
            return not_found_page(request)
        if story.hidden_at is not None:  # the operator withdrew it: gone for good, as far as readers know
            return page(request, "web/gone.html", status_code=410)
        body = sanitize_html(story.content, base_url=story.link) if story.content.strip() else ""
        sightings = store.story_sources(live)
        sources = reader_sources((s.source, s.site_url, s.link, s.first_seen, s.author) for s in sightings)
        feeds, _ = _feeds(settings, ())
        return page(
            request,
            "web/story.html",
            story=StoryItem.of(story, settings, summary_chars=None),
            body_html=_after_headline_html(story, body),
            sources=sources,
            topics=[t.name for t in map(taxonomy.get, story.topics) if t is not None],
            feeds=feeds,
            first_seen=story.first_seen,
            updated=story.updated,
        )

    async def home_async(request: Request) -> Response:
        return await run_in_threadpool(home, request)

    async def story_async(request: Request) -> Response:
        return await run_in_threadpool(story_page, request)

    return [
        Route("/", home_async, methods=["GET", "HEAD"]),
        Route("/stories/{story_id:int}", story_async, methods=["GET", "HEAD"]),
    ]

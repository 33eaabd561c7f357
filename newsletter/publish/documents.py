"""Feed documents as bytes: Atom 1.0 (RFC 4287, RFC 5005 archives), RSS 2.0, JSON Feed 1.1. No I/O, no clock.

The only home of feedgen. Pure: no clock and no I/O, so the same stories and config give the same bytes (the feed's
``updated`` is its newest entry's, the generator is ours). Every text passes :func:`ingest.core.text.xml_safe` and
content HTML passes :func:`ingest.sanitize.sanitize_html` again, so nothing a story carries can break a document or
smuggle markup into it. A story that still cannot be rendered is reported to ``on_skip`` and left out; the others
are published.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, TypeVar

from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator

from ingest.core.config import PublishConfig
from ingest.core.links import base_url, entry_link, feed_url
from ingest.core.models import Byline, Story
from ingest.core.text import xml_safe
from ingest.sanitize import sanitize_html

__all__ = [
    "ATOM_TYPE",
    "JSON_TYPE",
    "MAIN",
    "RSS_TYPE",
    "FeedPage",
    "atom_feed",
    "feed_updated",
    "json_feed",
    "rss_feed",
]

log = logging.getLogger("newsletter.atom")  # the name log lines have always carried

ATOM_TYPE = "application/atom+xml"
RSS_TYPE = "application/rss+xml"
JSON_TYPE = "application/feed+json"
HTML_TYPE = "text/html"
FH_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005
AT_NS = "http://purl.org/atompub/tombstones/1.0"  # RFC 6721
ATOM_NS = "http://www.w3.org/2005/Atom"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
#: An empty feed's ``updated`` when the caller gives none: fixed, so an empty feed is byte-identical too.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNTITLED = "(untitled)"

SkipHandler = Callable[[Story, Exception], None]
_E = TypeVar("_E")  # one entry as a format builds it: a feedgen FeedEntry, a JSON Feed item


@dataclass(frozen=True, slots=True)
class FeedPage:
    """Which document is built: its path under ``base_url``, its id and title, and its RFC 5005 links (paths)."""

    path: str = "feed.atom"
    feed_id: str | None = None  # None: [publish] id. Archive documents keep it: they are the same logical feed.
    title: str | None = None  # None: [publish] title
    prev_archive: str | None = None
    next_archive: str | None = None
    current: str | None = None  # the subscription document, linked from archive documents
    archive: bool = False  # an RFC 5005 archive document: carries <fh:archive/>


MAIN = FeedPage()


def _generator_version() -> str:
    try:
        return metadata.version("feed-newsletter")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


GENERATOR = ("feed-newsletter", _generator_version())


def feed_updated(stories: Sequence[Story]) -> datetime | None:
    """A document's ``updated``: the newest ``updated`` of its stories (None for none)."""
    return max((s.updated for s in stories), default=None)


def _text(value: str | None) -> str:
    """Plain text XML can carry. (lxml escapes ``<``, ``&`` and ``>``; ``]]>`` is then harmless text.)"""
    return xml_safe(value or "").strip()


def _title(story: Story) -> str:
    return " ".join(_text(story.title).split()) or UNTITLED


def _content(story: Story) -> str:
    """Sanitized again: the store's copy should already be clean, but a feed must not trust it."""
    if not story.content.strip():
        return ""
    return sanitize_html(xml_safe(story.content), base_url=story.link).strip()


def _check(story: Story) -> None:
    """Refuse what would break the document later, outside the per-story guard: dates without a time zone."""
    for name, value in (("updated", story.updated), ("first_seen", story.first_seen), ("published", story.published)):
        if value is not None and value.utcoffset() is None:
            raise ValueError(f"story {name} {value.isoformat()} has no time zone")


def _log_skip(story: Story, exc: Exception) -> None:
    log.warning("story %s (%s) left out of the feed: %s", story.id, story.uid, exc)


def _published(story: Story) -> datetime:
    return story.published or story.first_seen


def _byline(byline: Byline | None) -> str:
    """An entry's author: where the story was seen, and who wrote it when that source said (``Dr. Who (OncFeed)``):
    the entry names its source, never the service."""
    if byline is None:
        return ""
    source, author = _text(byline.source), _text(byline.author)
    return f"{author} ({source})" if author and source else author or source


def _tags(story: Story) -> list[str]:
    return [t for t in dict.fromkeys(_text(t) for t in story.tags) if t]


def _feed_head(fg: FeedGenerator, config: PublishConfig, page: FeedPage, updated: datetime) -> None:
    home = base_url(config)
    fg.id(_text(page.feed_id or config.id) or home)
    fg.title(_text(page.title or config.title) or home)
    fg.subtitle(_text(config.subtitle) or _text(config.title) or home)  # also RSS's required <description>
    fg.author({"name": _text(config.author) or home})
    fg.updated(updated)  # also RSS's lastBuildDate; feedgen would put the clock there
    fg.generator(*GENERATOR)


def _build(
    stories: Sequence[Story],
    make: Callable[[Story], _E],
    check: Callable[[_E], object],
    finish: Callable[[list[tuple[Story, _E]]], bytes],
    on_skip: SkipHandler | None,
) -> bytes:
    """Entries made one by one (a story whose fields are refused is skipped), then the document. feedgen builds the
    XML lazily, so when the document fails each entry is rendered alone to find the culprits, which are left out.
    Rendering optimistically first halves the work of the usual case, where every story is fine."""
    made: list[tuple[Story, _E]] = []
    for story in stories:
        try:
            made.append((story, make(story)))
        except Exception as exc:  # one bad story must never stop the others (issue 5)
            (on_skip or _log_skip)(story, exc)
    try:
        return finish(made)
    except Exception:  # rare: find which entries break the document, then build it without them
        kept = []
        for story, entry in made:
            try:
                check(entry)
            except Exception as exc:
                (on_skip or _log_skip)(story, exc)
            else:
                kept.append((story, entry))
        return finish(kept)


class _EntryLink:
    """A feedgen entry extension putting back the ``rel`` and ``type`` feedgen 1.0 drops from an entry's link."""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, entry: Any) -> Any:
        for link in entry.iterchildren(f"{{{ATOM_NS}}}link", "link"):
            if not link.get("rel"):
                link.set("rel", "alternate")
                link.set("type", HTML_TYPE)
        return entry

    def extend_rss(self, entry: Any) -> Any:
        return entry


class _History:
    """A feedgen extension adding RFC 5005 ``<fh:archive/>`` to an archive document (links go through fg.link)."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": FH_NS}

    def extend_atom(self, feed: Any) -> Any:
        feed.append(feed.makeelement(f"{{{FH_NS}}}archive", {}))
        return feed

    def extend_rss(self, feed: Any) -> Any:
        return feed


class _Tombstones:
    """A feedgen extension adding an RFC 6721 ``<at:deleted-entry ref=... when=...>`` per story the operator hid, so
    that a reader holding its entry can drop it. Only the id and the time: the operator's reason stays private."""

    def __init__(self) -> None:
        self.gone: list[tuple[str, datetime]] = []

    def extend_ns(self) -> dict[str, str]:
        return {"at": AT_NS}

    def extend_atom(self, feed: Any) -> Any:
        for ref, when in self.gone:
            feed.append(feed.makeelement(f"{{{AT_NS}}}deleted-entry", {"ref": ref, "when": when.isoformat()}))
        return feed

    def extend_rss(self, feed: Any) -> Any:
        return feed


def atom_feed(
    stories: Sequence[Story],
    config: PublishConfig,
    page: FeedPage = MAIN,
    *,
    bylines: Mapping[int, Byline] | None = None,
    deleted: Sequence[Story] = (),
    updated: datetime | None = None,
    on_skip: SkipHandler | None = None,
) -> bytes:
    """An Atom 1.0 document of ``stories`` in the order given. ``updated`` is used only when no story renders. Each
    entry's author is its byline (``bylines``, by story id); a story without one is credited to ``[publish]
    author``. ``deleted``: hidden stories the document would hold, each an ``at:deleted-entry`` (RFC 6721) dated
    when it was hidden; hiding moved their ``updated``, so the document's ``updated`` moves too."""
    gone = [(_text(s.uid), s.hidden_at or s.updated) for s in deleted if _text(s.uid)]
    home = base_url(config)
    byline_of = bylines or {}

    def make(story: Story) -> FeedEntry:
        _check(story)
        fe = FeedEntry()
        fe.register_extension("links", _EntryLink, atom=True, rss=False)
        fe.id(_text(story.uid))
        fe.title(_title(story))
        fe.updated(story.updated)
        fe.published(_published(story))
        fe.author({"name": _byline(byline_of.get(story.id)) or _text(config.author) or home})
        fe.link(href=entry_link(config, story), rel="alternate")
        summary = _text(story.summary)
        if summary:
            fe.summary(summary, type="text")
        content = _content(story)
        if content:
            fe.content(content, type="html")  # escaped text, never CDATA: "]]>" in the HTML cannot end it
        for tag in _tags(story):
            fe.category(term=tag)
        return fe

    def finish(entries: list[tuple[Story, FeedEntry]]) -> bytes:
        fg = FeedGenerator()
        _feed_head(fg, config, page, feed_updated([*(s for s, _ in entries), *deleted]) or updated or EPOCH)
        fg.link(href=feed_url(config, page.path), rel="self", type=ATOM_TYPE)
        if not page.archive:  # an archive page never changes: nothing to subscribe to at a hub
            for hub in config.websub_hubs:
                fg.link(href=hub, rel="hub")
        fg.link(href=home, rel="alternate", type=HTML_TYPE)
        history = (("current", page.current), ("prev-archive", page.prev_archive), ("next-archive", page.next_archive))
        for rel, path in history:
            if path:
                fg.link(href=feed_url(config, path), rel=rel, type=ATOM_TYPE)
        if page.archive:
            fg.register_extension("history", _History, None, atom=True, rss=False)
        if gone:
            fg.register_extension("tombstones", _Tombstones, None, atom=True, rss=False)
            fg.tombstones.gone = gone
        for _, fe in entries:
            fg.add_entry(fe, order="append")
        body: bytes = fg.atom_str(pretty=True, encoding="UTF-8", xml_declaration=True)
        return body

    return _build(stories, make, lambda fe: fe.atom_entry(), finish, on_skip)


def rss_feed(
    stories: Sequence[Story],
    config: PublishConfig,
    page: FeedPage = FeedPage(path="feed.rss"),
    *,
    updated: datetime | None = None,
    on_skip: SkipHandler | None = None,
) -> bytes:
    """The RSS 2.0 twin: the same entries; ``guid`` is the Atom id; HTML content in ``content:encoded``."""
    home = base_url(config)

    def make(story: Story) -> FeedEntry:
        _check(story)
        fe = FeedEntry()
        fe.guid(_text(story.uid), permalink=False)
        fe.title(_title(story))
        fe.link(href=entry_link(config, story), rel="alternate")
        fe.published(_published(story))
        content = _content(story)
        if content:
            fe.content(content)
        summary = _text(story.summary)
        # RSS <description> is HTML: plain text is escaped once more, or "<script>" in a blurb would be markup.
        fe.description(html.escape(summary or _title(story), quote=False))
        for tag in _tags(story):
            fe.category(term=tag)
        return fe

    def finish(entries: list[tuple[Story, FeedEntry]]) -> bytes:
        fg = FeedGenerator()
        _feed_head(fg, config, page, feed_updated([s for s, _ in entries]) or updated or EPOCH)
        fg.link(href=feed_url(config, page.path), rel="self", type=RSS_TYPE)
        fg.link(href=home, rel="alternate")  # last: feedgen takes RSS's <link> from the last link given
        for _, fe in entries:
            fg.add_entry(fe, order="append")
        body: bytes = fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
        return body

    return _build(stories, make, lambda fe: fe.rss_entry(), finish, on_skip)


def json_feed(
    stories: Sequence[Story],
    config: PublishConfig,
    page: FeedPage = FeedPage(path="feed.json"),
    *,
    bylines: Mapping[int, Byline] | None = None,
    on_skip: SkipHandler | None = None,
) -> bytes:
    """The JSON Feed 1.1 twin (https://jsonfeed.org/version/1.1)."""
    home = base_url(config)
    byline_of = bylines or {}

    def make(story: Story) -> dict[str, Any]:
        _check(story)
        item: dict[str, Any] = {
            "id": _text(story.uid),
            "url": entry_link(config, story),
            "title": _title(story),
        }
        content = _content(story)
        summary = _text(story.summary)
        if content:
            item["content_html"] = content
        else:
            item["content_text"] = summary or _title(story)
        if summary:
            item["summary"] = summary
        item["date_published"] = _published(story).isoformat()
        item["date_modified"] = story.updated.isoformat()
        author = _byline(byline_of.get(story.id))
        if author:
            item["authors"] = [{"name": author}]
        tags = _tags(story)
        if tags:
            item["tags"] = tags
        if not item["id"]:
            raise ValueError("story has no uid")
        return item

    def finish(items: list[tuple[Story, dict[str, Any]]]) -> bytes:
        doc = {
            "version": JSON_FEED_VERSION,
            "title": _text(page.title or config.title) or home,
            "home_page_url": home,
            "feed_url": feed_url(config, page.path),
            "description": _text(config.subtitle),
            "authors": [{"name": _text(config.author) or home}],
            "items": [item for _, item in items],
        }
        return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")

    return _build(stories, make, lambda item: json.dumps(item, ensure_ascii=False).encode("utf-8"), finish, on_skip)

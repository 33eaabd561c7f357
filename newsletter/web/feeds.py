"""The feed routes: published documents served with strong ETags, Last-Modified, 304s, gzip, HEAD. Renders no feed.

Before answering, the folder is brought up to the database's publish generation (one primary-key read when it is
there already; see :class:`newsletter.publish.Publisher`): every replica serves what the database holds, whichever
process ingested it. Documents come from ``[publish] dir`` and are kept in memory, with their gzip twin and
validators, until the file changes (one ``stat`` per request; publishing replaces files, so a new inode or mtime
means new bytes). A document whose file is missing (or that could not be published) is built from the store on
demand. The HTTP rules are in
:mod:`newsletter.web.conditional`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ingest.core.config import Settings
from ingest.core.errors import NewsletterError
from ingest.store import Store
from ingest.topics import taxonomy_of
from newsletter.publish import ATOM_TYPE, JSON_TYPE, RSS_TYPE, Publisher, archive_name, document, topic_name
from newsletter.web.conditional import Document, respond
from newsletter.web.pages import not_found_page

__all__ = ["FeedFiles", "feed_routes"]

ATOM = f"{ATOM_TYPE}; charset=utf-8"
RSS = f"{RSS_TYPE}; charset=utf-8"
JSON = f"{JSON_TYPE}; charset=utf-8"
#: The current feeds change at each publish; archive pages almost never (see newsletter.publish).
CURRENT_MAX_AGE = 300
ARCHIVE_MAX_AGE = 86_400

log = logging.getLogger("newsletter.web")


class FeedFiles:
    """The published folder, read through a small LRU cache keyed by each file's identity (inode, size, mtime).

    Bounded: a crawler walking a thousand archive pages must not keep them all in memory.
    """

    def __init__(self, folder: Path, size: int = 64) -> None:
        self.folder = folder
        self.size = size
        self._cache: OrderedDict[str, tuple[tuple[int, int, int], Document]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> Document | None:
        path = self.folder / name
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and hit[0] == key:
                self._cache.move_to_end(name)
                return hit[1]
        try:
            body = path.read_bytes()
        except FileNotFoundError:  # replaced between stat and open: the next request sees the new file
            return None
        doc = Document.of(body, st.st_mtime)
        with self._lock:
            self._cache[name] = (key, doc)
            self._cache.move_to_end(name)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return doc


def feed_routes(settings: Settings, store: Store, files: FeedFiles, publisher: Publisher) -> list[Route]:
    """``/feed.atom``, ``/feed.rss``, ``/feed.json``, ``/tags/{tag}.atom``, ``/topics/{slug}.atom`` and
    ``/archive/{n}.atom``."""
    topics = taxonomy_of(settings.topics).names

    def current() -> bool:
        try:
            publisher.current(datetime.now(UTC))
        except NewsletterError as exc:  # a folder that cannot be written: the documents are built from the store
            log.warning("serving feeds built on demand: %s", exc)
            return False
        return True

    async def serve(request: Request, name: str, media_type: str, max_age: int) -> Response:
        doc = files.get(name) if await run_in_threadpool(current) else None
        if doc is None:
            # Not published yet (or deleted): build it now. Its Last-Modified is when it was built.
            body = await run_in_threadpool(lambda: document(store, settings, name, topics=topics))
            if body is None:
                return _not_found(request)
            doc = Document.of(body, time.time())
        return respond(request, doc, media_type, max_age)

    def fixed(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await serve(request, name, media_type, CURRENT_MAX_AGE)

        return endpoint

    async def tag_feed(request: Request) -> Response:
        slug = request.path_params["tag"]
        if not _is_slug(slug):
            return _not_found(request)
        return await serve(request, f"tags/{slug}.atom", ATOM, CURRENT_MAX_AGE)

    async def topic_feed(request: Request) -> Response:
        slug = request.path_params["slug"]
        if slug not in topics:  # only the taxonomy's: a file left by an older taxonomy is not served
            return _not_found(request)
        return await serve(request, topic_name(slug), ATOM, CURRENT_MAX_AGE)

    async def archive_page(request: Request) -> Response:
        page = int(request.path_params["page"])
        if page < 1:
            return _not_found(request)
        return await serve(request, archive_name(page), ATOM, ARCHIVE_MAX_AGE)

    return [
        Route("/feed.atom", fixed("feed.atom", ATOM), methods=["GET", "HEAD"]),
        Route("/feed.rss", fixed("feed.rss", RSS), methods=["GET", "HEAD"]),
        Route("/feed.json", fixed("feed.json", JSON), methods=["GET", "HEAD"]),
        Route("/tags/{tag}.atom", tag_feed, methods=["GET", "HEAD"]),
        Route("/topics/{slug}.atom", topic_feed, methods=["GET", "HEAD"]),
        Route("/archive/{page:int}.atom", archive_page, methods=["GET", "HEAD"]),
    ]


def _is_slug(value: str) -> bool:
    # Only names publish can make (see newsletter.publish.tag_slug): never "..", a slash or a hidden file.
    return 0 < len(value) <= 80 and value[0] != "-" and all(c.isascii() and (c.isalnum() or c == "-") for c in value)


def _not_found(request: Request) -> Response:
    return not_found_page(request)

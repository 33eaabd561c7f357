"""One pass over the due feeds: fetch, parse, decide the source's new state, store entries and state together.

A pipeline: a fetch thread leases the next batch of due feeds while those fetched are parsed and stored. Fetched feeds
are stored :data:`SAVE_BATCH` to a transaction (feeds without entries, :data:`STATES_BATCH` to one), each with its
new state, as saving them one by one would; a feed whose save fails falls back to a transaction of its own, so one
failing feed never stops the others and never deletes what it brought before. Entries a feed carried when last stored
are skipped by the parse and only marked seen. The clock (``now``) and the jitter's random source are passed in.
"""

from __future__ import annotations

import os
import queue
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ingest.core.config import SeedsConfig, Settings
from ingest.core.errors import PageError
from ingest.core.models import FeedState, SaveResult, Source, SourceReport, SourceStatus
from ingest.discover import find_on_site
from ingest.fetch import FetchRequest, FetchResult, fetch_stream_sync
from ingest.parse import ParsedFeed
from ingest.parse.normalize import failed
from ingest.polling import failing_since, next_check, should_pause
from ingest.run import sync_config_feeds
from ingest.seeds import parse_page
from ingest.store import Store
from ingest.topics import tag_items, taxonomy_of
from ingest.webpage import page_text
from ingest.workers import ParsePool


def feed_state(
    result: FetchResult,
    parsed: ParsedFeed | None,
    source: Source,
    *,
    default_interval: float,
    now: datetime,
    rng: random.Random,
    pause_after_days: float = 0,
) -> FeedState:
    """The source's state after ``result`` (and ``parsed``, for a 200). Pure. A failure that makes the streak
    ``pause_after_days`` long pauses the feed (see :mod:`ingest.polling`)."""
    outcome = result.outcome
    status: SourceStatus = "active"
    error, warning = result.error, None
    success = outcome in ("ok", "not_modified")
    ttl = None
    if outcome == "ok" and parsed is not None:
        ttl = parsed.ttl
        warning = parsed.warning
        if parsed.kind == "empty":
            status, warning = "empty", parsed.error or "the feed has no entries"
        elif parsed.kind == "not_a_feed":
            status, error, success = "not_a_feed", parsed.error, False
            outcome = "error"  # counts as a failure and backs off
    elif outcome == "gone":
        status = "gone"
    elif not success:
        status = "failing"
    when, errors = next_check(
        outcome=outcome,
        now=now,
        interval_minutes=source.interval or default_interval,
        error_count=source.error_count,
        retry_after=result.retry_after,
        max_age=result.max_age,
        ttl_minutes=ttl,
        rng=rng,
    )
    since = None
    if status in ("failing", "not_a_feed"):
        since = failing_since(
            previous=source.failing_since,
            error_count=source.error_count,
            last_success=source.last_success_at,
            created=source.created_at,
            now=now,
        )
        if should_pause(since, now, pause_after_days):
            status, when = "paused", None
            warning = f"paused: failing since {since:%Y-%m-%d}; `newsletter feeds resume {source.id}` tries it again"
    elif status == "gone":
        since = source.failing_since
    fresh = result.outcome == "ok" and parsed is not None and parsed.kind == "feed"
    return FeedState(
        status=status,
        last_status=result.status,
        error_count=errors,
        next_check_at=when,
        last_error=error,
        warning=warning,
        etag=result.etag if fresh else None,
        last_modified=result.last_modified if fresh else None,
        store_validators=fresh,
        url=result.permanent_url,
        success=success,
        title=parsed.title if parsed is not None else None,
        site_url=parsed.link if parsed is not None else None,
        failing_since=since,
    )


#: Feeds leased at a time per fetch worker: small enough that processes sharing a database share a pass, large
#: enough that a batch's slowest feed seldom leaves the workers idle.
BATCH_PER_WORKER = 4
#: Leased batches a pass may hold at once, fetched but not stored yet: the fetch thread leases the next batch while
#: the last one is parsed and stored, and waits when this many are in hand (the store is the slower end).
BATCHES_IN_HAND = 4
#: Feeds with entries stored in one transaction: a commit costs about as much as storing a feed of 50 entries (on
#: SQLite it writes every page the feed changed, and the blocking keys' index pages are scattered), and feeds
#: stored together share it.
SAVE_BATCH = 16
#: Feeds without entries (304s, failures) whose states are written in one transaction.
STATES_BATCH = 64
#: How long the storing thread waits for the next fetched feed before storing what it holds.
IDLE_FLUSH = 0.05


def process_owner() -> str:
    """Who holds a lease: this host and process, and a random part (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def ingest_feeds(
    store: Store,
    settings: Settings,
    now: datetime,
    *,
    force: bool = False,
    rng: random.Random | None = None,
    on_progress: Callable[[SourceReport, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    owner: str | None = None,
    parse_workers: int | None = None,
) -> list[SourceReport]:
    """Fetch every due feed (every live feed with ``force``) and store what each brought.

    Feeds are leased in batches (a few times ``[fetch] concurrency``), so processes sharing a database share the
    work and each feed is fetched by one of them per due time; a killed process's leases run out and its feeds come
    back. ``stop`` is asked before each batch is leased. Fetching runs in a thread of its own, leasing the next batch
    while the last ones are parsed and stored; with many feeds due, parsing runs in worker processes
    (``parse_workers``: None picks by CPU count, 0 parses inline) while this thread stores, several feeds a
    transaction.
    """
    sync_config_feeds(store, settings, now)
    total = store.count_due_feeds(now, force=force)  # for progress only: other processes may take some
    if parse_workers is None:
        parse_workers = max(1, min(4, (os.cpu_count() or 1) - 1)) if total >= PARALLEL_PARSE_MIN else 0
    reports: list[SourceReport] = []
    with ParsePool(parse_workers) as parser:
        feed_pass = _FeedPass(store, settings, parser, now=now, force=force, owner=owner or process_owner(), stop=stop)
        for report in feed_pass.run(rng or random.Random()):
            reports.append(report)
            if on_progress is not None:
                on_progress(report, total)
    return reports


#: Below this many due feeds, starting worker processes costs more than parsing inline saves.
PARALLEL_PARSE_MIN = 16


_FETCHED_ALL = object()


class _FeedPass:
    """One pass: the fetch thread leases batches and fetches them (handing each body to the parse workers as it
    arrives); the calling thread takes the feeds in the order their fetches ended, waits for their parses, and
    stores them several at a time. Fetching, parsing and storing overlap, across batches too."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        parser: ParsePool,
        *,
        now: datetime,
        force: bool,
        owner: str,
        stop: Callable[[], bool] | None,
    ) -> None:
        self.store, self.settings, self.parser = store, settings, parser
        self.now, self.force, self.owner, self.stop = now, force, owner, stop
        self.started = time.monotonic()
        # A lease must outlast the batch: each worker's share of it, each fetch taking the whole deadline at worst.
        self.lease = timedelta(
            seconds=settings.fetch.lease_seconds or (BATCH_PER_WORKER + 1) * settings.fetch.timeout + 60
        )
        self.batch = settings.fetch.concurrency * BATCH_PER_WORKER
        self.sources: dict[int, Source] = {}  # leased and not stored yet
        self.known: dict[int, frozenset[str]] = {}  # their entries' keys stored already (Store.known_keys)
        self.room = threading.Condition()
        self.ended = False  # the storing side gave up: lease no more
        self.arrived: queue.Queue[object] = queue.Queue()
        self.taxonomy = taxonomy_of(settings.topics)

    def run(self, rng: random.Random) -> Iterator[SourceReport]:
        failure: list[BaseException] = []

        def fetch() -> None:
            try:
                fetch_stream_sync(self._lease, self.settings.fetch, self._fetched, clock=lambda: self.now)
            except BaseException as exc:  # a bug: raised again in the storing thread
                failure.append(exc)
            finally:
                self.arrived.put(_FETCHED_ALL)

        fetcher = threading.Thread(target=fetch, name="fetch", daemon=True)
        fetcher.start()
        done: list[tuple[Source, FetchResult, FeedState, ParsedFeed | None]] = []
        try:
            while True:
                try:
                    item = self.arrived.get(timeout=IDLE_FLUSH if done else None)
                except queue.Empty:  # nothing more for now: store what is in hand rather than wait
                    yield from self._store(done)
                    done = []
                    continue
                if item is _FETCHED_ALL:
                    break
                assert isinstance(item, tuple)
                source, result, future = item
                parsed = self._parsed(source, result, future)
                state = feed_state(
                    result,
                    parsed,
                    source,
                    default_interval=self.settings.fetch.interval,
                    now=self.now,
                    rng=rng,
                    pause_after_days=self.settings.fetch.pause_after_days,
                )
                done.append((source, result, state, parsed if parsed is not None and parsed.kind == "feed" else None))
                with_entries = sum(1 for *_, p in done if p is not None)
                if with_entries >= SAVE_BATCH or len(done) >= STATES_BATCH:
                    yield from self._store(done)
                    done = []
            fetcher.join()
            if failure:
                raise failure[0]
            yield from self._store(done)
        finally:
            with self.room:
                self.ended = True
                self.room.notify_all()

    def _lease(self) -> list[FetchRequest]:
        """The next batch to fetch (in the fetch thread), once fewer than BATCHES_IN_HAND batches are in hand."""
        with self.room:
            while len(self.sources) >= BATCHES_IN_HAND * self.batch and not self.ended:
                self.room.wait()
            if self.ended or (self.stop is not None and self.stop()):
                return []
        moment = self.now + timedelta(seconds=time.monotonic() - self.started)
        claimed = self.store.claim_due_feeds(
            self.now, owner=self.owner, lease_until=moment + self.lease, limit=self.batch, force=self.force
        )
        # A feed never stored has nothing to skip (ask nothing); a live page is read whole (ingest.seeds).
        stored = [s.id for s in claimed if s.sightings and s.kind == "feed"]
        known = self.store.known_keys(stored) if stored else {}
        with self.room:
            self.sources.update((s.id, s) for s in claimed)
            self.known.update(known)
        return [
            FetchRequest(source_id=s.id, url=s.url or s.location, etag=s.etag, last_modified=s.last_modified)
            for s in claimed
        ]

    def _fetched(self, result: FetchResult) -> None:
        """A fetch ended (in the fetch thread): its body goes to a parse worker at once."""
        with self.room:
            source = self.sources[result.request.source_id]
            known = self.known.get(source.id, frozenset())
        future = None
        if self.parser.workers and source.kind == "feed":  # a live page is read in the storing thread (_parse)
            future = _parse(self.parser, result, source, self.settings, self.now, known=known)
        self.arrived.put((source, result, future))

    def _parsed(self, source: Source, result: FetchResult, future: Future[ParsedFeed] | None) -> ParsedFeed | None:
        if future is None and (not self.parser.workers or source.kind == "page"):
            with self.room:
                known = self.known.get(source.id, frozenset())
            future = _parse(self.parser, result, source, self.settings, self.now, known=known)  # inline, in this thread
        return future.result() if future is not None else None

    def _store(self, done: list[tuple[Source, FetchResult, FeedState, ParsedFeed | None]]) -> Iterator[SourceReport]:
        if not done:
            return
        saved = self.store.save_feeds(
            [
                (source.id, tag_items(parsed.items, self.taxonomy) if parsed is not None else (), state)
                for source, _, state, parsed in done
            ],
            self.now,
            known={source.id: parsed.known for source, _, _, parsed in done if parsed is not None and parsed.known},
        )
        with self.room:
            for source, *_ in done:
                del self.sources[source.id]
                self.known.pop(source.id, None)
            self.room.notify_all()
        for source, result, state, parsed in done:
            turned = _broken(state.status, state.last_status) and not _broken(source.status, source.last_status)
            if parsed is None and source.kind == "feed" and turned:
                _suggest(self.store, self.settings, source, result, self.now)
        for (source, result, state, parsed), s in zip(done, saved, strict=True):
            yield _report(source, result, state, s if parsed is not None else None)


def _broken(status: SourceStatus, http_status: int | None) -> bool:
    """Not a feed any more, not found, or gone: the feed may have moved (a timeout or a 500 says nothing of that)."""
    return status in ("not_a_feed", "gone") or http_status == 404


def _suggest(store: Store, settings: Settings, source: Source, result: FetchResult, now: datetime) -> None:
    """A feed that just broke: look for a feed on its site, once, and offer it to the operator (``feeds move``)."""
    current = source.url or source.location
    own = {source.location, current, result.final_url}
    found = find_on_site(current, settings.fetch, now, exclude=sorted(own))
    if found is not None:
        store.suggest_url(source.id, found.url)


def _parse(
    parser: ParsePool, result: FetchResult, source: Source, settings: Settings, now: datetime, *, known: frozenset[str]
) -> Future[ParsedFeed] | None:
    if result.outcome != "ok" or result.body is None:
        return None
    if source.kind == "page":  # a live page: read here (lxml and readability), not in the feed parser's workers
        done: Future[ParsedFeed] = Future()
        done.set_result(read_live_page(result, source, settings.seeds))
        return done
    # Keys of guid-less entries depend on the base URL: use the feed's own (adopted) URL, never a temporary
    # redirect's target, so they stay stable from fetch to fetch.
    base = result.permanent_url or source.url or source.location
    return parser.submit(
        result.body,
        url=base,
        headers=result.headers,
        tags=source.tags,
        now=now,
        max_entries=settings.fetch.max_entries,
        known=known,
    )


def read_live_page(result: FetchResult, source: Source, seeds: SeedsConfig) -> ParsedFeed:
    """A fetched article page as the seed parser reads a saved one (its article, boilerplate, rail of teasers),
    with the links the HTML has: the page's canonical URL for its article, each teaser's own link."""
    url = result.final_url
    assert result.body is not None
    try:
        content_type = result.headers.get("content-type", "")
        text = page_text(result.body, url, boilerplate=seeds.boilerplate, content_type=content_type)
        if text is None or not text.text.strip():
            return failed(
                "not_a_feed", f"{url}: no article or teasers found in the page; expected an HTML article page"
            )
        page = parse_page(
            text.text.encode(),
            name=url,
            boilerplate=seeds.boilerplate,
            tz=ZoneInfo(seeds.timezone),
            max_bytes=seeds.max_bytes,
            title_max_chars=seeds.title_max_chars,
        )
    except PageError as exc:
        return failed("not_a_feed", str(exc))
    items = tuple(
        replace(
            item,
            link=text.canonical if item.kind == "article" else text.links.get(item.title),
            tags=tuple(dict.fromkeys((*item.tags, *source.tags))),
        )
        for item in page.items
    )
    warning = "; ".join(page.warnings) or None
    return ParsedFeed("feed", None, text.canonical, items, None, warning, None)


def _report(source: Source, result: FetchResult, state: FeedState, saved: SaveResult | None) -> SourceReport:
    return SourceReport(
        location=source.location,
        new=saved.new if saved else 0,
        seen=saved.seen if saved else 0,
        new_stories=saved.new_stories if saved else 0,
        unchanged=result.outcome == "not_modified",
        error=None if state.success else (state.last_error or state.status),
        warning=state.warning,
        fetch_seconds=result.elapsed,
    )

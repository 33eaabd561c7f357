"""One pass over the due feeds: fetch, parse, decide the source's new state, store entries and state together.

Each feed is stored in its own transaction as soon as its fetch ends; one failing feed never stops the others and
never deletes what it brought before. The clock (``now``) and the jitter's random source are passed in.
"""

from __future__ import annotations

import os
import queue
import random
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ingest.core.config import SeedsConfig, Settings
from ingest.core.errors import PageError
from ingest.core.models import FeedState, SaveResult, Source, SourceReport, SourceStatus
from ingest.discover import find_on_site
from ingest.fetch import FetchRequest, FetchResult, fetch_all_sync
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
    back. ``stop`` is asked between batches. Fetching runs in a thread of its own; with many feeds due, parsing runs
    in worker processes (``parse_workers``: None picks by CPU count, 0 parses inline) while this thread stores.
    """
    sync_config_feeds(store, settings, now)
    total = store.count_due_feeds(now, force=force)  # for progress only: other processes may take some
    rng = rng or random.Random()
    owner = owner or process_owner()
    started = time.monotonic()
    # A lease must outlast the batch: each worker's share of it, each fetch taking the whole deadline at worst.
    lease = timedelta(seconds=settings.fetch.lease_seconds or (BATCH_PER_WORKER + 1) * settings.fetch.timeout + 60)
    if parse_workers is None:
        parse_workers = max(1, min(4, (os.cpu_count() or 1) - 1)) if total >= PARALLEL_PARSE_MIN else 0
    reports: list[SourceReport] = []
    with ParsePool(parse_workers) as parser:
        while stop is None or not stop():
            moment = now + timedelta(seconds=time.monotonic() - started)
            claimed = store.claim_due_feeds(
                now,
                owner=owner,
                lease_until=moment + lease,
                limit=settings.fetch.concurrency * BATCH_PER_WORKER,
                force=force,
            )
            if not claimed:
                break
            for report in _fetch_and_store(store, settings, claimed, parser, now=now, rng=rng):
                reports.append(report)
                if on_progress is not None:
                    on_progress(report, total)
    return reports


#: Below this many due feeds, starting worker processes costs more than parsing inline saves.
PARALLEL_PARSE_MIN = 16


_FETCHED_ALL = object()


def _fetch_and_store(
    store: Store,
    settings: Settings,
    sources: list[Source],
    parser: ParsePool,
    *,
    now: datetime,
    rng: random.Random,
) -> list[SourceReport]:
    """Fetch a batch in a thread; hand each body to the parser as it arrives; store feeds in arrival order as their
    parses finish, each in its own transaction. Fetching, parsing and storing overlap."""
    due = {s.id: s for s in sources}
    taxonomy = taxonomy_of(settings.topics)
    requests = [
        FetchRequest(source_id=s.id, url=s.url or s.location, etag=s.etag, last_modified=s.last_modified)
        for s in sources
    ]
    arrived: queue.Queue[object] = queue.Queue()
    failure: list[BaseException] = []

    def fetch() -> None:
        try:
            fetch_all_sync(requests, settings.fetch, on_result=arrived.put, clock=lambda: now)
        except BaseException as exc:  # a bug: raised again in the storing thread
            failure.append(exc)
        finally:
            arrived.put(_FETCHED_ALL)

    fetcher = threading.Thread(target=fetch, name="fetch", daemon=True)
    fetcher.start()
    pending: deque[tuple[FetchResult, Future[ParsedFeed] | None]] = deque()
    reports: list[SourceReport] = []
    stateless: list[tuple[Source, FetchResult, FeedState]] = []
    fetching = True
    while fetching or pending:
        head_ready = bool(pending) and (pending[0][1] is None or pending[0][1].done())
        try:
            item = arrived.get(block=not head_ready, timeout=None if not pending else 0.02)
        except queue.Empty:
            item = None
        if item is _FETCHED_ALL:
            fetching = False
        elif isinstance(item, FetchResult):
            pending.append((item, _parse(parser, item, due[item.request.source_id], settings, now)))
        while pending and (pending[0][1] is None or pending[0][1].done() or not fetching):
            result, future = pending.popleft()
            parsed = future.result() if future is not None else None
            source = due[result.request.source_id]
            state = feed_state(
                result,
                parsed,
                source,
                default_interval=settings.fetch.interval,
                now=now,
                rng=rng,
                pause_after_days=settings.fetch.pause_after_days,
            )
            if parsed is not None and parsed.kind == "feed":
                saved = store.save_feed(source.id, tag_items(parsed.items, taxonomy), state, now)
                reports.append(_report(source, result, state, saved))
            else:  # nothing to store but its state: written with the others of the batch, in one transaction
                stateless.append((source, result, state))
    fetcher.join()
    if failure:
        raise failure[0]
    store.save_feed_states([(source.id, state) for source, _, state in stateless], now)
    reports.extend(_report(source, result, state, None) for source, result, state in stateless)
    for source, result, state in stateless:
        turned = _broken(state.status, state.last_status) and not _broken(source.status, source.last_status)
        if source.kind == "feed" and turned:
            _suggest(store, settings, source, result, now)
    return reports


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
    parser: ParsePool, result: FetchResult, source: Source, settings: Settings, now: datetime
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

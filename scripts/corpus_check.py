"""Serve every file of a folder on 127.0.0.1 and ingest it through the real fetch, parse, normalize and store path.

    .venv/bin/python scripts/corpus_check.py ../shared/corpora/feedparser-6.0.14 [--verbose]

Each file is served at ``/<its path in the folder>`` the way feedparser's own test server serves its corpus:
``Header: Name: value`` comment lines in the file become response headers, ``Header: Status: 302`` sets the status,
a matching If-None-Match / If-Modified-Since gets a 304, ``/-/return-304.xml`` always answers 304, and Location
headers pointing at feedparser's server (``http://localhost:8097/tests/...``) are rewritten to point here. Files
with no Content-Type of their own are served as ``application/xml``.

Every URL is added as a feed to a fresh temporary store, and :func:`ingest.feeds.ingest_feeds` runs twice: the first
pass (all new) and a second, conditional one a day later (nothing may be new: keys must be stable). ``parse_feed`` is
wrapped, never replaced, so the script sees what the parser returned for each feed.

Reported: crashes (an exception escaping ``ingest_feeds``, pinned to its feed), entries lost compared with
``feedparser.parse`` on the bytes and headers finally served (entries dropped as repeats of a key within one feed are
counted apart, not as lost), with the stage that lost them (fetch, parse, store), and the sources' states.
Exit code 1 when anything crashed or was lost. Reads the folder; writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import mimetypes
import random
import re
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import feedparser

import ingest.feeds
from ingest.core.config import Settings, load_settings
from ingest.feeds import ingest_feeds
from ingest.fetch import FetchResult
from ingest.parse import ParsedFeed
from ingest.store import Store

# feedparser's test server reads headers with this very pattern (tests/conftest.py of feedparser 6).
_HEADER = re.compile(rb"^Header:\s+([^:]+):(.+)$", re.MULTILINE)
_FEEDPARSER_SERVER = re.compile(r"^http://(?:localhost|127\.0\.0\.1):8097/(?:tests/)?")
_ALWAYS_304 = "/-/return-304.xml"
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
MAX_HOPS = 10


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]  # as sent, values latin-1 (the file's bytes, unchanged)
    body: bytes


@dataclass(slots=True)
class Outcome:
    """What happened to one served file."""

    rel: str
    url: str
    expected: int = 0  # feedparser's entries for the bytes finally served (0 if the chain does not end in a 200)
    reference_error: str | None = None
    parsed: ParsedFeed | None = None
    crash: str | None = None
    stored: int = 0
    status: str = "?"
    last_status: int | None = None
    error: str | None = None
    warning: str | None = None
    adopted: str | None = None  # the URL a 301/308 made the source's own


class Corpus:
    """The files of a folder as answers, keyed by request path."""

    def __init__(self, folder: Path) -> None:
        self.files = {
            "/" + p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        self.base = ""  # http://127.0.0.1:PORT, set once the server listens

    def answer(self, path: str, request_headers: dict[str, str]) -> Answer:
        if path == _ALWAYS_304:
            return Answer(304, (("Content-Type", "text/xml"),), b"")
        body = self.files.get(path)
        if body is None:
            return Answer(404, (("Content-Type", "text/plain"),), b"not found")
        declared = {
            k.decode("latin-1").strip(): v.decode("latin-1").strip() for k, v in _HEADER.findall(body)
        }  # later lines win, as in feedparser's server
        by_lower = {k.lower(): v for k, v in declared.items()}
        status = 200
        if request_headers.get("if-none-match") == by_lower.get("etag", "\0") or request_headers.get(
            "if-modified-since"
        ) == by_lower.get("last-modified", "\0"):
            status = 304
        if "status" in by_lower:
            status = int(by_lower["status"])
        headers: list[tuple[str, str]] = []
        if "content-type" not in by_lower:
            headers.append(("Content-Type", mimetypes.guess_type(path)[0] or "application/xml"))
        for name, value in declared.items():
            if name.lower() == "status":
                continue
            sent = _FEEDPARSER_SERVER.sub(self.base + "/", value) if name.lower() == "location" else value
            headers.append((name, sent))
        return Answer(status, tuple(headers), b"" if status == 304 else body)

    def final(self, path: str) -> tuple[Answer | None, str]:
        """The answer a client ends with after following redirects from ``path`` (no validators sent)."""
        for _ in range(MAX_HOPS + 1):
            answer = self.answer(path, {})
            location = dict((k.lower(), v) for k, v in answer.headers).get("location")
            if answer.status not in (301, 302, 303, 307, 308) or not location:
                return answer, path
            if not location.startswith(self.base + "/"):
                return None, path
            path = location.removeprefix(self.base)
        return None, path


def make_handler(corpus: Corpus) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length or no body

        def do_GET(self) -> None:
            answer = corpus.answer(self.path.split("?", 1)[0], {k.lower(): v for k, v in self.headers.items()})
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            if answer.status != 304:
                self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up (a crash, a cancel) is no news
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serving(corpus: Corpus) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), make_handler(corpus))
    corpus.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield corpus.base
    finally:
        server.shutdown()
        server.server_close()


def reference_count(answer: Answer | None) -> tuple[int, str | None]:
    """feedparser's own entry count for what was finally served: the bytes and the response headers."""
    if answer is None or answer.status != 200:
        return 0, None
    headers = {k.lower(): v for k, v in answer.headers}
    try:
        parsed = feedparser.parse(io.BytesIO(answer.body), response_headers=headers)
    except Exception as exc:  # plain feedparser crashes on some hostile input; counted as 0 entries
        return 0, f"{type(exc).__name__}: {exc}"
    return len(parsed.get("entries") or ()), None


class Tracker:
    """Watches ingest_feeds through what it calls: the parse of each body, and the store step of each feed.

    Both are wrapped, never replaced: the real functions run, and the tracker learns what the parser returned for
    each feed and which feed is being stored or having its parse result read (so that a crash there is pinned to
    it). Parsing may run in worker processes; the result is read, and recorded, in the storing thread.
    """

    def __init__(self, by_id: dict[int, Outcome]) -> None:
        self.by_id = by_id
        self.in_flight: Outcome | None = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        namespace = vars(ingest.feeds)  # the names ingest_feeds calls, looked up at call time
        real_parse: Callable[..., Any] = namespace["_parse"]
        real_state: Callable[..., Any] = namespace["feed_state"]
        tracker = self

        class Watched:
            """The parse's future, as the storing loop uses it (done, result), noting what it yields."""

            def __init__(self, future: Any, outcome: Outcome | None) -> None:
                self.future, self.outcome = future, outcome

            def done(self) -> bool:
                return bool(self.future.done())

            def result(self) -> ParsedFeed:
                tracker.in_flight = self.outcome
                parsed: ParsedFeed = self.future.result()
                if self.outcome is not None:
                    self.outcome.parsed = parsed
                return parsed

        def _parse(parser: Any, result: FetchResult, source: Any) -> Any:
            future = real_parse(parser, result, source)
            return None if future is None else Watched(future, self.by_id.get(source.id))

        def feed_state(result: FetchResult, parsed: Any, source: Any, **kwargs: Any) -> Any:
            self.in_flight = self.by_id.get(source.id)
            return real_state(result, parsed, source, **kwargs)

        namespace["_parse"], namespace["feed_state"] = _parse, feed_state
        try:
            yield
        finally:
            namespace["_parse"], namespace["feed_state"] = real_parse, real_state


OWNER = "corpus-check"


def run_pass(store: Store, settings: Settings, now: datetime, tracker: Tracker, *, force: bool) -> int:
    """One ``ingest_feeds`` pass; a crash is pinned to its feed, which is removed, and the pass resumes.

    A feed fetched in this pass (``last_fetch_at == now``) is not taken again, so resuming redoes only the rest; the
    leases the crashed call held are released first."""
    crashes = 0
    while True:
        tracker.in_flight = None
        try:
            with tracker.watching():
                ingest_feeds(store, settings, now, force=force, rng=random.Random(1), owner=OWNER)
            return crashes
        except Exception:  # the point of this script is to count these
            text = traceback.format_exc(limit=6)
            store.release_feeds(OWNER, list(tracker.by_id))
            culprit = tracker.in_flight or isolate(store, settings, now, tracker)
            crashes += 1
            if culprit is None:
                print(f"CRASH not pinned to a feed:\n{text}")
                return crashes
            culprit.crash = culprit.crash or text
            store.remove_feed(next(sid for sid, o in tracker.by_id.items() if o is culprit))


def isolate(store: Store, settings: Settings, now: datetime, tracker: Tracker) -> Outcome | None:
    """Find the feed that crashes (a bug in fetch has no parse to pin it to) by ingesting the rest one by one."""
    rest = [
        s
        for s in store.sources("feed")
        if s.status not in ("gone", "removed") and (s.last_fetch_at is None or s.last_fetch_at < now)
    ]
    for source in rest:
        store.remove_feed(source.id)
    culprit = None
    for source in rest:
        store.upsert_feed(source.location, name=None, tags=list(source.tags), interval=None, origin="cli", now=now)
        if culprit is not None:
            continue
        try:
            with tracker.watching():
                ingest_feeds(store, settings, now, force=True, rng=random.Random(1), owner=OWNER)
        except Exception:
            store.release_feeds(OWNER, [source.id])
            culprit = tracker.by_id.get(source.id)
            if culprit is not None:
                culprit.crash = traceback.format_exc(limit=6)
    return culprit


def diagnose(o: Outcome) -> str | None:
    """Where entries were lost, or None when none were."""
    dups = o.parsed.duplicates if o.parsed is not None else 0
    if o.stored + dups >= o.expected:
        return None
    if o.crash:
        return "crash"
    if o.parsed is None:
        return f"fetch: {o.error or o.status}"
    if o.parsed.kind != "feed":
        return f"parse: {o.parsed.kind}: {o.parsed.error}"
    if len(o.parsed.items) + dups < o.expected:
        return f"parse: {len(o.parsed.items)} entries (+{dups} repeated keys); warning: {o.parsed.warning}"
    return f"store: parse gave {len(o.parsed.items)} entries, {o.stored} stored (key collision?)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--verbose", action="store_true", help="print every source's state, not only the problems")
    args = ap.parse_args()
    corpus = Corpus(args.folder)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corpus-check-") as tmp, serving(corpus) as base:
        config = Path(tmp) / "newsletter.toml"
        config.write_text(
            f'[storage]\nurl = "sqlite:///{tmp}/corpus.db"\n\n[seeds]\ndirs = []\n\n'
            '[fetch]\nconcurrency = 8\nper_host = 8\ntimeout = 10.0\ntrusted_networks = ["127.0.0.1/32"]\n',
            encoding="utf-8",
        )
        settings = load_settings(config, environ={})
        outcomes = {f"{base}{path}": Outcome(rel=path.lstrip("/"), url=f"{base}{path}") for path in corpus.files}
        for o in outcomes.values():
            o.expected, o.reference_error = reference_count(corpus.final("/" + o.rel)[0])
        with Store.open(settings.storage.url) as store:
            by_id = {}
            for url, o in outcomes.items():
                source, _ = store.upsert_feed(url, name=None, tags=[], interval=None, origin="cli", now=NOW)
                by_id[source.id] = o
            tracker = Tracker(by_id)
            t0 = time.perf_counter()
            crashes = run_pass(store, settings, NOW, tracker, force=True)
            first = time.perf_counter() - t0
            after_first = {s.location: s.sightings for s in store.sources("feed")}
            t0 = time.perf_counter()
            crashes += run_pass(store, settings, NOW + timedelta(days=2), tracker, force=True)
            second = time.perf_counter() - t0
            for source in store.sources("feed"):
                o = outcomes[source.location]
                o.stored, o.status, o.last_status = (
                    after_first.get(source.location, 0),
                    source.status,
                    source.last_status,
                )
                o.error, o.warning = source.last_error, source.warning
                o.adopted = source.url if source.url != source.location else None
            final_counts = {s.location: s.sightings for s in store.sources("feed")}
            counts = store.counts()
    elapsed = time.perf_counter() - started
    return report(
        outcomes=outcomes,
        final_counts=final_counts,
        after_first=after_first,
        counts=counts,
        crashes=crashes,
        first=first,
        second=second,
        elapsed=elapsed,
        verbose=args.verbose,
    )


def report(
    *,
    outcomes: dict[str, Outcome],
    final_counts: dict[str, int],
    after_first: dict[str, int],
    counts: dict[str, int],
    crashes: int,
    first: float,
    second: float,
    elapsed: float,
    verbose: bool,
) -> int:
    items = sorted(outcomes.values(), key=lambda o: o.rel)
    expected = sum(o.expected for o in items)
    stored = sum(o.stored for o in items)
    dups = sum(o.parsed.duplicates for o in items if o.parsed is not None)
    lost = [(o, why) for o in items if (why := diagnose(o)) is not None]
    lost_entries = sum(o.expected - o.stored - (o.parsed.duplicates if o.parsed else 0) for o, _ in lost)
    extra = [o for o in items if o.stored > o.expected]
    unstable = [o for o in items if final_counts.get(o.url, 0) != after_first.get(o.url, 0)]
    print(f"files: {len(items)}  time: {elapsed:.1f} s (first pass {first:.1f} s, second pass {second:.1f} s)")
    print(f"crashes: {crashes} exceptions escaped ingest_feeds, pinned to {sum(1 for o in items if o.crash)} files")
    print(
        f"entries: feedparser {expected}, stored {stored}, dropped as repeated keys {dups}, "
        f"lost {lost_entries} in {len(lost)} files"
    )
    print(f"store: {counts}")
    for o in items:
        if o.parsed is not None and o.parsed.duplicates:
            print(f"  repeated keys {o.rel}: {o.parsed.duplicates} dropped, {o.stored} stored, feedparser {o.expected}")
    states = Counter(o.status for o in items)
    print(f"source states: {dict(sorted(states.items()))}")
    print(f"last HTTP status: {dict(Counter(str(o.last_status) for o in items).most_common())}")
    print(f"files with entries but feedparser saw none or fewer (recovered more): {len(extra)}")
    for o in extra[:10]:
        print(f"  MORE {o.rel}: {o.stored} stored, feedparser {o.expected}")
    print(f"sightings changed by the second (conditional) pass, i.e. unstable keys: {len(unstable)}")
    for o in unstable[:10]:
        print(f"  UNSTABLE {o.rel}: {after_first.get(o.url, 0)} then {final_counts.get(o.url, 0)}")
    print(f"plain feedparser crashed (counted as 0 entries): {sum(1 for o in items if o.reference_error)}")
    for o in items:
        if o.reference_error:
            print(f"  {o.rel}: {o.reference_error:.100}")
    for o, why in lost:
        dup = o.parsed.duplicates if o.parsed else 0
        print(f"  LOST {o.rel}: {o.stored} stored (+{dup} repeated) of {o.expected}: {why}")
    for o in items:
        if o.crash:
            print(f"  CRASH {o.rel}\n{o.crash}")
    print("http/ (files that test HTTP behaviour):")
    for o in items:
        if o.rel.startswith(("http/", "wellformed/http/")) or verbose:
            what = (o.error or o.warning or "").removeprefix(o.url + ": ")
            moved = f", now at {o.adopted.split('/', 3)[-1]}" if o.adopted else ""
            print(
                f"  {o.rel}: {o.status}, HTTP {o.last_status}{moved}, {o.stored} stored, feedparser {o.expected}"
                + (f": {what:.100}" if what else "")
            )
    problems = Counter(
        (o.status, (o.error or o.warning or "").removeprefix(o.url + ": ")[:70]) for o in items if o.status != "active"
    )
    print("states other than active, by message:")
    for (status, message), n in problems.most_common(15):
        print(f"  {n:5d}  {status}: {message}")
    for o in items:
        if o.status == "not_a_feed":
            print(f"  not_a_feed {o.rel}: feedparser {o.expected} entries")
    warned = Counter((o.warning or "")[len(o.url) + 2 :][:50] for o in items if o.status == "active" and o.warning)
    print(f"active sources with a warning: {sum(warned.values())}")
    for message, n in warned.most_common(8):
        print(f"  {n:5d}  {message}")
    return 1 if crashes or lost else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of feed ingestion: N local feeds of 50 entries, ours against lemon24/reader on the same served feeds.

A plain script, not collected by pytest (``pip install -e '.[bench]'`` brings reader and sgmllib3k):

    .venv/bin/python tests/benchmarks/bench_ingest.py [--feeds 200 1000] [--repeat 2] [--profile]

One server process serves N feeds (RSS 2.0 and Atom 1.0 alternately, 50 entries of about 2.5 KB of HTML each, every
feed with an ETag and a Last-Modified, and a 304 for a conditional request that matches). The feeds are spread over
8 loopback addresses (127.0.0.1 to 127.0.0.8), as real feeds are spread over hosts, so our per-host limit is not what
is measured. Bodies are rendered on request from pre-built parts (the server holds a few MB, not N x 125 KB), and
every title and summary is distinct, so that no two entries are the same story.

Each measurement runs in a child process of its own, with a fresh database: ours is
``ingest_feeds(store, settings, now, force=True)`` (default [fetch] settings, the loopback network trusted), reader is
``make_reader(db)``, ``add_feed`` for each feed and ``update_feeds(scheduled=False)``. Each does a first pass (all
new), a second pass (nothing changed: all 304) and a third (the steady state of a running service: every feed
changed, with a new ETag and 1 new entry at the top among its 50, the oldest dropped), timed apart; adding the feeds
is not timed. ``--postgres`` stores ours in PostgreSQL (a fresh schema per run, on the server
``$NEWSLETTER_TEST_PG_URL`` names: ``scripts/with_postgres.sh`` starts one) instead of SQLite. Ours and reader run
alternately, ``--repeat`` times each. Peak memory is the child's max RSS (and its own children's, were there any);
the server's peak is reported apart and added to both sums. The server counts its 200s and 304s, so a second pass
that was not all 304 shows. ``--profile`` runs ours once more at the smallest N under cProfile (each pass apart) and
sums the time spent by stage (fetch, parse, nh3, dedupe, store/SQL).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

ENTRIES = 50
HOSTS = 8
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
LAST_MODIFIED = ("Tue, 30 Jun 2026 08:00:00 GMT", "Tue, 30 Jun 2026 09:00:00 GMT")  # of version 1 and 2
STATS_PATH = "/__stats"
PG_URL_ENV = "NEWSLETTER_TEST_PG_URL"
VERSION_PATH = "/__version/"  # + 1 or 2: which version of every feed is served from now on

# --- the feeds -------------------------------------------------------------------------------------------------


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    """Made-up words: distinct, so that generated titles share no more words than chance gives."""
    syllables = ["ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti", "vo", "zu", "xan"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class Site:
    """N feeds, rendered on request from parts built once: titles and lead sentences per entry, a pool of paragraphs."""

    def __init__(self, feeds: int, seed: int = 42) -> None:
        rng = random.Random(seed)
        words = _vocabulary(rng, 4000)
        self.feeds = feeds
        # Entry e of feed f is index f * ENTRIES + e; the entry version 2 adds to feed f is feeds * ENTRIES + f.
        self.titles = [" ".join(rng.sample(words, 7)).capitalize() for _ in range(feeds * (ENTRIES + 1))]
        self.leads = [" ".join(rng.sample(words, 14)) for _ in range(feeds * (ENTRIES + 1))]
        self.version = 1
        self.paragraphs = [self._paragraph(rng, words, n) for n in range(1024)]

    @staticmethod
    def _paragraph(rng: random.Random, words: list[str], n: int) -> str:
        text = " ".join(rng.choices(words, k=40))
        return (
            f'<p>{text[:120]} <a href="/trial/{n}?arm=a&amp;n={n}">{rng.choice(words)} trial</a> '
            f"<b>{rng.choice(words)}</b> and <em>{rng.choice(words)}</em> &amp; {text[120:240]}, "
            f"the response rate was {n % 97}&#160;%.</p>"
        )

    def entry_html(self, index: int) -> str:
        parts = [f"<p>{self.leads[index]}.</p>"]
        for k in range(6):
            parts.append(self.paragraphs[(index * 7919 + k * 104_729) % len(self.paragraphs)])
        parts.append('<img src="/img/figure.png" alt="figure"><script>track()</script>')
        return "".join(parts)

    def body(self, feed: int) -> bytes:
        return self._rss(feed) if feed % 2 == 0 else self._atom(feed)

    def entries(self, feed: int) -> list[tuple[str, int, int]]:
        """(id suffix, index, day of June) of the feed's entries as served now, newest first in version 2."""
        old = [(str(e), feed * ENTRIES + e, 1 + e % 28) for e in range(ENTRIES)]
        if self.version == 1:
            return old
        return [("new2", self.feeds * ENTRIES + feed, 29), *old[:-1]]

    def _rss(self, feed: int) -> bytes:
        items = []
        for e, (name, index, day) in enumerate(self.entries(feed)):
            link = f"https://bench{feed}.example/e/{name}"
            items.append(
                f"<item><title>{self.titles[index]}</title><link>{link}</link><guid>{link}</guid>"
                f"<pubDate>{day:02d} Jun 2026 10:{e:02d}:00 +0200</pubDate>"
                f"<dc:creator>Dr. Author {e}</dc:creator><category>Oncology</category>"
                f"<description>{escape(self.entry_html(index))}</description></item>"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<channel><title>Bench RSS {feed}</title><link>https://bench{feed}.example/</link>"
            f"<description>Feed {feed}</description>{''.join(items)}</channel></rss>"
        ).encode()

    def _atom(self, feed: int) -> bytes:
        items = []
        for e, (name, index, day) in enumerate(self.entries(feed)):
            items.append(
                f"<entry><title>{self.titles[index]}</title><id>tag:bench{feed}.example,2026:{name}</id>"
                f'<link rel="alternate" href="/e/{name}"/><updated>2026-06-{day:02d}T10:{e:02d}:00+02:00</updated>'
                f"<author><name>Dr. Author {e}</name></author><category term='oncology'/>"
                f"<summary>{self.leads[index]}.</summary>"
                f'<content type="html">{escape(self.entry_html(index))}</content></entry>'
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://bench{feed}.example/">'
            f"<title>Bench Atom {feed}</title><id>tag:bench{feed}.example,2026:feed</id>"
            f"<updated>2026-06-30T00:00:00Z</updated>{''.join(items)}</feed>"
        ).encode()


# --- the server (its own process) ------------------------------------------------------------------------------


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, GET only: just enough for two feed readers, and fast."""

    def __init__(self, site: Site, counts: Counter[str]) -> None:
        self.site, self.counts = site, counts
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            lines = head.split("\r\n")
            target = lines[0].split(" ")[1] if lines[0].count(" ") >= 2 else "/"
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.transport.write(self.respond(target, headers))
            if headers.get("connection", "").lower() == "close":
                self.transport.close()
                return

    def respond(self, target: str, headers: dict[str, str]) -> bytes:
        path = target.split("?", 1)[0]
        if path == STATS_PATH:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {**self.counts, "maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}
            return _response(200, "application/json", json.dumps(stats).encode())
        if path.startswith(VERSION_PATH):
            self.site.version = int(path.removeprefix(VERSION_PATH))
            return _response(200, "text/plain", b"ok")
        name = path.removeprefix("/feeds/").removesuffix(".xml")
        if not name.isdigit() or int(name) >= self.site.feeds:
            self.counts["404"] += 1
            return _response(404, "text/plain", b"not found")
        feed = int(name)
        etag = f'"feed-{feed}-v{self.site.version}"'
        modified = LAST_MODIFIED[self.site.version - 1]
        validators = f"ETag: {etag}\r\nLast-Modified: {modified}\r\n"
        if headers.get("if-none-match") == etag or headers.get("if-modified-since") == modified:
            self.counts["304"] += 1
            return f"HTTP/1.1 304 Not Modified\r\n{validators}\r\n".encode()
        self.counts["200"] += 1
        kind = "application/rss+xml" if feed % 2 == 0 else "application/atom+xml"
        return _response(200, f"{kind}; charset=utf-8", self.site.body(feed), validators)


def _response(status: int, content_type: str, body: bytes, extra: str = "") -> bytes:
    reason = {200: "OK", 404: "Not Found"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def _serve(feeds: int) -> None:
    site, counts = Site(feeds), Counter[str]()
    loop = asyncio.get_running_loop()
    ports = []
    for h in range(1, HOSTS + 1):
        server = await loop.create_server(lambda: _Http(site, counts), f"127.0.0.{h}", 0)
        ports.append(server.sockets[0].getsockname()[1])
    print(json.dumps({"ports": ports}), flush=True)
    await asyncio.Event().wait()  # until terminated


def feed_urls(ports: list[int], feeds: int) -> list[str]:
    return [f"http://127.0.0.{1 + i % HOSTS}:{ports[i % HOSTS]}/feeds/{i}.xml" for i in range(feeds)]


def serve_version(ports: list[int], version: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}{VERSION_PATH}{version}", timeout=10) as answer:
        answer.read()


def server_stats(ports: list[int]) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}{STATS_PATH}", timeout=10) as answer:
        stats: dict[str, Any] = json.load(answer)
    return stats


# --- the measured runs (each in its own process) ---------------------------------------------------------------


class ChildPeaks:
    """The peak of the summed RSS peaks (VmHWM) of this process's live parse workers, sampled every 50 ms.

    RUSAGE_CHILDREN is no use here: a child's pages right after fork, before it execs a fresh interpreter, are the
    parent's, and count in its maxrss (it reported the parent's own peak for a 25 MB worker)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            total = 0
            for pid in _child_pids():
                try:
                    if b"ingest.workers" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                        continue  # not a worker, or still the forked copy of us before it execs one
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                total += next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")), 0)
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _peaks(children: ChildPeaks) -> dict[str, int]:
    """This process's peak RSS, and the summed peaks of the worker processes it ran."""
    return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "children_maxrss_kb": children.stop()}


def code_stamp() -> str:
    """A digest of the ingest package as this process imported it: the tree changes under a benchmark on a shared
    machine, and a row is only comparable with rows of the same stamp."""
    import ingest

    root = Path(ingest.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:8]


PASSES = ((1, NOW, 1), (2, NOW + timedelta(minutes=5), 1), (3, NOW + timedelta(minutes=10), 2))  # number, now, version


def run_ours(
    urls: list[str], ports: list[int], folder: Path, profile: Path | None, postgres: str | None
) -> dict[str, Any]:
    from ingest.core.config import load_settings
    from ingest.feeds import ingest_feeds
    from ingest.store import Store

    url = f"sqlite:///{folder}/ours.db" if postgres is None else postgres
    config = folder / "newsletter.toml"
    config.write_text(
        f'[storage]\nurl = "{url}"\n\n[seeds]\ndirs = []\n\n[fetch]\ntrusted_networks = ["127.0.0.0/8"]\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    store = Store.open(settings.storage.url)
    children = ChildPeaks()
    for url in urls:
        store.upsert_feed(url, name=None, tags=[], interval=None, origin="cli", now=NOW)
    result: dict[str, Any] = {"code": code_stamp()}
    for number, now, version in PASSES:
        serve_version(ports, version)
        before = server_stats(ports)
        profiler = cProfile.Profile() if profile is not None else None
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        reports = ingest_feeds(store, settings, now, force=True, rng=random.Random(1))
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - start
        after = server_stats(ports)
        result[f"pass{number}"] = {
            "wall": wall,
            "new": sum(r.new for r in reports),
            "errors": sum(1 for r in reports if r.error),
            "unchanged": sum(1 for r in reports if r.unchanged),
            "served_200": after.get("200", 0) - before.get("200", 0),
            "served_304": after.get("304", 0) - before.get("304", 0),
        }
        if profiler is not None and profile is not None:
            profiler.dump_stats(profile / f"pass{number}.prof")
    result["counts"] = store.counts()
    store.close()
    return {**result, **_peaks(children)}


def run_reader(urls: list[str], ports: list[int], folder: Path) -> dict[str, Any]:
    import reader as reader_lib

    lib = reader_lib.make_reader(str(folder / "reader.sqlite"))
    children = ChildPeaks()
    for url in urls:
        lib.add_feed(url)
    result: dict[str, Any] = {"version": reader_lib.__version__}
    for number, _, version in PASSES:
        serve_version(ports, version)
        before = server_stats(ports)
        start = time.perf_counter()
        lib.update_feeds(scheduled=False)
        wall = time.perf_counter() - start
        after = server_stats(ports)
        counts = lib.get_entry_counts()
        errors = sum(1 for feed in lib.get_feeds() if feed.last_exception is not None)
        result[f"pass{number}"] = {
            "wall": wall,
            "new": counts.total - sum(result[f"pass{n}"]["new"] for n in range(1, number)),
            "errors": errors,
            "served_200": after.get("200", 0) - before.get("200", 0),
            "served_304": after.get("304", 0) - before.get("304", 0),
        }
    lib.close()
    return {**result, **_peaks(children)}


def child(args: argparse.Namespace) -> None:
    ports = json.loads(args.ports)
    urls = feed_urls(ports, args.feeds[0])
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        if args.child == "ours" and args.postgres:
            with pg_schema() as url:
                result = run_ours(urls, ports, Path(tmp), args.profile_out, url)
        elif args.child == "ours":
            result = run_ours(urls, ports, Path(tmp), args.profile_out, None)
        else:
            result = run_reader(urls, ports, Path(tmp))
    print(json.dumps(result), flush=True)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server $NEWSLETTER_TEST_PG_URL names, dropped afterwards: its URL."""
    from sqlalchemy import create_engine, text

    base = os.environ.get(PG_URL_ENV)
    if not base:
        raise SystemExit(f"--postgres needs {PG_URL_ENV} (scripts/with_postgres.sh starts a server and sets it)")
    name = f"bench_{os.getpid()}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    try:
        yield f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={name}')}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        engine.dispose()


# --- the orchestrator ------------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[str]
    ports: list[int]

    def peak_kb(self) -> int:
        """VmHWM: the server's peak resident set so far (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0


def start_server(feeds: int) -> Server:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--feeds", str(feeds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise SystemExit("the benchmark server did not start")
    return Server(process, json.loads(line)["ports"])


def measure(
    which: str,
    feeds: int,
    server: Server,
    profile_out: Path | None = None,
    *,
    postgres: bool = False,
    python: str = sys.executable,
) -> dict[str, Any]:
    script = os.path.abspath(__file__)
    command = [python, script, "--child", which, "--feeds", str(feeds), "--ports", json.dumps(server.ports)]
    if postgres:
        command.append("--postgres")
    if profile_out is not None:
        command += ["--profile-out", str(profile_out)]
    # Run outside any checkout: a parse worker is started with ``-m``, which imports from the working folder first.
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"{which} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


STAGES = (
    ("dedupe", ("ingest/dedupe/", "ingest/store/clustering.py")),
    ("store/SQL", ("ingest/store/", "sqlalchemy/", "sqlite3")),
    ("nh3/sanitize", ("ingest/sanitize.py", "builtins.Cleaner", "nh3")),
    ("parse", ("ingest/parse/", "feedparser/", "xml/etree", "xml.etree", "pyexpat", "sgmllib")),
    ("normalize/text", ("ingest/core/text.py", "unicodedata", "html/__init__")),
    ("fetch/HTTP", ("ingest/fetch/", "httpx/", "httpcore/", "h11/", "anyio/", "asyncio/", "ssl.py", "socket")),
)


def stage_of(filename: str, function: str) -> str:
    where = f"{filename}:{function}"
    for stage, needles in STAGES:
        if any(n in where for n in needles):
            return stage
    return "other"


def stage_times(raw: dict[Any, Any]) -> Counter[str]:
    """Own time by stage. A function of no stage (a C builtin such as re's sub, the stdlib's json or urllib) has its
    time given to the stages of its callers, in proportion to the time each call site spent in it."""
    by_stage: Counter[str] = Counter()

    def shares(key: tuple[str, int, str], depth: int = 0) -> list[tuple[str, float]]:
        stage = stage_of(key[0], key[2])
        callers = raw[key][4] if key in raw else {}
        if stage != "other" or depth > 8 or not callers:
            return [(stage, 1.0)]
        total = sum(times[2] for times in callers.values()) or 1.0
        return [
            (owner, share * times[2] / total)
            for caller, times in callers.items()
            for owner, share in shares(caller, depth + 1)
        ]

    for key, (_cc, _nc, tottime, _ct, _callers) in raw.items():
        for stage, share in shares(key):
            by_stage[stage] += tottime * share
    return by_stage


def summarize_profile(path: Path, title: str, *, detail: bool) -> None:
    raw: dict[Any, Any] = pstats.Stats(str(path), stream=io.StringIO()).stats  # type: ignore[attr-defined]
    by_stage = stage_times(raw)
    total = sum(by_stage.values())
    print(f"\nprofile of our {title} (cProfile, own time by stage, {total:.2f} s profiled):")
    for stage, seconds in by_stage.most_common():
        print(f"  {stage:16} {seconds:7.2f} s  {100 * seconds / total:5.1f} %")
    if not detail:
        return
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(15)
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("cumulative").print_stats("ingest/", 25)
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def report(feeds: int, rows: list[tuple[str, dict[str, Any]]], server_kb: int, server_cpu: float) -> None:
    entries = feeds * ENTRIES
    print(f"\nN={feeds} feeds, {entries} entries; server peak RSS {_mb(server_kb)} MB, server CPU {server_cpu:.1f} s")
    print(
        f"{'run':10} {'pass 1 s':>9} {'entries/s':>10} {'pass 2 s':>9} {'feeds/s':>8} {'pass 3 s':>9} {'RSS MB':>7} "
        f"{'+server':>8} {'new1':>6} {'2: 200s':>7} {'304s':>5} {'new3':>5} {'err':>4} {'code':>8}"
    )
    for name, r in rows:
        p1, p2, p3 = r["pass1"], r["pass2"], r["pass3"]
        peak = r["maxrss_kb"] + r["children_maxrss_kb"]
        print(
            f"{name:10} {p1['wall']:9.2f} {entries / p1['wall']:10.0f} {p2['wall']:9.2f} {feeds / p2['wall']:8.0f} "
            f"{p3['wall']:9.2f} {_mb(peak):>7} {_mb(peak + server_kb):>8} {p1['new']:6d} {p2['served_200']:7d} "
            f"{p2['served_304']:5d} {p3['new']:5d} {p1['errors'] + p2['errors'] + p3['errors']:4d} "
            f"{r.get('code', ''):>8}"
        )
    ours = [r for name, r in rows if name.startswith("ours")]
    for label in ("reader", "other"):
        theirs = [r for name, r in rows if name.startswith(label)]
        if ours and theirs:
            for number in (1, 2, 3):
                best_ours = min(r[f"pass{number}"]["wall"] for r in ours)
                best_theirs = min(r[f"pass{number}"]["wall"] for r in theirs)
                print(f"pass {number}: {label} / ours = {best_theirs / best_ours:.2f}x (best of each)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--repeat", type=int, default=2, help="measurements of each, ours and reader alternately")
    ap.add_argument("--no-reader", action="store_true", help="measure ours only")
    ap.add_argument(
        "--also",
        metavar="PYTHON",
        help="measure ours with this interpreter too (another checkout's .venv/bin/python: main, say), as 'other'",
    )
    ap.add_argument("--profile", action="store_true", help="profile ours at the smallest N, every pass")
    ap.add_argument("--postgres", action="store_true", help=f"ours on PostgreSQL (${PG_URL_ENV}), not SQLite")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=("ours", "reader"), help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(_serve(args.feeds[0]))
        return
    if args.child:
        child(args)
        return
    for feeds in args.feeds:
        server = start_server(feeds)
        try:
            rows: list[tuple[str, dict[str, Any]]] = []
            for attempt in range(1, args.repeat + 1):
                order = ["ours", "other", "reader"] if attempt % 2 else ["reader", "other", "ours"]
                for which in order:
                    if (which == "reader" and args.no_reader) or (which == "other" and not args.also):
                        continue
                    python = args.also if which == "other" else sys.executable
                    kind = "ours" if which == "other" else which
                    result = measure(kind, feeds, server, postgres=args.postgres, python=python)
                    rows.append((f"{which} #{attempt}", result))
                    print(f"  {which} #{attempt}: {json.dumps(result)}", file=sys.stderr, flush=True)
            stats = server_stats(server.ports)
            report(feeds, rows, server.peak_kb(), stats["cpu_s"])
            if args.profile and feeds == min(args.feeds):
                with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
                    measure("ours", feeds, server, profile_out=Path(tmp), postgres=args.postgres)
                    summarize_profile(Path(tmp) / "pass1.prof", "first pass (all new)", detail=True)
                    summarize_profile(Path(tmp) / "pass2.prof", "second pass (all 304)", detail=False)
                    summarize_profile(Path(tmp) / "pass3.prof", "third pass (1 new entry a feed)", detail=True)
        finally:
            server.process.terminate()
            server.process.wait()
    versions = {}
    for name in ("reader", "feedparser", "sgmllib3k", "nh3", "httpx", "sqlalchemy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "not installed"
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs; {versions}")


if __name__ == "__main__":
    main()

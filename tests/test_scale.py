"""Several ``newsletter run`` processes on one PostgreSQL database share the work: each feed is fetched by one of
them per due time, each subscriber gets one copy, a process killed with SIGKILL leaves nothing stuck, and every
replica serves the same feed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.core.config import Settings, load_settings
from ingest.feeds import BATCH_PER_WORKER
from ingest.store import Store
from newsletter.subscribers import manage as subscribers
from tests.conftest import ROOT, write_config
from tests.servers import FEED_BODY, HostileServer
from tests.smtpd import Received, SmtpSink

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["postgresql"])]

FEEDS = 30
READERS = 60
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _feed(n: int) -> bytes:
    """A feed of two entries of its own (no ttl, so the interval alone says when it is due)."""
    return (
        FEED_BODY.replace(b"<ttl>90</ttl>", b"")
        .replace(b"http://example.org/1", f"http://example.org/{n}/1".encode())
        .replace(b"http://example.org/2", f"http://example.org/{n}/2".encode())
        .replace(b"First story", f"Feed {n} first story".encode())
        .replace(b"Second story", f"Feed {n} second story".encode())
    )


@pytest.fixture
def shared(project: Path, hostile_server: HostileServer, db_url: str) -> Iterator[tuple[Path, Settings, SmtpSink]]:
    """The bundled seed, FEEDS feeds on the local server (each answer dripped to take about half a second), READERS
    confirmed subscribers, and last week's digest due two minutes ago."""
    due = datetime.now(UTC) - timedelta(minutes=2)
    feeds = "".join(f'\n[[feeds]]\nurl = "{hostile_server.url(f"/f{n}")}"\n' for n in range(FEEDS))
    for n in range(FEEDS):
        hostile_server.set(
            f"/f{n}", headers={"Content-Type": "application/rss+xml"}, body=_feed(n), etag=f'"{n}"', drip=0.0007
        )
    with SmtpSink() as sink:
        cfg = project / "newsletter.toml"
        cfg.write_text(
            cfg.read_text()
            + f"""
[fetch]
trusted_networks = ["127.0.0.1/32"]
timeout = 2.0
concurrency = 2
lease_seconds = 8
[publish]
dir = "public"
[digest]
send_at = "{WEEKDAYS[due.weekday()]} {due:%H:%M}"
send_empty = true
[mail]
transport = "smtp"
host = "127.0.0.1"
port = {sink.port}
lease_seconds = 10
"""
            + feeds
        )
        settings = load_settings(cfg, environ={})
        with Store.open(db_url) as store:
            for i in range(READERS):
                subscribers.add(store, f"reader{i:03d}@example.org", due)
        yield cfg, settings, sink


def _start(cfg: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(cfg), "run", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _fetches(server: HostileServer) -> Counter[str]:
    return Counter(r.path for r in server.requests if r.path.startswith("/f"))


def _check_store(settings: Settings) -> None:
    with Store.open(settings.storage.url) as store:
        titles = Counter(s.title for s in store.stories())
        assert max(titles.values()) == 1, titles.most_common(3)  # no story made twice by two processes
        assert len(titles) == 6 + 2 * FEEDS  # the seed page's six, and two per feed
        feeds = [s for s in store.sources(kind="feed")]
        assert all(f.sightings == 2 and f.status == "active" for f in feeds)
        digest = store.digest_by_period(store.digests(limit=1)[0].period)
        assert digest is not None
        assert digest.status == "sent"


def test_three_processes_share_one_pass(shared: tuple[Path, Settings, SmtpSink], hostile_server: HostileServer) -> None:
    cfg, settings, sink = shared
    procs = [_start(cfg, "--once") for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    assert _fetches(hostile_server) == {f"/f{n}": 1 for n in range(FEEDS)}  # each feed once, by one of them
    worked = sum(1 for out, _ in outputs if "ok     http" in out)
    assert worked >= 2  # the work was shared, not done by one while the others waited
    assert sink.received_by() == {f"reader{i:03d}@example.org": 1 for i in range(READERS)}
    _check_store(settings)


def _kill_when(procs: list[subprocess.Popen[str]], check: Callable[[], bool], what: str) -> None:
    _wait_for(check, what)
    os.kill(procs[0].pid, signal.SIGKILL)


def _stop(procs: list[subprocess.Popen[str]]) -> list[str]:
    errors = []
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        _, err = p.communicate(timeout=120)
        errors.append(err)
    return errors


def test_a_process_killed_while_fetching_leaves_nothing_stuck(
    shared: tuple[Path, Settings, SmtpSink], hostile_server: HostileServer
) -> None:
    cfg, settings, sink = shared
    procs = [_start(cfg, "--no-web", "--tick", "0.5") for _ in range(3)]
    try:
        _kill_when(procs, lambda: sum(_fetches(hostile_server).values()) >= FEEDS // 3, "a third of the feeds")
        _wait_for(lambda: len(_fetches(hostile_server)) == FEEDS, "every feed fetched")
        _wait_for(lambda: sink.count >= READERS, "the digest")
        with Store.open(settings.storage.url) as store:
            _wait_for(lambda: all(f.sightings == 2 for f in store.sources(kind="feed")), "every feed stored")
    finally:
        errors = _stop(procs)
    assert procs[0].returncode == -signal.SIGKILL
    assert [p.returncode for p in procs[1:]] == [0, 0], errors
    fetched = _fetches(hostile_server)
    # A feed is fetched once; one the dead process had claimed is fetched again once its lease ran out.
    assert set(fetched.values()) <= {1, 2}
    assert sum(1 for n in fetched.values() if n == 2) <= settings.fetch.concurrency * BATCH_PER_WORKER
    assert sink.received_by() == {f"reader{i:03d}@example.org": 1 for i in range(READERS)}
    _check_store(settings)


def test_a_process_killed_while_sending_leaves_nothing_stuck(
    shared: tuple[Path, Settings, SmtpSink], hostile_server: HostileServer
) -> None:
    cfg, settings, sink = shared
    procs = [_start(cfg, "--no-web", "--tick", "0.5") for _ in range(3)]
    killed: list[Received] = []

    def kill_first_sender(got: Received) -> None:
        if len(sink.messages) == READERS // 3 and not killed:
            killed.append(got)
            os.kill(procs[0].pid, signal.SIGKILL)

    sink.on_message = kill_first_sender
    try:
        _wait_for(lambda: len(set(sink.received_by())) == READERS, "every reader's copy")
        with Store.open(settings.storage.url) as store:
            _wait_for(lambda: store.digests(limit=1)[0].status == "sent", "the digest marked sent")
            _wait_for(lambda: all(f.sightings == 2 for f in store.sources(kind="feed")), "every feed stored")
    finally:
        errors = _stop(procs)
    assert killed, "nobody was killed"
    counts = sink.received_by()
    assert set(counts) == {f"reader{i:03d}@example.org" for i in range(READERS)}
    doubled = [address for address, n in counts.items() if n > 1]
    # The messages in flight in the killed process (one per [mail] connection at most) may come twice; never more.
    assert len(doubled) <= settings.mail.connections
    assert all(n <= 2 for n in counts.values())
    _check_store(settings)
    assert sum(1 for p in procs if p.returncode == 0) >= 2, errors


def test_processes_starting_together_on_an_empty_database(project: Path, db_url: str) -> None:
    """They migrate one at a time (an advisory lock): none fails on the others' half-made schema."""
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[publish]\ndir = "public"\n')
    procs = [_start(cfg, "--once", "--no-web") for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-500:] for _, err in outputs]
    with Store.open(db_url) as store:
        assert len(store.stories()) == 6  # the bundled seed, read once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(url: str) -> tuple[bytes, str]:
    """The body and the ETag of a GET; empty when the server does not answer (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read(), response.headers.get("ETag", "")
    except OSError:
        return b"", ""


def test_a_replica_serves_what_another_ingested_before_its_own_next_pass(project: Path, db_url: str) -> None:
    """Two ``newsletter run`` behind a load balancer, each with its own published folder: A reads the seed folder
    every second, B has no seeds and passes once an hour. A story A ingests is in B's feed as soon as in A's, with
    the same bytes and ETag, while B's own next pass is an hour away."""
    replica = project / "b"
    (replica / "seeds").mkdir(parents=True)
    ports = _free_port(), _free_port()
    configs = [
        write_config(folder, f'[publish]\ndir = "public"\n[web]\nport = {port}\n')
        for folder, port in zip((project, replica), ports, strict=True)
    ]
    procs = [_start(configs[0], "--tick", "1"), _start(configs[1], "--tick", "3600")]
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    try:
        for base in (a, b):
            _wait_for(lambda base=base: b"Prolaris in Practice" in _fetch(f"{base}/feed.atom")[0], "the seed's stories")
        page = next((project / "seeds").glob("*.txt")).read_text()
        (project / "seeds" / "new-page.txt").write_text(
            page + "\nA Fresh Teaser From a New Page\nNovember 26th 2026A fresh blurb on a new page.\n"
        )
        _wait_for(lambda: b"A Fresh Teaser" in _fetch(f"{a}/feed.atom")[0], "A to serve the new story")
        body_a, etag_a = _fetch(f"{a}/feed.atom")
        body_b, etag_b = _fetch(f"{b}/feed.atom")
        assert b"A Fresh Teaser" in body_b
        assert (body_b, etag_b) == (body_a, etag_a)
        for name in ("feed.rss", "feed.json"):
            assert _fetch(f"{a}/{name}") == _fetch(f"{b}/{name}")
    finally:
        errors = _stop(procs)
    assert [p.returncode for p in procs] == [0, 0], [e[-800:] for e in errors]

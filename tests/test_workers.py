"""Parse worker processes: the same result as parsing inline, and a dead worker fails loudly, never silently."""

from __future__ import annotations

import pytest

from ingest.parse import parse_feed
from ingest.workers import ParsePool, WorkerError
from tests.conftest import NOW
from tests.servers import FEED_BODY

pytestmark = pytest.mark.no_database  # opens no database: one run

URL = "https://example.org/feed"


def test_a_worker_parses_as_inline_does() -> None:
    with ParsePool(2) as pool:
        futures = [
            pool.submit(FEED_BODY, url=URL, headers={"content-type": "application/rss+xml"}, tags=("t",), now=NOW)
            for _ in range(5)
        ]
        results = [f.result(timeout=60) for f in futures]
        broken = pool.submit(b"<html>not a feed</html>", url=URL, headers={}, tags=(), now=NOW).result(timeout=60)
    assert all(
        r == parse_feed(FEED_BODY, now=NOW, url=URL, headers={"content-type": "application/rss+xml"}, tags=("t",))
        for r in results
    )
    assert broken.kind == "not_a_feed"


def test_inline_when_no_workers() -> None:
    with ParsePool(0) as pool:
        assert pool.submit(FEED_BODY, url=URL, headers={}, tags=(), now=NOW).result().items


def test_a_dead_worker_fails_what_it_had_in_hand() -> None:
    with ParsePool(1) as pool:
        assert pool.submit(FEED_BODY, url=URL, headers={}, tags=(), now=NOW).result(timeout=60).items
        (worker,) = pool._workers
        worker.process.kill()
        worker.process.wait()
        with pytest.raises(WorkerError, match="a parse worker process ended"):
            pool.submit(FEED_BODY, url=URL, headers={}, tags=(), now=NOW).result(timeout=60)

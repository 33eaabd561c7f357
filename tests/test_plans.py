"""The hot queries use an index: each is run through the store's own methods against a seeded PostgreSQL database,
its SQL captured, and EXPLAINed; a sequential scan of a table that grows with use fails the test.

Hot: what runs per pass, per claim or per public request (the feed claim, the main and tag feeds, the home page,
search, the digest's selection, the delivery claim, the publish checks). The seed is big enough (tens of thousands
of stories, thousands of feeds and subscribers, ANALYZEd) that PostgreSQL's planner picks a sequential scan whenever
no index fits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from ingest.store import Store, schema

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["postgresql"])]

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
STORIES = 40_000
FEEDS = 20_000
SUBSCRIBERS = 4_000
TAGS = ("lung", "breast", "prostate", "her2-positive", "immunotherapy")
#: Tables that grow with use: never read whole by a hot query.
BIG = ("story", "sighting", "sighting_key", "source", "subscriber", "delivery", "digest_story")
WORDS = ("trial", "screening", "survival", "biopsy", "radiotherapy", "chemotherapy", "guideline", "cohort", "nomogram")


def _seed(store: Store) -> None:
    """Stories over three years (one in 100 carries a given tag), feeds due over the next hour, the stories before
    this week carried by a sent digest, and a digest half delivered."""
    rows: list[dict[str, Any]] = []
    for i in range(1, STORIES + 1):
        seen = NOW - timedelta(minutes=40 * (STORIES - i))
        rows.append(
            {
                "id": i,
                "uid": f"tag:example.org,2026:{i}",
                "title": f"Story {i} on {WORDS[i % len(WORDS)]} and {WORDS[(i * 7) % len(WORDS)]}",
                "search_title": f"story {i} on {WORDS[i % len(WORDS)]} and {WORDS[(i * 7) % len(WORDS)]}",
                "summary": f"What story {i} found in its {WORDS[(i * 3) % len(WORDS)]}.",
                "search_body": f"what story {i} found in its {WORDS[(i * 3) % len(WORDS)]}",
                "content": "",
                "published": seen if i % 3 else None,
                "first_seen": seen,
                "updated": seen,
                "tags": [TAGS[i % 500 % len(TAGS)]] if i % 100 < len(TAGS) else [],
                "content_hash": "",
                "merged_into": i - 1 if i % 97 == 0 else None,
            }
        )
    feeds = [
        {
            "id": n,
            "kind": "feed",
            "location": f"https://feeds.example.org/{n}",
            "url": f"https://feeds.example.org/{n}",
            "tags": [],
            "origin": "config",
            "status": "active",
            "created_at": NOW - timedelta(days=30),
            "last_fetch_at": NOW - timedelta(minutes=60),
            "next_check_at": NOW + timedelta(seconds=(n * 37) % 3600 - 60),
        }
        for n in range(1, FEEDS + 1)
    ]
    sightings = [
        {
            "id": i,
            "source_id": i % FEEDS + 1,
            "key": f"k{i}",
            "kind": "entry",
            "position": 0,
            "title": r["title"],
            "first_seen": r["first_seen"],
            "last_seen": r["first_seen"],
            "story_id": i,
            "tags": [],
        }
        for i, r in enumerate(rows, start=1)
    ]
    subscribers = [
        {"id": n, "email": f"reader{n}@example.org", "status": "confirmed", "created_at": NOW - timedelta(days=90)}
        for n in range(1, SUBSCRIBERS + 1)
    ]
    week = timedelta(days=7)
    digests = [
        {
            "id": d,
            "period": f"2026-W{46 + d}",
            "status": "sent" if d == 1 else "pending",
            "period_start": NOW - (3 - d) * week,
            "period_end": NOW - (2 - d) * week,
            "due_at": NOW - (2 - d) * week,
            "created_at": NOW - (2 - d) * week,
        }
        for d in (1, 2)
    ]
    carried = [  # every story before this week went out in an earlier digest
        {"digest_id": 1, "story_id": r["id"], "position": n}
        for n, r in enumerate(r for r in rows if r["first_seen"] < NOW - week)
    ]
    deliveries = [
        {"digest_id": d, "subscriber_id": n, "status": "sent" if d == 1 or n < SUBSCRIBERS // 2 else "pending"}
        for d in (1, 2)
        for n in range(1, SUBSCRIBERS + 1)
    ]
    with store.engine.begin() as conn:
        for table, values in (
            (schema.source, feeds),
            (schema.story, rows),
            (schema.sighting, sightings),
            (schema.subscriber, subscribers),
            (schema.digest, digests),
            (schema.digest_story, carried),
            (schema.delivery, deliveries),
        ):
            conn.execute(table.insert(), values)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


class Captured:
    """The statements the store sent, with their parameters, while capturing."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.statements: list[tuple[str, Any]] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if re.match(r"\s*(SELECT|UPDATE|WITH|DELETE)\b", statement, re.IGNORECASE) and "pg_advisory" not in statement:
            self.statements.append((statement, parameters))

    def plans(self, call: Callable[[], object]) -> list[str]:
        """Run ``call`` and return the EXPLAIN output of each statement it sent."""
        self.statements.clear()
        event.listen(self.store.engine, "before_cursor_execute", self)
        try:
            call()
        finally:
            event.remove(self.store.engine, "before_cursor_execute", self)
        assert self.statements, "the call sent no query"
        found = []
        with self.store.engine.connect() as conn:
            for statement, parameters in self.statements:
                lines = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars().all()
                found.append("\n".join(lines))
            conn.rollback()
        return found


def _seq_scans(plan: str) -> list[str]:
    return [t for t in BIG if re.search(rf"Seq Scan on {t}\b", plan)]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        _seed(opened)
        yield opened


def _hot_queries(store: Store) -> dict[str, Callable[[], object]]:
    week = timedelta(days=7)
    return {
        "feed claim": lambda: store.claim_due_feeds(NOW, owner="p1", lease_until=NOW + timedelta(minutes=5), limit=8),
        "due feeds count": lambda: store.count_due_feeds(NOW),
        "main feed": lambda: store.recent_versions(100),
        "tag feed": lambda: store.recent_versions(100, tag="lung"),
        "home page": lambda: (store.stories(50), store.stories(50, offset=500)),
        "story rows": lambda: store.stories_by_id(list(range(100, 200))),
        "bylines": lambda: store.bylines(range(100, 200)),
        "search": lambda: (store.search("chemotherapy -trial", 50), store.count_matches("chemotherapy -trial")),
        "digest selection": lambda: store.candidates(NOW - week, NOW),
        "delivery claim": lambda: store.claim_next(2, "p1", NOW, NOW + timedelta(minutes=5)),
        "publish check": lambda: (store.publish_generation(), store.publish_state()),
        "changed since": lambda: store.changed_since(NOW - timedelta(hours=1)),
    }


def test_no_hot_query_reads_a_big_table_whole(store: Store) -> None:
    captured = Captured(store)
    problems = {}
    for name, call in _hot_queries(store).items():
        for plan in captured.plans(call):
            if scans := _seq_scans(plan):
                problems[f"{name}: {', '.join(scans)}"] = plan
    assert not problems, json.dumps(problems, indent=1)
    # The rule itself: a plan that reads a big table whole is caught, a small table is not.
    assert _seq_scans("Limit\n  ->  Seq Scan on story  (cost=0.00..1.1 rows=1 width=4)") == ["story"]
    assert _seq_scans("  ->  Seq Scan on digest  (cost=0.00..1.1 rows=1 width=4)") == []

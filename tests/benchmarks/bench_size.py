"""The size part of bench_scale.py (``--parts size``): the hot operations on a PostgreSQL database of N stories.

Run through bench_scale.py (its docstring says what is seeded and timed):

    scripts/with_postgres.sh .venv/bin/python tests/benchmarks/bench_scale.py --parts size [--stories 100000 1000000]
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ingest.core.config import load_settings  # noqa: E402
from ingest.core.models import ParsedItem  # noqa: E402
from ingest.core.search import search_text  # noqa: E402
from ingest.store import Store  # noqa: E402
from newsletter.publish import Publisher, document  # noqa: E402
from tests.benchmarks.bench_scale import fresh_database, write_config  # noqa: E402

NOW = datetime(2026, 11, 30, 8, tzinfo=UTC)
VOCABULARY = 5000
COMMON = [
    "cancer",
    "tumour",
    "patients",
    "trial",
    "survival",
    "therapy",
    "treatment",
    "study",
    "risk",
    "screening",
    "breast",
    "lung",
    "prostate",
    "colorectal",
    "immunotherapy",
    "chemotherapy",
    "radiotherapy",
    "surgery",
    "biopsy",
    "melanoma",
    "leukaemia",
    "lymphoma",
    "myeloma",
    "pancreatic",
    "ovarian",
    "cervical",
    "gastric",
    "liver",
    "kidney",
    "bladder",
    "thyroid",
    "brain",
    "sarcoma",
    "metastatic",
    "adjuvant",
    "neoadjuvant",
    "phase",
    "response",
    "progression",
    "recurrence",
    "remission",
    "toxicity",
    "dose",
    "cohort",
    "guideline",
    "diagnosis",
    "imaging",
    "genomic",
    "mutation",
    "biomarker",
]
COMPOUNDS = ("HER2-positive", "PD-1", "PD-L1", "CDK4/6", "BRCA1", "EGFR-mutant", "KRAS-G12C", "CAR-T")
TAGS = ("lung", "breast", "prostate", "recap", "immunotherapy")
#: query class -> queries (the classes are reported apart)
QUERIES = {
    "compound": ["HER2-positive", "PD-1", "CDK4/6", "KRAS-G12C"],
    "common word": ["melanoma", "sarcoma", "biopsy", "thyroid"],
    "rare word": ["term3001", "term4500", "term2222", "term4999"],
    "two words": ["lung screening", "breast biopsy", "melanoma -surgery", '"metastatic melanoma"'],
}


def _words(rng: random.Random, weights: list[float], names: list[str], n: int) -> list[str]:
    return rng.choices(names, cum_weights=weights, k=n)


def seed(store: Store, stories: int) -> None:
    """COPY the rows in (far faster than INSERTs), then VACUUM ANALYZE."""
    rng = random.Random(17)
    names = COMMON + [f"term{i}" for i in range(len(COMMON), VOCABULARY)]
    cumulative: list[float] = []
    total = 0.0
    for rank in range(1, len(names) + 1):
        total += 1 / rank
        cumulative.append(total)
    feeds = max(stories // 10, 100)
    span = timedelta(days=3 * 365) / stories
    raw = store.engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        with pg.cursor() as cur:
            with cur.copy(
                "COPY source (id, kind, location, url, tags, origin, status, error_count, created_at, last_fetch_at,"
                " next_check_at) FROM STDIN"
            ) as copy:
                for n in range(1, feeds + 1):
                    due = NOW + timedelta(seconds=(n * 37) % 3600 - 120)
                    url = f"https://feeds.example.org/{n}"
                    copy.write_row(
                        (n, "feed", url, url, "[]", "config", "active", 0, NOW, NOW - timedelta(hours=1), due)
                    )
            with cur.copy(
                "COPY story (id, uid, title, title_derived, summary, content, link, published, first_seen, updated, "
                "tags, content_hash, informative, search_title, search_body) FROM STDIN"
            ) as copy:
                for i in range(1, stories + 1):
                    title_words = _words(rng, cumulative, names, 8)
                    if i % 100 == 0:
                        title_words[3] = COMPOUNDS[(i // 100) % len(COMPOUNDS)]
                    title = " ".join(title_words).capitalize()
                    summary = " ".join(_words(rng, cumulative, names, 20)) + "."
                    seen = NOW - span * (stories - i)
                    tags = json.dumps([TAGS[i % len(TAGS)]] if i % 20 == 0 else [])
                    copy.write_row(
                        (i, f"tag:news.example.org,2026:story:{i}", title, False, summary, "",
                         f"https://example.org/{i}", seen, seen, seen, tags, "", True,
                         search_text(title), search_text(summary))
                    )  # fmt: skip
            with cur.copy(
                "COPY sighting (id, source_id, key, kind, position, title, title_derived, summary, content, tags, "
                "first_seen, last_seen, story_id) FROM STDIN"
            ) as copy:
                for i in range(1, stories + 1):
                    seen = NOW - span * (stories - i)
                    copy.write_row((i, i % feeds + 1, f"k{i}", "entry", 0, "-", False, "", "", "[]", seen, seen, i))
            cur.execute(
                "INSERT INTO digest (id, period, status, period_start, period_end, due_at, created_at, subject, html, "
                "text) VALUES (1, '2026-W47', 'sent', %s, %s, %s, %s, '', '', '')",
                (NOW - timedelta(days=14), NOW - timedelta(days=7), NOW - timedelta(days=7), NOW - timedelta(days=7)),
            )
            with cur.copy("COPY digest_story (digest_id, story_id, position) FROM STDIN") as copy:
                last = stories - int(timedelta(days=7) / span)
                for i in range(1, last):
                    copy.write_row((1, i, i))
            for table in ("source", "story", "sighting", "digest"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            cur.execute("INSERT INTO publish_generation (id, generation) VALUES (1, 1)")
        pg.commit()
        pg.autocommit = True
        try:
            with pg.cursor() as cur:
                cur.execute("VACUUM ANALYZE")
        finally:
            pg.autocommit = False  # back to the pool as SQLAlchemy expects it
    finally:
        raw.close()


def timed(call: Callable[[], object], samples: int, *, between: Callable[[], object] | None = None) -> list[float]:
    """Milliseconds of each of ``samples`` calls (``between`` runs untimed after each)."""
    found = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
        if between is not None:
            between()
    return found


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(stories: int, samples: int) -> dict[str, list[float]]:
    import httpx

    from newsletter.web.app import site
    from tests.mailsite import serve_app

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp, fresh_database("postgresql", Path(tmp)) as url:
        folder = Path(tmp)
        settings = load_settings(write_config(folder, url, ""), environ={})
        with Store.open(url) as store:
            started = time.perf_counter()
            seed(store, stories)
            print(f"  {stories} stories seeded in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            publisher = Publisher(store, settings)
            started = time.perf_counter()
            publisher.publish(NOW)
            results["first publish (every page)"] = [(time.perf_counter() - started) * 1000]
            print(f"  first publish {results['first publish (every page)'][0] / 1000:.0f} s", file=sys.stderr)
            owner, lease = "bench", NOW + timedelta(minutes=5)
            claimed: list[int] = []

            def claim() -> None:
                claimed[:] = [f.id for f in store.claim_due_feeds(NOW, owner=owner, lease_until=lease, limit=8)]
                assert len(claimed) == 8

            results["feed claim (8 feeds)"] = timed(claim, samples, between=lambda: store.release_feeds(owner, claimed))
            results["publish check, nothing changed"] = timed(lambda: publisher.current(NOW), samples)
            page = store.page_source("/srv/seeds/bench.txt", "/srv/seeds", NOW)
            counter = iter(range(10**9))

            def new_story() -> None:
                n = next(counter)
                item = ParsedItem(
                    kind="teaser", key=f"new{n}", position=0, title=f"Fresh bench story number {n} xq{n}z",
                    summary="A story to publish.", published=NOW,
                )  # fmt: skip
                store.save_page(page.id, [item], content_hash=f"h{n}", warning=None, now=NOW)

            new_story()
            results["publish after one new story"] = timed(lambda: publisher.current(NOW), samples, between=new_story)
            with (
                serve_app(site(settings, store, publisher=publisher)) as base,
                httpx.Client(base_url=base, timeout=60) as client,
            ):
                started = time.perf_counter()
                assert client.get("/").status_code == 200
                results["home page, first (counts stories)"] = [(time.perf_counter() - started) * 1000]
                results["home page"] = timed(lambda: client.get("/"), samples)
            for kind, queries in QUERIES.items():
                results[f"search: {kind}"] = [
                    ms for q in queries for ms in timed(lambda q=q: store.search(q, 50), max(samples // 4, 3))
                ]
            results["search: all kinds"] = [ms for k in QUERIES for ms in results[f"search: {k}"]]
            results["tag feed (query + render)"] = timed(lambda: document(store, settings, "tags/lung.atom"), samples)
            week = timedelta(days=7)
            results["digest selection (one week)"] = timed(lambda: store.candidates(NOW - week, NOW), samples)
    return results


def measure_sizes(sizes: list[int], samples: int) -> None:
    print(f"size benchmark on PostgreSQL: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {samples} samples")
    by_size: dict[int, dict[str, list[float]]] = {}
    for n in sorted(sizes):  # each size's table as soon as it is measured: the largest takes long
        by_size[n] = measure(n, samples)
        print_table({n: by_size[n]})
    if len(by_size) > 1:
        print_table(by_size)


def print_table(by_size: dict[int, dict[str, list[float]]]) -> None:
    names = list(next(iter(by_size.values())))
    head = "".join(f"{f'{n:,} p50':>14}{f'{n:,} p95':>14}" for n in by_size)
    growth = len(by_size) > 1
    print(f"\n{'ms':<36}{head}{'growth p50' if growth else '':>12}", flush=True)
    for name in names:
        cells = "".join(f"{statistics.median(r[name]):>14.1f}{p95(r[name]):>14.1f}" for r in by_size.values())
        first, last = by_size[min(by_size)][name], by_size[max(by_size)][name]
        ratio = f"{statistics.median(last) / max(statistics.median(first), 1e-9):>11.1f}x" if growth else ""
        print(f"{name:<36}{cells}{ratio}", flush=True)
    if growth:
        print(
            "\ngrowth: p50 at the largest size over p50 at the smallest. Single timings (first publish, first home "
            "page) show the same number as p50 and p95.",
            flush=True,
        )

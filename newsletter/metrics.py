"""What the service exposes to Prometheus: the only home of prometheus-client.

Two kinds of figures. Counts read from the database at each scrape (feeds by status, stories, deliveries and
subscribers by status): every replica on one database answers the same. Timings observed in this process (each
feed's fetch, each digest run): each replica answers its own, as Prometheus expects of per-instance metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.core.errors import NewsletterError
from ingest.core.models import SourceReport
from ingest.store import Store

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Fetches: from a fast 304 to a slow server near the deadline ([fetch] timeout, 30 s by default).
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: A digest run: from an empty week to a large list through a slow relay.
DIGEST_BUCKETS = (0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


class _StoreCounts(Collector):
    """Gauges read from the database when scraped."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def describe(self) -> Iterator[Metric]:
        """The names and help texts alone: registering asks for them, and must not need the database."""
        yield GaugeMetricFamily("newsletter_database_up", "1 when the database answered this scrape, else 0.")
        yield GaugeMetricFamily("newsletter_feeds", "Followed feeds by status.", labels=["status"])
        yield GaugeMetricFamily("newsletter_stories", "Live stories (not merged away), visible or hidden.")
        yield GaugeMetricFamily("newsletter_deliveries", "Digest deliveries by status.", labels=["status"])
        yield GaugeMetricFamily("newsletter_subscribers", "Subscribers by status.", labels=["status"])

    def collect(self) -> Iterator[Metric]:
        store = self._store
        up = GaugeMetricFamily("newsletter_database_up", "1 when the database answered this scrape, else 0.")
        try:
            families = [
                _by_status("newsletter_feeds", "Followed feeds by status.", store.source_counts("feed")),
                _count("newsletter_stories", "Live stories (not merged away), visible or hidden.", store.count_live()),
                _by_status("newsletter_deliveries", "Digest deliveries by status.", store.delivery_counts()),
                _by_status("newsletter_subscribers", "Subscribers by status.", store.subscriber_counts()),
            ]
        except NewsletterError:  # the database is down: say so, and still serve this process's timings
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _count(name: str, documentation: str, value: int) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


def _by_status(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status, n in sorted(counts.items()):
        family.add_metric([status], n)
    return family


class Metrics:
    """One process's registry: the store's counts and this process's timings."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StoreCounts(store))
        self.fetch_seconds = Histogram(
            "newsletter_fetch_seconds",
            "Duration of each feed fetch, request to end of body.",
            buckets=FETCH_BUCKETS,
            registry=self.registry,
        )
        self.digest_seconds = Histogram(
            "newsletter_digest_run_seconds",
            "Duration of each digest step (make the due digest, deliver what is due).",
            buckets=DIGEST_BUCKETS,
            registry=self.registry,
        )

    def observe_fetches(self, reports: Iterable[SourceReport]) -> None:
        for report in reports:
            if report.fetch_seconds is not None:
                self.fetch_seconds.observe(report.fetch_seconds)

    def observe_digest(self, seconds: float) -> None:
        self.digest_seconds.observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything registered."""
        data: bytes = generate_latest(self.registry)
        return data


def names(exposition: bytes) -> Sequence[str]:
    """The metric names in an exposition (for tests and the README's list)."""
    return sorted({line.split()[2] for line in exposition.decode().splitlines() if line.startswith("# TYPE ")})

"""Retention, on both databases: the service's pass deletes the deliveries of digests older than
``[storage] keep_deliveries_days`` and folds the sightings of stories older than ``keep_sightings_days`` into a
count (the story keeps its first sighting, and how many copies it had)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.core.config import Settings, load_settings
from ingest.core.models import ParsedItem
from ingest.store import Store
from newsletter.service.service import Service
from newsletter.subscribers import manage as subscribers
from tests.conftest import write_config

#: A Monday 08:00: the digest of the week before is due.
DUE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
START = DUE - timedelta(days=3)


TITLES = {
    1: "Lung screening reaches more smokers in rural clinics",
    2: "Prostate biopsy guidance updated for older men",
    9: "A new melanoma vaccine enters its third phase",
}


def _item(n: int) -> ParsedItem:
    return ParsedItem(
        kind="teaser",
        key=f"k{n}",
        position=n,
        title=TITLES[n],
        summary=f"What happened in study {n}.",
        link=f"https://example.org/{n}",
        published=START - timedelta(hours=n),
    )


def _settings(folder: Path, storage: str) -> Settings:
    """A config on the test's database with ``storage`` lines added to its [storage] section."""
    (folder / "seeds").mkdir()
    cfg = write_config(folder, '[publish]\ndir = "public"\n[mail]\noutbox_dir = "outbox"\n')
    cfg.write_text(cfg.read_text().replace("\n\n[seeds]", f"\n{storage}\n\n[seeds]", 1))
    return load_settings(cfg, environ={})


@pytest.fixture
def service(tmp_path: Path, db_url: str) -> Iterator[Service]:
    settings = _settings(tmp_path, "keep_deliveries_days = 400\nkeep_sightings_days = 365")
    with Store.open(settings.storage.url) as store:
        for address in ("ann@example.org", "bob@example.org"):
            subscribers.add(store, address, START)
        # Two stories, each seen on three pages.
        for page in ("a", "b", "c"):
            src = store.page_source(f"/srv/seeds/{page}.txt", "/srv/seeds", START)
            store.save_page(src.id, [_item(1), _item(2)], content_hash=page, warning=None, now=START)
        yield Service(settings, store, clock=lambda: DUE)


def test_old_deliveries_go_and_old_sightings_fold_into_a_count(service: Service) -> None:
    store = service.store
    first = service.run_pass(DUE + timedelta(hours=1))
    assert first.digest is not None and first.digest.sent == 2
    (old,) = store.digests()
    stories = {s.id: s.sightings for s in store.stories()}
    assert sorted(stories.values()) == [3, 3]

    later = DUE + timedelta(weeks=58)  # a Monday again: that week's digest goes out too
    seen = later - timedelta(days=3)  # in the week the next digest carries
    src = store.page_source("/srv/seeds/new.txt", "/srv/seeds", seen)
    store.save_page(src.id, [_item(9)], content_hash="n", warning=None, now=seen)
    report = service.run_pass(later + timedelta(hours=1))
    assert report.errors == ()
    assert report.pruned is not None
    assert (report.pruned.deliveries, report.pruned.stories, report.pruned.sightings) == (2, 2, 4)
    assert store.deliveries(old.id) == []  # gone; the digest itself stays (the web's archive shows it)
    assert store.digest_by_period(old.period) is not None
    newest = store.digests(limit=1)[0]
    assert newest.period != old.period and len(store.deliveries(newest.id)) == 2  # a recent digest keeps its own
    for story in store.stories():
        if story.id in stories:
            assert story.sightings == 3  # the count stays
            assert len(store.sightings(story.id)) == 1  # one copy kept: the first
            assert len(store.story_sources(story.id)) == 1
        else:
            assert story.sightings == 1
    again = service.run_pass(later + timedelta(hours=2))
    assert again.pruned is not None
    assert (again.pruned.deliveries, again.pruned.stories, again.pruned.sightings) == (0, 0, 0)


def test_zero_keeps_everything(tmp_path: Path, db_url: str) -> None:
    settings = _settings(tmp_path, "keep_deliveries_days = 0\nkeep_sightings_days = 0")
    with Store.open(settings.storage.url) as store:
        for page in ("a", "b"):
            src = store.page_source(f"/srv/seeds/{page}.txt", "/srv/seeds", START)
            store.save_page(src.id, [_item(1)], content_hash=page, warning=None, now=START)
        report = Service(settings, store).run_pass(DUE + timedelta(days=5000))
        assert report.pruned is not None and report.pruned.sightings == 0
        (story,) = store.stories()
        assert len(store.sightings(story.id)) == 2

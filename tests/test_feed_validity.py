"""The published Atom documents pass the W3C feed validator's rules with no error and no warning (tests/feedcheck.py:
the validator is not installable here), every entry has an ``updated`` of its own that tells the truth, and every
entry names where the story was seen."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ingest.core.config import PublishConfig, Settings
from ingest.core.models import FeedState, ParsedItem
from ingest.store import Store, schema
from newsletter.publish import atom_feed, publish
from tests.conftest import NOW
from tests.feedcheck import ATOM, atom_problems

#: The truthful window: the store gives stories of one pass consecutive microseconds from the pass's clock reading.
PASS = timedelta(milliseconds=1)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


def _teasers(n: int, prefix: str, **kw: object) -> list[ParsedItem]:
    values: dict[str, object] = {"kind": "teaser", "published": None, "summary": ""}
    values.update(kw)
    return [
        ParsedItem(key=f"{prefix}{i}", position=i, title=f"{prefix} story {i} on adjuvant therapy", **values)  # type: ignore[arg-type]
        for i in range(n)
    ]


def _entries(document: bytes) -> list[ET.Element]:
    return ET.fromstring(document).findall(f"{ATOM}entry")


def test_the_published_documents_pass_the_validator_rules(
    project: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    """One ingest of the bundled seed page (many stories in one pass, one clock reading), then publish, through the
    CLI: the main feed, the tag feeds and the archive pages."""
    config = str(project / "newsletter.toml")
    (project / "newsletter.toml").write_text(
        (project / "newsletter.toml").read_text() + '\n[publish]\ndir = "public"\nmax_entries = 4\n'
    )
    code, _, err = run_cli("--config", config, "ingest")
    assert code == 0, err
    code, _, err = run_cli("--config", config, "publish")
    assert code == 0, err
    documents = sorted((project / "public").rglob("*.atom"))
    names = {p.relative_to(project / "public").as_posix() for p in documents}
    assert {"feed.atom", "tags/recap.atom", "archive/1.atom"} <= names
    now = datetime.now(UTC)
    for path in documents:
        body = path.read_bytes()
        assert atom_problems(body, now) == [], path.name
        for entry in _entries(body):  # a source, never the service, is named: here the seed folder, unnamed in config
            assert entry.findtext(f"{ATOM}author/{ATOM}name") == "seeds", path.name


def test_stories_made_together_get_distinct_updated_in_the_order_they_were_made(store: Store) -> None:
    page = store.page_source("/srv/seeds/a.txt", "/srv/seeds", NOW)
    store.save_page(page.id, _teasers(30, "a"), content_hash="a", warning=None, now=NOW)
    # Another source of the same pass: the same clock reading, and no value already given may come again.
    other = store.page_source("/srv/seeds/b.txt", "/srv/seeds", NOW)
    store.save_page(other.id, _teasers(5, "b"), content_hash="b", warning=None, now=NOW)
    stories = sorted(store.stories(), key=lambda s: s.id)
    stamps = [s.updated for s in stories]
    assert len(set(stamps)) == 35
    assert stamps == sorted(stamps)  # creation order
    assert all(NOW <= t < NOW + PASS for t in stamps)  # within the pass: never before the clock was read
    assert stamps[0] == NOW
    # first_seen is when the pass saw them: one reading for all, as before.
    assert {s.first_seen for s in stories} == {NOW}


def test_changes_at_one_clock_reading_keep_updated_distinct(store: Store) -> None:
    """A merge (both rows move), a split (a new row and the old one) and new stories, all at one reading."""
    page = store.page_source("/srv/seeds/a.txt", "/srv/seeds", NOW)
    store.save_page(page.id, _teasers(4, "a"), content_hash="a", warning=None, now=NOW)
    first, second, third, _ = sorted(s.id for s in store.stories())
    later = NOW + timedelta(hours=1)
    store.merge_stories(first, second, later)
    store.merge_stories(first, third, later)
    (moved, *_) = [g.id for g in store.sightings(first) if g.story_id == first][1:]
    store.split_sighting(first, moved, later)
    other = store.page_source("/srv/seeds/b.txt", "/srv/seeds", later)
    store.save_page(other.id, _teasers(2, "b"), content_hash="b", warning=None, now=later)
    with store.engine.connect() as conn:
        rows = conn.execute(select(schema.story.c.id, schema.story.c.updated)).all()  # merged-away rows too
    stamps = [row.updated for row in rows]
    assert len(stamps) == 7
    assert len(set(stamps)) == 7
    assert sum(later <= t < later + PASS for t in stamps) == 6  # all but the story nothing touched


def test_each_entry_names_its_source_and_its_author(store: Store, tmp_path: Path) -> None:
    feed, _ = store.upsert_feed(
        "https://feeds.example.org/onc.xml", name="OncFeed", tags=(), interval=None, origin="cli", now=NOW
    )
    items = [
        ParsedItem(
            kind="entry", key="e1", position=1, title="With an author", published=NOW, summary="s", author="Dr. Who"
        ),
        ParsedItem(kind="entry", key="e2", position=2, title="Without one", published=NOW, summary="s"),
    ]
    state = FeedState(status="active", last_status=200, error_count=0, next_check_at=None, success=True)
    store.save_feed(feed.id, items, state, NOW)
    page = store.page_source("/srv/seeds/rail.txt", "/srv/seeds", NOW)
    store.save_page(page.id, _teasers(1, "p"), content_hash="p", warning=None, now=NOW)
    settings = Settings(publish=PublishConfig(dir=tmp_path / "public"))
    publish(store, settings, NOW)
    body = (tmp_path / "public" / "feed.atom").read_bytes()
    names = {e.findtext(f"{ATOM}title"): e.findtext(f"{ATOM}author/{ATOM}name") for e in _entries(body)}
    assert names == {
        "With an author": "Dr. Who (OncFeed)",
        "Without one": "OncFeed",
        "p story 0 on adjuvant therapy": "seeds",  # a seed page by its folder (unnamed here), never a path
    }
    assert atom_problems(body, NOW) == []


# ---- the checker itself must catch what the validator catches ---------------------------------------------------


@pytest.mark.no_database
def test_the_checker_reports_what_the_validator_warns_about() -> None:
    from ingest.core.models import Story

    def story(i: int, updated: datetime) -> Story:
        return Story(
            id=i,
            uid=f"tag:example.org,2026:story:{i}",
            title=f"Story {i}",
            summary="s",
            content="",
            link=f"https://news.example/{i}",
            published=None,
            first_seen=NOW,
            updated=updated,
            tags=(),
        )

    good = atom_feed([story(1, NOW), story(2, NOW + timedelta(microseconds=1))], PublishConfig())
    assert atom_problems(good, NOW) == []
    same = atom_feed([story(1, NOW), story(2, NOW)], PublishConfig())
    assert atom_problems(same, NOW) == [
        f"DuplicateUpdated: 2 entries with the same value for atom:updated {NOW.isoformat()}"
    ]
    twice = atom_feed([story(1, NOW), story(1, NOW + timedelta(seconds=1))], PublishConfig())
    assert any(p.startswith("DuplicateEntries") for p in atom_problems(twice, NOW))
    future = atom_feed([story(1, NOW + timedelta(days=3))], PublishConfig())
    assert any("ImplausibleDate" in p for p in atom_problems(future, NOW))
    broken = good.replace(b"<author>\n      <name>feed-newsletter</name>\n    </author>\n", b"", 1)
    broken = broken.replace(b"<updated>2026-11-27T10:00:00+00:00</updated>", b"<updated>27 Nov 2026</updated>", 1)
    assert "feed: MissingElement author" not in atom_problems(broken, NOW)
    assert any("InvalidRFC3339Date" in p for p in atom_problems(broken, NOW))
    no_self = good.replace(b'rel="self"', b'rel="related"')
    assert "feed: MissingSelf" in atom_problems(no_self, NOW)

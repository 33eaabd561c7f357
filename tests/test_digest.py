"""What a digest carries and when: ISO-week periods in a time zone, due times, each story once, backlog, sections."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.core.config import DigestConfig
from ingest.core.errors import UsageError
from ingest.store import Store
from newsletter.digest import job
from newsletter.digest.select import Selection, due_period, next_due, period_containing, period_for, subject
from tests.conftest import NOW
from tests.maildata import W48_DUE, W48_START, confirmed, feed_stories, make_settings, page_story


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


def _titles(selection: Selection) -> list[list[str]]:
    return [[i.title for i in s.items] for s in selection.sections]


# ---- periods ---------------------------------------------------------------------------------------------------


def test_period_is_an_iso_week_due_after_it() -> None:
    p = period_for("2026-W48", DigestConfig())
    assert (p.start, p.end, p.due_at) == (W48_START, W48_START + timedelta(days=7), W48_DUE)
    assert p.label == "Nov 23 to 29"
    assert period_containing(NOW, DigestConfig()).key == "2026-W48"
    assert period_for("2026-W49", DigestConfig()).label == "Nov 30 to Dec 6"
    assert period_for("2026-W53", DigestConfig()).label == "Dec 28, 2026 to Jan 3, 2027"


def test_period_in_a_time_zone_and_another_send_time() -> None:
    config = DigestConfig(timezone="America/New_York", send_at="fri 17:00")
    p = period_for("2026-W48", config)
    ny = ZoneInfo("America/New_York")
    assert p.start == datetime(2026, 11, 23, tzinfo=ny)
    assert p.start.astimezone(UTC) == datetime(2026, 11, 23, 5, tzinfo=UTC)
    assert p.due_at.astimezone(UTC) == datetime(2026, 12, 4, 22, tzinfo=UTC)  # Friday of the week after, 17:00 EST
    # Sunday evening in New York is already Monday in UTC: still the week of Nov 23 there.
    assert period_containing(datetime(2026, 11, 30, 3, tzinfo=UTC), config).key == "2026-W48"


@pytest.mark.parametrize("key", ["2026-48", "2026-W5", "2025-W53", "W48", "2026-W00", "2026-W48x"])
def test_bad_period_names(key: str) -> None:
    with pytest.raises(UsageError, match="period"):
        period_for(key, DigestConfig())


def test_due_period_turns_over_at_send_time() -> None:
    config = DigestConfig()
    assert due_period(W48_DUE - timedelta(seconds=1), config).key == "2026-W47"
    assert due_period(W48_DUE, config).key == "2026-W48"
    assert due_period(NOW, config).key == "2026-W47"
    assert next_due(NOW, config) == W48_DUE
    assert next_due(W48_DUE, config) == W48_DUE + timedelta(days=7)


def test_subject_has_the_count_and_the_date_range() -> None:
    config = DigestConfig()
    assert subject(config, 12, period_for("2026-W48", config)) == "Oncology digest: 12 new stories, Nov 23 to 29"
    odd = DigestConfig(subject="{count} for {period} {unknown}")
    assert subject(odd, 3, period_for("2026-W48", odd)) == "3 for 2026-W48 {unknown}"


# ---- selection -------------------------------------------------------------------------------------------------


def test_stories_first_seen_in_the_period_each_once(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    page_story(store, "Seen last week", first_seen=W48_START - timedelta(days=2))
    page_story(
        store, "A new trial", first_seen=W48_START + timedelta(days=1), published=datetime(2026, 11, 20, tzinfo=UTC)
    )
    recap = page_story(
        store,
        "Recap: HER2 and brain metastases",
        first_seen=W48_START + timedelta(days=2),
        published=datetime(2022, 7, 16, tzinfo=UTC),
        tags=["recap"],
    )
    page_story(store, "Seen after the week ended", first_seen=W48_START + timedelta(days=7, hours=1))

    w48 = job.select_for(store, settings, period_for("2026-W48", settings.digest))
    assert _titles(w48) == [["A new trial"], ["Recap: HER2 and brain metastases"]]
    assert [s.title for s in w48.sections] == ["New articles", "Recaps"]

    confirmed(store, "reader@example.org")
    digest, created = job.ensure_digest(store, settings, period_for("2026-W48", settings.digest), W48_DUE)
    assert created
    assert digest.status == "pending"
    assert digest.story_count == 2
    assert digest.subject == "Oncology digest: 2 new stories, Nov 23 to 29"

    # The 2022 recap is carried once: seen again next week, it is still not news.
    page_story(store, "Recap: HER2 and brain metastases", first_seen=W48_DUE, tags=["recap"])
    w49 = job.select_for(store, settings, period_for("2026-W49", settings.digest))
    assert _titles(w49) == [["Seen after the week ended"]]
    assert recap not in w49.story_ids


def test_the_same_period_is_made_once(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    page_story(store, "Only story", first_seen=W48_START + timedelta(days=1))
    confirmed(store, "a@example.org", "b@example.org")
    period = period_for("2026-W48", settings.digest)
    first, made = job.ensure_digest(store, settings, period, W48_DUE)
    page_story(store, "Late arrival", first_seen=W48_START + timedelta(days=2), page="/srv/seeds/late.txt")
    again, made_again = job.ensure_digest(store, settings, period, W48_DUE + timedelta(minutes=5))
    assert (made, made_again) == (True, False)
    assert again == first
    assert len(store.deliveries(first.id)) == 2


def test_a_skipped_week_rolls_over(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    page_story(store, "From week 48", first_seen=W48_START + timedelta(days=1))
    page_story(store, "From week 49", first_seen=W48_START + timedelta(days=8), page="/srv/seeds/b.txt")
    late = W48_DUE + timedelta(hours=settings.digest.catch_up_hours, minutes=1)
    skipped, _ = job.ensure_digest(store, settings, period_for("2026-W48", settings.digest), late)
    assert skipped.status == "skipped"
    assert skipped.note is not None
    assert "late" in skipped.note
    assert store.deliveries(skipped.id) == []
    w49 = job.select_for(store, settings, period_for("2026-W49", settings.digest))
    assert _titles(w49) == [["From week 49", "From week 48"]]


def test_an_empty_period_sends_nothing_unless_configured(store: Store, tmp_path: Path) -> None:
    confirmed(store, "reader@example.org")
    quiet = make_settings(tmp_path)
    digest, _ = job.ensure_digest(store, quiet, period_for("2026-W48", quiet.digest), W48_DUE)
    assert (digest.status, store.deliveries(digest.id)) == ("empty", [])

    chatty = make_settings(tmp_path, digest={"send_empty": True})
    digest, _ = job.ensure_digest(store, chatty, period_for("2026-W49", chatty.digest), W48_DUE + timedelta(days=7))
    assert digest.status == "pending"
    assert digest.subject == "Oncology digest: 0 new stories, Nov 30 to Dec 6"
    assert len(store.deliveries(digest.id)) == 1


def test_a_new_feeds_backlog_is_marked_seen(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # backlog_days = 14
    first_fetch = W48_START + timedelta(days=1)
    feed_stories(
        store,
        "https://feeds.example.org/onc.xml",
        [
            ("Fresh entry", first_fetch - timedelta(days=3)),
            ("Old entry", first_fetch - timedelta(days=40)),
            ("Undated entry", None),
        ],
        fetched=first_fetch,
        tags=["lung"],
    )
    # Later fetches of the same feed: an entry dated years ago that was not there at the first fetch is news.
    feed_stories(
        store,
        "https://feeds.example.org/onc.xml",
        [("Old entry, newly posted", datetime(2024, 1, 1, tzinfo=UTC))],
        fetched=first_fetch + timedelta(days=1),
        tags=["lung"],
    )
    # Seed pages are curated: an old teaser on a new page is never backlog.
    page_story(store, "Old teaser on a new page", first_seen=first_fetch, published=datetime(2023, 5, 1, tzinfo=UTC))
    w48 = job.select_for(store, settings, period_for("2026-W48", settings.digest))
    assert _titles(w48) == [["Old teaser on a new page"], ["Undated entry", "Fresh entry", "Old entry, newly posted"]]


def test_sections_by_kind_and_tag_newest_first(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    day = W48_START + timedelta(days=1)
    page_story(store, "Older article", first_seen=day, published=day - timedelta(days=2), page="/s/a.txt")
    page_story(store, "Newer article", first_seen=day, published=day - timedelta(days=1), page="/s/b.txt")
    page_story(store, "Undated article", first_seen=day + timedelta(hours=1), page="/s/c.txt")
    page_story(store, "Recap: A", first_seen=day, published=day, tags=["recap"], page="/s/d.txt")
    feed_stories(store, "https://f.example.org/p.xml", [("Prostate news", day)], fetched=day, tags=["prostate"])
    feed_stories(
        store, "https://f.example.org/l.xml", [("Lung news", day)], fetched=day, tags=["lung"], name="Lung Feed"
    )
    feed_stories(store, "https://f.example.org/x.xml", [("Untagged news", day)], fetched=day)
    w48 = job.select_for(store, settings, period_for("2026-W48", settings.digest))
    assert [(s.key, s.title) for s in w48.sections] == [
        ("articles", "New articles"),
        ("recaps", "Recaps"),
        ("tag:lung", "From the feeds: lung"),
        ("tag:prostate", "From the feeds: prostate"),
        ("feeds", "From the feeds"),
    ]
    assert _titles(w48)[0] == ["Undated article", "Newer article", "Older article"]
    lung = w48.sections[2].items[0]
    assert (lung.source, lung.date, lung.url) == ("Lung Feed", "24 Nov 2026", lung.url)
    assert lung.url.startswith("https://feeds.example.org/")
    undated = w48.sections[0].items[0]
    assert undated.date == ""
    assert undated.url == f"https://news.example.org/stories/{undated.story_id}"  # no link: its page on our site
    assert w48.count == 7

"""Publishing: the feed files read back with feedparser and a strict XML parser; twins, tags, RFC 5005 archives."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from ingest.core.config import PublishConfig, Settings
from ingest.core.models import ParsedItem, Story
from ingest.store import Store, schema
from newsletter.publish import STATE_FILE, document, documents, publish, tag_slug
from tests.conftest import NOW

A = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"


def _item(i: int, **kw: object) -> ParsedItem:
    values: dict[str, object] = {
        "kind": "entry",
        "key": f"k{i}",
        "position": i,
        "title": f"Story number {i}",
        "published": NOW - timedelta(days=i),
        "summary": f"The blurb of story {i}.",
        "link": f"https://news.example/{i}",
        "tags": ("recap",) if i % 3 == 0 else ("breast cancer",),
    }
    values.update(kw)
    return ParsedItem(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


def _settings(tmp_path: Path, max_entries: int = 100) -> Settings:
    return Settings(
        publish=PublishConfig(
            dir=tmp_path / "public", base_url="https://news.example.org/onc/", max_entries=max_entries
        )
    )


def _add(store: Store, items: list[ParsedItem], now: datetime = NOW, page: str = "/seeds/a.txt") -> None:
    src = store.page_source(page, "/seeds", now)
    store.save_page(src.id, items, content_hash=str(now), warning=None, now=now)


def _edit_story(store: Store, story_id: int, now: datetime, **values: object) -> None:
    # No store function edits a story's text yet (dedupe will, when sightings join); this stands in for it.
    with store.engine.begin() as conn:
        conn.execute(schema.story.update().where(schema.story.c.id == story_id).values(updated=now, **values))


def _parse(path: Path) -> tuple[ET.Element, feedparser.FeedParserDict]:
    data = path.read_bytes()
    root = ET.fromstring(data)  # strict: any well-formedness error raises
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return root, parsed


def _links(element: ET.Element) -> dict[str, str]:
    return {link.get("rel", "alternate"): link.get("href", "") for link in element.findall(f"{A}link")}


def _entry_ids(root: ET.Element) -> list[str]:
    return [e.findtext(f"{A}id") or "" for e in root.findall(f"{A}entry")]


def test_feed_has_every_required_element(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(5)] + [_item(9, link=None, content="<p>Full <b>body</b> here</p>")])
    settings = _settings(tmp_path)
    report = publish(store, settings, NOW)
    assert report.entries == 6
    root, parsed = _parse(tmp_path / "public" / "feed.atom")

    assert root.tag == f"{A}feed"
    assert root.findtext(f"{A}id") == settings.publish.id
    assert root.findtext(f"{A}title") == "Oncology news"
    assert root.findtext(f"{A}subtitle")
    newest = max(s.updated for s in store.stories())  # the six stories of one pass: six microseconds from NOW
    assert root.findtext(f"{A}updated") == newest.isoformat() == (NOW + timedelta(microseconds=5)).isoformat()
    assert root.findtext(f"{A}author/{A}name") == "feed-newsletter"
    assert root.findtext(f"{A}generator") == "feed-newsletter"
    assert _links(root) == {
        "self": "https://news.example.org/onc/feed.atom",
        "alternate": "https://news.example.org/onc/",
    }

    entries = root.findall(f"{A}entry")
    stories = store.stories()
    assert _entry_ids(root) == [s.uid for s in stories]  # newest first, as the store orders them
    for entry, story in zip(entries, stories, strict=True):
        assert (entry.findtext(f"{A}id") or "").startswith("tag:")
        assert entry.findtext(f"{A}title") == story.title
        assert entry.findtext(f"{A}published") == (story.published or story.first_seen).isoformat()
        assert entry.findtext(f"{A}updated") == story.updated.isoformat()
        assert entry.findtext(f"{A}author/{A}name")
        assert entry.findtext(f"{A}summary") == story.summary
        assert [c.get("term") for c in entry.findall(f"{A}category")] == list(story.tags)
        alternate = entry.find(f"{A}link[@rel='alternate']")
        assert alternate is not None
        assert alternate.get("href") == (story.link or f"https://news.example.org/onc/stories/{story.id}")
    undated = next(e for e in parsed.entries if e.title == "Story number 9")
    assert undated.link == f"https://news.example.org/onc/stories/{stories[-1].id}"  # no link: our own page
    assert undated.content[0].type == "text/html"
    assert undated.content[0].value == "<p>Full <b>body</b> here</p>"
    assert "recap" in [t.term for t in parsed.entries[0].tags]


def test_feed_is_capped_and_newest_first(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(12)])
    publish(store, _settings(tmp_path, max_entries=4), NOW)
    _, parsed = _parse(tmp_path / "public" / "feed.atom")
    assert [e.title for e in parsed.entries] == [f"Story number {i}" for i in range(4)]


def test_republish_keeps_bytes_ids_and_updated_and_moves_only_a_changed_story(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(4)])
    settings = _settings(tmp_path)
    first = publish(store, settings, NOW)
    feed = tmp_path / "public" / "feed.atom"
    before, mtime = feed.read_bytes(), feed.stat().st_mtime_ns
    assert "feed.atom" in first.written

    again = publish(store, settings, NOW + timedelta(hours=1))
    assert again.up_to_date
    (tmp_path / "public" / STATE_FILE).unlink()  # forget what was published: everything is rebuilt...
    rebuilt = publish(store, settings, NOW + timedelta(hours=2))
    assert rebuilt.written == ()  # ...to the same bytes, so nothing is rewritten
    assert feed.read_bytes() == before
    assert feed.stat().st_mtime_ns == mtime

    changed = store.stories()[2]
    later = NOW + timedelta(days=1)
    _edit_story(store, changed.id, later, title="A corrected title")
    report = publish(store, settings, later)
    assert "feed.atom" in report.written
    old, new = ET.fromstring(before), ET.fromstring(feed.read_bytes())
    assert _entry_ids(old) == _entry_ids(new)
    old_updated = {e.findtext(f"{A}id"): e.findtext(f"{A}updated") for e in old.findall(f"{A}entry")}
    new_updated = {e.findtext(f"{A}id"): e.findtext(f"{A}updated") for e in new.findall(f"{A}entry")}
    moved = {uid for uid in old_updated if old_updated[uid] != new_updated[uid]}
    assert moved == {changed.uid}
    assert new_updated[changed.uid] == later.isoformat()
    assert new.findtext(f"{A}updated") == later.isoformat()


HOSTILE_TITLE = "Bad \x00\x08\x0b\x1f title ]]> <script>alert(1)</script> & more"
HOSTILE_HTML = '<p onclick="x()">Body ]]> <script>alert(2)</script><a href="javascript:alert(3)">x</a></p>'


def _assert_safe(data: bytes) -> None:
    root = ET.fromstring(data)
    assert all(el.tag.rsplit("}", 1)[-1].lower() != "script" for el in root.iter())
    assert b"<script" not in data.lower()
    for el in root.iter():
        text = el.text or ""
        assert "\x00" not in text
        if el.tag == f"{A}content":
            assert "<script" not in text.lower()
            assert "javascript:" not in text.lower()
            assert "onclick" not in text.lower()


def test_hostile_story_still_gives_a_valid_and_safe_feed(store: Store, tmp_path: Path) -> None:
    _add(
        store,
        [
            _item(1, title=HOSTILE_TITLE, summary="blurb ]]> <script>x</script>\x0c", content=HOSTILE_HTML),
            _item(2, link="javascript:alert(4)"),
        ],
    )
    publish(store, _settings(tmp_path), NOW)
    out = tmp_path / "public"
    for path in [out / "feed.atom", *(out / "tags").iterdir()]:
        _assert_safe(path.read_bytes())
    root, parsed = _parse(out / "feed.atom")
    assert len(parsed.entries) == 2
    hostile, scheme = parsed.entries
    assert hostile.title.startswith("Bad \ufffd\ufffd\ufffd\ufffd title ]]> ")  # controls replaced, as at ingest
    assert "<script>alert(1)</script>" in hostile.title  # text, never markup
    assert "alert(2)" not in hostile.content[0].value
    assert scheme.link.startswith("https://news.example.org/onc/stories/")  # javascript: never becomes a link
    assert all(not link.startswith("javascript:") for link in _links(root).values())
    _, rss = _parse(out / "feed.rss")
    assert [e.id for e in rss.entries] == [e.id for e in parsed.entries]
    json.loads((out / "feed.json").read_bytes())


def _story(i: int, **kw: object) -> Story:
    values: dict[str, object] = {
        "id": i,
        "uid": f"tag:test.example,2026-11-27:story:{i}",
        "title": f"Story {i}",
        "summary": "A blurb.",
        "content": "",
        "link": None,
        "published": NOW,
        "first_seen": NOW,
        "updated": NOW,
        "tags": (),
    }
    values.update(kw)
    return Story(**values)  # type: ignore[arg-type]


def test_lone_surrogates_and_controls_never_break_any_format() -> None:
    # A lone surrogate cannot even be stored in SQLite; the pure functions must cope anyway.
    hostile = _story(1, title="Half \ud800 pair \x01", summary="x \udfff ]]> \x1b", content="<p>\ud83d y</p>")
    config = PublishConfig()
    for data in (documents.atom_feed([hostile], config), documents.rss_feed([hostile], config)):
        _assert_safe(data)
        assert not feedparser.parse(data).bozo
        assert "Half \ufffd pair" in data.decode("utf-8")
    parsed = json.loads(documents.json_feed([hostile], config).decode("utf-8"))
    assert parsed["items"][0]["title"] == "Half \ufffd pair \ufffd"


def test_one_bad_story_does_not_stop_the_others() -> None:
    naive = _story(2, updated=datetime(2026, 11, 27, 10, 0))  # no time zone: feedgen refuses it
    skipped: list[int] = []
    for build in (documents.atom_feed, documents.rss_feed):
        data = build([_story(1), naive, _story(3)], PublishConfig(), on_skip=lambda s, e: skipped.append(s.id))
        assert [e.id for e in feedparser.parse(data).entries] == [_story(1).uid, _story(3).uid]
    assert skipped == [2, 2]


def test_same_stories_give_the_same_bytes_in_every_format() -> None:
    stories = [_story(i, content="<p>b</p>", tags=("recap",)) for i in range(3)]
    config = PublishConfig()
    for build in (documents.atom_feed, documents.rss_feed, documents.json_feed):
        assert build(stories, config) == build(list(stories), config)  # type: ignore[operator]


def test_rss_and_json_twins_carry_the_same_entries(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(3)] + [_item(7, content="<p>Body</p>")])
    publish(store, _settings(tmp_path), NOW)
    out = tmp_path / "public"
    _, atom_parsed = _parse(out / "feed.atom")
    rss_root, rss = _parse(out / "feed.rss")
    assert rss.version == "rss20"
    assert [e.id for e in rss.entries] == [e.id for e in atom_parsed.entries]
    assert [e.link for e in rss.entries] == [e.link for e in atom_parsed.entries]
    assert rss_root.findtext("channel/link") == "https://news.example.org/onc/"
    assert rss_root.findtext("channel/lastBuildDate") == "Fri, 27 Nov 2026 10:00:00 +0000"
    body = next(e for e in rss.entries if e.title == "Story number 7")
    assert body.content[0].value == "<p>Body</p>"

    feed = json.loads((out / "feed.json").read_bytes())
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["feed_url"] == "https://news.example.org/onc/feed.json"
    assert [i["id"] for i in feed["items"]] == [e.id for e in atom_parsed.entries]
    assert all(("content_html" in i) != ("content_text" in i) for i in feed["items"])
    assert feed["items"][0]["tags"] == ["recap"]
    datetime.fromisoformat(feed["items"][0]["date_published"])


def test_one_feed_per_tag_with_safe_names(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(7)] + [_item(20, tags=("../../etc", "Recap"))])
    report = publish(store, _settings(tmp_path), NOW)
    out = tmp_path / "public"
    names = sorted(p.name for p in (out / "tags").iterdir())
    assert names == sorted(f"{tag_slug(t)}.atom" for t in ("breast cancer", "recap", "../../etc"))
    assert all(name.replace("-", "").replace(".atom", "").isalnum() for name in names)
    assert report.tags == 3
    root, parsed = _parse(out / "tags" / "recap.atom")
    assert {e.title for e in parsed.entries} == {f"Story number {i}" for i in (0, 3, 6, 20)}
    assert root.findtext(f"{A}id") == "tag:feed-newsletter.example,2026:feed/tags/recap"  # its own logical feed
    assert root.findtext(f"{A}title") == "Oncology news: recap"
    assert _links(root)["self"] == "https://news.example.org/onc/tags/recap.atom"


def test_tag_slugs_are_stable_and_one_to_one() -> None:
    assert tag_slug("recap") == "recap"
    assert tag_slug("breast-cancer") == "breast-cancer"
    assert tag_slug("breast cancer").startswith("breast-cancer-")
    assert tag_slug("breast cancer") != tag_slug("breast_cancer")
    assert tag_slug("Recap") == "recap"
    assert tag_slug("ünïcode") != tag_slug("n-code")
    assert "/" not in tag_slug("../x") and not tag_slug("../x").startswith(".")


def _archive_links(path: Path) -> tuple[dict[str, str], bool, list[str]]:
    root, _ = _parse(path)
    return _links(root), root.find(f"{FH}archive") is not None, _entry_ids(root)


def test_archive_pages_link_back_and_hold_every_story(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(12)])
    settings = _settings(tmp_path, max_entries=5)
    report = publish(store, settings, NOW)
    out = tmp_path / "public"
    base = "https://news.example.org/onc/"
    assert report.archive_pages == 2  # 12 stories: two full pages of 5; the last 2 wait for their page to fill
    assert sorted(p.name for p in (out / "archive").iterdir()) == ["1.atom", "2.atom"]

    main, is_archive, main_ids = _archive_links(out / "feed.atom")
    assert main["prev-archive"] == base + "archive/2.atom"
    assert not is_archive
    two, two_archive, two_ids = _archive_links(out / "archive" / "2.atom")
    assert two_archive
    assert two["prev-archive"] == base + "archive/1.atom"
    assert two["current"] == base + "feed.atom"
    assert two["self"] == base + "archive/2.atom"
    assert "next-archive" not in two
    one, _, one_ids = _archive_links(out / "archive" / "1.atom")
    assert "prev-archive" not in one
    assert one["next-archive"] == base + "archive/2.atom"
    assert ET.fromstring((out / "archive" / "1.atom").read_bytes()).findtext(f"{A}id") == settings.publish.id
    # Page 1 is the oldest five stories by creation; the union of all documents is every story, including the two
    # not in a full page yet even though their dates are the oldest (they displace the 4th and 5th newest).
    ids_by_creation = [s.uid for s in sorted(store.stories(), key=lambda s: s.id)]
    assert set(one_ids) == set(ids_by_creation[:5])
    assert set(two_ids) == set(ids_by_creation[5:10])
    assert set(main_ids) | set(one_ids) | set(two_ids) == set(ids_by_creation)
    assert set(ids_by_creation[10:]) <= set(main_ids)
    assert len(main_ids) == 5


def test_full_archive_pages_are_not_rewritten(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(12)])
    settings = _settings(tmp_path, max_entries=5)
    publish(store, settings, NOW)
    out = tmp_path / "public"
    page1 = (out / "archive" / "1.atom").stat().st_mtime_ns

    later = NOW + timedelta(days=1)
    _add(store, [_item(i) for i in range(30, 33)], now=later, page="/seeds/b.txt")  # 15 rows: page 3 fills
    report = publish(store, settings, later)
    assert {2, 3} <= set(report.stale_pages)  # page 2 gains its next-archive link
    assert [n for n in report.written if n.startswith("archive/")] == ["archive/2.atom", "archive/3.atom"]
    assert (out / "archive" / "1.atom").stat().st_mtime_ns == page1
    two, _, _ = _archive_links(out / "archive" / "2.atom")
    assert two["next-archive"] == "https://news.example.org/onc/archive/3.atom"
    main, _, _ = _archive_links(out / "feed.atom")
    assert main["prev-archive"] == "https://news.example.org/onc/archive/3.atom"

    # An edit to a story of page 1 rewrites page 1, and only it among the archives.
    oldest = min(store.stories(), key=lambda s: s.id)
    edited = later + timedelta(days=1)
    _edit_story(store, oldest.id, edited, summary="A corrected blurb.")
    report = publish(store, settings, edited)
    assert 1 in report.stale_pages
    assert [n for n in report.written if n.startswith("archive/")] == ["archive/1.atom"]
    _, parsed = _parse(out / "archive" / "1.atom")
    assert "A corrected blurb." in [e.summary for e in parsed.entries]


def test_files_are_replaced_atomically_and_readable(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(3)])
    publish(store, _settings(tmp_path), NOW)
    out = tmp_path / "public"
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert (out / "feed.atom").stat().st_mode & 0o777 == 0o644


def test_documents_built_on_demand_match_the_published_files(store: Store, tmp_path: Path) -> None:
    _add(store, [_item(i) for i in range(8)])
    settings = _settings(tmp_path, max_entries=3)
    publish(store, settings, NOW)
    out = tmp_path / "public"
    for name in ("feed.atom", "feed.rss", "feed.json", "archive/1.atom", "archive/2.atom", "tags/recap.atom"):
        assert document(store, settings, name) == (out / name).read_bytes(), name
    for missing in ("archive/3.atom", "archive/0.atom", "tags/nope.atom", "tags/../feed.atom", "feed.xml"):
        assert document(store, settings, missing) is None, missing


def test_empty_store_publishes_an_empty_valid_feed(store: Store, tmp_path: Path) -> None:
    report = publish(store, _settings(tmp_path), NOW)
    assert report.entries == 0
    root, parsed = _parse(tmp_path / "public" / "feed.atom")
    assert parsed.entries == []
    assert root.findtext(f"{A}updated") == NOW.isoformat()
    assert publish(store, _settings(tmp_path), NOW + timedelta(hours=1)).up_to_date


def test_entry_dates_are_utc_rfc3339() -> None:
    paris = _story(1, published=datetime(2026, 11, 27, 11, 0, tzinfo=UTC) + timedelta(0))
    data = documents.atom_feed([paris], PublishConfig())
    entry = ET.fromstring(data).find(f"{A}entry")
    assert entry is not None
    assert entry.findtext(f"{A}published") == "2026-11-27T11:00:00+00:00"


def test_a_story_that_breaks_the_finished_document_is_found_and_left_out() -> None:
    # feedgen renders lazily: when the whole document fails, each entry is tried alone and the culprit dropped.
    stories = [_story(1), _story(2, title="poison"), _story(3)]

    def finish(entries: list[tuple[Story, str]]) -> bytes:
        if any(e == "poison" for _, e in entries):
            raise ValueError("cannot serialise")
        return ",".join(e for _, e in entries).encode()

    def check(entry: str) -> None:
        if entry == "poison":
            raise ValueError("this one")

    skipped: list[int] = []
    data = documents._build(stories, lambda s: s.title, check, finish, lambda s, e: skipped.append(s.id))
    assert data == b"Story 1,Story 3"
    assert skipped == [2]

"""An operator hides (retracts) a story and shows it again: ``newsletter stories hide ID [--reason TEXT]`` and
``stories unhide ID``, through the CLI, the published folder and the web, on both databases.

Hidden, a story leaves the pages, search, the feeds (feed.atom and the other Atom documents that would hold it say
so with an RFC 6721 ``at:deleted-entry``), the tag feeds and future digests; ``stories explain`` and ``status`` show
it hidden, with the reason.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from ingest.core.config import PublishConfig, Settings, load_settings
from ingest.core.models import ParsedItem
from ingest.store import Store
from ingest.store.engine import HEAD, MIGRATIONS
from newsletter.publish import publish
from newsletter.web.app import site
from tests.conftest import NOW, write_config
from tests.feedcheck import ATOM, TOMBSTONES, atom_problems
from tests.mailsite import serve_app

RunCli = Callable[..., tuple[int, str, str]]
PUBLIC = "https://news.example.org/"
RETRACTED = "Drug X withdrawn after data errors"


def _item(i: int, title: str, *, tags: tuple[str, ...] = (), hours: int = 0) -> ParsedItem:
    return ParsedItem(
        kind="teaser",
        key=f"k{i}",
        position=i,
        title=title,
        published=NOW - timedelta(hours=hours),
        summary=f"What {title} is about.",
        tags=tags,
    )


@dataclass
class Project:
    folder: Path
    config: str
    store: Store
    settings: Settings
    kept: int  # the oldest row
    retracted: int  # the story hidden in these tests: the newest, alone in its tag "retracted-tag"
    third: int

    @property
    def public(self) -> Path:
        return self.settings.publish.dir

    def uid(self, story_id: int) -> str:
        uid = self.store.story_uid(story_id)
        assert uid is not None
        return uid


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> Iterator[Project]:
    (tmp_path / "seeds").mkdir()
    config = write_config(tmp_path, f'\n[publish]\ndir = "public"\nbase_url = "{PUBLIC}"\nmax_entries = 10\n')
    store = Store.open(db_url)
    page = store.page_source("/srv/seeds/page.txt", "/srv/seeds", NOW - timedelta(days=1))
    items = [
        _item(1, "Lung screening reaches more smokers", tags=("lung",), hours=1),
        _item(2, RETRACTED, tags=("retracted-tag", "lung")),
        _item(3, "Prostate biopsy guidance updated", hours=2),
    ]
    store.save_page(page.id, items, content_hash="h", warning=None, now=NOW - timedelta(days=1))
    kept, retracted, third = sorted(s.id for s in store.stories())
    assert {s.title for s in store.stories() if s.id == retracted} == {RETRACTED}
    try:
        yield Project(tmp_path, str(config), store, load_settings(config, environ={}), kept, retracted, third)
    finally:
        store.close()


def _feed(project: Project, name: str = "feed.atom") -> ET.Element:
    body = (project.public / name).read_bytes()
    assert atom_problems(body, datetime.now(UTC)) == [], name
    return ET.fromstring(body)


def _entry_ids(root: ET.Element) -> list[str]:
    return [e.findtext(f"{ATOM}id") or "" for e in root.findall(f"{ATOM}entry")]


def _tombstones(root: ET.Element) -> dict[str, str]:
    return {t.get("ref", ""): t.get("when", "") for t in root.findall(f"{TOMBSTONES}deleted-entry")}


def test_hide_takes_a_story_out_of_the_feeds_and_unhide_brings_it_back(project: Project, run_cli: RunCli) -> None:
    cli = ("--config", project.config)
    assert run_cli(*cli, "publish")[0] == 0
    uid = project.uid(project.retracted)
    assert uid in _entry_ids(_feed(project))
    before = next(s for s in project.store.stories() if s.id == project.retracted).updated

    code, out, err = run_cli(*cli, "stories", "hide", str(project.retracted), "--reason", "retracted by the journal")
    assert (code, err) == (0, "")
    assert f"story {project.retracted} is hidden" in out
    code, out, _ = run_cli(*cli, "publish")
    assert code == 0
    assert "tags/retracted-tag.atom" in out  # removed: no story left carries the tag

    main = _feed(project)
    assert uid not in _entry_ids(main)
    assert list(_tombstones(main)) == [uid]  # RFC 6721: readers that understand it drop their copy
    when = datetime.fromisoformat(_tombstones(main)[uid])
    assert when > before  # the hide is a change: a new updated, after the last one
    assert main.findtext(f"{ATOM}updated") == when.isoformat()  # the document changed then
    lung = _feed(project, "tags/lung.atom")
    assert uid not in _entry_ids(lung)
    assert project.uid(project.kept) in _entry_ids(lung)
    assert not (project.public / "tags/retracted-tag.atom").exists()
    assert uid not in (project.public / "feed.rss").read_text()
    assert uid not in json.dumps(json.loads((project.public / "feed.json").read_text()))

    code, out, _ = run_cli(*cli, "stories", "unhide", str(project.retracted))
    assert code == 0 and f"story {project.retracted} is shown again" in out
    assert run_cli(*cli, "publish")[0] == 0
    main = _feed(project)
    assert uid in _entry_ids(main)
    assert _tombstones(main) == {}
    assert (project.public / "tags/retracted-tag.atom").exists()
    shown = next(s for s in project.store.stories() if s.id == project.retracted)
    assert shown.updated > when  # shown again: changed again


def test_explain_status_and_the_story_list_show_it_hidden(project: Project, run_cli: RunCli) -> None:
    cli = ("--config", project.config)
    assert run_cli(*cli, "stories", "hide", str(project.retracted), "--reason", "retracted by the journal")[0] == 0
    code, out, _ = run_cli(*cli, "stories", "explain", str(project.retracted))
    assert code == 0
    assert "hidden" in out and "retracted by the journal" in out
    code, out, _ = run_cli(*cli, "status")
    assert code == 0
    assert "2 live, 1 hidden" in out
    assert f"#{project.retracted}" in out and "retracted by the journal" in out
    code, out, _ = run_cli(*cli, "status", "--json")
    (hidden,) = json.loads(out)["stories"]["hidden"]
    assert (hidden["id"], hidden["reason"]) == (project.retracted, "retracted by the journal")
    assert json.loads(out)["stories"]["live"] == 2
    code, out, _ = run_cli(*cli, "stories", "--json")
    listed = {s["id"]: s["hidden"] for s in json.loads(out)}
    assert listed[project.retracted] is True and listed[project.kept] is False
    # Hiding again keeps the first time and takes the new reason; hiding without one keeps the old one.
    assert run_cli(*cli, "stories", "hide", str(project.retracted), "--reason", "legal request")[0] == 0
    assert run_cli(*cli, "stories", "hide", str(project.retracted))[0] == 0
    assert "legal request" in run_cli(*cli, "stories", "explain", str(project.retracted))[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hide", "99999"), "no story 99999"),
        (("unhide", "99999"), "no story 99999"),
        (("hide", "0"), "0 is not in the range"),
        (("hide", "2147483648"), "is not in the range"),
        (("hide", "1", "--reason", "x" * 1001), "--reason: at most 1000 characters"),
    ],
)
def test_hide_refuses_what_names_no_story(
    project: Project, run_cli: RunCli, args: tuple[str, ...], message: str
) -> None:
    code, _, err = run_cli("--config", project.config, "stories", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_hide_and_unhide_of_a_merged_away_id_or_twice(project: Project, run_cli: RunCli) -> None:
    cli = ("--config", project.config)
    survivor, loser = project.store.merge_stories(project.kept, project.third, NOW)
    code, _, err = run_cli(*cli, "stories", "hide", str(loser))
    assert code == 2 and f"story {loser} was merged into story {survivor}" in err
    code, out, _ = run_cli(*cli, "stories", "unhide", str(project.kept))
    assert code == 0 and "is not hidden: nothing to do" in out


def test_the_web_forgets_a_hidden_story(project: Project, run_cli: RunCli) -> None:
    cli = ("--config", project.config)
    settings = project.settings
    with serve_app(site(settings, project.store)) as url, httpx.Client(base_url=url, timeout=10) as client:
        home = client.get("/").text
        assert RETRACTED in home and "3 stories" in home
        assert run_cli(*cli, "stories", "hide", str(project.retracted), "--reason", "secret reason")[0] == 0
        home = client.get("/")
        page = client.get(f"/stories/{project.retracted}")
        found = client.get("/", params={"q": "withdrawn"})
        assert RETRACTED not in home.text and "2 stories" in home.text
        assert page.status_code == 410
        assert RETRACTED not in page.text and "secret reason" not in page.text
        assert "0 stories match" in found.text
        assert client.get("/feed.atom").status_code == 200  # built on demand: the tombstone, not the entry
        assert run_cli(*cli, "stories", "unhide", str(project.retracted))[0] == 0
        assert client.get(f"/stories/{project.retracted}").status_code == 200
        assert RETRACTED in client.get("/").text


def test_every_change_to_a_story_moves_the_publish_generation(project: Project) -> None:
    """Hide, unhide, merge, split and a new story each move it; reading a page again that brings nothing does not."""
    store = project.store
    seen = [store.publish_generation()]

    def moved() -> bool:
        seen.append(store.publish_generation())
        return seen[-1] > seen[-2]

    assert seen[0] > 0  # the fixture's stories
    store.hide_story(project.retracted, None, NOW)
    assert moved()
    store.unhide_story(project.retracted, NOW)
    assert moved()
    survivor, _ = store.merge_stories(project.kept, project.third, NOW)
    assert moved()
    sighting = max(s.id for s in store.sightings(survivor))
    store.split_sighting(survivor, sighting, NOW)
    assert moved()
    page = store.page_source("/srv/seeds/page.txt", "/srv/seeds", NOW)
    again = [_item(1, "Lung screening reaches more smokers")]
    store.save_page(page.id, again, content_hash="h2", warning=None, now=NOW)
    assert not moved()
    store.save_page(page.id, [*again, _item(9, "A new story on its own")], content_hash="h3", warning=None, now=NOW)
    assert moved()


def test_the_web_serves_a_change_made_by_another_process_from_its_folder_at_once(
    project: Project, run_cli: RunCli
) -> None:
    """The folder was published before; the operator hides a story in another process: the next request brings the
    folder up to date before answering (no pass of this process in between)."""
    cli = ("--config", project.config)
    uid = project.uid(project.retracted)
    assert run_cli(*cli, "publish")[0] == 0
    with serve_app(site(project.settings, project.store)) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert uid in _entry_ids(ET.fromstring(client.get("/feed.atom").content))
        assert run_cli(*cli, "stories", "hide", str(project.retracted))[0] == 0
        served = client.get("/feed.atom").content
        assert list(_tombstones(ET.fromstring(served))) == [uid]
        assert served == (project.public / "feed.atom").read_bytes()  # published, not only built
        assert client.get("/tags/retracted-tag.atom").status_code == 404
        assert uid not in client.get("/feed.rss").text


def test_future_digests_leave_a_hidden_story_out(project: Project) -> None:
    since, until = NOW - timedelta(days=7), NOW + timedelta(days=1)
    assert project.retracted in {c.story.id for c in project.store.candidates(since, until)}
    project.store.hide_story(project.retracted, "retracted", NOW)
    assert project.retracted not in {c.story.id for c in project.store.candidates(since, until)}
    assert len(project.store.candidates(since, until)) == 2


def test_a_copy_of_a_hidden_story_found_later_stays_hidden(project: Project) -> None:
    project.store.hide_story(project.retracted, "retracted", NOW)
    later = NOW + timedelta(hours=3)
    other = project.store.page_source("/srv/seeds/other.txt", "/srv/seeds", later)
    copy = _item(9, RETRACTED)  # the same title and date: the same story
    project.store.save_page(other.id, [copy], content_hash="o", warning=None, now=later)
    assert len(project.store.stories()) == 2
    assert RETRACTED not in {s.title for s in project.store.stories()}
    # Merged into a visible story, it hides the survivor too: what was retracted does not come back that way.
    survivor, _ = project.store.merge_stories(project.retracted, project.kept, later)
    assert survivor == project.kept
    assert {s.id for s in project.store.stories()} == {project.third}


# ---- how long a tombstone stays ------------------------------------------------------------------------------


def test_a_tombstone_stays_as_long_as_the_story_would_have_stayed_in_the_feed(db_url: str, tmp_path: Path) -> None:
    """``max_entries = 3``: the main feed holds the three newest stories; archive pages hold rows for good."""
    settings = Settings(publish=PublishConfig(dir=tmp_path / "public", max_entries=3))
    TITLES = [
        "Lung cancer screening uptake",
        "Prostate biopsy guidance",
        "Melanoma adjuvant therapy",
        "Myeloma transplant outcomes",
        "Breast cancer brain metastases",
        "Colorectal screening age",
    ]
    with Store.open(db_url) as store:
        page = store.page_source("/srv/seeds/p.txt", "/srv/seeds", NOW)

        def add(n: int, at: datetime) -> None:
            items = [
                ParsedItem(
                    kind="teaser",
                    key=f"{at.isoformat()}-{i}",
                    position=i,
                    title=TITLES.pop(0),
                    published=at - timedelta(minutes=i),
                    summary=f"Blurb {len(TITLES)}.",
                )
                for i in range(n)
            ]
            store.save_page(page.id, items, content_hash=at.isoformat(), warning=None, now=at)

        add(2, NOW)
        publish(store, settings, NOW)
        newest = max(store.stories(), key=lambda s: (s.published or s.first_seen, s.id))
        store.hide_story(newest.id, None, NOW + timedelta(minutes=1))
        report = publish(store, settings, NOW + timedelta(minutes=1))
        assert "feed.atom" in report.written
        main = ET.fromstring((tmp_path / "public/feed.atom").read_bytes())
        assert list(_tombstones(main)) == [newest.uid]
        assert len(_entry_ids(main)) == 1

        add(1, NOW + timedelta(hours=1))  # the third row fills archive page 1: its tombstone is kept there
        publish(store, settings, NOW + timedelta(hours=1))
        archive = ET.fromstring((tmp_path / "public/archive/1.atom").read_bytes())
        assert list(_tombstones(archive)) == [newest.uid]
        main = ET.fromstring((tmp_path / "public/feed.atom").read_bytes())
        assert list(_tombstones(main)) == [newest.uid]  # still among the three newest

        add(3, NOW + timedelta(hours=2))  # three newer stories: it would have left the feed by now
        publish(store, settings, NOW + timedelta(hours=2))
        main = ET.fromstring((tmp_path / "public/feed.atom").read_bytes())
        assert _tombstones(main) == {}
        assert len(_entry_ids(main)) == 3
        archive = ET.fromstring((tmp_path / "public/archive/1.atom").read_bytes())
        assert list(_tombstones(archive)) == [newest.uid]  # an archive page keeps its rows, and so its tombstones
        for name in ("feed.atom", "archive/1.atom", "archive/2.atom"):
            assert atom_problems((tmp_path / "public" / name).read_bytes(), NOW + timedelta(hours=2)) == [], name


def test_a_database_from_before_hidden_stories_is_migrated(db_url: str) -> None:
    with Store.open(db_url) as store:
        page = store.page_source("/srv/seeds/p.txt", "/srv/seeds", NOW)
        store.save_page(page.id, [_item(1, "An old story")], content_hash="h", warning=None, now=NOW)
        with store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE story DROP COLUMN hidden_at"))
            conn.execute(text("ALTER TABLE story DROP COLUMN hidden_reason"))
            conn.execute(text("UPDATE schema_version SET version = :v"), {"v": _step("story.hidden_at")})
    for _ in range(2):  # the second open finds nothing to do
        with Store.open(db_url) as store:
            (story,) = store.stories()
            assert (story.title, story.hidden_at, story.hidden_reason) == ("An old story", None, None)
            with store.engine.connect() as conn:
                assert conn.execute(text("SELECT version FROM schema_version")).scalar() == HEAD
    with Store.open(db_url) as store:
        store.hide_story(story.id, "old", NOW)
        assert store.stories() == []


def test_the_service_publishes_a_hide_at_its_next_pass(project: Project) -> None:
    """Nothing new comes in, yet the operator changed a story: the next pass publishes it."""
    from newsletter.service.service import Service

    service = Service(project.settings, project.store, clock=lambda: NOW)
    service.run_pass(NOW, force_publish=True)
    uid = project.uid(project.retracted)
    assert uid in _entry_ids(_feed(project))
    quiet = service.run_pass(NOW + timedelta(minutes=1))
    assert quiet.published is None or quiet.published.up_to_date  # nothing changed: nothing rebuilt
    project.store.hide_story(project.retracted, None, NOW + timedelta(minutes=2))
    report = service.run_pass(NOW + timedelta(minutes=3))
    assert report.published is not None and "feed.atom" in report.published.written
    assert list(_tombstones(_feed(project))) == [uid]


def _step(column: str) -> int:
    """The schema version before the migration that adds ``column`` (later ones run again: they check first)."""
    return next(n for n, step in enumerate(MIGRATIONS) if step.__doc__ and step.__doc__.startswith(column))

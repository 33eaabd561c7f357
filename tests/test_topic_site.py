"""Topics on the site: a feed per topic (``topics/SLUG.atom``, published by the CLI, served by a real uvicorn) and the
home page's topic filter (``/?topic=SLUG``, with paging and search)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ingest.core.config import TopicsConfig
from ingest.core.models import ParsedItem
from ingest.store import Store
from ingest.topics import taxonomy_of
from newsletter.publish import publish
from newsletter.web.pages import PAGE_SIZE
from tests.conftest import NOW
from tests.feedcheck import ATOM, atom_problems
from tests.maildata import make_settings
from tests.mailsite import Clock, serve

pytestmark = pytest.mark.slow
AT = "{http://purl.org/atompub/tombstones/1.0}"
LUNG = PAGE_SIZE + 5  # two pages of lung cancer stories


@dataclass
class Topical:
    url: str
    store: Store
    public: Path
    hidden: int

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


def _item(key: str, title: str, topics: tuple[str, ...], days: float, about: str = "") -> ParsedItem:
    return ParsedItem(
        kind="teaser",
        key=key,
        position=1,
        title=title,
        published=NOW - timedelta(days=days),
        summary=f"What {title} says{about}.",
        topics=topics,
    )


@pytest.fixture
def topical(tmp_path: Path, db_url: str) -> Iterator[Topical]:
    store = Store.open(db_url)
    src = store.page_source("/srv/seeds/topics.txt", "/srv/seeds", NOW)
    items = [_item(f"l{i}", f"Lung report {i}", ("lung",), i / 10) for i in range(LUNG)]
    items += [_item(f"b{i}", f"Breast report {i}", ("breast",), i / 10, " on osimertinib") for i in range(3)]
    items.append(_item("x", "Retracted lung report", ("lung",), 0.01))
    store.save_page(src.id, items, content_hash="h", warning=None, now=NOW)
    (hidden,) = [s.id for s in store.stories() if s.title == "Retracted lung report"]
    store.hide_story(hidden, "retracted", NOW)
    settings = make_settings(tmp_path)
    publish(store, settings, NOW, topics=taxonomy_of(settings.topics).names)
    try:
        with serve(settings, store, Clock(NOW)) as url:
            yield Topical(url, store, settings.publish.dir, hidden)
    finally:
        store.close()


def _entry_titles(body: bytes) -> list[str]:
    return [e.findtext(f"{ATOM}title") or "" for e in ET.fromstring(body).findall(f"{ATOM}entry")]


def test_the_cli_publishes_a_valid_feed_for_every_topic(
    project: Path, run_cli: Callable[..., tuple[int, str, str]]
) -> None:
    config = project / "newsletter.toml"
    config.write_text(config.read_text() + '\n[publish]\ndir = "public"\n')
    assert run_cli("--config", str(config), "ingest")[0] == 0
    code, out, err = run_cli("--config", str(config), "publish")
    assert code == 0, err
    public = project / "public"
    slugs = taxonomy_of(TopicsConfig()).slugs
    assert sorted(p.stem for p in (public / "topics").glob("*.atom")) == sorted(slugs)
    assert f"wrote  {public / 'topics' / 'lung.atom'}" in out
    now = datetime.now(UTC)
    entries = 0
    for slug in slugs:
        body = (public / "topics" / f"{slug}.atom").read_bytes()
        assert atom_problems(body, now) == [], slug
        root = ET.fromstring(body)
        assert root.findtext(f"{ATOM}id", "").endswith(f"/topics/{slug}")
        entries += len(root.findall(f"{ATOM}entry"))
    assert entries > 0  # the bundled seed page has oncology stories in some topic
    code, out, _ = run_cli("--config", str(config), "publish")
    assert code == 0 and "up to date" in out


def test_a_topic_feed_holds_its_stories_and_not_the_hidden_one(topical: Topical) -> None:
    body = (topical.public / "topics" / "lung.atom").read_bytes()
    assert atom_problems(body, NOW) == []
    titles = _entry_titles(body)
    assert titles and all(t.startswith("Lung report") for t in titles)
    assert "Retracted lung report" not in titles
    deleted = ET.fromstring(body).findall(f"{AT}deleted-entry")
    assert len(deleted) == 1  # RFC 6721, like the tag feeds
    assert ET.fromstring(body).findtext(f"{ATOM}title") == "Oncology news: Lung cancer"
    assert _entry_titles((topical.public / "topics" / "breast.atom").read_bytes()) == [
        f"Breast report {i}" for i in range(3)
    ]
    assert _entry_titles((topical.public / "topics" / "sarcoma.atom").read_bytes()) == []  # still a feed


def test_topic_feeds_are_served_and_an_unknown_topic_is_404(topical: Topical) -> None:
    with topical.client() as client:
        r = client.get("/topics/lung.atom", headers={"Accept-Encoding": "identity"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert r.content == (topical.public / "topics" / "lung.atom").read_bytes()
        assert client.get("/topics/lung.atom", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
        for path in ("/topics/nope.atom", "/topics/..%2Ffeed.atom", "/topics/LUNG.atom"):
            assert client.get(path).status_code == 404, path
        (topical.public / "topics" / "breast.atom").unlink()  # not published (yet): built on demand
        built = client.get("/topics/breast.atom")
        assert built.status_code == 200 and atom_problems(built.content, NOW) == []
        assert len(_entry_titles(built.content)) == 3


def _links(html: str, rel: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(rf'<link rel="{rel}" href="([^"]+)"', html)]


def test_the_home_page_filters_by_topic_with_paging_and_search(topical: Topical) -> None:
    with topical.client() as client:
        first = client.get("/?topic=lung")
        assert first.status_code == 200
        titles = re.findall(r'<h2><a href="[^"]+">([^<]+)</a></h2>', first.text)
        assert len(titles) == PAGE_SIZE and all(t.startswith("Lung report") for t in titles)
        assert _links(first.text, "next") == ["/?topic=lung&page=2"] and _links(first.text, "prev") == []
        second = client.get("/?topic=lung&page=2")
        assert second.status_code == 200
        rest = re.findall(r'<h2><a href="[^"]+">([^<]+)</a></h2>', second.text)
        assert len(rest) == LUNG - PAGE_SIZE and "Retracted lung report" not in rest
        assert _links(second.text, "prev") == ["/?topic=lung"] and _links(second.text, "next") == []
        assert client.get("/?topic=lung&page=3").status_code == 404
        assert client.get("/?topic=lung&page=1", follow_redirects=False).headers["location"] == "/?topic=lung"
        found = client.get("/?topic=breast&q=osimertinib")
        assert re.findall(r'<h2><a href="[^"]+">([^<]+)</a></h2>', found.text) == [
            f"Breast report {i}" for i in range(3)
        ]
        assert client.get("/?topic=lung&q=osimertinib").text.count("<h2><a") == 0
        assert 'name="topic" value="breast"' in found.text  # a search from the filtered page stays in the topic
        assert client.get("/?topic=nope").status_code == 404
        home = client.get("/").text
        assert 'href="/?topic=lung"' in home and 'href="/topics/lung.atom"' in home and "Lung cancer" in home

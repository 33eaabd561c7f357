"""The home page and search results in pages of 50 (``?page=N``), through a real uvicorn: every story once, newest
first, ``rel=prev``/``rel=next`` in the head and links a person can follow, page 1 only at its address without
the parameter, and a 404 for a page that does not exist."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from ingest.core.config import PublishConfig, Settings
from ingest.core.models import ParsedItem
from ingest.store import Store
from newsletter.web.app import site
from tests.conftest import NOW
from tests.mailsite import serve_app

pytestmark = pytest.mark.slow

STORIES = 120  # pages of 50, 50 and 20
MATCHING = 70  # stories whose title has "trastuzumab": pages of 50 and 20


class _Listing(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.head: dict[str, str] = {}  # rel -> href of <link rel=prev|next>
        self.anchors: dict[str, str] = {}  # rel -> href of <a rel=prev|next>
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "link" and a.get("rel") in ("prev", "next"):
            self.head[a["rel"]] = a["href"]
        elif tag == "a" and a.get("rel") in ("prev", "next"):
            self.anchors[a["rel"]] = a["href"]
        elif tag == "a" and a.get("href", "").startswith("/stories/"):
            self._in_title = True

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.titles.append(data)
            self._in_title = False


@dataclass
class Listing:
    status: int
    titles: list[str]
    head: dict[str, str]
    anchors: dict[str, str]
    text: str


@pytest.fixture
def client(tmp_path: Path, db_url: str) -> Iterator[httpx.Client]:
    store = Store.open(db_url)
    src = store.page_source("/srv/seeds/many.txt", "/srv/seeds", NOW)
    items = [
        ParsedItem(
            kind="teaser",
            key=f"k{i}",
            position=i,
            title=f"Story {i:03d} about {'trastuzumab' if i < MATCHING else 'pembrolizumab'}",
            published=NOW - timedelta(hours=i),  # story 000 is the newest
            summary=f"The blurb of story {i}.",
        )
        for i in range(STORIES)
    ]
    store.save_page(src.id, items, content_hash="h", warning=None, now=NOW)
    settings = Settings(publish=PublishConfig(dir=tmp_path / "public"))
    try:
        with serve_app(site(settings, store)) as url, httpx.Client(base_url=url, timeout=10) as c:
            yield c
    finally:
        store.close()


def _get(client: httpx.Client, path: str) -> Listing:
    answer = client.get(path)
    parser = _Listing()
    parser.feed(answer.text)
    return Listing(answer.status_code, parser.titles, parser.head, parser.anchors, answer.text)


def test_the_home_page_pages_through_every_story(client: httpx.Client) -> None:
    first, second, third = (_get(client, p) for p in ("/", "/?page=2", "/?page=3"))
    assert [first.status, second.status, third.status] == [200, 200, 200]
    assert [len(first.titles), len(second.titles), len(third.titles)] == [50, 50, 20]
    everything = first.titles + second.titles + third.titles
    assert everything == [
        f"Story {i:03d} about {'trastuzumab' if i < MATCHING else 'pembrolizumab'}" for i in range(STORIES)
    ]
    assert first.head == first.anchors == {"next": "/?page=2"}
    assert second.head == second.anchors == {"prev": "/", "next": "/?page=3"}  # page 1 has no parameter
    assert third.head == third.anchors == {"prev": "/?page=2"}
    assert "Page 2 of 3" in second.text


@pytest.mark.parametrize("page", ["4", "0", "-1", "01", "1.5", "two", "", "9" * 30, "2%00"])
def test_a_page_that_does_not_exist_is_a_404(client: httpx.Client, page: str) -> None:
    answer = client.get(f"/?page={page}")
    assert answer.status_code == 404
    assert "Not found" in answer.text


def test_page_1_lives_without_the_parameter(client: httpx.Client) -> None:
    answer = client.get("/?page=1", follow_redirects=False)
    assert answer.status_code == 301
    assert answer.headers["location"] == "/"
    searched = client.get("/?q=trastuzumab&page=1", follow_redirects=False)
    assert searched.status_code == 301
    assert searched.headers["location"] == "/?q=trastuzumab"


def test_search_results_are_paged_too(client: httpx.Client) -> None:
    first = _get(client, "/?q=Trastuzumab")
    second = _get(client, "/?q=Trastuzumab&page=2")
    assert (first.status, second.status) == (200, 200)
    assert "70 stories match" in first.text and "70 stories match" in second.text
    assert [len(first.titles), len(second.titles)] == [50, 20]
    assert set(first.titles).isdisjoint(second.titles)
    assert all("trastuzumab" in t for t in first.titles + second.titles)
    assert first.head == first.anchors == {"next": "/?q=Trastuzumab&page=2"}
    assert second.head == second.anchors == {"prev": "/?q=Trastuzumab"}
    assert client.get("/?q=Trastuzumab&page=3").status_code == 404
    nothing = client.get("/?q=nowhere-to-be-found")
    assert nothing.status_code == 200 and "0 stories match" in nothing.text

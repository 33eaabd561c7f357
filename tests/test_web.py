"""The web endpoints through a real uvicorn on 127.0.0.1: feeds with validators, 304s, gzip and HEAD; the pages."""

from __future__ import annotations

import gzip
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import uvicorn

from ingest.core.config import PublishConfig, Settings
from ingest.core.models import ParsedItem
from ingest.store import Store, schema
from newsletter.publish import document, publish
from newsletter.web import create_app
from tests.conftest import NOW

pytestmark = pytest.mark.slow


def _item(i: int, **kw: object) -> ParsedItem:
    values: dict[str, object] = {
        "kind": "entry",
        "key": f"k{i}",
        "position": i,
        "title": f"Story number {i} about trastuzumab",
        "published": NOW - timedelta(days=i),
        "summary": f"The blurb of story {i}.",
        "link": f"https://news.example/{i}",
        "tags": ("recap",) if i % 2 == 0 else (),
    }
    values.update(kw)
    return ParsedItem(**values)  # type: ignore[arg-type]


@dataclass
class Site:
    url: str
    store: Store
    settings: Settings

    @property
    def public(self) -> Path:
        return self.settings.publish.dir

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Site]:
    store = Store.open(db_url)
    src = store.page_source("/srv/seeds/page-one.txt", "/srv/seeds", NOW)
    hostile = _item(
        50,
        title="<script>alert('t')</script> Evil & title",
        summary="<img src=x onerror=alert(1)> blurb",
        content='<p>Body <b>bold</b><script>alert("c")</script></p>',
        link=None,
        author="Dr. Who",
    )
    store.save_page(src.id, [_item(i) for i in range(1, 8)] + [hostile], content_hash="h", warning=None, now=NOW)
    settings = Settings(publish=PublishConfig(dir=tmp_path / "public", max_entries=5))
    publish(store, settings, NOW)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY: see mailsite
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # bound and listening before the thread starts: clients queue, nobody waits or sleeps
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store), log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{port}", store, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        store.close()


IDENTITY = {"Accept-Encoding": "identity"}


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/feed.rss", "application/rss+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/tags/recap.atom", "application/atom+xml; charset=utf-8"),
        ("/archive/1.atom", "application/atom+xml; charset=utf-8"),
    ],
)
def test_feeds_are_served_with_type_and_validators(site: Site, path: str, media_type: str) -> None:
    with site.client() as client:
        r = client.get(path, headers=IDENTITY)
    assert r.status_code == 200
    assert r.headers["content-type"] == media_type
    assert r.content == (site.public / path.lstrip("/")).read_bytes()
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert parsedate_to_datetime(r.headers["last-modified"]).tzinfo is not None
    assert "accept-encoding" in r.headers["vary"].lower()
    assert "content-encoding" not in r.headers


def test_304_on_if_none_match(site: Site) -> None:
    with site.client() as client:
        etag = client.get("/feed.atom", headers=IDENTITY).headers["etag"]
        for value in (etag, f'"other", {etag}', f"W/{etag}", "*"):
            r = client.get("/feed.atom", headers={**IDENTITY, "If-None-Match": value})
            assert r.status_code == 304, value
            assert r.content == b""
            assert r.headers["etag"] == etag
        assert client.get("/feed.atom", headers={**IDENTITY, "If-None-Match": '"stale"'}).status_code == 200


def test_304_on_if_modified_since(site: Site) -> None:
    with site.client() as client:
        first = client.get("/feed.atom", headers=IDENTITY)
        modified = parsedate_to_datetime(first.headers["last-modified"])
        same = client.get("/feed.atom", headers={**IDENTITY, "If-Modified-Since": first.headers["last-modified"]})
        assert same.status_code == 304
        older = format_datetime(modified - timedelta(seconds=1), usegmt=True)
        assert client.get("/feed.atom", headers={**IDENTITY, "If-Modified-Since": older}).status_code == 200
        garbage = client.get("/feed.atom", headers={**IDENTITY, "If-Modified-Since": "yesterday"})
        assert garbage.status_code == 200
        # If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3)
        both = {**IDENTITY, "If-Modified-Since": first.headers["last-modified"], "If-None-Match": '"stale"'}
        assert client.get("/feed.atom", headers=both).status_code == 200


def test_gzip_when_asked_with_its_own_etag(site: Site) -> None:
    raw = (site.public / "feed.atom").read_bytes()
    with site.client() as client:
        plain = client.get("/feed.atom", headers=IDENTITY)
        with client.stream("GET", "/feed.atom", headers={"Accept-Encoding": "gzip"}) as r:
            body = b"".join(r.iter_raw())
            headers = r.headers
        assert headers["content-encoding"] == "gzip"
        assert gzip.decompress(body) == raw
        assert len(body) < len(raw)
        assert int(headers["content-length"]) == len(body)
        assert headers["etag"] != plain.headers["etag"]
        assert "accept-encoding" in headers["vary"].lower()
        again = client.get("/feed.atom", headers={"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]})
        assert again.status_code == 304
        refused = client.get("/feed.atom", headers={"Accept-Encoding": "gzip;q=0, identity"})
        assert "content-encoding" not in refused.headers


def test_head_gives_the_headers_without_a_body(site: Site) -> None:
    with site.client() as client:
        get = client.get("/feed.atom", headers=IDENTITY)
        head = client.head("/feed.atom", headers=IDENTITY)
        assert head.status_code == 200
        assert head.content == b""
        for name in ("etag", "last-modified", "content-type", "content-length"):
            assert head.headers[name] == get.headers[name], name
        assert client.head("/feed.atom", headers={**IDENTITY, "If-None-Match": get.headers["etag"]}).status_code == 304
        assert client.head("/nope.atom").status_code == 404


@pytest.mark.parametrize(
    "path", ["/tags/nope.atom", "/archive/99.atom", "/archive/0.atom", "/nope", "/stories/9999", "/tags/..%2F.atom"]
)
def test_unknown_addresses_are_404_pages(site: Site, path: str) -> None:
    with site.client() as client:
        r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Not found" in r.text


def test_a_new_publish_is_served_with_a_new_etag(site: Site) -> None:
    with site.client() as client:
        before = client.get("/feed.atom", headers=IDENTITY)
        later = NOW + timedelta(days=1)
        src = site.store.page_source("/srv/seeds/page-two.txt", "/srv/seeds", later)
        site.store.save_page(src.id, [_item(90, published=later)], content_hash="h2", warning=None, now=later)
        publish(site.store, site.settings, later)
        after = client.get("/feed.atom", headers={**IDENTITY, "If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    assert b"Story number 90" in after.content


def test_missing_files_are_built_on_demand(site: Site) -> None:
    shutil.rmtree(site.public)
    with site.client() as client:
        r = client.get("/feed.atom", headers=IDENTITY)
        assert r.status_code == 200
        assert r.content == document(site.store, site.settings, "feed.atom")
        assert client.get("/feed.atom", headers={**IDENTITY, "If-None-Match": r.headers["etag"]}).status_code == 304
        assert client.get("/archive/1.atom").status_code == 200
        assert client.get("/tags/recap.atom").status_code == 200


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.anchors: list[str] = []
        self.meta: list[dict[str, str | None]] = []
        self.forms: list[dict[str, str | None]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "link":
            self.links.append(a)
        elif tag == "a":
            self.anchors.append(a.get("href") or "")
        elif tag == "meta":
            self.meta.append(a)
        elif tag == "form":
            self.forms.append(a)


def _page(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


def test_home_page_lists_stories_with_feed_autodiscovery(site: Site) -> None:
    with site.client() as client:
        r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = _page(r.text)
    alternates = {(link["type"], link["href"]) for link in page.links if link.get("rel") == "alternate"}
    assert alternates == {
        ("application/atom+xml", "/feed.atom"),
        ("application/rss+xml", "/feed.rss"),
        ("application/feed+json", "/feed.json"),
        ("application/atom+xml", "/digests.atom"),
    }
    assert any(m.get("name") == "viewport" for m in page.meta)
    assert "/subscribe" in page.anchors
    assert "/tags/recap.atom" in page.anchors
    assert page.forms == [{"class": "search", "method": "get", "action": "/", "role": "search"}]
    assert "Story number 1 about trastuzumab" in r.text
    assert "script" not in page.tags  # the hostile title is text on the page
    assert "&lt;script&gt;alert(&#39;t&#39;)&lt;/script&gt; Evil &amp; title" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["content-encoding"] == "gzip"  # httpx asks for it, and decodes it
    assert "accept-encoding" in r.headers["vary"].lower()


def test_search_finds_stories_and_escapes_the_query(site: Site) -> None:
    with site.client() as client:
        found = client.get("/", params={"q": "NUMBER 3"})
        nothing = client.get("/", params={"q": '"><script>alert(9)</script> 100%_'})
    assert found.status_code == 200
    assert "Story number 3 about trastuzumab" in found.text
    assert "Story number 4 about" not in found.text
    assert "1 story matches" in found.text
    assert nothing.status_code == 200
    assert "0 stories match" in nothing.text
    assert "<script>alert(9)" not in nothing.text
    assert "script" not in _page(nothing.text).tags


def test_story_page_shows_the_story_its_sources_and_link(site: Site) -> None:
    story = next(s for s in site.store.stories() if s.title == "Story number 2 about trastuzumab")
    with site.client() as client:
        r = client.get(f"/stories/{story.id}")
    assert r.status_code == 200
    page = _page(r.text)
    assert "<h1>Story number 2 about trastuzumab</h1>" in r.text
    assert "The blurb of story 2." in r.text
    assert "https://news.example/2" in page.anchors
    assert "Seen in 1 source" in r.text
    assert "page-one.txt" not in r.text  # a seed page is its folder's source, never a file (issue 14 item 1)
    assert "/srv/seeds" not in r.text  # a server path is never shown
    assert '<time datetime="2026-11-25T10:00:00+00:00">25 Nov 2026</time>' in r.text


def test_story_page_names_its_topics(site: Site) -> None:
    """Issue 18: a story's topics, by name (the operator's tag included); a story with none shows no line."""
    story = next(s for s in site.store.stories() if s.title == "Story number 2 about trastuzumab")
    site.store.set_story_topic(story.id, "breast", added=True, now=NOW)
    site.store.set_story_topic(story.id, "targeted-therapy", added=True, now=NOW)
    other = next(s for s in site.store.stories() if s.id != story.id and not s.topics)
    with site.client() as client:
        tagged, plain = client.get(f"/stories/{story.id}"), client.get(f"/stories/{other.id}")
    assert '<p class="topics">Topics: Breast cancer, Targeted therapy' in tagged.text
    assert 'class="topics"' not in plain.text


def test_story_page_prints_a_sanitized_body(site: Site) -> None:
    story = next(s for s in site.store.stories() if "Evil" in s.title)
    with site.client() as client:
        r = client.get(f"/stories/{story.id}")
    assert "<p>Body <b>bold</b></p>" in r.text
    assert "script" not in _page(r.text).tags
    assert "Dr. Who" in r.text
    assert "Read it at the source" not in r.text  # no link out: none to show


def test_a_merged_story_redirects_to_its_survivor(site: Site) -> None:
    survivor, merged = site.store.stories()[:2]
    # No store function merges stories yet (dedupe will); this stands in for it.
    with site.store.engine.begin() as conn:
        conn.execute(schema.story.update().where(schema.story.c.id == merged.id).values(merged_into=survivor.id))
    with site.client() as client:
        r = client.get(f"/stories/{merged.id}")
    assert r.status_code == 301
    assert r.headers["location"] == f"/stories/{survivor.id}"


def test_extra_routes_are_served_with_the_site_pages(tmp_path: Path, db_url: str) -> None:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from newsletter.web.pages import page

    def hello(request: Request) -> Response:
        return page(request, "web/404.html", status_code=200)

    store = Store.open(db_url)
    settings = Settings(publish=PublishConfig(dir=tmp_path / "public"))
    app = create_app(settings, store, extra_routes=[Route("/hello", hello)])
    assert app.state.store is store
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as client:
            hello_page = client.get("/hello")
            empty_feed = client.get("/feed.atom")  # nothing published, no stories: built on demand, still valid
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        store.close()
    assert hello_page.status_code == 200
    assert "content-security-policy" in hello_page.headers
    assert empty_feed.status_code == 200
    assert b"<feed" in empty_feed.content


def test_feed_file_cache_is_bounded_and_follows_replaced_files(tmp_path: Path) -> None:
    from newsletter.web.feeds import FeedFiles

    files = FeedFiles(tmp_path, size=2)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode() * 10)
        doc = files.get(name)
        assert doc is not None and doc.body == name.encode() * 10
    assert len(files._cache) == 2
    first = files.get("a")
    replacement = tmp_path / "a.new"
    replacement.write_bytes(b"new bytes")
    replacement.replace(tmp_path / "a")
    second = files.get("a")
    assert first is not None and second is not None
    assert second.body == b"new bytes"
    assert second.etag != first.etag
    assert files.get("missing") is None

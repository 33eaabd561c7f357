"""Sources from any address (issue 19): feed autodiscovery, addresses already followed, moved feeds, live pages.

Every test goes through the CLI against a local server (tests/servers.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.servers import FEED_BODY, HostileServer

RunCli = Callable[..., tuple[int, str, str]]

FETCH = """
[fetch]
timeout = 2.0
max_bytes = 262144
trusted_networks = ["127.0.0.1/32"]
"""

_HTML = [("Content-Type", "text/html; charset=utf-8")]
_RSS = [("Content-Type", "application/rss+xml")]
_ATOM_BODY = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom twin</title><id>urn:x</id><updated>2026-11-20T00:00:00Z</updated>
<entry><title>One</title><id>urn:x:1</id><updated>2026-11-20T00:00:00Z</updated><link href="http://example.org/1"/>
</entry></feed>"""
_JSON_BODY = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JSON twin",
        "items": [{"id": "1", "url": "http://example.org/1", "title": "One", "content_text": "x"}],
    }
).encode()


def _page(head: str, body: str = "<p>Hello</p>") -> bytes:
    return f"<!doctype html><html><head><title>Site</title>{head}</head><body>{body}</body></html>".encode()


def _listed(run_cli: RunCli, cfg: Path, *command: str) -> list[dict[str, object]]:
    """What ``newsletter COMMAND --json`` lists."""
    code, out, err = run_cli("--config", str(cfg), *command, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, list)
    return data


def _feeds(run_cli: RunCli, cfg: Path) -> list[dict[str, object]]:
    return _listed(run_cli, cfg, "feeds", "list")


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    (tmp_path / "seeds").mkdir()
    return write_config(tmp_path, FETCH)


# --- 1. autodiscovery -------------------------------------------------------------------------------------------


def test_a_page_with_one_alternate_follows_it_resolved_against_base(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli
) -> None:
    hostile_server.set(
        "/site/",
        headers=_HTML,
        body=_page('<base href="/news/"><link rel="alternate" type="application/rss+xml" href="feeds/main.xml">'),
    )
    hostile_server.set("/news/feeds/main.xml", headers=_RSS, body=FEED_BODY)
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/site/"))
    assert code == 0, err
    feed = hostile_server.url("/news/feeds/main.xml")
    assert f"found 1 feed on {hostile_server.url('/site/')}:\n  1. {feed} (Hostile test feed)\n" in out
    assert f"added feed #1: {feed}" in out
    assert [f["url"] for f in _feeds(run_cli, cfg)] == [feed]
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert (code, out.splitlines()[0]) == (0, f"ok     {feed}: 2 new, 0 seen again"), err


def test_a_page_with_three_alternates_lists_them_and_follows_the_first_or_the_picked_or_all(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli
) -> None:
    links = (
        '<link rel="alternate" type="application/rss+xml" href="/rss">'
        '<link rel="Alternate Home" type="application/atom+xml" href="atom.xml">'
        f'<link rel="alternate" type="application/feed+json" href="http://127.0.0.1:{hostile_server.port}/feed.json">'
        '<link rel="stylesheet" type="text/css" href="/style.css">'
        '<link rel="alternate" hreflang="fr" href="/fr/">'
    )
    hostile_server.set("/home", headers=_HTML, body=_page(links))
    hostile_server.set("/rss", headers=_RSS, body=FEED_BODY)
    hostile_server.set("/atom.xml", headers=[("Content-Type", "application/atom+xml")], body=_ATOM_BODY)
    hostile_server.set("/feed.json", headers=[("Content-Type", "application/feed+json")], body=_JSON_BODY)
    home = hostile_server.url("/home")
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", home)
    assert code == 0, err
    rss, atom, jsonfeed = (hostile_server.url(p) for p in ("/rss", "/atom.xml", "/feed.json"))
    assert out.splitlines() == [
        f"found 3 feeds on {home}:",
        f"  1. {rss} (Hostile test feed)",
        f"  2. {atom} (Atom twin)",
        f"  3. {jsonfeed} (JSON twin)",
        "following the first (--pick N follows another, --all every one)",
        f"added feed #1: {rss}",
    ]
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", home, "--pick", "3")
    assert code == 0, err
    assert out.splitlines()[-1] == f"added feed #2: {jsonfeed}"
    code, _, err = run_cli("--config", str(cfg), "feeds", "add", home, "--pick", "4")
    assert (code, err.strip().splitlines()[-1]) == (2, "error: --pick 4: the page offers 3 feeds")
    # --all: the two already followed are named and skipped, the third is added.
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", home, "--all")
    assert code == 1
    assert out.splitlines()[-1] == f"added feed #3: {atom}"
    assert f"skip   {rss} is already followed: feed #1 ({rss})" in err
    assert sorted(str(f["url"]) for f in _feeds(run_cli, cfg)) == sorted([rss, atom, jsonfeed])


def test_a_page_without_alternates_tries_the_usual_paths(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli
) -> None:
    hostile_server.set("/", headers=_HTML, body=_page(""))
    hostile_server.set("/feed", status=404, body=b"no")
    hostile_server.set("/atom.xml", headers=[("Content-Type", "application/atom+xml")], body=_ATOM_BODY)
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/"))
    assert code == 0, err
    assert out.splitlines()[-1] == f"added feed #1: {hostile_server.url('/atom.xml')}"
    asked = {r.path for r in hostile_server.requests}
    assert {"/", "/feed", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml"} <= asked


def test_a_page_with_no_feed_is_a_clear_error(cfg: Path, hostile_server: HostileServer, run_cli: RunCli) -> None:
    hostile_server.set("/", headers=_HTML, body=_page(""))
    hostile_server.set("/feed", status=404, body=b"no")
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/"))
    assert (code, out) == (2, "")
    assert err.strip() == (
        f'error: {hostile_server.url("/")}: an HTML page that offers no feed: no <link rel="alternate"> to a feed '
        "answered with one, nor did /feed, /rss.xml, /atom.xml, /feed.xml, /index.xml on its site; give the feed's "
        "own URL (or --no-discover)"
    )
    assert _feeds(run_cli, cfg) == []
    # --no-discover keeps the old behaviour: followed as given, nothing fetched.
    asked = len(hostile_server.requests)
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/"), "--no-discover")
    assert (code, out.strip()) == (0, f"added feed #1: {hostile_server.url('/')}"), err
    assert len(hostile_server.requests) == asked


def test_hostile_pages_are_refused(cfg: Path, hostile_server: HostileServer, run_cli: RunCli) -> None:
    # Links to private and metadata addresses: each refused by the fetcher, none followed.
    private = (
        '<link rel="alternate" type="application/rss+xml" href="http://10.0.0.1/feed">'
        '<link rel="alternate" type="application/rss+xml" href="http://169.254.169.254/latest/meta-data/">'
        '<link rel="alternate" type="application/rss+xml" href="http://[::1]:1/feed">'
        '<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
        '<link rel="alternate" type="application/rss+xml" href="file:///etc/passwd">'
    )
    hostile_server.set("/private", headers=_HTML, body=_page(private))
    hostile_server.set("/feed", status=404, body=b"no")
    code, _, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/private"))
    assert code == 2
    assert "skip   http://10.0.0.1/feed: refused: " in err
    assert "skip   http://169.254.169.254/latest/meta-data/: refused: " in err
    assert "skip   http://[::1]:1/feed: refused: " in err
    assert "javascript" not in err
    assert "file:" not in err
    assert "offers no feed" in err
    # Huge: over [fetch] max_bytes, never parsed.
    hostile_server.set("/huge", headers=_HTML, body=b"<html><head>" + b"<meta x='y'>" * 40000)
    code, _, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/huge"))
    assert code == 2
    assert "body over the 262,144-byte limit ([fetch] max_bytes)" in err
    # Malformed: unclosed tags, a NUL, nonsense attributes; the one alternate is still found.
    mangled = (
        b"<html><head><link rel=alternate type='application/rss+xml' href=/rss\x00x><<<>"
        b"<link rel='alternate' type=application/rss+xml href=\"/real.xml\"><body><p><div></span></html></html>"
    )
    hostile_server.set("/mangled", headers=_HTML, body=mangled)
    hostile_server.set("/real.xml", headers=_RSS, body=FEED_BODY)
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/mangled"))
    assert code == 0, err
    assert out.splitlines()[-1] == f"added feed #1: {hostile_server.url('/real.xml')}"
    assert "Traceback" not in err
    # Not HTML and not a feed.
    hostile_server.set("/data.bin", headers=[("Content-Type", "application/octet-stream")], body=b"\x00\x01" * 99)
    code, _, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/data.bin"))
    assert code == 2
    assert "neither a feed nor an HTML page (application/octet-stream)" in err
    # The metadata address as the page itself: refused before any connection.
    code, _, err = run_cli("--config", str(cfg), "feeds", "add", "http://169.254.169.254/")
    assert code == 2
    assert "refused" in err


def test_a_feed_url_is_followed_as_it_is(cfg: Path, hostile_server: HostileServer, run_cli: RunCli) -> None:
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/feed"))
    assert (code, out.strip()) == (0, f"added feed #1: {hostile_server.url('/feed')}"), err


def test_an_unreachable_address_is_followed_as_given_with_a_warning(cfg: Path, run_cli: RunCli) -> None:
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", "http://127.0.0.1:9/feed.xml")
    assert (code, out.strip()) == (0, "added feed #1: http://127.0.0.1:9/feed.xml"), err
    assert err.startswith("warning: could not check it (http://127.0.0.1:9/feed.xml: ")


# --- 4. an address already followed -----------------------------------------------------------------------------


def test_an_address_already_followed_is_refused_after_redirects_and_normalisation(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli
) -> None:
    feed = hostile_server.url("/feed")
    assert run_cli("--config", str(cfg), "feeds", "add", feed)[0] == 0
    hostile_server.redirect("/old-feed", "/feed", status=301)
    spelled = f"HTTP://127.0.0.1:{hostile_server.port}/feed#top"
    for again in (feed, spelled, hostile_server.url("/old-feed")):
        code, out, err = run_cli("--config", str(cfg), "feeds", "add", again)
        assert (code, out) == (2, ""), again
        assert err.strip().endswith(f"is already followed: feed #1 ({feed})"), err
    # A home page whose one feed is followed already.
    hostile_server.set("/", headers=_HTML, body=_page('<link rel="alternate" type="application/rss+xml" href="/feed">'))
    code, _, err = run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/"))
    assert code == 2
    assert err.strip().endswith(f"error: {feed} is already followed: feed #1 ({feed})")
    # Changing its options, or following it again once removed, is still allowed.
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", feed, "--tag", "onc")
    assert (code, out.strip()) == (0, f"updated feed #1: {feed}"), err
    assert run_cli("--config", str(cfg), "feeds", "remove", "1")[0] == 0
    code, out, err = run_cli("--config", str(cfg), "feeds", "add", spelled)
    assert (code, out.strip()) == (0, f"updated feed #1: {feed}"), err
    assert len(_feeds(run_cli, cfg)) == 1


# --- 2. a feed that breaks suggests where it went ----------------------------------------------------------------


@pytest.mark.parametrize(
    "breaks",
    [
        {"status": 404, "body": b"not found"},
        {"status": 410, "body": b"gone"},
        {"headers": _HTML, "body": _page("", "<p>Please log in</p>")},  # not_a_feed
    ],
    ids=["404", "gone", "not_a_feed"],
)
def test_a_feed_that_breaks_suggests_where_it_went(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli, breaks: dict[str, object]
) -> None:
    hostile_server.set("/old.xml", headers=_RSS, body=FEED_BODY)
    old, new = hostile_server.url("/old.xml"), hostile_server.url("/news/rss")
    assert run_cli("--config", str(cfg), "feeds", "add", old)[0] == 0
    assert run_cli("--config", str(cfg), "ingest")[0] == 0
    hostile_server.set("/old.xml", **breaks)  # type: ignore[arg-type]
    hostile_server.set(
        "/", headers=_HTML, body=_page('<link rel="alternate" type="application/rss+xml" href="/news/rss">')
    )
    hostile_server.set("/news/rss", headers=_RSS, body=FEED_BODY)
    code, _, _ = run_cli("--config", str(cfg), "ingest", "--all")
    assert code == 1
    [feed] = _feeds(run_cli, cfg)
    assert (feed["suggested_url"], feed["current_url"]) == (new, old)  # offered, never adopted
    hint = f"feed #1 {old}: moved? try {new} (`newsletter feeds move 1 URL`)"
    code, out, _ = run_cli("--config", str(cfg), "feeds", "list")
    assert hint in out.splitlines()
    code, out, _ = run_cli("--config", str(cfg), "status")
    assert hint in out.splitlines()
    code, out, _ = run_cli("--config", str(cfg), "status", "--json")
    assert [s["suggested_url"] for s in json.loads(out)["sources"]] == [new]
    # The site is looked at when the feed turns, not at every failing check.
    asked = len(hostile_server.requests_for("/"))
    if breaks.get("status") != 410:  # a gone feed is never checked again
        run_cli("--config", str(cfg), "ingest", "--all")
        assert len(hostile_server.requests_for("/")) == asked
    code, out, err = run_cli("--config", str(cfg), "feeds", "move", "1", new)
    assert (code, out.strip()) == (0, f"moved feed #1: {old} -> {new} (it is checked at once)"), err
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert (code, out.splitlines()[0]) == (0, f"ok     {old}: 0 new, 2 seen again"), err
    [feed] = _feeds(run_cli, cfg)
    assert (feed["status"], feed["current_url"], feed["suggested_url"], feed["entries"]) == ("active", new, None, 2)


def test_a_broken_feed_on_a_site_without_a_home_page_finds_the_usual_path(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli
) -> None:
    hostile_server.set("/old.xml", headers=_RSS, body=FEED_BODY)
    assert run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/old.xml"))[0] == 0
    assert run_cli("--config", str(cfg), "ingest")[0] == 0
    hostile_server.set("/old.xml", status=404, body=b"")
    run_cli("--config", str(cfg), "ingest", "--all")
    assert [f["suggested_url"] for f in _feeds(run_cli, cfg)] == [hostile_server.url("/feed")]
    # Moving it onto a feed already followed is refused.
    assert run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/feed"))[0] == 0
    code, _, err = run_cli("--config", str(cfg), "feeds", "move", "1", hostile_server.url("/feed"))
    assert (code, err.strip()) == (
        2,
        f"error: {hostile_server.url('/feed')} is already followed: feed #2 ({hostile_server.url('/feed')})",
    )


# --- 3. live pages read like the saved ones ---------------------------------------------------------------------

PAGES = Path(__file__).parent / "fixtures" / "pages"
TEMPLATES = ("cms.html", "divs.html", "glued.html")


def _stories(run_cli: RunCli, cfg: Path) -> list[dict[str, object]]:
    return _listed(run_cli, cfg, "stories")


@pytest.fixture
def saved_stories(project: Path, run_cli: RunCli) -> list[tuple[object, object, object]]:
    """The bundled saved page's stories, read from the seed folder: what every template must give."""
    cfg = project / "newsletter.toml"
    assert run_cli("--config", str(cfg), "ingest")[0] == 0
    return sorted((s["title"], s["published"], s["summary"]) for s in _stories(run_cli, cfg))


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_live_page_gives_the_saved_pages_six_stories(
    project: Path,
    hostile_server: HostileServer,
    run_cli: RunCli,
    saved_stories: list[tuple[object, object, object]],
    template: str,
) -> None:
    assert len(saved_stories) == 6
    # The same page live, next to its saved copy: its six sightings fold into the saved page's six stories.
    cfg = write_config(project, FETCH)
    content_type = "text/html" if template == "glued.html" else "text/html; charset=utf-8"  # glued: <meta> cp1252
    hostile_server.set(
        "/view/her2", headers=[("Content-Type", content_type)], body=(PAGES / template).read_bytes(), etag='"p1"'
    )
    page = hostile_server.url("/view/her2")
    code, out, err = run_cli("--config", str(cfg), "pages", "add", page, "--tag", "Breast")
    assert (code, out.strip()) == (0, f"added page #2: {page}"), err
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    assert f"ok     {page}: 6 new, 0 seen again" in out
    assert "ingested 2 source(s): 6 new sighting(s), 0 new story(ies)" in out  # folded into the saved page's
    stories = _stories(run_cli, cfg)
    assert sorted((s["title"], s["published"], s["summary"]) for s in stories) == saved_stories
    assert all(s["sightings"] == 2 for s in stories)
    assert all("breast" in s["tags"] for s in stories)  # type: ignore[operator]
    links = {s["title"]: s["link"] for s in stories}
    article = (
        "Panelists discussed how evolving strategies in HER2-positive metastatic breast cancer are shifting toward"
        " more personalized maintenance approaches"
    )
    ccr = "CCR Scores and Beyond: Precision Strategies for Treatment Intensification in Prostate Cancer"
    if template == "cms.html":  # its canonical link names the article; relative teaser links resolve on the page
        assert (links[article], links[ccr]) == (
            "https://www.oncnews.example/view/her2-maintenance",
            hostile_server.url("/view/ccr-scores-and-beyond"),
        )
    elif template == "divs.html":  # relative links under its <base>
        assert (links[article], links[ccr]) == (page, "https://cancer-network.example/clinical/ccr-scores-and-beyond")
    else:  # no links on its teasers
        assert (links[article], links[ccr]) == (page, None)
    # Fetched again: a conditional GET (304), then the same page without validators: no new story either way.
    code, out, err = run_cli("--config", str(cfg), "ingest", "--all")
    assert (code, f"ok     {page}: unchanged" in out) == (0, True), out + err
    assert hostile_server.requests_for("/view/her2")[-1].headers.get("if-none-match") == '"p1"'
    hostile_server.change("/view/her2", etag=None)
    code, out, err = run_cli("--config", str(cfg), "ingest", "--all")
    assert code == 0, err
    assert f"ok     {page}: 0 new, 6 seen again" in out
    assert len(_stories(run_cli, cfg)) == 6
    code, out, err = run_cli("--config", str(cfg), "pages", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["url"], listed["status"], listed["entries"], listed["tags"]) == (page, "active", 6, ["breast"])


def test_a_live_page_alone_and_from_the_config(tmp_path: Path, hostile_server: HostileServer, run_cli: RunCli) -> None:
    (tmp_path / "seeds").mkdir()
    hostile_server.set("/a", headers=_HTML, body=(PAGES / "divs.html").read_bytes())
    cfg = write_config(tmp_path, FETCH + f'\n[[pages]]\nurl = "{hostile_server.url("/a")}"\nname = "Net"\n')
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 0, err
    assert f"ok     {hostile_server.url('/a')}: 6 new, 0 seen again" in out
    titles = [s["title"] for s in _stories(run_cli, cfg)]
    assert len(titles) == 6
    assert "Recap: Emory Experts Review Treatment Strategies for Transplant-Ineligible Multiple Myeloma" in titles
    code, out, _ = run_cli("--config", str(cfg), "status", "--json")
    [source] = json.loads(out)["sources"]
    assert (source["kind"], source["name"], source["status"]) == ("page", "Net", "active")
    assert source["next_check"] is not None


def test_pages_add_refuses_what_is_followed_or_is_a_feed(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli
) -> None:
    hostile_server.set("/a", headers=_HTML, body=(PAGES / "cms.html").read_bytes())
    hostile_server.redirect("/short", "/a", status=301)
    page = hostile_server.url("/a")
    assert run_cli("--config", str(cfg), "pages", "add", page)[0] == 0
    for again in (page, hostile_server.url("/short")):
        code, _, err = run_cli("--config", str(cfg), "pages", "add", again)
        assert (code, err.strip()) == (2, f"error: {again} is already followed: page #1 ({page})")
    code, _, err = run_cli("--config", str(cfg), "feeds", "add", page, "--no-discover")
    assert (code, err.strip()) == (2, f"error: {page} is already followed: page #1 ({page})")
    code, _, err = run_cli("--config", str(cfg), "pages", "add", hostile_server.url("/feed"))
    feed = hostile_server.url("/feed")
    assert (code, err.strip()) == (2, f"error: {feed} is a feed: `newsletter feeds add {feed}` follows it")
    code, _, err = run_cli("--config", str(cfg), "pages", "add", "http://169.254.169.254/latest/")
    assert code == 2
    assert "refused" in err
    code, out, _ = run_cli("--config", str(cfg), "pages", "remove", "1")
    assert (code, out.strip()) == (0, f"removed page #1: {page}")


def test_a_page_that_is_no_article_is_an_error_of_its_own(
    cfg: Path, hostile_server: HostileServer, run_cli: RunCli
) -> None:
    hostile_server.set("/blank", headers=_HTML, body=b"<html><body><script>x()</script></body></html>")
    # Within the byte cap, but 16,000 empty paragraphs: refused before the extraction library scores them.
    hostile_server.set("/crowded", headers=_HTML, body=b"<html><body>" + b"<p></p>" * 16000 + b"</body></html>")
    for path in ("/blank", "/crowded"):
        assert run_cli("--config", str(cfg), "pages", "add", hostile_server.url(path))[0] == 0
    assert run_cli("--config", str(cfg), "feeds", "add", hostile_server.url("/feed"))[0] == 0
    code, out, err = run_cli("--config", str(cfg), "ingest")
    assert code == 1
    assert f"{hostile_server.url('/blank')}: no article or teasers found in the page" in err
    assert f"{hostile_server.url('/crowded')}: the page has 16,002 elements, over the 15,000 a page is read with" in err
    assert f"ok     {hostile_server.url('/feed')}: 2 new" in out


def test_a_database_from_before_suggestions_is_migrated(db_url: str) -> None:
    from sqlalchemy import inspect, text

    from ingest.store import Store
    from ingest.store.engine import HEAD, MIGRATIONS, _v11

    with Store.open(db_url) as store, store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE source DROP COLUMN suggested_url"))
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": MIGRATIONS.index(_v11)})
    for _ in range(2):  # the second open finds nothing to do
        with Store.open(db_url) as store, store.engine.connect() as conn:
            assert "suggested_url" in {c["name"] for c in inspect(conn).get_columns("source")}
            assert conn.execute(text("SELECT version FROM schema_version")).scalar() == HEAD


@pytest.mark.no_database
def test_a_live_page_is_named_by_its_host_a_saved_one_by_its_folder() -> None:
    from ingest.core.sources import source_name

    page = "https://news.example/view/her2"
    assert source_name("page", None, page, page, None) == "news.example"
    assert source_name("page", None, "/srv/seeds/000_a9.txt", None, "/srv/seeds") == "seeds"
    assert source_name("page", None, "/srv/seeds/000_a9.txt", None, None) == "000_a9.txt"
    assert source_name("page", "Net", page, page, None) == "Net"


@pytest.mark.no_database
@pytest.mark.parametrize(
    ("content_type", "meta", "encoded"),
    [
        ("text/html; charset=utf-8", "", "utf-8"),  # the HTTP charset, no <meta>
        ("text/html", "", "utf-8"),  # neither: UTF-8 bytes read as UTF-8, not Latin-1
        ("text/html", '<meta charset="windows-1252">', "cp1252"),  # the page's <meta>
        ('text/html; charset="ISO-8859-1"', '<meta charset="utf-8">', "latin-1"),  # HTTP wins over <meta>
    ],
)
def test_a_live_page_is_decoded_by_its_charset(content_type: str, meta: str, encoded: str) -> None:
    from ingest.webpage import page_text

    words = "Café: trastuzumab, pertuzumab and docetaxel" if encoded == "latin-1" else "CLEOPATRA — trastuzumab"
    body = f"<html><head>{meta}</head><body><article><p>{words}, a long enough paragraph to be the article.</p>"
    data = (body + "</article></body></html>").encode(encoded)
    read = page_text(data, "https://x.example/", boilerplate=(), content_type=content_type)
    assert read is not None
    assert read.text.startswith(words)

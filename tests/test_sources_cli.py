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


def _feeds(run_cli: RunCli, cfg: Path) -> list[dict[str, object]]:
    code, out, err = run_cli("--config", str(cfg), "feeds", "list", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, list)
    return data


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

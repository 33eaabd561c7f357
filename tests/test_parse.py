"""Feed parsing against golden files, the fast path against plain feedparser, and hostile bodies."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import pytest

from ingest import parse as parse_module
from ingest.parse import CONTENT_MAX, SUMMARY_MAX, TITLE_MAX, ParsedFeed, _parse, _parse_xml, adapter, parse_feed
from ingest.parse.normalize import RAW_AUTHOR_MAX, RAW_BODY_MAX, RAW_FIELD_MAX
from ingest.parse.prolog import cap_fields, strip_internal_subset
from tests.conftest import GOLDEN, NOW

pytestmark = pytest.mark.no_database  # opens no database: one run

FEEDS = GOLDEN / "feeds"
CASES = sorted(p.name for p in FEEDS.iterdir() if not p.name.endswith(".expected.json"))
XML_CASES = [c for c in CASES if c.endswith(".xml")]
CONTENT_TYPES = {".xml": "application/xml", ".json": "application/feed+json", ".html": "text/html; charset=utf-8"}
# Well-formed RSS 2.0 / Atom 1.0 fixtures: the fast path must take these, or the parity test proves nothing.
FAST_CASES = {
    "atom10.xml",
    "dates.xml",
    "duplicate_guids.xml",
    "guids.xml",
    "no_entries.xml",
    "relative_links.xml",
    "rss091.xml",
    "rss092.xml",
    "rss20.xml",
    "rss20_quirks.xml",
}
# Hostile fixtures where feedparser's own sanitizer, not ours, decides what is left of a broken entity reference.
NOT_COMPARED_WITH_SANITIZER = {"quadratic_entity.xml", "billion_laughs.xml", "control_chars.xml"}
URL = "https://fixtures.example/feeds/"


def _headers(name: str) -> dict[str, str]:
    return {"Content-Type": CONTENT_TYPES[Path(name).suffix]}


def _parse_case(name: str, engine: parse_module.Engine = "auto") -> ParsedFeed:
    body = (FEEDS / name).read_bytes()
    return _parse(body, now=NOW, url=URL + name, headers=_headers(name), tags=(), engine=engine)


def _dump(feed: ParsedFeed) -> dict[str, Any]:
    return {
        "kind": feed.kind,
        "title": feed.title,
        "link": feed.link,
        "ttl": feed.ttl,
        "warning": feed.warning,
        "error": feed.error,
        "duplicates": feed.duplicates,
        "items": [
            {
                "key": i.key,
                "position": i.position,
                "title": i.title,
                "title_derived": i.title_derived,
                "link": i.link,
                "published": i.published.isoformat() if i.published else None,
                "raw_date": i.raw_date,
                "author": i.author,
                "tags": list(i.tags),
                "summary": i.summary,
                "content": i.content,
            }
            for i in feed.items
        ],
    }


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    expected_path = FEEDS / f"{Path(case).stem}.expected.json"
    got = _dump(_parse_case(case))
    if update_golden:
        expected_path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert expected_path.exists(), f"no golden file for {case}: run pytest --update-golden and review it"
    assert got == json.loads(expected_path.read_text(encoding="utf-8"))


# --- the fast path gives what feedparser gives ------------------------------------------------------------------------


def _entry_html(i: int) -> str:
    return (
        "".join(
            f'<p>Paragraph {n} of entry {i} with <a href="/trial/{i}?arm=a&amp;n={n}">a relative link</a>, '
            f"<b>bold</b> &amp; <em>emphasis</em> &#233;t&#233;.</p>"
            for n in range(15)
        )
        + '<img src="img/fig.png" alt="figure"><script>track()</script>'
    )


def _generated_rss(entries: int) -> bytes:
    items = "".join(
        f"<item><title>Entry {i} &amp; more</title><link>/e/{i}</link><guid>https://gen.example/e/{i}</guid>"
        f"<pubDate>Mon, {1 + i % 28:02d} Jun 2025 10:00:00 +0200</pubDate><category>Oncology</category>"
        f"<description>{escape(_entry_html(i))}</description></item>"
        for i in range(entries)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Generated</title>'
        f"<link>https://gen.example/</link><ttl>30</ttl>{items}</channel></rss>"
    ).encode()


def _generated_atom(entries: int) -> bytes:
    items = "".join(
        f'<entry xml:base="https://gen.example/{i}/"><title type="html">Entry {i} &lt;b&gt;bold&lt;/b&gt;</title>'
        f'<id>tag:gen.example,2025:{i}</id><link href="page"/><updated>2025-06-{1 + i % 28:02d}T10:00:00Z</updated>'
        f"<author><name>Author {i}</name></author><summary>Summary {i}</summary>"
        f'<content type="html">{escape(_entry_html(i))}</content></entry>'
        for i in range(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Generated Atom</title><id>tag:gen.example,2025:feed</id>{items}</feed>"
    ).encode()


GENERATED = {"generated.rss": _generated_rss(50), "generated.atom": _generated_atom(50)}


def _body(name: str) -> bytes:
    return GENERATED[name] if name in GENERATED else (FEEDS / name).read_bytes()


@pytest.mark.parametrize("case", [*XML_CASES, *GENERATED])
def test_fast_path_gives_the_same_entries_as_feedparser(case: str) -> None:
    body, headers = _body(case), {"content-type": "application/xml"}
    fast = _parse(body, now=NOW, url=URL + case, headers=headers, tags=(), engine="auto")
    slow = _parse(body, now=NOW, url=URL + case, headers=headers, tags=(), engine="feedparser")
    assert _dump(fast) == _dump(slow)
    if case in FAST_CASES or case in GENERATED:
        assert _parse_xml(body, url=URL + case, headers=dict(headers), engine="auto").fast


@pytest.mark.parametrize("case", [c for c in [*XML_CASES, *GENERATED] if c not in NOT_COMPARED_WITH_SANITIZER])
def test_same_entries_as_feedparser_with_its_own_sanitizer(case: str) -> None:
    """Keys, titles, links, dates and summary text match plain feedparser (sanitizer and resolver on)."""
    body, headers = _body(case), {"content-type": "application/xml"}
    ours = _parse(body, now=NOW, url=URL + case, headers=headers, tags=(), engine="auto")
    plain = _parse(body, now=NOW, url=URL + case, headers=headers, tags=(), engine="feedparser_defaults")

    def essentials(feed: ParsedFeed) -> list[tuple[object, ...]]:
        return [(i.key, i.title, i.link, i.published, i.summary) for i in feed.items]

    assert essentials(ours) == essentials(plain)


def test_fixture_list_is_complete() -> None:
    assert FAST_CASES.issubset(XML_CASES)
    assert not [c for c in CASES if not (FEEDS / f"{Path(c).stem}.expected.json").exists()]


# --- what a user sees ------------------------------------------------------------------------------------------------


def test_rss_entry_fields() -> None:
    feed = _parse_case("rss20.xml")
    assert (feed.kind, feed.title, feed.link, feed.ttl) == (
        "feed",
        "Cancer Network News",
        "https://news.example.com/",
        90,
    )
    first = feed.items[0]
    assert first.kind == "entry"
    assert first.position == 1
    assert first.key == "cn-2025-0610-001"
    assert first.title == "Updates in HER2-positive breast cancer & brain metastases"
    assert first.link == "https://news.example.com/2025/06/her2-brain"
    assert first.published == datetime(2025, 6, 10, 12, 15, tzinfo=UTC)
    assert first.raw_date == "Tue, 10 Jun 2025 08:15:00 -0400"
    assert first.author == "Sara Hurvitz, MD"
    assert first.tags == ("breast cancer", "her2")
    assert first.summary == "Experts discuss tucatinib and T-DXd."
    assert "<script" not in first.content and "onclick" not in first.content and "<iframe" not in first.content
    assert 'href="https://fixtures.example/drugs/t-dxd"' in first.content
    assert feed.items[1].author == "The Editors"
    assert feed.items[2].link == "https://news.example.com/2025/06/permalink-only"  # the guid is a permalink
    assert feed.items[2].title == "Plain-text title with <angle> brackets that is not HTML"


def test_atom_entry_fields() -> None:
    feed = _parse_case("atom10.xml")
    assert feed.title == "Onco Blog"
    first, second, third = feed.items
    assert first.link == "https://blog.example.org/oncology/posts/rechallenge"
    assert first.published == datetime(2025, 6, 11, 3, 30, tzinfo=UTC)
    assert first.author == "Priya Natarajan"
    assert first.tags == ("immunotherapy", "toxicity")
    assert 'src="https://blog.example.org/oncology/img/scope.png"' in first.content
    assert second.link == "https://blog.example.org/oncology/archive/2025/radiation-recall"  # entry xml:base
    assert third.title == "Cachexia: what helps"
    assert third.link is None  # a tag: id is not a link


def test_tags_argument_is_added_to_every_entry() -> None:
    body = (FEEDS / "rss20.xml").read_bytes()
    feed = parse_feed(body, now=NOW, url=URL, headers={}, tags=["Recap", "HER2", "recap"])
    assert feed.items[0].tags == ("breast cancer", "her2", "recap")
    assert feed.items[1].tags == ("recap", "her2")


def test_keys_are_stable_from_fetch_to_fetch() -> None:
    body = (FEEDS / "duplicate_guids.xml").read_bytes()
    first = parse_feed(body, now=NOW, url=URL, headers={})
    # The same feed later: a new entry on top, the others moved down.
    newer = body.replace(b"<item>", b"<item><title>Newest</title><guid>new</guid></item><item>", 1)
    second = parse_feed(newer, now=NOW, url=URL, headers={})
    assert [i.key for i in second.items][1:] == [i.key for i in first.items]
    assert [i.position for i in second.items] == list(range(1, len(second.items) + 1))


def test_repeated_guid_keeps_the_first_entry() -> None:
    feed = _parse_case("duplicate_guids.xml")
    assert feed.duplicates == 1  # the entry repeating a link; the one repeating a guid is another story (below)
    assert [i.title for i in feed.items][:3] == ["First copy", "Second copy", "No guid, same link as the next"]
    assert feed.warning is not None
    assert "1 entry repeats the id of an earlier entry; the first of each was kept" in feed.warning


@pytest.mark.parametrize("case", ["guids.xml", "guids_bozo.xml"])  # the fast path, and feedparser's
def test_a_guid_repeated_by_a_different_entry_keeps_both(case: str) -> None:
    feed = _parse_case(case)
    titles = [i.title for i in feed.items]
    assert titles.count("First distinct story alpha") == 1  # its exact repeat is dropped
    assert "Second distinct story beta" in titles
    assert "Same id, another link" in titles
    assert feed.duplicates == 1
    keys = {i.title: i.key for i in feed.items}
    assert len(set(keys.values())) == len(feed.items)
    assert keys["First distinct story alpha"] == URL + "same"  # the first keeps the key it always had
    assert keys["Second distinct story beta"].startswith(URL + "same#")
    assert keys["Same id, another link"].startswith("p-1#")
    assert feed.warning is not None
    assert "2 entries repeat the id of an earlier, different entry" in feed.warning
    # The same feed fetched again, with a new entry on top: the same keys.
    body = (
        (FEEDS / case).read_bytes().replace(b"<item>", b"<item><title>Newest</title><guid>new</guid></item><item>", 1)
    )
    again = parse_feed(body, now=NOW, url=URL + case, headers=_headers(case))
    assert {i.title: i.key for i in again.items if i.title != "Newest"} == keys


@pytest.mark.parametrize("case", ["guids.xml", "guids_bozo.xml"])
def test_a_guid_is_a_link_only_when_written_as_an_absolute_url(case: str) -> None:
    by_title = {i.title: i for i in _parse_case(case).items}
    assert by_title["First distinct story alpha"].link is None  # <guid>same</guid>, not <url>/same
    assert by_title["Second distinct story beta"].link is None
    assert by_title["A guid that is a path"].link is None
    assert by_title["A guid that is a word with a link"].link == "https://guids.example.com/g1"
    assert by_title["An absolute permalink guid"].link == "https://guids.example.com/stories/8"
    assert by_title["A guid that is a path"].key == "https://fixtures.example/stories/7"  # keys as before


def test_absurd_and_missing_dates_fall_back_to_first_seen() -> None:
    by_title = {i.title: i for i in _parse_case("dates.xml").items}
    for title in ("Year 9999", "Epoch 1970", "No date at all", "Garbage date", "Year 2101"):
        assert by_title[title].published is None, title
    assert by_title["Year 9999"].raw_date == "Fri, 31 Dec 9999 23:59:59 GMT"
    assert by_title["India offset"].published == datetime(2025, 6, 10, 3, 30, tzinfo=UTC)
    assert by_title["US named zone"].published == datetime(2025, 6, 10, 14, 0, tzinfo=UTC)
    assert by_title["Bad published, good updated"].published == datetime(2025, 6, 9, 10, 0, tzinfo=UTC)
    assert all(i.published is None or i.published.tzinfo is UTC for i in by_title.values())


def test_relative_links_resolve_against_the_feed_url_not_a_header() -> None:
    body = (FEEDS / "relative_links.xml").read_bytes()
    feed = parse_feed(
        body, now=NOW, url="https://final.example/news/feed.xml", headers={"Content-Location": "https://cdn.x/"}
    )
    first = feed.items[0]
    assert first.link == "https://final.example/articles/1"
    assert 'href="https://final.example/figures/2"' in first.content
    assert 'href="mailto:ed@rel.example"' in first.content
    assert "javascript:" not in first.content and "data:" not in first.content
    assert feed.items[1].link is None  # ftp
    assert feed.items[2].link == "https://cdn.rel.example/story"


# --- hostile and broken bodies ---------------------------------------------------------------------------------------


def test_quadratic_entity_is_never_expanded() -> None:
    feed = _parse_case("quadratic_entity.xml")
    assert feed.kind == "feed"
    assert len(feed.items) == 1
    item = feed.items[0]
    assert "AAAA" not in item.title + item.summary + item.content
    assert len(item.title) <= TITLE_MAX


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_internal_subset_is_removed_whatever_the_encoding(encoding: str) -> None:
    text = (FEEDS / "billion_laughs.xml").read_text(encoding="utf-8")
    body = text.replace('<?xml version="1.0"?>', f'<?xml version="1.0" encoding="{encoding}"?>').encode(encoding)
    feed = parse_feed(body, now=NOW, url=URL, headers={"content-type": f"application/xml; charset={encoding}"})
    assert len(feed.items) == 1
    assert "lollol" not in feed.items[0].title + feed.items[0].summary


def test_strip_internal_subset() -> None:
    doc = b'<?xml version="1.0"?>\n<!DOCTYPE x [ <!ENTITY a "]> x"> <!-- ] --> ]>\n<x>&a;</x>'
    assert strip_internal_subset(doc) == b'<?xml version="1.0"?>\n<!DOCTYPE x >\n<x>&a;</x>'
    stray = b'<?xml version="1.0"?>\n<!DOCTYPE x>\n<!ENTITY a "aaaa">\n<x>&a;</x>'
    assert b"<!ENTITY" not in strip_internal_subset(stray)
    plain = b'<?xml version="1.0"?><!DOCTYPE rss PUBLIC "-//Netscape//DTD RSS 0.91//EN" "rss-0.91.dtd"><rss/>'
    assert strip_internal_subset(plain) == plain


def test_subset_hidden_behind_a_comment_holding_a_tag_is_removed() -> None:
    # feedparser looks for the DOCTYPE before the first "<" and a letter, expat through the whole prolog.
    body = (
        b'<?xml version="1.0"?><!-- <rss> --><!DOCTYPE rss [<!ENTITY a "' + b"A" * 4000 + b'">]>'
        b'<rss version="2.0"><channel><item><title>' + b"&a;" * 3000 + b"</title></item></channel></rss>"
    )
    feed = parse_feed(body, now=NOW, url=URL, headers={})
    assert len(feed.items) == 1
    assert "AAAA" not in feed.items[0].title


def test_deep_nesting_falls_back_instead_of_recursing() -> None:
    nested = b"<x:a xmlns:x='urn:x'>" * 5_000 + b"</x:a>" * 5_000
    body = b'<rss version="2.0"><channel><item><title>deep</title><guid>g</guid>' + nested + b"</item></channel></rss>"
    feed = parse_feed(body, now=NOW, url=URL, headers={})
    assert [i.title for i in feed.items] == ["deep"]


@pytest.mark.parametrize(
    ("declared", "content_type"),
    [
        (b'encoding="\xb9tf-8"', "application/xml"),
        (b'encoding="u\x00tf-8"', "application/xml"),
        (b'encoding="utf-8"', "text/xml; charset=ut\x00f8"),
        (b'encoding="utf-8"', "text/xml; charset=bogus"),
    ],
)
def test_garbage_encoding_names(declared: bytes, content_type: str) -> None:
    body = (FEEDS / "rss20.xml").read_bytes().replace(b'encoding="utf-8"', declared, 1)
    assert len(parse_feed(body, now=NOW, url=URL, headers={"content-type": content_type}).items) == 3


def test_mangled_feeds_never_raise() -> None:
    """Seeded random damage to every fixture: each result is a ParsedFeed whose text can be stored as UTF-8."""
    rnd = random.Random(20251127)
    seeds = [(FEEDS / c).read_bytes() for c in CASES if c.endswith(".xml")]
    tokens = [b"<", b"&", b"&#xD800;", b"&#0;", b"]]>", b"<![CDATA[", b"<!DOCTYPE x [<!ENTITY a 'b'>]>", b"\x00"]
    tokens += [b"\xff\xfe", b"<item>", b"</item>", b"<entry>", b"xmlns:dc='urn:x'", b"&a;", b"<!--", b"\xed\xa0\x80"]
    for _ in range(300):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 5)):
            pos = rnd.randint(0, len(data))
            if rnd.random() < 0.5:
                data[pos:pos] = rnd.choice(tokens)
            else:
                del data[pos : pos + rnd.randint(1, 40)]
        feed = parse_feed(
            bytes(data), now=NOW, url=URL, headers={"content-type": rnd.choice(["text/xml", "", "text/html"])}
        )
        for item in feed.items:
            (item.key + item.title + item.summary + item.content + (item.link or "")).encode("utf-8")


def test_body_that_names_a_local_file_is_not_opened() -> None:
    feed = parse_feed(b"/etc/passwd", now=NOW, url=URL, headers={})
    assert feed.kind == "not_a_feed"
    assert "root:" not in repr(feed)


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "says"),
    [
        (b"", "application/rss+xml", "empty", "empty response"),
        (b"  \r\n\t ", "application/rss+xml", "empty", "empty response"),
        (b"<html><body>Sign in</body></html>", "text/html", "not_a_feed", "HTML page, content-type text/html"),
        (b"<!doctype html><title>x</title>", "application/xml", "not_a_feed", "HTML page"),
        (bytes(range(256)) * 4, "application/octet-stream", "not_a_feed", "no RSS, Atom or JSON Feed found"),
        (b'{"hello": "world"}', "application/json", "not_a_feed", "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", ', "application/feed+json", "not_a_feed", "not valid JSON"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": []}', "", "empty", "no entries"),
    ],
)
def test_not_a_feed_and_empty(body: bytes, content_type: str, kind: str, says: str) -> None:
    feed = parse_feed(body, now=NOW, url="https://x.example/feed", headers={"content-type": content_type})
    assert feed.kind == kind
    assert feed.items == ()
    assert feed.error is not None
    assert feed.error.startswith("https://x.example/feed: ")
    assert says in feed.error


def test_login_page_message() -> None:
    feed = _parse_case("login_page.html")
    assert feed.error == (f"{URL}login_page.html: not a feed (the server sent an HTML page, content-type text/html)")


def test_valid_feed_without_entries_is_empty() -> None:
    feed = _parse_case("no_entries.xml")
    assert (feed.kind, feed.title, feed.ttl) == ("empty", "Quiet feed", 1440)
    assert feed.error == f"{URL}no_entries.xml: the feed has no entries"


def test_bozo_feed_keeps_recoverable_entries_with_a_warning() -> None:
    feed = _parse_case("bozo_recoverable.xml")
    assert feed.kind == "feed"
    assert len(feed.items) == 2
    assert feed.items[0].link == "https://broken.example.com/1?a=1&b=2"
    assert feed.warning is not None
    assert "not well-formed XML" in feed.warning
    assert "2 entries recovered" in feed.warning
    # The third entry's title is never closed and swallows the rest: nothing of it is left to show.
    assert feed.empty == 1 and "1 empty entries (no title, summary or link) dropped" in feed.warning


def test_control_characters_and_lone_surrogates_are_replaced() -> None:
    for name in ("control_chars.xml", "jsonfeed11.json"):
        feed = _parse_case(name)
        for item in feed.items:
            for text in (item.key, item.title, item.summary, item.content, item.author or ""):
                text.encode("utf-8")  # a lone surrogate cannot be encoded
                assert not any(ord(c) < 32 and c not in "\t\n\r" for c in text), (name, text)
    assert "\ufffd" in _parse_case("control_chars.xml").items[1].title


def test_oversized_fields_are_truncated_not_refused() -> None:
    big_title = "word " * 100_000
    big_html = "<p>" + "x" * 300_000 + "</p>" + "<p>tail</p>" * 50_000
    link = "https://long.example/" + "a" * 5_000
    body = (
        f'<rss version="2.0"><channel><title>Big</title><item><title>{big_title}</title><link>{link}</link>'
        f"<guid>{'g' * 5_000}</guid><description>{escape(big_html)}</description></item></channel></rss>"
    ).encode()
    item = parse_feed(body, now=NOW, url=URL, headers={}).items[0]
    assert len(item.title) <= TITLE_MAX
    assert len(item.summary) <= SUMMARY_MAX
    assert len(item.content) <= CONTENT_MAX
    assert item.link is None  # a cut URL would point elsewhere
    assert len(item.key) < 100  # a huge guid is hashed


def test_json_feed() -> None:
    feed = _parse_case("jsonfeed11.json")
    assert (feed.kind, feed.title, feed.link, feed.duplicates) == (
        "feed",
        "JSON Oncology \ufffdDigest",
        "https://json.example.org/",
        0,
    )
    first, second, repeated, third = feed.items
    assert (repeated.title, repeated.key) == ("Duplicate id, another item: kept", "2025-06-01-a#" + repeated.key[-16:])
    assert first.link == "https://fixtures.example/posts/a"  # "/posts/a" against the feed URL
    assert first.published == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    assert first.author == "M. Yeloma"
    assert first.tags == ("myeloma", "bispecifics")
    assert "<script" not in first.content
    assert second.key == "12345"
    assert second.published is None  # year 9999
    assert second.link == "https://elsewhere.example.com/car-t"
    assert third.title_derived
    assert _parse_case("jsonfeed10.json").items[0].author == "Old Author"


def test_feedparser_never_gets_a_string(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    real = adapter.feedparser.parse

    def spy(source: object, **kwargs: object) -> object:
        seen.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(adapter.feedparser, "parse", spy)
    _parse_case("atom03.xml")
    _parse_case("bozo_recoverable.xml")
    assert len(seen) == 2
    assert all(hasattr(s, "read") for s in seen)


# --- issue 13: every field cut to its cap before any parser's regex ----------------------------------------------


def _rss_item(fields: str, *, well_formed: bool = True) -> bytes:
    second = "<title>Second</title>" if well_formed else "<title>Second & not well-formed</title>"
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>Caps</title><item>{fields}<guid>g1</guid></item><item>{second}<guid>g2</guid></item>"
        "</channel></rss>"
    ).encode()


def test_cap_fields_cuts_each_field_to_its_cap_and_keeps_the_document_well_formed() -> None:
    from xml.etree import ElementTree as ET

    euro = "€" * 40_000  # three bytes each: the cut must fall between characters
    body = _rss_item(
        f"<title>{euro}</title><dc:creator>{'&amp;' * 1000}</dc:creator>"
        f"<category><![CDATA[{'x' * 100_000}]]></category><link>http://example.org/{'a' * 100_000}</link>"
        f"<description>{'&lt;p&gt;' * 400_000}</description>"
    )
    capped, cuts = cap_fields(body)
    assert cuts == 5
    item = ET.fromstring(capped).find("channel/item")
    assert item is not None
    sizes = {child.tag.rpartition("}")[2]: len((child.text or "").encode()) for child in item}
    assert RAW_FIELD_MAX - 3 <= sizes["title"] <= RAW_FIELD_MAX
    assert sizes["creator"] == RAW_AUTHOR_MAX // 5  # whole references only: "&amp;" is 5 bytes, read as "&"
    assert sizes["category"] == RAW_FIELD_MAX
    assert sizes["link"] == RAW_FIELD_MAX
    body_text = item.findtext("description") or ""
    assert body_text == ("<p>" * 200_000)[: len(body_text)]
    assert len(body_text) == RAW_BODY_MAX // 9 * 3 + 2  # 9 bytes a "&lt;p&gt;", then "&lt;p" of the last "&lt;p&g"
    assert item.findtext("guid") == "g1"
    assert _parse_xml(body, url=URL, headers={}, engine="auto").fast  # still well-formed: the fast path takes it


def test_cap_fields_leaves_documents_within_the_caps_alone() -> None:
    for case in [*XML_CASES, *GENERATED]:
        if case != "quadratic_entity.xml":  # its title is 100 KB of "&a;"
            body = _body(case)
            assert cap_fields(body) == (body, 0), case


def test_text_split_by_tags_counts_towards_its_field() -> None:
    body = _rss_item("<author>" + "<b>x</b>" * 2_000 + "</author><title>T</title>", well_formed=False)
    capped, cuts = cap_fields(body)
    assert cuts == 1
    assert capped.count(b"<b>x</b>") == RAW_AUTHOR_MAX
    assert capped.count(b"<b></b>") == 2_000 - RAW_AUTHOR_MAX  # the tags stay: only text is cut


def test_unterminated_markup_is_capped_as_text() -> None:
    for opener in ("<!-- ", "<![CDATA[", '<x y="', "<?pi "):
        body = _rss_item(f"<author>{opener}{'a' * 100_000}", well_formed=False)
        capped, cuts = cap_fields(body)
        assert (cuts, len(capped) < len(body) - 90_000) == (1, True), opener


@pytest.mark.parametrize("well_formed", [True, False])
def test_the_email_regexes_never_see_more_than_the_author_cap(
    monkeypatch: pytest.MonkeyPatch, well_formed: bool
) -> None:
    """The 100 KB <author> that cost 49 s: feedparser's e-mail pattern (and the fast path's copy) gets 512 bytes."""
    import re

    import feedparser.mixin

    from ingest.parse import fastpath

    seen: list[int] = []

    class Spy:
        def search(self, pattern: object, string: str, *args: object) -> object:
            if "@" in str(pattern):
                seen.append(len(string))
            return re.search(pattern, string, *args)  # type: ignore[call-overload]

        def __getattr__(self, name: str) -> object:
            return getattr(re, name)

    class PatternSpy:
        def search(self, string: str, *args: object) -> object:
            seen.append(len(string))
            return real_email.search(string, *args)  # type: ignore[call-overload]

    real_email = fastpath._EMAIL
    monkeypatch.setattr(feedparser.mixin, "re", Spy())
    monkeypatch.setattr(fastpath, "_EMAIL", PatternSpy())
    for author in ("a" * 1_000_000, "jo@" + "a." * 500_000, "x@y.org (" + "J" * 1_000_000 + ")"):
        feed = parse_feed(
            _rss_item(f"<title>T</title><author>{author}</author>", well_formed=well_formed),
            now=NOW,
            url=URL,
            headers={},
        )
        assert (feed.kind, len(feed.items)) == ("feed", 2)
        assert feed.items[0].author is not None and len(feed.items[0].author) <= 500
        assert feed.warning is not None and "1 over-long field(s) cut before parsing" in feed.warning
    assert seen and max(seen) <= RAW_AUTHOR_MAX


@pytest.mark.parametrize(
    "field", ["title", "author", "dc:creator", "link", "category", "guid", "pubDate", "description"]
)
def test_a_huge_field_gives_the_same_entries_on_both_paths(field: str) -> None:
    value = ("http://example.org/" if field == "link" else "") + "a" * 1_000_000
    fields = f"<{field}>{value}</{field}>" + ("" if field == "title" else "<title>T</title>")
    body = _rss_item(fields).replace(b"<guid>g1</guid>", b"") if field == "guid" else _rss_item(fields)
    fast = _parse(body, now=NOW, url=URL, headers={}, tags=(), engine="auto")
    slow = _parse(body, now=NOW, url=URL, headers={}, tags=(), engine="feedparser")
    assert _parse_xml(body, url=URL, headers={}, engine="auto").fast
    assert _dump(fast) == _dump(slow)
    assert fast.kind == "feed" and len(fast.items) == 2


def test_a_huge_json_feed_field_is_cut_too() -> None:
    item = {"id": "1", "title": "t" * 1_000_000, "authors": [{"name": "a" * 1_000_000}], "tags": ["x" * 1_000_000]}
    doc = {"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [item]}
    feed = parse_feed(json.dumps(doc).encode(), now=NOW, url=URL, headers={})
    [entry] = feed.items
    assert len(entry.title) <= TITLE_MAX and entry.author == "a" * 500 and entry.tags == ("x" * 100,)
    assert feed.warning is not None and "3 over-long field(s) cut before parsing" in feed.warning


# --- issue 13: future dates, empty entries, the entry cap (pure; the feed pass is tested in test_feed_ingest.py) ---


def _dated_rss(dates: list[str | None]) -> bytes:
    items = "".join(
        f"<item><title>E{n}</title><guid isPermaLink='false'>e{n}</guid>"
        + (f"<pubDate>{when}</pubDate>" if when else "")
        + "</item>"
        for n, when in enumerate(dates)
    )
    return f'<rss version="2.0"><channel><title>D</title>{items}</channel></rss>'.encode()


def test_a_date_more_than_a_day_after_the_fetch_is_not_believed() -> None:
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    body = _dated_rss(
        ["Thu, 01 Jan 2099 00:00:00 GMT", "Sat, 28 Nov 2026 09:59:00 GMT", "Sat, 28 Nov 2026 10:01:00 GMT"]
    )
    far, near, over = parse_feed(body, now=now, url=URL, headers={}).items
    assert (far.published, far.raw_date) == (None, "Thu, 01 Jan 2099 00:00:00 GMT")  # the raw date as written
    assert near.published == datetime(2026, 11, 28, 9, 59, tzinfo=UTC)  # within a day: a time zone written wrong
    assert (over.published, over.raw_date) == (None, "Sat, 28 Nov 2026 10:01:00 GMT")
    later = parse_feed(body, now=now + timedelta(days=1), url=URL, headers={}).items  # the same feed a day on
    assert later[2].published == datetime(2026, 11, 28, 10, 1, tzinfo=UTC)


def test_the_newest_entries_are_kept_dated_first_then_undated_in_order() -> None:
    dates = [None, "Tue, 03 Nov 2026 08:00:00 GMT", None, "Mon, 09 Nov 2026 08:00:00 GMT",
             "Tue, 03 Nov 2026 08:00:00 GMT", "Thu, 01 Jan 2099 00:00:00 GMT"]  # fmt: skip
    feed = parse_feed(_dated_rss(dates), now=NOW, url=URL, headers={}, max_entries=4)
    # e3 is the newest; e1 and e4 share a date and both fit; then the undated in the feed's order: e0 (e5's 2099
    # counts as no date). e2 and e5 are left out; those kept keep the feed's order.
    assert [(i.key, i.position) for i in feed.items] == [("e0", 1), ("e1", 2), ("e3", 3), ("e4", 4)]
    assert (feed.over_cap, feed.warning) == (
        2,
        f"{URL}: 2 of 6 entries dropped: only the newest 4 are kept ([fetch] max_entries)",
    )
    assert parse_feed(_dated_rss(dates), now=NOW, url=URL, headers={}).over_cap == 0  # no cap given: all kept


def test_an_entry_with_nothing_to_show_is_dropped_and_counted() -> None:
    body = _dated_rss(["Mon, 09 Nov 2026 08:00:00 GMT"]).replace(b"<title>E0</title>", b"<title> </title>")
    body = body.replace(b"</channel>", b"<item><description>Only a body</description></item></channel>")
    feed = parse_feed(body, now=NOW, url=URL, headers={})
    assert [(i.title, i.summary) for i in feed.items] == [("Only a body", "Only a body")]
    assert (feed.kind, feed.empty) == ("feed", 1)
    only_empty = parse_feed(_dated_rss([None]).replace(b"<title>E0</title>", b""), now=NOW, url=URL, headers={})
    assert (only_empty.kind, only_empty.items, only_empty.empty) == ("empty", (), 1)
    assert only_empty.error == f"{URL}: 1 empty entries (no title, summary or link) dropped"


def test_known_entries_are_listed_with_their_position_not_normalized() -> None:
    """Issue 15 item 2: an entry whose key the store holds is not sanitized again; the others parse as before."""
    body = _generated_rss(5)
    full = parse_feed(body, now=NOW, url=URL, headers={})
    known = {full.items[1].key, full.items[3].key, "https://gen.example/e/gone"}
    skipping = parse_feed(body, now=NOW, url=URL, headers={}, known=known)
    assert skipping.kind == "feed"
    assert skipping.known == ((full.items[1].key, 2), (full.items[3].key, 4))
    assert skipping.items == tuple(full.items[i] for i in (0, 2, 4))  # same keys, positions and fields
    every = parse_feed(body, now=NOW, url=URL, headers={}, known={i.key for i in full.items})
    assert (every.kind, every.items, len(every.known)) == ("feed", (), 5)


def test_a_known_entry_without_id_or_link_or_now_empty_is_parsed_in_full() -> None:
    """A key made from the entry's text, an entry that may be empty now, or an id several entries share (a repeat,
    or another story: only their texts tell) needs the entry normalized."""
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><title>No id, no link</title><description>Some text</description></item>"
        b"<item><guid isPermaLink='false'>empty-now</guid></item>"
        b"<item><guid isPermaLink='false'>dup</guid><title>First</title></item>"
        b"<item><guid isPermaLink='false'>dup</guid><title>Second</title></item>"
        b"<item><guid isPermaLink='false'>dup</guid><title>First</title></item>"
        b"<item><guid isPermaLink='false'>stored</guid><title>Stored</title></item>"
        b"</channel></rss>"
    )
    full = parse_feed(body, now=NOW, url=URL, headers={})
    hashed = full.items[0].key
    assert hashed.startswith("hash:")
    assert [i.key for i in full.items[1:3]] == ["dup", full.items[2].key] and full.items[2].key.startswith("dup#")
    known = {hashed, "empty-now", "dup", full.items[2].key, "stored"}
    skipping = parse_feed(body, now=NOW, url=URL, headers={}, known=known)
    assert skipping.items == full.items[:3]
    assert skipping.known == (("stored", 4),)
    assert (skipping.empty, skipping.duplicates) == (full.empty, full.duplicates) == (1, 1)
    assert skipping.warning == full.warning

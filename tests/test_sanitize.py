"""The HTML sanitizer and the plain-text view of HTML: what survives, what never does."""

from __future__ import annotations

import pytest

from ingest.sanitize import html_to_text, sanitize_html, text_of_sanitized

pytestmark = pytest.mark.no_database  # opens no database: one run

BASE = "https://news.example.org/section/feed.xml"


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>ok",
        "<SCRIPT SRC=//evil.example/x.js></SCRIPT>ok",
        "<style>body{display:none}</style>ok",
        '<iframe src="https://evil.example/"></iframe>ok',
        '<object data="x.swf"></object><embed src="x.swf">ok',
        '<p onclick="steal()" onmouseover="steal()">ok</p>',
        '<img src="x.png" onerror="steal()">ok',
        '<a href="javascript:alert(1)">ok</a>',
        '<a href=" JaVaScRiPt:alert(1)">ok</a>',
        '<a href="java&#x09;script:alert(1)">ok</a>',
        '<a href="data:text/html;base64,PHNjcmlwdD4=">ok</a>',
        '<a href="vbscript:msgbox(1)">ok</a>',
        "<svg><script>alert(1)</script></svg>ok",
        '<form action="https://evil.example/"><input name="pw"></form>ok',
        '<meta http-equiv="refresh" content="0;url=https://evil.example/">ok',
        '<p style="background:url(javascript:alert(1))">ok</p>',
    ],
)
def test_nothing_executable_survives(html: str) -> None:
    clean = sanitize_html(html, base_url=BASE).lower()
    for needle in ("<script", "<style", "<iframe", "<object", "<embed", "<svg", "<form", "<input", "<meta", " on"):
        assert needle not in clean
    for scheme in ("javascript:", "vbscript:", "data:"):
        assert scheme not in clean
    assert "style=" not in clean
    assert "ok" in clean


def test_links_keep_http_https_and_mailto_only() -> None:
    clean = sanitize_html(
        '<a href="https://a.example/">a</a><a href="http://b.example/">b</a><a href="mailto:ed@c.example">c</a>'
        '<a href="ftp://d.example/">d</a><a href="tel:+1555">e</a>',
        base_url=BASE,
    )
    assert 'href="https://a.example/"' in clean
    assert 'href="http://b.example/"' in clean
    assert 'href="mailto:ed@c.example"' in clean
    assert "ftp:" not in clean
    assert "tel:" not in clean
    assert clean.count('rel="noopener noreferrer nofollow"') == 5


def test_relative_urls_resolve_against_the_base() -> None:
    clean = sanitize_html(
        '<a href="/a">a</a><a href="b?x=1&amp;y=2">b</a><a href="../c">c</a><a href="//cdn.example/d">d</a>'
        '<img src="img/e.png" alt="e">',
        base_url=BASE,
    )
    assert 'href="https://news.example.org/a"' in clean
    assert 'href="https://news.example.org/section/b?x=1&amp;y=2"' in clean
    assert 'href="https://news.example.org/c"' in clean
    assert 'href="https://cdn.example/d"' in clean
    assert 'src="https://news.example.org/section/img/e.png"' in clean


@pytest.mark.parametrize("base", [None, "", "ftp://files.example/", "not a url"])
def test_relative_urls_are_dropped_without_a_usable_base(base: str | None) -> None:
    clean = sanitize_html('<a href="/a">a</a><img src="b.png"><a href="https://ok.example/">ok</a>', base_url=base)
    assert 'href="/a"' not in clean
    assert 'src="b.png"' not in clean
    assert 'href="https://ok.example/"' in clean


def test_images_need_an_http_or_https_source() -> None:
    clean = sanitize_html(
        '<img src="https://a.example/1.png" alt="one"><img src="http://a.example/2.png">'
        '<img src="mailto:x@a.example"><img src="data:image/png;base64,AAAA"><img src="javascript:x">',
        base_url=BASE,
    )
    assert 'src="https://a.example/1.png"' in clean
    assert 'src="http://a.example/2.png"' in clean
    assert clean.count("src=") == 2
    assert 'alt="one"' in clean


def test_ordinary_markup_is_kept() -> None:
    html = "<p>One <b>bold</b> <em>word</em></p><ul><li>a</li><li>b</li></ul><blockquote>q</blockquote><h2>T</h2>"
    assert sanitize_html(html, base_url=BASE) == html


def test_characters_xml_cannot_carry_are_replaced() -> None:
    clean = sanitize_html("<p>bell\x07 surrogate\ud800 ref&#1; nul\x00 ok</p>", base_url=BASE)
    clean.encode("utf-8")
    assert not any(ord(c) < 32 for c in clean)
    assert "ok" in clean
    text = html_to_text("<p>bell\x07 surrogate\ud800 ok</p>")
    text.encode("utf-8")
    assert text == "bell\ufffd surrogate\ufffd ok"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One Two"),
        ("line<br>break", "line break"),
        ("<b>HER</b>2-positive", "HER2-positive"),
        ("AT&amp;T &lt;b&gt; &eacute;t&#233; &nbsp;x", "AT&T <b> été x"),
        ("  lots \n\n of \t space  ", "lots of space"),
        ("<script>var x = 1;</script><style>p {}</style>visible", "visible"),
        ("<ul><li>a</li><li>b</li></ul><table><tr><td>c</td><td>d</td></tr></table>", "a b c d"),
        ('<a href="https://x.example">link text</a> and <img src="x.png" alt="no alt text in text">', "link text and"),
        ("", ""),
        ("plain", "plain"),
        ("<!-- a comment -->after", "after"),
        ("unclosed <b>bold", "unclosed bold"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    "html",
    [
        "<p>One</p><p>Two <a href='/x' title='a>b'>three</a></p>",
        "<div><h1>Title</h1><p>Body &amp; more</p><script>x</script></div>",
        "text with <unknown>tags</unknown> and <font color=red>font</font>",
        "<table><tr><td>a</td><td>b</td></tr></table>",
        '<img alt="1 > 0" src="x.png">after',
    ],
)
def test_text_of_sanitized_html_equals_text_of_the_raw_html(html: str) -> None:
    assert text_of_sanitized(sanitize_html(html, base_url=BASE)) == html_to_text(html)

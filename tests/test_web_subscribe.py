"""Subscribe, confirm, unsubscribe (RFC 8058 one-click included) and the digest archive, through a real uvicorn."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from newsletter.subscribers.tokens import Tokens
from tests.feedcheck import atom_problems
from tests.mailsite import Site, confirm_url, live_site


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Site]:
    with live_site(tmp_path, db_url) as s:
        yield s


def test_subscribe_and_confirm(site: Site) -> None:
    with site.client() as client:
        form = client.get("/subscribe")
        assert form.status_code == 200
        assert 'name="email"' in form.text
        sent = client.post("/subscribe", data={"email": "New.Reader@Example.org"})
        assert sent.status_code == 200
        assert "Check your inbox" in sent.text
        assert "set-cookie" not in sent.headers
        assert site.status("new.reader@example.org") == "pending"
        again = client.post("/subscribe", data={"email": "new.reader@example.org"})
        assert again.text == sent.text.replace("New.Reader@Example.org", "new.reader@example.org")
        (msg,) = site.outbox()  # rate-limited: one mail for two requests
        link = confirm_url(msg)
        assert link.startswith("https://news.example.org/confirm/")
        path = "/" + link.split("/", 3)[3]
        asked = client.get(path)
        assert asked.status_code == 200
        assert f'<form method="post" action="{path}">' in asked.text
        assert site.status("new.reader@example.org") == "pending"  # opening the link is not confirming
        confirmed_page = client.post(path)
        assert confirmed_page.status_code == 200
        assert "You are subscribed" in confirmed_page.text
        assert site.status("new.reader@example.org") == "confirmed"
        assert "You are subscribed" in client.post(path).text  # again: harmless


def test_a_link_scanner_following_the_confirm_link_confirms_nothing(site: Site) -> None:
    """A mail scanner (a hospital's gateway, a link preview) GETs every link of a message, HEADs some."""
    with site.client() as client:
        client.post("/subscribe", data={"email": "scanned@example.org"})
        path = "/" + confirm_url(site.outbox()[0]).split("/", 3)[3]
        answers = [client.get(path), client.head(path), client.get(path, headers={"Accept": "*/*"})]
    assert [a.status_code for a in answers] in ([200, 200, 200], [200, 405, 200])
    assert answers[0].headers["cache-control"] == "no-store"
    assert "You are subscribed" not in answers[0].text
    assert site.status("scanned@example.org") == "pending"


def test_a_bad_address_is_refused_on_the_form(site: Site) -> None:
    with site.client() as client:
        bad = client.post("/subscribe", data={"email": "someone@@example"})
        assert bad.status_code == 400
        assert "&#39;someone@@example&#39;: not a valid email address" in bad.text
        assert 'aria-invalid="true"' in bad.text
        assert client.post("/subscribe", content=b"x" * 5000).status_code == 413
    assert site.outbox() == []


def test_an_expired_or_forged_confirm_link_reveals_nothing(site: Site) -> None:
    with site.client() as client:
        client.post("/subscribe", data={"email": "late@example.org"})
        path = "/" + confirm_url(site.outbox()[0]).split("/", 3)[3]
        site.clock.now += timedelta(days=8)
        answers = [
            send(target)
            for send in (client.get, client.post)
            for target in (path, path[:-3] + "abc", "/confirm/99999.abc.abcdefghijklmnopqrstuvwxyz")
        ]
    assert {a.status_code for a in answers} == {400}
    assert len({a.text for a in answers}) == 1
    expired = answers[0]
    assert "late@example.org" not in expired.text
    assert site.status("late@example.org") == "pending"


def test_the_unsubscribe_get_only_shows_a_button(site: Site) -> None:
    token = site.unsubscribe_token("reader@example.org")
    with site.client() as client:
        page = client.get(f"/unsubscribe/{token}")
        head = client.head(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert f'<form method="post" action="/unsubscribe/{token}">' in page.text
    assert "<button" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert head.status_code in (200, 405)
    assert site.status("reader@example.org") == "confirmed"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        (
            b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
        ),
        (b"", "application/x-www-form-urlencoded"),  # the button on our own page
    ],
)
def test_one_click_post_unsubscribes_at_once(site: Site, body: bytes, content_type: str) -> None:
    token = site.unsubscribe_token("reader@example.org")
    with site.client() as client:  # no cookie jar in use: RFC 8058 clients send none
        first = client.post(f"/unsubscribe/{token}", content=body, headers={"Content-Type": content_type})
        second = client.post(f"/unsubscribe/{token}", content=body, headers={"Content-Type": content_type})
    assert first.status_code == 200  # RFC 8058: no redirect
    assert "You are unsubscribed" in first.text
    assert "set-cookie" not in first.headers
    assert second.status_code == 200  # idempotent
    assert site.status("reader@example.org") == "unsubscribed"
    assert site.status("other@example.org") == "confirmed"


def test_forged_unsubscribe_tokens_reveal_nothing(site: Site) -> None:
    good = site.unsubscribe_token("reader@example.org")
    other = site.store.subscriber_by_email("other@example.org")
    assert other is not None
    forged = [
        f"{other.id}.{good.split('.', 1)[1]}",  # reader's signature on other's id
        Tokens("wrong key").unsubscribe(other.id, other.email),
        "99999.abcdefghijklmnopqrstuvwxyz",
        "garbage",
    ]
    with site.client() as client:
        answers = [client.post(f"/unsubscribe/{t}", content=b"List-Unsubscribe=One-Click") for t in forged]
        answers += [client.get(f"/unsubscribe/{t}") for t in forged]
    assert {a.status_code for a in answers} == {400}
    assert len({a.text for a in answers}) == 1
    assert site.status("other@example.org") == "confirmed"


def test_the_digest_archive(site: Site) -> None:
    with site.client() as client:
        listing = client.get("/digests/")
        one = client.get("/digests/2026-W48")
        missing = client.get("/digests/2026-W01")
        nonsense = client.get("/digests/..%2f..%2fetc")
        feed = client.get("/digests.atom")
    assert listing.status_code == 200
    assert 'href="/digests/2026-W48"' in listing.text
    assert "Oncology digest: 2 new stories, Nov 23 to 29" in listing.text
    assert one.status_code == 200
    assert "A &lt;b&gt;bold&lt;/b&gt; story of the week" in one.text
    assert "<h2>Recaps</h2>" in one.text
    assert (missing.status_code, nonsense.status_code) == (404, 404)
    assert feed.status_code == 200
    assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert atom_problems(feed.content, site.clock.now) == []
    ns = {"a": "http://www.w3.org/2005/Atom"}
    root = ET.fromstring(feed.content)
    entries = root.findall("a:entry", ns)
    assert len(entries) == 1
    assert entries[0].findtext("a:title", namespaces=ns) == "Oncology digest: 2 new stories, Nov 23 to 29"
    link = entries[0].find("a:link", ns)
    assert link is not None
    assert link.get("href") == "https://news.example.org/digests/2026-W48"
    # The entry carries the digest itself, as its web page shows it: sections, titles, links out, blurbs.
    content = entries[0].find("a:content", ns)
    assert content is not None and content.get("type") == "html"
    body = content.text or ""
    assert "<h2>New articles</h2>" in body and "<h2>Recaps</h2>" in body
    assert "A &lt;b&gt;bold&lt;/b&gt; story of the week" in body  # the title is text, escaped once in the HTML
    story_links = re.findall(r'href="(https://news\.example\.org/stories/\d+)"', body)
    assert len(story_links) == 2
    assert "What Recap: an old one is about." in body
    # Nothing of one subscriber's copy: no unsubscribe link, no slot left to fill.
    assert "unsubscribe" not in body.lower() and "{{" not in body and "\x00" not in body


def test_the_home_page_leads_to_the_digests(site: Site) -> None:
    with site.client() as client:
        home = client.get("/")
    assert home.status_code == 200
    assert '<a href="/digests/">' in home.text
    assert (
        '<link rel="alternate" type="application/atom+xml" title="Oncology news: weekly digests" '
        'href="/digests.atom">' in home.text
    )


def test_a_story_hidden_after_its_digest_leaves_the_digest_page_and_feed(site: Site) -> None:
    (bold,) = [s for s in site.store.stories() if "bold" in s.title]
    site.store.hide_story(bold.id, "retracted", site.clock.now)
    with site.client() as client:
        one = client.get("/digests/2026-W48")
        feed = client.get("/digests.atom")
    assert one.status_code == 200
    assert "bold" not in one.text and "Recap: an old one" in one.text
    assert "1 story." in one.text
    assert b"bold" not in feed.content.split(b"<content", 1)[1]

"""The digest email: rendered once (golden HTML and text), one message per recipient by substitution, clean headers."""

from __future__ import annotations

import html
import random
import re
import string
import unicodedata
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.core.config import Settings
from ingest.core.models import Digest
from newsletter.digest import compose
from newsletter.digest.select import DigestItem, Section, Selection, period_for
from tests.conftest import GOLDEN
from tests.maildata import make_settings

SENT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
HEADERS = {
    "MIME-Version",
    "From",
    "Subject",
    "Date",
    "List-Id",
    "List-Unsubscribe-Post",
    "Content-Type",
    "To",
    "Message-ID",
    "List-Unsubscribe",
}
HOSTILE_TITLES = [
    "Evil\r\nBcc: victim@example.org",
    "Evil\nX-Injected: 1",
    "=?utf-8?q?x=0D=0ABcc:_victim@example.org?=",
    "=?utf-8?b?eA0KQmNjOiB2aWN0aW1AZXhhbXBsZS5vcmc=?=",
    "Line\u2028X-Injected: 2\u2029done",
    "Nul\x00and\x1b[31mescape\x85next",
    "<script>alert(1)</script> & \x1eaddress\x1f",
]


def _item(n: int, title: str, **kw: str | int) -> DigestItem:
    values: dict[str, str | int] = {
        "story_id": n,
        "title": title,
        "url": f"https://example.org/articles/{n}?a=1&b=2",
        "date": "24 Nov 2026",
        "iso_date": "2026-11-24T00:00:00+00:00",
        "source": "Oncology Feed",
        "summary": f"What story {n} says, in one or two sentences.",
    }
    values.update(kw)
    return DigestItem(**values)  # type: ignore[arg-type]


def _selection(settings: Settings, sections: tuple[Section, ...] | None = None) -> Selection:
    if sections is None:
        sections = (
            Section(
                "articles",
                "New articles",
                (
                    _item(1, "Neoadjuvant therapy & résumé of “results”"),
                    _item(2, "An undated article", date="", iso_date="", source="Targeted Oncology"),
                ),
            ),
            Section(
                "recaps",
                "Recaps",
                (
                    _item(
                        3,
                        "Recap: HER2-positive breast cancer",
                        date="16 Jul 2022",
                        iso_date="2022-07-16T00:00:00+00:00",
                        first_seen="first seen this week",
                        source="Site",
                        sources=3,
                    ),
                ),
            ),
            Section("tag:lung", "From the feeds: lung", (_item(4, "Lung <b>news</b>", summary=""),)),
        )
    return Selection(period=period_for("2026-W48", settings.digest), sections=sections)


def _digest(rendered: compose.Rendered) -> Digest:
    return Digest(
        id=7,
        period="2026-W48",
        status="pending",
        period_start=SENT,
        period_end=SENT,
        due_at=SENT,
        created_at=SENT,
        sent_at=None,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        note=None,
    )


def _recipient(address: str, subscriber_id: int = 42) -> compose.Recipient:
    token = f"{subscriber_id}.SiGnAtUrE-_x"
    return compose.Recipient(
        address=address,
        unsubscribe_url=f"https://news.example.org/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:digest@news.example.org?subject=unsubscribe%20{token}",
        message_id=f"<digest.2026-W48.7.{subscriber_id}@news.example.org>",
        preferences_url=f"https://news.example.org/preferences/{token}",
    )


def _parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _fill(doc: str, recipient: compose.Recipient, escape: bool) -> str:
    esc = html.escape if escape else str
    for slot in compose.BODY_SLOTS:
        doc = doc.replace(compose.SLOT.format(slot), esc(getattr(recipient, slot)))
    return doc


@pytest.mark.parametrize("part", ["html", "txt"])
def test_golden_digest(tmp_path: Path, part: str, update_golden: bool) -> None:
    settings = make_settings(tmp_path)
    rendered = compose.render_digest(_selection(settings), settings)
    got = _fill(rendered.html if part == "html" else rendered.text, _recipient("reader@example.org"), part == "html")
    expected = GOLDEN / "email" / f"digest.{part}"
    if update_golden:
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(got, encoding="utf-8")
    assert expected.exists(), f"no golden file {expected.name}: run pytest --update-golden and review it"
    assert got == expected.read_text(encoding="utf-8")


def test_the_html_is_an_email_layout(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    doc = compose.render_digest(_selection(settings), settings).html
    assert '<html lang="en">' in doc
    assert 'class="card" role="presentation" border="0" width="100%"' in doc  # fluid, up to its max-width
    assert "max-width: 600px" in doc
    assert "@media (prefers-color-scheme: dark)" in doc  # kept as a <style> block: media queries cannot be inlined
    assert 'class="preheader" style="' in doc  # CSS inlined into the elements
    assert doc.count("<style") == 1
    assert "4 new stories, Nov 23 to 29: Neoadjuvant therapy" in doc  # the preheader
    for tag in ("<h1", "<h2", "<h3"):
        assert tag in doc
    assert 'href="https://news.example.org/digests/2026-W48"' in doc  # view in browser
    assert 'role="presentation"' in doc
    assert 'href="https://example.org/articles/1?a=1&amp;b=2"' in doc
    assert "Lung &lt;b&gt;news&lt;/b&gt;" in doc


def test_one_message_per_recipient_by_substitution(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    rendered = compose.render_digest(_selection(settings), settings)
    template = compose.message_template(rendered, settings, SENT)
    for address in ("reader@example.org", "a=b&c+tag@xn--bcher-kva.example.org", "x" * 60 + "@example.com"):
        r = _recipient(address)
        raw = template.build(r)
        assert raw.isascii()
        lines = raw.split(b"\r\n")
        assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF everywhere, no bare LF
        assert max(len(line) for line in lines) <= 998
        msg = _parse(raw)
        assert set(msg.keys()) == HEADERS
        assert msg["To"] == address
        assert msg["Message-ID"] == r.message_id
        assert msg["From"] == "Oncology digest <digest@news.example.org>"
        assert msg["Subject"] == "Oncology digest: 4 new stories, Nov 23 to 29"
        assert msg["Date"] == "Mon, 30 Nov 2026 08:00:00 +0000"
        assert msg["List-Id"] == "Oncology news <digest.news.example.org>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Unsubscribe"] == f"<{r.unsubscribe_url}>, <{r.unsubscribe_mailto}>"
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",))
        page = msg.get_body(("html",))
        assert text is not None
        assert page is not None
        # The same documents as rendering them for this recipient: substitution changes nothing else.
        assert text.get_content().replace("\r\n", "\n") == _fill(rendered.text, r, False)
        assert page.get_content().replace("\r\n", "\n") == _fill(rendered.html, r, True)
        assert f'href="{html.escape(r.unsubscribe_url)}"' in page.get_content()


def test_messages_differ_only_where_the_recipient_does(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    template = compose.message_template(compose.render_digest(_selection(settings), settings), settings, SENT)
    one = template.build(_recipient("one@example.org", 1))
    two = template.build(_recipient("two@example.org", 2))
    strip = re.compile(rb"one@example\.org|two@example\.org|(?<=[/.%0-9])[12](?=\.SiGn)|\.7\.[12]@")
    assert strip.sub(b"", one) == strip.sub(b"", two)


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_a_story_title_never_adds_a_header(tmp_path: Path, title: str) -> None:
    settings = make_settings(tmp_path, digest={"subject": "Digest " + title.replace("{", "") + " {count}"})
    section = Section("articles", "New articles", (_item(1, title),))
    rendered = compose.render_digest(_selection(settings, (section,)), settings)
    raw = compose.message_template(rendered, settings, SENT).build(_recipient("reader@example.org"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert line[:1] in (b" ", b"\t") or line.split(b":", 1)[0].decode() in HEADERS, line
    msg = _parse(raw)
    assert set(msg.keys()) == HEADERS
    assert msg.defects == []
    subject = str(msg["Subject"])
    assert "\r" not in subject
    assert "\n" not in subject
    assert "Bcc" not in msg
    assert "X-Injected" not in msg
    assert msg["To"] == "reader@example.org"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a\r\nBcc: x@y", "a Bcc: x@y"),
        ("=?utf-8?q?a=0D=0AB?=", "= ?utf-8?q?a=0D=0AB?="),
        ("tab\tand\x00nul\x7fdel\u2028ls", "tab and nul del ls"),
        ("  spaced   out  ", "spaced out"),
        ("Café – ok", "Café – ok"),
    ],
)
def test_clean_header(raw: str, clean: str) -> None:
    assert compose.clean_header(raw) == clean


def test_message_id_is_stable_per_delivery(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    digest = _digest(compose.render_digest(_selection(settings), settings))
    first = compose.message_id(digest, 5, "news.example.org")
    assert first == compose.message_id(digest, 5, "news.example.org")
    assert first != compose.message_id(digest, 6, "news.example.org")
    assert re.fullmatch(r"<[^<>@\s]+@news\.example\.org>", first)


def test_confirm_message(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    url = "https://news.example.org/confirm/1.abc.SIGNATURE_signature_signature"
    msg = _parse(compose.confirm_message(settings, "reader@example.org", url, SENT))
    assert msg["To"] == "reader@example.org"
    assert msg["Subject"] == "Confirm your subscription to Oncology news"
    text, page = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None
    assert page is not None
    assert url in text.get_content()
    assert f'href="{url}"' in page.get_content()


def _email_message_template(rendered: compose.Rendered, settings: Settings) -> bytes:
    """The digest message as EmailMessage writes it, slots in place: what message_template used to build per edition."""
    from_header, from_addr = compose.sender(settings)
    msg = EmailMessage(policy=policy.SMTP)
    msg["MIME-Version"] = "1.0"
    msg["From"] = from_header
    msg["Subject"] = compose.clean_header(rendered.subject)
    msg["Date"] = "Mon, 30 Nov 2026 08:00:00 +0000"
    msg["List-Id"] = f"{compose.clean_header(settings.publish.title)} <digest.{from_addr.rpartition('@')[2]}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.make_alternative()
    for content, subtype in ((rendered.text, "plain"), (rendered.html, "html")):
        part = EmailMessage(policy=policy.SMTP)
        part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(compose._qp_payload(content))
        msg.attach(part)
    return msg.as_bytes()


def _unbounded(raw: bytes) -> bytes:
    return re.sub(rb"={15}[0-9]+==", b"BOUNDARY", raw)


SUBJECTS = [
    "Oncology digest: 4 new stories, Nov 23 to 29",
    "Onkologie-Übersicht: 4 neue Meldungen — Lungenkrebs, Brustkrebs und Hautkrebs, 23. bis 29. November 2026 " * 2,
    "x" * 200,
    "Digest =?utf-8?q?=0D=0ABcc:_x@evil.example?= 3",
]


@pytest.mark.no_database
@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_edition_template_is_what_email_message_writes(tmp_path: Path, subject: str) -> None:
    """Issue 18: the MIME skeleton is built once and each edition's subject and parts put in; the bytes are the ones
    EmailMessage writes for that edition (its random boundary aside)."""
    settings = make_settings(tmp_path)
    base = compose.render_digest(_selection(settings), settings)
    rendered = compose.Rendered(subject, base.html + "\nTrailing blank \n", base.text + "Ünïcode = 100%\t")
    template = compose.message_template(rendered, settings, SENT)
    body = [template.chunks[1]]
    for (name, _where), chunk in zip(template.slots[1:], template.chunks[2:], strict=True):
        body += [compose.SLOT.format(name).encode("ascii"), chunk]
    expected = _email_message_template(rendered, settings)
    head, _, rest = expected.partition(b"\r\n\r\n")
    assert _unbounded(template.chunks[0]) == _unbounded(head + b"\r\n")
    assert _unbounded(b"".join(body)) == _unbounded(b"\r\n" + rest)


@pytest.mark.no_database
def test_a_recipient_value_is_quoted_printable_as_body_encode_makes_it() -> None:
    """The shortcut for plain values (addresses, signed URLs) gives body_encode's bytes, at every length."""
    rnd = random.Random(18)
    alphabet = string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;%= \t<>\"é\u2028\n"
    values = ["", " ", "a ", "a", "=", "x" * 74, "x" * 75, "x" * 76, "x" * 149, "x" * 150, "x" * 151, "x" * 300]
    values += ["".join(rnd.choices(alphabet, k=rnd.randint(1, 260))) for _ in range(3000)]
    values += ["".join(rnd.choices(string.ascii_letters + "/:.-_", k=n)) for n in range(1, 400)]
    for value in values:
        assert compose._qp_value(value) == compose._qp(value).encode("ascii"), value


@pytest.mark.no_database
def test_clean_header_leaves_a_plain_value_and_cleans_any_other() -> None:
    """The shortcut for plain ASCII values gives what the full cleaning gives, for plain and hostile values alike."""

    def full(value: str) -> str:
        value = unicodedata.normalize("NFC", value)
        value = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]+", " ", value).replace("=?", "= ?")
        return re.sub(r"\s+", " ", value).strip()

    rnd = random.Random(18)
    alphabet = string.ascii_letters + "<>@.:/=?-_ " + "  \t\r\n\x7f\x85\u2028e\u0301"
    values = [*HOSTILE_TITLES, "", " ", "a", "a  b", " a", "a ", "=?utf-8?q?x?=", "<digest.2026-W48.1.2.3@localhost>"]
    values += ["".join(rnd.choices(alphabet, k=rnd.randint(0, 40))) for _ in range(5000)]
    for value in values:
        assert compose.clean_header(value) == full(value), repr(value)

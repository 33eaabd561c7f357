"""Email messages: a digest rendered once, each recipient's message by substitution. css-inline's home. Sends nothing.

:func:`render_digest` renders the HTML (CSS inlined) and text templates ONCE, with a slot mark where each
recipient's address and unsubscribe link go. :func:`message_template` turns that into the bytes of one
``multipart/alternative`` message (``EmailMessage``, SMTP policy, CRLF), cut at the slots; :meth:`MessageTemplate.build`
joins the pieces with one recipient's values, each encoded for where it lands (a header, quoted-printable HTML with
the value escaped, quoted-printable text). No per-recipient rendering, no per-recipient MIME building.

Slots are marked ``\\x1e<name>\\x1f``: characters every story text loses at ingest and again in
:mod:`newsletter.digest.select`, so no title can fake one. Every header value passes :func:`clean_header`: no CR, LF or
other control character, no encoded word (``=?utf-8?q?...?=``) to be decoded into a line break by a careless
reader; Python's own header folding decodes such words and re-emits them raw, which is how a title would add a header.
"""

from __future__ import annotations

import functools
import html
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.quoprimime import body_encode
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import quote

import css_inline

from ingest.core.config import Settings
from ingest.core.errors import ConfigError
from ingest.core.links import base_url, digest_url
from ingest.core.models import Digest
from ingest.core.text import collapse, counted, xml_safe
from newsletter.digest.select import DigestItem, Section, Selection, subject
from newsletter.render import render

__all__ = [
    "HTML_BUDGET",
    "MessageTemplate",
    "Recipient",
    "Rendered",
    "ShownSection",
    "archive_url",
    "clean_header",
    "confirm_message",
    "inline_css",
    "list_address",
    "message_id",
    "message_id_parts",
    "message_template",
    "postal_lines",
    "render_digest",
    "sender",
    "tagged",
]

SLOT = "\x1e{}\x1f"
_SLOT = re.compile("\x1e([a-z_]+)\x1f")
#: Slots the templates may use. Header slots are filled by :meth:`MessageTemplate.build` itself.
BODY_SLOTS = ("address", "unsubscribe_url", "preferences_url")
_QP_LINE = 75  # leaves room for the soft break '=' that joins a value on: RFC 2045 lines stay within 76
#: A value quoted-printable leaves as it is but for soft line breaks: printable ASCII but '=', not ending in a blank.
_QP_PLAIN = re.compile(r"[\t !-<>-~]*[!-<>-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]+")
_SPACES = re.compile(r"\s+")
#: Printable ASCII words, one space apart: a header value :func:`clean_header` leaves as it is.
_PLAIN_HEADER = re.compile(r"[!-~]+(?: [!-~]+)*")
_MESSAGE_ID = re.compile(r"<digest\.[0-9W-]{1,16}\.([1-9][0-9]{0,9})\.([1-9][0-9]{0,9})\.[0-9]{1,12}@[^<>@\s]+>")
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_link_tags=False)
#: The most the digest's HTML part may weigh as sent (quoted-printable), before the recipient's values go in (an
#: address and a link: well under 1 KB). Gmail clips a message past about 102 KB and hides the rest behind a link:
#: the footer and its unsubscribe link first.
HTML_BUDGET = 88_000


@dataclass(frozen=True, slots=True)
class Rendered:
    """A digest rendered once: what the digest row stores. ``html`` and ``text`` still hold the slot marks."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class ShownSection:
    """A section as the email shows it: its first stories, and where the rest are (the digest's web page)."""

    title: str
    anchor: str
    items: tuple[DigestItem, ...]
    total: int
    more_url: str

    @property
    def more(self) -> int:
        return self.total - len(self.items)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One subscriber's values. ``address`` is the envelope recipient too: it comes from the database."""

    address: str
    unsubscribe_url: str
    unsubscribe_mailto: str
    message_id: str
    preferences_url: str  # the signed "manage preferences" page (topics, unsubscribe)


def clean_header(value: str) -> str:
    """A header value that cannot start another header or smuggle one through an encoded word."""
    if _PLAIN_HEADER.fullmatch(value) and "=?" not in value:
        return value  # the common case, several times per recipient: nothing below would change it
    value = unicodedata.normalize("NFC", value)
    value = _CONTROL.sub(" ", value)
    value = value.replace("=?", "= ?")  # RFC 2047 encoded words start '=?': this can no longer be one
    return _SPACES.sub(" ", value).strip()


def sender(settings: Settings) -> tuple[str, str]:
    """(header value, envelope address) of ``[mail] from_address``."""
    return _sender(settings.mail.from_address)


@functools.lru_cache(maxsize=16)
def _sender(from_address: str) -> tuple[str, str]:
    # Parsed once per address, not once per recipient (parseaddr was a third of building 10,000 messages).
    name, addr = parseaddr(clean_header(from_address))
    if "@" not in addr or any(c.isspace() for c in addr):
        raise ConfigError(
            f"[mail] from_address: expected an address such as 'Digest <digest@example.org>', got {from_address!r}"
        )
    local, _, domain = addr.rpartition("@")
    return str(Address(display_name=name, username=local, domain=domain)), addr


def list_address(settings: Settings) -> str:
    return sender(settings)[1]


def tagged(address: str, tag: str) -> str:
    """``local+tag@domain`` for ``local@domain``: mail to it reaches ``local@domain`` (the ``+`` sub-address of Postfix,
    Exim, Gmail, Fastmail and most others) and says ``tag`` back to us."""
    local, _, domain = address.rpartition("@")
    return f"{local}+{tag}@{domain}"


def archive_url(settings: Settings, period: str) -> str:
    return digest_url(settings.publish, period)


def message_id(digest: Digest, subscriber_id: int, domain: str) -> str:
    """The same for every try of one delivery: a copy sent twice after a crash is one message to most mail stores."""
    stamp = int(digest.created_at.timestamp())
    return f"<digest.{digest.period}.{digest.id}.{subscriber_id}.{stamp}@{domain}>"


def message_id_parts(value: str) -> tuple[int, int] | None:
    """(digest id, subscriber id) of a Message-ID :func:`message_id` made; None for any other."""
    m = _MESSAGE_ID.fullmatch(value.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def inline_css(document: str) -> str:
    """Inline the ``<style>`` rules into ``style`` attributes; a ``<style data-css-inline="keep">`` block stays (media
    queries such as dark mode cannot be inlined). Nothing is fetched."""
    return _INLINER.inline(document)


def render_digest(
    selection: Selection, settings: Settings, *, elsewhere: int = 0, topic_names: Mapping[str, str] | None = None
) -> Rendered:
    """The digest's HTML and text, rendered once, with slot marks for the recipient's values. ``elsewhere``: the
    period's stories left out (an edition for some topics): counted in a line linking the digest's web page.
    ``topic_names``: the taxonomy's names by slug, shown in each story's meta line (this layer does not read it).

    Each section shows its first ``[digest] max_per_section`` stories and counts the rest in a line linking the
    digest's web page (which shows them all); when even that makes the HTML part bigger than :data:`HTML_BUDGET`
    (many sections), fewer are shown per section, at least one, until it fits.
    """
    period = selection.period
    title = settings.publish.title
    first = next((s.items[0].title for s in selection.sections if s.items), "")
    count = selection.count
    preheader = f"{counted(count, 'new story', 'new stories')}, {period.label}"
    if first:
        preheader += f": {first}"
    subject_line = clean_header(subject(settings.digest, count, period))
    archive = archive_url(settings, period.key)
    context = {
        "lang": "en",
        "title": title,
        "subject": subject_line,
        "preheader": preheader,
        "period": period.key,
        "period_label": period.label,
        "count": count,
        "elsewhere": elsewhere,
        "topic_names": dict(topic_names or {}),
        "archive_url": archive,
        "home_url": base_url(settings.publish),
        "postal_lines": postal_lines(settings),
        "address": SLOT.format("address"),
        "unsubscribe_url": SLOT.format("unsubscribe_url"),
        "preferences_url": SLOT.format("preferences_url"),
    }
    cap = settings.digest.max_per_section
    while True:
        sections = _shown(selection.sections, cap, archive)
        page = inline_css(render("email/digest.html", sections=sections, **context))
        size = len(_qp(page))
        if size <= HTML_BUDGET or cap == 1:
            break
        cap = max(1, min(cap - 1, cap * HTML_BUDGET // size))
    return Rendered(subject=subject_line, html=page, text=render("email/digest.txt", sections=sections, **context))


def postal_lines(settings: Settings) -> tuple[str, ...]:
    """``[mail] postal_address``, one line each, blank lines dropped."""
    lines = (collapse(xml_safe(line)) for line in settings.mail.postal_address.splitlines())
    return tuple(line for line in lines if line)


def _shown(sections: Sequence[Section], cap: int, archive: str) -> tuple[ShownSection, ...]:
    return tuple(
        ShownSection(
            title=s.title,
            anchor=s.anchor,
            items=s.items[:cap],
            total=len(s.items),
            more_url=f"{archive}#{s.anchor}",
        )
        for s in sections
    )


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """A message cut at its slots: ``chunks[0] + value(slots[0]) + chunks[1] + ... + chunks[-1]``."""

    chunks: tuple[bytes, ...]
    slots: tuple[tuple[str, str], ...]  # (name, where): where is header, html or text

    def build(self, recipient: Recipient) -> bytes:
        values = _values(recipient)
        parts = [self.chunks[0]]
        for slot, chunk in zip(self.slots, self.chunks[1:], strict=True):
            parts.append(values[slot])
            parts.append(chunk)
        return b"".join(parts)


def _values(r: Recipient) -> Mapping[tuple[str, str], bytes]:
    url = _header_url(r.unsubscribe_url)
    mailto = _header_url(r.unsubscribe_mailto)
    address = _ascii_header(r.address)
    headers = (
        f"To: {address}\r\nMessage-ID: {_ascii_header(r.message_id)}\r\nList-Unsubscribe: <{url}>,\r\n <{mailto}>\r\n"
    ).encode("ascii")
    values: dict[tuple[str, str], bytes] = {("headers", "header"): headers}
    for name, value in (
        ("address", r.address),
        ("unsubscribe_url", r.unsubscribe_url),
        ("preferences_url", r.preferences_url),
    ):
        text = _qp_value(value)
        escaped = html.escape(value)
        values[name, "text"] = text
        values[name, "html"] = text if escaped == value else _qp_value(escaped)
    return values


def message_template(rendered: Rendered, settings: Settings, date: datetime) -> MessageTemplate:
    """The digest's message for everyone, cut where each recipient's values go (their headers included)."""
    from_header, from_addr = sender(settings)
    domain = from_addr.rpartition("@")[2]
    list_id = f"{clean_header(settings.publish.title)} <digest.{domain}>"
    # The MIME structure is the same for every edition of a digest: built once, each edition's subject and parts put
    # in its place (what EmailMessage would write for them, boundary aside: one random boundary per skeleton).
    skeleton = _skeleton(from_header, list_id, date)
    subject_line = policy.SMTP.fold_binary(
        "Subject", policy.SMTP.header_store_parse("Subject", clean_header(rendered.subject))[1]
    )
    raw = b"".join(
        (
            skeleton.before_subject,
            subject_line,
            skeleton.before_text,
            _qp_payload(rendered.text).encode("ascii"),
            skeleton.before_html,
            _qp_payload(rendered.html).encode("ascii"),
            skeleton.after_html,
        )
    )
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep
    rest = b"\r\n" + body
    html_start = rest.index(b"Content-Type: text/html")  # the text part comes first, the HTML part second
    pieces = re.split(rb"\x1e([a-z_]+)\x1f", rest)
    chunks = [head + b"\r\n", pieces[0]]
    slots: list[tuple[str, str]] = [("headers", "header")]
    pos = len(pieces[0])
    for i in range(1, len(pieces), 2):
        name = pieces[i].decode("ascii")
        if name not in BODY_SLOTS:
            raise ValueError(f"unknown slot {name!r} in a template")
        slots.append((name, "html" if pos > html_start else "text"))
        chunks.append(pieces[i + 1])
        pos += len(pieces[i]) + 2 + len(pieces[i + 1])
    return MessageTemplate(chunks=tuple(chunks), slots=tuple(slots))


@dataclass(frozen=True, slots=True)
class _Skeleton:
    """A digest message's bytes around its subject header and its two parts' payloads."""

    before_subject: bytes
    before_text: bytes
    before_html: bytes
    after_html: bytes


@functools.lru_cache(maxsize=8)
def _skeleton(from_header: str, list_id: str, date: datetime) -> _Skeleton:
    marks = {key: f"mark-{key}-{secrets.token_hex(16)}" for key in ("subject", "text", "html")}
    msg = EmailMessage(policy=policy.SMTP)
    msg["MIME-Version"] = "1.0"
    msg["From"] = from_header
    msg["Subject"] = marks["subject"]
    msg["Date"] = format_datetime(date)
    msg["List-Id"] = list_id
    # RFC 8058: with List-Unsubscribe's https URL, tells the mailbox provider it may POST there for one click.
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.make_alternative()
    msg.attach(_qp_part(marks["text"] + "\r\n", "plain"))
    msg.attach(_qp_part(marks["html"] + "\r\n", "html"))
    raw = msg.as_bytes()
    cuts = (f"Subject: {marks['subject']}\r\n", marks["text"] + "\r\n", marks["html"] + "\r\n")
    pieces: list[bytes] = []
    for cut in cuts:
        before, sep, raw = raw.partition(cut.encode("ascii"))
        assert sep, cut
        pieces.append(before)
    return _Skeleton(pieces[0], pieces[1], pieces[2], raw)


def _qp_part(payload: str, subtype: str) -> EmailMessage:
    part = EmailMessage(policy=policy.SMTP)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(payload)
    return part


def _qp_payload(content: str) -> str:
    """A text part's payload, quoted-printable, with each slot alone between soft line breaks so it can be replaced."""
    pieces = _SLOT.split(content.replace("\r\n", "\n"))
    out: list[str] = []
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(f"=\r\n{SLOT.format(piece)}=\r\n")
        else:
            out.append(_qp(piece))
    payload = "".join(out)
    return payload if payload.endswith("\r\n") else payload + "=\r\n"


def _qp(text: str) -> str:
    # quoprimime works on one byte per character: hand it the UTF-8 bytes as latin-1, as email.charset does.
    return body_encode(text.encode("utf-8").decode("latin-1"), maxlinelen=_QP_LINE, eol="\r\n")


def _qp_value(value: str) -> bytes:
    if _QP_PLAIN.fullmatch(value):
        # What body_encode makes of such a value (an address, a signed URL), without its per-character work: cut
        # into lines of _QP_LINE - 1 characters and a soft break, the last up to _QP_LINE.
        step = _QP_LINE - 1
        lines = [value[i : i + step] + "=" for i in range(0, len(value) - _QP_LINE, step)]
        lines.append(value[len(lines) * step :])
        return "\r\n".join(lines).encode("ascii")
    return _qp(value).encode("ascii")


def _ascii_header(value: str) -> str:
    cleaned = clean_header(value)
    if not cleaned.isascii():
        raise ValueError(f"header value must be ASCII: {cleaned!r}")
    return cleaned


def _header_url(url: str) -> str:
    """A URL fit for ``<...>`` in a header: ASCII, no space, no angle bracket."""
    return quote(clean_header(url), safe=":/?#[]@!$&'()*+,;=%-._~")


def confirm_message(settings: Settings, address: str, confirm_url: str, date: datetime) -> bytes:
    """The double opt-in mail: one message, built directly (there is only one recipient)."""
    from_header, from_addr = sender(settings)
    context = {
        "lang": "en",
        "title": settings.publish.title,
        "address": address,
        "confirm_url": confirm_url,
        "home_url": base_url(settings.publish),
    }
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = from_header
    msg["To"] = _ascii_header(address)
    msg["Subject"] = clean_header(f"Confirm your subscription to {settings.publish.title}")
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = make_msgid(domain=from_addr.rpartition("@")[2])
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg.set_content(render("email/confirm.txt", **context), cte="quoted-printable")
    msg.add_alternative(inline_css(render("email/confirm.html", **context)), subtype="html", cte="quoted-printable")
    return msg.as_bytes()

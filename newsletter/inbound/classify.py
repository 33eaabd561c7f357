"""What one message that came back says: a delivery report (RFC 3464), a complaint (RFC 5965), a mail to the
unsubscribe address, or something else. Pure: bytes in, a :class:`Feedback` out; nothing is matched or changed here.

Only what names one of our deliveries can ever count: a report is matched later by the tag of the address it was
sent to (``bounces+TAG@``, the envelope sender of our message: VERP), never by an address it mentions, so a report
about someone else's message (listmonk #1334: unrelated mail counted as bounces) is "other". Reports read:

- ``multipart/report; report-type=delivery-status`` (Postfix, Exim 4.8x+, Gmail, Exchange): each recipient's
  ``Action`` and ``Status``: failed with 5.x.x is a hard bounce, failed with 4.x.x (the remote server gave up while
  still saying "later") a soft one, ``delayed`` a warning that counts nothing;
- older Exim's plain text report: ``X-Failed-Recipients``, hard when it says "This is a permanent error";
- ``multipart/report; report-type=feedback-report`` (ARF): a complaint. Its tag may be where the report was sent,
  the report's ``Original-Mail-From``, or the returned message's ``Return-Path`` and ``List-Unsubscribe``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses

from ingest.core.models import BounceKind, Feedback

__all__ = ["classify"]

#: Headers that say whom a message was delivered to, most reliable first (set by the receiving server), then To.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_SPACE = re.compile(r"\s+")
_MAX_DETAIL = 300


def classify(data: bytes, *, bounce_address: str, unsubscribe_address: str, unsubscribe_prefix: str) -> Feedback:
    """What ``data`` (one whole message) says. ``bounce_address`` and ``unsubscribe_address`` are ``[mail]
    bounce_address`` and ``unsubscribe_address`` (their tags are looked for); ``unsubscribe_prefix`` is the start of
    our unsubscribe links (``https://.../unsubscribe/``), whose tokens a returned original may carry."""
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    to_us = _addresses(msg, _RECIPIENT_HEADERS)
    bounce_tags = _tags(to_us, bounce_address)
    unsubscribe_tags = _tags(to_us, unsubscribe_address)
    ctype = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "", header="content-type") or "").lower()
    if ctype == "multipart/report" and report_type == "feedback-report":
        return _complaint(msg, bounce_tags, bounce_address, unsubscribe_address, unsubscribe_prefix)
    if ctype == "multipart/report" and report_type == "delivery-status":
        return _delivery_report(msg, bounce_tags)
    if msg.get("X-Failed-Recipients") and bounce_tags:
        return _plain_bounce(msg, bounce_tags)
    if unsubscribe_tags and not _automatic(msg):
        return Feedback(
            "unsubscribe", f"mail to the unsubscribe address from {_from(msg)}", unsubscribe_tags=unsubscribe_tags
        )
    return Feedback("other", _summary(msg))


def _delivery_report(msg: EmailMessage, tags: tuple[str, ...]) -> Feedback:
    failed: list[tuple[BounceKind, str]] = []
    delayed: list[str] = []
    for fields in _recipient_fields(msg):
        action = fields.get("action", "").strip().lower()
        status = _STATUS.search(fields.get("status", ""))
        words = _detail(fields)
        if action == "failed":
            failed.append(("hard" if status is None or status.group(1) == "5" else "soft", words))
        elif action == "delayed":
            delayed.append(words)
    if not tags:  # a report about a message that is not one of ours, or sent to the wrong address: never counted
        return Feedback("other", "a delivery report naming none of our deliveries: " + _summary(msg))
    if failed:
        kind: BounceKind = "hard" if any(k == "hard" for k, _ in failed) else "soft"
        return Feedback("bounce", "; ".join(w for _, w in failed), bounce=kind, bounce_tags=tags)
    if delayed:
        return Feedback("delayed", "; ".join(delayed), bounce_tags=tags)
    return Feedback("other", "a delivery report of no failure: " + _summary(msg), bounce_tags=tags)


def _recipient_fields(msg: EmailMessage) -> Iterable[dict[str, str]]:
    """Each per-recipient block of the report's ``message/delivery-status`` part, as lower-cased field names."""
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # the first block is about the message, the rest one per recipient
            if isinstance(block, Message):
                yield {k.lower(): _SPACE.sub(" ", str(v)).strip() for k, v in block.items()}


def _detail(fields: dict[str, str]) -> str:
    recipient = fields.get("final-recipient", "").partition(";")[2].strip() or "?"
    words = fields.get("diagnostic-code", "").partition(";")[2].strip() or fields.get("status", "")
    return _cut(f"{recipient}: {fields.get('status', '?')} {words}".strip())


def _plain_bounce(msg: EmailMessage, tags: tuple[str, ...]) -> Feedback:
    """Exim's report before it spoke RFC 3464: the failed addresses in a header, the verdict in words."""
    body = msg.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    hard = "permanent error" in _SPACE.sub(" ", text).lower()
    status = _STATUS.search(text)
    detail = f"{msg.get('X-Failed-Recipients', '')}: {status.group(0) if status else ''} {_summary(msg)}"
    return Feedback("bounce", _cut(detail), bounce="hard" if hard else "soft", bounce_tags=tags)


def _complaint(
    msg: EmailMessage, tags: tuple[str, ...], bounce_address: str, unsubscribe_address: str, prefix: str
) -> Feedback:
    """An ARF report: its tag where it was sent, else in the report's fields and the returned message's headers."""
    found = list(tags)
    unsubscribe_tags: list[str] = []
    tokens: list[str] = []
    feedback_type = ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/feedback-report":
            fields = _fields(part)
            feedback_type = fields.get("feedback-type", "")
            found += _tags(_plain(fields.get("original-mail-from", "")), bounce_address)
        elif ctype in ("message/rfc822", "text/rfc822-headers"):
            original = _returned(part)
            if original is None:
                continue
            found += _tags(_addresses(original, ("Return-Path",)), bounce_address)
            listed = str(original.get("List-Unsubscribe", ""))
            unsubscribe_tags += _tags(_plain(*re.findall(r"<mailto:([^>?]+)", listed)), unsubscribe_address)
            if prefix:
                tokens += [t for t in re.findall(re.escape(prefix) + r"([^>\s/?#]+)", listed)]
    detail = f"{feedback_type or 'complaint'} report from {_from(msg)}"
    return Feedback(
        "complaint",
        detail,
        bounce_tags=tuple(dict.fromkeys(found)),
        unsubscribe_tags=tuple(dict.fromkeys(unsubscribe_tags)),
        unsubscribe_tokens=tuple(dict.fromkeys(tokens)),
    )


def _fields(part: Message) -> dict[str, str]:
    """A ``message/feedback-report`` part's fields (the email package may read it as a message or as text)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return {k.lower(): str(v).strip() for k, v in payload[0].items()}
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    found = message_from_bytes(text.encode("utf-8", "replace"), policy=policy.default)
    return {k.lower(): str(v).strip() for k, v in found.items()}


def _returned(part: Message) -> Message | None:
    """The returned original (or its headers) inside a report."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else None
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return None
    return message_from_bytes(raw, policy=policy.default)


def _addresses(msg: Message, headers: Iterable[str]) -> list[str]:
    values = [str(v) for h in headers for v in (msg.get_all(h) or [])]
    return _plain(*values)


def _plain(*values: str) -> list[str]:
    return [addr.strip().lower() for _, addr in getaddresses(list(values)) if "@" in addr]


def _tags(addresses: Iterable[str], base: str) -> tuple[str, ...]:
    """The TAG of each ``local+TAG@domain`` for ``base`` = ``local@domain``."""
    if not base:
        return ()
    local, _, domain = base.lower().rpartition("@")
    found = []
    for address in addresses:
        mine, _, at = address.rpartition("@")
        head, plus, tag = mine.partition("+")
        if plus and at == domain and head == local and tag:
            found.append(tag)
    return tuple(dict.fromkeys(found))


def _automatic(msg: EmailMessage) -> bool:
    """RFC 3834: an auto-reply (a vacation notice) is nobody asking for anything."""
    return str(msg.get("Auto-Submitted", "no")).strip().lower() != "no"


def _from(msg: EmailMessage) -> str:
    return _cut(str(msg.get("From", "?")))


def _summary(msg: EmailMessage) -> str:
    return _cut(f"from {_from(msg)}: {msg.get('Subject', '(no subject)')}")


def _cut(text: str) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"

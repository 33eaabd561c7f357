"""What a relay's webhook says, as :class:`Feedback`: Amazon SES (through SNS), Postmark, SendGrid. Pure: decoded
JSON in, records out; the route has authenticated the sender, nothing is matched or changed here.

Each event names the recipient it is about (``recipients``) and, when the relay passes it on, our Message-ID
(``message_ids``: SES's ``mail.commonHeaders.messageId``, SendGrid's ``smtp-id``). Mapping:

- SES: ``Bounce`` with ``bounceType`` Permanent -> hard, Transient or Undetermined -> soft; ``Complaint`` ->
  complaint (unless its ``complaintFeedbackType`` is ``not-spam``); anything else (Delivery, Send, Open...) -> other.
- Postmark: ``HardBounce``, ``BadEmailAddress`` -> hard; ``SoftBounce``, ``Transient``, ``DnsError`` -> soft;
  ``SpamComplaint`` -> complaint; ``Unsubscribe`` -> unsubscribe; the rest (AutoResponder, Blocked...) -> other.
- SendGrid: ``bounce`` of type ``bounce`` -> hard, of type ``blocked`` -> soft; ``spamreport`` -> complaint;
  ``unsubscribe`` and ``group_unsubscribe`` -> unsubscribe; ``deferred`` -> delayed; the rest -> other.

Malformed input raises :class:`ValueError` (the route answers 400).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ingest.core.models import BounceKind, Feedback, FeedbackKind

__all__ = ["postmark_feedback", "sendgrid_feedback", "ses_feedback", "sns_string_to_sign"]

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_POSTMARK: dict[str, tuple[FeedbackKind, BounceKind | None]] = {
    "HardBounce": ("bounce", "hard"),
    "BadEmailAddress": ("bounce", "hard"),
    "SoftBounce": ("bounce", "soft"),
    "Transient": ("bounce", "soft"),
    "DnsError": ("bounce", "soft"),
    "SpamComplaint": ("complaint", None),
    "Unsubscribe": ("unsubscribe", None),
}


def sns_string_to_sign(envelope: Mapping[str, Any]) -> bytes:
    """The bytes an SNS message's signature covers: its fields in a fixed order, each as ``name\\nvalue\\n``
    (Subject only when present)."""
    kind = envelope.get("Type")
    if kind not in _SNS_FIELDS:
        raise ValueError(f"not an SNS message type: {kind!r}")
    out = []
    for name in _SNS_FIELDS[kind]:
        value = envelope.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise ValueError(f"SNS message without {name}")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def ses_feedback(message: Mapping[str, Any]) -> list[Feedback]:
    """An SES notification (the JSON inside an SNS Notification's Message)."""
    kind = message.get("notificationType") or message.get("eventType")
    mail = _mapping(message.get("mail"))
    ids = _ids(_mapping(mail.get("commonHeaders")).get("messageId"))
    if kind == "Bounce":
        bounce = _mapping(message.get("bounce"))
        hard = bounce.get("bounceType") == "Permanent"
        found = []
        for item in _list(bounce.get("bouncedRecipients")):
            r = _mapping(item)
            detail = f"SES {bounce.get('bounceType')}/{bounce.get('bounceSubType')}: {r.get('status', '')} "
            detail += str(r.get("diagnosticCode", ""))
            found.append(_event("bounce", detail.strip(), r.get("emailAddress"), ids, "hard" if hard else "soft"))
        return found
    if kind == "Complaint":
        complaint = _mapping(message.get("complaint"))
        if complaint.get("complaintFeedbackType") == "not-spam":
            return [Feedback("other", "SES complaint of type not-spam")]
        what = f"SES complaint ({complaint.get('complaintFeedbackType') or 'abuse'})"
        return [
            _event("complaint", what, _mapping(r).get("emailAddress"), ids)
            for r in _list(complaint.get("complainedRecipients"))
        ]
    return [Feedback("other", f"SES {kind or 'event'}")]


def postmark_feedback(payload: Mapping[str, Any]) -> list[Feedback]:
    """One Postmark bounce or spam complaint webhook."""
    record = payload.get("RecordType")
    kind = payload.get("Type")
    if record not in ("Bounce", "SpamComplaint") or not isinstance(kind, str):
        return [Feedback("other", f"Postmark {record or 'event'}")]
    what, bounce = _POSTMARK.get(kind, ("other", None))
    detail = f"Postmark {kind}: {payload.get('Description', '')} {payload.get('Details', '')}".strip()
    if what == "other":
        return [Feedback("other", detail)]
    return [_event(what, detail, payload.get("Email"), (), bounce)]


def sendgrid_feedback(events: Sequence[Any]) -> list[Feedback]:
    """A SendGrid Event Webhook batch (a JSON list of events)."""
    found = []
    for item in events:
        e = _mapping(item)
        event, email = e.get("event"), e.get("email")
        ids = _ids(e.get("smtp-id"))
        detail = f"SendGrid {event}: {e.get('status', '')} {e.get('reason', '')}".strip()
        if event == "bounce":
            found.append(_event("bounce", detail, email, ids, "soft" if e.get("type") == "blocked" else "hard"))
        elif event == "spamreport":
            found.append(_event("complaint", detail, email, ids))
        elif event in ("unsubscribe", "group_unsubscribe"):
            found.append(_event("unsubscribe", detail, email, ids))
        elif event == "deferred":
            found.append(_event("delayed", detail, email, ids))
        else:
            found.append(Feedback("other", detail))
    return found


def _event(
    kind: FeedbackKind, detail: str, email: object, ids: tuple[str, ...], bounce: BounceKind | None = None
) -> Feedback:
    if not isinstance(email, str) or "@" not in email:
        raise ValueError(f"an event without a recipient address: {detail}")
    return Feedback(kind, detail[:300], bounce=bounce, message_ids=ids, recipients=(email.strip(),))


def _ids(value: object) -> tuple[str, ...]:
    return (value.strip(),) if isinstance(value, str) and value.strip() else ()


def _mapping(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list, got {type(value).__name__}")
    return value

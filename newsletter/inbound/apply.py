"""Acting on what comes back: a :class:`Feedback` matched to its delivery or subscriber by a tag we signed, then a
bounce counted, a complaint suppressing the address, an unsubscribe done; and one pass over the ``[inbound]`` mailbox.
No SQL and no mail protocol here.

Matching never trusts an address a message mentions: a delivery report counts only through the signed tag of the
address it was sent to (``bounces+TAG@``: the envelope sender of exactly one delivery), an unsubscribe mail through
the tag of ``unsubscribe+TAG@`` (signed over the subscriber's id and address), a complaint through either or through
the signed unsubscribe link of the message it returns. A relay's webhook event, whose sender the route has
authenticated, may also name the recipient (``trusted``): the recipient's latest delivery is the one it is about.

A hard or soft bounce reported after the server took the message turns that delivery ``failed`` and counts against
the subscriber as the streak of such bounces up to it (:meth:`Store.record_late_bounce`), so a relay that accepts
every message and reports later still gets a dead address suppressed after ``[mail] bounce_limit`` digests; a report
read twice counts once. A complaint makes the subscriber ``complained``: never mailed again, not even a
confirmation from the subscribe form.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from ingest.core.config import Settings
from ingest.core.errors import AddressError
from ingest.core.models import BounceLimits, Delivery, Feedback, Subscriber
from ingest.store import Store
from newsletter.digest import compose
from newsletter.inbound.classify import classify
from newsletter.inbound.mailboxes import open_mailbox
from newsletter.subscribers.addresses import normalize
from newsletter.subscribers.tokens import Tokens, signing_key
from newsletter.subscribers.tokens import subscriber_id as claimed_id

__all__ = ["Applied", "InboundReport", "apply", "read_inbound"]

log = logging.getLogger("newsletter.inbound")


@dataclass(frozen=True, slots=True)
class Applied:
    """What one message or event led to."""

    feedback: Feedback
    outcome: str  # "hard bounce", "soft bounce", "counted already", "delayed", "complained", "unsubscribed", ...
    subscriber: str | None = None  # whom it was about, when matched
    why: str = ""  # why it was left alone

    @property
    def handled(self) -> bool:
        """False: left alone (nothing of ours, or a tag we never signed): a person may want to read it."""
        return self.outcome != "left alone"

    @property
    def line(self) -> str:
        who = f" {self.subscriber}" if self.subscriber else ""
        why = f" ({self.why})" if self.why else ""
        return f"{self.outcome}{who}{why}: {self.feedback.detail}"


@dataclass(frozen=True, slots=True)
class InboundReport:
    mailbox: str
    applied: tuple[Applied, ...]

    def counts(self) -> Counter[str]:
        return Counter(a.outcome for a in self.applied)


def apply(
    store: Store, settings: Settings, tokens: Tokens, feedback: Feedback, now: datetime, *, trusted: bool = False
) -> Applied:
    """Match ``feedback`` and act on it (see the module doc)."""
    if feedback.kind == "other":
        return Applied(feedback, "left alone")
    if feedback.kind == "unsubscribe":
        found = _by_unsubscribe_tag(store, tokens, feedback)
        if found is None and trusted:
            found = _by_recipient(store, feedback)
        if found is None:
            return Applied(feedback, "left alone", why="no tag of ours")
        return Applied(feedback, _unsubscribe(store, found, now), found.email)
    delivery = _delivery(store, tokens, feedback, trusted=trusted)
    if feedback.kind == "complaint":
        who = _subscriber(store, delivery) or _by_unsubscribe_tag(store, tokens, feedback)
        who = who or _by_unsubscribe_token(store, tokens, feedback)
        if who is None and trusted:
            who = _by_recipient(store, feedback)
        if who is None:
            return Applied(feedback, "left alone", why="no tag of ours")
        if who.status != "complained":
            store.set_subscriber_status(who.id, "complained", now)
        log.warning("complaint about our mail from %s: never mailed again", who.email)
        return Applied(feedback, "complained", who.email)
    if delivery is None:
        return Applied(feedback, "left alone", why="no delivery of ours")
    if feedback.kind == "delayed":
        return Applied(feedback, "delayed (still being tried)", delivery.email)
    assert feedback.bounce is not None
    limits = BounceLimits(hard=settings.mail.bounce_limit, soft=settings.mail.soft_bounce_limit)
    after = store.record_late_bounce(delivery.id, feedback.bounce, f"bounced: {feedback.detail}", limits=limits)
    if after is None:
        return Applied(feedback, "counted already", delivery.email)
    suffix = f" (now {after.status})" if after.status == "bounced" else ""
    return Applied(feedback, f"{feedback.bounce} bounce{suffix}", delivery.email)


def read_inbound(store: Store, settings: Settings, now: datetime) -> InboundReport:
    """Read the ``[inbound]`` mailbox's new messages once each, and act on each. Raises :class:`MailboxError` when
    the mailbox cannot be read (what was read before that is kept)."""
    tokens = Tokens(signing_key(store, settings))
    prefix = f"{settings.publish.base_url.rstrip('/')}/unsubscribe/"
    applied: list[Applied] = []
    box = open_mailbox(settings, store)
    try:
        for message in box.new():
            try:
                feedback = classify(
                    message.data,
                    bounce_address=settings.mail.bounce_address,
                    unsubscribe_address=settings.mail.unsubscribe_address,
                    unsubscribe_prefix=prefix,
                )
            except Exception:  # one message our parser chokes on must not block the mailbox for ever
                log.exception("%s: message %s could not be read; left alone", box.name, message.key)
                feedback = Feedback("other", f"message {message.key} could not be read")
            result = apply(store, settings, tokens, feedback, now)
            box.done(message, handled=result.handled)
            log.info("%s: %s", box.name, result.line)
            applied.append(result)
    finally:
        box.close()
    return InboundReport(box.name, tuple(applied))


def _delivery(store: Store, tokens: Tokens, feedback: Feedback, *, trusted: bool) -> Delivery | None:
    for tag in feedback.bounce_tags:
        ident = tokens.check_bounce_tag(tag)
        found = store.delivery(ident) if ident is not None else None
        if found is not None:
            return found
    if not trusted:
        return None
    who = _by_recipient(store, feedback)
    if who is None:
        return None
    for message_id in feedback.message_ids:  # the very message the event is about, when the relay names it
        parts = compose.message_id_parts(message_id)
        found = store.delivery_of(*parts) if parts is not None else None
        if found is not None and found.subscriber_id == who.id and found.message_id == message_id:
            return found
    return store.latest_delivery(who.id)


def _subscriber(store: Store, delivery: Delivery | None) -> Subscriber | None:
    return store.subscriber_by_id(delivery.subscriber_id) if delivery is not None else None


def _by_unsubscribe_tag(store: Store, tokens: Tokens, feedback: Feedback) -> Subscriber | None:
    return _by_signed(store, feedback.unsubscribe_tags, tokens.check_unsubscribe_tag)


def _by_unsubscribe_token(store: Store, tokens: Tokens, feedback: Feedback) -> Subscriber | None:
    return _by_signed(store, feedback.unsubscribe_tokens, tokens.check_unsubscribe)


def _by_signed(store: Store, values: Iterable[str], check: Callable[[str, str], int | None]) -> Subscriber | None:
    """The subscriber the first of ``values`` that ``check`` finds signed for them names (never one it merely
    claims)."""
    for value in values:
        ident = claimed_id(value)
        found = store.subscriber_by_id(ident) if ident is not None else None
        if found is not None and check(value, found.email) == found.id:
            return found
    return None


def _by_recipient(store: Store, feedback: Feedback) -> Subscriber | None:
    for address in feedback.recipients:
        try:
            found = store.subscriber_by_email(normalize(address))
        except AddressError:
            continue
        if found is not None:
            return found
    return None


def _unsubscribe(store: Store, found: Subscriber, now: datetime) -> str:
    if found.status in ("unsubscribed", "complained"):
        return f"unsubscribed already ({found.status})"
    store.set_subscriber_status(found.id, "unsubscribed", now)
    return "unsubscribed"

"""The delivery loop: a digest sent to each of its deliveries exactly once, through any transport. No SMTP here.

Exactly once: every delivery row is claimed (status ``sending`` plus a lease) while the message before it goes out,
and marked ``sent`` in the same transaction that claims the one after it, before that one can be accepted, so at any
moment a process has at most ONE message on the wire whose outcome is not in the database. Killed at that moment (the
server has the message, the database does not know), that one message is sent again once its lease runs out: the only
possible duplicate, and it carries the same Message-ID as the first copy. The outbox transport names each file after
its delivery, so there the second copy replaces the first. The claim re-checks the subscriber's status, so whoever
unsubscribes while a digest is going out is not sent it, unless theirs was already claimed (one message ahead).

Answers: 2xx sent; 4xx and timeouts retry later with backoff (:data:`BACKOFF`, then failed); 5xx to the recipient or
the data failed, counted as a bounce (the subscriber is marked bounced after ``[mail] bounce_limit``). A transport that
cannot connect stops the run with :class:`TransportError`; what was not tried stays pending.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest.core.config import Settings
from ingest.core.errors import TransportError
from ingest.core.links import unsubscribe_url
from ingest.core.models import Delivery, Digest, Outcome
from ingest.store import Store
from newsletter.digest import compose
from newsletter.digest.transports import SendResult, Transport
from newsletter.subscribers.tokens import Tokens

__all__ = [
    "BACKOFF",
    "Clock",
    "DeliveryRun",
    "backoff",
    "deliver_digest",
    "lease_length",
    "unsubscribe_links",
]

log = logging.getLogger("newsletter.deliver")  # the name log lines have always carried

#: Waits before retrying a delivery after its 1st, 2nd, ... temporary failure; after the last one it has failed.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
)

Clock = Callable[[], datetime]


def backoff(attempts: int) -> timedelta | None:
    """The wait after the ``attempts``-th temporary failure; None when it is time to give up."""
    return BACKOFF[attempts - 1] if 0 < attempts <= len(BACKOFF) else None


def lease_length(settings: Settings) -> timedelta:
    """How long a claim holds: ``[mail] lease_seconds``, or long enough for one message's slowest send (four
    timed-out steps) and then some."""
    if settings.mail.lease_seconds:
        return timedelta(seconds=settings.mail.lease_seconds)
    return timedelta(seconds=max(120.0, 4 * settings.mail.timeout + 30))


def unsubscribe_links(settings: Settings, tokens: Tokens, subscriber_id: int, email: str) -> tuple[str, str]:
    """(https URL, mailto URL) for List-Unsubscribe and the footer."""
    return _Links(settings, tokens).of(subscriber_id, email)


@dataclass(frozen=True, slots=True)
class DeliveryRun:
    """What one run did for one digest, and where its deliveries stand after it."""

    period: str
    sent: int = 0
    failed: int = 0
    retried: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # deliveries by status after the run
    retry_at: datetime | None = None
    complete: bool = False
    error: str | None = None


def deliver_digest(
    store: Store,
    settings: Settings,
    digest: Digest,
    *,
    transport: Transport,
    tokens: Tokens,
    clock: Clock,
    owner: str | None = None,
    stop: Callable[[], bool] | None = None,
) -> DeliveryRun:
    """Send ``digest`` to each of its due deliveries, one at a time, until none is left (or ``stop()``).

    While the server reads a message, one transaction writes the outcome of the previous one and claims the next
    delivery; it commits before this message can be accepted, so at most one message is ever accepted without its
    outcome in the database (see the module doc). While the server answers, the next message is built.
    """
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    _, envelope_from = compose.sender(settings)
    domain = envelope_from.rpartition("@")[2]
    template = compose.message_template(
        compose.Rendered(subject=digest.subject, html=digest.html, text=digest.text), settings, clock()
    )
    links = _Links(settings, tokens)
    lease = lease_length(settings)
    limit = settings.mail.bounce_limit
    done: Counter[str] = Counter()
    error: str | None = None

    def message_for(d: Delivery) -> tuple[bytes, str]:
        message_id = compose.message_id(digest, d.subscriber_id, domain)
        url, mailto = links.of(d.subscriber_id, d.email)
        recipient = compose.Recipient(
            address=d.email, unsubscribe_url=url, unsubscribe_mailto=mailto, message_id=message_id
        )
        return template.build(recipient), message_id

    def stopping() -> bool:
        return stop is not None and stop()

    def record_and_claim(outcome: Outcome | None, after: int) -> Delivery | None:
        """Write the last outcome and claim the next due delivery past the cursor, else from the start (retries that
        fell due, expired leases), in one transaction."""
        now = clock()
        return store.record_and_claim(
            outcome, digest.id, owner, now=now, lease_until=now + lease, after=after, bounce_limit=limit
        )

    current = None if stopping() else record_and_claim(None, 0)
    upcoming: Delivery | None = None  # claimed while the server takes in ``current``
    finished: Outcome | None = None  # the last outcome, written while the server takes in the next message
    built = message_for(current) if current is not None else None
    try:
        while current is not None and built is not None:
            message, message_id = built
            try:
                transport.submit(envelope_from, current.email, message, f"{digest.period}-{current.subscriber_id}")
            except TransportError as exc:
                error = str(exc)
                log.error("digest %s: %s", digest.period, exc)
                break
            # The last outcome is written BEFORE this message may be accepted (one unknown outcome at most), in the
            # transaction that claims the next delivery.
            if stopping():
                if finished is not None:
                    store.record_outcome(finished, owner, bounce_limit=limit)
            else:
                upcoming = record_and_claim(finished, current.subscriber_id)
            finished = None
            transport.finish()
            built = message_for(upcoming) if upcoming is not None else None  # while the server reads the end
            finished = _outcome(current, transport.result(), clock(), message_id)
            done[finished.status] += 1
            if upcoming is not None and stopping():
                break  # the one claimed ahead is released below, untried
            current, upcoming = upcoming, None
    finally:
        if finished is not None:
            store.record_outcome(finished, owner, bounce_limit=limit)
        failing = error is not None or sys.exc_info()[0] is not None
        for untried in (current, upcoming) if failing else (upcoming,):
            if untried is not None:
                store.record_outcome(Outcome(untried.id, untried.subscriber_id, "release", clock()), owner)
    settled = store.settle(digest.id, clock())
    return DeliveryRun(
        period=digest.period,
        sent=done["sent"],
        failed=done["failed"],
        retried=done["retry"],
        counts=settled.counts,
        retry_at=settled.retry_at,
        complete=settled.complete,
        error=error,
    )


class _Links:
    """Unsubscribe links, with the parts that are the same for everyone worked out once."""

    def __init__(self, settings: Settings, tokens: Tokens) -> None:
        self.tokens = tokens
        self.settings = settings.publish
        self.mailto = f"mailto:{compose.list_address(settings)}?subject=unsubscribe%20"

    def of(self, subscriber_id: int, email: str) -> tuple[str, str]:
        token = self.tokens.unsubscribe(subscriber_id, email)
        return unsubscribe_url(self.settings, token), self.mailto + token


def _outcome(d: Delivery, result: SendResult, now: datetime, message_id: str) -> Outcome:
    if result.status == "sent":
        return Outcome(
            d.id, d.subscriber_id, "sent", now, result.reply, message_id, reset_bounces=d.subscriber_bounces > 0
        )
    if result.status == "failed":
        return Outcome(d.id, d.subscriber_id, "failed", now, result.reply, message_id, bounce=True)
    wait = backoff(d.attempts)
    if wait is None:
        reply = f"gave up after {d.attempts} attempts; last answer: {result.reply}"
        return Outcome(d.id, d.subscriber_id, "failed", now, reply, message_id)
    return Outcome(d.id, d.subscriber_id, "retry", now, result.reply, message_id, next_attempt_at=now + wait)

"""The delivery loop: a digest sent to each of its deliveries exactly once, through any transport. No SMTP here.

Exactly once: every delivery row is claimed (status ``sending`` plus a lease) while the message before it goes out,
and marked ``sent`` in the same transaction that claims the one after it, before that one can be accepted, so at any
moment a connection has at most ONE message on the wire whose outcome is not in the database. A process sends over
``[mail] connections`` connections at once (each its own thread and its own claims), so it has at most that many;
several processes, at most one per connection of each. Killed at that moment (the server has the message, the
database does not know), each such message is sent again once its lease runs out: the only possible duplicates, one
per connection at most, each carrying the same Message-ID as its first copy. The outbox transport names each file
after its delivery, so there the second copy replaces the first. The claim re-checks the subscriber's status, so
whoever unsubscribes while a digest is going out is not sent it, unless theirs was already claimed (one message
ahead per connection). A message that has gone is never put back as untried: whatever breaks after it went, its
outcome is written first.

Each address is checked again when it is claimed (:func:`newsletter.subscribers.addresses.normalize`: a row edited or
migrated into the table never passed the subscribe form) and sent to in its canonical form. A delivery whose message
cannot be addressed or built fails alone ("address not usable: ..."), written in the transaction that claims the next.

Answers: 2xx sent; 4xx and timeouts retry later with backoff (:data:`BACKOFF`, then failed: a soft bounce when the
last answer was a 4xx); 5xx to the recipient or the data failed, a hard bounce. Each kind counts against the
subscriber up to its limit (``[mail] bounce_limit``, ``soft_bounce_limit``; decision 0015); a delivery that goes
through clears both. A 421 (the server is closing) or ``[mail] pause_after_retries`` temporary failures in a row (on
any of the connections) stop the run: every connection stops after its message in flight, what was not tried stays
pending, its attempts not counted, and waits as long as the last one tried; the digest's note says why. A transport
that cannot connect stops the run with :class:`TransportError`; what was not tried stays pending.

The sending rate (``[mail] rate``, ``domain_rates``) is one budget for every process sharing the database
(:class:`Pacer`): each message reserves its slot in the store before it goes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ingest.core.config import Settings
from ingest.core.errors import AddressError, TransportError
from ingest.core.links import preferences_url, unsubscribe_url
from ingest.core.models import BounceLimits, Delivery, Digest, Outcome
from ingest.store import Store
from newsletter.digest import compose
from newsletter.digest.dkim import signer as dkim_signer
from newsletter.digest.transports import CLOSING, SendResult, Transport
from newsletter.subscribers.addresses import normalize
from newsletter.subscribers.tokens import Tokens

__all__ = [
    "BACKOFF",
    "Clock",
    "DeliveryRun",
    "Pacer",
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
    paused: str | None = None  # why the run stopped before the end: the server's answers (the rest wait)


@dataclass(frozen=True, slots=True)
class _Ready:
    """A claimed delivery with its message built."""

    delivery: Delivery
    address: str  # the envelope recipient: the subscriber's address, checked again, in canonical form
    sender: str  # the envelope sender: [mail] bounce_address tagged with the delivery (VERP), else From's address
    message: bytes
    message_id: str


def deliver_digest(
    store: Store,
    settings: Settings,
    digest: Digest,
    *,
    transports: Sequence[Transport],
    tokens: Tokens,
    clock: Clock,
    owner: str | None = None,
    stop: Callable[[], bool] | None = None,
    pacer: Pacer | None = None,
) -> DeliveryRun:
    """Send ``digest`` to each of its due deliveries until none is left (or ``stop()``, or the server asks us to
    stop): one connection per transport, each in a thread of its own (the only one: inline), each one message at a
    time.

    On each connection, while the server reads a message, one transaction writes the outcome of the previous one and
    claims the next delivery; it commits before this message can be accepted, so at most one message per connection
    is ever accepted without its outcome in the database (see the module doc). While the server answers, the next
    message is built.
    """
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    _, envelope_from = compose.sender(settings)
    domain = envelope_from.rpartition("@")[2]
    # The digest's own rendering, and one per edition (topic set, issue 18): each cut into its template once.
    date = clock()
    whole = compose.message_template(compose.Rendered(digest.subject, digest.html, digest.text), settings, date)
    templates: dict[int | None, compose.MessageTemplate] = {None: whole}
    templates.update(
        (eid, compose.message_template(compose.Rendered(e.subject, e.html, e.text), settings, date))
        for eid, e in store.editions(digest.id).items()
        if e.story_count
    )
    links = _Links(settings, tokens)
    lease = lease_length(settings)
    limits = BounceLimits(hard=settings.mail.bounce_limit, soft=settings.mail.soft_bounce_limit)
    pacer = pacer or Pacer(store, settings)
    dkim = dkim_signer(settings)
    shared = _Shared(settings.mail.pause_after_retries)

    def prepare(d: Delivery) -> _Ready | Outcome:
        """``d``'s message, or the outcome of a delivery no message can go to (it fails alone)."""
        message_id = compose.message_id(digest, d.subscriber_id, domain)
        try:
            address = normalize(d.email)
        except AddressError as exc:
            # What a server would answer to it (553 5.1.3): a hard bounce, so a row nobody fixes stops being tried.
            reply = f"address not usable: {exc}"
            return Outcome(d.id, d.subscriber_id, "failed", clock(), reply, message_id, bounce="hard")
        url, mailto = links.of(d.subscriber_id, d.email)
        recipient = compose.Recipient(
            address=address,
            unsubscribe_url=url,
            unsubscribe_mailto=mailto,
            message_id=message_id,
            preferences_url=links.preferences(d.subscriber_id, d.email),
        )
        bounce_to = settings.mail.bounce_address
        sender = compose.tagged(bounce_to, tokens.bounce_tag(d.id)) if bounce_to else envelope_from
        try:
            message = templates[d.edition_id].build(recipient)
            return _Ready(d, address, sender, dkim.sign(message) if dkim else message, message_id)
        except ValueError as exc:  # compose refuses a value it cannot put in a header
            return Outcome(d.id, d.subscriber_id, "failed", clock(), f"message not built: {exc}", message_id)

    def stopping() -> bool:
        return shared.halt.is_set() or (stop is not None and stop())

    def connection(transport: Transport, owner: str) -> None:
        """One connection's loop: at most one message of it on the wire without its outcome in the database."""

        def record_and_claim(outcomes: Sequence[Outcome], after: int) -> Delivery | None:
            """Write the last outcomes and claim the next due delivery past the cursor, else from the start
            (retries that fell due, expired leases), in one transaction."""
            now = clock()
            return store.record_and_claim(
                outcomes, digest.id, owner, now=now, lease_until=now + lease, after=after, limits=limits
            )

        def claim_ready(outcomes: Sequence[Outcome], after: int) -> _Ready | None:
            """:func:`record_and_claim`, past any delivery no message can go to: each fails in the transaction that
            claims the one after it."""
            while (claimed := record_and_claim(outcomes, after)) is not None:
                ready = prepare(claimed)
                if isinstance(ready, _Ready):
                    return ready
                unusable(ready)
                outcomes, after = [ready], claimed.subscriber_id
            return None

        def unusable(outcome: Outcome) -> None:
            shared.count(outcome.status)
            log.warning("digest %s: subscriber %d: %s", digest.period, outcome.subscriber_id, outcome.reply)

        current = None if stopping() else claim_ready((), 0)  # the message being sent; None once it has gone
        upcoming: Delivery | None = None  # claimed while the server takes in ``current``
        in_flight: _Ready | None = None  # gone (the server may have accepted it), its answer not read yet
        unwritten: list[Outcome] = []  # outcomes known, written with the next claim (or at the end)
        try:
            while current is not None:
                d = current.delivery
                try:
                    pacer.wait(current.address)
                    transport.submit(
                        current.sender, current.address, current.message, f"{digest.period}-{d.subscriber_id}"
                    )
                except TransportError as exc:
                    shared.fail(str(exc))
                    log.error("digest %s: %s", digest.period, exc)
                    break
                # The last outcome is written BEFORE this message may be accepted (one unknown outcome at most), in
                # the transaction that claims the next delivery.
                if stopping():
                    if unwritten:
                        store.record_outcomes(unwritten, owner, limits=limits)
                else:
                    upcoming = record_and_claim(unwritten, d.subscriber_id)
                unwritten = []
                transport.finish()
                in_flight, current = current, None
                ahead = prepare(upcoming) if upcoming is not None else None  # while the server reads the end
                result = transport.result()
                finished = _outcome(in_flight, result, clock())
                in_flight = None
                unwritten.append(finished)
                shared.answer(d, result, finished.status, clock())
                if isinstance(ahead, Outcome):  # the next one cannot be sent: it fails alone, written with this one
                    unwritten.append(ahead)
                    unusable(ahead)
                    upcoming = None
                if stopping():
                    break  # the one claimed ahead is released below, untried
                if isinstance(ahead, Outcome):
                    current = claim_ready(unwritten, ahead.subscriber_id)
                    unwritten = []
                else:
                    current, upcoming = ahead, None
        finally:
            if in_flight is not None:  # something broke after it went: its answer counts, it is never sent twice
                unwritten.append(_outcome(in_flight, transport.result(), clock()))
            untried = [r.delivery for r in (current,) if r is not None] + [u for u in (upcoming,) if u is not None]
            unwritten += [Outcome(u.id, u.subscriber_id, "release", clock()) for u in untried]
            if unwritten:
                store.record_outcomes(unwritten, owner, limits=limits)

    _each_connection(connection, transports, owner, shared)
    paused = shared.paused
    if paused is not None:
        waiting = store.postpone(digest.id, paused.until)
        log.warning("digest %s: %s; %d deliveries wait until %s", digest.period, paused.reason, waiting, paused.until)
    # A run that tried nothing leaves the note alone: an earlier pause still holds.
    note = paused.note if paused is not None else (None if shared.done else digest.note)
    settled = store.settle(digest.id, clock(), note=note)
    return DeliveryRun(
        period=digest.period,
        sent=shared.done["sent"],
        failed=shared.done["failed"],
        retried=shared.done["retry"],
        counts=settled.counts,
        retry_at=settled.retry_at,
        complete=settled.complete,
        error=shared.error,
        paused=paused.reason if paused is not None else None,
    )


def _each_connection(
    loop: Callable[[Transport, str], None], transports: Sequence[Transport], owner: str, shared: _Shared
) -> None:
    """Run ``loop`` once per transport: inline for one, else one thread each. A bug in one stops the others after
    their message in flight, and is raised here once every connection has written what it knows."""
    if len(transports) == 1:
        loop(transports[0], owner)
        return
    bugs: list[BaseException] = []

    def guarded(transport: Transport, name: str) -> None:
        try:
            loop(transport, name)
        except BaseException as exc:
            bugs.append(exc)
            shared.halt.set()

    threads = [
        threading.Thread(target=guarded, args=(t, f"{owner}/{i}"), name=f"smtp-{i}", daemon=True)
        for i, t in enumerate(transports)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if bugs:
        raise bugs[0]


class _Shared:
    """What a run's connections share: counts, the temporary failures in a row (across connections: the server's
    mood, not one session's), why the run stops, and the flag that stops every connection."""

    def __init__(self, pause_after: int) -> None:
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.done: Counter[str] = Counter()
        self.error: str | None = None
        self.paused: _Pause | None = None
        self._pause_after = pause_after
        self._streak: list[tuple[Delivery, SendResult]] = []

    def count(self, status: str) -> None:
        with self.lock:
            self.done[status] += 1

    def fail(self, error: str) -> None:
        """The transport cannot send at all: every connection stops."""
        with self.lock:
            self.error = self.error or error
        self.halt.set()

    def answer(self, d: Delivery, result: SendResult, status: str, now: datetime) -> None:
        with self.lock:
            self.done[status] += 1
            self._streak = [*self._streak, (d, result)] if result.status == "retry" else []
            paused = _pause(self._streak, self._pause_after, now)
            if paused is not None and self.paused is None:
                self.paused = paused
        if paused is not None:
            self.halt.set()


class Pacer:
    """``[mail] rate`` and ``domain_rates`` as one budget for every process sharing the database: each message
    reserves its slot in the store (:meth:`Store.reserve_send_slot`), then waits for it. No budget, no query."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.rate = settings.mail.rate
        self.domain_rates = settings.mail.domain_rates
        self.wall = wall  # seconds since the epoch: the one clock processes on several machines share
        self.sleep = sleep

    def budgets(self, address: str) -> list[tuple[str, float]]:
        """(budget, seconds per message) for a message to ``address``."""
        found = [("*", 1 / self.rate)] if self.rate > 0 else []
        domain = address.rpartition("@")[2].lower()
        if domain in self.domain_rates:
            found.append((domain, 1 / self.domain_rates[domain]))
        return found

    def wait(self, address: str) -> None:
        budgets = self.budgets(address)
        if not budgets:
            return
        now = self.wall()
        at = self.store.reserve_send_slot(budgets, now)
        if at > now:
            self.sleep(at - now)  # the configured sending rate, not synchronisation


class _Links:
    """Unsubscribe and preferences links, with the parts that are the same for everyone worked out once."""

    def __init__(self, settings: Settings, tokens: Tokens) -> None:
        self.tokens = tokens
        self.settings = settings.publish
        self.address = settings.mail.unsubscribe_address  # unsubscribe+TAG@: read by `newsletter inbound`
        self.mailto = f"mailto:{compose.list_address(settings)}?subject=unsubscribe%20"

    def of(self, subscriber_id: int, email: str) -> tuple[str, str]:
        token = self.tokens.unsubscribe(subscriber_id, email)
        url = unsubscribe_url(self.settings, token)
        if self.address:
            tag = self.tokens.unsubscribe_tag(subscriber_id, email)
            return url, f"mailto:{compose.tagged(self.address, tag)}?subject=unsubscribe"
        return url, self.mailto + token

    def preferences(self, subscriber_id: int, email: str) -> str:
        return preferences_url(self.settings, self.tokens.preferences(subscriber_id, email))


def _outcome(sent: _Ready, result: SendResult, now: datetime) -> Outcome:
    d, message_id = sent.delivery, sent.message_id
    if result.status == "sent":
        reset = d.subscriber_bounces > 0 or d.subscriber_soft_bounces > 0
        return Outcome(d.id, d.subscriber_id, "sent", now, result.reply, message_id, reset_bounces=reset)
    if result.status == "failed":
        return Outcome(d.id, d.subscriber_id, "failed", now, result.reply, message_id, bounce="hard")
    wait = backoff(d.attempts)
    if wait is None:
        reply = f"gave up after {d.attempts} attempts; last answer: {result.reply}"
        # A soft bounce: the mailbox still said "later" at the last try. A 421 is about the server and a timeout
        # about the network: neither says anything about this address.
        soft = 400 <= result.code < 500 and result.code != CLOSING
        return Outcome(d.id, d.subscriber_id, "failed", now, reply, message_id, bounce="soft" if soft else None)
    return Outcome(d.id, d.subscriber_id, "retry", now, result.reply, message_id, next_attempt_at=now + wait)


@dataclass(frozen=True, slots=True)
class _Pause:
    """Why a run stops before the end, and until when the digest's remaining deliveries wait."""

    reason: str
    until: datetime

    @property
    def note(self) -> str:
        return f"paused: {self.reason}; the rest wait until {self.until:%Y-%m-%d %H:%M %Z}"


def _pause(streak: Sequence[tuple[Delivery, SendResult]], limit: int, now: datetime) -> _Pause | None:
    """Whether the temporary failures in a row so far stop the run: the last one a 421, or ``limit`` of them. The rest
    then wait as long as the longest wait among these (the last step of :data:`BACKOFF` for one out of retries), so a
    server that keeps refusing is tried less and less often, one message at a time."""
    if not streak:
        return None
    last = streak[-1][1]
    if last.code == CLOSING:
        reason = f"the server answered {last.reply}"
    elif len(streak) >= limit:
        reason = f"{len(streak)} temporary failures in a row, the last: {last.reply}"
    else:
        return None
    wait = max(backoff(d.attempts) or BACKOFF[-1] for d, _ in streak)
    return _Pause(reason, now + wait)

"""Sending mail: the ``outbox`` and ``smtp`` transports, and the loop that delivers a digest once. Home of smtplib.

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
import re
import secrets
import smtplib
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from ingest.core.config import Settings
from ingest.core.errors import TransportError
from ingest.core.links import unsubscribe_url
from ingest.core.models import Delivery, Digest, Outcome
from ingest.store import Store
from newsletter import compose
from newsletter.tokens import Tokens

__all__ = [
    "BACKOFF",
    "DeliveryRun",
    "OutboxTransport",
    "SendResult",
    "SmtpTransport",
    "Transport",
    "TransportError",
    "backoff",
    "deliver_digest",
    "lease_length",
    "open_transport",
    "send",
    "send_one",
    "unsubscribe_links",
]

log = logging.getLogger(__name__)

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
_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class SendResult:
    status: Literal["sent", "retry", "failed"]
    reply: str


class Transport(Protocol):
    """Sends one message at a time, in three steps so the caller can work while the server does:

    :meth:`submit` hands over everything but the very end (SMTP: the message without its final ``.`` line; outbox:
    a temp file), :meth:`finish` ends it (the server may now accept it), :meth:`result` waits for the verdict. Until
    :meth:`finish`, nothing can have been delivered.
    """

    def submit(self, sender: str, recipient: str, message: bytes, name: str) -> None:
        """Start sending ``message`` to ``recipient`` (the envelope, from the database); ``name`` is unique per
        delivery. Raises :class:`TransportError` when nothing can be sent at all."""
        ...

    def finish(self) -> None:
        """Let the message of the last :meth:`submit` go."""
        ...

    def result(self) -> SendResult:
        """What became of it."""
        ...

    def close(self) -> None: ...


def send(transport: Transport, sender: str, recipient: str, message: bytes, name: str) -> SendResult:
    """One message, start to end."""
    transport.submit(sender, recipient, message, name)
    transport.finish()
    return transport.result()


class OutboxTransport:
    """One ``.eml`` file per message in ``[mail] outbox_dir``, written atomically (temp file, fsync, rename): the
    rename is the delivery, and a second delivery of the same message replaces the first file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._temp: Path | None = None
        self._target: Path | None = None

    def submit(self, sender: str, recipient: str, message: bytes, name: str) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._target = self.folder / f"{name}.eml"
            self._temp = self.folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            with self._temp.open("wb") as fh:
                fh.write(message)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise TransportError(f"{self.folder}: cannot write to the outbox: {exc.strerror}") from None

    def finish(self) -> None:
        assert self._temp is not None
        assert self._target is not None
        try:
            os.replace(self._temp, self._target)
        except OSError as exc:
            raise TransportError(f"{self.folder}: cannot write to the outbox: {exc.strerror}") from None

    def result(self) -> SendResult:
        assert self._target is not None
        return SendResult("sent", f"written to {self._target.name}")

    def close(self) -> None:
        return None


class SmtpTransport:
    """One SMTP connection, reused for every message, reopened when the server drops it; at most ``rate``/s."""

    def __init__(self, settings: Settings) -> None:
        self.config = settings.mail
        self.password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self._conn: smtplib.SMTP | None = None
        self._next_at = 0.0
        self._early: SendResult | None = None  # an answer known before the message went (or the connection lost)

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        where = f"{c.host}:{c.port}"
        conn: smtplib.SMTP | None = None
        try:
            context = ssl.create_default_context()
            if c.security == "tls":
                conn = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=context)
            else:
                conn = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            if conn.sock is not None:
                # The final "." goes apart from the message (see Transport): without this, Nagle's algorithm holds
                # it until the message is acknowledged, and delayed ACKs make that ~40 ms per message.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo()
            if c.security == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if c.username:
                conn.login(c.username, self.password or "")
        except (smtplib.SMTPException, OSError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                raise TransportError(f"SMTP {where}: login as {c.username!r} refused: {_reply(exc)}") from None
            if isinstance(exc, smtplib.SMTPNotSupportedError):
                raise TransportError(f"SMTP {where}: {exc}") from None
            raise TransportError(f"SMTP {where}: cannot connect: {exc}") from None
        return conn

    def _pace(self) -> None:
        if self.config.rate <= 0:
            return
        delay = self._next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the configured sending rate, not synchronisation
        self._next_at = max(self._next_at, time.monotonic()) + 1 / self.config.rate

    def submit(self, sender: str, recipient: str, message: bytes, name: str) -> None:
        """MAIL, RCPT, DATA and the message but its final "." line (:meth:`finish`); the answer is :meth:`result`."""
        self._early = None
        self._pace()
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            code, resp = conn.mail(sender)
            if code != 250:
                self._reset()
                raise TransportError(f"SMTP server refuses the sender {sender}: {code} {_text(resp)}")
            code, resp = conn.rcpt(recipient)
            if code not in (250, 251):
                self._reset()
                self._early = _answer(code, resp)
                return
            code, resp = conn.docmd("data")
            if code != 354:
                self._reset()
                self._early = _answer(code, resp)
                return
            # RFC 5321 4.5.2: a line starting with "." gets another; the message ends with CRLF "." CRLF.
            body = _DOT.sub(b"..", message)
            conn.send(body if body.endswith(b"\r\n") else body + b"\r\n")
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as exc:
            self._lost(exc)

    def finish(self) -> None:
        if self._early is not None or self._conn is None:
            return
        try:
            self._conn.send(b".\r\n")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._lost(exc)

    def result(self) -> SendResult:
        if self._early is not None:
            return self._early
        conn = self._conn
        if conn is None:
            return SendResult("retry", "connection lost")
        try:
            code, resp = conn.getreply()
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as exc:
            return self._lost(exc)
        return _answer(code, resp)

    def _lost(self, exc: BaseException) -> SendResult:
        self._drop()
        # The message may or may not have arrived: try again later (at worst a second copy, same Message-ID).
        self._early = SendResult("retry", f"connection lost: {exc or type(exc).__name__}")
        return self._early

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                pass
            finally:
                self._drop()


def open_transport(settings: Settings) -> Transport:
    if settings.mail.transport == "smtp":
        return SmtpTransport(settings)
    return OutboxTransport(settings.mail.outbox_dir)


def send_one(settings: Settings, recipient: str, message: bytes, name: str) -> SendResult:
    """One message outside any digest (a confirmation, a test send), through the configured transport."""
    _, envelope_from = compose.sender(settings)
    transport = open_transport(settings)
    try:
        return send(transport, envelope_from, recipient, message, name)
    finally:
        transport.close()


def _text(resp: bytes | str) -> str:
    return (resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp).replace("\r\n", " ").strip()


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _answer(code: int, resp: bytes | str) -> SendResult:
    reply = f"{code} {_text(resp)}"
    if 200 <= code < 300:
        return SendResult("sent", reply)
    if 500 <= code < 600:
        return SendResult("failed", reply)
    return SendResult("retry", reply)  # 4xx, and anything odd: never give up on a surprise


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

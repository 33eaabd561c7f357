"""Subscribers: add, list, remove, CSV import, preferences (topics), and the double opt-in (request, confirm,
unsubscribe). No SQL here.

Addresses pass :func:`newsletter.subscribers.addresses.normalize` first: one canonical form per subscriber.

Only ``confirmed`` subscribers get digests. The operator's ``add`` and ``import`` confirm at once (the operator vouches
for them) but never bring back someone who unsubscribed, bounced or complained unless told to. The web form makes a
``pending`` subscriber (never for an address that complained) and mails a signed confirm link, at most once per
:data:`REQUEST_INTERVAL` per address; the link shows a button, and pressing it (a POST) confirms, so a mail scanner
that follows every link confirms nobody. Removing unsubscribes: the row stays, so the address is not mailed again by
a later import.

Against floods the form also has, counted in the database over :data:`REQUEST_WINDOW` (so every process and restart
sees the same counts): a limit per client address (``[subscribe] per_client_per_hour``), a cap on confirmation mails
whoever asks (``[subscribe] mails_per_hour``), and a honeypot field bots fill and people never see. A refused
request mails nothing, stores no address, and logs one warning line.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from ingest.core.config import Settings
from ingest.core.errors import AddressError, UsageError
from ingest.core.links import confirm_url
from ingest.core.models import Subscriber, SubscriberStatus
from ingest.store import Store
from newsletter.digest import compose
from newsletter.digest.transports import SendResult, TransportError, send_one
from newsletter.subscribers.addresses import normalize
from newsletter.subscribers.tokens import Tokens, signing_key
from newsletter.subscribers.tokens import subscriber_id as token_subscriber_id

__all__ = [
    "REQUEST_INTERVAL",
    "REQUEST_WINDOW",
    "AddResult",
    "AddressError",
    "ImportLine",
    "ImportReport",
    "add",
    "check_topics",
    "client_key",
    "confirm",
    "confirm_target",
    "describe",
    "import_csv",
    "list_subscribers",
    "preferences_target",
    "remove",
    "request",
    "save_preferences",
    "set_topics",
    "unsubscribe",
    "unsubscribe_target",
    "unsubscribe_token",
]

log = logging.getLogger("newsletter.subscribers")  # the name log lines have always carried

#: At most one confirmation mail per address in this time, however often the form is sent.
REQUEST_INTERVAL = timedelta(minutes=15)
#: What the form's limits look back over ([subscribe] per_client_per_hour, mails_per_hour).
REQUEST_WINDOW = timedelta(hours=1)

AddOutcome = Literal["added", "confirmed", "exists", "resubscribed", "refused"]


@dataclass(frozen=True, slots=True)
class AddResult:
    address: str
    outcome: AddOutcome
    subscriber: Subscriber | None
    message: str


def describe(subscriber: Subscriber) -> str:
    """A subscriber's choice in a few words: "all topics", "breast, lung"."""
    return ", ".join(subscriber.topics) or "all topics"


def check_topics(topics: Sequence[str], known: Sequence[str], *, where: str = "--topic") -> tuple[str, ...]:
    """``topics`` as slugs of the taxonomy (``known``), once each; :class:`UsageError` naming the first unknown."""
    clean = tuple(dict.fromkeys(t.strip().lower() for t in topics if t.strip()))
    if bad := [t for t in clean if t not in known]:
        raise UsageError(f"{where}: unknown topic {bad[0]!r}; expected one of: {', '.join(known)}")
    return clean


def add(
    store: Store, email: str, now: datetime, *, resubscribe: bool = True, topics: Sequence[str] | None = None
) -> AddResult:
    """Subscribe ``email``, confirmed, with ``topics`` (none: every topic; None: an existing subscriber's stay).
    Someone who unsubscribed, bounced or complained comes back only with ``resubscribe``.
    Raises :class:`AddressError` for a bad address."""
    address = normalize(email)
    created = store.insert_subscriber(address, "confirmed", now, topics=topics or ())
    if created is not None:
        return AddResult(address, "added", created, f"added {address} ({describe(created)})")
    found = store.subscriber_by_email(address)
    assert found is not None
    if found.status in ("unsubscribed", "bounced", "complained") and not resubscribe:
        return AddResult(address, "refused", found, f"{address} {found.status}: not subscribed again")
    if topics is not None:
        found = store.set_subscriber_topics(found.id, topics)
        assert found is not None
    if found.status == "confirmed":
        return AddResult(address, "exists", found, f"{address} is already subscribed ({describe(found)})")
    after = store.set_subscriber_status(found.id, "confirmed", now)
    outcome: AddOutcome = "confirmed" if found.status == "pending" else "resubscribed"
    return AddResult(address, outcome, after, f"{outcome} {address} (was {found.status})")


def set_topics(store: Store, email: str, topics: Sequence[str]) -> Subscriber | None:
    """Change a subscriber's topics (none: every topic); None when there is no such subscriber."""
    found = store.subscriber_by_email(normalize(email))
    if found is None:
        return None
    return store.set_subscriber_topics(found.id, topics)


def remove(store: Store, email: str, now: datetime) -> Subscriber | None:
    """Unsubscribe ``email``; None when there is no such subscriber. The row stays (see the module doc)."""
    found = store.subscriber_by_email(normalize(email))
    if found is None:
        return None
    if found.status == "unsubscribed":
        return found
    return store.set_subscriber_status(found.id, "unsubscribed", now)


def list_subscribers(store: Store, status: SubscriberStatus | None = None) -> list[Subscriber]:
    return store.subscribers(status)


@dataclass(frozen=True, slots=True)
class ImportLine:
    line: int
    address: str  # as written in the file
    outcome: AddOutcome | Literal["invalid"]
    message: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    lines: tuple[ImportLine, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for line in self.lines if line.outcome == outcome)

    @property
    def invalid(self) -> int:
        return self.count("invalid")


def import_csv(store: Store, path: Path, now: datetime, *, known_topics: Sequence[str] = ()) -> ImportReport:
    """Add every address of a CSV file: the ``email`` column when the first row names one, else the first column.
    With a header, an optional ``topics`` column gives each one's topics (slugs of ``known_topics``, separated by
    spaces, commas or semicolons; empty: every topic).
    Blank lines and lines starting ``#`` are skipped. A bad address or topic is reported (line and what was
    wrong) and the rest go on; someone who unsubscribed is not brought back."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    rows = list(csv.reader(io.StringIO(text)))
    column = 0
    start = 0
    topics_at = None
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        named = next((i for i, h in enumerate(header) if h in ("email", "e-mail", "email address", "address")), None)
        if named is not None:
            column, start = named, 1
            topics_at = header.index("topics") if "topics" in header else None
    results: list[ImportLine] = []
    for number, row in enumerate(rows[start:], start=start + 1):
        cell = row[column].strip() if len(row) > column else ""
        if not cell and not any(c.strip() for c in row):
            continue
        if cell.startswith("#") or (not cell and row and row[0].lstrip().startswith("#")):
            continue
        try:
            cell_topics = row[topics_at].strip() if topics_at is not None and len(row) > topics_at else ""
            chosen = (
                check_topics(re.split(r"[\s,;]+", cell_topics), known_topics, where="topics") if cell_topics else None
            )
            result = add(store, cell, now, resubscribe=False, topics=chosen)
        except (AddressError, UsageError) as exc:
            results.append(ImportLine(number, cell, "invalid", f"{path.name} line {number}: {exc}"))
            continue
        results.append(ImportLine(number, cell, result.outcome, result.message))
    return ImportReport(tuple(results))


# ---- double opt-in ---------------------------------------------------------------------------------------------


def client_key(host: str | None) -> str:
    """What the per-client limit counts by: the client's address; for IPv6 its /64 network (one home or host has a
    whole /64 to pick addresses from)."""
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return (host or "unknown")[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:203.0.113.5 is the IPv4 client 203.0.113.5
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def request(
    store: Store,
    settings: Settings,
    email: str,
    now: datetime,
    *,
    client: str = "",
    trap: bool = False,
    topics: Sequence[str] = (),
) -> bool:
    """The web form: make ``email`` a pending subscriber and mail it a confirm link. Returns whether a mail went out:
    not when the address is already confirmed, nor within :data:`REQUEST_INTERVAL` of the last one, nor when the
    form's limits refuse the request (``client``: see :func:`client_key`; ``trap``: the honeypot field was filled).
    Raises :class:`AddressError` for a bad address (only when the limits let the request through)."""
    limits = settings.subscribe
    since = now - REQUEST_WINDOW
    noted = store.note_subscribe_request(client, now, since)
    capped = f"confirmation mails in the last hour, the cap of [subscribe] mails_per_hour = {limits.mails_per_hour}"

    def refuse(reason: str) -> bool:
        log.warning("subscribe request from %s not mailed: %s", client or "an unknown client", reason)
        return False

    if trap:
        return refuse("the hidden field was filled (a bot)")
    if limits.per_client_per_hour and noted.client_requests > limits.per_client_per_hour:
        return refuse(
            f"{noted.client_requests} requests from this client in the last hour, over [subscribe] "
            f"per_client_per_hour = {limits.per_client_per_hour}"
        )
    if limits.mails_per_hour and noted.mails >= limits.mails_per_hour:
        return refuse(f"{noted.mails} {capped}")
    address = normalize(email)
    pending = store.request_subscription(address, now, now - REQUEST_INTERVAL, topics=topics)
    if pending is None:
        return False
    if not store.claim_confirmation_mail(noted.id, since, limits.mails_per_hour):  # others took the last ones
        return refuse(f"{limits.mails_per_hour} {capped}")
    tokens = Tokens(signing_key(store, settings))
    url = confirm_url(settings.publish, tokens.confirm(pending.id, pending.email, now))
    message = compose.confirm_message(settings, pending.email, url, now)
    try:
        result: SendResult = send_one(settings, pending.email, message, f"confirm-{pending.id}-{int(now.timestamp())}")
    except TransportError as exc:
        log.error("confirmation for subscriber %s not sent: %s", pending.id, exc)
        return False
    if result.status != "sent":
        log.warning("confirmation for subscriber %s not sent: %s", pending.id, result.reply)
    return result.status == "sent"


def confirm_target(store: Store, settings: Settings, token: str, now: datetime) -> Subscriber | None:
    """The subscriber a valid, unexpired confirm token names, or None. Changes nothing (for the page with the button).
    None for any bad token (forged, expired, unknown subscriber, or one who has unsubscribed or bounced since: they
    must ask again)."""
    ident = token_subscriber_id(token)
    found = store.subscriber_by_id(ident) if ident is not None else None
    if found is None or found.status not in ("pending", "confirmed"):
        return None
    if Tokens(signing_key(store, settings)).check_confirm(token, found.email, now) is None:
        return None
    return found


def confirm(store: Store, settings: Settings, token: str, now: datetime) -> Subscriber | None:
    """Confirm the subscriber a valid, unexpired confirm token names; again is harmless. None for a bad token (see
    :func:`confirm_target`)."""
    found = confirm_target(store, settings, token, now)
    if found is None or found.status == "confirmed":
        return found
    return store.set_subscriber_status(found.id, "confirmed", now, only_from=("pending",))


def preferences_target(store: Store, settings: Settings, token: str) -> Subscriber | None:
    """The subscriber a valid preferences token names, or None. Changes nothing."""
    ident = token_subscriber_id(token)
    found = store.subscriber_by_id(ident) if ident is not None else None
    if found is None or Tokens(signing_key(store, settings)).check_preferences(token, found.email) is None:
        return None
    return found


def save_preferences(store: Store, settings: Settings, token: str, topics: Sequence[str]) -> Subscriber | None:
    """Change the topics of whom a valid preferences token names; None for a bad token."""
    found = preferences_target(store, settings, token)
    if found is None:
        return None
    return store.set_subscriber_topics(found.id, topics)


def unsubscribe_token(store: Store, settings: Settings, subscriber: Subscriber) -> str:
    """The unsubscribe token of ``subscriber`` (the preferences page's unsubscribe button)."""
    return Tokens(signing_key(store, settings)).unsubscribe(subscriber.id, subscriber.email)


def unsubscribe_target(store: Store, settings: Settings, token: str) -> Subscriber | None:
    """The subscriber a valid unsubscribe token names, or None. Changes nothing (for the page with the button)."""
    ident = token_subscriber_id(token)
    found = store.subscriber_by_id(ident) if ident is not None else None
    if found is None:
        return None
    if Tokens(signing_key(store, settings)).check_unsubscribe(token, found.email) is None:
        return None
    return found


def unsubscribe(store: Store, settings: Settings, token: str, now: datetime) -> Subscriber | None:
    """Unsubscribe whom a valid token names, at once; again is harmless. None for a bad token."""
    found = unsubscribe_target(store, settings, token)
    if found is None:
        return None
    if found.status in ("unsubscribed", "complained"):  # a complaint stays: it also stops confirmation mails
        return found
    return store.set_subscriber_status(found.id, "unsubscribed", now) or found

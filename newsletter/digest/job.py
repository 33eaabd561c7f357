"""The digest job: make the due period's digest once (of each cadence offered: weekly, and daily when ``[digest]
daily_send_at`` is set), deliver every open digest; preview and test-send. No SMTP here.

What is due comes from the database and ``now`` (passed in): running the job twice makes no second digest (the period
is a unique key) and sends nothing twice (the delivery rows). A digest is rendered once, when it is made, and stored;
a later run (a restart, a retry) sends exactly those bytes. A period whose due time passed more than
``[digest] catch_up_hours`` ago is recorded as skipped (its stories roll over into the next digest); a period with no
story is recorded as empty and sends nothing unless ``[digest] send_empty``.
"""

from __future__ import annotations

import html as html_lib
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit

from ingest.core.config import Settings
from ingest.core.errors import UsageError
from ingest.core.links import preferences_url, unsubscribe_url
from ingest.core.models import Cadence, Digest, NewDigest, NewEdition, Subscriber
from ingest.store import CARRYING, MissingEditionError, Store, window_start
from newsletter.digest import compose
from newsletter.digest.select import (
    Period,
    Selection,
    due_period,
    floor,
    for_topics,
    period_containing,
    period_for,
    select,
)
from newsletter.digest.send import Clock, DeliveryRun, Pacer, deliver_digest, unsubscribe_links
from newsletter.digest.transports import SendResult, Transport, TransportError, open_transports, send_one
from newsletter.subscribers.addresses import normalize
from newsletter.subscribers.tokens import Tokens, signing_key

__all__ = [
    "MAKE_TRIES",
    "DigestReport",
    "Preview",
    "edition",
    "ensure_digest",
    "mail_warnings",
    "preview",
    "preview_reader",
    "select_for",
    "send_due_digest",
    "send_test",
]


#: Times a digest is rendered again when subscribers confirm with new topic sets while it is being made.
MAKE_TRIES = 5
#: How far back a daily digest's stories may have been first seen (see :func:`floor_of`).
DAILY_REACH = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class DigestReport:
    """What :func:`send_due_digest` did: the due period's digest, and every delivery run it made."""

    period: str  # the due period
    status: str  # that digest's status now: pending (retries to come) | sent | skipped | empty
    created: bool  # made by this call
    stories: int
    runs: tuple[DeliveryRun, ...] = ()
    note: str | None = None
    daily: DigestReport | None = None  # the due daily digest, when daily digests are offered (its runs are in runs)

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.runs)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.runs)

    @property
    def retry_at(self) -> datetime | None:
        return min((r.retry_at for r in self.runs if r.retry_at is not None), default=None)

    @property
    def error(self) -> str | None:
        return next((r.error for r in self.runs if r.error), None)

    @property
    def paused(self) -> str | None:
        """Why sending stopped before the end (the server's answers); the rest waits (see ``retry_at``)."""
        return next((r.paused for r in self.runs if r.paused), None)


@dataclass(frozen=True, slots=True)
class Preview:
    period: str
    subject: str
    stories: int
    address: str  # whom it was rendered for
    eml: Path
    html: Path
    text: Path
    stored: bool  # True: the digest was made already and this is exactly what was sent


def mail_warnings(settings: Settings) -> tuple[str, ...]:
    """What in the set-up would make a mailed digest's links or sender lead nowhere: said once when ``newsletter
    run`` or ``digest send`` starts. Nothing when the digest goes to the outbox (nothing leaves the machine)."""
    if settings.mail.transport != "smtp":
        return ()
    warnings: list[str] = []
    url = settings.publish.base_url
    if _is_loopback(urlsplit(url).hostname or ""):
        warnings.append(
            f"[publish] base_url is {url!r}, a loopback address, while the digest goes out by SMTP: its unsubscribe "
            "and view-in-browser links would lead subscribers nowhere; set [publish] base_url to the public address "
            "people reach, e.g. https://news.example.org/"
        )
    sender = settings.mail.from_address
    if parseaddr(sender)[1].rpartition("@")[2].rstrip(".").lower() == "localhost":
        warnings.append(
            f"[mail] from_address is {sender!r}, an address at localhost, while the digest goes out by SMTP: replies "
            "and the List-Unsubscribe mailto go nowhere and many mail servers refuse such a sender; set [mail] "
            "from_address to an address at your domain, e.g. 'Oncology digest <digest@example.org>'"
        )
    return tuple(warnings)


def _is_loopback(host: str) -> bool:
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always this machine
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _clock_from(now: datetime) -> Clock:
    """``now``, moving on as time passes (leases and retry times stay true during a long send); no wall clock read."""
    start = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - start)


def select_for(store: Store, settings: Settings, period: Period, since: datetime | None = None) -> Selection:
    """The stories ``period``'s digest would carry, from the database as it is now (``since``: its floor, when
    known already)."""
    since = floor_of(store, period) if since is None else since
    return select(store.candidates(since, period.end, period.cadence), period, settings)


def floor_of(store: Store, period: Period) -> datetime:
    """Stories first seen from then on may go in ``period``'s digest (see ``select.floor``). A daily digest reaches
    back :data:`DAILY_REACH` at most: daily digests are made only while someone reads them, so the previous one may
    be months old (its readers switched, or left), and a new daily reader must not get those months at once."""
    last_end, first_start = store.floor_marks(period.start, period.cadence)
    since = floor(period, last_end, first_start)
    return max(since, period.start - DAILY_REACH) if period.cadence == "daily" else since


def ensure_digest(
    store: Store, settings: Settings, period: Period, now: datetime, *, topic_names: Mapping[str, str] | None = None
) -> tuple[Digest, bool]:
    """The period's digest, made (selected, rendered, its deliveries created) if it does not exist yet."""
    found = store.digest_by_period(period.key)
    if found is not None:
        return found, False

    since = floor_of(store, period)
    base = NewDigest(
        period=period.key,
        status="pending",
        period_start=period.start,
        period_end=period.end,
        due_at=period.due_at,
        created_at=now,
        cadence=period.cadence,
        since=since,
    )
    late = now - period.due_at
    if late > timedelta(hours=settings.digest.catch_up_hours):
        note = f"not sent: due {period.due_at:%Y-%m-%d %H:%M %Z}, {late.total_seconds() / 3600:.1f} h late"
        return store.create_digest(replace(base, status="skipped", note=note))
    selection = select_for(store, settings, period, since)
    if not selection.count and not settings.digest.send_empty:
        return store.create_digest(replace(base, status="empty", note="no new story"))
    rendered = compose.render_digest(selection, settings, topic_names=topic_names)
    made = replace(
        base, subject=rendered.subject, html=rendered.html, text=rendered.text, story_ids=selection.story_ids
    )
    editions: dict[tuple[tuple[str, ...], datetime | None], NewEdition] = {}
    windows: dict[datetime, Selection] = {}
    for _ in range(MAKE_TRIES):
        # Rendered once per distinct topic set and window, however many subscribers share them; the whole digest is
        # the edition of everyone who chose no topic and whose last digest ended where this one starts. Someone who
        # switched cadence gets what they were not sent yet: from where their last digest ended (decision 0021).
        for topics, covered in store.subscriber_windows(period.cadence):
            start = window_start(covered, since)
            if (topics, start) in editions or (not topics and start is None):
                continue
            if start is None:
                editions[topics, start] = edition(selection, topics, settings, topic_names=topic_names)
                continue
            if start not in windows:
                windows[start] = select(store.candidates(start, period.end, None), period, settings)
            own = edition(windows[start], topics, settings, topic_names=topic_names, always=True)
            editions[topics, start] = replace(own, since=start)
        try:
            return store.create_digest(replace(made, editions=tuple(editions.values())))
        except MissingEditionError:
            continue  # someone confirmed with a new topic set meanwhile: render theirs too
    raise RuntimeError(f"digest {period.key}: subscribers' topics kept changing while it was made")


def edition(
    selection: Selection,
    topics: Sequence[str],
    settings: Settings,
    *,
    topic_names: Mapping[str, str] | None = None,
    always: bool = False,
) -> NewEdition:
    """The digest for subscribers who chose ``topics`` (none: all of it); nothing rendered when none of its stories is
    in them (``always``: not even with no topic chosen, for a window of its own)."""
    chosen = for_topics(selection, topics)
    if (topics or always) and not chosen.count:
        return NewEdition(topics=tuple(topics), story_count=0)
    rendered = compose.render_digest(
        chosen, settings, elsewhere=selection.count - chosen.count, topic_names=topic_names
    )
    return NewEdition(tuple(topics), chosen.count, rendered.subject, rendered.html, rendered.text)


def send_due_digest(
    store: Store,
    settings: Settings,
    now: datetime,
    *,
    transports: Sequence[Transport] | None = None,
    clock: Clock | None = None,
    stop: Callable[[], bool] | None = None,
    topic_names: Mapping[str, str] | None = None,
) -> DigestReport:
    """Make the due period's digest (of each cadence offered) if it is not made yet, then deliver every digest that
    has deliveries due."""
    clock = clock or _clock_from(now)
    period = due_period(now, settings.digest)
    made = [(period, *ensure_digest(store, settings, period, now, topic_names=topic_names))]
    # Made only while someone chose it: no daily digest rows (and pages) for a newsletter nobody reads daily.
    if "daily" in settings.digest.cadences and store.has_subscribers("daily"):
        day = due_period(now, settings.digest, "daily")
        made.append((day, *ensure_digest(store, settings, day, now, topic_names=topic_names)))
    runs: list[DeliveryRun] = []
    open_ = store.open_digests()
    if open_:
        tokens = Tokens(signing_key(store, settings))
        own = transports is None
        active = open_transports(settings) if transports is None else transports
        pacer = Pacer(store, settings)
        try:
            for d in open_:
                run = deliver_digest(
                    store, settings, d, transports=active, tokens=tokens, clock=clock, stop=stop, pacer=pacer
                )
                runs.append(run)
                if run.error or run.paused or (stop is not None and stop()):
                    break  # the same server would answer the next digest the same way
        finally:
            if own:
                for t in active:
                    t.close()
    reports = []
    for due, digest, created in made:
        after = store.digest_by_period(due.key) or digest
        mine = runs if due.cadence == "weekly" else [r for r in runs if r.period == due.key]
        reports.append(DigestReport(due.key, after.status, created, after.story_count, tuple(mine), after.note))
    # The weekly report carries every run (older digests' retries too); the daily one its own.
    return replace(reports[0], daily=reports[1] if len(reports) > 1 else None)


def _preview_parts(
    store: Store,
    settings: Settings,
    now: datetime,
    period_key: str | None,
    topics: Sequence[str] = (),
    *,
    topic_names: Mapping[str, str] | None = None,
    cadence: Cadence = "weekly",
) -> tuple[Period, compose.Rendered, int, bool, Digest | None]:
    """The period, and what a subscriber who chose ``topics`` gets of its digest: the stored edition of a digest
    already made, else rendered from the database as it is now."""
    if period_key:
        period = period_for(period_key, settings.digest)
    else:
        # The next digest to go out: the due one if it would still be sent now, else the current week's.
        due = due_period(now, settings.digest, cadence)
        late = now - due.due_at > timedelta(hours=settings.digest.catch_up_hours)
        made = store.digest_by_period(due.key) is not None
        period = period_containing(now, settings.digest, cadence) if made or late else due
    found = store.digest_by_period(period.key)
    if found is not None and found.status in CARRYING:
        editions = store.editions(found.id).values()
        mine = [e for e in editions if topics and e.topics == tuple(sorted(topics)) and e.since is None]
        if mine:
            e = mine[0]
            return period, compose.Rendered(e.subject, e.html, e.text), e.story_count, True, found
        return period, compose.Rendered(found.subject, found.html, found.text), found.story_count, True, found
    selection = select_for(store, settings, period)
    theirs = edition(selection, topics, settings, topic_names=topic_names)
    return period, compose.Rendered(theirs.subject, theirs.html, theirs.text), theirs.story_count, False, None


def _one_message(
    settings: Settings,
    *,
    rendered: compose.Rendered,
    digest: Digest | None,
    period: Period,
    now: datetime,
    address: str,
    subscriber: Subscriber | None,
    tokens: Tokens,
) -> tuple[bytes, str, str]:
    """One recipient's message, as their delivery would build it, and the unsubscribe and preferences URLs it
    carries."""
    _, envelope_from = compose.sender(settings)
    domain = envelope_from.rpartition("@")[2]
    if subscriber is not None:
        url, mailto = unsubscribe_links(settings, tokens, subscriber.id, subscriber.email)
        prefs = preferences_url(settings.publish, tokens.preferences(subscriber.id, subscriber.email))
    else:  # nobody to unsubscribe: the links lead to the pages that say the link is not valid
        url = unsubscribe_url(settings.publish, "preview")
        prefs = preferences_url(settings.publish, "preview")
        mailto = f"mailto:{envelope_from}?subject=unsubscribe"
    stand_in = digest or Digest(
        id=0,
        period=period.key,
        status="pending",  # a stand-in, never stored
        period_start=period.start,
        period_end=period.end,
        due_at=period.due_at,
        created_at=now,
        sent_at=None,
        subject=rendered.subject,
        html="",
        text="",
        note=None,
    )
    template = compose.message_template(rendered, settings, now)
    message = template.build(
        compose.Recipient(
            address=address,
            unsubscribe_url=url,
            unsubscribe_mailto=mailto,
            message_id=compose.message_id(stand_in, subscriber.id if subscriber else 0, domain),
            preferences_url=prefs,
        )
    )
    return message, url, prefs


def preview_reader(store: Store, as_email: str | None) -> Subscriber:
    """Whom a preview is rendered for: the subscriber ``as_email`` names, else the first confirmed one."""
    if as_email is None:
        found = store.first_subscriber("confirmed")
        if found is None:
            raise UsageError("no confirmed subscriber; add one or pass --as")
        return found
    found = store.subscriber_by_email(normalize(as_email))
    if found is None:
        raise UsageError(f"--as {as_email}: no subscriber has this address ('subscribers list' shows them)")
    return found


def preview(
    store: Store,
    settings: Settings,
    now: datetime,
    out_dir: Path,
    *,
    period: str | None = None,
    as_email: str | None = None,
    topic_names: Mapping[str, str] | None = None,
) -> Preview:
    """Write what would be sent for ``period`` (default: the next digest to go out) to one subscriber; send nothing.

    The subscriber is the one ``as_email`` names, else the first confirmed one (:class:`UsageError` when there is
    none). ``<period>.eml`` is the message their delivery carries: their address, their signed unsubscribe link and,
    for a digest already made, their Message-ID; ``<period>.html`` and ``<period>.txt`` are its two parts, with the
    same links. A digest already made is shown exactly as stored; otherwise it is selected and rendered from the
    database as it is now, and nothing is written to the database (but the signing key, made on first use when
    ``NEWSLETTER_SECRET_KEY`` is not set: the link is the real one).
    """
    reader = preview_reader(store, as_email)
    address = normalize(reader.email)
    chosen, rendered, count, stored, digest = _preview_parts(
        store, settings, now, period, reader.topics, topic_names=topic_names, cadence=reader.cadence
    )
    message, url, prefs = _one_message(
        settings,
        rendered=rendered,
        digest=digest,
        period=chosen,
        now=now,
        address=address,
        subscriber=reader,
        tokens=Tokens(signing_key(store, settings)),
    )
    html, text = _fill(rendered, address, url, prefs)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{chosen.key}.{ext}" for ext in ("eml", "html", "txt")}
    paths["eml"].write_bytes(message)
    paths["html"].write_text(html, encoding="utf-8")
    paths["txt"].write_text(text, encoding="utf-8")
    return Preview(chosen.key, rendered.subject, count, address, paths["eml"], paths["html"], paths["txt"], stored)


def _fill(rendered: compose.Rendered, address: str, unsubscribe_url: str, prefs_url: str) -> tuple[str, str]:
    values = {"address": address, "unsubscribe_url": unsubscribe_url, "preferences_url": prefs_url}

    def put(doc: str, escape: bool) -> str:
        esc = html_lib.escape if escape else str
        for slot, value in values.items():
            doc = doc.replace(compose.SLOT.format(slot), esc(value))
        return doc

    return put(rendered.html, True), put(rendered.text, False)


def send_test(
    store: Store,
    settings: Settings,
    email: str,
    now: datetime,
    *,
    period: str | None = None,
    topic_names: Mapping[str, str] | None = None,
) -> SendResult:
    """Send the current preview to one address, through the configured transport. No delivery row is made."""
    address = normalize(email)
    found = store.subscriber_by_email(address)
    chosen, rendered, _count, _stored, digest = _preview_parts(
        store,
        settings,
        now,
        period,
        found.topics if found else (),
        topic_names=topic_names,
        cadence=found.cadence if found else "weekly",
    )
    tokens = Tokens(signing_key(store, settings))
    message, _, _ = _one_message(
        settings,
        rendered=rendered,
        digest=digest,
        period=chosen,
        now=now,
        address=address,
        subscriber=found,
        tokens=tokens,
    )
    try:
        return send_one(settings, address, message, f"test-{chosen.key}-{int(now.timestamp())}")
    except TransportError as exc:
        return SendResult("retry", str(exc))

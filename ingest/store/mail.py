"""Store queries for the email digest: subscribers, digests and their stories, deliveries (claim, outcome, settle).

Each function takes a :class:`~ingest.store.Store` and returns the frozen records defined here; rows never leave this
module. Delivery claiming is one function, :func:`claim_next`: a single UPDATE that takes the next due delivery of a
confirmed subscriber and puts a lease on it (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so several processes can share
a digest and a dead process's claim runs out. What a delivery becomes is decided by the caller; :func:`record` only
writes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Integer,
    Row,
    Text,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError

from ingest.core.models import SourceKind, Story
from ingest.store import Store, _story, schema

__all__ = [
    "CARRYING",
    "Candidate",
    "Delivery",
    "Digest",
    "NewDigest",
    "Origin",
    "Outcome",
    "Settled",
    "Subscriber",
    "SubscriberStatus",
    "candidates",
    "claim_next",
    "create_digest",
    "deliveries",
    "digest_by_period",
    "digest_stories",
    "digests",
    "expire_leases",
    "floor_marks",
    "insert_subscriber",
    "open_digests",
    "record",
    "record_and_claim",
    "request_subscription",
    "set_subscriber_status",
    "settle",
    "stored_secret",
    "subscriber_by_email",
    "subscriber_by_id",
    "subscriber_counts",
    "subscribers",
]

SubscriberStatus = Literal["pending", "confirmed", "unsubscribed", "bounced"]
OutcomeStatus = Literal["sent", "failed", "retry", "release"]

_sub = schema.subscriber
_dig = schema.digest
_ds = schema.digest_story
_del = schema.delivery
_st = schema.story
_si = schema.sighting
_src = schema.source

#: Digest statuses whose stories count as carried: a skipped or empty period carries none, so they roll over.
CARRYING = ("pending", "sent")


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str  # as stored: lower case, domain in ASCII (IDNA); the envelope recipient
    status: str  # pending | confirmed | unsubscribed | bounced
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    bounces: int
    last_request_at: datetime | None


@dataclass(frozen=True, slots=True)
class Digest:
    id: int
    period: str  # ISO week, e.g. 2026-W48
    status: str  # pending (delivering) | sent | skipped | empty
    period_start: datetime
    period_end: datetime
    due_at: datetime
    created_at: datetime
    sent_at: datetime | None
    subject: str
    html: str  # rendered once, with per-recipient slots still in (see newsletter.compose)
    text: str
    note: str | None
    story_count: int = 0


@dataclass(frozen=True, slots=True)
class NewDigest:
    """A digest to create, with its stories in order. Deliveries are made for ``pending`` ones only."""

    period: str
    status: str
    period_start: datetime
    period_end: datetime
    due_at: datetime
    created_at: datetime
    subject: str = ""
    html: str = ""
    text: str = ""
    note: str | None = None
    story_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    digest_id: int
    subscriber_id: int
    email: str  # the envelope recipient, from the subscriber row (never from a header)
    status: str  # pending | sending | sent | failed | cancelled
    attempts: int
    reply: str | None
    message_id: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    subscriber_bounces: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claimed delivery.

    ``sent`` and ``failed`` are final (``bounce`` counts a permanent failure against the subscriber); ``retry`` puts
    it back for ``next_attempt_at``; ``release`` puts it back untouched (it was never tried: the transport was down).
    """

    delivery_id: int
    subscriber_id: int
    status: OutcomeStatus
    at: datetime
    reply: str | None = None
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    bounce: bool = False
    reset_bounces: bool = False


@dataclass(frozen=True, slots=True)
class Settled:
    """A digest's deliveries by status after :func:`settle`, and when the earliest retry is due."""

    counts: dict[str, int]
    retry_at: datetime | None
    complete: bool  # nothing left to send: the digest is marked sent


@dataclass(frozen=True, slots=True)
class Origin:
    """One sighting of a candidate story, as the digest's selection needs it."""

    source_kind: SourceKind
    source_name: str  # the source's name; else a feed's URL; else a seed page's file name
    source_tags: tuple[str, ...]
    published: datetime | None
    first_seen: datetime
    source_first_seen: datetime  # the first sighting of its source: when that source was first read


@dataclass(frozen=True, slots=True)
class Candidate:
    story: Story
    origins: tuple[Origin, ...] = field(default=())


# ---- secrets ---------------------------------------------------------------------------------------------------


def stored_secret(store: Store, name: str, make: Callable[[], str]) -> tuple[str, bool]:
    """The value stored under ``name``, created with ``make()`` on first use. Returns (value, created).

    Two processes racing to create it both end with the one that was inserted first.
    """
    table = schema.meta
    with store.engine.begin() as conn:
        found = conn.execute(select(table.c.value).where(table.c.key == name)).scalar()
        if found is not None:
            return str(found), False
    try:
        with store.engine.begin() as conn:
            value = make()
            conn.execute(table.insert().values(key=name, value=value))
            return value, True
    except IntegrityError:
        with store.engine.connect() as conn:
            return str(conn.execute(select(table.c.value).where(table.c.key == name)).scalar_one()), False


# ---- subscribers -----------------------------------------------------------------------------------------------


def subscriber_by_email(store: Store, email: str) -> Subscriber | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(_sub).where(_sub.c.email == email)).first()
        return _subscriber(row) if row is not None else None


def subscriber_by_id(store: Store, subscriber_id: int) -> Subscriber | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(_sub).where(_sub.c.id == subscriber_id)).first()
        return _subscriber(row) if row is not None else None


def subscribers(store: Store, status: str | None = None) -> list[Subscriber]:
    query = select(_sub).order_by(_sub.c.email)
    if status is not None:
        query = query.where(_sub.c.status == status)
    with store.engine.connect() as conn:
        return [_subscriber(row) for row in conn.execute(query)]


def subscriber_counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(_sub.c.status, func.count()).group_by(_sub.c.status))
        return {str(status): int(n) for status, n in rows}


def insert_subscriber(store: Store, email: str, status: SubscriberStatus, now: datetime) -> Subscriber | None:
    """A new subscriber; None when the address is already there (whatever its status)."""
    try:
        with store.engine.begin() as conn:
            conn.execute(
                _sub.insert().values(
                    email=email,
                    status=status,
                    created_at=now,
                    confirmed_at=now if status == "confirmed" else None,
                    bounces=0,
                )
            )
            row = conn.execute(select(_sub).where(_sub.c.email == email)).one()
            return _subscriber(row)
    except IntegrityError:
        return None


def set_subscriber_status(
    store: Store,
    subscriber_id: int,
    status: SubscriberStatus,
    now: datetime,
    *,
    only_from: Sequence[str] | None = None,
) -> Subscriber | None:
    """Move a subscriber to ``status`` (only from one of ``only_from`` when given). Returns it after, or None when
    it does not exist or was not in an allowed status. Confirming clears the bounce count."""
    values: dict[str, Any] = {"status": status}
    if status == "confirmed":
        values.update(confirmed_at=now, unsubscribed_at=None, bounces=0)
    elif status == "unsubscribed":
        values["unsubscribed_at"] = now
    cond = _sub.c.id == subscriber_id
    if only_from is not None:
        cond = and_(cond, _sub.c.status.in_(list(only_from)))
    with store.engine.begin() as conn:
        changed = conn.execute(_sub.update().where(cond).values(**values)).rowcount
        if not changed:
            return None
        return _subscriber(conn.execute(select(_sub).where(_sub.c.id == subscriber_id)).one())


def request_subscription(store: Store, email: str, now: datetime, not_before: datetime) -> Subscriber | None:
    """Someone asked to subscribe ``email``: make or reopen a pending subscription, at most once per interval.

    Returns the subscriber when a confirmation should be mailed; None when the address is already confirmed, or
    when the previous request for it was made after ``not_before`` (the per-address rate limit). Checked and
    stamped in one statement, so two requests at once mail one confirmation.
    """
    insert_subscriber(store, email, "pending", now)  # no-op when it exists
    fresh = or_(_sub.c.last_request_at.is_(None), _sub.c.last_request_at <= not_before)
    with store.engine.begin() as conn:
        changed = conn.execute(
            _sub.update()
            .where(_sub.c.email == email, _sub.c.status != "confirmed", fresh)
            .values(status="pending", last_request_at=now)
        ).rowcount
        if not changed:
            return None
        return _subscriber(conn.execute(select(_sub).where(_sub.c.email == email)).one())


# ---- digests ---------------------------------------------------------------------------------------------------


def create_digest(store: Store, new: NewDigest) -> tuple[Digest, bool]:
    """Create the period's digest once: its row, its stories and (when ``pending``) one delivery per confirmed
    subscriber, in one transaction. Returns (digest, created); when the period exists already (another process, an
    earlier run), that digest is returned untouched."""
    try:
        with store.engine.begin() as conn:
            result = conn.execute(
                _dig.insert().values(
                    period=new.period,
                    status=new.status,
                    period_start=new.period_start,
                    period_end=new.period_end,
                    due_at=new.due_at,
                    created_at=new.created_at,
                    subject=new.subject,
                    html=new.html,
                    text=new.text,
                    note=new.note,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            digest_id = int(pk[0])
            if new.story_ids:
                conn.execute(
                    _ds.insert(),
                    [{"digest_id": digest_id, "story_id": sid, "position": i} for i, sid in enumerate(new.story_ids)],
                )
            if new.status == "pending":
                confirmed = (
                    select(_sub.c.id, literal(digest_id, Integer))
                    .where(_sub.c.status == "confirmed")
                    .order_by(_sub.c.id)
                )
                conn.execute(_del.insert().from_select(["subscriber_id", "digest_id"], confirmed))
                if conn.dialect.name == "postgresql":
                    # Thousands of rows just arrived: without fresh statistics every claim would scan and sort
                    # them all until autovacuum gets round to the table (measured: 21 ms a claim at 10,000).
                    conn.execute(text("ANALYZE delivery"))
            created = _digest_row(conn, new.period)
            assert created is not None
            return created, True
    except IntegrityError:
        found = digest_by_period(store, new.period)
        if found is None:
            raise
        return found, False


def digest_by_period(store: Store, period: str) -> Digest | None:
    with store.engine.connect() as conn:
        return _digest_row(conn, period)


def digests(store: Store, statuses: Iterable[str] | None = None, limit: int | None = None) -> list[Digest]:
    """Digests, newest period first, with how many stories each carries."""
    query = _digest_query().order_by(_dig.c.period_start.desc())
    if statuses is not None:
        query = query.where(_dig.c.status.in_(list(statuses)))
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        return [_digest(row) for row in conn.execute(query)]


def open_digests(store: Store) -> list[Digest]:
    """Digests still delivering (status pending), oldest first."""
    query = _digest_query().where(_dig.c.status == "pending").order_by(_dig.c.period_start)
    with store.engine.connect() as conn:
        return [_digest(row) for row in conn.execute(query)]


def floor_marks(store: Store, before: datetime) -> tuple[datetime | None, datetime | None]:
    """For a digest starting at ``before``: the end of the latest earlier digest that carried stories, and the start
    of the earliest digest of any status (None when there is none). See ``newsletter.digest.floor``."""
    with store.engine.connect() as conn:
        carried = conn.execute(
            select(func.max(_dig.c.period_end)).where(_dig.c.status.in_(CARRYING), _dig.c.period_start < before)
        ).scalar()
        first = conn.execute(select(func.min(_dig.c.period_start)).where(_dig.c.period_start < before)).scalar()
    return _aware(carried), _aware(first)


def candidates(store: Store, since: datetime, until: datetime) -> list[Candidate]:
    """Live stories first seen in [since, until) that no digest carries yet, with where each was seen."""
    carried = select(_ds.c.story_id)
    query = (
        _story_query()
        .where(_st.c.first_seen >= since, _st.c.first_seen < until, _st.c.id.not_in(carried))
        .order_by(_st.c.id)
    )
    with store.engine.connect() as conn:
        stories = [_story(row) for row in conn.execute(query)]
        return _with_origins(conn, stories)


def digest_stories(store: Store, digest_id: int) -> list[Candidate]:
    """The stories a digest carries, in its order (a story merged away since is followed to its survivor once)."""
    query = (
        _story_query()
        .join(_ds, _ds.c.story_id == _st.c.id)
        .where(_ds.c.digest_id == digest_id)
        .order_by(_ds.c.position)
    )
    with store.engine.connect() as conn:
        stories = [_story(row) for row in conn.execute(query)]
        return _with_origins(conn, stories)


def _story_query() -> Any:
    counts = select(_si.c.story_id, func.count().label("n")).group_by(_si.c.story_id).subquery()
    return (
        select(_st, func.coalesce(counts.c.n, 0).label("sightings"))
        .outerjoin(counts, counts.c.story_id == _st.c.id)
        .where(_st.c.merged_into.is_(None))
    )


def _with_origins(conn: Connection, stories: list[Story]) -> list[Candidate]:
    if not stories:
        return []
    first_read = select(_si.c.source_id, func.min(_si.c.first_seen).label("at")).group_by(_si.c.source_id).subquery()
    origins: dict[int, list[Origin]] = {}
    ids = [s.id for s in stories]
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        query = (
            select(
                _si.c.story_id,
                _si.c.published,
                _si.c.first_seen,
                _src.c.kind,
                _src.c.name,
                _src.c.location,
                _src.c.url,
                _src.c.tags,
                first_read.c.at,
            )
            .join(_src, _src.c.id == _si.c.source_id)
            .join(first_read, first_read.c.source_id == _si.c.source_id)
            .where(_si.c.story_id.in_(chunk))
            .order_by(_si.c.first_seen, _si.c.id)
        )
        for row in conn.execute(query):
            name = row.name or (row.url or row.location if row.kind == "feed" else PurePath(row.location).name)
            origins.setdefault(row.story_id, []).append(
                Origin(
                    source_kind=row.kind,
                    source_name=name,
                    source_tags=_tags(row.tags),
                    published=row.published,
                    first_seen=row.first_seen,
                    source_first_seen=_aware_required(row.at),
                )
            )
    return [Candidate(story=s, origins=tuple(origins.get(s.id, ()))) for s in stories]


# ---- deliveries ------------------------------------------------------------------------------------------------


# Built once: a claim runs once per message, and building these expressions costs more than running them.
_NOW = bindparam("p_now", type_=schema.UtcDateTime())
_DUE = or_(
    and_(_del.c.status == "pending", or_(_del.c.next_attempt_at.is_(None), _del.c.next_attempt_at <= _NOW)),
    and_(_del.c.status == "sending", _del.c.lease_until <= _NOW),
)
# Walks the digest's deliveries in subscriber order from a cursor, on the (digest_id, subscriber_id) unique index:
# each claim reads a few index entries instead of every delivery already sent.
_PICK = (
    select(_del.c.id)
    .join(_sub, _sub.c.id == _del.c.subscriber_id)
    .where(
        _del.c.digest_id == bindparam("p_digest"),
        _del.c.subscriber_id > bindparam("p_after"),
        # The same bound again, on the joined table: PostgreSQL does not carry it across the join, and would walk
        # the subscribers from the first one at every claim (measured: 1.6 ms a claim half way through 10,000).
        _sub.c.id > bindparam("p_after"),
        _sub.c.status == "confirmed",
        _DUE,
    )
    .order_by(_del.c.subscriber_id)
    .limit(1)
)


def _claim_statement(locking: bool) -> Any:
    pick = _PICK.with_for_update(skip_locked=True, of=_del) if locking else _PICK
    return (
        _del.update()
        .where(_del.c.id == pick.scalar_subquery(), _DUE)
        .values(
            status="sending",
            lease_owner=bindparam("p_owner"),
            lease_until=bindparam("p_until", type_=schema.UtcDateTime()),
            attempts=_del.c.attempts + 1,
        )
        .returning(
            *_del.c,
            select(_sub.c.email).where(_sub.c.id == _del.c.subscriber_id).scalar_subquery().label("email"),
            select(_sub.c.bounces)
            .where(_sub.c.id == _del.c.subscriber_id)
            .scalar_subquery()
            .label("subscriber_bounces"),
        )
    )


_CLAIM = _claim_statement(locking=False)
_CLAIM_SKIP_LOCKED = _claim_statement(locking=True)  # PostgreSQL: processes sharing a digest never wait on each other
_RECORD = (
    _del.update()
    .where(_del.c.id == bindparam("p_id"), _del.c.status == "sending", _del.c.lease_owner == bindparam("p_owner"))
    .values(
        status=bindparam("p_status"),
        sent_at=bindparam("p_sent_at", type_=schema.UtcDateTime()),
        next_attempt_at=bindparam("p_next", type_=schema.UtcDateTime()),
        reply=func.coalesce(bindparam("p_reply", type_=Text()), _del.c.reply),
        message_id=func.coalesce(bindparam("p_message_id", type_=Text()), _del.c.message_id),
        attempts=_del.c.attempts - bindparam("p_undo", type_=Integer()),
        lease_owner=None,
        lease_until=None,
    )
)
_BOUNCE = (
    _sub.update()
    .where(_sub.c.id == bindparam("p_id"))
    .values(
        bounces=_sub.c.bounces + 1,
        status=case(
            (and_(_sub.c.status == "confirmed", _sub.c.bounces + 1 >= bindparam("p_limit")), "bounced"),
            else_=_sub.c.status,
        ),
    )
)
_UNBOUNCE = _sub.update().where(_sub.c.id == bindparam("p_id"), _sub.c.bounces > 0).values(bounces=0)


def claim_next(
    store: Store,
    digest_id: int,
    owner: str,
    now: datetime,
    lease_until: datetime,
    *,
    after: int = 0,
) -> Delivery | None:
    """Claim the next delivery of a digest for ``owner``, in one statement (and one transaction).

    It is the delivery of this digest with the lowest subscriber id above ``after`` (the caller's cursor:
    the previous claim's subscriber id; 0 to start over) whose subscriber is confirmed NOW (someone who unsubscribed
    a second ago is skipped), and that is pending and due, or ``sending`` under a lease that ran out (its process died
    mid-send). It becomes ``sending``, leased to ``owner`` until ``lease_until``, its attempts counted. Returns None
    when there is none past ``after``. On SQLite the first statement is a write, so the transaction takes the write
    lock at once and never works on a stale snapshot; on PostgreSQL the pick skips rows other processes hold.
    """
    with store.engine.begin() as conn:
        return _claim(conn, digest_id, owner, now, lease_until, after=after)


def record_and_claim(
    store: Store,
    outcome: Outcome | None,
    digest_id: int,
    owner: str,
    *,
    now: datetime,
    lease_until: datetime,
    after: int,
    bounce_limit: int = 3,
) -> Delivery | None:
    """:func:`record` ``outcome`` (when there is one), then :func:`claim_next` past ``after`` and, when nothing is
    left past it, from the start: one transaction for what would be two or three, which is most of a sender's
    database work per message."""
    with store.engine.begin() as conn:
        if outcome is not None:
            _record(conn, outcome, owner, bounce_limit)
        found = _claim(conn, digest_id, owner, now, lease_until, after=after)
        if found is None and after:
            found = _claim(conn, digest_id, owner, now, lease_until, after=0)
        return found


def _claim(
    conn: Connection, digest_id: int, owner: str, now: datetime, lease_until: datetime, *, after: int
) -> Delivery | None:
    claim = _CLAIM_SKIP_LOCKED if conn.dialect.name == "postgresql" else _CLAIM
    row = conn.execute(
        claim,
        {"p_digest": digest_id, "p_after": after, "p_now": now, "p_owner": owner, "p_until": lease_until},
    ).first()
    return _delivery(row) if row is not None else None


def record(store: Store, outcome: Outcome, owner: str, *, bounce_limit: int = 3) -> None:
    """Write what became of a delivery ``owner`` claimed, and count or clear the subscriber's bounces, in one
    transaction. Nothing happens when the claim is no longer ``owner``'s (its lease ran out and another process took
    the delivery over: that process's outcome is the one that counts)."""
    with store.engine.begin() as conn:
        _record(conn, outcome, owner, bounce_limit)


def _record(conn: Connection, outcome: Outcome, owner: str, bounce_limit: int) -> None:
    status = {"sent": "sent", "failed": "failed", "retry": "pending", "release": "pending"}[outcome.status]
    values = {
        "p_id": outcome.delivery_id,
        "p_owner": owner,
        "p_status": status,
        "p_sent_at": outcome.at if outcome.status == "sent" else None,
        "p_next": outcome.next_attempt_at if outcome.status == "retry" else None,
        "p_reply": outcome.reply,
        "p_message_id": outcome.message_id,
        "p_undo": 1 if outcome.status == "release" else 0,  # never tried: the attempt does not count
    }
    if not conn.execute(_RECORD, values).rowcount:
        return
    if outcome.bounce:
        conn.execute(_BOUNCE, {"p_id": outcome.subscriber_id, "p_limit": bounce_limit})
    elif outcome.reset_bounces:
        conn.execute(_UNBOUNCE, {"p_id": outcome.subscriber_id})


def expire_leases(store: Store, now: datetime) -> int:
    """End every claim now, so deliveries left ``sending`` by a dead process are taken again at once rather than when
    their lease runs out. Only for a caller that knows no other process is sending (the single-instance lock of
    ``newsletter run`` on SQLite). Returns how many claims it ended."""
    with store.engine.begin() as conn:
        return int(
            conn.execute(
                _del.update().where(_del.c.status == "sending", _del.c.lease_until > now).values(lease_until=now)
            ).rowcount
        )


def settle(store: Store, digest_id: int, now: datetime) -> Settled:
    """Cancel what is pending for subscribers no longer confirmed; mark the digest sent when nothing is left."""
    gone = select(_sub.c.id).where(_sub.c.status != "confirmed")
    with store.engine.begin() as conn:
        conn.execute(
            _del.update()
            .where(_del.c.digest_id == digest_id, _del.c.status == "pending", _del.c.subscriber_id.in_(gone))
            .values(status="cancelled", next_attempt_at=None)
        )
        counts = {
            str(status): int(n)
            for status, n in conn.execute(
                select(_del.c.status, func.count()).where(_del.c.digest_id == digest_id).group_by(_del.c.status)
            )
        }
        retry_at = conn.execute(
            select(func.min(_del.c.next_attempt_at)).where(_del.c.digest_id == digest_id, _del.c.status == "pending")
        ).scalar()
        complete = not counts.get("pending") and not counts.get("sending")
        if complete:
            conn.execute(
                _dig.update()
                .where(_dig.c.id == digest_id, _dig.c.status == "pending")
                .values(status="sent", sent_at=now)
            )
    return Settled(counts=counts, retry_at=_aware(retry_at), complete=complete)


def deliveries(store: Store, digest_id: int) -> list[Delivery]:
    with store.engine.connect() as conn:
        query = _delivery_query().where(_del.c.digest_id == digest_id).order_by(_del.c.id)
        return [_delivery(row) for row in conn.execute(query)]


# ---- rows to records -------------------------------------------------------------------------------------------


def _delivery_query() -> Any:
    return select(_del, _sub.c.email, _sub.c.bounces.label("subscriber_bounces")).join(
        _sub, _sub.c.id == _del.c.subscriber_id
    )


def _digest_query() -> Any:
    counts = select(_ds.c.digest_id, func.count().label("n")).group_by(_ds.c.digest_id).subquery()
    return select(_dig, func.coalesce(counts.c.n, 0).label("story_count")).outerjoin(
        counts, counts.c.digest_id == _dig.c.id
    )


def _digest_row(conn: Connection, period: str) -> Digest | None:
    row = conn.execute(_digest_query().where(_dig.c.period == period)).first()
    return _digest(row) if row is not None else None


def _aware(value: Any) -> datetime | None:
    """min() and max() keep their column's type, so they come back as aware datetimes like the column."""
    assert value is None or (isinstance(value, datetime) and value.tzinfo is not None), value
    return value


def _aware_required(value: Any) -> datetime:
    result = _aware(value)
    assert result is not None
    return result


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(value or ())


def _subscriber(row: Row[Any]) -> Subscriber:
    m = row._mapping
    return Subscriber(
        id=m["id"],
        email=m["email"],
        status=m["status"],
        created_at=m["created_at"],
        confirmed_at=m["confirmed_at"],
        unsubscribed_at=m["unsubscribed_at"],
        bounces=m["bounces"],
        last_request_at=m["last_request_at"],
    )


def _digest(row: Row[Any]) -> Digest:
    m = row._mapping
    return Digest(
        id=m["id"],
        period=m["period"],
        status=m["status"],
        period_start=m["period_start"],
        period_end=m["period_end"],
        due_at=m["due_at"],
        created_at=m["created_at"],
        sent_at=m["sent_at"],
        subject=m["subject"],
        html=m["html"],
        text=m["text"],
        note=m["note"],
        story_count=int(m.get("story_count", 0) or 0),
    )


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(
        id=m["id"],
        digest_id=m["digest_id"],
        subscriber_id=m["subscriber_id"],
        email=m["email"],
        status=m["status"],
        attempts=m["attempts"],
        reply=m["reply"],
        message_id=m["message_id"],
        next_attempt_at=m["next_attempt_at"],
        sent_at=m["sent_at"],
        lease_owner=m["lease_owner"],
        lease_until=m["lease_until"],
        subscriber_bounces=int(m.get("subscriber_bounces", 0) or 0),
    )


def delivery_counts(store: Store, digest_id: int) -> dict[str, int]:
    """A digest's deliveries by status (read only; :func:`settle` also cancels and completes)."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(_del.c.status, func.count()).where(_del.c.digest_id == digest_id).group_by(_del.c.status)
        )
        return {str(status): int(n) for status, n in rows}


def stories_first_seen_between(store: Store, since: datetime, until: datetime) -> int:
    with store.engine.connect() as conn:
        query = (
            select(func.count())
            .select_from(_st)
            .where(_st.c.merged_into.is_(None), _st.c.first_seen >= since, _st.c.first_seen < until)
        )
        return int(conn.execute(query).scalar_one())

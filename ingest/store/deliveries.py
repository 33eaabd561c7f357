"""Deliveries: one row per (digest, subscriber). Claiming is one statement (:meth:`DeliveriesMixin.claim_next`): a
single UPDATE that takes the next due delivery of a confirmed subscriber and puts a lease on it (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), so several processes share a digest and a dead process's claim runs out. What a delivery
becomes is decided by the sender (``newsletter.digest``); this module only writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, Text, and_, bindparam, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from ingest.core.links import is_row_id
from ingest.core.models import BounceKind, BounceLimits, Delivery, Outcome, Settled, Subscriber
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.rows import aware, record

__all__ = ["DeliveriesMixin"]

DEFAULT_LIMITS = BounceLimits()

_sub = schema.subscriber
_dig = schema.digest
_del = schema.delivery
_slot = schema.send_slot

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
            select(_sub.c.soft_bounces)
            .where(_sub.c.id == _del.c.subscriber_id)
            .scalar_subquery()
            .label("subscriber_soft_bounces"),
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
        bounce=bindparam("p_bounce", type_=Text()),
        lease_owner=None,
        lease_until=None,
    )
)


def _bounce_statement(count: Any) -> Any:
    """One more bounce in ``count``; the subscriber is ``bounced`` once it reaches the limit."""
    return (
        _sub.update()
        .where(_sub.c.id == bindparam("p_id"))
        .values(
            {
                count: count + 1,
                _sub.c.status: case(
                    (and_(_sub.c.status == "confirmed", count + 1 >= bindparam("p_limit")), "bounced"),
                    else_=_sub.c.status,
                ),
            }
        )
    )


_BOUNCE = {"hard": _bounce_statement(_sub.c.bounces), "soft": _bounce_statement(_sub.c.soft_bounces)}
_UNBOUNCE = (
    _sub.update()
    .where(_sub.c.id == bindparam("p_id"), or_(_sub.c.bounces > 0, _sub.c.soft_bounces > 0))
    .values(bounces=0, soft_bounces=0)
)


class DeliveriesMixin(StoreBase):
    def claim_next(
        self,
        digest_id: int,
        owner: str,
        now: datetime,
        lease_until: datetime,
        *,
        after: int = 0,
    ) -> Delivery | None:
        """Claim the next delivery of a digest for ``owner``, in one statement (and one transaction).

        It is the delivery of this digest with the lowest subscriber id above ``after`` (the caller's cursor: the
        previous claim's subscriber id; 0 to start over) whose subscriber is confirmed NOW (someone who unsubscribed a
        second ago is skipped), and that is pending and due, or ``sending`` under a lease that ran out (its process
        died mid-send). It becomes ``sending``, leased to ``owner`` until ``lease_until``, its attempts counted.
        Returns None when there is none past ``after``. On SQLite the first statement is a write, so the transaction
        takes the write lock at once and never works on a stale snapshot; on PostgreSQL the pick skips rows other
        processes hold.
        """
        with self.engine.begin() as conn:
            return _claim(conn, digest_id, owner, now, lease_until, after=after)

    def record_and_claim(
        self,
        outcomes: Sequence[Outcome],
        digest_id: int,
        owner: str,
        *,
        now: datetime,
        lease_until: datetime,
        after: int,
        limits: BounceLimits = DEFAULT_LIMITS,
    ) -> Delivery | None:
        """:func:`record` ``outcomes`` (usually one, or none), then :func:`claim_next` past ``after`` and, when nothing
        is left past it, from the start: one transaction for what would be two or three, which is most of a sender's
        database work per message."""
        with self.engine.begin() as conn:
            for outcome in outcomes:
                _record(conn, outcome, owner, limits)
            found = _claim(conn, digest_id, owner, now, lease_until, after=after)
            if found is None and after:
                found = _claim(conn, digest_id, owner, now, lease_until, after=0)
            return found

    def record_outcomes(
        self, outcomes: Sequence[Outcome], owner: str, *, limits: BounceLimits = DEFAULT_LIMITS
    ) -> None:
        """Write what became of deliveries ``owner`` claimed, and count or clear their subscribers' bounces, in one
        transaction. Nothing happens to a delivery whose claim is no longer ``owner``'s (its lease ran out and another
        process took it over: that process's outcome is the one that counts)."""
        with self.engine.begin() as conn:
            for outcome in outcomes:
                _record(conn, outcome, owner, limits)

    def reserve_send_slot(self, budgets: Sequence[tuple[str, float]], now: float) -> float:
        """When one message may go (seconds since the epoch), reserved in every budget of ``budgets`` ((key, seconds
        per message): ``"*"`` for all mail, else a recipient domain) among every process sharing the database.

        Each budget gives its next free slot (not before ``now``) and moves on by its interval; the message goes at
        the latest of its slots. A slot is taken whether or not the message waits longer for another budget, so a
        slow domain never slows the rest of the mail (at worst a message held for its domain goes out beside the
        next one: a burst of one per connection). One transaction; budgets are locked in key order (two processes
        never wait on each other in a cycle), and its first statement is a write (SQLite's write lock is taken at
        once, never upgraded from a stale read)."""
        intervals = dict(budgets)
        start = now
        with self.engine.begin() as conn:
            for key in sorted(intervals):
                slot = max(now, _touch_slot(conn, key))
                conn.execute(_slot.update().where(_slot.c.key == key).values(next_at=slot + intervals[key]))
                start = max(start, slot)
        return start

    def postpone(self, digest_id: int, until: datetime) -> int:
        """Every pending delivery of the digest due before ``until`` waits until then (its attempts untouched): the
        mail server asked us to stop. Returns how many now wait."""
        with self.engine.begin() as conn:
            due_before = or_(_del.c.next_attempt_at.is_(None), _del.c.next_attempt_at < until)
            return int(
                conn.execute(
                    _del.update()
                    .where(_del.c.digest_id == digest_id, _del.c.status == "pending", due_before)
                    .values(next_attempt_at=until)
                ).rowcount
            )

    def expire_leases(self, now: datetime) -> int:
        """End every claim now, so deliveries left ``sending`` by a dead process are taken again at once rather than
        when their lease runs out. Only for a caller that knows no other process is sending (the single-instance lock
        of ``newsletter run`` on SQLite). Returns how many claims it ended."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    _del.update().where(_del.c.status == "sending", _del.c.lease_until > now).values(lease_until=now)
                ).rowcount
            )

    def settle(self, digest_id: int, now: datetime, *, note: str | None = None) -> Settled:
        """Cancel what is pending for subscribers no longer confirmed; mark the digest sent when nothing is left.
        ``note`` is why the digest is still pending (a run stopped early), kept on the digest while it is; done,
        the digest keeps none."""
        gone = select(_sub.c.id).where(_sub.c.status != "confirmed")
        with self.engine.begin() as conn:
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
                select(func.min(_del.c.next_attempt_at)).where(
                    _del.c.digest_id == digest_id, _del.c.status == "pending"
                )
            ).scalar()
            complete = not counts.get("pending") and not counts.get("sending")
            done = {"status": "sent", "sent_at": now, "note": None}
            conn.execute(
                _dig.update()
                .where(_dig.c.id == digest_id, _dig.c.status == "pending")
                .values(done if complete else {"note": note})
            )
        return Settled(counts=counts, retry_at=aware(retry_at), complete=complete)

    def record_late_bounce(
        self, delivery_id: int, kind: BounceKind, reply: str, *, limits: BounceLimits = DEFAULT_LIMITS
    ) -> Subscriber | None:
        """A delivery the server took (``sent``) did not arrive after all: a delivery report or a relay's event said
        so later. It becomes ``failed`` with ``reply``, and its subscriber's count of that kind becomes at least the
        streak of such bounces among their latest deliveries up to this one (a delivery that went through since
        cleared the count; a report arriving later restores it), ``bounced`` at the limit. Returns the subscriber
        after, or None when the delivery was not ``sent`` (a report read twice, or about a failure counted already):
        nothing counts twice."""
        limit = limits.hard if kind == "hard" else limits.soft
        count = _sub.c.bounces if kind == "hard" else _sub.c.soft_bounces
        with self.engine.begin() as conn:
            changed = conn.execute(
                _del.update()
                .where(_del.c.id == delivery_id, _del.c.status == "sent")
                .values(status="failed", bounce=kind, reply=reply)
                .returning(_del.c.subscriber_id)
            ).first()
            if changed is None:
                return None
            subscriber_id = int(changed[0])
            latest = conn.execute(
                select(_del.c.bounce)
                .where(_del.c.subscriber_id == subscriber_id, _del.c.id <= delivery_id)
                .order_by(_del.c.id.desc())
                .limit(limit)
            ).scalars()
            streak = 0
            for bounce in latest:
                if bounce != kind:
                    break
                streak += 1
            values: dict[Any, Any] = {count: case((count < streak, streak), else_=count)}
            if streak >= limit:
                values[_sub.c.status] = case((_sub.c.status == "confirmed", "bounced"), else_=_sub.c.status)
            conn.execute(_sub.update().where(_sub.c.id == subscriber_id).values(values))
            return record(Subscriber, conn.execute(select(_sub).where(_sub.c.id == subscriber_id)).one())

    def delivery(self, delivery_id: int) -> Delivery | None:
        if not is_row_id(delivery_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(_delivery_query().where(_del.c.id == delivery_id)).first()
            return record(Delivery, row) if row is not None else None

    def delivery_of(self, digest_id: int, subscriber_id: int) -> Delivery | None:
        if not (is_row_id(digest_id) and is_row_id(subscriber_id)):
            return None
        with self.engine.connect() as conn:
            query = _delivery_query().where(_del.c.digest_id == digest_id, _del.c.subscriber_id == subscriber_id)
            row = conn.execute(query).first()
            return record(Delivery, row) if row is not None else None

    def latest_delivery(self, subscriber_id: int) -> Delivery | None:
        """The subscriber's most recent delivery that went out (sent, or failed at once)."""
        with self.engine.connect() as conn:
            query = (
                _delivery_query()
                .where(_del.c.subscriber_id == subscriber_id, _del.c.status.in_(["sent", "failed"]))
                .order_by(_del.c.id.desc())
                .limit(1)
            )
            row = conn.execute(query).first()
            return record(Delivery, row) if row is not None else None

    def deliveries(self, digest_id: int) -> list[Delivery]:
        with self.engine.connect() as conn:
            query = _delivery_query().where(_del.c.digest_id == digest_id).order_by(_del.c.id)
            return [record(Delivery, row) for row in conn.execute(query)]

    def delivery_counts(self, digest_id: int | None = None) -> dict[str, int]:
        """A digest's deliveries by status (every digest's without ``digest_id``). Read only: :meth:`settle` also
        cancels and completes."""
        query = select(_del.c.status, func.count()).group_by(_del.c.status)
        if digest_id is not None:
            query = query.where(_del.c.digest_id == digest_id)
        with self.engine.connect() as conn:
            return {str(status): int(n) for status, n in conn.execute(query)}


def _claim(
    conn: Connection, digest_id: int, owner: str, now: datetime, lease_until: datetime, *, after: int
) -> Delivery | None:
    claim = _CLAIM_SKIP_LOCKED if conn.dialect.name == "postgresql" else _CLAIM
    row = conn.execute(
        claim,
        {"p_digest": digest_id, "p_after": after, "p_now": now, "p_owner": owner, "p_until": lease_until},
    ).first()
    return record(Delivery, row) if row is not None else None


def _touch_slot(conn: Connection, key: str) -> float:
    """Lock budget ``key``'s row (made at 0 the first time) and return its next free time."""
    touch = _slot.update().where(_slot.c.key == key).values(next_at=_slot.c.next_at).returning(_slot.c.next_at)
    found = conn.execute(touch).scalar()
    if found is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(_slot).values(key=key, next_at=0.0).on_conflict_do_nothing())
        found = conn.execute(touch).scalar_one()
    return float(found)


def _record(conn: Connection, outcome: Outcome, owner: str, limits: BounceLimits) -> None:
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
        "p_bounce": outcome.bounce,
    }
    if not conn.execute(_RECORD, values).rowcount:
        return
    if outcome.bounce is not None:
        limit = limits.hard if outcome.bounce == "hard" else limits.soft
        conn.execute(_BOUNCE[outcome.bounce], {"p_id": outcome.subscriber_id, "p_limit": limit})
    elif outcome.reset_bounces:
        conn.execute(_UNBOUNCE, {"p_id": outcome.subscriber_id})


def _delivery_query() -> Any:
    return select(
        _del,
        _sub.c.email,
        _sub.c.bounces.label("subscriber_bounces"),
        _sub.c.soft_bounces.label("subscriber_soft_bounces"),
    ).join(_sub, _sub.c.id == _del.c.subscriber_id)

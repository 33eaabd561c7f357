"""Subscribers: their addresses, statuses (pending, confirmed, unsubscribed, bounced) and chosen topics, the
per-address limit on confirmation requests, and the subscribe form's requests of the last hour (its
per-client limit and hourly cap on confirmation mails). Whether an address is valid is decided before it reaches here
(``newsletter.subscribers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from ingest.core.links import is_row_id
from ingest.core.models import RequestCounts, Subscriber, SubscriberStatus
from ingest.store import locks, schema
from ingest.store.base import StoreBase
from ingest.store.rows import record

__all__ = ["SubscribersMixin"]

_sub = schema.subscriber
_req = schema.subscribe_request
#: The PostgreSQL advisory lock that makes the subscribe form's counts one at a time (any constant; "subscr").
_REQUESTS_LOCK = "subscribe-requests"  # an advisory lock's name (ingest.store.locks)


class SubscribersMixin(StoreBase):
    def subscriber_by_email(self, email: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_sub).where(_sub.c.email == email)).first()
            return record(Subscriber, row) if row is not None else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        if not is_row_id(subscriber_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(_sub).where(_sub.c.id == subscriber_id)).first()
            return record(Subscriber, row) if row is not None else None

    def first_subscriber(self, status: SubscriberStatus) -> Subscriber | None:
        """The longest-standing subscriber with ``status`` (the lowest id), or None."""
        query = select(_sub).where(_sub.c.status == status).order_by(_sub.c.id).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            return record(Subscriber, row) if row is not None else None

    def subscribers(self, status: SubscriberStatus | None = None) -> list[Subscriber]:
        query = select(_sub).order_by(_sub.c.email)
        if status is not None:
            query = query.where(_sub.c.status == status)
        with self.engine.connect() as conn:
            return [record(Subscriber, row) for row in conn.execute(query)]

    def subscriber_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_sub.c.status, func.count()).group_by(_sub.c.status))
            return {str(status): int(n) for status, n in rows}

    def insert_subscriber(
        self,
        email: str,
        status: SubscriberStatus,
        now: datetime,
        *,
        topics: Sequence[str] = (),
    ) -> Subscriber | None:
        """A new subscriber; None when the address is already there (whatever its status)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    _sub.insert().values(
                        email=email,
                        status=status,
                        created_at=now,
                        confirmed_at=now if status == "confirmed" else None,
                        bounces=0,
                        soft_bounces=0,
                        topics=sorted(set(topics)),
                    )
                )
                row = conn.execute(select(_sub).where(_sub.c.email == email)).one()
                return record(Subscriber, row)
        except IntegrityError:
            return None

    def set_subscriber_status(
        self,
        subscriber_id: int,
        status: SubscriberStatus,
        now: datetime,
        *,
        only_from: Sequence[SubscriberStatus] | None = None,
    ) -> Subscriber | None:
        """Move a subscriber to ``status`` (only from one of ``only_from`` when given). Returns it after, or None when
        it does not exist or was not in an allowed status. Confirming clears both bounce counts."""
        values: dict[str, Any] = {"status": status}
        if status == "confirmed":
            values.update(confirmed_at=now, unsubscribed_at=None, bounces=0, soft_bounces=0)
        elif status == "unsubscribed":
            values["unsubscribed_at"] = now
        cond = _sub.c.id == subscriber_id
        if only_from is not None:
            cond = and_(cond, _sub.c.status.in_(list(only_from)))
        with self.engine.begin() as conn:
            changed = conn.execute(_sub.update().where(cond).values(**values)).rowcount
            if not changed:
                return None
            return record(Subscriber, conn.execute(select(_sub).where(_sub.c.id == subscriber_id)).one())

    def set_subscriber_topics(self, subscriber_id: int, topics: Sequence[str]) -> Subscriber | None:
        """Change a subscriber's topics (none: every topic); returns it after, None when unknown."""
        with self.engine.begin() as conn:
            conn.execute(_sub.update().where(_sub.c.id == subscriber_id).values(topics=sorted(set(topics))))
            row = conn.execute(select(_sub).where(_sub.c.id == subscriber_id)).first()
            return record(Subscriber, row) if row is not None else None

    def request_subscription(
        self,
        email: str,
        now: datetime,
        not_before: datetime,
        *,
        topics: Sequence[str] = (),
    ) -> Subscriber | None:
        """Someone asked to subscribe ``email``: make or reopen a pending subscription, at most once per interval.

        Returns the subscriber when a confirmation should be mailed; None when the address is already confirmed (or
        complained: it is never mailed again), or
        when the previous request for it was made after ``not_before`` (the per-address rate limit). Checked and
        stamped in one statement, so two requests at once mail one confirmation. The request's ``topics`` are kept
        only with a request that goes through: a stranger cannot change a confirmed subscriber's choice.
        """
        self.insert_subscriber(email, "pending", now, topics=topics)  # no-op when it exists
        fresh = or_(_sub.c.last_request_at.is_(None), _sub.c.last_request_at <= not_before)
        with self.engine.begin() as conn:
            changed = conn.execute(
                _sub.update()
                # A complaint suppresses the address: nobody may make us mail it again, not even a confirmation.
                .where(_sub.c.email == email, _sub.c.status.notin_(["confirmed", "complained"]), fresh)
                .values(status="pending", last_request_at=now, topics=sorted(set(topics)))
            ).rowcount
            if not changed:
                return None
            return record(Subscriber, conn.execute(select(_sub).where(_sub.c.email == email)).one())

    def note_subscribe_request(self, client: str, now: datetime, since: datetime) -> RequestCounts:
        """Record a subscribe form request from ``client`` at ``now``; count what came after ``since`` (this one
        included). Older rows are dropped on the way: the limits look back no further.

        Requests are counted one at a time among every process sharing the database, so a flood at once cannot slip
        past a limit between two counts."""
        with self.engine.begin() as conn:
            _one_at_a_time(conn)
            conn.execute(_req.delete().where(_req.c.at <= since))
            rid = conn.execute(
                _req.insert().values(client=client, at=now, mailed=False).returning(_req.c.id)
            ).scalar_one()
            mine = select(func.count()).where(_req.c.client == client, _req.c.at > since)
            return RequestCounts(
                id=int(rid),
                client_requests=int(conn.execute(mine).scalar_one()),
                mails=_mails(conn, since),
            )

    def claim_confirmation_mail(self, request_id: int, since: datetime, cap: int) -> bool:
        """Count request ``request_id``'s confirmation mail against the cap of ``cap`` mails after ``since`` (0: no
        cap). False when the cap is reached: then no mail may go out for it."""
        with self.engine.begin() as conn:
            _one_at_a_time(conn)
            mark = _req.update().where(_req.c.id == request_id)
            conn.execute(mark.values(mailed=True))  # written first: see _one_at_a_time
            if cap and _mails(conn, since) > cap:
                conn.execute(mark.values(mailed=False))
                return False
            return True


def _one_at_a_time(conn: Connection) -> None:
    """Serialize the subscribe form's counting transactions. PostgreSQL: an advisory lock until the transaction ends.
    SQLite needs none: each such transaction writes first, and so holds the one write lock from its start."""
    if conn.dialect.name == "postgresql":
        locks.hold_for_transaction(conn, _REQUESTS_LOCK)


def _mails(conn: Connection, since: datetime) -> int:
    query = select(func.count()).where(_req.c.mailed.is_(True), _req.c.at > since)
    return int(conn.execute(query).scalar_one())

"""Subscribers: their addresses and statuses (pending, confirmed, unsubscribed, bounced), and the per-address limit on
confirmation requests. Whether an address is valid is decided before it reaches here (``newsletter.subscribers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from ingest.core.models import Subscriber, SubscriberStatus
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.rows import record

__all__ = ["SubscribersMixin"]

_sub = schema.subscriber


class SubscribersMixin(StoreBase):
    def subscriber_by_email(self, email: str) -> Subscriber | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_sub).where(_sub.c.email == email)).first()
            return record(Subscriber, row) if row is not None else None

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
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

    def insert_subscriber(self, email: str, status: SubscriberStatus, now: datetime) -> Subscriber | None:
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

    def request_subscription(self, email: str, now: datetime, not_before: datetime) -> Subscriber | None:
        """Someone asked to subscribe ``email``: make or reopen a pending subscription, at most once per interval.

        Returns the subscriber when a confirmation should be mailed; None when the address is already confirmed, or
        when the previous request for it was made after ``not_before`` (the per-address rate limit). Checked and
        stamped in one statement, so two requests at once mail one confirmation.
        """
        self.insert_subscriber(email, "pending", now)  # no-op when it exists
        fresh = or_(_sub.c.last_request_at.is_(None), _sub.c.last_request_at <= not_before)
        with self.engine.begin() as conn:
            changed = conn.execute(
                _sub.update()
                .where(_sub.c.email == email, _sub.c.status != "confirmed", fresh)
                .values(status="pending", last_request_at=now)
            ).rowcount
            if not changed:
                return None
            return record(Subscriber, conn.execute(select(_sub).where(_sub.c.email == email)).one())

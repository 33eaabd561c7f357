"""The store: the layer between getting content in and getting it out. Every SQL statement of the service lives in
this package (SQLAlchemy 2 Core, no ORM); both sides call it, it calls neither.

:class:`Store` is one handle on the database, made of one mixin per table family, each in its own module:

==================  =====================================================================================
``sources``         seed pages and feeds, their fetch state and leases; storing what one source brought
``stories``         live stories with their sighting counts, one story, following merges, sightings
``clustering``      the SQL half of dedupe: candidates by blocking key in, the planner's plan written out
``overrides``       the operator's merges and splits, and ``stories explain``
``site``            what publishing and the web read: recency, tags, archive pages, search, sources
``subscribers``     addresses and their statuses
``digests``         one digest per period, its stories, what a period may carry
``deliveries``      one row per (digest, subscriber): claim, outcome, settle
``retention``       old digests' deliveries deleted, old stories' sightings folded into a count
==================  =====================================================================================

``schema`` holds the tables, ``engine`` opening and migrating, ``rows`` the one row -> record mapping. Rows become the
frozen records of :mod:`ingest.core.models` here and never leave as rows.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from ingest.core.links import DEFAULT_UID_AUTHORITY
from ingest.store.deliveries import DeliveriesMixin
from ingest.store.digests import CARRYING, DigestsMixin, MissingEditionError, topic_key
from ingest.store.engine import DEFAULT_BUSY_TIMEOUT, HEAD, instance_lock_path, make_engine, migrate
from ingest.store.overrides import OverridesMixin
from ingest.store.retention import RetentionMixin
from ingest.store.site import SiteMixin
from ingest.store.sources import SourcesMixin
from ingest.store.stories import StoriesMixin
from ingest.store.subscribers import SubscribersMixin

__all__ = ["CARRYING", "HEAD", "MissingEditionError", "Store", "instance_lock_path", "topic_key"]


class Store(
    SourcesMixin,
    OverridesMixin,
    StoriesMixin,
    SiteMixin,
    SubscribersMixin,
    DigestsMixin,
    DeliveriesMixin,
    RetentionMixin,
):
    """A handle on the database. Create with :meth:`open`; it migrates the schema on the way."""

    @classmethod
    def open(
        cls, url: str, *, uid_authority: str = DEFAULT_UID_AUTHORITY, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> Store:
        """Open (creating or migrating) the database. ``uid_authority`` names us in new stories' tag: URIs;
        ``busy_timeout``: seconds a SQLite write waits for another process's write lock."""
        engine = make_engine(url, busy_timeout=busy_timeout)
        try:
            migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, uid_authority=uid_authority)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

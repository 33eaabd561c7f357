"""The store: every SQL statement of the service lives in this package (SQLAlchemy 2 Core, no ORM).

Rows are turned into the frozen records of :mod:`ingest.core.models` here and never leave as rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import ColumnElement, Connection, Engine, Row, Select, and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError

from ingest.core.errors import UsageError
from ingest.core.links import DEFAULT_UID_AUTHORITY
from ingest.core.models import ParsedItem, Sighting, Source, Story
from ingest.store import clustering, schema
from ingest.store.clustering import SaveResult, save_items
from ingest.store.engine import HEAD, make_engine, migrate

__all__ = ["HEAD", "Explanation", "FeedState", "SaveResult", "Store"]


@dataclass(frozen=True, slots=True)
class FeedState:
    """A feed source's fetch state after one fetch, written with its entries in one transaction."""

    status: str  # active | failing | gone | empty | not_a_feed
    last_status: int | None
    error_count: int
    next_check_at: datetime | None
    last_error: str | None = None
    warning: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    store_validators: bool = False  # True: replace the stored ETag/Last-Modified with these (a fresh 200)
    url: str | None = None  # a permanently redirected feed's new URL
    success: bool = False  # the server answered with a usable feed (200 or 304)
    title: str | None = None  # the feed's own title, used when the source has no name


@dataclass(frozen=True, slots=True)
class Explanation:
    """What ``newsletter stories explain`` shows. ``story`` is None when the id was merged away."""

    story: Story | None
    merged_into: int | None
    merged: tuple[int, ...]
    sightings: tuple[Sighting, ...]
    overrides: tuple[clustering.Override, ...]


class Store:
    """A handle on the database. Create with :meth:`open`; it migrates the schema on the way."""

    def __init__(self, engine: Engine, *, uid_authority: str = DEFAULT_UID_AUTHORITY) -> None:
        self.engine = engine
        self.uid_authority = uid_authority

    @classmethod
    def open(cls, url: str, *, uid_authority: str = DEFAULT_UID_AUTHORITY) -> Store:
        """Open (creating or migrating) the database. ``uid_authority`` names us in new stories' tag: URIs."""
        engine = make_engine(url)
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

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # ---- sources ---------------------------------------------------------------------------------------------

    def page_source(self, location: str, folder: str, now: datetime) -> Source:
        """The source of one seed page, created on first sight."""
        with self.engine.begin() as conn:
            row = _source_row(conn, location)
            if row is None:
                conn.execute(
                    schema.source.insert().values(
                        kind="page", location=location, folder=folder, origin="seed", created_at=now, tags=[]
                    )
                )
                row = _source_row(conn, location)
            assert row is not None
            return _source(row)

    def source(self, location: str) -> Source | None:
        with self.engine.connect() as conn:
            row = conn.execute(_sources_query().where(schema.source.c.location == location)).first()
            return _source(row) if row is not None else None

    def sources(self, kind: str | None = None) -> list[Source]:
        query = _sources_query().order_by(schema.source.c.kind, schema.source.c.location)
        if kind:
            query = query.where(schema.source.c.kind == kind)
        with self.engine.connect() as conn:
            return [_source(row) for row in conn.execute(query)]

    def upsert_feed(
        self,
        url: str,
        *,
        name: str | None,
        tags: Sequence[str],
        interval: int | None,
        origin: str,
        now: datetime,
        mirror: bool = False,
    ) -> tuple[Source, bool]:
        """Add a feed, or update the one with this URL. Returns (source, created).

        Only what is given changes (``mirror``: name, tags and interval become exactly these, as the config says)."""
        try:
            return self._upsert_feed(url, name, tags, interval, origin=origin, now=now, mirror=mirror)
        except IntegrityError:  # another process added the same URL a moment ago: update that one
            return self._upsert_feed(url, name, tags, interval, origin=origin, now=now, mirror=mirror)

    def _upsert_feed(
        self,
        url: str,
        name: str | None,
        tags: Sequence[str],
        interval: int | None,
        *,
        origin: str,
        now: datetime,
        mirror: bool,
    ) -> tuple[Source, bool]:
        src = schema.source
        with self.engine.begin() as conn:
            row = _source_row(conn, url)
            if row is None:
                conn.execute(
                    src.insert().values(
                        kind="feed",
                        location=url,
                        url=url,
                        name=name,
                        tags=list(tags),
                        interval=interval,
                        origin=origin,
                        status="active",
                        created_at=now,
                        next_check_at=None,  # due at once, for whichever process looks first
                    )
                )
                created = True
            else:
                # Only what is given changes; a feed added again by the operator after it was removed or went
                # gone (410) is followed again from now.
                values: dict[str, Any] = {}
                if tags or mirror:
                    values["tags"] = list(tags)
                if interval is not None or mirror:
                    values["interval"] = interval
                if name:
                    values["name"] = name
                if row.status == "removed" or (row.status == "gone" and origin == "cli"):
                    values.update(status="active", origin=origin, next_check_at=None, error_count=0, last_error=None)
                if values:
                    conn.execute(src.update().where(src.c.id == row.id).values(**values))
                created = False
            found = _source_row(conn, url)
            assert found is not None
            return _source(found), created

    def find_source(self, ident: str) -> Source | None:
        """A source by id, by location (the URL as added) or by its current URL."""
        src = schema.source
        cond = (src.c.location == ident) | (src.c.url == ident)
        if ident.isdigit():
            cond = cond | (src.c.id == int(ident))
        with self.engine.connect() as conn:
            row = conn.execute(_sources_query().where(cond).order_by(src.c.id)).first()
            return _source(row) if row is not None else None

    def remove_feed(self, source_id: int) -> None:
        """Stop following a feed. Its sightings and stories stay (nothing is lost); adding it again resumes it."""
        with self.engine.begin() as conn:
            conn.execute(
                schema.source.update()
                .where(schema.source.c.id == source_id)
                .values(status="removed", next_check_at=None)
            )

    def sync_config_feeds(
        self, feeds: Sequence[tuple[str, str | None, Sequence[str], int | None]], now: datetime
    ) -> None:
        """Mirror the config's ``[[feeds]]``: add or update each; a feed dropped from the file stops being polled."""
        wanted = {url for url, *_ in feeds}
        for url, name, tags, interval in feeds:
            self.upsert_feed(url, name=name, tags=tags, interval=interval, origin="config", now=now, mirror=True)
        src = schema.source
        with self.engine.begin() as conn:
            stale = select(src.c.id).where(src.c.kind == "feed", src.c.origin == "config", src.c.status != "removed")
            if wanted:
                stale = stale.where(src.c.location.not_in(wanted))
            ids = [row.id for row in conn.execute(stale)]
            if ids:
                conn.execute(src.update().where(src.c.id.in_(ids)).values(status="removed", next_check_at=None))

    def claim_due_feeds(
        self, now: datetime, *, owner: str, lease_until: datetime, limit: int, force: bool = False
    ) -> list[Source]:
        """Lease up to ``limit`` feeds whose next check has come (every live feed with ``force``) to ``owner``.

        One statement: a feed leased to another process (until its lease runs out: a killed process's feeds come
        back) is not taken, and on PostgreSQL rows another process is claiming right now are skipped (SKIP LOCKED),
        so each feed is fetched by one process per due time. :meth:`save_feed` ends the lease.
        """
        src = schema.source
        due = _due_feeds(now, force=force)
        pick = select(src.c.id).where(due).order_by(src.c.next_check_at, src.c.id).limit(limit)
        if self.dialect == "postgresql":
            # A CTE, not "WHERE id IN (subquery)": PostgreSQL may run such a subquery again for each row it checks,
            # and with SKIP LOCKED each run picks other rows, so far more than ``limit`` would be leased.
            picked = pick.with_for_update(skip_locked=True).cte("picked")
            claim = src.update().where(src.c.id == picked.c.id)
        else:
            claim = src.update().where(src.c.id.in_(pick.scalar_subquery()), due)
        claim = claim.values(lease_owner=owner, lease_until=lease_until).returning(src.c.id)
        with self.engine.begin() as conn:
            ids = [row.id for row in conn.execute(claim)]
            if not ids:
                return []
            rows = conn.execute(_sources_query().where(src.c.id.in_(ids)).order_by(src.c.next_check_at, src.c.id))
            return [_source(row) for row in rows]

    def count_due_feeds(self, now: datetime, *, force: bool = False) -> int:
        with self.engine.connect() as conn:
            query = select(func.count()).select_from(schema.source).where(_due_feeds(now, force=force))
            return int(conn.execute(query).scalar_one())

    def release_feeds(self, owner: str, ids: Sequence[int]) -> None:
        """End ``owner``'s leases on these feeds (those it could not finish, say on a stop)."""
        src = schema.source
        with self.engine.begin() as conn:
            conn.execute(
                src.update()
                .where(src.c.id.in_(list(ids)), src.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process may do ``name`` now, alone among the processes sharing the database.

        PostgreSQL: a session advisory lock, held while the block runs (False when another process holds it).
        SQLite: always True: one ``newsletter run`` per SQLite database holds the instance lock.
        """
        if self.dialect != "postgresql":
            yield True
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with self.engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    def save_feed(self, source_id: int, items: Sequence[ParsedItem], state: FeedState, now: datetime) -> SaveResult:
        """One fetched feed: its new entries and its new state (validators included) in ONE transaction."""
        with self.engine.begin() as conn:
            result = self._save_items(conn, source_id, items, now) if items else SaveResult(0, 0, 0)
            _write_feed_state(conn, source_id, state, now)
            return result

    def save_feed_states(self, states: Sequence[tuple[int, FeedState]], now: datetime) -> None:
        """The states of feeds that brought no entries (304s, errors, gone...), in one transaction for all."""
        if states:
            with self.engine.begin() as conn:
                for source_id, state in states:
                    _write_feed_state(conn, source_id, state, now)

    def record_source_error(self, source_id: int, message: str, now: datetime) -> None:
        """A failed read: the error is kept on the source; what it brought before stays."""
        with self.engine.begin() as conn:
            conn.execute(
                schema.source.update()
                .where(schema.source.c.id == source_id)
                .values(
                    status="error",
                    last_error=message,
                    last_fetch_at=now,
                    error_count=schema.source.c.error_count + 1,
                )
            )

    # ---- sightings and stories ---------------------------------------------------------------------------------

    def save_page(
        self,
        source_id: int,
        items: Sequence[ParsedItem],
        *,
        content_hash: str,
        warning: str | None,
        now: datetime,
    ) -> SaveResult:
        """Store a parsed page's items and its new content hash in one transaction (all or nothing)."""
        with self.engine.begin() as conn:
            result = self._save_items(conn, source_id, items, now)
            conn.execute(
                schema.source.update()
                .where(schema.source.c.id == source_id)
                .values(
                    status="active",
                    content_hash=content_hash,
                    last_error=None,
                    warning=warning,
                    error_count=0,
                    last_fetch_at=now,
                    last_success_at=now,
                )
            )
            return result

    def _save_items(self, conn: Connection, source_id: int, items: Sequence[ParsedItem], now: datetime) -> SaveResult:
        location = conn.execute(select(schema.source.c.location).where(schema.source.c.id == source_id)).scalar_one()
        return save_items(conn, source_id, location, items, now, uid_authority=self.uid_authority)

    def merge_stories(self, a: int, b: int, now: datetime) -> tuple[int, int]:
        """The operator's merge: returns (survivor, loser); the older id survives."""
        try:
            with self.engine.begin() as conn:
                return clustering.merge_stories(conn, a, b, now)
        except (LookupError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    def split_sighting(self, story_id: int, sighting_id: int, now: datetime) -> int:
        """The operator's split: the sighting gets a story of its own; returns its id."""
        try:
            with self.engine.begin() as conn:
                return clustering.split_sighting(conn, story_id, sighting_id, now, uid_authority=self.uid_authority)
        except (LookupError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    def explain(self, story_id: int) -> Explanation:
        """A story, the ids merged into it, its sightings with why each joined, and the operator's overrides."""
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.story).where(schema.story.c.id == story_id)).first()
            if row is None:
                raise UsageError(f"no story {story_id}")
            if row.merged_into is not None:
                survivor = row.merged_into
                while True:
                    nxt = conn.execute(select(schema.story.c.merged_into).where(schema.story.c.id == survivor)).scalar()
                    if nxt is None:
                        break
                    survivor = nxt
                return Explanation(story=None, merged_into=survivor, merged=(), sightings=(), overrides=())
            sightings = self.sightings(story_id)
            return Explanation(
                story=_story(row),
                merged_into=None,
                merged=tuple(clustering.merged_ids(conn, story_id)),
                sightings=tuple(sightings),
                overrides=tuple(clustering.overrides_of(conn, [s.id for s in sightings])),
            )

    def stories(self, limit: int | None = None) -> list[Story]:
        """Live stories (not merged away), newest first: by date, undated ones by when first seen."""
        st = schema.story
        counts = (
            select(schema.sighting.c.story_id, func.count().label("n")).group_by(schema.sighting.c.story_id).subquery()
        )
        query = (
            select(st, func.coalesce(counts.c.n, 0).label("sightings"))
            .outerjoin(counts, counts.c.story_id == st.c.id)
            .where(st.c.merged_into.is_(None))
            .order_by(func.coalesce(st.c.published, st.c.first_seen).desc(), st.c.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_story(row) for row in conn.execute(query)]

    def sightings(self, story_id: int | None = None) -> list[Sighting]:
        s, src = schema.sighting, schema.source
        query = select(s, src.c.location.label("source_location")).join(src, src.c.id == s.c.source_id).order_by(s.c.id)
        if story_id is not None:
            query = query.where(s.c.story_id == story_id)
        with self.engine.connect() as conn:
            return [_sighting(row) for row in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                "sources": conn.execute(select(func.count()).select_from(schema.source)).scalar_one(),
                "sightings": conn.execute(select(func.count()).select_from(schema.sighting)).scalar_one(),
                "stories": conn.execute(
                    select(func.count()).select_from(schema.story).where(and_(schema.story.c.merged_into.is_(None)))
                ).scalar_one(),
            }


def _write_feed_state(conn: Connection, source_id: int, state: FeedState, now: datetime) -> None:
    """A feed's state after a fetch; ends the lease on it."""
    src = schema.source
    values: dict[str, Any] = {
        "status": state.status,
        "last_status": state.last_status,
        "error_count": state.error_count,
        "next_check_at": state.next_check_at,
        "last_error": state.last_error,
        "warning": state.warning,
        "last_fetch_at": now,
        "lease_owner": None,
        "lease_until": None,
    }
    if state.success:
        values["last_success_at"] = now
    if state.store_validators:
        values.update(etag=state.etag, last_modified=state.last_modified)
    if state.url:
        values["url"] = state.url
    if state.title:
        values["name"] = func.coalesce(src.c.name, state.title)
    conn.execute(src.update().where(src.c.id == source_id).values(**values))


def _due_feeds(now: datetime, *, force: bool) -> ColumnElement[bool]:
    """Live feeds not leased to anyone, not fetched yet in the pass that started at ``now``, and (unless forced)
    whose next check has come."""
    src = schema.source
    due = and_(
        src.c.kind == "feed",
        src.c.status.not_in(("gone", "removed")),
        or_(src.c.lease_until.is_(None), src.c.lease_until <= now),
        or_(src.c.last_fetch_at.is_(None), src.c.last_fetch_at < now),
    )
    if not force:
        due = and_(due, or_(src.c.next_check_at.is_(None), src.c.next_check_at <= now))
    return due


def _sources_query() -> Select[Any]:
    """Sources with the number of sightings each brought."""
    counts = (
        select(schema.sighting.c.source_id, func.count().label("n")).group_by(schema.sighting.c.source_id).subquery()
    )
    return select(schema.source, func.coalesce(counts.c.n, 0).label("sightings")).outerjoin(
        counts, counts.c.source_id == schema.source.c.id
    )


def _source_row(conn: Connection, location: str) -> Row[Any] | None:
    return conn.execute(select(schema.source).where(schema.source.c.location == location)).first()


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # a driver that hands JSON back as text
        value = json.loads(value)
    return tuple(value or ())


def _source(row: Row[Any]) -> Source:
    m = row._mapping
    return Source(
        id=m["id"],
        kind=m["kind"],
        location=m["location"],
        name=m["name"],
        status=m["status"],
        last_error=m["last_error"],
        content_hash=m["content_hash"],
        sightings=int(m.get("sightings", 0) or 0),
        folder=m["folder"],
        url=m["url"],
        tags=_tags(m["tags"]),
        last_fetch_at=m["last_fetch_at"],
        last_success_at=m["last_success_at"],
        last_status=m["last_status"],
        error_count=m["error_count"],
        next_check_at=m["next_check_at"],
        warning=m["warning"],
        interval=m["interval"],
        origin=m["origin"],
        etag=m["etag"],
        last_modified=m["last_modified"],
    )


def _story(row: Row[Any]) -> Story:
    m = row._mapping
    return Story(
        id=m["id"],
        uid=m["uid"],
        title=m["title"],
        summary=m["summary"],
        content=m["content"],
        link=m["link"],
        published=m["published"],
        first_seen=m["first_seen"],
        updated=m["updated"],
        tags=_tags(m["tags"]),
        sightings=int(m.get("sightings", 0) or 0),
    )


def _sighting(row: Row[Any]) -> Sighting:
    m = row._mapping
    return Sighting(
        id=m["id"],
        source_id=m["source_id"],
        source_location=m["source_location"],
        kind=m["kind"],
        key=m["key"],
        position=m["position"],
        title=m["title"],
        published=m["published"],
        summary=m["summary"],
        content=m["content"],
        link=m["link"],
        tags=_tags(m["tags"]),
        first_seen=m["first_seen"],
        last_seen=m["last_seen"],
        story_id=m["story_id"],
        title_derived=m["title_derived"],
        match_rule=m["match_rule"],
        match_score=m["match_score"],
    )

"""Sources: seed pages and feeds, their fetch state, the lease that shares feeds among processes, and storing what
one source brought (its items and its new state in ONE transaction).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError

from ingest.core.errors import StoreError
from ingest.core.links import parse_row_id
from ingest.core.models import FeedState, ParsedItem, SaveResult, Source, SourceKind
from ingest.core.urls import url_key
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.clustering import save_batch
from ingest.store.rows import chunks, record

__all__ = ["SourcesMixin"]


class SourcesMixin(StoreBase):
    def page_source(
        self, location: str, folder: str, now: datetime, *, name: str | None = None, site_url: str | None = None
    ) -> Source:
        """The source of one seed page, created on first sight, with its folder's site name and address as the
        config says now (a folder renamed in the config is renamed on its pages at the next ingest)."""
        src = schema.source
        with self.engine.begin() as conn:
            row = _source_row(conn, location)
            if row is None:
                conn.execute(
                    src.insert().values(
                        kind="page",
                        location=location,
                        folder=folder,
                        name=name,
                        site_url=site_url,
                        origin="seed",
                        created_at=now,
                        tags=[],
                    )
                )
                row = _source_row(conn, location)
            elif (row.folder, row.name, row.site_url) != (folder, name, site_url):
                conn.execute(src.update().where(src.c.id == row.id).values(folder=folder, name=name, site_url=site_url))
                row = _source_row(conn, location)
            assert row is not None
            return record(Source, row)

    def source(self, location: str) -> Source | None:
        with self.engine.connect() as conn:
            row = conn.execute(_sources_query().where(schema.source.c.location == location)).first()
            return record(Source, row) if row is not None else None

    def sources(self, kind: SourceKind | None = None) -> list[Source]:
        query = _sources_query().order_by(schema.source.c.kind, schema.source.c.location)
        if kind:
            query = query.where(schema.source.c.kind == kind)
        with self.engine.connect() as conn:
            return [record(Source, row) for row in conn.execute(query)]

    def source_counts(self, kind: SourceKind = "feed") -> dict[str, int]:
        """Sources of a kind by status."""
        src = schema.source
        query = select(src.c.status, func.count()).where(src.c.kind == kind).group_by(src.c.status)
        with self.engine.connect() as conn:
            return {str(status): int(n) for status, n in conn.execute(query)}

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
        kind: SourceKind = "feed",
    ) -> tuple[Source, bool]:
        """Add a feed (or a live page: ``kind="page"``), or update the one with this URL. Returns (source, created).

        Only what is given changes (``mirror``: name, tags and interval become exactly these, as the config says).
        Another process adding the same URL at the same moment makes the insert fail: then that row is updated."""
        src = schema.source

        def once() -> tuple[Source, bool]:
            with self.engine.begin() as conn:
                row = _source_row(conn, url)
                if row is None:
                    conn.execute(
                        src.insert().values(
                            kind=kind,
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
                    # Only what is given changes; a feed added again by the operator after it was removed, went
                    # gone (410) or was paused is followed again from now.
                    values: dict[str, Any] = {}
                    if tags or mirror:
                        values["tags"] = list(tags)
                    if interval is not None or mirror:
                        values["interval"] = interval
                    if name:
                        values["name"] = name
                    if row.status == "removed" or (row.status in ("gone", "paused") and origin == "cli"):
                        values.update(_RESUMED, origin=origin)
                    if values:
                        conn.execute(src.update().where(src.c.id == row.id).values(**values))
                    created = False
                found = _source_row(conn, url)
                assert found is not None
                return record(Source, found), created

        try:
            return once()
        except IntegrityError:  # another process added the same URL a moment ago: update that one
            return once()

    def find_source(self, ident: str) -> Source | None:
        """A source by id, by location (the URL as added) or by its current URL."""
        src = schema.source
        cond = (src.c.location == ident) | (src.c.url == ident)
        if (as_id := parse_row_id(ident)) is not None:
            cond = cond | (src.c.id == as_id)
        with self.engine.connect() as conn:
            row = conn.execute(_sources_query().where(cond).order_by(src.c.id)).first()
            return record(Source, row) if row is not None else None

    def followed_by(self, urls: Iterable[str]) -> Source | None:
        """The followed (not removed) source already reading one of these addresses, as added or where it moved."""
        keys = {url_key(u) for u in urls}
        for s in self.sources():
            if s.status != "removed" and {url_key(s.location), url_key(s.url or s.location)} & keys:
                return s
        return None

    def suggest_url(self, source_id: int, url: str) -> None:
        """Where a broken feed may have gone, for the operator to confirm (``feeds move``)."""
        with self.engine.begin() as conn:
            conn.execute(schema.source.update().where(schema.source.c.id == source_id).values(suggested_url=url))

    def move_feed(self, source_id: int, url: str) -> None:
        """The operator says the feed lives at ``url`` now: read from there, at once, as a fresh feed."""
        with self.engine.begin() as conn:
            conn.execute(
                schema.source.update()
                .where(schema.source.c.id == source_id)
                .values(**_RESUMED, url=url, etag=None, last_modified=None, suggested_url=None)
            )

    def resume_feed(self, source_id: int) -> None:
        """Follow a paused or gone feed again: active, due at once, a new failure streak."""
        with self.engine.begin() as conn:
            conn.execute(schema.source.update().where(schema.source.c.id == source_id).values(**_RESUMED))

    def remove_feed(self, source_id: int) -> None:
        """Stop following a feed. Its sightings and stories stay (nothing is lost); adding it again resumes it."""
        with self.engine.begin() as conn:
            conn.execute(
                schema.source.update()
                .where(schema.source.c.id == source_id)
                .values(status="removed", next_check_at=None)
            )

    def sync_config_feeds(
        self,
        feeds: Sequence[tuple[str, str | None, Sequence[str], int | None]],
        now: datetime,
        kind: SourceKind = "feed",
    ) -> None:
        """Mirror the config's ``[[feeds]]`` (or ``[[pages]]``): add or update each; one dropped from the file stops
        being polled."""
        wanted = {url for url, *_ in feeds}
        for url, name, tags, interval in feeds:
            self.upsert_feed(
                url, name=name, tags=tags, interval=interval, origin="config", now=now, mirror=True, kind=kind
            )
        src = schema.source
        with self.engine.begin() as conn:
            stale = select(src.c.id).where(src.c.kind == kind, src.c.origin == "config", src.c.status != "removed")
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
            return [record(Source, row) for row in rows]

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

    def known_keys(self, source_ids: Sequence[int]) -> dict[int, frozenset[str]]:
        """The keys of the entries each feed carried when last stored (its sightings seen last): those the next fetch
        of a feed most likely carries again, which its parse may skip (``parse_feed(known=...)``)."""
        s = schema.sighting
        found: dict[int, set[str]] = defaultdict(set)
        with self.engine.connect() as conn:
            for part in chunks(list(source_ids)):
                latest = (
                    select(s.c.source_id, func.max(s.c.last_seen).label("at"))
                    .where(s.c.source_id.in_(part))
                    .group_by(s.c.source_id)
                    .subquery()
                )
                query = select(s.c.source_id, s.c.key).join(
                    latest, and_(s.c.source_id == latest.c.source_id, s.c.last_seen == latest.c.at)
                )
                for row in conn.execute(query):
                    found[row.source_id].add(row.key)
        return {source_id: frozenset(keys) for source_id, keys in found.items()}

    def save_feed(self, source_id: int, items: Sequence[ParsedItem], state: FeedState, now: datetime) -> SaveResult:
        """One fetched feed: its new entries and its new state (validators included) in ONE transaction."""
        return self.save_feeds([(source_id, items, state)], now)[0]

    def save_feeds(
        self,
        feeds: Sequence[tuple[int, Sequence[ParsedItem], FeedState]],
        now: datetime,
        known: Mapping[int, Sequence[tuple[str, int]]] | None = None,
    ) -> list[SaveResult]:
        """Fetched feeds: each one's new entries and new state (validators included), all in ONE transaction. The
        stories are those saving the feeds one by one, in this order, would make (:func:`save_batch`). ``known``: per
        feed, the (key, position) of entries its parse skipped as stored already (``ParsedFeed.known``): marked seen.

        A feed whose save fails (a bug, or a value the database refuses) must not cost the others their work: the
        batch is rolled back and each feed saved in a transaction of its own, and the first failure raised once the
        others are stored. The database itself failing (busy past the timeout, a full disk) is raised at once."""
        known = known or {}
        try:
            with self.engine.begin() as conn:
                return self._save_feeds(conn, feeds, now, known)
        except StoreError:
            raise
        except Exception:
            if len(feeds) == 1:
                raise
        failure: Exception | None = None
        results = []
        for feed in feeds:
            try:
                with self.engine.begin() as conn:
                    results += self._save_feeds(conn, [feed], now, known)
            except StoreError:
                raise
            except Exception as exc:
                failure = failure or exc
        assert failure is not None, "a batch that failed as a whole failed for one of its feeds"
        raise failure

    def save_feed_states(self, states: Sequence[tuple[int, FeedState]], now: datetime) -> None:
        """The states of feeds that brought no entries (304s, errors, gone...), in one transaction for all."""
        if states:
            with self.engine.begin() as conn:
                _write_feed_states(conn, states, now)

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

    def _save_feeds(
        self,
        conn: Connection,
        feeds: Sequence[tuple[int, Sequence[ParsedItem], FeedState]],
        now: datetime,
        known: Mapping[int, Sequence[tuple[str, int]]],
    ) -> list[SaveResult]:
        with_entries = [source_id for source_id, items, _ in feeds if items or known.get(source_id)]
        locations = _locations(conn, with_entries)
        results = save_batch(
            conn,
            [(source_id, locations[source_id], items) for source_id, items, _ in feeds if source_id in locations],
            now,
            uid_authority=self.uid_authority,
            known=known,
        )
        saved = iter(results)
        _write_feed_states(conn, [(source_id, state) for source_id, _, state in feeds], now)
        return [next(saved) if source_id in locations else SaveResult(0, 0, 0) for source_id, _, _ in feeds]

    def _save_items(self, conn: Connection, source_id: int, items: Sequence[ParsedItem], now: datetime) -> SaveResult:
        location = _locations(conn, [source_id])[source_id]
        return save_batch(conn, [(source_id, location, items)], now, uid_authority=self.uid_authority)[0]


#: A feed followed again (``feeds resume``, or added again): checked at once, its error streak forgotten.
_RESUMED: dict[str, Any] = {
    "status": "active",
    "next_check_at": None,
    "error_count": 0,
    "failing_since": None,
    "last_error": None,
    "warning": None,
}


def _write_feed_states(conn: Connection, states: Sequence[tuple[int, FeedState]], now: datetime) -> None:
    """Feeds' states after a fetch; ends the lease on each. One statement per shape of update (which columns it
    sets), run for all the feeds of that shape: compiling an UPDATE cost more than running it."""
    src = schema.source
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for source_id, state in states:
        values = _state_values(state, now)
        shapes[tuple(values)].append({"_id": source_id, **{f"_{k}": v for k, v in values.items()}})
    for columns, rows in shapes.items():
        sets: dict[str, Any] = {c: bindparam(f"_{c}") for c in columns}
        if "name" in sets:
            sets["name"] = func.coalesce(src.c.name, sets["name"])
        conn.execute(src.update().where(src.c.id == bindparam("_id")).values(sets), rows)


def _state_values(state: FeedState, now: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {
        "status": state.status,
        "last_status": state.last_status,
        "error_count": state.error_count,
        "failing_since": state.failing_since,
        "next_check_at": state.next_check_at,
        "last_error": state.last_error,
        "warning": state.warning,
        "last_fetch_at": now,
        "lease_owner": None,
        "lease_until": None,
    }
    if state.success:
        values["last_success_at"] = now
        values["suggested_url"] = None
    if state.store_validators:
        values.update(etag=state.etag, last_modified=state.last_modified)
    if state.url:
        values["url"] = state.url
    if state.title:
        values["name"] = state.title  # kept only where the feed has no name yet (see _write_feed_states)
    if state.site_url:
        values["site_url"] = state.site_url
    return values


def _due_feeds(now: datetime, *, force: bool) -> ColumnElement[bool]:
    """Live feeds and live pages (a page with a URL; a seed page has none) not leased to anyone, not fetched yet in
    the pass that started at ``now``, and (unless forced) whose next check has come."""
    src = schema.source
    due = and_(
        or_(src.c.kind == "feed", and_(src.c.kind == "page", src.c.url.is_not(None))),  # feeds and live pages
        src.c.status.not_in(("gone", "removed", "paused")),
        or_(src.c.lease_until.is_(None), src.c.lease_until <= now),
        or_(src.c.last_fetch_at.is_(None), src.c.last_fetch_at < now),
    )
    if not force:
        due = and_(due, or_(src.c.next_check_at.is_(None), src.c.next_check_at <= now))
    return due


def _sources_query() -> Select[Any]:
    """Sources with the number of sightings each brought (counted per source in an index: the feed claim reads a
    few sources, never every sighting)."""
    si = schema.sighting
    count = select(func.count()).where(si.c.source_id == schema.source.c.id).scalar_subquery()
    return select(schema.source, count.label("sightings"))


def _locations(conn: Connection, ids: Sequence[int]) -> dict[int, str]:
    src = schema.source
    found: dict[int, str] = {}
    for part in chunks(ids):
        found.update(
            (row.id, row.location) for row in conn.execute(select(src.c.id, src.c.location).where(src.c.id.in_(part)))
        )
    return found


def _source_row(conn: Connection, location: str) -> Row[Any] | None:
    return conn.execute(select(schema.source).where(schema.source.c.location == location)).first()

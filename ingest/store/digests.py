"""Digests: one per period of each cadence, made once with its stories, its editions (one rendering per topic set
and window its subscribers need) and one delivery per confirmed subscriber of that cadence; which stories a period
may carry (with where each was seen); which digests are still delivering.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, and_, func, select, text, type_coerce
from sqlalchemy.exc import IntegrityError

from ingest.core.models import Cadence, Candidate, Digest, DigestStatus, Edition, NewDigest, Origin, Story
from ingest.core.sources import source_name
from ingest.dedupe.normalize import drop_tracking
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.rows import aware, chunks, one_of, record
from ingest.store.stories import visible, visible_stories

__all__ = ["CARRYING", "DigestsMixin", "MissingEditionError", "edition_key", "topic_key", "window_start"]

_sub = schema.subscriber
_dig = schema.digest
_ds = schema.digest_story
_del = schema.delivery
_ed = schema.digest_edition
_st = schema.story
_si = schema.sighting
_src = schema.source

#: Digest statuses whose stories count as carried: a skipped or empty period carries none, so they roll over.
CARRYING: tuple[DigestStatus, ...] = ("pending", "sent")


class DigestsMixin(StoreBase):
    def create_digest(self, new: NewDigest) -> tuple[Digest, bool]:
        """Create the period's digest once: its row, its stories and (when ``pending``) one delivery per confirmed
        subscriber, in one transaction. Returns (digest, created); when the period exists already (another process, an
        earlier run), that digest is returned untouched."""
        try:
            with self.engine.begin() as conn:
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
                        cadence=new.cadence,
                    )
                )
                pk = result.inserted_primary_key
                assert pk is not None
                digest_id = int(pk[0])
                if new.story_ids:
                    conn.execute(
                        _ds.insert(),
                        [
                            {"digest_id": digest_id, "story_id": sid, "position": i}
                            for i, sid in enumerate(new.story_ids)
                        ],
                    )
                if new.status == "pending":
                    _deliveries(conn, digest_id, new)
                if new.status == "pending" and conn.dialect.name == "postgresql":
                    # Thousands of rows just arrived: without fresh statistics every claim would scan and sort
                    # them all until autovacuum gets round to the table (measured: 21 ms a claim at 10,000).
                    conn.execute(text("ANALYZE delivery"))
                created = _digest_row(conn, new.period)
                assert created is not None
                return created, True
        except IntegrityError:
            found = self.digest_by_period(new.period)
            if found is None:
                raise
            return found, False

    def has_subscribers(self, cadence: Cadence) -> bool:
        """Whether any confirmed subscriber chose ``cadence`` (one row looked for, not all of them read)."""
        query = select(_sub.c.id).where(_sub.c.status == "confirmed", _sub.c.cadence == cadence).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def subscriber_windows(self, cadence: Cadence) -> set[tuple[tuple[str, ...], datetime | None]]:
        """The distinct (topic set, where their last digest ended) of the confirmed subscribers of ``cadence``."""
        with self.engine.connect() as conn:
            # Set apart here: PostgreSQL has no equality on json, so no DISTINCT over it.
            rows = conn.execute(
                select(_raw_topics(), _sub.c.covered_until).where(
                    _sub.c.status == "confirmed", _sub.c.cadence == cadence
                )
            )
            seen: dict[Any, tuple[str, ...]] = {}
            return {(_topics_of(row.topics, seen), aware(row.covered_until)) for row in rows}

    def editions(self, digest_id: int) -> dict[int, Edition]:
        """A digest's editions by id."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_ed).where(_ed.c.digest_id == digest_id))
            return {row.id: record(Edition, row) for row in rows}

    def digest_by_period(self, period: str) -> Digest | None:
        with self.engine.connect() as conn:
            return _digest_row(conn, period)

    def digests(
        self,
        statuses: Iterable[DigestStatus] | None = None,
        limit: int | None = None,
        *,
        cadence: Cadence | None = None,
    ) -> list[Digest]:
        """Digests (of ``cadence``, else of every one), newest period first, with how many stories each carries."""
        query = _digest_query().order_by(_dig.c.period_start.desc(), _dig.c.id.desc())
        if cadence is not None:
            query = query.where(_dig.c.cadence == cadence)
        if statuses is not None:
            query = query.where(_dig.c.status.in_(list(statuses)))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [record(Digest, row) for row in conn.execute(query)]

    def open_digests(self) -> list[Digest]:
        """Digests still delivering (status pending), oldest first."""
        query = _digest_query().where(_dig.c.status == "pending").order_by(_dig.c.period_start)
        with self.engine.connect() as conn:
            return [record(Digest, row) for row in conn.execute(query)]

    def floor_marks(self, before: datetime, cadence: Cadence = "weekly") -> tuple[datetime | None, datetime | None]:
        """For a digest of ``cadence`` starting at ``before``: the end of the latest earlier digest of that cadence
        that carried stories, and the start of its earliest digest of any status (None when there is none). See
        ``newsletter.digest.floor``."""
        mine = and_(_dig.c.cadence == cadence, _dig.c.period_start < before)
        with self.engine.connect() as conn:
            carried = conn.execute(
                select(func.max(_dig.c.period_end)).where(_dig.c.status.in_(CARRYING), mine)
            ).scalar()
            first = conn.execute(select(func.min(_dig.c.period_start)).where(mine)).scalar()
        return aware(carried), aware(first)

    def candidates(self, since: datetime, until: datetime, cadence: Cadence | None = "weekly") -> list[Candidate]:
        """Visible stories first seen in [since, until) that no digest of ``cadence`` carries yet (None: whether
        carried or not), with where each was seen."""
        query = visible_stories().where(_st.c.first_seen >= since, _st.c.first_seen < until).order_by(_st.c.id)
        with self.engine.connect() as conn:
            stories = [record(Story, row) for row in conn.execute(query)]
            # Looked up for these stories only (an index): joined, PostgreSQL would read every digest's stories.
            carried: set[int] = set()
            for chunk in chunks([s.id for s in stories]) if cadence is not None else ():
                found = conn.execute(
                    select(_ds.c.story_id)
                    .join(_dig, _dig.c.id == _ds.c.digest_id)
                    .where(one_of(conn.dialect.name, _ds.c.story_id, chunk), _dig.c.cadence == cadence)
                )
                carried.update(found.scalars())
            return _with_origins(conn, [s for s in stories if s.id not in carried])

    def digest_stories(self, digest_id: int) -> list[Candidate]:
        """The stories a digest carries and readers may still see (not hidden since), in its order."""
        query = (
            visible_stories()
            .join(_ds, _ds.c.story_id == _st.c.id)
            .where(_ds.c.digest_id == digest_id)
            .order_by(_ds.c.position)
        )
        with self.engine.connect() as conn:
            stories = [record(Story, row) for row in conn.execute(query)]
            return _with_origins(conn, stories)

    def stories_first_seen_between(self, since: datetime, until: datetime) -> int:
        with self.engine.connect() as conn:
            query = (
                select(func.count())
                .select_from(_st)
                .where(visible(), _st.c.first_seen >= since, _st.c.first_seen < until)
            )
            return int(conn.execute(query).scalar_one())


class MissingEditionError(LookupError):
    """A subscriber confirmed while a digest was being made chose a topic set the digest has no edition for: the
    caller renders again (nothing was stored)."""


def topic_key(topics: Iterable[str]) -> str:
    return ",".join(sorted(set(topics)))


def window_start(covered_until: datetime | None, since: datetime) -> datetime | None:
    """Where a subscriber's part of a digest whose stories start at ``since`` starts: None (the digest's own stories)
    when their last digest ended there, or when none was made for them yet; else where their last one ended (they
    switched cadence: the other sequence ended elsewhere)."""
    return None if covered_until is None or covered_until == since else covered_until


def edition_key(topics: Iterable[str], since: datetime | None) -> str:
    """An edition's key within its digest: its topics, and its window when it has one of its own."""
    key = topic_key(topics)
    return key if since is None else f"{key}@{since.astimezone(UTC).isoformat()}"


def _deliveries(conn: Connection, digest_id: int, new: NewDigest) -> None:
    """One delivery per confirmed subscriber of the digest's cadence, with the edition of their topic set and window
    (None: no topic chosen and the digest's own window, the whole digest): ``empty``, and never sent, when it holds
    no story. The subscribers are read in the transaction that writes the rows: one who confirmed with a topic set
    that has no edition yet raises :class:`MissingEditionError`. Each one's ``covered_until`` moves to the period's
    end in the same transaction."""
    by_key: dict[str, int] = {}
    editions = new.editions
    since = new.since or new.period_start
    if editions:
        rows = conn.execute(
            _ed.insert().returning(_ed.c.id, _ed.c.topic_key),
            [
                {
                    "digest_id": digest_id,
                    "topic_key": edition_key(e.topics, e.since),
                    "topics": sorted(e.topics),
                    "story_count": e.story_count,
                    "subject": e.subject,
                    "html": e.html,
                    "text": e.text,
                    "since": e.since,
                }
                for e in editions
            ],
        )
        by_key = {row.topic_key: row.id for row in rows}
    counts = {edition_key(e.topics, e.since): e.story_count for e in editions}
    deliveries = []
    subscribers = (
        select(_sub.c.id, _raw_topics(), _sub.c.covered_until)
        .where(_sub.c.status == "confirmed", _sub.c.cadence == new.cadence)
        .order_by(_sub.c.id)
    )
    seen: dict[Any, tuple[str, ...]] = {}
    for row in conn.execute(subscribers):
        key = edition_key(_topics_of(row.topics, seen), window_start(aware(row.covered_until), since))
        if key and key not in by_key:
            raise MissingEditionError(key)
        status = "empty" if key and not counts[key] else "pending"
        deliveries.append(
            {"digest_id": digest_id, "subscriber_id": row.id, "edition_id": by_key.get(key), "status": status}
        )
    if deliveries:
        conn.execute(_del.insert(), deliveries)
        delivered = select(_del.c.subscriber_id).where(_del.c.digest_id == digest_id)
        conn.execute(_sub.update().where(_sub.c.id.in_(delivered)).values(covered_until=new.period_end))


def _raw_topics() -> Any:
    """subscriber.topics as the driver hands it over (SQLite: the JSON text; psycopg: a list), not decoded row by row:
    10,000 subscribers share a few hundred topic sets, so each distinct value is decoded once (:func:`_topics_of`)."""
    return type_coerce(_sub.c.topics, String).label("topics")


def _topics_of(raw: Any, seen: dict[Any, tuple[str, ...]]) -> tuple[str, ...]:
    """A subscriber's topic set (sorted) from :func:`_raw_topics`, decoded once per distinct value."""
    key = raw if isinstance(raw, str) else json.dumps(raw)
    found = seen.get(key)
    if found is None:
        value = json.loads(raw) if isinstance(raw, str) else raw
        found = seen[key] = tuple(sorted(set(value or ())))
    return found


def _digest_query() -> Any:
    counts = select(_ds.c.digest_id, func.count().label("n")).group_by(_ds.c.digest_id).subquery()
    return select(_dig, func.coalesce(counts.c.n, 0).label("story_count")).outerjoin(
        counts, counts.c.digest_id == _dig.c.id
    )


def _digest_row(conn: Connection, period: str) -> Digest | None:
    row = conn.execute(_digest_query().where(_dig.c.period == period)).first()
    return record(Digest, row) if row is not None else None


def _required(value: datetime | None) -> datetime:
    assert value is not None
    return value


def _with_origins(conn: Connection, stories: list[Story]) -> list[Candidate]:
    if not stories:
        return []
    # Per source, from the (source_id, first_seen) index: never a pass over every sighting.
    first = _si.alias("first")
    first_read = select(func.min(first.c.first_seen)).where(first.c.source_id == _si.c.source_id).scalar_subquery()
    seen: list[Any] = []
    for chunk in chunks([s.id for s in stories]):
        query = (
            select(
                _si.c.story_id,
                _si.c.source_id,
                _si.c.published,
                _si.c.first_seen,
                _si.c.link,
                _si.c.title,
                _si.c.title_derived,
                first_read.label("at"),
            )
            .where(one_of(conn.dialect.name, _si.c.story_id, chunk))
            .order_by(_si.c.first_seen, _si.c.id)
        )
        seen.extend(conn.execute(query))
    # The sources apart, by primary key: joined, PostgreSQL would rather read every source than look a few up.
    sources: dict[int, Any] = {}
    for chunk in chunks(sorted({row.source_id for row in seen})):
        query = select(
            _src.c.id,
            _src.c.kind,
            _src.c.name,
            _src.c.location,
            _src.c.url,
            _src.c.folder,
            _src.c.site_url,
            _src.c.tags,
        )
        sources.update((row.id, row) for row in conn.execute(query.where(one_of(conn.dialect.name, _src.c.id, chunk))))
    origins: dict[int, list[Origin]] = {}
    for row in seen:
        src = sources[row.source_id]
        origins.setdefault(row.story_id, []).append(
            Origin(
                source_kind=src.kind,
                source_name=source_name(src.kind, src.name, src.location, src.url, src.folder),
                source_tags=src.tags,
                published=row.published,
                first_seen=row.first_seen,
                source_first_seen=_required(aware(row.at)),
                source_url=src.site_url,
                link=drop_tracking(row.link.strip()) if row.link and row.link.strip() else None,
                title=row.title,
                title_derived=bool(row.title_derived),
            )
        )
    return [Candidate(story=s, origins=tuple(origins.get(s.id, ()))) for s in stories]

"""Store queries for publishing and the web: recent stories, by tag, archive pages, one story and its sources, search.

Each function takes a :class:`~ingest.store.Store` and returns frozen records; rows never leave this module.
"Newest first" is ``coalesce(published, first_seen) DESC, id DESC``, the order of :meth:`Store.stories`.
Archive pages are ranges of story ids (creation order); see ``newsletter.publish`` for the scheme.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, cast, func, or_, select

from ingest.core.models import SourceKind, Story
from ingest.store import Store, _story, _tags, schema

__all__ = [
    "StoreState",
    "StorySource",
    "StoryVersion",
    "authors",
    "boundaries",
    "changed_since",
    "count_live",
    "next_boundary",
    "recent",
    "recent_versions",
    "resolve",
    "search",
    "stories_by_id",
    "story",
    "story_sources",
    "tags",
    "uid",
    "versions_between",
]

_st = schema.story
_LIKE_ESCAPE = "\\"
#: Longest chain of merges followed before giving up (a cycle is a bug elsewhere; it must not hang a page).
_MAX_HOPS = 32


@dataclass(frozen=True, slots=True)
class StoreState:
    """A cheap fingerprint of what a publish depends on: it changes when a story row is added, removed or updated."""

    rows: int  # story rows, merged-away ones included
    max_id: int
    max_updated: datetime | None


@dataclass(frozen=True, slots=True)
class StoryVersion:
    """Which story, in which version, at which place in "newest first": enough to tell whether a document changed."""

    id: int
    when: datetime  # coalesce(published, first_seen), the sort key
    updated: datetime


@dataclass(frozen=True, slots=True)
class StorySource:
    """One appearance of a story as its page shows it: where it was seen and what that source called it."""

    source: str  # the source's name; else a feed's URL; else a seed page's file name (never a path on the server)
    kind: SourceKind
    title: str
    link: str | None
    published: datetime | None
    first_seen: datetime
    author: str | None


def _recency() -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    return func.coalesce(_st.c.published, _st.c.first_seen).desc(), _st.c.id.desc()


def _with_count() -> Select[Any]:
    """Live stories with their sighting count, counted per row through the sighting(story_id) index."""
    s = schema.sighting
    n = select(func.count()).where(s.c.story_id == _st.c.id).correlate(_st).scalar_subquery()
    return select(_st, n.label("sightings")).where(_st.c.merged_into.is_(None))


def _like_escape(text: str) -> str:
    for char in (_LIKE_ESCAPE, "%", "_"):
        text = text.replace(char, _LIKE_ESCAPE + char)
    return text


def recent(store: Store, limit: int, *, offset: int = 0) -> list[Story]:
    """Live stories with their sighting counts, newest first."""
    if limit <= 0:
        return []
    query = _with_count().order_by(*_recency()).limit(limit).offset(offset)
    with store.engine.connect() as conn:
        return [_story(row) for row in conn.execute(query)]


def _versions(query: Select[Any], store: Store) -> list[StoryVersion]:
    with store.engine.connect() as conn:
        return [StoryVersion(int(r.id), r.when, r.updated) for r in conn.execute(query)]


def _version_columns() -> Select[Any]:
    when = func.coalesce(_st.c.published, _st.c.first_seen).label("when")
    return select(_st.c.id, when, _st.c.updated).where(_st.c.merged_into.is_(None))


def recent_versions(store: Store, limit: int, *, tag: str | None = None) -> list[StoryVersion]:
    """Live stories, newest first, as versions only (no text is read): cheap to compare with last time. With ``tag``,
    only those carrying it (case-insensitive)."""
    if tag is None:
        return _versions(_version_columns().order_by(*_recency()).limit(limit), store)
    wanted = tag.lower()
    # Tags are a JSON list: match the element's JSON text, then check exactly in Python (LIKE is a prefilter:
    # ASCII-case-insensitive and blind to list structure). Portable to PostgreSQL, whose json has no "contains".
    pattern = "%" + _like_escape(json.dumps(wanted)) + "%"
    base = (
        _version_columns()
        .add_columns(_st.c.tags)
        .where(cast(_st.c.tags, Text).ilike(pattern, escape=_LIKE_ESCAPE))
        .order_by(*_recency())
    )
    found: list[StoryVersion] = []
    skip, batch = 0, max(limit, 50)
    with store.engine.connect() as conn:
        while len(found) < limit:
            rows = conn.execute(base.limit(batch).offset(skip)).all()
            skip += len(rows)
            found.extend(
                StoryVersion(int(r.id), r.when, r.updated) for r in rows if wanted in {t.lower() for t in _tags(r.tags)}
            )
            if len(rows) < batch:
                break
    return found[:limit]


def versions_between(store: Store, after_id: int, last_id: int | None = None) -> list[StoryVersion]:
    """Live stories with ``after_id < id <= last_id`` (one archive page; no upper end without ``last_id``), as
    versions, newest first."""
    query = _version_columns().where(_st.c.id > after_id)
    if last_id is not None:
        query = query.where(_st.c.id <= last_id)
    # Sorted here: an ORDER BY on the recency key makes SQLite walk that whole index instead of an id range.
    return sorted(_versions(query, store), key=lambda v: (v.when, v.id), reverse=True)


def stories_by_id(store: Store, ids: Sequence[int]) -> list[Story]:
    """Live stories with these ids, in the order given (an id merged away meanwhile is left out)."""
    if not ids:
        return []
    query = select(_st).where(_st.c.id.in_(list(ids)), _st.c.merged_into.is_(None))
    with store.engine.connect() as conn:
        found = {row.id: _story(row) for row in conn.execute(query)}
    return [found[i] for i in ids if i in found]


def search(store: Store, text: str, limit: int) -> list[Story]:
    """Live stories whose title or summary contains ``text`` (case-insensitive), newest first."""
    words = text.split()
    if not words or limit <= 0:
        return []
    query = _with_count()
    for word in words[:8]:  # every word must appear somewhere; a bound keeps a pasted paragraph cheap
        pattern = "%" + _like_escape(word.lower()) + "%"
        query = query.where(
            or_(
                func.lower(_st.c.title).like(pattern, escape=_LIKE_ESCAPE),
                func.lower(_st.c.summary).like(pattern, escape=_LIKE_ESCAPE),
            )
        )
    with store.engine.connect() as conn:
        return [_story(row) for row in conn.execute(query.order_by(*_recency()).limit(limit))]


def count_live(store: Store) -> int:
    with store.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(_st).where(_st.c.merged_into.is_(None))).scalar_one()
        return int(n)


def tags(store: Store) -> list[str]:
    """Every tag carried by a live story, lower-cased, sorted."""
    # DISTINCT on the JSON text: few distinct tag lists exist, so few rows come back (json has no equality in PG).
    query = select(cast(_st.c.tags, Text).label("t")).where(_st.c.merged_into.is_(None)).distinct()
    found: set[str] = set()
    with store.engine.connect() as conn:
        for (raw,) in conn.execute(query):
            value = json.loads(raw) if raw else []
            found.update(str(t).lower() for t in value if str(t).strip())
    return sorted(found)


def resolve(store: Store, story_id: int) -> int | None:
    """The live story ``story_id`` now is: itself, or the survivor it was merged into. None when unknown."""
    current = story_id
    with store.engine.connect() as conn:
        for _ in range(_MAX_HOPS):
            row = conn.execute(select(_st.c.id, _st.c.merged_into).where(_st.c.id == current)).first()
            if row is None:
                return None
            if row.merged_into is None:
                return int(row.id)
            current = int(row.merged_into)
    return None


def story(store: Store, story_id: int) -> Story | None:
    """One live story with its sighting count; None when unknown or merged away (see :func:`resolve`)."""
    with store.engine.connect() as conn:
        row = conn.execute(_with_count().where(_st.c.id == story_id)).first()
        return _story(row) if row is not None else None


def story_sources(store: Store, story_id: int) -> list[StorySource]:
    """Where a story was seen, first sighting first."""
    s, src = schema.sighting, schema.source
    query = (
        select(
            s.c.title,
            s.c.link,
            s.c.published,
            s.c.first_seen,
            s.c.author,
            src.c.kind,
            src.c.name,
            src.c.location,
            src.c.url,
        )
        .join(src, src.c.id == s.c.source_id)
        .where(s.c.story_id == story_id)
        .order_by(s.c.first_seen, s.c.id)
    )
    with store.engine.connect() as conn:
        return [
            StorySource(
                source=row.name or (row.url or row.location if row.kind == "feed" else PurePath(row.location).name),
                kind=row.kind,
                title=row.title,
                link=row.link,
                published=row.published,
                first_seen=row.first_seen,
                author=row.author,
            )
            for row in conn.execute(query)
        ]


def authors(store: Store, story_ids: Iterable[int]) -> dict[int, str]:
    """The author of each story's first sighting that names one (stories without any are left out)."""
    ids = sorted(set(story_ids))
    if not ids:
        return {}
    s = schema.sighting
    query = (
        select(s.c.story_id, s.c.author)
        .where(s.c.story_id.in_(ids), s.c.author.is_not(None), s.c.author != "")
        .order_by(s.c.story_id, s.c.first_seen, s.c.id)
    )
    found: dict[int, str] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            found.setdefault(int(row.story_id), row.author)
    return found


# ---- what a publish depends on, and the archive pages ----------------------------------------------------------


def state(store: Store) -> StoreState:
    """Three single-aggregate queries: SQLite answers max() from an index, count() from the smallest index."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(_st)).scalar_one()
        max_id = conn.execute(select(func.max(_st.c.id))).scalar_one()
        max_updated = conn.execute(select(func.max(_st.c.updated))).scalar_one()
    return StoreState(rows=int(rows), max_id=int(max_id or 0), max_updated=max_updated)


def next_boundary(store: Store, after_id: int, size: int) -> int | None:
    """The id closing the page of ``size`` story rows (merged-away ones included) after ``after_id``; None if short."""
    query = select(_st.c.id).where(_st.c.id > after_id).order_by(_st.c.id).limit(1).offset(size - 1)
    with store.engine.connect() as conn:
        found = conn.execute(query).scalar_one_or_none()
    return int(found) if found is not None else None


def boundaries(store: Store, size: int) -> list[int]:
    """The closing id of every full page of ``size`` story rows, in one pass over the primary key."""
    rn = func.row_number().over(order_by=_st.c.id).label("rn")
    ranked = select(_st.c.id, rn).subquery()
    query = select(ranked.c.id).where(ranked.c.rn % size == 0).order_by(ranked.c.id)
    with store.engine.connect() as conn:
        return [int(i) for i in conn.execute(query).scalars()]


def uid(store: Store, story_id: int) -> str | None:
    """The tag: URI of a story row, merged away or not."""
    with store.engine.connect() as conn:
        found = conn.execute(select(_st.c.uid).where(_st.c.id == story_id)).scalar_one_or_none()
    return str(found) if found is not None else None


def changed_since(store: Store, since: datetime) -> list[tuple[int, tuple[str, ...]]]:
    """(id, tags) of story rows, merged-away ones included, updated at or after ``since``, by id."""
    # No ORDER BY: SQLite would then walk the primary key instead of the updated index.
    query = select(_st.c.id, _st.c.tags).where(_st.c.updated >= since)
    with store.engine.connect() as conn:
        return sorted((int(row.id), _tags(row.tags)) for row in conn.execute(query))

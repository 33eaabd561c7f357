"""What publishing and the web read: stories by recency, by tag, by topic and by archive page (as cheap versions
first), search (SQLite FTS5 or PostgreSQL full text, over the same tokens: :mod:`ingest.core.search`; within a topic
too), tags, a story's sources and authors, and the fingerprint that tells a publish whether anything changed.

Archive pages are ranges of story ids (creation order); see ``newsletter.publish`` for the scheme.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Integer, MetaData, Select, Table, Text, cast, func, literal_column, select

from ingest.core.models import Byline, StoreState, Story, StorySource, StoryVersion
from ingest.core.search import Clause, search_query
from ingest.core.sources import source_name
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.rows import chunks, one_of, record
from ingest.store.stories import newest_first, visible, visible_stories

__all__ = ["SiteMixin"]

_st = schema.story
_LIKE_ESCAPE = "\\"


def _like_escape(text: str) -> str:
    for char in (_LIKE_ESCAPE, "%", "_"):
        text = text.replace(char, _LIKE_ESCAPE + char)
    return text


def _in_topic(query: Select[Any], topic: str | None) -> Select[Any]:
    """``query`` narrowed to stories carrying ``topic`` (a slug, so exact: its JSON text holds no escapes)."""
    if topic is None:
        return query
    # Topics are a JSON list of slugs: the quoted slug is one whole element. Portable to PostgreSQL's json.
    pattern = "%" + _like_escape(json.dumps(topic)) + "%"
    return query.where(cast(_st.c.topics, Text).like(pattern, escape=_LIKE_ESCAPE))


def _tsquery(clauses: Sequence[Clause]) -> str:
    """PostgreSQL ``to_tsquery`` text of the clauses (tokens are ``[a-z0-9]+``: nothing to quote)."""

    def clause(alternatives: Sequence[str]) -> str:
        return "(" + " | ".join(" <-> ".join(alt.split()) for alt in alternatives) + ")"

    return " & ".join(("!" if negated else "") + clause(alts) for negated, alts in clauses)


def _fts5_query(clauses: Sequence[Clause]) -> str:
    """SQLite FTS5 MATCH text of the clauses: each alternative a quoted phrase, ``NOT`` for left-out ones."""

    def clause(alternatives: Sequence[str]) -> str:
        return "(" + " OR ".join(f'"{alt}"' for alt in alternatives) + ")"

    wanted = " AND ".join(clause(alts) for negated, alts in clauses if not negated)
    return f"({wanted})" + "".join(f" NOT {clause(alts)}" for negated, alts in clauses if negated)


_fts = Table(schema.SEARCH_TABLE, MetaData(), Column("rowid", Integer))  # SQLite's FTS5 table (made by its DDL)
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")


def _version_columns(*, hidden: bool = True) -> Select[Any]:
    """Live stories as versions; without ``hidden``, only the visible ones."""
    when = func.coalesce(_st.c.published, _st.c.first_seen).label("when")
    query = select(_st.c.id, when, _st.c.updated, _st.c.hidden_at.is_not(None).label("hidden"))
    return query.where(_st.c.merged_into.is_(None) if hidden else visible())


class SiteMixin(StoreBase):
    def _versions(self, query: Select[Any]) -> list[StoryVersion]:
        with self.engine.connect() as conn:
            return [record(StoryVersion, row) for row in conn.execute(query)]

    def recent_versions(self, limit: int, *, tag: str | None = None, topic: str | None = None) -> list[StoryVersion]:
        """Live stories, newest first, as versions only (no text is read): cheap to compare with last time. With
        ``tag``, only those carrying it (case-insensitive); with ``topic``, only those in it. Hidden stories count: a
        document holding the newest ``limit`` says which of them were deleted (RFC 6721)."""
        if tag is None:
            return self._versions(_in_topic(_version_columns(), topic).order_by(*newest_first()).limit(limit))
        wanted = tag.lower()
        base = _version_columns().add_columns(_st.c.tags).order_by(*newest_first())
        if self.dialect == "postgresql":
            base = base.where(schema.tag_set(_st.c.tags).contains([wanted]))  # the GIN index ix_story_tags
        else:
            # Match the element's JSON text, then check exactly in Python (LIKE is a prefilter: ASCII-case-insensitive
            # and blind to list structure).
            pattern = "%" + _like_escape(json.dumps(wanted)) + "%"
            base = base.where(cast(_st.c.tags, Text).ilike(pattern, escape=_LIKE_ESCAPE))
        found: list[StoryVersion] = []
        skip, batch = 0, max(limit, 50)
        with self.engine.connect() as conn:
            while len(found) < limit:
                rows = conn.execute(base.limit(batch).offset(skip)).all()
                skip += len(rows)
                found.extend(record(StoryVersion, r) for r in rows if wanted in {t.lower() for t in r.tags})
                if len(rows) < batch:
                    break
        return found[:limit]

    def versions_between(self, after_id: int, last_id: int | None = None) -> list[StoryVersion]:
        """Live stories, hidden ones included, with ``after_id < id <= last_id`` (one archive page; no upper end
        without ``last_id``), as versions, newest first."""
        query = _version_columns().where(_st.c.id > after_id)
        if last_id is not None:
            query = query.where(_st.c.id <= last_id)
        # Sorted here: an ORDER BY on the recency key makes SQLite walk that whole index instead of an id range.
        return sorted(self._versions(query), key=lambda v: (v.when, v.id), reverse=True)

    def _matching(
        self, query: Select[Any], text: str, topic: str | None = None
    ) -> tuple[Select[Any], ColumnElement[Any]] | None:
        """``query`` narrowed to the stories matching ``text`` (see :mod:`ingest.core.search`) and carrying
        ``topic``, and their relevance (higher is better); None when the query asks for nothing."""
        query = _in_topic(query, topic)
        clauses = search_query(text.replace("\x00", " "))
        if not clauses:
            # a topic alone: every story in it is as relevant (an expression: a bare 0 in ORDER BY is a position)
            return None if topic is None else (query, cast(literal_column("0"), Integer))
        if self.dialect == "postgresql":
            vector: ColumnElement[Any] = literal_column(f"{_st.name}.{schema.SEARCH_VECTOR}")
            tsquery = func.to_tsquery(_SIMPLE, _tsquery(clauses))
            return query.where(vector.op("@@")(tsquery)), func.ts_rank(vector, tsquery)
        match = literal_column(schema.SEARCH_TABLE).op("MATCH")(_fts5_query(clauses))
        # bm25 is lower for better matches; a word in the title weighs ten in the summary
        rank = -func.bm25(literal_column(schema.SEARCH_TABLE), 10.0, 1.0)
        return query.join(_fts, _fts.c.rowid == _st.c.id).where(match), rank

    def search(self, text: str, limit: int, *, offset: int = 0, topic: str | None = None) -> list[Story]:
        """Visible stories matching ``text`` (and carrying ``topic``; ``text`` may then be empty), the most
        relevant first, then the newest."""
        when = func.coalesce(_st.c.published, _st.c.first_seen)
        found = self._matching(select(_st.c.id, when.label("when")).where(visible()), text, topic)
        if found is None or limit <= 0:
            return []
        query, rank = found
        # The page's ids first, from the matches' ids and ranks alone; the rows (and their sighting counts) then for
        # that page only: a common word matches thousands of stories.
        ranked = query.add_columns(rank.label("rank")).order_by(rank.desc(), when.desc(), _st.c.id.desc())
        page = ranked.limit(limit).offset(offset).subquery()
        order = (page.c.rank.desc(), page.c.when.desc(), _st.c.id.desc())
        rows = visible_stories().join(page, page.c.id == _st.c.id).order_by(*order)
        with self.engine.connect() as conn:
            return [record(Story, row) for row in conn.execute(rows)]

    def count_matches(self, text: str, *, topic: str | None = None) -> int:
        """How many stories :meth:`search` finds for ``text`` (and ``topic``) in all."""
        found = self._matching(select(func.count()).select_from(_st).where(visible()), text, topic)
        if found is None:
            return 0
        with self.engine.connect() as conn:
            return int(conn.execute(found[0]).scalar_one())

    def tags(self) -> list[str]:
        """Every tag carried by a visible story, lower-cased, sorted."""
        # DISTINCT on the JSON text: few distinct tag lists exist, so few rows come back (json has no equality in PG).
        query = select(cast(_st.c.tags, Text).label("t")).where(visible()).distinct()
        found: set[str] = set()
        with self.engine.connect() as conn:
            for (raw,) in conn.execute(query):
                value = json.loads(raw) if raw else []
                found.update(str(t).lower() for t in value if str(t).strip())
        return sorted(found)

    def story_sources(self, story_id: int) -> list[StorySource]:
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
                src.c.folder,
                src.c.site_url,
            )
            .join(src, src.c.id == s.c.source_id)
            .where(s.c.story_id == story_id)
            .order_by(s.c.first_seen, s.c.id)
        )
        with self.engine.connect() as conn:
            return [
                StorySource(
                    source=source_name(row.kind, row.name, row.location, row.url, row.folder),
                    kind=row.kind,
                    title=row.title,
                    link=row.link,
                    published=row.published,
                    first_seen=row.first_seen,
                    author=row.author,
                    site_url=row.site_url,
                )
                for row in conn.execute(query)
            ]

    def bylines(self, story_ids: Iterable[int]) -> dict[int, Byline]:
        """Whom each story's feed entry credits: its first sighting that names an author, with that sighting's
        source; else its first sighting's source alone."""
        ids = sorted(set(story_ids))
        s, src = schema.sighting, schema.source
        first: dict[int, Byline] = {}
        credited: dict[int, Byline] = {}
        with self.engine.connect() as conn:
            for part in chunks(ids):
                query = (
                    select(s.c.story_id, s.c.author, src.c.kind, src.c.name, src.c.location, src.c.url, src.c.folder)
                    .join(src, src.c.id == s.c.source_id)
                    .where(one_of(conn.dialect.name, s.c.story_id, part))
                    .order_by(s.c.story_id, s.c.first_seen, s.c.id)
                )
                for row in conn.execute(query):
                    story_id, author = int(row.story_id), (row.author or "").strip()
                    byline = Byline(source_name(row.kind, row.name, row.location, row.url, row.folder), author or None)
                    first.setdefault(story_id, byline)
                    if author:
                        credited.setdefault(story_id, byline)
        return first | credited

    # ---- what a publish depends on, and the archive pages ------------------------------------------------------

    def publish_generation(self) -> int:
        """A number that grows with every committed change to a story (0 before any): one primary-key read."""
        table = schema.publish_generation
        with self.engine.connect() as conn:
            found = conn.execute(select(table.c.generation).where(table.c.id == 1)).scalar()
        return int(found or 0)

    def publish_state(self) -> StoreState:
        """Three lookups in an index each (no count: PostgreSQL would read every story for it)."""
        table = schema.publish_generation
        with self.engine.connect() as conn:
            generation = conn.execute(select(table.c.generation).where(table.c.id == 1)).scalar()
            max_id = conn.execute(select(func.max(_st.c.id))).scalar_one()
            max_updated = conn.execute(select(func.max(_st.c.updated))).scalar_one()
        return StoreState(generation=int(generation or 0), max_id=int(max_id or 0), max_updated=max_updated)

    def next_boundary(self, after_id: int, size: int) -> int | None:
        """The id closing the page of ``size`` story rows (merged-away ones included) after ``after_id``; None if
        short."""
        query = select(_st.c.id).where(_st.c.id > after_id).order_by(_st.c.id).limit(1).offset(size - 1)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
        return int(found) if found is not None else None

    def boundaries(self, size: int) -> list[int]:
        """The closing id of every full page of ``size`` story rows, in one pass over the primary key."""
        rn = func.row_number().over(order_by=_st.c.id).label("rn")
        ranked = select(_st.c.id, rn).subquery()
        query = select(ranked.c.id).where(ranked.c.rn % size == 0).order_by(ranked.c.id)
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(query).scalars()]

    def story_uid(self, story_id: int) -> str | None:
        """The tag: URI of a story row, merged away or not."""
        with self.engine.connect() as conn:
            found = conn.execute(select(_st.c.uid).where(_st.c.id == story_id)).scalar_one_or_none()
        return str(found) if found is not None else None

    def changed_since(self, since: datetime) -> list[tuple[int, tuple[str, ...], tuple[str, ...]]]:
        """(id, tags, topics) of story rows, merged-away ones included, updated at or after ``since``, by id."""
        # No ORDER BY: SQLite would then walk the primary key instead of the updated index.
        query = select(_st.c.id, _st.c.tags, _st.c.topics).where(_st.c.updated >= since)
        with self.engine.connect() as conn:
            return sorted((int(row.id), tuple(row.tags), tuple(row.topics)) for row in conn.execute(query))

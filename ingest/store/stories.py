"""Stories and their sightings as read back: the live stories with their sighting counts, one story, where an id
now lives (merges followed), the sightings of a story. Writing stories is :mod:`ingest.store.clustering`'s.

"Live" is not merged away; "visible" is live and not hidden by the operator (what readers may see: pages, feeds,
digests). "Newest first" everywhere is ``coalesce(published, first_seen) DESC, id DESC``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, func, select

from ingest.core.links import is_row_id
from ingest.core.models import Sighting, Story
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.rows import follow, record

__all__ = ["StoriesMixin", "live_stories", "newest_first", "resolve", "visible", "visible_stories"]

_st = schema.story


def live_stories() -> Select[Any]:
    """THE query of live stories (not merged away) with their sighting count (``sightings``, the copies retention
    folded included), counted per row through the sighting(story_id) index. Callers add their own filter, order and
    limit."""
    s = schema.sighting
    n = select(func.count()).where(s.c.story_id == _st.c.id).correlate(_st).scalar_subquery()
    return select(_st, (n + _st.c.folded_sightings).label("sightings")).where(_st.c.merged_into.is_(None))


def visible() -> ColumnElement[bool]:
    """The condition that a story row is live and not hidden."""
    return and_(_st.c.merged_into.is_(None), _st.c.hidden_at.is_(None))


def visible_stories() -> Select[Any]:
    """:func:`live_stories` less the hidden ones: what readers may see."""
    return live_stories().where(_st.c.hidden_at.is_(None))


def newest_first() -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    return func.coalesce(_st.c.published, _st.c.first_seen).desc(), _st.c.id.desc()


def resolve(conn: Connection, story_id: int) -> int | None:
    """The live story ``story_id`` now is: itself, or the survivor it was merged into. None when unknown (or a cycle,
    which folding never makes)."""

    def merged_into(current: int) -> int | None:
        return conn.execute(select(_st.c.merged_into).where(_st.c.id == current)).scalar()

    if not is_row_id(story_id) or conn.execute(select(_st.c.id).where(_st.c.id == story_id)).first() is None:
        return None
    return follow(story_id, merged_into)


class StoriesMixin(StoreBase):
    def stories(self, limit: int | None = None, *, offset: int = 0, hidden: bool = False) -> list[Story]:
        """Visible stories with their sighting counts, newest first; the hidden ones too with ``hidden``."""
        query = (live_stories() if hidden else visible_stories()).order_by(*newest_first()).offset(offset)
        if limit is not None:
            if limit <= 0:
                return []
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [record(Story, row) for row in conn.execute(query)]

    def story(self, story_id: int) -> Story | None:
        """One live story (hidden or not: see ``hidden_at``) with its sighting count; None when unknown or merged
        away (see :meth:`resolve_story`)."""
        if not is_row_id(story_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(live_stories().where(_st.c.id == story_id)).first()
            return record(Story, row) if row is not None else None

    def stories_by_id(self, ids: Sequence[int]) -> list[Story]:
        """Live stories (hidden ones too) with these ids, in the order given (an id merged away meanwhile is left
        out)."""
        if not ids:
            return []
        with self.engine.connect() as conn:
            found = {row.id: record(Story, row) for row in conn.execute(live_stories().where(_st.c.id.in_(ids)))}
        return [found[i] for i in ids if i in found]

    def resolve_story(self, story_id: int) -> int | None:
        """The live story ``story_id`` now is (see :func:`resolve`)."""
        with self.engine.connect() as conn:
            return resolve(conn, story_id)

    def sightings(self, story_id: int | None = None) -> list[Sighting]:
        """Sightings in the order they were stored, with their source's location; one story's with ``story_id``."""
        s, src = schema.sighting, schema.source
        query = select(s, src.c.location.label("source_location")).join(src, src.c.id == s.c.source_id).order_by(s.c.id)
        if story_id is not None:
            query = query.where(s.c.story_id == story_id)
        with self.engine.connect() as conn:
            return [record(Sighting, row) for row in conn.execute(query)]

    def count_live(self) -> int:
        """Visible stories: live ones the operator did not hide."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_st).where(visible())).scalar_one())

    def hidden_stories(self) -> list[Story]:
        """The stories the operator hid, most recently hidden first."""
        query = live_stories().where(_st.c.hidden_at.is_not(None)).order_by(_st.c.hidden_at.desc(), _st.c.id.desc())
        with self.engine.connect() as conn:
            return [record(Story, row) for row in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            sources = conn.execute(select(func.count()).select_from(schema.source)).scalar_one()
            sightings = conn.execute(select(func.count()).select_from(schema.sighting)).scalar_one()
        return {"sources": int(sources), "sightings": int(sightings), "stories": self.count_live()}

"""The operator's overrides: merging two stories, splitting a sighting out, hiding a story and showing it again, and
explaining a story.

A merge or split is kept in ``story_override`` (kind ``merge``: must link; ``split``: cannot link) so the matcher
respects it later; both take the clustering lock so an ingest checking its plan sees them, or not at all. Hiding sets
``story.hidden_at`` (and the operator's reason); the story keeps its id and sightings, and new copies of it join it
hidden. Tagging or untagging a story with a topic is kept in ``story_topic_override``; ``retag`` recomputes every
sighting's topics after the taxonomy changed. Every one of them gives the rows it changes a new ``updated``, so
publishing rebuilds what held them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection, and_, bindparam, func, or_, select

from ingest.core.errors import UsageError
from ingest.core.links import mint_uid
from ingest.core.models import Explanation, Override, Story
from ingest.dedupe import Member, canonical
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.clustering import fold, refresh, stamp, story_values, take_lock
from ingest.store.rows import chunks, record
from ingest.store.stories import StoriesMixin, live_stories, resolve

__all__ = ["RETAG_BATCH", "OverridesMixin"]

#: Sightings retagged per transaction: short transactions, so ingest and the web are not kept waiting.
RETAG_BATCH = 500


class OverridesMixin(StoriesMixin, StoreBase):
    def merge_stories(self, a: int, b: int, now: datetime) -> tuple[int, int]:
        """The operator's merge: returns (survivor, loser); the older id survives."""
        try:
            with self.engine.begin() as conn:
                return _merge(conn, a, b, now)
        except (LookupError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    def split_sighting(self, story_id: int, sighting_id: int, now: datetime) -> int:
        """The operator's split: the sighting gets a story of its own; returns its id."""
        try:
            with self.engine.begin() as conn:
                return _split(conn, story_id, sighting_id, now, uid_authority=self.uid_authority)
        except (LookupError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    def hide_story(self, story_id: int, reason: str | None, now: datetime) -> tuple[Story, bool]:
        """Hide a live story from readers; returns (the story, whether it was visible until now). Hiding a hidden
        story again keeps when it was hidden and takes a new ``reason`` when one is given."""
        try:
            with self.engine.begin() as conn:
                take_lock(conn)  # stamps and folds are ordered with ingests
                before = _live_row(conn, story_id)
                st = schema.story
                if before.hidden_at is None:
                    at = stamp(conn, now)  # the tombstone's "when" is then the document's "updated"
                    values = {"hidden_at": at, "hidden_reason": reason, "updated": at}
                    conn.execute(st.update().where(st.c.id == story_id).values(**values))
                elif reason is not None:
                    conn.execute(st.update().where(st.c.id == story_id).values(hidden_reason=reason))
                return _live_row(conn, story_id), before.hidden_at is None
        except LookupError as exc:
            raise UsageError(str(exc)) from None

    def unhide_story(self, story_id: int, now: datetime) -> tuple[Story, bool]:
        """Show a hidden story again; returns (the story, whether it was hidden until now)."""
        try:
            with self.engine.begin() as conn:
                take_lock(conn)
                before = _live_row(conn, story_id)
                if before.hidden_at is not None:
                    st = schema.story
                    values = {"hidden_at": None, "hidden_reason": None, "updated": stamp(conn, now)}
                    conn.execute(st.update().where(st.c.id == story_id).values(**values))
                return _live_row(conn, story_id), before.hidden_at is not None
        except LookupError as exc:
            raise UsageError(str(exc)) from None

    def set_story_topic(self, story_id: int, topic: str, *, added: bool, now: datetime) -> tuple[Story, bool]:
        """The operator's tag (``added``) or untag of a live story; returns (the story, whether its topics changed).
        The word is kept (``story_topic_override``): retagging and new sightings never undo it."""
        o = schema.story_topic_override
        try:
            with self.engine.begin() as conn:
                take_lock(conn)
                before = _live_row(conn, story_id)
                conn.execute(o.delete().where(o.c.story_id == story_id, o.c.topic == topic))
                conn.execute(o.insert().values(story_id=story_id, topic=topic, added=added))
                refresh(conn, [story_id], now)
                after = _live_row(conn, story_id)
                return after, after.topics != before.topics
        except LookupError as exc:
            raise UsageError(str(exc)) from None

    def retag(
        self, tag: Callable[[Sequence[str]], tuple[str, ...]], now: datetime, *, batch: int = RETAG_BATCH
    ) -> tuple[int, int]:
        """Every sighting's topics again, ``tag([title, summary])``, in batches of ``batch`` sightings, one transaction
        each; their stories are refreshed (``updated`` moves only for a story whose topics changed). Returns (sightings
        changed, stories changed)."""
        s, st = schema.sighting, schema.story
        after = 0
        changed_sightings = changed_stories = 0
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    select(s.c.id, s.c.title, s.c.summary, s.c.topics, s.c.story_id)
                    .where(s.c.id > after)
                    .order_by(s.c.id)
                    .limit(batch)
                ).all()
                if not rows:
                    return changed_sightings, changed_stories
                after = rows[-1].id
                updates = [(r, tag([r.title, r.summary])) for r in rows]
                updates = [(r, topics) for r, topics in updates if topics != r.topics]
                if not updates:
                    continue
                take_lock(conn)
                conn.execute(
                    s.update().where(s.c.id == bindparam("sid")).values(topics=bindparam("new")),
                    [{"sid": r.id, "new": list(topics)} for r, topics in updates],
                )
                stories = sorted({r.story_id for r, _ in updates if r.story_id is not None})
                when = select(st.c.id, st.c.updated).where(st.c.id.in_(stories))
                before = {row.id: row.updated for row in conn.execute(when)}
                refresh(conn, stories, now)
                changed_sightings += len(updates)
                changed_stories += sum(1 for row in conn.execute(when) if before.get(row.id) != row.updated)

    def explain(self, story_id: int) -> Explanation:
        """A story, the ids merged into it, its sightings with why each joined, and the operator's overrides."""
        with self.engine.connect() as conn:
            survivor = resolve(conn, story_id)
            if survivor is None:
                raise UsageError(f"no story {story_id}")
            if survivor != story_id:
                return Explanation(story=None, merged_into=survivor, merged=(), sightings=(), overrides=())
            row = conn.execute(live_stories().where(schema.story.c.id == story_id)).one()
            merged = tuple(_merged_ids(conn, story_id))
            sightings = tuple(self.sightings(story_id))
            overrides = tuple(_overrides_of(conn, [s.id for s in sightings]))
        return Explanation(
            story=record(Story, row), merged_into=None, merged=merged, sightings=sightings, overrides=overrides
        )


def _live_row(conn: Connection, story_id: int) -> Story:
    """The live story ``story_id``; ``LookupError`` for an unknown or merged-away id (see :func:`_live_story`)."""
    _live_story(conn, story_id)
    return record(Story, conn.execute(live_stories().where(schema.story.c.id == story_id)).one())


def _live_story(conn: Connection, story_id: int) -> None:
    """Raise ``LookupError`` unless ``story_id`` is a live story (not unknown, not merged away)."""
    row = conn.execute(select(schema.story.c.merged_into).where(schema.story.c.id == story_id)).first()
    if row is None:
        raise LookupError(f"no story {story_id}")
    if row.merged_into is not None:
        raise LookupError(f"story {story_id} was merged into story {row.merged_into}; use that id")


def _merge(conn: Connection, a: int, b: int, now: datetime) -> tuple[int, int]:
    """Fold two live stories into one (the older id survives), recorded as the operator's decision.

    Returns (survivor, loser). Raises ``LookupError`` for an unknown or merged-away id, ``ValueError`` for a == b.
    """
    take_lock(conn)  # an ingest checking its plan must see this change, or not at all
    if a == b:
        raise ValueError(f"story {a} cannot be merged with itself")
    _live_story(conn, a)
    _live_story(conn, b)
    s, o = schema.sighting, schema.story_override
    survivor, loser = min(a, b), max(a, b)
    in_survivor = select(s.c.id).where(s.c.story_id == survivor).scalar_subquery()
    in_loser = select(s.c.id).where(s.c.story_id == loser).scalar_subquery()
    first_a = conn.execute(select(func.min(s.c.id)).where(s.c.story_id == survivor)).scalar()
    first_b = conn.execute(select(func.min(s.c.id)).where(s.c.story_id == loser)).scalar()
    # The operator's merge supersedes any earlier split between these two stories.
    conn.execute(
        o.delete().where(
            o.c.kind == "split",
            or_(
                and_(o.c.sighting_a.in_(in_survivor), o.c.sighting_b.in_(in_loser)),
                and_(o.c.sighting_a.in_(in_loser), o.c.sighting_b.in_(in_survivor)),
            ),
        )
    )
    fold(conn, {loser: survivor}, now)
    if first_a is not None and first_b is not None:
        conn.execute(o.insert().values(kind="merge", sighting_a=first_a, sighting_b=first_b, created_at=now))
    refresh(conn, [survivor], now)
    return survivor, loser


def _split(conn: Connection, story_id: int, sighting_id: int, now: datetime, *, uid_authority: str) -> int:
    """Take one sighting out of a story into a story of its own; the matcher never puts them together again.

    Returns the new story's id. Raises ``LookupError`` when the sighting is not in that story, ``ValueError`` when it
    is the story's only sighting.
    """
    take_lock(conn)  # an ingest checking its plan must see this change, or not at all
    _live_story(conn, story_id)
    s, src, st, o = schema.sighting, schema.source, schema.story, schema.story_override
    row = conn.execute(
        select(s, src.c.location.label("source")).join(src, src.c.id == s.c.source_id).where(s.c.id == sighting_id)
    ).first()
    if row is None or row.story_id != story_id:
        raise LookupError(
            f"sighting {sighting_id} is not in story {story_id}; see `newsletter stories explain {story_id}`"
        )
    others = [r.id for r in conn.execute(select(s.c.id).where(s.c.story_id == story_id, s.c.id != sighting_id))]
    if not others:
        raise ValueError(f"sighting {sighting_id} is the only sighting of story {story_id}: nothing to split")
    member = record(Member, row)
    informative = row.published is not None or bool(row.summary)
    result = conn.execute(
        st.insert().values(
            uid=mint_uid(uid_authority, now),
            first_seen=row.first_seen,
            updated=stamp(conn, now),
            informative=informative,
            **story_values(canonical([member])),
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    new_id = int(pk[0])
    conn.execute(s.update().where(s.c.id == sighting_id).values(story_id=new_id, match_rule="split", match_score=1.0))
    conn.execute(
        o.insert(),
        [{"kind": "split", "sighting_a": sighting_id, "sighting_b": other, "created_at": now} for other in others],
    )
    conn.execute(
        o.delete().where(
            o.c.kind == "merge",
            or_(o.c.sighting_a == sighting_id, o.c.sighting_b == sighting_id),
        )
    )
    conn.execute(st.update().where(st.c.id == story_id).values(updated=stamp(conn, now)))
    refresh(conn, [story_id], now)
    return new_id


def _overrides_of(conn: Connection, sighting_ids: Sequence[int]) -> list[Override]:
    o = schema.story_override
    found: list[Override] = []
    for part in chunks(list(sighting_ids)):
        query = select(o).where(or_(o.c.sighting_a.in_(part), o.c.sighting_b.in_(part))).order_by(o.c.id)
        found.extend(record(Override, r) for r in conn.execute(query))
    return list(dict.fromkeys(found))


def _merged_ids(conn: Connection, story_id: int) -> list[int]:
    """The ids that were merged into ``story_id`` and now resolve to it."""
    st = schema.story
    return [r.id for r in conn.execute(select(st.c.id).where(st.c.merged_into == story_id).order_by(st.c.id))]

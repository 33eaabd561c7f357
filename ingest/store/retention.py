"""Retention: the deliveries of old digests deleted, the copies (sightings) of old stories folded into a count.

Both are cheap to run at every pass: deliveries are found through the few old digests, and stories are folded in
slices of ``first_seen`` (the meta table remembers up to when), each story once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, or_, select

from ingest.core.models import PruneReport
from ingest.store import schema
from ingest.store.base import StoreBase
from ingest.store.clustering import take_lock
from ingest.store.rows import aware, chunks, one_of

__all__ = ["RetentionMixin"]

#: meta key: sightings of live stories first seen before this time were folded already
FOLDED_BEFORE = "retention.sightings_folded_before"
_BATCH = 500

_st = schema.story
_si = schema.sighting


class RetentionMixin(StoreBase):
    def prune(self, *, deliveries_before: datetime | None, sightings_before: datetime | None) -> PruneReport:
        """Delete the deliveries of digests whose period ended before ``deliveries_before``; fold the sightings of
        stories first seen before ``sightings_before``. None: keep those forever."""
        removed = self._prune_deliveries(deliveries_before) if deliveries_before is not None else 0
        stories = sightings = 0
        if sightings_before is not None:
            stories, sightings = self._fold_sightings(sightings_before)
        return PruneReport(deliveries=removed, stories=stories, sightings=sightings)

    def _prune_deliveries(self, before: datetime) -> int:
        dg, dl = schema.digest, schema.delivery
        with self.engine.begin() as conn:
            old = [int(i) for i in conn.execute(select(dg.c.id).where(dg.c.period_end < before)).scalars()]
            if not old:
                return 0
            return int(conn.execute(delete(dl).where(one_of(conn.dialect.name, dl.c.digest_id, old))).rowcount)

    def _fold_sightings(self, before: datetime) -> tuple[int, int]:
        raw = self.meta_value(FOLDED_BEFORE)
        since = aware(datetime.fromisoformat(raw)) if raw else None
        if since is not None and since >= before:
            return 0, 0
        window = [_st.c.merged_into.is_(None), _st.c.first_seen < before]
        if since is not None:
            window.append(_st.c.first_seen >= since)
        stories = sightings = last = 0
        while True:
            with self.engine.begin() as conn:
                ids = [
                    int(i)
                    for i in conn.execute(
                        select(_st.c.id).where(*window, _st.c.id > last).order_by(_st.c.id).limit(_BATCH)
                    ).scalars()
                ]
                if not ids:
                    break
                last = ids[-1]
                take_lock(conn)  # an ingest placing a sighting into one of these stories waits, or went first
                folded = _fold(conn, ids)
            stories += len(folded)
            sightings += sum(folded.values())
        self.set_meta(FOLDED_BEFORE, before.isoformat())
        return stories, sightings


def _fold(conn: Connection, story_ids: list[int]) -> dict[int, int]:
    """Keep each story's first sighting, its first naming an author, and any an operator's decision names; delete
    the rest (and their blocking keys); count them on the story. Returns story id -> sightings folded."""
    ov = schema.story_override
    rows = conn.execute(
        select(_si.c.id, _si.c.story_id, _si.c.author)
        .where(one_of(conn.dialect.name, _si.c.story_id, story_ids))
        .order_by(_si.c.story_id, _si.c.first_seen, _si.c.id)
    ).all()
    ids = [r.id for r in rows]
    named: set[int] = set()
    for part in chunks(ids):
        either = or_(one_of(conn.dialect.name, ov.c.sighting_a, part), one_of(conn.dialect.name, ov.c.sighting_b, part))
        for a, b in conn.execute(select(ov.c.sighting_a, ov.c.sighting_b).where(either)):
            named.update((int(a), int(b)))
    firsts: set[int] = set()
    authored: set[int] = set()
    dropped: list[int] = []
    folded: dict[int, int] = {}
    for row in rows:
        if row.story_id not in firsts:
            firsts.add(row.story_id)
        elif (row.author or "").strip() and row.story_id not in authored:
            authored.add(row.story_id)
        elif row.id not in named:
            dropped.append(row.id)
            folded[row.story_id] = folded.get(row.story_id, 0) + 1
            continue
        if (row.author or "").strip():
            authored.add(row.story_id)
    for part in chunks(dropped):
        keys = schema.sighting_key
        conn.execute(delete(keys).where(one_of(conn.dialect.name, keys.c.sighting_id, part)))
        conn.execute(delete(_si).where(one_of(conn.dialect.name, _si.c.id, part)))
    if folded:
        conn.execute(
            _st.update()
            .where(_st.c.id == bindparam("sid"))
            .values(folded_sightings=_st.c.folded_sightings + bindparam("n")),
            [{"sid": story_id, "n": n} for story_id, n in folded.items()],
        )
    return folded

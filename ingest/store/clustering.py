"""Sightings into stories inside the caller's transaction: the SQL half of dedupe.

The decisions are :mod:`ingest.dedupe`'s: each new item's features and blocking keys are computed once
(:func:`_prepare`), the stored candidates of those keys are read from ``sighting_key`` into a
:class:`~ingest.dedupe.planner.World`, and :func:`ingest.dedupe.planner.plan` (the same planner the in-memory
clusterer runs) says where each sighting goes. This module writes the plan: new stories, sightings and their keys
(one statement per table per batch), merged stories folded, touched stories' canonical fields refreshed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, text
from sqlalchemy.exc import IntegrityError

from ingest.core.links import mint_uid
from ingest.core.models import ParsedItem, SaveResult
from ingest.core.search import search_text
from ingest.dedupe import (
    MAX_CANDIDATES_PER_KEY,
    Canonical,
    Features,
    Incoming,
    MatchInput,
    Member,
    Plan,
    World,
    canonical,
    features,
    keys_of,
    match_input,
    member,
    plan,
)
from ingest.store import locks, schema
from ingest.store.rows import chunks, follow, one_of, record

__all__ = [
    "CLUSTERING_LOCK", "fold", "refresh", "save_items", "stamp", "story_values", "take_lock", "topic_overrides",
]  # fmt: skip

#: The PostgreSQL advisory lock that serializes clustering across processes (any constant; this one spells "dedupe").
CLUSTERING_LOCK = "clustering"  # an advisory lock's name (ingest.store.locks)

#: Provisional ids of sightings not stored yet: negative, and unique in the process.
_PROVISIONAL = itertools.count(-1, -1)


def save_items(
    conn: Connection,
    source_id: int,
    source_location: str,
    items: Sequence[ParsedItem],
    now: datetime,
    *,
    uid_authority: str,
) -> SaveResult:
    """Store a source's parsed items: known keys are marked seen, new ones become sightings placed in stories.

    Processes sharing a PostgreSQL database must place sightings into stories one at a time, or two could each make
    a new story of the same item: a transaction-level advisory lock (:data:`CLUSTERING_LOCK`) orders them. Most of
    the work is done before taking it, optimistically (see :func:`_save_optimistically`).
    """
    unique: dict[str, ParsedItem] = {}
    for item in items:
        unique.setdefault(item.key, item)  # the same key twice in one source: the first appearance wins
    existing = _existing(conn, source_id, list(unique))
    fresh = _prepare([item for key, item in unique.items() if key not in existing], source_location, now)

    def stage() -> _Staged:
        return _stage(conn, source_id, fresh, now, uid_authority=uid_authority)

    staged: _Staged | None = None
    if fresh and conn.dialect.name == "postgresql" and not _holds_lock(conn):
        staged = _save_optimistically(conn, stage)
        if staged is None:  # the world moved under the plan: start over, holding the lock now
            return save_items(conn, source_id, source_location, items, now, uid_authority=uid_authority)
    elif fresh:
        take_lock(conn)
        staged = stage()
    # else only marking sightings seen again: nothing another process could collide with
    if existing:
        s = schema.sighting
        conn.execute(
            s.update().where(s.c.id == bindparam("sid")).values(last_seen=now, position=bindparam("pos")),
            [{"sid": existing[k], "pos": unique[k].position} for k in existing],
        )
    if staged is None:
        return SaveResult(new=0, seen=len(existing), new_stories=0)
    _settle_stored(conn, staged.plan, staged.members, staged.reading.shown, now)
    return SaveResult(new=len(fresh), seen=len(existing), new_stories=staged.plan.new_stories)


@dataclass(frozen=True, slots=True)
class _Fresh:
    """A new item, ready for planning and writing: what it shows and matches on, computed once."""

    item: ParsedItem
    incoming: Incoming  # provisional id (negative, never reused), features, blocking keys
    member: Member


def _prepare(items: Sequence[ParsedItem], source_location: str, now: datetime) -> list[_Fresh]:
    fresh = []
    for item in items:
        pid = next(_PROVISIONAL)
        f = features(match_input(item, sighting_id=pid, source=source_location))
        fresh.append(
            _Fresh(
                item, Incoming(pid, f, tuple(sorted(keys_of(f)))), member(item, first_seen=now, source=source_location)
            )
        )
    return fresh


def _existing(conn: Connection, source_id: int, keys: Sequence[str]) -> dict[str, int]:
    """The source's stored sightings among ``keys``: key -> sighting id."""
    s = schema.sighting
    found: dict[str, int] = {}
    for part in chunks(keys):
        query = select(s.c.key, s.c.id).where(s.c.source_id == source_id, one_of(conn.dialect.name, s.c.key, part))
        for row in conn.execute(query):
            found[row.key] = row.id
    return found


_LOCK_HOLDER = "ingest.clustering.lock"  # Connection.info key: the transaction that holds CLUSTERING_LOCK
_STAMPS = "ingest.clustering.stamps"  # Connection.info key: (transaction, clock reading, next stamp to give)
_ADVANCED = "ingest.clustering.advanced"  # Connection.info key: (transaction, savepoint) that bumped the generation
_TICK = timedelta(microseconds=1)
#: Stamps already given at or after a clock reading are looked for this far ahead of it: a pass writes fewer rows
#: than a minute has microseconds, and a value further ahead came from a clock that was ahead (left alone).
_STAMP_WINDOW = timedelta(minutes=1)


def stamp(conn: Connection, now: datetime) -> datetime:
    """The ``updated`` of one story row written at the clock reading ``now``: ``now`` itself, or the microsecond
    after the last value given at that reading, by this transaction or an earlier one (one reading serves a whole
    ingest pass). No two rows share a value, so no two entries of a feed do (the W3C validator warns about that, and
    readers order by it); consecutive microseconds keep the order the rows were written in and stay inside the pass,
    which lasts far longer, so each value is still a moment when the story was being written. Decision 0006."""
    transaction = conn.get_transaction()
    held = conn.info.get(_STAMPS)
    if held is not None and held[0] is transaction and held[1] == now:
        given: datetime = held[2]
    else:
        st = schema.story
        taken = conn.execute(
            select(func.max(st.c.updated)).where(st.c.updated >= now, st.c.updated < now + _STAMP_WINDOW)
        ).scalar()
        given = now if taken is None else max(now, taken + _TICK)
    conn.info[_STAMPS] = (transaction, now, given + _TICK)
    if conn.dialect.name != "postgresql" or _holds_lock(conn):
        _advance(conn)
    return given


def _advance(conn: Connection) -> None:
    """Bump the publish generation in this transaction, once per savepoint (one rolled back takes its bump along).

    On PostgreSQL only under :data:`CLUSTERING_LOCK`: the generation's row lock is then always taken after the
    advisory lock, never before it, so two writers cannot wait on each other. A stamp given before the lock (an
    optimistic ingest) is counted when the lock is taken (:func:`take_lock`)."""
    here = (conn.get_transaction(), conn.get_nested_transaction())
    if conn.info.get(_ADVANCED) == here:
        return
    table = schema.publish_generation
    if not conn.execute(table.update().where(table.c.id == 1).values(generation=table.c.generation + 1)).rowcount:
        conn.execute(table.insert().values(id=1, generation=1))  # the first change ever (under the lock)
    conn.info[_ADVANCED] = here


def _holds_lock(conn: Connection) -> bool:
    holder = conn.info.get(_LOCK_HOLDER)
    return holder is not None and holder is conn.get_transaction()


def take_lock(conn: Connection) -> None:
    """Take :data:`CLUSTERING_LOCK` until this transaction ends (PostgreSQL; SQLite has one writer anyway)."""
    if conn.dialect.name != "postgresql" or _holds_lock(conn):
        return
    locks.hold_for_transaction(conn, CLUSTERING_LOCK)
    conn.info[_LOCK_HOLDER] = conn.get_transaction()
    stamped = conn.info.get(_STAMPS)
    if stamped is not None and stamped[0] is conn.get_transaction():
        _advance(conn)


@dataclass
class _Staged:
    plan: Plan
    members: dict[int, Member]
    reading: _Reading  # what the plan was made from
    keys: list[str]  # every blocking key of the new sightings
    ids: frozenset[int]  # the new sightings' ids


def _save_optimistically(conn: Connection, stage: Callable[[], _Staged]) -> _Staged | None:
    """Run ``stage()`` (:func:`_stage`: plan, then write the new sightings, their new stories and their keys)
    WITHOUT the lock, in a savepoint; then take the lock and read again what the plan was made from. Unchanged (the
    usual case: other processes were busy with other stories), the work stands, and only what touches stored stories
    (:func:`_settle_stored`) is left to do under the lock. Changed (a process committed a sighting with one of our
    keys, or merged or split a story we read), the savepoint is rolled back and None returned: the caller starts
    over, holding the lock."""
    savepoint = conn.begin_nested()
    try:
        staged = stage()
    except IntegrityError:  # another process stored one of these very keys of this source meanwhile
        savepoint.rollback()
        take_lock(conn)
        return None
    take_lock(conn)
    if _read(conn, staged.keys, leave_out=staged.ids, check=True) != staged.reading:
        savepoint.rollback()
        return None
    savepoint.commit()
    return staged


def _stage(conn: Connection, source_id: int, fresh: Sequence[_Fresh], now: datetime, *, uid_authority: str) -> _Staged:
    """Plan first, on provisional ids, then write each table once: new stories, sightings (with their story),
    blocking keys. A feed of 50 entries costs a few statements."""
    s = schema.sighting
    all_keys = sorted({k for f in fresh for k in f.incoming.keys})
    reading = _read(conn, all_keys)
    decided = plan(reading.world, [f.incoming for f in fresh])
    members = {f.incoming.id: f.member for f in fresh}
    story_of = _new_stories(conn, decided, members, now=now, uid_authority=uid_authority)
    rows = []
    for f in fresh:
        verdict = decided.verdicts[f.incoming.id]
        rows.append(
            _sighting_values(source_id, f.item, now)
            | {
                "story_id": story_of[f.incoming.id],
                "match_rule": verdict.rule if verdict else "new",
                "match_score": verdict.score if verdict else 1.0,
            }
        )
    by_key = {row.key: row.id for row in conn.execute(s.insert().returning(s.c.id, s.c.key), rows)}
    real = {f.incoming.id: by_key[f.item.key] for f in fresh}
    _insert_keys(conn, [(k, real[f.incoming.id]) for f in fresh for k in f.incoming.keys])
    return _Staged(plan=decided, members=members, reading=reading, keys=all_keys, ids=frozenset(real.values()))


def _insert_keys(conn: Connection, rows: Sequence[tuple[str, int]]) -> None:
    """Blocking keys, about a dozen per sighting: straight to the driver's executemany, since SQLAlchemy's per-value
    processing cost more than the insert itself (keys are our own ASCII strings; nothing to clean)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # One statement with two arrays: psycopg's executemany sends one query per row (a pipeline, but still about
        # 600 queries a feed), which made these keys most of PostgreSQL's ingest time.
        keys, ids = zip(*rows, strict=True)
        conn.exec_driver_sql(
            "INSERT INTO sighting_key (key, sighting_id) SELECT * FROM unnest(%s::text[], %s::integer[])",
            (list(keys), list(ids)),
        )
        return
    conn.exec_driver_sql("INSERT INTO sighting_key (key, sighting_id) VALUES (?, ?)", list(rows))


# ---- reading what a plan is made from ------------------------------------------------------------------------------


@dataclass
class _Reading:
    """The stored side of a plan. Two readings compare equal when a plan made from one would be the same made from the
    other: the candidates of the keys, their stories, how those stories were merged, and the operator's splits. The
    candidates' texts never change, so they are read once and left out of the comparison."""

    by_key: dict[str, list[int]]  # stored candidates, newest first, capped per key
    story_of: dict[int, int]  # candidate -> its story (as stored, before following merges)
    merged: dict[int, int | None]  # each story read -> the story it was merged into
    informative: dict[int, bool]
    cannot: set[frozenset[int]]
    features: dict[int, Features] = field(compare=False)
    shown: set[tuple[object, ...]] = field(compare=False)

    def live(self, story_id: int) -> int:
        """Follow ``merged_into`` to the surviving story (folding flattens chains; the hop cap guards a cycle)."""
        return follow(story_id, self.merged.get) or story_id

    @property
    def world(self) -> World:
        story_of = {sid: self.live(story) for sid, story in self.story_of.items()}
        return World(
            by_key=self.by_key,
            features=self.features,
            story_of=story_of,
            informative=self.informative,
            cannot=self.cannot,
        )


def _read(
    conn: Connection, all_keys: Sequence[str], *, leave_out: frozenset[int] = frozenset(), check: bool = False
) -> _Reading:
    """Read what planning for ``all_keys`` needs; ``leave_out``: sightings of this transaction, not yet planned on.
    ``check``: only what two readings are compared on (not the candidates' texts)."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for part in chunks(all_keys):
        for row in conn.execute(*_candidates_query(conn, part, len(leave_out))):
            if row.sighting_id not in leave_out and len(by_key[row.key]) < MAX_CANDIDATES_PER_KEY:
                by_key[row.key].append(row.sighting_id)
    ids = sorted({sid for ids in by_key.values() for sid in ids})
    found: dict[int, Features] = {}
    shown: set[tuple[object, ...]] = set()
    if check:
        story_of = _story_of(conn, ids)
    else:
        found, story_of, shown = _load(conn, ids)
    merged, informative = _stories_info(conn, set(story_of.values()))
    reading = _Reading(
        by_key=dict(by_key),
        story_of=story_of,
        merged=merged,
        informative=informative,
        cannot=set(),
        features=found,
        shown=shown,
    )
    reading.cannot = _cannot_link(conn, reading)
    return reading


def _candidates_query(conn: Connection, keys: Sequence[str], extra: int) -> tuple[Any, ...]:
    """The stored sightings of each key, newest first: all of them on SQLite; on PostgreSQL the newest
    MAX_CANDIDATES_PER_KEY (plus ``extra``, for the caller's own sightings it leaves out), one backward walk of the
    (key, sighting_id) index per key. Without the limit, a key many sightings share (a date, a site's series title)
    returns more rows the bigger the database grows: measured at 18 ms a lookup after 50,000 sightings."""
    if conn.dialect.name != "postgresql":
        k = schema.sighting_key
        return (select(k.c.key, k.c.sighting_id).where(k.c.key.in_(keys)).order_by(k.c.sighting_id.desc()),)
    return (
        text(
            "SELECT k.key, c.sighting_id FROM unnest(CAST(:keys AS text[])) AS k(key) CROSS JOIN LATERAL"
            " (SELECT sighting_id FROM sighting_key WHERE sighting_key.key = k.key"
            " ORDER BY sighting_id DESC LIMIT :cap) AS c ORDER BY k.key, c.sighting_id DESC"
        ),
        {"keys": list(keys), "cap": MAX_CANDIDATES_PER_KEY + extra},
    )


def _stories_info(conn: Connection, story_ids: set[int]) -> tuple[dict[int, int | None], dict[int, bool]]:
    """Each story's ``merged_into`` and ``informative``, following merges to the survivors (read too)."""
    st = schema.story
    merged: dict[int, int | None] = {}
    informative: dict[int, bool] = {}
    pending = set(story_ids)
    while pending:
        batch, pending = sorted(pending), set()
        for part in chunks(batch):
            query = select(st.c.id, st.c.merged_into, st.c.informative).where(one_of(conn.dialect.name, st.c.id, part))
            for row in conn.execute(query):
                merged[row.id] = row.merged_into
                informative[row.id] = bool(row.informative)
                if row.merged_into is not None and row.merged_into not in merged:
                    pending.add(row.merged_into)
    return merged, informative


def _cannot_link(conn: Connection, reading: _Reading) -> set[frozenset[int]]:
    """Pairs of stories the operator split apart (``story_override`` kind "split"), as surviving story ids."""
    known = set(reading.merged)
    if not known:
        return set()
    o, a, b = schema.story_override, schema.sighting.alias("a"), schema.sighting.alias("b")
    pairs: set[frozenset[int]] = set()
    for part in chunks(sorted(known)):
        query = (
            select(a.c.story_id.label("sa"), b.c.story_id.label("sb"))
            .select_from(o.join(a, a.c.id == o.c.sighting_a).join(b, b.c.id == o.c.sighting_b))
            .where(o.c.kind == "split", or_(a.c.story_id.in_(part), b.c.story_id.in_(part)))
        )
        for row in conn.execute(query):
            if row.sa is not None and row.sb is not None:
                pairs.add(frozenset((reading.live(row.sa), reading.live(row.sb))))
    return pairs


def _story_of(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """Each stored sighting's story (those placed in one)."""
    s = schema.sighting
    found: dict[int, int] = {}
    for part in chunks(list(ids)):
        query = select(s.c.id, s.c.story_id).where(one_of(conn.dialect.name, s.c.id, part), s.c.story_id.is_not(None))
        found.update({row.id: row.story_id for row in conn.execute(query)})
    return found


def _load(conn: Connection, ids: Sequence[int]) -> tuple[dict[int, Features], dict[int, int], set[tuple[object, ...]]]:
    """Stored sightings' features as the matcher sees them, their stories, and what each shows (see :func:`_shows`)."""
    s, src = schema.sighting, schema.source
    found: dict[int, Features] = {}
    story_of: dict[int, int] = {}
    shown: set[tuple[object, ...]] = set()
    for part in chunks(list(ids)):
        query = (
            select(
                s.c.id,
                s.c.kind,
                s.c.title,
                s.c.title_derived,
                s.c.published,
                s.c.summary,
                s.c.link,
                s.c.tags,
                s.c.content,
                s.c.first_seen,
                s.c.story_id,
                s.c.topics,
                src.c.location.label("source"),
            )
            .join(src, src.c.id == s.c.source_id)
            .where(one_of(conn.dialect.name, s.c.id, part), s.c.story_id.is_not(None))
        )
        for row in conn.execute(query):
            found[row.id] = features(record(MatchInput, row))
            story_of[row.id] = row.story_id
            shown.add(_shows(record(Member, row)))
    return found, story_of, shown


# ---- applying the plan ----------------------------------------------------------------------------------------


def _new_stories(
    conn: Connection, decided: Plan, members: dict[int, Member], *, now: datetime, uid_authority: str
) -> dict[int, int]:
    """Insert the stories born in this batch (one statement); returns each new sighting's story id."""
    st = schema.story
    groups: dict[int, list[int]] = defaultdict(list)
    for pid, (kind, n) in decided.assign.items():
        if kind == "group":
            groups[n].append(pid)
    order = sorted(groups)
    rows = [
        {
            "uid": mint_uid(uid_authority, now),
            "first_seen": now,
            "updated": stamp(conn, now),
            "informative": decided.informative.get(("group", n), False),
            **story_values(canonical([members[pid] for pid in groups[n]])),
        }
        for n in order
    ]
    # RETURNING rows are matched by a unique column, not by order: asked to keep the order (sort_by_parameter_order)
    # SQLAlchemy inserts one row per statement on SQLite; this way a batch is one multi-row INSERT.
    by_uid = {row.uid: row.id for row in conn.execute(st.insert().returning(st.c.id, st.c.uid), rows)} if rows else {}
    group_story = {n: by_uid[row["uid"]] for n, row in zip(order, rows, strict=True)}
    return {pid: group_story[n] if kind == "group" else n for pid, (kind, n) in decided.assign.items()}


def _settle_stored(
    conn: Connection, decided: Plan, members: dict[int, Member], shown: set[tuple[object, ...]], now: datetime
) -> None:
    """Stored stories this batch touched: fold the merged ones, mark them informative, refresh what changed."""
    st = schema.story
    joined: dict[int, list[int]] = defaultdict(list)  # stored story -> new sightings that joined it
    for pid, (kind, n) in decided.assign.items():
        if kind == "story":
            joined[n].append(pid)
    if decided.merges:
        fold(conn, decided.merges, now)
    for story_id in joined:
        if decided.informative.get(("story", story_id)):
            conn.execute(st.update().where(st.c.id == story_id, st.c.informative.is_(False)).values(informative=True))
    # A story whose new sightings all repeat one it already had (the same teaser on another page of the site)
    # shows the same thing: skip re-reading all its sightings. Anything else is recomputed.
    touched = {story_id for story_id, pids in joined.items() if any(_shows(members[p]) not in shown for p in pids)}
    refresh(conn, sorted(touched | set(decided.merges.values())), now)


def fold(conn: Connection, merges: dict[int, int], now: datetime) -> None:
    """Fold each loser story into its survivor: sightings move, the loser resolves to the survivor for good.

    Both rows get a new ``updated`` (:func:`stamp`): publishing rebuilds what held either of them. A hidden loser
    hides its survivor: what the operator retracted must not come back as part of another story (they can split it
    out, or show the survivor again).
    """
    s, st, o = schema.sighting, schema.story, schema.story_topic_override
    for loser, survivor in merges.items():
        conn.execute(s.update().where(s.c.story_id == loser).values(story_id=survivor))
        # The operator's topics follow the story; where both had a word on a topic, the survivor's stands.
        kept = select(o.c.topic).where(o.c.story_id == survivor).scalar_subquery()
        conn.execute(o.delete().where(o.c.story_id == loser, o.c.topic.in_(kept)))
        conn.execute(o.update().where(o.c.story_id == loser).values(story_id=survivor))
        conn.execute(st.update().where(st.c.merged_into == loser).values(merged_into=survivor))
        row = conn.execute(
            select(st.c.first_seen, st.c.informative, st.c.hidden_at, st.c.hidden_reason).where(st.c.id == loser)
        ).one()
        conn.execute(st.update().where(st.c.id == loser).values(merged_into=survivor, updated=stamp(conn, now)))
        values: dict[str, Any] = {"updated": stamp(conn, now)}
        if row.informative:
            values["informative"] = True
        if row.hidden_at is not None:
            conn.execute(
                st.update()
                .where(st.c.id == survivor, st.c.hidden_at.is_(None))
                .values(hidden_at=row.hidden_at, hidden_reason=row.hidden_reason)
            )
        conn.execute(st.update().where(st.c.id == survivor).values(**values))
        conn.execute(
            st.update()
            .where(and_(st.c.id == survivor, st.c.first_seen > row.first_seen))
            .values(first_seen=row.first_seen)
        )


def refresh(conn: Connection, story_ids: Sequence[int], now: datetime) -> None:
    """Recompute the canonical fields of these stories from all their sightings; bump ``updated`` only on change."""
    if not story_ids:
        return
    s, src, st = schema.sighting, schema.source, schema.story
    members: dict[int, list[Member]] = defaultdict(list)
    hashes: dict[int, str] = {}
    said = topic_overrides(conn, story_ids)
    for part in chunks(list(story_ids)):
        query = (
            select(s, src.c.location.label("source"))
            .join(src, src.c.id == s.c.source_id)
            .where(one_of(conn.dialect.name, s.c.story_id, part))
            .order_by(s.c.id)
        )
        for row in conn.execute(query):
            members[row.story_id].append(record(Member, row))
        for row in conn.execute(select(st.c.id, st.c.content_hash).where(one_of(conn.dialect.name, st.c.id, part))):
            hashes[row.id] = row.content_hash
    for story_id in story_ids:
        if not members.get(story_id):
            continue
        values = story_values(canonical(members[story_id]), said.get(story_id, {}))
        if values["content_hash"] != hashes.get(story_id):
            conn.execute(st.update().where(st.c.id == story_id).values(updated=stamp(conn, now), **values))


def _shows(m: Member) -> tuple[object, ...]:
    """Everything of a sighting that :func:`ingest.dedupe.canonical` may pick from."""
    return (m.kind, m.title, m.title_derived, m.published, m.summary, m.link, tuple(m.tags), m.content, m.topics)


def topic_overrides(conn: Connection, story_ids: Sequence[int]) -> dict[int, dict[str, bool]]:
    """The operator's topics of these stories: story -> topic -> added (True) or removed (False)."""
    o = schema.story_topic_override
    found: dict[int, dict[str, bool]] = defaultdict(dict)
    for part in chunks(list(story_ids)):
        for row in conn.execute(select(o).where(one_of(conn.dialect.name, o.c.story_id, part))):
            found[row.story_id][row.topic] = bool(row.added)
    return found


def story_values(fields: Canonical, overrides: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """A story row's canonical columns and their ``content_hash``; ``overrides``: the operator's topics (topic ->
    added)."""
    said = overrides or {}
    topics = ({*fields.topics} - {t for t, added in said.items() if not added}) | {t for t, a in said.items() if a}
    values: dict[str, Any] = {
        "title": fields.title,
        "title_derived": fields.title_derived,
        "summary": fields.summary,
        "content": fields.content,
        "link": fields.link,
        "published": fields.published,
        "tags": sorted(set(fields.tags)),
    }
    if topics:  # hashed only when there are any: a story stored before topics keeps its hash, and its ``updated``
        values["topics"] = sorted(topics)
    blob = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    values["content_hash"] = hashlib.sha256(blob.encode()).hexdigest()
    values["topics"] = sorted(topics)
    # Derived from the title and summary, so out of the hash: it stays what it was before search existed.
    values["search_title"] = search_text(fields.title)
    values["search_body"] = search_text(fields.summary)
    return values


def _sighting_values(source_id: int, item: ParsedItem, now: datetime) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "key": item.key,
        "kind": item.kind,
        "position": item.position,
        "title": item.title,
        "title_derived": item.title_derived,
        "published": item.published,
        "raw_date": item.raw_date,
        "summary": item.summary,
        "content": item.content,
        "link": item.link,
        "author": item.author,
        "tags": list(item.tags),
        "topics": list(item.topics),
        "first_seen": now,
        "last_seen": now,
        "story_id": None,
    }

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
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, text
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
    Owner,
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
from ingest.store.rows import chunks, follow, insert_many, one_of, record, update_many

__all__ = [
    "CLUSTERING_LOCK", "fold", "refresh", "save_batch", "save_items", "stamp", "story_values", "take_lock",
    "topic_overrides",
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
    """Store one source's parsed items (see :func:`save_batch`)."""
    return save_batch(conn, [(source_id, source_location, items)], now, uid_authority=uid_authority)[0]


def save_batch(
    conn: Connection,
    sources: Sequence[tuple[int, str, Sequence[ParsedItem]]],
    now: datetime,
    *,
    uid_authority: str,
    known: Mapping[int, Sequence[tuple[str, int]]] | None = None,
) -> list[SaveResult]:
    """Store the parsed items of several sources, ``(id, location, items)`` each, one after the other as if each
    were saved on its own: known keys are marked seen, new ones become sightings placed in stories.

    The stories are exactly those that saving the sources one per transaction, in this order, would make: each
    source is planned on what is stored plus what the sources before it added (:class:`_World`). The work is
    batched: one reading of the candidates for all the sources' keys, one statement per table for their stories,
    sightings and keys. ``known``: per source, the (key, position) of entries its parse skipped as already stored
    (``ParsedFeed.known``): they are marked seen like stored items. Sightings are never deleted, so each is found.

    Processes sharing a PostgreSQL database must place sightings into stories one at a time, or two could each make
    a new story of the same item: a transaction-level advisory lock (:data:`CLUSTERING_LOCK`) orders them. Most of
    the work is done before taking it, optimistically (see :func:`_save_optimistically`).
    """
    if len({source_id for source_id, _, _ in sources}) != len(sources):
        raise ValueError("a batch holds each source once: a later copy must see what the first one stored")
    known = known or {}
    work = [
        _Source(source_id, location, _unique(items), dict(known.get(source_id, ())))
        for source_id, location, items in sources
    ]
    _find_existing(conn, work)
    for w in work:
        w.fresh = _prepare([item for key, item in w.unique.items() if key not in w.existing], w.location, now)
    staged: _Staged | None = None
    if any(w.fresh for w in work):
        if conn.dialect.name == "postgresql" and not _holds_lock(conn):
            staged = _save_optimistically(conn, lambda: _stage(conn, work, now, uid_authority=uid_authority))
            if staged is None:  # the world moved under the plan: start over, holding the lock now
                _find_existing(conn, work)  # another process may have stored some of these very keys
                for w in work:
                    w.fresh = [f for f in w.fresh if f.item.key not in w.existing]
        if staged is None:
            take_lock(conn)
            staged = _stage(conn, work, now, uid_authority=uid_authority)
    # else only marking sightings seen again: nothing another process could collide with
    _mark_seen(conn, work, now)
    if staged is not None:
        _settle_stored(conn, staged, now)
    planned = {p.source.id: p.plan.new_stories for p in staged.planned} if staged is not None else {}
    return [SaveResult(new=len(w.fresh), seen=len(w.existing), new_stories=planned.get(w.id, 0)) for w in work]


def _unique(items: Sequence[ParsedItem]) -> dict[str, ParsedItem]:
    unique: dict[str, ParsedItem] = {}
    for item in items:
        unique.setdefault(item.key, item)  # the same key twice in one source: the first appearance wins
    return unique


@dataclass(frozen=True, slots=True)
class _Fresh:
    """A new item, ready for planning and writing: what it shows and matches on, computed once."""

    item: ParsedItem
    incoming: Incoming  # provisional id (negative, never reused), features, blocking keys
    member: Member


@dataclass
class _Source:
    """One source of a batch: its items by key, the keys its parse skipped as stored (key -> position), those of both
    found stored (key -> sighting id) and the new items."""

    id: int
    location: str
    unique: dict[str, ParsedItem]
    known: dict[str, int]
    existing: dict[str, int] = field(default_factory=dict)
    fresh: list[_Fresh] = field(default_factory=list)


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


def _find_existing(conn: Connection, work: Sequence[_Source]) -> None:
    """Each source's stored sightings among its items' keys (key -> sighting id), for all sources in few queries."""
    s = schema.sighting
    by_source = {w.id: w for w in work}
    keys = sorted({key for w in work for key in itertools.chain(w.unique, w.known)})
    for w in work:
        w.existing = {}
    # Every source's keys with every source: the (source_id, key) index serves it, which a list of pairs did not
    # on SQLite; a key another source of the batch holds is dropped here.
    for part in chunks(keys):
        query = select(s.c.source_id, s.c.key, s.c.id).where(
            s.c.source_id.in_(list(by_source)), one_of(conn.dialect.name, s.c.key, part)
        )
        for row in conn.execute(query):
            w = by_source[row.source_id]
            if row.key in w.unique or row.key in w.known:
                w.existing[row.key] = row.id


def _mark_seen(conn: Connection, work: Sequence[_Source], now: datetime) -> None:
    rows = [
        (now, w.unique[key].position if key in w.unique else w.known[key], sid)
        for w in work
        for key, sid in sorted(w.existing.items(), key=lambda pair: pair[1])
    ]
    update_many(conn, schema.sighting, ("last_seen", "position"), rows)


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
class _Planned:
    """One source's plan, on the world as the sources before it in the batch left it."""

    source: _Source
    plan: Plan
    shown: set[tuple[object, ...]]  # what the candidates it was planned on show (see _shows)
    story: dict[Owner, int]  # each owner of the plan -> its story in the world (provisional for new ones)
    sightings: list[int]  # provisional sighting id of each fresh item, in order


@dataclass
class _Staged:
    planned: list[_Planned]
    reading: _Reading  # what the plans were made from (as read, before the batch)
    keys: list[str]  # every blocking key of the new sightings
    own: Counter[str]  # how many of the new sightings hold each key
    ids: frozenset[int]  # the new sightings' ids
    stories: dict[int, int]  # provisional story id -> real one
    sightings: dict[int, int]  # provisional sighting id -> real one


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
    if _read(conn, staged.keys, leave_out=staged.ids, own=staged.own, check=True) != staged.reading:
        savepoint.rollback()
        return None
    savepoint.commit()
    return staged


#: Provisional ids of the sightings and stories a batch adds, above any real id and in the order they are made, so
#: that the planner of a later source in the batch orders them as it would the stored ones (newest candidates first,
#: the older story surviving a merge).
_BATCH_IDS = 1 << 62


def _stage(conn: Connection, work: Sequence[_Source], now: datetime, *, uid_authority: str) -> _Staged:
    """Plan each source in order, on provisional ids, then write each table once for the whole batch: new stories,
    sightings (with their story), blocking keys. A batch of feeds of 50 entries costs a few statements."""
    all_keys = sorted({k for w in work for f in w.fresh for k in f.incoming.keys})
    reading = _read(conn, all_keys)
    world = _World(reading)
    planned = []
    for w in work:
        if w.fresh:
            planned.append(world.plan(w))
    stories = _new_stories(conn, planned, now=now, uid_authority=uid_authority)
    rows = []
    for p in planned:
        for f in p.source.fresh:
            verdict = p.plan.verdicts[f.incoming.id]
            story = p.story[p.plan.assign[f.incoming.id]]
            item = f.item
            rows.append(
                [
                    p.source.id,
                    item.key,
                    item.kind,
                    item.position,
                    item.title,
                    item.title_derived,
                    item.published,
                    item.raw_date,
                    item.summary,
                    item.content,
                    item.link,
                    item.author,
                    item.tags,
                    item.topics,
                    now,
                    now,
                    stories.get(story, story),
                    verdict.rule if verdict else "new",
                    verdict.score if verdict else 1.0,
                ]
            )
    columns = list(_SIGHTING_COLUMNS)
    provisional = [sid for p in planned for sid in p.sightings]
    ids = _reserve_ids(conn, "sighting", len(rows))
    if ids is not None:
        columns.append("id")
        for row, sighting_id in zip(rows, ids, strict=True):
            row.append(sighting_id)
    returned = insert_many(conn, schema.sighting, columns, rows, returning=("id", "source_id", "key"))
    inserted = {(r.source_id, r.key): r.id for r in returned}
    sightings = {sid: inserted[(row[0], row[1])] for sid, row in zip(provisional, rows, strict=True)}
    _in_order(sightings, "sighting")
    key_rows = [
        (key, sightings[sid])
        for p in planned
        for sid, f in zip(p.sightings, p.source.fresh, strict=True)
        for key in f.incoming.keys
    ]
    _insert_keys(conn, key_rows)
    return _Staged(
        planned=planned,
        reading=reading,
        keys=all_keys,
        own=Counter(key for key, _ in key_rows),
        ids=frozenset(sightings.values()),
        stories=stories,
        sightings=sightings,
    )


def _in_order(real: dict[int, int], what: str) -> None:
    """The database gave rows inserted in one statement ascending ids, in the order of the rows (SQLite's rowid
    rule; PostgreSQL's sequence, drawn row by row). The batch's later sources were planned on that order."""
    ordered = [real[p] for p in sorted(real)]
    if ordered != sorted(ordered):
        raise AssertionError(f"new {what} ids out of the order of their rows: {ordered[:10]}")


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
    conn.exec_driver_sql("INSERT INTO sighting_key (key, sighting_id) VALUES (?, ?)", sorted(rows))


class _World:
    """What a source of the batch is planned on: the reading, plus the sightings, stories, merges and informative
    stories of the sources planned before it, as saving each source in a transaction of its own would have stored
    them and the next source's reading would have found them. The reading itself is left as read (it is compared
    with a second reading on PostgreSQL)."""

    def __init__(self, reading: _Reading) -> None:
        self.reading = reading
        self.by_key: dict[str, list[int]] = dict(reading.by_key)
        self.features: dict[int, Features] = dict(reading.features)
        self.shows: dict[int, tuple[object, ...]] = dict(reading.shows)
        self.story_of: dict[int, int] = dict(reading.story_of)  # as stored: merges are followed by live()
        self.merged: dict[int, int | None] = dict(reading.merged)
        self.informative: dict[int, bool] = dict(reading.informative)
        self.cannot = reading.cannot
        self._ids = itertools.count(_BATCH_IDS)

    def live(self, story_id: int) -> int:
        return follow(story_id, self.merged.get) or story_id

    def plan(self, source: _Source) -> _Planned:
        keys = {k for f in source.fresh for k in f.incoming.keys}
        shown = {self.shows[sid] for key in keys for sid in self.by_key.get(key, ()) if sid in self.shows}
        world = World(
            by_key=self.by_key,
            features=self.features,
            story_of=_Live(self),
            informative=self.informative,
            cannot=self.cannot,
        )
        decided = plan(world, [f.incoming for f in source.fresh])
        # Stories born in this plan, in the order _new_stories inserts them; then the new sightings, in order.
        born = sorted(owner for owner in decided.informative if owner[0] == "group")
        story: dict[Owner, int] = {owner: next(self._ids) for owner in born}
        for owner in decided.informative:
            story.setdefault(owner, owner[1])  # a stored story (or one an earlier source of the batch made)
        sightings = [next(self._ids) for _ in source.fresh]
        added: dict[str, list[int]] = defaultdict(list)
        for sid, f in zip(sightings, source.fresh, strict=True):
            self.features[sid] = f.incoming.features
            self.shows[sid] = _shows(f.member)
            self.story_of[sid] = story[decided.assign[f.incoming.id]]
            for key in f.incoming.keys:
                added[key].append(sid)
        for key, ids in added.items():
            self.by_key[key] = [*reversed(ids), *self.by_key.get(key, ())][:MAX_CANDIDATES_PER_KEY]
        for loser, survivor in decided.merges.items():
            for other, target in self.merged.items():
                if target == loser:
                    self.merged[other] = survivor
            self.merged[loser] = survivor
        for owner, value in decided.informative.items():
            self.informative[story[owner]] = value or self.informative.get(story[owner], False)
            self.merged.setdefault(story[owner], None)
        if decided.merges and self.reading.splits:
            self.cannot = {frozenset((self.live(a), self.live(b))) for a, b in self.reading.splits}
        return _Planned(source=source, plan=decided, shown=shown, story=story, sightings=sightings)


class _Live(Mapping[int, int]):
    """Each sighting's live story in a :class:`_World` (merges followed), looked up when the planner asks."""

    def __init__(self, world: _World) -> None:
        self._world = world

    def __getitem__(self, sid: int) -> int:
        return self._world.live(self._world.story_of[sid])

    def __iter__(self) -> Iterator[int]:
        return iter(self._world.story_of)

    def __len__(self) -> int:
        return len(self._world.story_of)


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
    cannot: set[frozenset[int]]  # the splits below, as surviving story ids
    splits: set[tuple[int, int]] = field(compare=False)  # story pairs the operator split apart, as stored
    features: dict[int, Features] = field(compare=False)
    shows: dict[int, tuple[object, ...]] = field(compare=False)  # candidate -> what it shows (see _shows)

    def live(self, story_id: int) -> int:
        """Follow ``merged_into`` to the surviving story (folding flattens chains; the hop cap guards a cycle)."""
        return follow(story_id, self.merged.get) or story_id


def _read(
    conn: Connection,
    all_keys: Sequence[str],
    *,
    leave_out: Collection[int] = frozenset(),
    own: Mapping[str, int] | None = None,
    check: bool = False,
) -> _Reading:
    """Read what planning for ``all_keys`` needs; ``leave_out``: sightings of this transaction, not yet planned on
    (``own``: how many of them hold each key; all of them, by default). ``check``: only what two readings are
    compared on (not the candidates' texts)."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for part in chunks(all_keys):
        for row in conn.execute(*_candidates_query(conn, part, len(leave_out) if own is None else own)):
            if row.sighting_id not in leave_out and len(by_key[row.key]) < MAX_CANDIDATES_PER_KEY:
                by_key[row.key].append(row.sighting_id)
    ids = sorted({sid for ids in by_key.values() for sid in ids})
    found: dict[int, Features] = {}
    shows: dict[int, tuple[object, ...]] = {}
    if check:
        story_of = _story_of(conn, ids)
    else:
        found, story_of, shows = _load(conn, ids)
    merged, informative = _stories_info(conn, set(story_of.values()))
    reading = _Reading(
        by_key=dict(by_key),
        story_of=story_of,
        merged=merged,
        informative=informative,
        cannot=set(),
        splits=_splits(conn, set(merged)),
        features=found,
        shows=shows,
    )
    reading.cannot = {frozenset((reading.live(a), reading.live(b))) for a, b in reading.splits}
    return reading


def _candidates_query(conn: Connection, keys: Sequence[str], own: Mapping[str, int] | int) -> tuple[Any, ...]:
    """The stored sightings of each key, newest first: all of them on SQLite; on PostgreSQL the newest
    MAX_CANDIDATES_PER_KEY (plus the caller's own sightings of the key, which it leaves out), one backward walk of the
    (key, sighting_id) index per key. Without the limit, a key many sightings share (a date, a site's series title)
    returns more rows the bigger the database grows: measured at 18 ms a lookup after 50,000 sightings."""
    if conn.dialect.name != "postgresql":
        k = schema.sighting_key
        return (select(k.c.key, k.c.sighting_id).where(k.c.key.in_(keys)).order_by(k.c.sighting_id.desc()),)
    return (
        text(
            "SELECT k.key, c.sighting_id FROM unnest(CAST(:keys AS text[]), CAST(:caps AS integer[])) AS k(key, cap)"
            " CROSS JOIN LATERAL (SELECT sighting_id FROM sighting_key WHERE sighting_key.key = k.key"
            " ORDER BY sighting_id DESC LIMIT k.cap) AS c ORDER BY k.key, c.sighting_id DESC"
        ),
        {
            "keys": list(keys),
            "caps": [MAX_CANDIDATES_PER_KEY + (own if isinstance(own, int) else own.get(key, 0)) for key in keys],
        },
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


def _splits(conn: Connection, known: set[int]) -> set[tuple[int, int]]:
    """Pairs of stories the operator split apart (``story_override`` kind "split") where one is among ``known``, as
    stored (merges not followed)."""
    if not known:
        return set()
    o, a, b = schema.story_override, schema.sighting.alias("a"), schema.sighting.alias("b")
    pairs: set[tuple[int, int]] = set()
    for part in chunks(sorted(known)):
        query = (
            select(a.c.story_id.label("sa"), b.c.story_id.label("sb"))
            .select_from(o.join(a, a.c.id == o.c.sighting_a).join(b, b.c.id == o.c.sighting_b))
            .where(o.c.kind == "split", or_(a.c.story_id.in_(part), b.c.story_id.in_(part)))
        )
        for row in conn.execute(query):
            if row.sa is not None and row.sb is not None:
                pairs.add((row.sa, row.sb))
    return pairs


def _story_of(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """Each stored sighting's story (those placed in one)."""
    s = schema.sighting
    found: dict[int, int] = {}
    for part in chunks(list(ids)):
        query = select(s.c.id, s.c.story_id).where(one_of(conn.dialect.name, s.c.id, part), s.c.story_id.is_not(None))
        found.update({row.id: row.story_id for row in conn.execute(query)})
    return found


def _load(
    conn: Connection, ids: Sequence[int]
) -> tuple[dict[int, Features], dict[int, int], dict[int, tuple[object, ...]]]:
    """Stored sightings' features as the matcher sees them, their stories, and what each shows (see :func:`_shows`)."""
    s, src = schema.sighting, schema.source
    found: dict[int, Features] = {}
    story_of: dict[int, int] = {}
    shows: dict[int, tuple[object, ...]] = {}
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
            shows[row.id] = _shows(record(Member, row))
    return found, story_of, shows


# ---- applying the plan ----------------------------------------------------------------------------------------


def _new_stories(conn: Connection, planned: Sequence[_Planned], *, now: datetime, uid_authority: str) -> dict[int, int]:
    """Insert the stories born in this batch (one statement); returns provisional story id -> real id."""
    rows = []
    provisional = []
    for p in planned:
        groups: dict[int, list[Member]] = defaultdict(list)
        for f in p.source.fresh:
            kind, n = p.plan.assign[f.incoming.id]
            if kind == "group":
                groups[n].append(f.member)
        for n in sorted(groups):
            provisional.append(p.story[("group", n)])
            rows.append(
                {
                    "uid": mint_uid(uid_authority, now),
                    "first_seen": now,
                    "updated": stamp(conn, now),
                    "informative": p.plan.informative.get(("group", n), False),
                    **story_values(canonical(groups[n])),
                }
            )
    if not rows:
        return {}
    columns = list(rows[0])  # every row has story_values' columns: a column it gains is written here too
    values = [[row[c] for c in columns] for row in rows]
    ids = _reserve_ids(conn, "story", len(rows))
    if ids is not None:
        columns.append("id")
        for row_values, story_id in zip(values, ids, strict=True):
            row_values.append(story_id)
    # Matched back by uid: RETURNING promises no order.
    by_uid = {r.uid: r.id for r in insert_many(conn, schema.story, columns, values, returning=("id", "uid"))}
    real = {pid: by_uid[row["uid"]] for pid, row in zip(provisional, rows, strict=True)}
    _in_order(real, "story")
    return real


def _reserve_ids(conn: Connection, table: str, n: int) -> list[int] | None:
    """On PostgreSQL, ``n`` ids from the table's sequence, ascending: rows inserted with them keep the order they were
    planned in (the batch's later sources were planned on it), whatever order the server evaluates a multi-row
    INSERT in. None on SQLite, where a multi-row INSERT numbers its rows in order (the rowid rule)."""
    if conn.dialect.name != "postgresql":
        return None
    query = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")
    return sorted(int(v) for v in conn.execute(query, {"table": table, "n": n}).scalars())


def _settle_stored(conn: Connection, staged: _Staged, now: datetime) -> None:
    """Stories the batch's sources found stored: for each source in order, fold the stories its plan merged, mark
    those it joined informative, and refresh what changed, as of that source (the later sources' sightings left
    out), as saving the sources one by one would have."""
    st = schema.story

    def real(story_id: int) -> int:
        return staged.stories.get(story_id, story_id)

    for index, p in enumerate(staged.planned):
        joined: dict[int, list[Member]] = defaultdict(list)  # stored story (world id) -> new sightings that joined it
        for f in p.source.fresh:
            kind, n = p.plan.assign[f.incoming.id]
            if kind == "story":
                joined[n].append(f.member)
        if not joined and not p.plan.merges:
            continue
        merges = {real(loser): real(survivor) for loser, survivor in p.plan.merges.items()}
        if merges:
            fold(conn, merges, now)
        for story_id in joined:
            if p.plan.informative.get(("story", story_id)):
                conn.execute(
                    st.update().where(st.c.id == real(story_id), st.c.informative.is_(False)).values(informative=True)
                )
        # A story whose new sightings all repeat one it already had (the same teaser on another page of the site)
        # shows the same thing: skip re-reading all its sightings. Anything else is recomputed.
        touched = {real(story) for story, members in joined.items() if any(_shows(m) not in p.shown for m in members)}
        later = {staged.sightings[sid] for q in staged.planned[index + 1 :] for sid in q.sightings}
        refresh(conn, sorted(touched | set(merges.values())), now, leave_out=later)


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


def refresh(conn: Connection, story_ids: Sequence[int], now: datetime, *, leave_out: Set[int] = frozenset()) -> None:
    """Recompute the canonical fields of these stories from all their sightings (but those in ``leave_out``); bump
    ``updated`` only on change."""
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
            if row.id not in leave_out:
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


#: The columns of a new sighting, in the order :func:`_stage` gives their values.
_SIGHTING_COLUMNS = (
    "source_id",
    "key",
    "kind",
    "position",
    "title",
    "title_derived",
    "published",
    "raw_date",
    "summary",
    "content",
    "link",
    "author",
    "tags",
    "topics",
    "first_seen",
    "last_seen",
    "story_id",
    "match_rule",
    "match_score",
)

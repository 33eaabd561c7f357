"""Sightings into stories, inside the caller's transaction: the SQL side of dedupe.

The decisions are :mod:`ingest.dedupe`'s (blocking keys, ``decide``, ``canonical``); this module finds candidates by
blocking key, applies union semantics (a sighting that matches two stories merges them, the older id surviving unless
the operator split them), and keeps each story's canonical fields up to date. Work is batched per call: a feed of
50 entries costs a handful of statements, not a few per entry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, Text, and_, any_, bindparam, func, or_, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from ingest.core.links import mint_uid
from ingest.core.models import ParsedItem
from ingest.dedupe import (
    MAX_CANDIDATES_PER_KEY,
    Canonical,
    MatchInput,
    Member,
    Verdict,
    blocking_keys,
    canonical,
    decide,
    is_informative,
    match_input,
    member,
    plan_joins,
)
from ingest.store import schema

#: The PostgreSQL advisory lock that serializes clustering across processes (any constant; this one spells "dedupe").
CLUSTERING_LOCK = 0x6465647570650001

#: Provisional ids of sightings not stored yet: negative, and unique in the process.
_PROVISIONAL = itertools.count(-1, -1)

#: SQLite's default limit on bound parameters is 32,766; PostgreSQL's is 65,535. Stay well below both.
CHUNK = 500


@dataclass(frozen=True, slots=True)
class SaveResult:
    new: int  # sightings not seen before
    seen: int  # sightings already stored, now seen again
    new_stories: int


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


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
    fresh = [item for key, item in unique.items() if key not in existing]

    def stage() -> _Staged:
        return _stage(conn, source_id, source_location, fresh, now, uid_authority=uid_authority)

    if fresh and conn.dialect.name == "postgresql" and not _holds_lock(conn):
        staged = _save_optimistically(conn, stage)
        if staged is None:  # the world moved under the plan: start over, holding the lock now
            return save_items(conn, source_id, source_location, items, now, uid_authority=uid_authority)
    elif fresh:
        _take_lock(conn)
        staged = stage()
    else:
        staged = None  # only marking sightings seen again: nothing another process could collide with
    if existing:
        s = schema.sighting
        conn.execute(
            s.update().where(s.c.id == bindparam("sid")).values(last_seen=now, position=bindparam("pos")),
            [{"sid": existing[k], "pos": unique[k].position} for k in existing],
        )
    if staged is None:
        return SaveResult(new=0, seen=len(existing), new_stories=0)
    _settle_stored(conn, staged.plan, staged.members, staged.world.shown, now)
    return SaveResult(
        new=len(fresh), seen=len(existing), new_stories=sum(1 for o in staged.plan.informative if o[0] == "group")
    )


def _existing(conn: Connection, source_id: int, keys: Sequence[str]) -> dict[str, int]:
    """The source's stored sightings among ``keys``: key -> sighting id."""
    s = schema.sighting
    found: dict[str, int] = {}
    for part in chunks(keys):
        for row in conn.execute(
            select(s.c.key, s.c.id).where(s.c.source_id == source_id, _one_of(conn, s.c.key, part))
        ):
            found[row.key] = row.id
    return found


_LOCK_HOLDER = "ingest.clustering.lock"  # Connection.info key: the transaction that holds CLUSTERING_LOCK


def _holds_lock(conn: Connection) -> bool:
    holder = conn.info.get(_LOCK_HOLDER)
    return holder is not None and holder is conn.get_transaction()


def _take_lock(conn: Connection) -> None:
    """Take :data:`CLUSTERING_LOCK` until this transaction ends (PostgreSQL; SQLite has one writer anyway)."""
    if conn.dialect.name != "postgresql" or _holds_lock(conn):
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CLUSTERING_LOCK})
    conn.info[_LOCK_HOLDER] = conn.get_transaction()


@dataclass
class _Staged:
    plan: _Plan
    members: dict[int, Member]
    world: _World  # what the plan was made from
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
        _take_lock(conn)
        return None
    _take_lock(conn)
    if _read_world(conn, staged.keys, leave_out=staged.ids, check=True) != staged.world:
        savepoint.rollback()
        return None
    savepoint.commit()
    return staged


def _stage(
    conn: Connection,
    source_id: int,
    source_location: str,
    fresh: Sequence[ParsedItem],
    now: datetime,
    *,
    uid_authority: str,
) -> _Staged:
    """Plan first, on provisional ids (negative, never reused: the matcher memoizes by id), then write each table
    once: new stories, sightings (with their story), blocking keys. A feed of 50 entries costs a few statements."""
    s = schema.sighting
    inputs = [match_input(item, sighting_id=next(_PROVISIONAL), source=source_location) for item in fresh]
    keys = {m.id: sorted(blocking_keys(m)) for m in inputs}
    all_keys = sorted({k for ks in keys.values() for k in ks})
    world = _read_world(conn, all_keys)
    plan = _plan(world, inputs, keys)
    members = {
        m.id: member(item, first_seen=now, source=source_location) for m, item in zip(inputs, fresh, strict=True)
    }
    story_of = _new_stories(conn, plan, members, now=now, uid_authority=uid_authority)
    rows = []
    for m, item in zip(inputs, fresh, strict=True):
        verdict = plan.verdicts[m.id]
        rows.append(
            _sighting_values(source_id, item, now)
            | {
                "story_id": story_of[m.id],
                "match_rule": verdict.rule if verdict else "new",
                "match_score": verdict.score if verdict else 1.0,
            }
        )
    by_key = {row.key: row.id for row in conn.execute(s.insert().returning(s.c.id, s.c.key), rows)}
    real = {m.id: by_key[item.key] for m, item in zip(inputs, fresh, strict=True)}
    _insert_keys(conn, [(k, real[pid]) for pid, ks in keys.items() for k in ks])
    return _Staged(plan=plan, members=members, world=world, keys=all_keys, ids=frozenset(real.values()))


def _one_of(conn: Connection, column: ColumnElement[Any], values: Sequence[str] | Sequence[int]) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(array)``, one parameter instead of one per value: psycopg
    parses each statement's text for its placeholders, which for a few hundred of them cost more than the query."""
    if conn.dialect.name != "postgresql":
        return column.in_(values)
    item: type[Text] | type[Integer] = Text if values and isinstance(values[0], str) else Integer
    return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(item)))


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


# ---- planning: who joins which story ---------------------------------------------------------------------------

Owner = tuple[str, int]  # ("story", stored story id) or ("group", a story born in this batch)


@dataclass
class _Plan:
    assign: dict[int, Owner]  # new sighting id -> the story it ends in
    verdicts: dict[int, Verdict | None]  # new sighting id -> the best verdict that put it there (None: it is new)
    merges: dict[int, int]  # stored stories folded into another: loser -> survivor
    informative: dict[Owner, bool]


def _age(owner: Owner) -> tuple[int, int]:
    """Stored stories before new groups, lower ids (older) first: the older id survives a merge."""
    return (0, owner[1]) if owner[0] == "story" else (1, owner[1])


@dataclass
class _World:
    """What a plan is made from: the stored candidates of its keys, their stories, and the operator's splits. Two
    readings compare equal when a plan made from one would be the same made from the other."""

    by_key: dict[str, list[int]]  # stored candidates, newest first, capped per key
    old_story: dict[int, int]  # candidate -> its story
    stories: _StoriesInfo
    cannot: set[frozenset[int]]
    old_inputs: dict[int, MatchInput] = field(compare=False)  # stored sightings never change what they match on
    shown: set[tuple[object, ...]] = field(compare=False)


def _read_world(
    conn: Connection, all_keys: Sequence[str], *, leave_out: frozenset[int] = frozenset(), check: bool = False
) -> _World:
    """Read what planning for ``all_keys`` needs; ``leave_out``: sightings of this transaction, not yet planned on.
    ``check``: only what two readings are compared on (not the candidates' texts, which never change)."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for part in chunks(all_keys):
        for row in conn.execute(*_candidates_query(conn, part, len(leave_out))):
            if row.sighting_id not in leave_out and len(by_key[row.key]) < MAX_CANDIDATES_PER_KEY:
                by_key[row.key].append(row.sighting_id)
    ids = sorted({sid for ids in by_key.values() for sid in ids})
    old_inputs: dict[int, MatchInput] = {}
    shown: set[tuple[object, ...]] = set()
    if check:
        old_story = _story_of(conn, ids)
    else:
        old_inputs, old_story, shown = _load_inputs(conn, ids)
    stories = _stories_info(conn, set(old_story.values()))
    cannot = _cannot_link(conn, stories)
    return _World(
        by_key=dict(by_key), old_story=old_story, stories=stories, cannot=cannot, old_inputs=old_inputs, shown=shown
    )


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


def _plan(world: _World, inputs: Sequence[MatchInput], keys: dict[int, list[str]]) -> _Plan:
    """Decide, for each new sighting in order, the story it joins: what :class:`ingest.dedupe.Clusterer` does in
    memory, with stored sightings found through the ``sighting_key`` table."""
    by_key, old_inputs, old_story = world.by_key, world.old_inputs, world.old_story
    stories, cannot = world.stories, world.cannot

    parent: dict[Owner, Owner] = {}
    informative: dict[Owner, bool] = {}
    held: dict[Owner, set[int]] = defaultdict(set)  # stored stories inside each owner: for cannot-link checks

    def find(x: Owner) -> Owner:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: Owner, b: Owner) -> Owner:
        ra, rb = find(a), find(b)
        if ra == rb:
            return ra
        if cannot and any(frozenset((x, y)) in cannot for x in held[ra] for y in held[rb]):
            return ra  # the operator split these apart: never fold them together again
        survivor, loser = (ra, rb) if _age(ra) <= _age(rb) else (rb, ra)
        parent[loser] = survivor
        informative[survivor] = informative.get(survivor, False) or informative.pop(loser, False)
        held[survivor] |= held.pop(loser, set())
        return survivor

    owner_of: dict[int, Owner] = {}
    for sid, story_id in old_story.items():
        owner = ("story", stories.resolve(story_id))
        owner_of[sid] = owner
        informative[owner] = stories.informative.get(owner[1], False)
        held[owner].add(owner[1])
    inputs_by_id = dict(old_inputs)
    plan = _Plan(assign={}, verdicts={}, merges={}, informative={})
    batch_by_key: dict[str, list[int]] = defaultdict(list)
    for n, m in enumerate(inputs):
        best: dict[Owner, Verdict] = {}
        tried: set[int] = set()
        for k in keys[m.id]:
            for sid in (*by_key.get(k, ()), *batch_by_key.get(k, ())):
                if sid in tried or sid not in inputs_by_id:
                    continue
                tried.add(sid)
                owner = find(owner_of[sid])
                known = best.get(owner)
                if known is not None and known.score >= 1.0:
                    continue
                verdict = decide(m, inputs_by_id[sid])
                if verdict is not None and (known is None or verdict.score > known.score):
                    best[owner] = verdict
        mine: Owner = ("group", n)
        owner_of[m.id] = mine
        informative[mine] = is_informative(m)
        ordered = sorted(best, key=_age)
        picked = plan_joins(informative[mine], [(i, best[o], informative.get(o, False)) for i, o in enumerate(ordered)])
        joins = [ordered[i] for i in picked]
        root = mine
        for other in joins:
            root = union(root, other)
        plan.verdicts[m.id] = max((best[o] for o in joins), key=lambda v: v.score) if joins else None
        inputs_by_id[m.id] = m
        for k in keys[m.id]:
            batch_by_key[k].append(m.id)

    for m in inputs:
        plan.assign[m.id] = find(owner_of[m.id])
    for owner in list(parent):
        root = find(owner)
        if owner != root and owner[0] == "story":
            assert root[0] == "story", "a stored story is never folded into a new group"
            plan.merges[owner[1]] = root[1]
    plan.informative = {o: v for o, v in informative.items() if find(o) == o}
    return plan


@dataclass
class _StoriesInfo:
    merged: dict[int, int | None]
    informative: dict[int, bool]

    def resolve(self, story_id: int) -> int:
        """Follow ``merged_into`` to the surviving story (chains are flattened when folding, but be safe)."""
        seen: set[int] = set()
        while self.merged.get(story_id) is not None and story_id not in seen:
            seen.add(story_id)
            nxt = self.merged[story_id]
            assert nxt is not None
            story_id = nxt
        return story_id


def _stories_info(conn: Connection, story_ids: set[int]) -> _StoriesInfo:
    st = schema.story
    info = _StoriesInfo(merged={}, informative={})
    pending = set(story_ids)
    while pending:
        batch, pending = sorted(pending), set()
        for part in chunks(batch):
            for row in conn.execute(
                select(st.c.id, st.c.merged_into, st.c.informative).where(_one_of(conn, st.c.id, part))
            ):
                info.merged[row.id] = row.merged_into
                info.informative[row.id] = bool(row.informative)
                if row.merged_into is not None and row.merged_into not in info.merged:
                    pending.add(row.merged_into)
    return info


def _cannot_link(conn: Connection, stories: _StoriesInfo) -> set[frozenset[int]]:
    """Pairs of stories the operator split apart (``story_override`` kind "split"), as surviving story ids."""
    known = set(stories.merged)
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
                pairs.add(frozenset((stories.resolve(row.sa), stories.resolve(row.sb))))
    return pairs


def _story_of(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    """Each stored sighting's story (those placed in one)."""
    s = schema.sighting
    found: dict[int, int] = {}
    for part in chunks(list(ids)):
        query = select(s.c.id, s.c.story_id).where(_one_of(conn, s.c.id, part), s.c.story_id.is_not(None))
        found.update({row.id: row.story_id for row in conn.execute(query)})
    return found


def _load_inputs(
    conn: Connection, ids: Sequence[int]
) -> tuple[dict[int, MatchInput], dict[int, int], set[tuple[object, ...]]]:
    """Stored sightings as the matcher sees them, their stories, and what each shows (see :func:`_shows`)."""
    s, src = schema.sighting, schema.source
    inputs: dict[int, MatchInput] = {}
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
                src.c.location.label("source_location"),
            )
            .join(src, src.c.id == s.c.source_id)
            .where(_one_of(conn, s.c.id, part), s.c.story_id.is_not(None))
        )
        for row in conn.execute(query):
            inputs[row.id] = MatchInput(
                id=row.id,
                kind=row.kind,
                title=row.title,
                title_derived=row.title_derived,
                published=row.published,
                summary=row.summary,
                link=row.link,
                source=row.source_location,
            )
            story_of[row.id] = row.story_id
            shown.add(_shows(_member_of_row(row)))
    return inputs, story_of, shown


# ---- applying the plan ----------------------------------------------------------------------------------------


def _new_stories(
    conn: Connection, plan: _Plan, members: dict[int, Member], *, now: datetime, uid_authority: str
) -> dict[int, int]:
    """Insert the stories born in this batch (one statement); returns each new sighting's story id."""
    st = schema.story
    groups: dict[int, list[int]] = defaultdict(list)
    for pid, (kind, n) in plan.assign.items():
        if kind == "group":
            groups[n].append(pid)
    order = sorted(groups)
    rows = [
        {
            "uid": mint_uid(uid_authority, now),
            "first_seen": now,
            "updated": now,
            "informative": plan.informative.get(("group", n), False),
            **_story_values(canonical([members[pid] for pid in groups[n]])),
        }
        for n in order
    ]
    # RETURNING rows are matched by a unique column, not by order: asked to keep the order (sort_by_parameter_order)
    # SQLAlchemy inserts one row per statement on SQLite; this way a batch is one multi-row INSERT.
    by_uid = {row.uid: row.id for row in conn.execute(st.insert().returning(st.c.id, st.c.uid), rows)} if rows else {}
    group_story = {n: by_uid[row["uid"]] for n, row in zip(order, rows, strict=True)}
    return {pid: group_story[n] if kind == "group" else n for pid, (kind, n) in plan.assign.items()}


def _settle_stored(
    conn: Connection, plan: _Plan, members: dict[int, Member], shown: set[tuple[object, ...]], now: datetime
) -> None:
    """Stored stories this batch touched: fold the merged ones, mark them informative, refresh what changed."""
    st = schema.story
    joined: dict[int, list[int]] = defaultdict(list)  # stored story -> new sightings that joined it
    for pid, (kind, n) in plan.assign.items():
        if kind == "story":
            joined[n].append(pid)
    if plan.merges:
        fold(conn, plan.merges, now)
    for story_id in joined:
        if plan.informative.get(("story", story_id)):
            conn.execute(st.update().where(st.c.id == story_id, st.c.informative.is_(False)).values(informative=True))
    # A story whose new sightings all repeat one it already had (the same teaser on another page of the site)
    # shows the same thing: skip re-reading all its sightings. Anything else is recomputed.
    touched = {story_id for story_id, pids in joined.items() if any(_shows(members[p]) not in shown for p in pids)}
    refresh(conn, sorted(touched | set(plan.merges.values())), now)


def fold(conn: Connection, merges: dict[int, int], now: datetime) -> None:
    """Fold each loser story into its survivor: sightings move, the loser resolves to the survivor for good.

    Both rows get ``updated = now``: publishing rebuilds what held either of them.
    """
    s, st = schema.sighting, schema.story
    for loser, survivor in merges.items():
        conn.execute(s.update().where(s.c.story_id == loser).values(story_id=survivor))
        conn.execute(st.update().where(st.c.merged_into == loser).values(merged_into=survivor))
        row = conn.execute(select(st.c.first_seen, st.c.informative).where(st.c.id == loser)).one()
        conn.execute(st.update().where(st.c.id == loser).values(merged_into=survivor, updated=now))
        values: dict[str, Any] = {"updated": now}
        if row.informative:
            values["informative"] = True
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
    for part in chunks(list(story_ids)):
        query = (
            select(s, src.c.location.label("source_location"))
            .join(src, src.c.id == s.c.source_id)
            .where(_one_of(conn, s.c.story_id, part))
            .order_by(s.c.id)
        )
        for row in conn.execute(query):
            members[row.story_id].append(_member_of_row(row))
        for row in conn.execute(select(st.c.id, st.c.content_hash).where(_one_of(conn, st.c.id, part))):
            hashes[row.id] = row.content_hash
    for story_id in story_ids:
        if not members.get(story_id):
            continue
        values = _story_values(canonical(members[story_id]))
        if values["content_hash"] != hashes.get(story_id):
            conn.execute(st.update().where(st.c.id == story_id).values(updated=now, **values))


def _shows(m: Member) -> tuple[object, ...]:
    """Everything of a sighting that :func:`ingest.dedupe.canonical` may pick from."""
    return (m.kind, m.title, m.title_derived, m.published, m.summary, m.link, tuple(m.tags), m.content)


def _story_values(fields: Canonical) -> dict[str, Any]:
    values = {
        "title": fields.title,
        "title_derived": fields.title_derived,
        "summary": fields.summary,
        "content": fields.content,
        "link": fields.link,
        "published": fields.published,
        "tags": sorted(set(fields.tags)),
    }
    blob = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    values["content_hash"] = hashlib.sha256(blob.encode()).hexdigest()
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
        "first_seen": now,
        "last_seen": now,
        "story_id": None,
    }


def _member_of_row(row: Any) -> Member:
    tags = row.tags
    if isinstance(tags, str):
        tags = json.loads(tags)
    return Member(
        kind=row.kind,
        title=row.title,
        title_derived=row.title_derived,
        published=row.published,
        summary=row.summary,
        content=row.content,
        link=row.link,
        tags=tuple(tags or ()),
        first_seen=row.first_seen,
        source=row.source_location,
    )


# ---- the operator's overrides -------------------------------------------------------------------------------------


def live_story(conn: Connection, story_id: int) -> None:
    """Raise ``LookupError`` unless ``story_id`` is a live story (not unknown, not merged away)."""
    row = conn.execute(select(schema.story.c.merged_into).where(schema.story.c.id == story_id)).first()
    if row is None:
        raise LookupError(f"no story {story_id}")
    if row.merged_into is not None:
        raise LookupError(f"story {story_id} was merged into story {row.merged_into}; use that id")


def merge_stories(conn: Connection, a: int, b: int, now: datetime) -> tuple[int, int]:
    """Fold two live stories into one (the older id survives), recorded as the operator's decision.

    Returns (survivor, loser). Raises ``LookupError`` for an unknown or merged-away id, ``ValueError`` for a == b.
    """
    _take_lock(conn)  # an ingest checking its plan must see this change, or not at all
    if a == b:
        raise ValueError(f"story {a} cannot be merged with itself")
    live_story(conn, a)
    live_story(conn, b)
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


def split_sighting(conn: Connection, story_id: int, sighting_id: int, now: datetime, *, uid_authority: str) -> int:
    """Take one sighting out of a story into a story of its own; the matcher never puts them together again.

    Returns the new story's id. Raises ``LookupError`` when the sighting is not in that story, ``ValueError`` when it
    is the story's only sighting.
    """
    _take_lock(conn)  # an ingest checking its plan must see this change, or not at all
    live_story(conn, story_id)
    s, src, st, o = schema.sighting, schema.source, schema.story, schema.story_override
    row = conn.execute(
        select(s, src.c.location.label("source_location"))
        .join(src, src.c.id == s.c.source_id)
        .where(s.c.id == sighting_id)
    ).first()
    if row is None or row.story_id != story_id:
        raise LookupError(
            f"sighting {sighting_id} is not in story {story_id}; see `newsletter stories explain {story_id}`"
        )
    others = [r.id for r in conn.execute(select(s.c.id).where(s.c.story_id == story_id, s.c.id != sighting_id))]
    if not others:
        raise ValueError(f"sighting {sighting_id} is the only sighting of story {story_id}: nothing to split")
    member = _member_of_row(row)
    informative = row.published is not None or bool(row.summary)
    result = conn.execute(
        st.insert().values(
            uid=mint_uid(uid_authority, now),
            first_seen=row.first_seen,
            updated=now,
            informative=informative,
            **_story_values(canonical([member])),
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
    conn.execute(st.update().where(st.c.id == story_id).values(updated=now))
    refresh(conn, [story_id], now)
    return new_id


@dataclass(frozen=True, slots=True)
class Override:
    kind: str  # merge | split
    sighting_a: int
    sighting_b: int
    created_at: datetime


def overrides_of(conn: Connection, sighting_ids: Sequence[int]) -> list[Override]:
    o = schema.story_override
    found: list[Override] = []
    for part in chunks(list(sighting_ids)):
        query = select(o).where(or_(o.c.sighting_a.in_(part), o.c.sighting_b.in_(part))).order_by(o.c.id)
        found.extend(Override(r.kind, r.sighting_a, r.sighting_b, r.created_at) for r in conn.execute(query))
    return list(dict.fromkeys(found))


def merged_ids(conn: Connection, story_id: int) -> list[int]:
    """The ids that were merged into ``story_id`` and now resolve to it."""
    st = schema.story
    return [r.id for r in conn.execute(select(st.c.id).where(st.c.merged_into == story_id).order_by(st.c.id))]

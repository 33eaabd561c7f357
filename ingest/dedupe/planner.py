"""The one clustering planner: which story each new sighting of a batch joins. Pure: data in, a plan out.

Both clusterers feed it: the store (:mod:`ingest.store.clustering`, candidates read from the ``sighting_key`` table
inside the ingest transaction) and the in-memory :class:`~ingest.dedupe.clusterer.Clusterer` (the quality script and
the benchmark). So what those measure is what production runs.

A batch is planned in order. Each new sighting is compared (:func:`~ingest.dedupe.match.decide_features`) with the
candidates sharing one of its blocking keys: per key, the newest :data:`MAX_CANDIDATES_PER_KEY` of the stored
sightings and of the batch's earlier sightings together, so the work per sighting is bounded whatever a key's
popularity (a series title, a templated feed) and a batch costs time linear in its size. :func:`plan_joins` then says
which matched stories it joins; joining two means merging them (union semantics), the older story surviving, except
across an operator's split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

from ingest.dedupe.match import STRONG_MIN, Features, Verdict, decide_features, informative

__all__ = ["MAX_CANDIDATES_PER_KEY", "Incoming", "Owner", "Plan", "World", "plan", "plan_joins"]

#: Candidates looked at per key, newest first: a key shared by more sightings (a series title, a templated blurb
#: opening, a feed's template) stops growing the work, so cost stays linear in the number of sightings.
MAX_CANDIDATES_PER_KEY = 32

#: ("story", a stored story's id) or ("group", n): the story born in this batch around its n-th sighting.
Owner = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A new sighting to place: an id unique among the batch and the world's candidates, what it shows, its keys."""

    id: int
    features: Features
    keys: tuple[str, ...]


@dataclass
class World:
    """What is already stored, as far as the batch's keys reach: the plan is a function of this and the batch.

    ``by_key`` lists each key's stored sightings newest first (at most :data:`MAX_CANDIDATES_PER_KEY` are looked at);
    ``story_of`` gives each such sighting's live story (merges already followed), ``informative`` whether a story
    has a dated or blurbed sighting, ``cannot`` the story pairs an operator split apart (never folded together).
    """

    by_key: Mapping[str, Sequence[int]]
    features: Mapping[int, Features]
    story_of: Mapping[int, int]
    informative: Mapping[int, bool]
    cannot: Set[frozenset[int]] = field(default_factory=frozenset)


@dataclass
class Plan:
    """Where each new sighting ends, why, which stored stories fold into which, and each final story's
    informativeness. Groups are numbered by their first sighting's place in the batch."""

    assign: dict[int, Owner]  # new sighting id -> the story it ends in
    verdicts: dict[int, Verdict | None]  # new sighting id -> the best verdict that put it there (None: it is new)
    merges: dict[int, int]  # stored stories folded into another: loser -> survivor
    informative: dict[Owner, bool]  # every owner that survives the plan

    @property
    def new_stories(self) -> int:
        return sum(1 for owner in self.informative if owner[0] == "group")


def _age(owner: Owner) -> tuple[int, int]:
    """Stored stories before new groups, lower ids (older) first: the older id survives a merge."""
    return (0, owner[1]) if owner[0] == "story" else (1, owner[1])


def plan_joins(informative: bool, matches: Sequence[tuple[int, Verdict, bool]]) -> list[int]:
    """Which matched stories a new sighting joins, given ``(story, best verdict, story is informative)`` for each,
    oldest story first, and whether the sighting itself is informative.

    Strong verdicts all join (and so merge those stories). A weak verdict joins only when it does not put two
    informative sides together: an undated, blurbless teaser attaches to one episode of a series, and a later
    episode is not pulled in through it.
    """
    joined = [story for story, verdict, _ in matches if verdict.score >= STRONG_MIN]
    known = informative or any(info for _, verdict, info in matches if verdict.score >= STRONG_MIN)
    weak = [m for m in matches if m[1].score < STRONG_MIN]
    for story, _, info in sorted(weak, key=lambda m: -m[1].score):
        if known and info:
            continue
        joined.append(story)
        known = known or info
    return joined


def plan(world: World, batch: Sequence[Incoming]) -> Plan:
    """Decide, for each new sighting in order, the story it joins (see the module docstring)."""
    cap = MAX_CANDIDATES_PER_KEY
    parent: dict[Owner, Owner] = {}
    owner_informative: dict[Owner, bool] = {}
    held: dict[Owner, set[int]] = defaultdict(set)  # stored stories inside each owner: for cannot-link checks
    cannot = world.cannot

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
        owner_informative[survivor] = owner_informative.get(survivor, False) or owner_informative.pop(loser, False)
        held[survivor] |= held.pop(loser, set())
        return survivor

    owner_of: dict[int, Owner] = {}
    for sid, story in world.story_of.items():
        owner: Owner = ("story", story)
        owner_of[sid] = owner
        owner_informative[owner] = world.informative.get(story, False)
        held[owner].add(story)
    features: dict[int, Features] = dict(world.features)
    result = Plan(assign={}, verdicts={}, merges={}, informative={})
    batch_by_key: dict[str, list[int]] = defaultdict(list)  # the batch's own sightings per key, oldest first
    for n, new in enumerate(batch):
        best: dict[Owner, Verdict] = {}
        tried: set[int] = set()
        for key in new.keys:
            mine = batch_by_key.get(key, ())
            # The newest `cap` of (stored + batch so far): the batch's are newer than anything stored.
            candidates = [*reversed(mine[-cap:]), *world.by_key.get(key, ())[: max(0, cap - len(mine))]]
            for sid in candidates:
                if sid in tried or sid not in owner_of:
                    continue
                tried.add(sid)
                owner = find(owner_of[sid])
                known = best.get(owner)
                if known is not None and known.score >= 1.0:
                    continue
                verdict = decide_features(new.features, features[sid])
                if verdict is not None and (known is None or verdict.score > known.score):
                    best[owner] = verdict
        group: Owner = ("group", n)
        owner_of[new.id] = group
        owner_informative[group] = informative(new.features)
        ordered = sorted(best, key=_age)
        picked = plan_joins(
            owner_informative[group], [(i, best[o], owner_informative.get(o, False)) for i, o in enumerate(ordered)]
        )
        joins = [ordered[i] for i in picked]
        root = group
        for other in joins:
            root = union(root, other)
        result.verdicts[new.id] = max((best[o] for o in joins), key=lambda v: v.score) if joins else None
        features[new.id] = new.features
        for key in new.keys:
            batch_by_key[key].append(new.id)

    for new in batch:
        result.assign[new.id] = find(owner_of[new.id])
    for owner in list(parent):
        root = find(owner)
        if owner != root and owner[0] == "story":
            assert root[0] == "story", "a stored story is never folded into a new group"
            result.merges[owner[1]] = root[1]
    result.informative = {o: v for o, v in owner_informative.items() if find(o) == o}
    return result

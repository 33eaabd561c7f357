"""The one clustering planner: which story each new sighting of a batch joins. Pure: data in, a plan out.

Both clusterers feed it: the store (:mod:`ingest.store.clustering`, candidates read from the ``sighting_key`` table
inside the ingest transaction) and the in-memory :class:`~ingest.dedupe.clusterer.Clusterer` (the quality script and
the benchmark). So what those measure is what production runs.

A batch is planned in order. Each new sighting is compared (:func:`~ingest.dedupe.match.decide_features`) with the
candidates sharing one of its blocking keys: per key, the newest :data:`MAX_CANDIDATES_PER_KEY` of the stored
sightings and of the batch's earlier sightings together, so the work per sighting is bounded whatever a key's
popularity (a series title, a templated feed) and a batch costs time linear in its size. :func:`plan_joins` then says
which matched stories it joins, best verdict first; joining two means merging them (union semantics), the older
story surviving, except across an operator's split, and never when the merged story would hold two entries of one
feed with different titles and links (a sighting matching two of a feed's items must not chain them: they are two
items its author published apart; see :func:`~ingest.dedupe.match.decide_features`). That guard knows a story's
entries as far as the batch and the candidates show them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field

from ingest.dedupe.match import STRONG_MIN, TITLE_OR_LINK_KEY, Features, Verdict, decide_features, informative

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


_Entry = tuple[str, str, str | None]  # a feed entry as the chaining guard sees it: (source, title key, link)


def _entry(f: Features) -> _Entry | None:
    kind, title, _, _, _, _, _, link, source = f
    return (source, title, link) if kind == "entry" else None


def _other_item_of_the_feed(a: Features, b: Features) -> bool:
    """Two entries of one feed under different titles and links: never one story (the rule of decide_features)."""
    return a[0] == b[0] == "entry" and a[8] == b[8] and a[1] != b[1] and a[7] != b[7]


def _two_items_of_one_feed(a: set[_Entry], b: set[_Entry]) -> bool:
    """Whether merging would put two entries of one feed, with different titles and links, in one story."""
    return any(sa == sb and ta != tb and la != lb for sa, ta, la in a for sb, tb, lb in b)


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
    held: dict[Owner, set[int]] = {}  # stored stories inside each owner: for cannot-link checks
    entries: dict[Owner, set[_Entry]] = {}  # feed entries known inside each owner
    cannot, story_of, known_features = world.cannot, world.story_of, world.features

    def find(x: Owner) -> Owner:
        root = parent.setdefault(x, x)
        while root != x:
            parent[x] = parent[root]
            x, root = root, parent[root]
        return x

    def union(a: Owner, b: Owner) -> Owner:
        ra, rb = find(a), find(b)
        if ra == rb:
            return ra
        if cannot and any(frozenset((x, y)) in cannot for x in held.get(ra, ()) for y in held.get(rb, ())):
            return ra  # the operator split these apart: never fold them together again
        if entries.get(ra) and entries.get(rb) and _two_items_of_one_feed(entries[ra], entries[rb]):
            return ra
        survivor, loser = (ra, rb) if _age(ra) <= _age(rb) else (rb, ra)
        parent[loser] = survivor
        owner_informative[survivor] = owner_informative.get(survivor, False) or owner_informative.pop(loser, False)
        held.setdefault(survivor, set()).update(held.pop(loser, ()))
        entries.setdefault(survivor, set()).update(entries.pop(loser, ()))
        return survivor

    def owner_for(sid: int) -> Owner | None:
        """The owner a candidate is in; a stored story is taken in on first sight (most of the world is never
        looked at), with its informativeness, its id for split checks, and the candidate's entry for the guard."""
        owner = owner_of.get(sid)
        if owner is not None:
            return find(owner)
        story = story_of.get(sid)
        if story is None:
            return None
        owner_of[sid] = owner = ("story", story)
        if owner not in parent:
            owner_informative[owner] = world.informative.get(story, False)
            held[owner] = {story}
        root = find(owner)
        if (entry := _entry(known_features[sid])) is not None:
            entries.setdefault(root, set()).add(entry)
        return root

    owner_of: dict[int, Owner] = {}
    features: dict[int, Features] = {}  # the batch's own
    result = Plan(assign={}, verdicts={}, merges={}, informative={})
    batch_by_key: dict[str, list[int]] = {}  # the batch's own sightings per key, oldest first
    # Per key: the one feed whose entries are all the batch holds under it (None: anything else is there too). A feed's
    # own items under other titles and links never match (decide_features), so such a key's batch list is skipped
    # whole: a feed of thousands of alike titles shares its near-title and blurb keys among all its items.
    only_entries_of: dict[str, str | None] = {}
    for n, new in enumerate(batch):
        best: dict[Owner, Verdict] = {}
        tried: set[int] = set()
        entry_of = new.features[8] if new.features[0] == "entry" else None
        for key in new.keys:
            mine = batch_by_key.get(key, ())
            if (
                mine
                and entry_of is not None
                and only_entries_of[key] == entry_of
                and not key.startswith(TITLE_OR_LINK_KEY)
            ):
                mine = ()
            stored = world.by_key.get(key, ())
            # The newest `cap` of (stored + batch so far): the batch's are newer than anything stored.
            candidates = [*reversed(mine[-cap:]), *stored[: cap - len(mine)]] if mine else stored[:cap]
            for sid in candidates:
                if sid in tried:
                    continue
                tried.add(sid)
                if sid in features and _other_item_of_the_feed(new.features, features[sid]):
                    continue  # decide would say no: a batch's own items are the thousands of a big feed
                owner = owner_for(sid)
                if owner is None:
                    continue
                known = best.get(owner)
                if known is not None and known.score >= 1.0:
                    continue
                verdict = decide_features(new.features, features.get(sid) or known_features[sid])
                if verdict is not None and (known is None or verdict.score > known.score):
                    best[owner] = verdict
        group: Owner = ("group", n)
        owner_of[new.id] = group
        parent[group] = group
        owner_informative[group] = informative(new.features)
        if (entry := _entry(new.features)) is not None:
            entries[group] = {entry}
        joins: list[Owner] = []
        if best:
            ordered = sorted(best, key=_age)
            matches = [(i, best[o], owner_informative.get(o, False)) for i, o in enumerate(ordered)]
            # The best match first: when two joins cannot both hold (a split, two items of one feed), it is kept.
            joins = sorted((ordered[i] for i in plan_joins(owner_informative[group], matches)), key=_best_first(best))
            root = group
            for other in joins:
                root = union(root, other)
        result.verdicts[new.id] = best[joins[0]] if joins else None
        features[new.id] = new.features
        for key in new.keys:
            batch_by_key.setdefault(key, []).append(new.id)
            if key not in only_entries_of:
                only_entries_of[key] = entry_of
            elif only_entries_of[key] != entry_of:
                only_entries_of[key] = None

    for new in batch:
        result.assign[new.id] = find(owner_of[new.id])
    for owner in list(parent):
        root = find(owner)
        if owner != root and owner[0] == "story":
            assert root[0] == "story", "a stored story is never folded into a new group"
            result.merges[owner[1]] = root[1]
    result.informative = {o: v for o, v in owner_informative.items() if find(o) == o}
    return result


def _best_first(best: Mapping[Owner, Verdict]) -> Callable[[Owner], tuple[float, int, int]]:
    def key(owner: Owner) -> tuple[float, int, int]:
        return (-best[owner].score, *_age(owner))

    return key

"""Clustering in memory, through the same planner the store runs: for the quality script and the benchmark.

:class:`Clusterer` keeps what the store keeps (each sighting's features, the newest sightings of each blocking key,
which story each sighting is in) in dicts instead of tables, builds the planner's :class:`~ingest.dedupe.planner.World`
from them for each batch, and applies the :class:`~ingest.dedupe.planner.Plan` it gets back. Inside, sightings are
numbered in the order they were added, as the store's ids are, so the planner's "older story survives" reads the same;
a cluster is named by its oldest sighting's id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from ingest.dedupe.match import Features, MatchInput, Verdict, features, informative, keys_of
from ingest.dedupe.planner import MAX_CANDIDATES_PER_KEY, Incoming, World, plan

__all__ = ["Clusterer"]


class Clusterer:
    """Sightings added one at a time (:meth:`add`) or a source's batch at a time (:meth:`add_batch`)."""

    def __init__(self) -> None:
        # Everything below is by internal number (0, 1, ... in the order added), like the store's sighting ids.
        self._ids: list[int] = []  # number -> the caller's sighting id
        self._number: dict[int, int] = {}  # the caller's sighting id -> number
        self._features: list[Features] = []
        self._parent: list[int] = []
        self._informative: dict[int, bool] = {}  # per root
        # key -> its newest sighting ids, oldest first (a lone id as a bare int: most keys have one sighting). Ints
        # and tuples of ints are not tracked by the garbage collector, whose full passes over a 100k index of lists
        # cost a fifth of the time.
        self._index: dict[str, int | tuple[int, ...]] = {}

    def add(self, m: MatchInput) -> tuple[int, Verdict | None]:
        """Add a sighting; returns its cluster (root sighting id) and the best verdict that put it there."""
        return self.add_batch([m])[0]

    def add_batch(self, batch: Sequence[MatchInput]) -> list[tuple[int, Verdict | None]]:
        """Add a source's sightings, planned together as the store plans one feed's entries."""
        incoming = []
        seen: set[int] = set()
        for n, m in enumerate(batch, start=len(self._ids)):
            if m.id in self._number or m.id in seen:
                raise ValueError(f"sighting {m.id} added twice")
            seen.add(m.id)
            f = features(m)
            incoming.append(Incoming(n, f, tuple(keys_of(f))))
        result = plan(self._world(incoming), incoming)
        for loser, survivor in result.merges.items():
            self._union(survivor, loser)
        roots: dict[tuple[str, int], int] = {}
        for m, new in zip(batch, incoming, strict=True):  # in batch order: a group's first sighting is its oldest
            self._ids.append(m.id)
            self._number[m.id] = new.id
            self._features.append(new.features)
            self._parent.append(new.id)
            owner = result.assign[new.id]
            if owner[0] == "story":
                self._parent[new.id] = self._find(owner[1])
            elif owner in roots:
                self._parent[new.id] = roots[owner]
            else:
                roots[owner] = new.id
                self._informative[new.id] = result.informative.get(owner, informative(new.features))
            for key in new.keys:
                self._post(key, new.id)
        for owner, informed in result.informative.items():
            if owner[0] == "story" and informed:
                self._informative[self._find(owner[1])] = True
        return [(self._ids[self._find(new.id)], result.verdicts[new.id]) for new in incoming]

    def _world(self, incoming: Sequence[Incoming]) -> World:
        """The batch's keys' postings; the rest is read from memory as the planner asks (most is never asked)."""
        by_key: dict[str, tuple[int, ...]] = {}
        for new in incoming:
            for key in new.keys:
                posting = self._index.get(key)
                if posting is not None and key not in by_key:
                    by_key[key] = (posting,) if isinstance(posting, int) else posting[::-1]
        return World(
            by_key=by_key,
            features=_Listed(self._features),
            story_of=_Roots(self),
            informative=self._informative,
        )

    def _post(self, key: str, sid: int) -> None:
        posting = self._index.get(key)
        if posting is None:
            self._index[key] = sid
        elif isinstance(posting, int):
            self._index[key] = (posting, sid)
        else:
            self._index[key] = (*posting[1 - MAX_CANDIDATES_PER_KEY :], sid)

    def clusters(self) -> list[list[int]]:
        """Every cluster as its sighting ids in insertion order, clusters by their oldest sighting."""
        groups: dict[int, list[int]] = {}
        for n, sid in enumerate(self._ids):
            groups.setdefault(self._find(n), []).append(sid)
        return list(groups.values())

    def find(self, sighting_id: int) -> int:
        """The cluster (its oldest sighting's id) a sighting belongs to."""
        return self._ids[self._find(self._number[sighting_id])]

    def _find(self, sid: int) -> int:
        parent = self._parent
        root = sid
        while parent[root] != root:
            root = parent[root]
        while parent[sid] != root:
            parent[sid], sid = root, parent[sid]
        return root

    def _union(self, survivor: int, loser: int) -> None:
        rs, rl = self._find(survivor), self._find(loser)
        if rs == rl:
            return
        if rl < rs:  # the planner names stories by their oldest sighting, so this holds; be safe anyway
            rs, rl = rl, rs
        self._parent[rl] = rs
        self._informative[rs] = self._informative.get(rs, False) or self._informative.pop(rl, False)


class _Listed(Mapping[int, Features]):
    """The features list read as the planner's mapping (sighting number -> features), without copying it."""

    def __init__(self, items: list[Features]) -> None:
        self._items = items

    def __getitem__(self, n: int) -> Features:
        return self._items[n]

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._items)))

    def __len__(self) -> int:
        return len(self._items)


class _Roots(Mapping[int, int]):
    """Each stored sighting's story (its cluster's root), found when the planner asks."""

    def __init__(self, clusterer: Clusterer) -> None:
        self._clusterer = clusterer

    def __getitem__(self, n: int) -> int:
        if not 0 <= n < len(self._clusterer._parent):
            raise KeyError(n)
        return self._clusterer._find(n)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._clusterer._parent)))

    def __len__(self) -> int:
        return len(self._clusterer._parent)

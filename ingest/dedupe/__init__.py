"""Sightings into stories, pure: data in, data out; no I/O, no clock, no SQL.

- :mod:`~ingest.dedupe.normalize`: titles, blurbs and links folded to one spelling;
- :mod:`~ingest.dedupe.match`: a sighting's features and blocking keys, and :func:`decide` (same story? which rule?);
- :mod:`~ingest.dedupe.planner`: THE planner, which story each new sighting of a batch joins (union semantics);
- :mod:`~ingest.dedupe.canonical`: what a story shows, picked from its sightings;
- :mod:`~ingest.dedupe.clusterer`: the planner fed from memory, for the quality script and the benchmark.

The store (:mod:`ingest.store.clustering`) feeds the same planner from the ``sighting_key`` table.
"""

from ingest.dedupe.canonical import Canonical, Member, canonical, member
from ingest.dedupe.clusterer import Clusterer
from ingest.dedupe.match import (
    DATE_TOLERANCE,
    MIN_EVIDENCE_WORDS,
    NEAR_TITLE_MIN,
    STRONG_MIN,
    Features,
    Kind,
    MatchInput,
    Verdict,
    blocking_keys,
    decide,
    decide_features,
    features,
    informative,
    is_informative,
    keys_of,
    match_input,
    title_similarity,
)
from ingest.dedupe.normalize import normalize_blurb, normalize_link, normalize_title
from ingest.dedupe.planner import MAX_CANDIDATES_PER_KEY, Incoming, Owner, Plan, World, plan, plan_joins

__all__ = [
    "DATE_TOLERANCE",
    "MAX_CANDIDATES_PER_KEY",
    "MIN_EVIDENCE_WORDS",
    "NEAR_TITLE_MIN",
    "STRONG_MIN",
    "Canonical",
    "Clusterer",
    "Features",
    "Incoming",
    "Kind",
    "MatchInput",
    "Member",
    "Owner",
    "Plan",
    "Verdict",
    "World",
    "blocking_keys",
    "canonical",
    "decide",
    "decide_features",
    "features",
    "informative",
    "is_informative",
    "keys_of",
    "match_input",
    "member",
    "normalize_blurb",
    "normalize_link",
    "normalize_title",
    "plan",
    "plan_joins",
    "title_similarity",
]

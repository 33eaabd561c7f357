"""Pairwise precision and recall of dedupe merges on the labeled fixture set (``tests/fixtures/dedupe/``).

The set is seed pages (``*.txt``, parsed with :func:`ingest.seeds.parse_page`), feed entries (``feeds.json``: a list
of MatchInput-like records) and ``labels.json``: the expected stories, each a list of item references
``[file, title as parsed or "(article)", date as YYYY-MM-DD or null]``. Every item must be labeled exactly once.

    .venv/bin/python scripts/dedupe_quality.py [--order file|reverse|shuffle] [--seed N] [--stories]

Prints precision and recall, the rules that fired, every wrong merge and every miss; exits 1 below --fail-under.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.core.models import ParsedItem  # noqa: E402
from ingest.dedupe import Clusterer, MatchInput, Member, Verdict, canonical, match_input, member  # noqa: E402
from ingest.seeds import parse_page  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "dedupe"
BOILERPLATE = ["Stay up to date on recent advances in the multidisciplinary approach to cancer."]
TZ = ZoneInfo("UTC")  # the [seeds] timezone default
FIRST_SEEN = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
ARTICLE = "(article)"

K = TypeVar("K", bound=Hashable)
Ref = tuple[str, str, str | None]  # (file, title as parsed or "(article)", date or None)


@dataclass(frozen=True, slots=True)
class Labeled:
    ref: Ref
    match: MatchInput
    member: Member


@dataclass(frozen=True, slots=True)
class Scores:
    precision: float
    recall: float
    correct_pairs: int
    predicted_pairs: int
    true_pairs: int
    wrong_merges: tuple[tuple[tuple[Hashable, ...], ...], ...]  # per predicted cluster: the label groups it mixes
    misses: tuple[tuple[tuple[Hashable, ...], ...], ...]  # per label group: the predicted clusters it is split over


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise(predicted: Sequence[Sequence[K]], truth: Mapping[K, Hashable]) -> Scores:
    """Pairwise scores of ``predicted`` clusters against ``truth`` (item -> its true group)."""
    cells: Counter[tuple[int, Hashable]] = Counter()
    for i, cluster in enumerate(predicted):
        for item in cluster:
            cells[(i, truth[item])] += 1
    correct = sum(_pairs(n) for n in cells.values())
    predicted_pairs = sum(_pairs(len(c)) for c in predicted)
    true_pairs = sum(_pairs(n) for n in Counter(truth.values()).values())
    by_group: dict[Hashable, list[K]] = {}
    for item, group in truth.items():
        by_group.setdefault(group, []).append(item)
    where = {item: i for i, cluster in enumerate(predicted) for item in cluster}
    wrong = []
    for cluster in predicted:
        groups: dict[Hashable, list[K]] = {}
        for item in cluster:
            groups.setdefault(truth[item], []).append(item)
        if len(groups) > 1:
            wrong.append(tuple(tuple(g) for g in groups.values()))
    misses = []
    for members in by_group.values():
        parts: dict[int, list[K]] = {}
        for item in members:
            parts.setdefault(where[item], []).append(item)
        if len(parts) > 1:
            misses.append(tuple(tuple(p) for p in parts.values()))
    return Scores(
        precision=correct / predicted_pairs if predicted_pairs else 1.0,
        recall=correct / true_pairs if true_pairs else 1.0,
        correct_pairs=correct,
        predicted_pairs=predicted_pairs,
        true_pairs=true_pairs,
        wrong_merges=tuple(wrong),
        misses=tuple(misses),
    )


def _from_page(name: str, item: ParsedItem, sid: int) -> Labeled:
    ref: Ref = (
        name,
        ARTICLE if item.kind == "article" else item.title,
        item.published.date().isoformat() if item.published else None,
    )
    match = match_input(item, sighting_id=sid, source=name)
    one = member(item, first_seen=FIRST_SEEN + timedelta(minutes=sid), source=name)
    return Labeled(ref, match, one)


def _from_feed(name: str, record: dict[str, Any], sid: int) -> Labeled:
    published = datetime.fromisoformat(record["published"]) if record.get("published") else None
    kind = record.get("kind", "entry")
    title = record["title"]
    ref: Ref = (name, title, published.date().isoformat() if published else None)
    common = {
        "kind": kind,
        "title": title,
        "title_derived": bool(record.get("title_derived", False)),
        "published": published,
        "summary": record.get("summary", ""),
        "link": record.get("link"),
        "source": record["source"],
    }
    match = MatchInput(id=sid, **common)
    member = Member(
        **common,
        content=record.get("content", ""),
        tags=tuple(record.get("tags", ())),
        first_seen=FIRST_SEEN + timedelta(minutes=sid),
    )
    return Labeled(ref, match, member)


def load_items(folder: Path = FIXTURES) -> list[Labeled]:
    """Every item of the set: pages in name order (article, then rail), then the feed entries."""
    items: list[Labeled] = []
    for path in sorted(folder.glob("*.txt")):
        page = parse_page(path.read_bytes(), name=path.name, boilerplate=BOILERPLATE, tz=TZ)
        items.extend(_from_page(path.name, item, len(items) + 1) for item in page.items)
    for path in sorted(folder.glob("feeds*.json")):
        records = json.loads(path.read_text(encoding="utf-8"))
        items.extend(_from_feed(path.name, record, len(items) + 1) for record in records)
    refs = Counter(i.ref for i in items)
    if dup := [r for r, n in refs.items() if n > 1]:
        raise ValueError(f"items that one reference cannot tell apart: {dup}")
    return items


def load_labels(items: Sequence[Labeled], folder: Path = FIXTURES) -> dict[Ref, str]:
    """Each item's story name from ``labels.json``; refuses unknown, repeated or missing references."""
    data = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    known = {i.ref for i in items}
    truth: dict[Ref, str] = {}
    for group in data["stories"]:
        for file, title, date in group["members"]:
            ref: Ref = (file, title, date)
            if ref not in known:
                raise ValueError(f"story {group['story']!r}: no item {ref}")
            if ref in truth:
                raise ValueError(f"{ref} is labeled twice ({truth[ref]!r} and {group['story']!r})")
            truth[ref] = group["story"]
    if missing := sorted(known - truth.keys(), key=str):
        raise ValueError(f"unlabeled items: {missing}")
    return truth


def cluster(items: Sequence[Labeled]) -> tuple[list[list[Ref]], dict[Ref, Verdict | None]]:
    """Cluster the items in the given order; returns the clusters (as references) and each item's verdict."""
    clusterer = Clusterer()
    by_id = {i.match.id: i.ref for i in items}
    verdicts = {i.ref: clusterer.add(i.match)[1] for i in items}
    return [[by_id[sid] for sid in c] for c in clusterer.clusters()], verdicts


def ordered(items: Sequence[Labeled], order: str, seed: int) -> list[Labeled]:
    if order == "reverse":
        return list(reversed(items))
    if order == "shuffle":
        shuffled = list(items)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    return list(items)


def _ref(ref: Hashable) -> str:
    assert isinstance(ref, tuple)
    file, title, date = ref
    return f"{file} | {title} | {date or 'undated'}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, default=FIXTURES)
    parser.add_argument("--order", choices=["file", "reverse", "shuffle"], default="file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stories", action="store_true", help="print each story: canonical title and sightings")
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 when precision or recall is below")
    args = parser.parse_args(argv)

    items = load_items(args.folder)
    truth = load_labels(items, args.folder)
    clusters, verdicts = cluster(ordered(items, args.order, args.seed))
    scores = pairwise(clusters, truth)
    files = len({i.ref[0] for i in items})
    print(f"labeled set: {len(items)} sightings from {files} files, {len(set(truth.values()))} stories labeled")
    print(
        f"clusters:    {len(clusters)} (order: {args.order}{f', seed {args.seed}' if args.order == 'shuffle' else ''})"
    )
    print(f"precision:   {scores.precision:.3f} ({scores.correct_pairs}/{scores.predicted_pairs} merged pairs right)")
    print(f"recall:      {scores.recall:.3f} ({scores.correct_pairs}/{scores.true_pairs} labeled pairs found)")
    rules = Counter(v.rule for v in verdicts.values() if v is not None)
    print("rules:       " + (", ".join(f"{rule} {n}" for rule, n in rules.most_common()) or "none"))
    for mixed in scores.wrong_merges:
        print("WRONG MERGE: one cluster holds " + " / ".join(f"[{'; '.join(map(_ref, g))}]" for g in mixed))
    for split in scores.misses:
        print("MISS: one story split over " + " / ".join(f"[{'; '.join(map(_ref, p))}]" for p in split))
    if args.stories:
        members = {i.ref: i.member for i in items}
        for refs in clusters:
            story = canonical([members[r] for r in refs])
            when = story.published.isoformat() if story.published else "undated"
            print(f"\n* {story.title}  ({when}; {story.link or 'no link'}; tags {list(story.tags)})")
            for ref in refs:
                verdict = verdicts[ref]
                why = f"{verdict.rule} {verdict.score:.2f}" if verdict else "first"
                print(f"    {why:<28} {_ref(ref)}")
    return 1 if min(scores.precision, scores.recall) < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())

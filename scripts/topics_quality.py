"""Per-topic precision and recall of the topic tagger on the labeled headlines (``tests/fixtures/topics/``).

    .venv/bin/python scripts/topics_quality.py [--taxonomy config/topics.toml] [--fail-under-precision 0.95]
        [--fail-under-recall 0.9] [--misses]

Prints a table (topic, labeled, tagged, right, precision, recall) and the overall figures; with ``--misses`` every
headline tagged differently from its label. Exits 1 when a topic with labels falls below either bound.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.topics import Taxonomy, load_taxonomy  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "topics" / "headlines.json"
TAXONOMY = ROOT / "config" / "topics.toml"


@dataclass(frozen=True, slots=True)
class TopicScore:
    topic: str
    labeled: int
    tagged: int
    right: int

    @property
    def precision(self) -> float:
        return self.right / self.tagged if self.tagged else 1.0

    @property
    def recall(self) -> float:
        return self.right / self.labeled if self.labeled else 1.0


def load_headlines(path: Path = FIXTURE) -> list[tuple[str, str, frozenset[str]]]:
    """(title, blurb, labeled topics) of each labeled headline."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(h["title"], h.get("blurb", ""), frozenset(h["topics"])) for h in data["headlines"]]


def score(taxonomy: Taxonomy, headlines: Sequence[tuple[str, str, frozenset[str]]]) -> list[TopicScore]:
    unknown = {t for _, _, labels in headlines for t in labels} - set(taxonomy.slugs)
    if unknown:
        raise ValueError(f"labels name topics the taxonomy lacks: {sorted(unknown)}")
    tagged = [frozenset(taxonomy.tag([title, blurb])) for title, blurb, _ in headlines]
    return [
        TopicScore(
            topic=slug,
            labeled=sum(slug in labels for _, _, labels in headlines),
            tagged=sum(slug in found for found in tagged),
            right=sum(
                slug in found and slug in labels for found, (_, _, labels) in zip(tagged, headlines, strict=True)
            ),
        )
        for slug in taxonomy.slugs
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--taxonomy", type=Path, default=TAXONOMY)
    parser.add_argument("--fixture", type=Path, default=FIXTURE)
    parser.add_argument("--fail-under-precision", type=float, default=0.0)
    parser.add_argument("--fail-under-recall", type=float, default=0.0)
    parser.add_argument("--misses", action="store_true", help="print every headline tagged otherwise than labeled")
    args = parser.parse_args(argv)

    taxonomy = load_taxonomy(args.taxonomy)
    headlines = load_headlines(args.fixture)
    scores = score(taxonomy, headlines)
    print(f"{len(headlines)} labeled headlines, {len(taxonomy.topics)} topics")
    print(f"{'topic':<18} {'labeled':>7} {'tagged':>6} {'right':>5} {'precision':>9} {'recall':>6}")
    failing = []
    for s in scores:
        print(f"{s.topic:<18} {s.labeled:>7} {s.tagged:>6} {s.right:>5} {s.precision:>9.3f} {s.recall:>6.3f}")
        if s.labeled and (s.precision < args.fail_under_precision or s.recall < args.fail_under_recall):
            failing.append(s.topic)
    labeled, tagged, right = (sum(getattr(s, k) for s in scores) for k in ("labeled", "tagged", "right"))
    print(f"{'all':<18} {labeled:>7} {tagged:>6} {right:>5} {right / tagged:>9.3f} {right / labeled:>6.3f}")
    if args.misses:
        for title, blurb, labels in headlines:
            found = frozenset(taxonomy.tag([title, blurb]))
            if found != labels:
                extra, missing = sorted(found - labels), sorted(labels - found)
                print(f"MISS {title!r}: extra {extra}, missing {missing}")
    if failing:
        print(f"below the bounds: {', '.join(failing)}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())

"""Deciding "same story?" for two sightings: their features, blocking keys and the pairwise rules. Pure.

:func:`features` reads a sighting once into what the rules compare; :func:`keys_of` gives its blocking keys (two
sightings the rules call one story always share one); :func:`decide_features` applies the rules, first match wins
(see :func:`decide`). Every caller computes a sighting's features once and keeps them: the planner never recomputes.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import combinations
from typing import Literal

from ingest.core.models import ParsedItem
from ingest.dedupe.normalize import TOKEN, normalize_blurb, normalize_link, title_key

Kind = Literal["article", "teaser", "entry"]

#: "A day or two apart" (time zones, a feed's pubDate against a page's date), plus the widest UTC offset (14 h)
#: between a page's local midnight and a feed's timestamp.
DATE_TOLERANCE = timedelta(days=2, hours=14)
#: A blurb is evidence on its own (same-blurb, article-standfirst, truncated prefix) only from this many words:
#: below it, boilerplate such as "Watch the video." would join unrelated stories.
MIN_EVIDENCE_WORDS = 9
#: The blurb key is the first words of the blurb; fewer than MIN_EVIDENCE_WORDS so that a blurb cut mid-word after
#: its ninth word still yields the same key as its full form.
BLURB_KEY_WORDS = 8
#: Character-trigram Jaccard of two titles for "near-identical" (a typo, a site suffix, punctuation). A title that
#: extends another by a clause ("... Breast Cancer" / "... Breast Cancer and Brain Metastases") scores about 0.75.
NEAR_TITLE_MIN = 0.8
#: Word Jaccard below which two titles cannot be near-identical: a cheap test before the trigrams.
NEAR_TITLE_WORDS_MIN = 0.5
#: Without blurbs to compare, a near title must be nearer still.
NEAR_TITLE_ALONE_MIN = 0.9
#: Word Jaccard of two blurbs that "agree" for a near title (a lightly edited summary scores 0.6 to 0.9).
NEAR_BLURB_MIN = 0.5
#: Verdicts below this are weak: they may attach a sighting to a story but never bridge two informative stories
#: (an undated, blurbless "Recap: Case-Based Roundtable" teaser must not fold a whole series into one).
STRONG_MIN = 0.7
#: Near-title keys are the NEAR_KEY_ARITY-word subsets of a title's NEAR_KEY_WORDS lowest-ranked words (ranked by a
#: stable hash, stopwords left out). Two titles that differ by at most NEAR_KEY_WORDS - NEAR_KEY_ARITY words on each
#: side (a typo, a one-word suffix) always share one: the subset of their lowest common words; two-word differences
#: usually do. Pairs (arity 2) would be cheaper but not selective: "multiple myeloma" is one phrase, not evidence;
#: 4 words in triples is 4 keys per cell, against 10 for 5 words, which cost 40 % more time in the benchmark.
NEAR_KEY_WORDS = 4
NEAR_KEY_ARITY = 3
#: Near-title keys carry a date cell of this width, on two grids offset by half a cell, so dates within
#: DATE_TOLERANCE (< half a cell) always share a cell on one grid.
NEAR_KEY_CELL = timedelta(days=6)

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# Words too common in oncology headlines to make a near-title key selective: function words, and the disease,
# setting and news words that recur across a site's headlines ("FDA Approves ... in First-Line ... Cancer").
# (A word list reads better as words than as a column of quoted strings.)
_STOPWORDS = frozenset(
    """a an and as at be by for from in into is it its of on or the to with without vs versus via after before
    new how what why who when where can more than our your
    recap update updates updated cancer cancers tumor tumors treatment treatments therapy therapies patient
    patients clinical expert experts review reviews discuss discusses data care trial trials study studies
    fda approves approval approved grants priority phase 1 2 3 results outcomes survival real world
    first second line later frontline early late stage advanced metastatic relapsed refractory newly diagnosed
    previously treated older adults high low risk positive negative non small cell cells mutated
    shows improves improve durable response responses efficacy safety managing management toxicity
    toxicities adverse events case perspectives insights strategies practice community plus combination
    chemotherapy immunotherapy radiation targeted options emerging evolving role use using guides
    oncology oncologist oncologists md phd asco esmo ash aacr meeting annual""".split()  # noqa: SIM905
)


@dataclass(frozen=True, slots=True)
class MatchInput:
    """A sighting as the matcher sees it."""

    id: int  # sighting id
    kind: Kind
    title: str
    title_derived: bool  # True for a page article's title made from its first sentence (not a real headline)
    published: datetime | None  # aware
    summary: str  # plain text: teaser blurb, article standfirst, feed entry summary
    link: str | None
    source: str  # where it came from (page path or feed URL)

    def __hash__(self) -> int:
        # Consistent with the generated __eq__ (equal inputs have equal ids) and far cheaper than hashing every field.
        return hash(self.id)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why two sightings are one story: the rule that matched and how sure it is."""

    rule: str  # same-link, same-title-close-date, same-title-undated, same-title-same-blurb, article-standfirst,
    #            same-blurb, near-title
    score: float  # 0..1; below STRONG_MIN the match is weak (see ingest.dedupe.planner.plan_joins)


def match_input(item: ParsedItem, *, sighting_id: int, source: str) -> MatchInput:
    """A parsed item as the matcher sees it."""
    return MatchInput(
        id=sighting_id,
        kind=item.kind,
        title=item.title,
        title_derived=item.title_derived,
        published=item.published,
        summary=item.summary,
        link=item.link,
        source=source,
    )


# What the rules compare, computed once per sighting: (kind, title key, title derived, published, blurb, blurb words,
# blurb head, link, source), where the title key is the normalized title's words (punctuation differences vanish),
# the blurb head its first BLURB_KEY_WORDS words, the link normalized (None too for a bare home page, which many
# unrelated entries share), and the source where it was seen. A plain tuple rather than a dataclass: the garbage
# collector stops tracking a tuple of strings and numbers, and full passes over 100k tracked records were a fifth of
# the benchmark's time. Read it by unpacking.
Features = tuple[Kind, str, bool, datetime | None, str, int, str, str | None, str]


def features(m: MatchInput) -> Features:
    """What the rules compare of ``m``: compute it once per sighting and keep it."""
    blurb = normalize_blurb(m.summary)
    # Words are counted and the key's opening taken by spaces (the blurb's are single): a prefix of a blurb, cut
    # anywhere after its first BLURB_KEY_WORDS words, opens with the same words.
    words = blurb.split(" ", BLURB_KEY_WORDS) if blurb else []
    link = normalize_link(m.link)
    if link is not None and "/" not in link.removeprefix("//") and "?" not in link:
        link = None
    published = m.published
    if published is not None and published.tzinfo is None:
        published = published.replace(tzinfo=UTC)  # the contract says aware; a naive date must not crash a run
    return (
        m.kind,
        title_key(m.title),
        m.title_derived,
        published,
        blurb,
        blurb.count(" ") + 1 if blurb else 0,
        " ".join(words[:BLURB_KEY_WORDS]),
        link,
        m.source,
    )


def informative(f: Features) -> bool:
    """Whether a sighting carries a date or a blurb: what tells one episode of a series from another."""
    _, _, _, published, blurb, _, _, _, _ = f
    return published is not None or bool(blurb)


def is_informative(m: MatchInput) -> bool:
    return informative(features(m))


#: The prefixes of the title and link keys: the only keys two items of one feed can match on (see decide_features).
TITLE_OR_LINK_KEY = ("t:", "l:")


def _key(prefix: str, text: str) -> str:
    return prefix + hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@lru_cache(maxsize=1 << 16)  # headline vocabulary is small: most words are ranked once
def _rank(word: str) -> int:
    return zlib.crc32(word.encode())  # stable across processes, unlike hash(): the store keeps these keys


def blocking_keys(m: MatchInput) -> frozenset[str]:
    """Short keys such that two sightings :func:`decide` calls one story always share at least one.

    ``t:`` the title's words; ``b:`` the blurb's first words (when it is long enough to be evidence); ``l:`` the link;
    ``n<grid><cell>:`` sets of three title words in a date cell, for near-identical titles with close dates.
    """
    return keys_of(features(m))


def keys_of(f: Features) -> frozenset[str]:
    """:func:`blocking_keys` of a sighting's features."""
    _, title_key, derived, published, _, blurb_words, blurb_head, link, _ = f
    keys: set[str] = set()
    if title_key:
        keys.add(_key("t:", title_key))
    if blurb_words >= MIN_EVIDENCE_WORDS:
        keys.add(_key("b:", blurb_head))
    if link is not None:
        keys.add(_key("l:", link))
    if published is not None and not derived and title_key:
        subsets = _near_subsets(title_key)
        cell = (published - _EPOCH) / NEAR_KEY_CELL
        for grid, offset in (("a", 0.0), ("b", 0.5)):
            slot = f"n{grid}{int(cell + offset)}:"
            keys.update(slot + subset for subset in subsets)
    return frozenset(keys)


@lru_cache(maxsize=1 << 14)
def _near_subsets(title_key: str) -> tuple[str, ...]:
    words = set(title_key.split())
    content = (words - _STOPWORDS) or words
    lowest = [f"{r:08x}" for r in sorted(map(_rank, content))[:NEAR_KEY_WORDS]]
    return tuple("".join(subset) for subset in combinations(lowest, min(NEAR_KEY_ARITY, len(lowest))))


def _blurb_relation(blurb_a: str, words_a: int, blurb_b: str, words_b: int) -> float | None:
    """1.0 same blurb, 0.95 one is a prefix of the other (a truncated blurb), 0.0 different, None if one is empty."""
    if not blurb_a or not blurb_b:
        return None
    if blurb_a == blurb_b:
        return 1.0
    if len(blurb_a) > len(blurb_b):
        blurb_a, words_a, blurb_b = blurb_b, words_b, blurb_a
    if words_a >= MIN_EVIDENCE_WORDS and blurb_b.startswith(blurb_a):
        return 0.95
    return 0.0


@lru_cache(maxsize=1 << 10)  # a new sighting's set serves all its candidates; old ones are rarely asked again
def _trigrams(text: str) -> frozenset[str]:
    padded = f" {text} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def title_similarity(a: str, b: str) -> float:
    """Character-trigram Jaccard of two titles' normalized words: 1.0 same, about 0.9 for one typo."""
    return _jaccard(_trigrams(title_key(a)), _trigrams(title_key(b)))


def decide(new: MatchInput, old: MatchInput) -> Verdict | None:
    """Whether two sightings are one story, and by which rule; None when they are (as far as we can tell) two.

    Symmetric: ``decide(a, b)`` and ``decide(b, a)`` agree. Rules, first match wins:

    - same-link: the same normalized link;
    - two entries of ONE feed (two items its author published apart: their keys differ) are never one story unless
      their titles are the same: a feed's template ("{Drug} Shows Benefit in {Cancer} Phase 3 Trial") is not
      evidence, however alike its items read;
    - same-title-close-date: the same title, dates within DATE_TOLERANCE;
    - same-title-undated: the same title, a side undated, blurbs equal or one a prefix of the other (or one empty:
      a weak match);
    - same-title-same-blurb: the same title and blurb, dates far apart (the page was re-dated);
      the same title far apart with different blurbs is two stories (a series reusing its title);
    - article-standfirst: a page article (derived title) whose standfirst is a teaser's or entry's blurb;
    - same-blurb: the same blurb (or a truncated prefix of it) under another title, dates close or unknown;
    - near-title: near-identical titles with close dates and agreeing blurbs.
    """
    return decide_features(features(new), features(old))


def decide_features(new: Features, old: Features) -> Verdict | None:
    """:func:`decide` on features computed once (what the planner calls for every candidate)."""
    kind_a, title_a, derived_a, published_a, blurb_a, words_a, _, link_a, source_a = new
    kind_b, title_b, derived_b, published_b, blurb_b, words_b, _, link_b, source_b = old
    if link_a is not None and link_a == link_b:
        return Verdict("same-link", 1.0)
    if source_a == source_b and title_a != title_b and kind_a == "entry" and kind_b == "entry":
        return None
    gap = abs(published_a - published_b) if published_a is not None and published_b is not None else None
    close = gap is not None and gap <= DATE_TOLERANCE
    relation = _blurb_relation(blurb_a, words_a, blurb_b, words_b)
    if title_a and title_a == title_b:
        if close:
            return Verdict("same-title-close-date", 1.0)
        if gap is None:
            if relation is None:
                return Verdict("same-title-undated", 0.6)
            return Verdict("same-title-undated", relation) if relation else None
        return Verdict("same-title-same-blurb", round(0.85 * relation, 3)) if relation else None
    evidence = bool(relation) and min(words_a, words_b) >= MIN_EVIDENCE_WORDS
    if evidence and (close or gap is None):
        assert relation is not None
        article_a = kind_a == "article" and derived_a
        article_b = kind_b == "article" and derived_b
        if (article_a and not derived_b) or (article_b and not derived_a):
            return Verdict("article-standfirst", round(0.95 * relation, 3))
        return Verdict("same-blurb", round(0.9 * relation, 3))
    if close and not derived_a and not derived_b:
        # Near-identical titles share most words (a typo and a suffix still leave 0.75): a cheap test first.
        title_words_a, title_words_b = set(title_a.split()), set(title_b.split())
        if len(title_words_a & title_words_b) < NEAR_TITLE_WORDS_MIN * len(title_words_a | title_words_b):
            return None
        similarity = _jaccard(_trigrams(title_a), _trigrams(title_b))
        if similarity < NEAR_TITLE_MIN:
            return None
        if relation is None:
            return Verdict("near-title", round(0.8 * similarity, 3)) if similarity >= NEAR_TITLE_ALONE_MIN else None
        agreement = relation or _word_jaccard(blurb_a, blurb_b)
        if agreement >= NEAR_BLURB_MIN:
            return Verdict("near-title", round(0.9 * similarity * (0.8 + 0.2 * agreement), 3))
    return None


def _word_jaccard(a: str, b: str) -> float:
    return _jaccard(frozenset(TOKEN.findall(a)), frozenset(TOKEN.findall(b)))

"""Deciding "same story?": normalized titles and blurbs, blocking keys, pairwise verdicts, a story's best fields.

Pure: data in, data out; no I/O, no clock, no SQL. The store keeps :func:`blocking_keys` per sighting, looks a new
sighting's candidates up by key (at most :data:`MAX_CANDIDATES_PER_KEY` newest per key), calls :func:`decide` on each
and lets :func:`plan_joins` say which matched stories it joins; :class:`Clusterer` does exactly that in memory for the
quality script and the benchmark. :func:`canonical` picks what a story shows from its sightings.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from itertools import combinations
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ingest.core.models import ParsedItem

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
#: Candidates looked up per key, newest first: a key shared by more sightings (a series title, a templated blurb
#: opening) stops growing the work, so cost stays close to linear.
MAX_CANDIDATES_PER_KEY = 32
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

# Quotes, dashes and invisible characters that NFKC leaves alone; compared as their plain forms.
_FOLD = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′`´", "'"),
        **dict.fromkeys("“”„‟″«»", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", None),
    }
)
_RECAP = re.compile(r"^recap\s*:\s*")
# " | Site Name" at the end of a title: at most six words after the bar.
_SITE_SUFFIX = re.compile(r"\s+\|\s+(?:[^|\s]+\s?){1,6}$")
# A blurb cut short: "...", "…" (NFKC makes it "..."), "[...]" or "(...)", possibly repeated, at the very end.
_TRUNCATION = re.compile(r"(?:\s*(?:\[\s*\.{3,}\s*\]|\(\s*\.{3,}\s*\)|\.{3,}))+\s*$")
_MARK_ENDS = ("...", "]", ")")  # what a truncation mark ends with: a cheap test before the regex
_TOKEN = re.compile(r"[^\W_]+\+*")
_TRACKING = re.compile(r"^(?:utm_.*|fbclid|gclid|mc_cid|mc_eid)$")

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
        # Consistent with the generated __eq__ (equal inputs have equal ids) and far cheaper than hashing every
        # field: the matcher's feature cache hashes an input for every candidate it is compared with.
        return hash(self.id)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why two sightings are one story: the rule that matched and how sure it is."""

    rule: str  # same-link, same-title-close-date, same-title-undated, same-title-same-blurb, article-standfirst,
    #            same-blurb, near-title
    score: float  # 0..1; below STRONG_MIN the match is weak (see plan_joins)


@dataclass(frozen=True, slots=True)
class Member:
    """A sighting as the merge rules need it."""

    kind: Kind
    title: str
    title_derived: bool
    published: datetime | None
    summary: str
    content: str  # sanitized HTML of the full body, "" when unknown
    link: str | None
    tags: tuple[str, ...]
    first_seen: datetime
    source: str


@dataclass(frozen=True, slots=True)
class Canonical:
    """What a story shows: the best of its sightings."""

    title: str
    title_derived: bool
    summary: str
    content: str
    link: str | None
    published: datetime | None
    tags: tuple[str, ...]


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


def member(item: ParsedItem, *, first_seen: datetime, source: str) -> Member:
    """A parsed item as the merge rules see it."""
    return Member(
        kind=item.kind,
        title=item.title,
        title_derived=item.title_derived,
        published=item.published,
        summary=item.summary,
        content=item.content,
        link=item.link,
        tags=item.tags,
        first_seen=first_seen,
        source=source,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Normalizing


def _fold(text: str) -> str:
    """Entities (twice: scrapes double-escape), NFKC (nbsp, "…", full-width forms), quotes, dashes, case, spaces."""
    for _ in range(2):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if text.isascii():  # most text: NFKC and the quote table change nothing but a backtick
        return " ".join((text.translate(_FOLD) if "`" in text else text).lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).translate(_FOLD).casefold().split())


def normalize_title(title: str) -> str:
    """A title as compared: folded, without a leading "Recap:" label or trailing " | Site Name" suffixes."""
    text = _fold(title)
    if text.startswith("recap"):
        text = _RECAP.sub("", text, count=1)
    return _strip_site_suffix(text)[0].rstrip(" .")


def _strip_site_suffix(text: str) -> tuple[str, bool]:
    stripped = False
    while "|" in text and (m := _SITE_SUFFIX.search(text)) and len(_TOKEN.findall(text[: m.start()])) >= 2:
        text, stripped = text[: m.start()], True
    return text, stripped


def normalize_blurb(text: str) -> str:
    """A blurb as compared: folded, without a trailing truncation mark ("...", "…", "[...]")."""
    folded = _fold(text)
    if folded.endswith(_MARK_ENDS):
        folded = _TRUNCATION.sub("", folded)
    return folded.rstrip(" ,;:-")


def is_truncated(text: str) -> bool:
    """Whether a blurb ends with a truncation mark."""
    folded = _fold(text)
    return folded.endswith(_MARK_ENDS) and bool(_TRUNCATION.search(folded))


def normalize_link(link: str | None) -> str | None:
    """A link as compared: scheme dropped (http = https), host lowercased without "www." and default port, no
    fragment, no trailing slash, tracking parameters (utm_*, fbclid, ...) dropped, the rest sorted. None for no link."""
    if link is None or not link.strip():
        return None
    text = link.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    if not parts.hostname:
        return text
    host = parts.hostname.lower().removeprefix("www.")
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k))
    path = parts.path.rstrip("/")
    return f"//{host}{path}" + (f"?{urlencode(query)}" if query else "")


def is_informative(m: MatchInput) -> bool:
    """Whether a sighting carries a date or a blurb: what tells one episode of a series from another."""
    return _informative(_features(m))


def _informative(features: _Features) -> bool:
    _, _, _, published, blurb, _, _, _ = features
    return published is not None or bool(blurb)


# ---------------------------------------------------------------------------------------------------------------------
# Matching


# What the rules compare, computed once per sighting: (kind, title key, title derived, published, blurb, blurb words,
# blurb head, link), where the title key is the normalized title's words (punctuation differences vanish), the blurb
# head its first BLURB_KEY_WORDS words, and the link normalized (None too for a bare home page, which many unrelated
# entries share). A plain tuple rather than a dataclass: the garbage collector stops tracking a tuple of strings and
# numbers, and full passes over 100k tracked records were a fifth of the benchmark's time. Read it by unpacking.
_Features = tuple[Kind, str, bool, datetime | None, str, int, str, str | None]
# A small memo for decide's callers, which compare one new sighting with each of its candidates (cleared when full;
# keyed by the input itself, which adds no tracked object per entry as an lru_cache's key tuples would).
# The Clusterer keeps every sighting's features itself.
_FEATURES: dict[MatchInput, _Features] = {}
_FEATURES_MAX = 4096


def _features(m: MatchInput) -> _Features:
    cached = _FEATURES.get(m)
    if cached is None:
        if len(_FEATURES) >= _FEATURES_MAX:
            _FEATURES.clear()
        cached = _FEATURES[m] = _make_features(m)
    return cached


def _make_features(m: MatchInput) -> _Features:
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
        " ".join(_TOKEN.findall(normalize_title(m.title))),
        m.title_derived,
        published,
        blurb,
        blurb.count(" ") + 1 if blurb else 0,
        " ".join(words[:BLURB_KEY_WORDS]),
        link,
    )


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
    return _blocking_keys(_features(m))


def _blocking_keys(features: _Features) -> frozenset[str]:
    _, title_key, derived, published, _, blurb_words, blurb_head, link = features
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
    ka = " ".join(_TOKEN.findall(normalize_title(a)))
    kb = " ".join(_TOKEN.findall(normalize_title(b)))
    return _jaccard(_trigrams(ka), _trigrams(kb))


def decide(new: MatchInput, old: MatchInput) -> Verdict | None:
    """Whether two sightings are one story, and by which rule; None when they are (as far as we can tell) two.

    Symmetric: ``decide(a, b)`` and ``decide(b, a)`` agree. Rules, first match wins:

    - same-link: the same normalized link;
    - same-title-close-date: the same title, dates within DATE_TOLERANCE;
    - same-title-undated: the same title, a side undated, blurbs equal or one a prefix of the other (or one empty:
      a weak match);
    - same-title-same-blurb: the same title and blurb, dates far apart (the page was re-dated);
      the same title far apart with different blurbs is two stories (a series reusing its title);
    - article-standfirst: a page article (derived title) whose standfirst is a teaser's or entry's blurb;
    - same-blurb: the same blurb (or a truncated prefix of it) under another title, dates close or unknown;
    - near-title: near-identical titles with close dates and agreeing blurbs.
    """
    return _decide(_features(new), _features(old))


def _decide(new: _Features, old: _Features) -> Verdict | None:
    kind_a, title_a, derived_a, published_a, blurb_a, words_a, _, link_a = new
    kind_b, title_b, derived_b, published_b, blurb_b, words_b, _, link_b = old
    if link_a is not None and link_a == link_b:
        return Verdict("same-link", 1.0)
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
    return _jaccard(frozenset(_TOKEN.findall(a)), frozenset(_TOKEN.findall(b)))


def plan_joins(informative: bool, matches: Sequence[tuple[int, Verdict, bool]]) -> list[int]:
    """Which matched stories a new sighting joins, given ``(story id, best verdict, story is informative)`` for
    each, oldest story first, and whether the sighting itself is informative (:func:`is_informative`).

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


class Clusterer:
    """In-memory: index by blocking key, union-find over matches. Used by the benchmark and the quality script.

    Runs exactly what the store runs: the code of :func:`blocking_keys` and :func:`decide` (on features it computes
    once per sighting and keeps, where the store would recompute them) and :func:`plan_joins`, with at most
    ``max_per_key`` newest candidates per key. A cluster's id is its oldest sighting's id.
    """

    def __init__(self, max_per_key: int = MAX_CANDIDATES_PER_KEY) -> None:
        self._max_per_key = max_per_key
        self._features: dict[int, _Features] = {}
        self._parent: dict[int, int] = {}
        self._seq: dict[int, int] = {}  # insertion order: the older root survives a merge
        self._informative: dict[int, bool] = {}  # per root
        # hash(key) -> sighting ids, oldest first. Keys are held by their hash (a collision only adds a candidate
        # for decide to turn down), a lone id as a bare int (most keys have one sighting), several as a tuple: ints
        # and tuples of ints are not tracked by the garbage collector, whose full passes over a 100k index of lists
        # cost a fifth of the time.
        self._index: dict[int, int | tuple[int, ...]] = {}

    def add(self, m: MatchInput) -> tuple[int, Verdict | None]:
        """Add a sighting; returns its cluster (root sighting id) and the best verdict that put it there."""
        if m.id in self._features:
            raise ValueError(f"sighting {m.id} added twice")
        features = _make_features(m)
        index = self._index
        postings = [(h, index.get(h)) for h in map(hash, _blocking_keys(features))]
        best: dict[int, Verdict] = {}
        tried: set[int] = set()
        for _, posting in postings:
            for cid in (posting,) if isinstance(posting, int) else posting or ():
                if cid in tried:
                    continue
                tried.add(cid)
                root = self._find(cid)
                known = best.get(root)
                if known is not None and known.score >= 1.0:
                    continue
                verdict = _decide(features, self._features[cid])
                if verdict is not None and (known is None or verdict.score > known.score):
                    best[root] = verdict
        self._features[m.id] = features
        self._parent[m.id] = m.id
        self._seq[m.id] = len(self._seq)
        self._informative[m.id] = _informative(features)
        ordered = sorted(best, key=self._seq.__getitem__)
        joins = plan_joins(self._informative[m.id], [(r, best[r], self._informative[r]) for r in ordered])
        root = m.id
        for other in joins:
            root = self._union(root, other)
        for h, posting in postings:
            if posting is None:
                index[h] = m.id
            elif isinstance(posting, int):
                index[h] = (posting, m.id)
            else:
                index[h] = (*posting[1 - self._max_per_key :], m.id)
        verdicts = [best[r] for r in joins]
        return root, max(verdicts, key=lambda v: v.score) if verdicts else None

    def clusters(self) -> list[list[int]]:
        """Every cluster as its sighting ids in insertion order, clusters by their oldest sighting."""
        groups: dict[int, list[int]] = {}
        for sid in self._seq:  # dicts keep insertion order
            groups.setdefault(self._find(sid), []).append(sid)
        return list(groups.values())

    def find(self, sighting_id: int) -> int:
        """The cluster (root sighting id) a sighting belongs to."""
        return self._find(sighting_id)

    def _find(self, sid: int) -> int:
        parent = self._parent
        root = sid
        while parent[root] != root:
            root = parent[root]
        while parent[sid] != root:
            parent[sid], sid = root, parent[sid]
        return root

    def _union(self, a: int, b: int) -> int:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return ra
        old, new = (ra, rb) if self._seq[ra] < self._seq[rb] else (rb, ra)
        self._parent[new] = old
        self._informative[old] = self._informative[old] or self._informative.pop(new)
        return old


# ---------------------------------------------------------------------------------------------------------------------
# Merging


def canonical(members: Sequence[Member]) -> Canonical:
    """The best of a story's sightings: see each ``_pick_*`` for its rule. ``members`` must not be empty."""
    if not members:
        raise ValueError("a story has at least one sighting")
    if len(members) == 1:  # most stories: the rules below reduce to this (a test holds them to it)
        m = members[0]
        link = m.link.strip() if m.link and m.link.strip() else None
        return Canonical(
            title=m.title,
            title_derived=m.title_derived,
            summary=m.summary if m.summary.strip() else "",
            content=m.content if m.content.strip() else "",
            link=_drop_tracking(link) if link else None,
            published=_aware(m.published) if m.published is not None else None,
            tags=tuple(sorted(set(m.tags))),
        )
    ordered = [m for _, m in sorted(enumerate(members), key=lambda p: (p[1].first_seen, p[0]))]
    title, derived = _pick_title(ordered)
    return Canonical(
        title=title,
        title_derived=derived,
        summary=_pick_summary(ordered),
        content=_pick_content(ordered),
        link=_pick_link(ordered),
        published=_pick_date(ordered),
        tags=tuple(sorted({t for m in ordered for t in m.tags})),
    )


def _has_site_suffix(title: str) -> bool:
    return _strip_site_suffix(_fold(title))[1]


def _pick_title(ordered: Sequence[Member]) -> tuple[str, bool]:
    """A real headline beats one derived from a first sentence; then the most common headline (first seen on a tie);
    of its spellings, one without a " | Site" suffix, then the most common, then the first seen."""
    real = [m for m in ordered if not m.title_derived and m.title.strip()]
    if real:
        pool, derived = real, False
    else:
        pool = [m for m in ordered if m.kind == "article"] or list(ordered)
        derived = True
    groups: dict[str, list[Member]] = {}
    for m in pool:
        groups.setdefault(" ".join(_TOKEN.findall(normalize_title(m.title))), []).append(m)
    group = max(groups.values(), key=len)  # max keeps the first of equals: the first seen
    spellings = [m.title for m in group]
    clean = [t for t in spellings if not _has_site_suffix(t)] or spellings
    counts = Counter(clean)
    return max(clean, key=lambda t: counts[t]), derived


def _pick_summary(ordered: Sequence[Member]) -> str:
    """The longest summary, compared without truncation marks; a truncated blurb never beats its full form."""
    seen = [(normalize_blurb(m.summary), is_truncated(m.summary), m.summary) for m in ordered if m.summary.strip()]
    if not seen:
        return ""
    norms = [n for n, _, _ in seen]

    def dominated(i: int) -> bool:
        norm, truncated, _ = seen[i]
        return truncated and any(j != i and other.startswith(norm) and other != norm for j, other in enumerate(norms))

    candidates = [s for i, s in enumerate(seen) if not dominated(i)]
    return max(candidates, key=lambda s: (len(s[0]), not s[1]))[2]


def _pick_content(ordered: Sequence[Member]) -> str:
    """The full body: the longest content of an article, else the longest of any sighting."""
    with_content = [m for m in ordered if m.content.strip()]
    pool = [m for m in with_content if m.kind == "article"] or with_content
    return max(pool, key=lambda m: len(m.content)).content if pool else ""


def _pick_link(ordered: Sequence[Member]) -> str | None:
    """The most common link (normalized; a feed entry's first on a tie), as first spelled, without tracking."""
    links = [(normalize_link(m.link), m.link) for m in sorted(ordered, key=lambda m: m.kind != "entry") if m.link]
    links = [(norm, link) for norm, link in links if link.strip()]
    if not links:
        return None
    counts = Counter(norm for norm, _ in links)
    norm = max((n for n, _ in links), key=lambda n: counts[n])
    return _drop_tracking(next(link for n, link in links if n == norm).strip())


def _drop_tracking(link: str) -> str:
    try:
        parts = urlsplit(link)
    except ValueError:
        return link
    if not parts.query:
        return link
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _pick_date(ordered: Sequence[Member]) -> datetime | None:
    """The most credible date: the one most other dated sightings agree with (within DATE_TOLERANCE); among those,
    a feed entry's or another real timestamp before a page's midnight date, then the earliest. Undated ones abstain."""
    dated = [(_aware(m.published), m.kind == "entry") for m in ordered if m.published is not None]
    if not dated:
        return None

    def credibility(item: tuple[datetime, bool]) -> tuple[int, bool, float]:
        when, is_entry = item
        support = sum(1 for other, _ in dated if abs(other - when) <= DATE_TOLERANCE)
        precise = is_entry or when.timetz().replace(tzinfo=None) != time(0)
        return support, precise, -when.timestamp()

    return max(dated, key=credibility)[0]


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)

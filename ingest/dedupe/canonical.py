"""What a story shows: the best title, summary, content, link, date, and the tags and topics of its sightings. Pure.

Each ``_pick_*`` names its rule. The store calls :func:`canonical` whenever a story's sightings change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time

from ingest.core.models import ParsedItem
from ingest.dedupe.match import DATE_TOLERANCE, Kind
from ingest.dedupe.normalize import (
    drop_tracking,
    has_site_suffix,
    is_truncated,
    normalize_blurb,
    normalize_link,
    title_key,
)

__all__ = ["Canonical", "Member", "canonical", "member"]


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
    topics: tuple[str, ...] = ()


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
    topics: tuple[str, ...] = ()


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
        topics=item.topics,
    )


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
            link=drop_tracking(link) if link else None,
            published=_aware(m.published) if m.published is not None else None,
            tags=tuple(sorted(set(m.tags))),
            topics=tuple(sorted(set(m.topics))),
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
        topics=tuple(sorted({t for m in ordered for t in m.topics})),
    )


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
        groups.setdefault(title_key(m.title), []).append(m)
    group = max(groups.values(), key=len)  # max keeps the first of equals: the first seen
    spellings = [m.title for m in group]
    clean = [t for t in spellings if not has_site_suffix(t)] or spellings
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
    return drop_tracking(next(link for n, link in links if n == norm).strip())


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

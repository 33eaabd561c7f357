"""What a digest carries and when it is due: periods, the selection of stories, sections, the subject. Pure.

A weekly period is an ISO week in ``[digest] timezone``, Monday 00:00 to the next Monday 00:00; its digest is due at
``[digest] send_at`` in the week after (``mon 08:00``: the digest of 2026-W48, Nov 23 to 29, is due Mon Nov 30 08:00).
A daily period (when ``[digest] daily_send_at`` is set) is a calendar day there, key ``2026-12-02``, due at
``daily_send_at`` the day after. Each cadence is its own sequence of digests (decision 0021).
A digest carries the live stories first seen since the previous digest that carried any, up to the period's end, that
no digest carries yet: each story once, whatever its published date. A feed's backlog (entries already older than
``backlog_days`` when the feed was first read) counts as seen and is left out. Seed pages are curated by hand and
each page is its own source (decision 0003), so applying the rule to them would drop nearly every teaser of every new
page, the 2022 recap found this week included: their sightings are never backlog.

No clock, no I/O, no SQL: the store hands in :class:`~ingest.store.Candidate` records, ``now`` is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ingest.core.config import DigestConfig, Settings
from ingest.core.errors import UsageError
from ingest.core.links import entry_link
from ingest.core.models import CADENCES, Cadence, Candidate, Origin
from ingest.core.sources import reader_sources
from ingest.core.text import after_headline, collapse, html_datetime, xml_safe

__all__ = [
    "DigestItem",
    "Period",
    "Section",
    "Selection",
    "best_source",
    "daily_time",
    "due_period",
    "floor",
    "for_topics",
    "is_backlog",
    "next_due",
    "next_period",
    "period_containing",
    "period_for",
    "sections",
    "select",
    "send_time",
    "subject",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SUMMARY_CHARS = 280
_PERIOD = re.compile(r"(\d{4})-W(\d{2})")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_NOT_ID = re.compile(r"[^\w-]+")
_OLD_PLURAL = re.compile(r"(\{count\}\s+(?:\w+\s+)?)stories\b")


@dataclass(frozen=True, slots=True)
class Period:
    """One ISO week (or, daily, one day) in the digest's time zone and when its digest is due. Times are aware."""

    key: str  # 2026-W48; daily: 2026-12-02
    start: datetime  # Monday 00:00 local; daily: that day 00:00
    end: datetime  # the next Monday 00:00 local; daily: the next day 00:00
    due_at: datetime  # send_at in the week after; daily: daily_send_at the day after
    first_day: date
    last_day: date
    cadence: Cadence = "weekly"

    @property
    def label(self) -> str:
        """``Nov 23 to 29``, ``Nov 30 to Dec 6``, ``Dec 28, 2026 to Jan 3, 2027``; daily: ``Dec 2``."""
        start, end = _range(self)
        return start if self.cadence == "daily" else f"{start} to {end}"

    @property
    def span(self) -> str:
        """The period in words, for "N more this week on the web": ``this week``; daily: ``yesterday`` (a daily
        digest goes out the day after its day)."""
        return "yesterday" if self.cadence == "daily" else "this week"


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One story as the email and the archive page show it: strings ready to print."""

    story_id: int
    title: str
    url: str  # its own link, else its page on our site
    date: str  # published, in the digest's time zone ("27 Nov 2026"); "" when unknown
    iso_date: str  # the same for <time datetime>; "" when unknown
    source: str  # its best source by name (see best_source): "OncLive", "Targeted Oncology"
    summary: str  # from after its headline on: no sentence twice
    sources: int = 1  # the distinct sources it was seen in (ingest.core.sources.reader_sources)
    first_seen: str = ""  # "first seen this week" when published before the period; "" otherwise
    topics: tuple[str, ...] = ()  # the story's topic slugs

    @property
    def byline(self) -> str:
        """Where it was seen: ``OncLive · seen in 3 sources``, or the source alone for a story seen in one."""
        seen_in = f"seen in {self.sources} sources" if self.sources > 1 else ""
        return " · ".join(part for part in (self.source, seen_in) if part)


@dataclass(frozen=True, slots=True)
class Section:
    key: str  # articles | recaps | tag:<tag> | feeds
    title: str
    items: tuple[DigestItem, ...]

    @property
    def anchor(self) -> str:
        """The section's id in the email and on the digest's web page: ``articles``, ``tag-lung``."""
        return _NOT_ID.sub("-", self.key).strip("-") or "section"


@dataclass(frozen=True, slots=True)
class Selection:
    period: Period
    sections: tuple[Section, ...]

    @property
    def story_ids(self) -> tuple[int, ...]:
        """In the order they are shown: the order stored in digest_story."""
        return tuple(item.story_id for section in self.sections for item in section.items)

    @property
    def count(self) -> int:
        return sum(len(section.items) for section in self.sections)


# ---- periods ---------------------------------------------------------------------------------------------------


def period_for(key: str, config: DigestConfig) -> Period:
    """The period named ``2026-W48`` (a week) or ``2026-12-02`` (a day). Raises :class:`UsageError` for anything
    else."""
    if _DAY.fullmatch(key.strip()):
        try:
            return _one_day(date.fromisoformat(key.strip()), config)
        except ValueError:
            raise UsageError(f"period {key!r}: no such day") from None
    m = _PERIOD.fullmatch(key.strip())
    if m is None:
        raise UsageError(f"period {key!r}: expected an ISO week such as 2026-W48, or a day such as 2026-12-02")
    try:
        monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise UsageError(f"period {key!r}: {m.group(1)} has no week {m.group(2)}") from None
    return _period(monday, config)


def period_containing(moment: datetime, config: DigestConfig, cadence: Cadence = "weekly") -> Period:
    local = moment.astimezone(ZoneInfo(config.timezone)).date()
    if cadence == "daily":
        return _one_day(local, config)
    return _period(local - timedelta(days=local.weekday()), config)


def due_period(now: datetime, config: DigestConfig, cadence: Cadence = "weekly") -> Period:
    """The latest period of ``cadence`` whose digest was due at or before ``now``."""
    current = period_containing(now, config, cadence)
    previous = _shift(current, -1, config)
    return previous if previous.due_at <= now else _shift(current, -2, config)


def next_period(now: datetime, config: DigestConfig, cadences: Sequence[Cadence] = ("weekly",)) -> Period:
    """The next period whose digest falls due after ``now``, of ``cadences`` (those offered; for the status view)."""
    upcoming = (_shift(due_period(now, config, c), 1, config) for c in CADENCES if c in cadences)
    return min(upcoming, key=lambda p: (p.due_at, p.cadence != "weekly"))


def next_due(now: datetime, config: DigestConfig) -> datetime:
    """When the next weekly digest falls due after ``now``."""
    return next_period(now, config).due_at


def daily_time(config: DigestConfig) -> time:
    """``[digest] daily_send_at`` as a local time of day (midnight when no daily digest is offered: a daily digest
    made before is still shown)."""
    hours, minutes = (config.daily_send_at or "00:00").split(":")
    return time(int(hours), int(minutes))


def send_time(config: DigestConfig) -> tuple[int, time]:
    """``[digest] send_at`` as (weekday, 0 for Monday; local time of day)."""
    day, clock = config.send_at.lower().split()
    hours, minutes = clock.split(":")
    return WEEKDAYS.index(day), time(int(hours), int(minutes))


def _period(monday: date, config: DigestConfig) -> Period:
    tz = ZoneInfo(config.timezone)
    year, week, _ = monday.isocalendar()
    weekday, at = send_time(config)
    next_monday = monday + timedelta(days=7)
    return Period(
        key=f"{year}-W{week:02d}",
        start=datetime.combine(monday, time(0), tzinfo=tz),
        end=datetime.combine(next_monday, time(0), tzinfo=tz),
        due_at=datetime.combine(next_monday + timedelta(days=weekday), at, tzinfo=tz),
        first_day=monday,
        last_day=monday + timedelta(days=6),
    )


def _one_day(day: date, config: DigestConfig) -> Period:
    tz = ZoneInfo(config.timezone)
    after = day + timedelta(days=1)
    return Period(
        key=day.isoformat(),
        start=datetime.combine(day, time(0), tzinfo=tz),
        end=datetime.combine(after, time(0), tzinfo=tz),
        due_at=datetime.combine(after, daily_time(config), tzinfo=tz),
        first_day=day,
        last_day=day,
        cadence="daily",
    )


def _shift(period: Period, steps: int, config: DigestConfig) -> Period:
    if period.cadence == "daily":
        return _one_day(period.first_day + timedelta(days=steps), config)
    return _period(period.first_day + timedelta(weeks=steps), config)


def _range(period: Period) -> tuple[str, str]:
    a, b = period.first_day, period.last_day
    if a == b:
        return f"{MONTHS[a.month - 1]} {a.day}", f"{MONTHS[b.month - 1]} {b.day}"
    if a.year != b.year:
        return f"{MONTHS[a.month - 1]} {a.day}, {a.year}", f"{MONTHS[b.month - 1]} {b.day}, {b.year}"
    if a.month != b.month:
        return f"{MONTHS[a.month - 1]} {a.day}", f"{MONTHS[b.month - 1]} {b.day}"
    return f"{MONTHS[a.month - 1]} {a.day}", str(b.day)


def subject(config: DigestConfig, count: int, period: Period) -> str:
    """``[digest] subject`` with ``{count}``, ``{stories}`` (``story`` or ``stories``, agreeing with the count),
    ``{start}``, ``{end}`` and ``{period}`` filled in; other braces stay.

    A subject written before ``{stories}`` existed (the old default, ``{count} new stories``, is in every config file
    copied from ours) said "1 new stories": ``stories`` right after ``{count}``, or after it and one word, agrees too.
    """
    start, end = _range(period)
    values = {
        "count": str(count),
        "stories": "story" if count == 1 else "stories",
        "start": start,
        "end": end,
        "period": period.key,
    }
    chosen = config.daily_subject if period.cadence == "daily" else config.subject
    template = _OLD_PLURAL.sub(r"\1{stories}", chosen)
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


# ---- selection -------------------------------------------------------------------------------------------------


def floor(period: Period, last_carried_end: datetime | None, first_digest_start: datetime | None) -> datetime:
    """Stories first seen at or after this go in ``period``'s digest: since the previous digest that carried stories
    (a skipped or empty week rolls over), else since the first digest ever made, else since this period began."""
    if last_carried_end is not None:
        return min(last_carried_end, period.start)
    if first_digest_start is not None:
        return min(first_digest_start, period.start)
    return period.start


def is_backlog(candidate: Candidate, backlog_days: int) -> bool:
    """True when every sighting of the story is a feed entry that was in the feed's first read and already more than
    ``backlog_days`` old then: the feed's history, not news."""
    if not candidate.origins:
        return False
    limit = timedelta(days=backlog_days)
    return all(
        o.source_kind == "feed"
        and o.first_seen == o.source_first_seen
        and o.published is not None
        and o.published < o.first_seen - limit
        for o in candidate.origins
    )


def select(candidates: Sequence[Candidate], period: Period, settings: Settings) -> Selection:
    """The period's digest: the candidates less the backlog, in sections."""
    kept = [c for c in candidates if not is_backlog(c, settings.digest.backlog_days)]
    return Selection(period=period, sections=sections(kept, settings, period))


def for_topics(selection: Selection, topics: Sequence[str]) -> Selection:
    """The part of a digest for a subscriber who chose ``topics``: the stories in any of them, in the same sections
    and order (a section left empty is dropped). No topics: the whole digest."""
    if not topics:
        return selection
    wanted = set(topics)
    kept = (Section(s.key, s.title, tuple(i for i in s.items if wanted & set(i.topics))) for s in selection.sections)
    return Selection(period=selection.period, sections=tuple(s for s in kept if s.items))


def sections(candidates: Sequence[Candidate], settings: Settings, period: Period) -> tuple[Section, ...]:
    """New articles, recaps, then stories from feeds by tag (alphabetical, untagged last); newest first in each.

    A story goes in exactly one section: a recap is a recap wherever it came from; a story seen on any seed page is
    an article; the rest came from feeds only and go under their first tag (their own, else their feed's).
    """
    tz = ZoneInfo(settings.digest.timezone)
    articles: list[Candidate] = []
    recaps: list[Candidate] = []
    by_tag: dict[str, list[Candidate]] = {}
    untagged: list[Candidate] = []
    for c in candidates:
        if c.story.is_recap:
            recaps.append(c)
        elif not c.origins or any(o.source_kind == "page" for o in c.origins):
            articles.append(c)
        else:
            tag = _tag(c)
            if tag is None:
                untagged.append(c)
            else:
                by_tag.setdefault(tag, []).append(c)
    groups: list[tuple[str, str, list[Candidate]]] = [
        ("articles", "New articles", articles),
        ("recaps", "Recaps", recaps),
    ]
    groups += [(f"tag:{tag}", f"From the feeds: {tag}", by_tag[tag]) for tag in sorted(by_tag)]
    groups.append(("feeds", "From the feeds", untagged))
    return tuple(
        Section(key=key, title=title, items=tuple(_item(c, settings, tz, period) for c in _newest_first(group)))
        for key, title, group in groups
        if group
    )


def _tag(c: Candidate) -> str | None:
    own = sorted(t for t in c.story.tags if t != "recap")
    if own:
        return own[0]
    for o in c.origins:
        if o.source_tags:
            return sorted(o.source_tags)[0]
    return None


def _newest_first(group: list[Candidate]) -> list[Candidate]:
    return sorted(group, key=lambda c: (c.story.published or c.story.first_seen, c.story.id), reverse=True)


def _item(c: Candidate, settings: Settings, tz: ZoneInfo, period: Period) -> DigestItem:
    s = c.story
    best = best_source(c)
    sources = reader_sources((o.source_name, o.source_url, o.link, o.first_seen, None) for o in c.origins)
    published = s.published.astimezone(tz) if s.published else None
    return DigestItem(
        story_id=s.id,
        title=_text(s.title) or "(untitled)",
        url=entry_link(settings.publish, s),
        date=_day(published) if published else "",
        iso_date=html_datetime(published) if published else "",
        source=_text(best.source_name) if best else "",
        summary=_shorten(_text(after_headline(s.title, s.summary, derived=s.title_derived)), SUMMARY_CHARS),
        sources=max(len(sources), 1),
        first_seen=_found(s.first_seen.astimezone(tz), period) if published and published < period.start else "",
        topics=s.topics,
    )


def best_source(c: Candidate) -> Origin | None:
    """The source to name for a story: the one its link leads to (where a reader lands), else the one that gave its
    headline (a real one before one made from a first sentence), else where it was first seen."""
    s = c.story
    by_link = [o for o in c.origins if s.link and o.link == s.link]
    by_title = [o for o in c.origins if o.title == s.title]
    return next(iter(by_link or [o for o in by_title if not o.title_derived] or by_title or c.origins), None)


def _day(when: datetime) -> str:
    return f"{when.day} {MONTHS[when.month - 1]} {when.year}"


def _found(first_seen: datetime, period: Period) -> str:
    """When an old story (published before the period) was found: "this week", or the day it was (a story of a
    skipped week rolls over into the next digest)."""
    return f"first seen {period.span}" if first_seen >= period.start else f"first seen {_day(first_seen)}"


def _text(value: str) -> str:
    """One line, and nothing a template or a slot mark could mistake: control characters become U+FFFD."""
    return collapse(xml_safe(value))


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.-")
    return cut + "…"

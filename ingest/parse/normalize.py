"""Raw records turned into :class:`ParsedFeed` and its :class:`ParsedItem` entries: the same for every path.

Text cleaned and capped, HTML sanitized (nh3, via :mod:`ingest.sanitize`), links checked, dates bounded, keys chosen,
repeated keys dropped. Knows no feed format: the readers have filled in the raw records before this.
"""

from __future__ import annotations

import hashlib
import heapq
import html
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import quote, urlsplit

from ingest.core.models import ParsedItem
from ingest.core.text import (
    HEADLINE_CHARS,
    clean_line,
    collapse,
    counted,
    headline,
    key_title,
    normalize_tags,
    truncate_words,
    xml_safe,
)
from ingest.parse.raw import HTML_TYPES, RawEntry, RawFeed, Text
from ingest.sanitize import html_to_text, sanitize_html, text_of_sanitized

FeedKind = Literal["feed", "empty", "not_a_feed"]

# Per-field caps: a hostile or broken feed gets truncated fields, never a failure.
TITLE_MAX = 1_000
SUMMARY_MAX = 10_000
CONTENT_MAX = 200_000
LINK_MAX = 2_000
AUTHOR_MAX = 500
KEY_MAX = 1_000
TAGS_PER_ENTRY = 50
# The text we feed to nh3 is cut first: a summary of 10,000 characters needs no more than this much HTML.
_TEXT_INPUT_MAX = 100_000
_HTML_INPUT_MAX = 2 * CONTENT_MAX
# Caps on a field's raw text in the document, in bytes, applied before any parser sees it (prolog.cap_fields), so
# that no regular expression of feedparser's or ours ever runs over more. An author is small because feedparser's
# e-mail pattern (and our copy of it) is quadratic in the author's length: 100 KB cost 49 s, 512 bytes cost a few
# milliseconds. Other fields stay over their final caps after a cut, even at 10 bytes a character ("&#x10FFFF;"): a
# cut link is still longer than LINK_MAX and dropped, a cut id longer than KEY_MAX and hashed. A body is cut at four
# times _HTML_INPUT_MAX: UTF-8 takes at most 4 bytes a character, and so does "&lt;".
RAW_AUTHOR_MAX = 512
RAW_FIELD_MAX = 32 * 1024
RAW_BODY_MAX = 4 * _HTML_INPUT_MAX
# A date outside these years is a typo or a placeholder (0001-01-01, 9999-12-31): the store uses first seen.
YEAR_MIN = 1990
YEAR_MAX = 2100
# So is a date further ahead of the fetch than this: a pubDate in 2099 would pin its story to the top of every list.
# A day covers a time zone written wrong.
FUTURE_SLACK = timedelta(days=1)
TTL_MAX_MINUTES = 366 * 24 * 60


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """One fetched body, parsed: its entries as :class:`ParsedItem` (``kind="entry"``, positions 1.. in feed order)."""

    kind: FeedKind
    title: str | None
    link: str | None
    items: tuple[ParsedItem, ...]
    ttl: int | None  # RSS <ttl> in minutes
    warning: str | None  # the feed had a defect (not well-formed, repeated ids); its entries were recovered anyway
    error: str | None  # for not_a_feed and empty: what is wrong, for a person, naming the URL
    duplicates: int = 0  # entries dropped because an earlier entry of the same feed had the same key
    empty: int = 0  # entries dropped for having no title, summary, body or link (a feed cut off mid-item)
    over_cap: int = 0  # entries dropped beyond max_entries (the oldest)
    # Entries whose key was among the caller's ``known`` ones, (key, position) each: not normalized, not in ``items``.
    known: tuple[tuple[str, int], ...] = ()


def finish(
    raw: RawFeed,
    *,
    url: str,
    content_type: str,
    body: bytes,
    tags: Sequence[str],
    now: datetime,
    max_entries: int | None = None,
    known: Collection[str] = frozenset(),
) -> ParsedFeed:
    """``now``: the fetch's time (a date more than FUTURE_SLACK after it is not believed). ``max_entries``: keep the
    newest that many entries as the feed lists them (:func:`newest`), before empty and repeated ones are dropped.
    ``known``: keys the caller has stored already (see :func:`_known_key`)."""
    title = _plain(raw.title, TITLE_MAX) or None
    link = _link(raw.link)
    ttl = _ttl(raw.ttl)
    if not raw.entries:
        if raw.version:
            return ParsedFeed("empty", title, link, (), ttl, None, f"{url}: the feed has no entries")
        return failed("not_a_feed", f"{url}: not a feed ({_what_it_is(body, content_type, raw.problem)})")
    extra = _tags(tags, limit=TAGS_PER_ENTRY)
    dates = [_when(entry, now) for entry in raw.entries]
    chosen: Sequence[int] = range(len(raw.entries))
    if max_entries is not None and len(raw.entries) > max_entries:
        chosen = newest([when for when, _ in dates], max_entries)
    over_cap = len(raw.entries) - len(chosen)
    items: list[ParsedItem] = []
    skipped: list[tuple[str, int]] = []
    first: dict[str, ParsedItem] = {}
    duplicates = empty = repeated = 0
    # An id several entries share is decided by normalizing them all: a repeat is dropped, a different entry kept
    # under a key of its own (below), which only their texts tell apart.
    ids = Counter(_id_key(raw.entries[index]) for index in chosen) if known else Counter[str | None]()
    for index in chosen:
        entry = raw.entries[index]
        if known and (key := _known_key(entry, known)) is not None and ids[key] == 1:
            skipped.append((key, len(items) + len(skipped) + 1))
            continue
        item = _item(entry, dates[index], len(items) + len(skipped) + 1, extra)
        if item is None:
            empty += 1
            continue
        if item.key in first and entry.id and entry.id.strip() and _another_item(item, first[item.key]):
            # A feed (a CMS bug, a template) gave two items one guid: the second is a story all the same. Its key
            # is the guid and a hash of what tells it apart, so that the next fetch of the feed gives it again.
            item = replace(item, key=f"{item.key}#{_hash(item.title, item.link or '')[:16]}")
            repeated += item.key not in first
        if item.key in first:
            duplicates += 1
        else:
            first[item.key] = item
            items.append(item)
    warnings = []
    if raw.problem:
        warnings.append(f"{url}: {raw.problem}; {len(items) + len(skipped)} entries recovered")
    if over_cap:
        warnings.append(
            f"{url}: {over_cap} of {len(raw.entries)} entries dropped: only the newest {max_entries} are kept "
            "([fetch] max_entries)"
        )
    if empty:
        warnings.append(f"{url}: {empty} empty entries (no title, summary or link) dropped")
    if duplicates:
        repeats = counted(duplicates, "entry repeats", "entries repeat")
        warnings.append(f"{url}: {repeats} the id of an earlier entry; the first of each was kept")
    if repeated:
        repeats = counted(repeated, "entry repeats", "entries repeat")
        warnings.append(f"{url}: {repeats} the id of an earlier, different entry; each was kept as a story of its own")
    if raw.cut_fields:
        warnings.append(f"{url}: {raw.cut_fields} over-long field(s) cut before parsing")
    if not items and not skipped:  # every entry was empty: nothing to show, as for a feed without entries
        return ParsedFeed("empty", title, link, (), ttl, None, "; ".join(warnings), 0, empty, over_cap)
    return ParsedFeed(
        "feed",
        title,
        link,
        tuple(items),
        ttl,
        "; ".join(warnings) or None,
        None,
        duplicates,
        empty,
        over_cap,
        tuple(skipped),
    )


def newest(dates: Sequence[datetime | None], count: int) -> list[int]:
    """The indices of the ``count`` newest entries, in the feed's order: dated entries newest first (wherever the
    feed lists them; on equal dates, the one listed first), then undated ones in the feed's order. Undated entries go
    last because nothing says how old they are, while most feeds list newest first."""

    def rank(i: int) -> tuple[int, float, int]:
        when = dates[i]
        return (0, -when.timestamp(), i) if when is not None else (1, 0.0, i)

    return sorted(heapq.nsmallest(count, range(len(dates)), key=rank))


def failed(kind: FeedKind, error: str) -> ParsedFeed:
    return ParsedFeed(kind, None, None, (), None, None, error)


def content_type_note(content_type: str) -> str:
    return f", content-type {content_type}" if content_type else ""


def _what_it_is(body: bytes, content_type: str, problem: str | None) -> str:
    start = body.lstrip(b" \t\r\n\xef\xbb\xbf")[:512].lower()
    if "html" in content_type or start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return f"the server sent an HTML page{content_type_note(content_type)}"
    detail = f": {problem}" if problem else ""
    return f"no RSS, Atom or JSON Feed found{content_type_note(content_type)}{detail}"


def _item(
    raw: RawEntry, dated: tuple[datetime | None, str | None], position: int, extra_tags: tuple[str, ...]
) -> ParsedItem | None:
    """The entry normalized, or None when nothing of it can be shown: no title, summary, body or link."""
    content_source = raw.content or raw.summary
    content = _html(content_source)
    if raw.summary is None:
        summary = ""
    elif (
        content_source is not None and raw.summary.value == content_source.value and content_source.type != "text/plain"
    ):
        summary = _capped(text_of_sanitized(content), SUMMARY_MAX)
    else:
        summary = _plain(raw.summary, SUMMARY_MAX)
    title = _plain(raw.title, TITLE_MAX)
    derived = False
    if not title and summary:
        title, derived = headline(summary, HEADLINE_CHARS), True
    when, raw_date = dated
    link = _link(raw.link)
    if not (title or summary or content or link):
        return None
    key = _key(raw, key_title(summary) if derived else title, raw_date, summary)
    author = clean_line(raw.author)[:AUTHOR_MAX] if raw.author else ""
    entry_tags = _tags(raw.tags, limit=TAGS_PER_ENTRY)
    return ParsedItem(
        kind="entry",
        key=key,
        position=position,
        title=title,
        published=when,
        summary=summary,
        content=content,
        link=link,
        author=author or None,
        tags=entry_tags + tuple(t for t in extra_tags if t not in entry_tags),
        title_derived=derived,
        raw_date=xml_safe(raw_date)[:200] if raw_date else None,
    )


def _plain(text: Text | None, limit: int) -> str:
    if text is None or not text.value:
        return ""
    value = text.value[:_TEXT_INPUT_MAX]
    plain = html_to_text(value) if text.type in HTML_TYPES else clean_line(" ".join(value.split()))
    return _capped(plain, limit)


def _capped(text: str, limit: int) -> str:
    # truncate_words collapses whitespace first, which the callers have done: skip it when nothing is cut.
    return truncate_words(text, limit) if len(text) > limit else text


def _html(text: Text | None) -> str:
    if text is None or not text.value:
        return ""
    value = text.value[:_HTML_INPUT_MAX]
    if text.type not in HTML_TYPES:
        value = html.escape(value, quote=False).replace("\n\n", "<br><br>")
    clean = sanitize_html(value, base_url=text.base)
    if len(clean) > CONTENT_MAX:  # cut, then let nh3 close what the cut left open
        clean = sanitize_html(clean[: CONTENT_MAX - 2_000], base_url=text.base)[:CONTENT_MAX]
    return clean


def _when(raw: RawEntry, now: datetime) -> tuple[datetime | None, str | None]:
    """The entry's date (published, else updated) if it is believable, and the raw text it came from."""
    latest = now + FUTURE_SLACK
    for parsed, text in ((raw.published_parsed, raw.published), (raw.updated_parsed, raw.updated)):
        if parsed is not None and YEAR_MIN <= parsed.year <= YEAR_MAX and parsed <= latest:
            return parsed, text
    return None, raw.published or raw.updated or None


def _link(value: str | None) -> str | None:
    if not value:
        return None
    value = value.strip()
    if len(value) > LINK_MAX:
        return None  # a cut URL points somewhere else; better none
    value = quote(value, safe="%/:=&?~#+!$,;'@()*[]")  # spaces and control characters, not the URL's syntax
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return xml_safe(value)


def _known_key(raw: RawEntry, known: Collection[str]) -> str | None:
    """The entry's key when it is among ``known`` and can be told without normalizing the entry: its id or link, and
    the entry is not empty. The store only marks a stored entry seen again (its text is not stored twice), so the
    steady state of a feed (one new entry among fifty) skips sanitizing the others, which is most of parsing them."""
    key = _id_key(raw)
    if key is None or key not in known:
        return None
    if not any(text is not None and text.value.strip() for text in (raw.title, raw.summary, raw.content)):
        return None  # maybe empty now (dropped): decided by normalizing it
    return key


def _id_key(raw: RawEntry) -> str | None:
    for candidate in (raw.id, raw.link):
        if candidate and candidate.strip():
            key = xml_safe(candidate.strip())
            return key if len(key) <= KEY_MAX else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return None


def _key(raw: RawEntry, title: str, raw_date: str | None, summary: str) -> str:
    if (key := _id_key(raw)) is not None:
        return key
    return "hash:" + _hash(title, raw_date or "", summary)[:32]


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(collapse(p).casefold() for p in parts).encode()).hexdigest()


def _another_item(item: ParsedItem, earlier: ParsedItem) -> bool:
    """Two entries under one key are two items when their titles or links differ (an exact repeat is one)."""
    return _hash(item.title) != _hash(earlier.title) or item.link != earlier.link


def _tags(values: Iterable[str], *, limit: int) -> tuple[str, ...]:
    return normalize_tags(values, limit=limit)


def _ttl(value: str | None) -> int | None:
    if not value or not value.strip().isdigit():
        return None
    minutes = int(value.strip())
    return minutes if minutes <= TTL_MAX_MINUTES else None

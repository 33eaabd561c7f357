"""Seed pages: saved article pages as plain text, parsed into one article and a rail of teasers.

A page is the main article's paragraphs (one a line, the first its standfirst; no headline, no date), one or more
site boilerplate lines (config), then a rail: a title line, then a date glued to a blurb
(``April 15th 2025Steven E. Finkelstein, MD ...``). Pure: bytes in, :class:`ParsedPage` out; no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from ingest.core.errors import PageError
from ingest.core.models import ParsedItem, ParsedPage
from ingest.core.text import HEADLINE_CHARS, clean_line, collapse, headline, key_title

RECAP_PREFIX = re.compile(r"^\s*recap\s*:\s*", re.IGNORECASE)

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for m in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)(?!\d)"
# A date opening a rail line; the blurb may follow glued to the year ("2025Steven") or after a space.
_DATE_PATTERNS = (
    re.compile(rf"^{_MONTH}\s+{_DAY},?\s+{_YEAR}", re.IGNORECASE),  # April 15th 2025, Apr 15, 2025
    re.compile(rf"^{_DAY}\s+{_MONTH},?\s+{_YEAR}", re.IGNORECASE),  # 15 April 2025
    re.compile(r"^(?P<year>(?:19|20)\d\d)-(?P<mnum>[01]\d)-(?P<day>[0-3]\d)(?!\d)"),  # 2025-04-15
)

# A UTF-8 text file of this share of control bytes is not text.
_BINARY_CONTROL_SHARE = 0.05


def decode_page(data: bytes, *, name: str, max_bytes: int) -> str:
    """Bytes of a saved page to text: UTF-8 (with or without BOM), else cp1252; refuses what is not a text page."""
    if len(data) > max_bytes:
        raise PageError(f"{name}: file is {len(data):,} bytes, over the {max_bytes:,}-byte limit ([seeds] max_bytes)")
    if not data.strip():
        raise PageError(f"{name}: file is empty")
    if b"\x00" in data:
        raise PageError(f"{name}: binary file (contains NUL bytes), expected a text page")
    controls = sum(1 for b in data if b < 32 and b not in (9, 10, 13))
    if controls / len(data) > _BINARY_CONTROL_SHARE:
        raise PageError(f"{name}: binary file ({controls} control bytes), expected a text page")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise PageError(
            f"{name}: not text in UTF-8 or cp1252 (undecodable byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def match_date(line: str, tz: ZoneInfo) -> tuple[datetime, str, str] | None:
    """A date at the start of ``line``: (midnight in ``tz``, the date as written, the rest of the line)."""
    for pattern in _DATE_PATTERNS:
        m = pattern.match(line)
        if not m:
            continue
        groups = m.groupdict()
        month = int(groups["mnum"]) if groups.get("mnum") else _MONTHS[groups["month"].lower()]
        try:
            when = datetime(int(groups["year"]), month, int(groups["day"]), tzinfo=tz)
        except ValueError:
            return None  # "February 30th 2025": not a date, so the line is not a date line
        return when, m.group(0), line[m.end() :].strip()
    return None


def page_lines(text: str) -> list[str]:
    """Non-blank, cleaned lines: CRLF and lone CR, BOM, entities, odd spaces and trailing spaces handled."""
    lines = (clean_line(raw) for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return [line for line in lines if line]


def _norm_boiler(text: str) -> str:
    return collapse(html.unescape(text)).casefold().rstrip(".")


def parse_page(
    data: bytes,
    *,
    name: str,
    boilerplate: Sequence[str],
    tz: ZoneInfo,
    max_bytes: int = 2 * 1024 * 1024,
    title_max_chars: int = HEADLINE_CHARS,
) -> ParsedPage:
    """Parse one saved page. Raises :class:`PageError` for a file that is not a readable text page."""
    lines = page_lines(decode_page(data, name=name, max_bytes=max_bytes))
    if not lines:
        raise PageError(f"{name}: file holds only blank lines")
    boiler = {_norm_boiler(b) for b in boilerplate}
    marks = [i for i, line in enumerate(lines) if _norm_boiler(line) in boiler]
    warnings: list[str] = []
    if marks:
        body, rail = lines[: marks[0]], lines[marks[-1] + 1 :]
    else:
        split = _rail_start(lines, tz)
        body, rail = lines[:split], lines[split:]
        if rail:
            warnings.append(f"{name}: no boilerplate line found; the rail was recognised by its dated teasers")
    article = _article(body, title_max_chars) if body else None
    teasers, rail_warnings = _teasers(rail, tz, name, title_max_chars)
    return ParsedPage(article=article, teasers=tuple(teasers), warnings=tuple(warnings + rail_warnings))


def _rail_start(lines: Sequence[str], tz: ZoneInfo) -> int:
    """Without a boilerplate line: the rail is the trailing run of (title, dated blurb) pairs."""
    start = len(lines)
    i = len(lines) - 1
    while i >= 1 and match_date(lines[i], tz) and not match_date(lines[i - 1], tz):
        start = i - 1
        i -= 2
    return start


def _article(paragraphs: Sequence[str], title_max_chars: int) -> ParsedItem:
    standfirst = paragraphs[0]
    content = "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs)
    return ParsedItem(
        kind="article",
        key="article:" + _digest(standfirst),
        position=0,
        title=headline(standfirst, title_max_chars),
        published=None,
        summary=standfirst,
        content=content,
        tags=(),
        title_derived=True,
    )


def _teasers(rail: Sequence[str], tz: ZoneInfo, name: str, title_max_chars: int) -> tuple[list[ParsedItem], list[str]]:
    items: list[ParsedItem] = []
    warnings: list[str] = []
    i = 0
    while i < len(rail):
        line = rail[i]
        dated = match_date(line, tz)
        if dated:
            # A dated blurb with no title above it: keep it, titled from its first sentence.
            when, raw_date, blurb = dated
            title = headline(blurb, title_max_chars) if blurb else raw_date
            warnings.append(f"{name}: rail line {i + 1} has a date but no title above it")
            keyed = key_title(blurb) if blurb else raw_date
            items.append(_teaser(len(items) + 1, title, when, raw_date, blurb, derived=True, key_title=keyed))
            i += 1
            continue
        nxt = match_date(rail[i + 1], tz) if i + 1 < len(rail) else None
        if nxt:
            when, raw_date, blurb = nxt
            items.append(_teaser(len(items) + 1, line, when, raw_date, blurb))
            i += 2
        else:
            items.append(_teaser(len(items) + 1, line, None, None, ""))
            i += 1
    return items, warnings


def _teaser(
    position: int,
    title: str,
    when: datetime | None,
    raw_date: str | None,
    blurb: str,
    *,
    derived: bool = False,
    key_title: str | None = None,
) -> ParsedItem:
    """``key_title``: the title the key is made of, when not ``title`` (a derived one: see text.key_title)."""
    tags = ("recap",) if RECAP_PREFIX.match(title) else ()
    return ParsedItem(
        kind="teaser",
        key="teaser:" + _digest(title if key_title is None else key_title, raw_date or "", blurb),
        position=position,
        title=title,
        published=when,
        summary=blurb,
        tags=tags,
        title_derived=derived,
        raw_date=raw_date,
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(collapse(p).casefold() for p in parts).encode()).hexdigest()[:20]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

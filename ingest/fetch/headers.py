"""The headers we send and the ones we read: Accept, validators, Retry-After and Cache-Control. Pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

#: Retry-After further away than this is read as this: a misconfigured server cannot silence a feed for a year.
MAX_RETRY_AFTER = timedelta(days=1)
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, "
    "application/feed+json;q=0.9, application/json;q=0.8, */*;q=0.5"
)
#: Only what we can inflate with a cap; brotli and zstd are never asked for.
ACCEPT_ENCODING = "gzip, deflate"


def parse_retry_after(value: str | None, now: datetime, cap: timedelta = MAX_RETRY_AFTER) -> datetime | None:
    """Retry-After (RFC 9110 10.2.3) as an absolute time: delay-seconds or an HTTP-date, never past ``now + cap``.

    A date in the past means now; a value that is neither form is ignored (None).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = min(int(value), int(cap.total_seconds()))
        return now + timedelta(seconds=seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 5.6.7: HTTP-dates are UTC even when written "-0000"
        when = when.replace(tzinfo=UTC)
    return min(max(when, now), now + cap)


def parse_max_age(cache_control: str | None) -> int | None:
    """Seconds of ``max-age`` in a Cache-Control value; None when absent, malformed, or no-cache/no-store.

    ``s-maxage`` is for shared caches (RFC 9111 5.2.2.10), and we are a private one, so it is ignored.
    """
    if not cache_control:
        return None
    max_age: int | None = None
    for directive in cache_control.split(","):
        name, _, arg = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            return None
        if name == "max-age" and max_age is None:
            arg = arg.strip().strip('"')
            if not arg.isdigit():
                return None
            max_age = int(arg)
    return max_age


def header_value(value: str | None) -> bytes | None:
    """A stored validator as bytes to send, or None when it cannot be sent back as it was received."""
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    return value.encode("utf-8", "replace")

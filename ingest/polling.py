"""When to check a feed next, from how its last fetch ended: the polling policy, pure (no I/O; ``now`` and an RNG in).

Owns the arithmetic only. It does not read the clock, fetch, or touch the store: the caller passes the outcome of
:mod:`ingest.fetch` and the source's error streak, and stores the ``(next check, error count)`` it gets back.

With ``I`` the feed's interval, ``n`` the new error count, ``J`` = :data:`JITTER` and ``DAY`` = :data:`MAX_DELAY`:

- ``ok`` / ``not_modified``: ``n = 0``; next = now + max(I, min(max_age, DAY), min(ttl, DAY)). Cache-Control
  ``max-age`` and RSS ``ttl`` are a floor, never a way to poll sooner; each is capped at a day so a server asking
  for a year of silence cannot switch a feed off.
- ``error`` / ``blocked``: ``n = count + 1``; next = now + min(DAY, I * 2**(n-1) * (1 + U(0, J))), so the first
  failure waits about one interval, the delay doubles with each failure after it, never exceeds a day, and the
  jitter keeps feeds that failed together (a host outage) from all retrying in the same second.
- ``retry_later`` (429, 503): as a failure, but never before the server's ``Retry-After`` (itself capped at a day
  from now): next = now + max(backoff, min(retry_after - now, DAY)). Honouring it never means polling sooner.
- ``gone`` (410): no next check (``None``); the error count is left as it was.

A feed that has failed for ``pause_after_days`` since the first failure of its streak is paused (no next check
either) by its caller: :func:`failing_since` dates the streak, :func:`should_pause` decides. Backoff is capped at a day,
so a feed dead for good would otherwise be polled once a day for ever.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.fetch import Outcome

MAX_DELAY = timedelta(days=1)
#: Upper bound of the multiplicative jitter added to a failure's backoff (0.25: up to 25% later).
JITTER = 0.25
#: 2**_MAX_DOUBLINGS intervals is already far beyond MAX_DELAY; stops the power from overflowing a timedelta.
_MAX_DOUBLINGS = 32


def next_check(
    *,
    outcome: Outcome,
    now: datetime,
    interval_minutes: float,
    error_count: int,
    retry_after: datetime | None,
    max_age: int | None,
    ttl_minutes: int | None,
    rng: random.Random,
) -> tuple[datetime | None, int]:
    """The next check time (``None`` when the feed is gone) and the new error count; see the module docstring."""
    interval = timedelta(minutes=interval_minutes)
    if outcome == "gone":
        return None, error_count
    if outcome in ("ok", "not_modified"):
        floor = interval
        if max_age is not None and max_age > 0:
            floor = max(floor, min(timedelta(seconds=max_age), MAX_DELAY))
        if ttl_minutes is not None and ttl_minutes > 0:
            floor = max(floor, min(timedelta(minutes=ttl_minutes), MAX_DELAY))
        return now + floor, 0
    if outcome not in ("error", "blocked", "retry_later"):
        raise ValueError(f"unknown fetch outcome {outcome!r}")
    count = error_count + 1
    delay = backoff(interval, count, rng)
    if outcome == "retry_later" and retry_after is not None:
        delay = max(delay, min(retry_after - now, MAX_DELAY))
    return now + delay, count


def failing_since(
    *,
    previous: datetime | None,
    error_count: int,
    last_success: datetime | None,
    created: datetime | None,
    now: datetime,
) -> datetime:
    """When the failure streak that a failure at ``now`` belongs to began (``error_count``: failures before this one).

    The first failure starts it; a streak already under way keeps its start. One from before streaks were dated
    counts from the last success, else from when the feed was added."""
    if error_count == 0:
        return now
    return previous or last_success or created or now


def should_pause(since: datetime, now: datetime, pause_after_days: float) -> bool:
    """Whether a feed failing since ``since`` is paused at ``now`` (``pause_after_days`` 0: never)."""
    return pause_after_days > 0 and now - since >= timedelta(days=pause_after_days)


def backoff(interval: timedelta, failures: int, rng: random.Random) -> timedelta:
    """The wait after ``failures`` (>= 1) failures in a row: interval * 2**(failures-1), jittered, capped at a day."""
    doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
    seconds = interval.total_seconds() * 2**doublings * (1 + rng.uniform(0, JITTER))
    return min(timedelta(seconds=seconds), MAX_DELAY)

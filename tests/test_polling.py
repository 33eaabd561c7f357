"""The polling policy: floors on success, exponential backoff with jitter on failure, Retry-After, gone."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta

import pytest

from ingest.polling import JITTER, MAX_DELAY, backoff, failing_since, next_check, should_pause
from tests.conftest import NOW

pytestmark = pytest.mark.no_database  # opens no database: one run

HOUR = timedelta(hours=1)


def _next(
    outcome: str,
    *,
    interval: int = 60,
    errors: int = 0,
    retry_after: datetime | None = None,
    max_age: int | None = None,
    ttl: int | None = None,
    seed: int = 1,
) -> tuple[datetime | None, int]:
    return next_check(
        outcome=outcome,  # type: ignore[arg-type]
        now=NOW,
        interval_minutes=interval,
        error_count=errors,
        retry_after=retry_after,
        max_age=max_age,
        ttl_minutes=ttl,
        rng=random.Random(seed),
    )


@pytest.mark.parametrize("outcome", ["ok", "not_modified"])
def test_success_resets_the_streak_and_waits_one_interval(outcome: str) -> None:
    assert _next(outcome, errors=7) == (NOW + HOUR, 0)


@pytest.mark.parametrize(
    ("max_age", "ttl", "expected"),
    [
        (7200, None, NOW + 2 * HOUR),  # max-age longer than the interval wins
        (60, None, NOW + HOUR),  # shorter: the interval still holds (a floor, never a way to poll sooner)
        (None, 180, NOW + 3 * HOUR),  # RSS ttl in minutes
        (7200, 180, NOW + 3 * HOUR),  # the larger floor wins
        (0, 0, NOW + HOUR),
        (10**9, None, NOW + MAX_DELAY),  # a year of max-age is capped at a day
        (None, 10**6, NOW + MAX_DELAY),
    ],
)
def test_max_age_and_ttl_are_a_floor_capped_at_a_day(max_age: int | None, ttl: int | None, expected: datetime) -> None:
    assert _next("ok", max_age=max_age, ttl=ttl) == (expected, 0)


def test_an_interval_longer_than_a_day_is_kept_on_success() -> None:
    assert _next("ok", interval=3 * 24 * 60) == (NOW + timedelta(days=3), 0)


@pytest.mark.parametrize("outcome", ["error", "blocked"])
def test_failures_count_up_and_back_off_from_the_interval(outcome: str) -> None:
    when, count = _next(outcome, errors=2)
    assert count == 3
    assert when is not None
    assert NOW + 4 * HOUR <= when <= NOW + 4 * HOUR * (1 + JITTER)  # 60 min * 2**(3-1), plus jitter


def test_backoff_doubles_each_time_and_stops_at_a_day() -> None:
    rng = random.Random(42)
    delays = [backoff(HOUR / 4, n, rng) for n in range(1, 12)]
    assert delays[0] >= HOUR / 4
    # 15 min doubled seven times is 32 h: the 8th failure is the first to hit the cap.
    assert all(later > earlier for earlier, later in itertools.pairwise(delays[:8]))
    assert delays[7:] == [MAX_DELAY] * 4


def test_backoff_survives_a_very_long_streak() -> None:
    when, count = _next("error", errors=10_000)
    assert (when, count) == (NOW + MAX_DELAY, 10_001)


def test_the_same_seed_gives_the_same_schedule_and_jitter_spreads_feeds() -> None:
    assert _next("error", errors=1, seed=7) == _next("error", errors=1, seed=7)
    rng = random.Random(3)
    times = {
        next_check(
            outcome="error",
            now=NOW,
            interval_minutes=60,
            error_count=0,
            retry_after=None,
            max_age=None,
            ttl_minutes=None,
            rng=rng,
        )[0]
        for _ in range(100)
    }
    assert len(times) > 90  # a hundred feeds that failed together do not all come back in the same second


def test_retry_after_is_honoured_when_later_than_the_backoff() -> None:
    assert _next("retry_later", retry_after=NOW + 5 * HOUR) == (NOW + 5 * HOUR, 1)


def test_retry_after_never_makes_us_poll_sooner() -> None:
    when, count = _next("retry_later", retry_after=NOW + timedelta(seconds=5))
    assert count == 1
    assert when is not None
    assert when >= NOW + HOUR


def test_retry_after_is_capped_at_a_day() -> None:
    assert _next("retry_later", retry_after=NOW + timedelta(days=30)) == (NOW + MAX_DELAY, 1)


def test_retry_later_without_a_retry_after_backs_off_like_a_failure() -> None:
    assert _next("retry_later", errors=3) == _next("error", errors=3)


def test_gone_stops_polling_and_keeps_the_streak() -> None:
    assert _next("gone", errors=4) == (None, 4)


def test_an_unknown_outcome_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown fetch outcome"):
        _next("maybe")


def test_a_failure_streak_is_dated_from_its_first_failure() -> None:
    day = timedelta(days=1)
    start = NOW - 40 * day

    def since(previous: datetime | None, errors: int, success: datetime | None = None) -> datetime:
        return failing_since(previous=previous, error_count=errors, last_success=success, created=start, now=NOW)

    assert since(None, 0) == NOW  # this failure starts the streak
    assert since(NOW - 3 * day, 0) == NOW  # a success came between: the old start is forgotten
    assert since(NOW - 3 * day, 5) == NOW - 3 * day
    # A streak from before streaks were dated: from the last success, else from when the feed was added.
    assert since(None, 5, success=NOW - 10 * day) == NOW - 10 * day
    assert since(None, 5) == start


def test_a_feed_is_paused_after_pause_after_days_of_failures() -> None:
    day = timedelta(days=1)
    assert not should_pause(NOW - 29 * day, NOW, 30)
    assert should_pause(NOW - 30 * day, NOW, 30)
    assert should_pause(NOW - 1 * day, NOW, 0.5)
    assert not should_pause(NOW - 3650 * day, NOW, 0)  # 0: never

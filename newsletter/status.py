"""The operator's status view: sources, stories, the last and next digest, subscribers. Reads the store; prints nothing.

:func:`status_view` gathers it into a :class:`StatusView`; the CLI prints that as tables or dumps
:meth:`StatusView.as_json`. ``now`` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ingest.core.config import Settings
from ingest.core.models import Digest, Source, Story
from ingest.run import sync_config_feeds
from ingest.store import Store
from newsletter.digest.select import next_period, period_containing

__all__ = ["StatusView", "status_view"]


@dataclass(frozen=True, slots=True)
class StatusView:
    sources: tuple[Source, ...]  # every source but the removed ones
    live_stories: int  # readers see them: not merged away, not hidden
    hidden: tuple[Story, ...]  # hidden by the operator, most recently hidden first
    week: str  # the current period's key
    first_seen_this_week: int  # stories first seen in it
    last_digest: Digest | None
    last_deliveries: dict[str, int]  # the last digest's deliveries by status
    next_period: str  # the period whose digest falls due next
    next_due: datetime
    subscribers: dict[str, int]  # by status

    def as_json(self) -> dict[str, Any]:
        last = self.last_digest
        return {
            "sources": [_source_json(s) for s in self.sources],
            "stories": {
                "live": self.live_stories,
                "hidden": [_hidden_json(s) for s in self.hidden],
                "first_seen_this_week": self.first_seen_this_week,
                "week": self.week,
            },
            "last_digest": None
            if last is None
            else {
                "period": last.period,
                "status": last.status,
                "stories": last.story_count,
                "sent_at": last.sent_at.isoformat() if last.sent_at else None,
                "note": last.note,
                "deliveries": self.last_deliveries,
            },
            "next_digest": {"period": self.next_period, "due": self.next_due.isoformat()},
            "subscribers": self.subscribers,
        }


def status_view(store: Store, settings: Settings, now: datetime) -> StatusView:
    """The status as of ``now``, the config's feeds synced into the store first."""
    sync_config_feeds(store, settings, now)
    week = period_containing(now, settings.digest)
    digests = store.digests(limit=1)
    last = digests[0] if digests else None
    # The daily digest counts once someone reads it: it is made only then.
    daily = "daily" in settings.digest.cadences and store.has_subscribers("daily")
    upcoming = next_period(now, settings.digest, ("weekly", "daily") if daily else ("weekly",))
    return StatusView(
        sources=tuple(s for s in store.sources() if s.status != "removed"),
        live_stories=store.counts()["stories"],
        hidden=tuple(store.hidden_stories()),
        week=week.key,
        first_seen_this_week=store.stories_first_seen_between(week.start, week.end),
        last_digest=last,
        last_deliveries=store.delivery_counts(last.id) if last else {},
        next_period=upcoming.key,
        next_due=upcoming.due_at,
        subscribers=store.subscriber_counts(),
    )


def _hidden_json(s: Story) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "hidden_at": s.hidden_at.isoformat() if s.hidden_at else None,
        "reason": s.hidden_reason,
    }


def _source_json(s: Source) -> dict[str, Any]:
    return {
        "location": s.location,
        "kind": s.kind,
        "name": s.name,
        "status": s.status,
        "last_success": s.last_success_at.isoformat() if s.last_success_at else None,
        "error_count": s.error_count,
        "last_error": s.last_error,
        "next_check": s.next_check_at.isoformat() if s.next_check_at and s.url else None,
        "suggested_url": s.suggested_url,
    }

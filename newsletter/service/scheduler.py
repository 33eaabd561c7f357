"""APScheduler 3's home: when the service's steps run. It decides nothing else (the database says what is due).

Two jobs: a tick every minute (ingest what is due, publish if stories changed, read mail that came back, send the due
digest and retries: each as the process's roles say), and the weekly digest at ``[digest] send_at`` in ``[digest]
timezone`` (role ``sender`` only). Both are idempotent, so overlap or a rerun does no
harm; each has ``max_instances=1`` and ``coalesce=True`` (runs missed while busy or down collapse into one), and a
``misfire_grace_time`` chosen on purpose: APScheduler's default of 1 s would silently drop a weekly run that is a
second late. The weekly job's grace is ``catch_up_hours``; the tick's is one interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ingest.core.config import Settings
from ingest.core.errors import NewsletterError
from ingest.core.models import Role
from newsletter.digest.select import send_time

__all__ = ["Jobs", "Scheduler"]

log = logging.getLogger("newsletter.scheduler")
_TICK = {"ingest": "ingest, publish", "sender": "inbound, digest"}


class Jobs(Protocol):
    """What the scheduler runs, and asks before it does: :class:`newsletter.service.service.Service` is one.

    A protocol, so this module never imports the service's (which starts the scheduler): no import cycle.
    """

    settings: Settings
    clock: Callable[[], datetime]
    stopping: threading.Event
    roles: frozenset[Role]  # the weekly digest is the sender's

    def run_pass(self, now: datetime) -> object:
        """Everything that is due, once; logs its own line and its errors."""
        ...

    def weekly_digest(self, now: datetime) -> object:
        """The due digest; logs its own line, raises when the step failed."""
        ...


class Scheduler:
    def __init__(self, service: Jobs, *, tick_seconds: float = 60.0) -> None:
        self.service = service
        cfg = service.settings.digest
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._scheduler.add_job(
            self._tick,
            IntervalTrigger(seconds=tick_seconds),
            id="tick",
            name=", ".join(_TICK[r] for r in sorted(service.roles) if r in _TICK),
            next_run_time=service.clock(),  # at once: catch up on what fell due while we were down
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(tick_seconds)),
        )
        if "sender" not in service.roles:
            return
        weekday, at = send_time(cfg)
        self._scheduler.add_job(
            self._digest,
            CronTrigger(day_of_week=weekday, hour=at.hour, minute=at.minute, timezone=cfg.timezone),
            id="digest",
            name="weekly digest",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, cfg.catch_up_hours * 3600),
        )

    def start(self) -> None:
        self._scheduler.start()
        for job in self._scheduler.get_jobs():
            log.info("scheduled %s: next run %s", job.name, job.next_run_time)

    def shutdown(self) -> None:
        """Take no new runs; wait for the run in flight (it checks ``service.stopping`` between messages)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _tick(self) -> None:
        if self.service.stopping.is_set():
            return
        self.service.run_pass(self.service.clock())  # logs its own line, and its errors

    def _digest(self) -> None:
        if self.service.stopping.is_set():
            return
        try:
            self.service.weekly_digest(self.service.clock())
        except NewsletterError:
            log.info("weekly digest: the next tick tries again")  # the error's own line is logged already
        except Exception:
            log.exception("weekly digest failed; the next tick tries again")

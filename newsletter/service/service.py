"""The service's steps (ingest, publish, the due digest), safe to run twice, and its run loop. Remembers nothing due.

What is due is computed from the database (each feed's next check, the digest periods already made), never
remembered here, so a pass run twice, or after downtime, does the right thing. :class:`Service` also runs the
long-lived form (``newsletter run``): the web app in a thread, the scheduler's jobs, and a clean stop on SIGTERM or
SIGINT. The clock is read only by the scheduler and the CLI. When the steps run is the scheduler's business
(:mod:`newsletter.service.scheduler`); the single-instance lock is :mod:`newsletter.service.lock`.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, TypeVar

from ingest.core.config import Settings
from ingest.core.errors import NewsletterError
from ingest.core.models import ROLES, PruneReport, Role, SourceReport
from ingest.core.text import counted
from ingest.run import ingest_pass, summarize
from ingest.store import Store
from ingest.topics import taxonomy_of
from newsletter.digest.job import DigestReport, mail_warnings, send_due_digest
from newsletter.inbound.apply import InboundReport, read_inbound
from newsletter.metrics import Metrics
from newsletter.publish import Publisher, PublishReport
from newsletter.web.ops import LAST_PASS

if TYPE_CHECKING:
    from newsletter.web.app import QuietServer

log = logging.getLogger("newsletter.service")

Clock = Callable[[], datetime]
T = TypeVar("T")


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PassReport:
    """One pass of everything that was due."""

    sources: tuple[SourceReport, ...] = ()
    published: PublishReport | None = None
    digest: DigestReport | None = None
    inbound: InboundReport | None = None  # mail that came back, when [inbound] has a source
    pruned: PruneReport | None = None
    errors: tuple[str, ...] = field(default=())  # a step that failed as a whole (the database, the mail server)

    @property
    def failed_sources(self) -> int:
        return sum(1 for r in self.sources if r.error)


class Service:
    """The service's steps over one store. Thread-safe: steps that touch the same work never overlap."""

    def __init__(
        self, settings: Settings, store: Store, *, clock: Clock = wall_clock, roles: frozenset[Role] = frozenset(ROLES)
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.roles = roles  # which steps this process runs: a big install runs senders apart (``run --role``)
        self.stopping = threading.Event()
        self._ingest_lock = threading.Lock()
        self._digest_lock = threading.Lock()
        self._inbound_lock = threading.Lock()
        self.metrics = Metrics(store)  # this process's timings; /metrics serves them with the store's counts
        # shared with the web, which keeps the feeds current too
        self.publisher = Publisher(store, settings, topics=taxonomy_of(settings.topics).names)

    def warn_about_setup(self) -> None:
        """Log, once at start, what in the config would make a mailed digest's links or sender lead nowhere."""
        for warning in mail_warnings(self.settings):
            log.warning("%s", warning)

    # ---- steps ---------------------------------------------------------------------------------------------------

    def ingest(self, now: datetime) -> tuple[SourceReport, ...]:
        with self._ingest_lock:
            reports = tuple(ingest_pass(self.store, self.settings, now, stop=self.stopping.is_set))
        self.metrics.observe_fetches(reports)
        return reports

    def publish(self, now: datetime) -> PublishReport:
        with self._ingest_lock:
            return self.publisher.publish(now)

    def send_digest(self, now: datetime) -> DigestReport:
        with self._digest_lock:
            started = time.monotonic()
            names = taxonomy_of(self.settings.topics).names
            report = send_due_digest(self.store, self.settings, now, stop=self.stopping.is_set, topic_names=names)
            self.metrics.observe_digest(time.monotonic() - started)
            return report

    def read_inbound(self, now: datetime) -> InboundReport | None:
        """Mail that came back (``[inbound]``), when a source is configured."""
        if self.settings.inbound.source == "none":
            return None
        with self._inbound_lock:
            return read_inbound(self.store, self.settings, now)

    def prune(self, now: datetime) -> PruneReport:
        """Retention ([storage] keep_deliveries_days, keep_sightings_days): cheap when nothing is due."""
        storage = self.settings.storage
        with self._ingest_lock:
            return self.store.prune(
                deliveries_before=now - timedelta(days=storage.keep_deliveries_days)
                if storage.keep_deliveries_days
                else None,
                sightings_before=now - timedelta(days=storage.keep_sightings_days)
                if storage.keep_sightings_days
                else None,
            )

    def run_pass(self, now: datetime, *, force_publish: bool = False) -> PassReport:
        """Everything that is due, once: ingest, publish when stories changed (by this ingest, or by the operator:
        a hide, a merge; a publish that finds nothing changed costs three index lookups), mail that came back
        (bounces first, so the digest skips who bounced), the digest when due, and retention.

        Logs one line for the pass: each step's outcome, and the duration (a failed step also logs its error)."""
        started = time.monotonic()
        errors: list[str] = []
        parts: list[str] = []
        sources: tuple[SourceReport, ...] = ()
        published = digest = inbound = None
        if "ingest" in self.roles:
            try:
                sources = self.ingest(now)
                parts.append("ingest " + describe_ingest(sources))
            except NewsletterError as exc:
                errors.append(f"ingest: {exc}")
            try:
                published = self.publish(now)
                if force_publish or not published.up_to_date:
                    parts.append("publish " + describe_publish(published))
            except NewsletterError as exc:
                errors.append(f"publish: {exc}")
        if "sender" in self.roles:
            try:
                inbound = self.read_inbound(now)
                if inbound is not None and inbound.applied:
                    parts.append(f"inbound {len(inbound.applied)} message(s)")
            except NewsletterError as exc:
                errors.append(f"inbound: {exc}")
        if "sender" in self.roles and not self.stopping.is_set():
            try:
                digest = self.send_digest(now)
                if digest.created or digest.sent or digest.failed or digest.error or digest.paused:
                    parts.append("digest " + describe_digest(digest))
            except NewsletterError as exc:
                errors.append(f"digest: {exc}")
        pruned = None
        if not self.stopping.is_set():
            try:
                pruned = self.prune(now)
                if pruned.deliveries or pruned.sightings:
                    parts.append(
                        f"pruned {pruned.deliveries} old delivery(ies), {pruned.sightings} old sighting(s) of "
                        f"{pruned.stories} story(ies)"
                    )
            except NewsletterError as exc:
                errors.append(f"prune: {exc}")
        for error in errors:
            log.error("%s", error)
        outcome = "failed" if errors else "ok"
        log.info("pass %s: %s (%.2f s)", outcome, "; ".join(parts) or "nothing due", time.monotonic() - started)
        self._record_pass(now + timedelta(seconds=time.monotonic() - started), ok=not errors)
        return PassReport(
            sources=sources, published=published, digest=digest, inbound=inbound, pruned=pruned, errors=tuple(errors)
        )

    def _record_pass(self, ended: datetime, *, ok: bool) -> None:
        """Keep when the last pass ended, for /healthz on every replica; a database that fails here was already
        reported by the pass."""
        try:
            self.store.set_meta(LAST_PASS, json.dumps({"at": ended.isoformat(), "ok": ok}))
        except NewsletterError as exc:
            log.debug("last pass not recorded: %s", exc)

    def weekly_digest(self, now: datetime) -> DigestReport:
        """The weekly digest job: :meth:`send_digest`, logged as one line with its outcome and duration."""
        return self._timed("digest", self.send_digest, now, describe_digest)

    def _timed(self, name: str, step: Callable[[datetime], T], now: datetime, describe: Callable[[T], str]) -> T:
        """Run a step and log one line with its outcome and duration (errors too, then re-raised)."""
        started = time.monotonic()
        try:
            result = step(now)
        except Exception as exc:
            log.error("%s: failed after %.2f s: %s", name, time.monotonic() - started, exc)
            raise
        log.info("%s: %s (%.2f s)", name, describe(result), time.monotonic() - started)
        return result

    # ---- the long-running form -------------------------------------------------------------------------------------

    def serve_forever(self, *, tick_seconds: float = 60.0) -> bool:
        """Run until SIGTERM or SIGINT: the web app in a thread (role ``web``), the scheduler's jobs (roles ``ingest``
        and ``sender``); then stop cleanly.

        Returns False when the service stopped on its own because a part of it failed (the web server could not
        start, say): a supervisor should restart it, and the exit code says so."""
        healthy = True
        from newsletter.service.scheduler import Scheduler  # APScheduler's home

        web = "web" in self.roles
        if self.store.dialect == "sqlite" and "sender" in self.roles:
            self.store.expire_leases(self.clock())  # we hold the instance lock: a dead process's claims end now
        server = _web_server(self.settings, self.store, self.metrics, self.publisher) if web else None
        web_thread = threading.Thread(target=server.run, name="web", daemon=True) if server else None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        scheduler = Scheduler(self, tick_seconds=tick_seconds) if self.roles - {"web"} else None
        try:
            if web_thread is not None:
                web_thread.start()
            if scheduler is not None:
                scheduler.start()
            while not self.stopping.wait(1.0):
                if web_thread is not None and not web_thread.is_alive():
                    log.error("web: the web server stopped (see above); stopping the service")
                    healthy = False
                    self.stopping.set()
        finally:
            log.info("stopping: no new work; finishing the step in flight")
            if scheduler is not None:
                scheduler.shutdown()
            if server is not None and web_thread is not None:
                server.should_exit = True
                web_thread.join(timeout=30)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("stopped")
        return healthy

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stopping.set()


def _web_server(settings: Settings, store: Store, metrics: Metrics, publisher: Publisher) -> QuietServer:
    from newsletter.web.app import QuietServer, server_config  # the service owns SIGTERM and SIGINT

    return QuietServer(server_config(settings, store, metrics, publisher))


def describe_ingest(reports: tuple[SourceReport, ...]) -> str:
    s = summarize(reports)
    return (
        f"{s['sources']} source(s), {s['new']} new sighting(s), {s['new_stories']} new story(ies), "
        f"{s['unchanged']} unchanged, {s['errors']} error(s)"
    )


def describe_publish(report: PublishReport) -> str:
    if report.up_to_date:
        return "up to date"
    return f"{report.entries} entries, {len(report.written)} file(s) written"


def describe_digest(report: DigestReport) -> str:
    stories = counted(report.stories, "story", "stories")
    text = f"{report.period} {report.status}, {stories}, {report.sent} sent, {report.failed} failed"
    text += f" ({report.note})" if report.note else ""
    if report.paused and report.paused not in (report.note or ""):  # an older digest's run stopped
        text += f"; stopped: {report.paused}"
    return text

"""The Starlette application: the web modules' routes joined, the 404 page, and :func:`serve`. No routes of its own.

Holds no state of its own beyond the settings and the store it is given (also on ``app.state`` for extra routes).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Sequence
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ingest.core.config import Settings
from ingest.store import Store
from ingest.topics import taxonomy_of
from newsletter.metrics import Metrics
from newsletter.publish import Publisher
from newsletter.web.digests import routes as digest_routes
from newsletter.web.feeds import FeedFiles, feed_routes
from newsletter.web.hooks import routes as hook_routes
from newsletter.web.ops import routes as ops_routes
from newsletter.web.pages import not_found_page, page_routes
from newsletter.web.subscribe import routes as subscribe_routes

__all__ = ["create_app", "serve", "server_config", "site"]


def create_app(
    settings: Settings, store: Store, extra_routes: Sequence[BaseRoute] = (), publisher: Publisher | None = None
) -> Starlette:
    """The web app. ``extra_routes`` (the subscribe pages, say) are added after ours; they find the settings and
    the store on ``request.app.state`` and can answer with :func:`newsletter.web.pages.page`. ``publisher``: the
    running service's, which the feeds keep current before answering (else one of its own)."""
    routes: list[BaseRoute] = [
        *feed_routes(
            settings,
            store,
            FeedFiles(settings.publish.dir),
            publisher or Publisher(store, settings, topics=taxonomy_of(settings.topics).names),
        ),
        *page_routes(settings, store),
        *extra_routes,
    ]
    # No GZipMiddleware: it compresses whenever "gzip" appears in Accept-Encoding (even "gzip;q=0") and keeps the
    # identity ETag on the gzip body. Feeds and pages compress themselves (newsletter.web.feeds.accepts_gzip).
    app = Starlette(routes=routes, exception_handlers={404: not_found_page})
    app.state.settings = settings
    app.state.store = store
    return app


def site(
    settings: Settings, store: Store, metrics: Metrics | None = None, publisher: Publisher | None = None
) -> Starlette:
    """The whole site: feeds, pages, the subscribe, confirm, unsubscribe and digest archive pages, the relays'
    webhooks (off until configured), and the operators' /healthz and /metrics (``metrics``: the running service's,
    whose timings it shows; else a registry of its own)."""
    extra = [
        *subscribe_routes(settings, store),
        *digest_routes(settings, store),
        *hook_routes(settings, store),
        *ops_routes(settings, store, metrics or Metrics(store)),
    ]
    return create_app(settings, store, extra_routes=extra, publisher=publisher)


def server_config(
    settings: Settings, store: Store, metrics: Metrics | None = None, publisher: Publisher | None = None
) -> uvicorn.Config:
    """uvicorn's settings for the site on ``[web] host`` and ``port`` (access log only at DEBUG)."""
    return uvicorn.Config(
        site(settings, store, metrics, publisher),
        host=settings.web.host,
        port=settings.web.port,
        log_level=settings.log.level.lower(),
        server_header=False,
        # Only a proxy we were told to trust may say who the client is (X-Forwarded-For): the subscribe form's
        # limits count per client address.
        proxy_headers=bool(settings.web.trusted_proxies),
        forwarded_allow_ips=list(settings.web.trusted_proxies) or None,
        access_log=settings.log.level == "DEBUG",
    )


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: it re-raises SIGTERM and SIGINT after shutting down, so the process
    would end killed by the signal (exit code -15) instead of exiting 0. The caller owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(settings: Settings, store: Store) -> None:
    """Run the site until SIGTERM or SIGINT, then shut it down and return (the command exits 0)."""
    server = QuietServer(server_config(settings, store))

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

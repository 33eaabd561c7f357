"""Routes for operators and their machines: ``GET /healthz`` (is this replica able to serve, and is the work
moving?) and ``GET /metrics`` (Prometheus text format). Neither shows an address, a token or a path.

The last pass is read from the database (``newsletter run`` writes it at the end of each pass), so every replica,
web-only ones included, reports the same.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest.core.config import Settings
from ingest.core.errors import StoreError
from ingest.store import Store
from newsletter.metrics import CONTENT_TYPE, Metrics

__all__ = ["LAST_PASS", "health", "routes"]

log = logging.getLogger(__name__)

#: The meta key under which ``newsletter run`` keeps its last pass: {"at": ISO 8601, "ok": bool}.
LAST_PASS = "last_pass"  # noqa: S105 - a meta key naming an ingest pass, not a password
_NO_CACHE = {"Cache-Control": "no-store"}


def health(store: Store, settings: Settings, now: datetime) -> tuple[bool, dict[str, Any]]:
    """(healthy, what to show): the database answers, and the last pass is not older than the configured limit."""
    try:
        store.ping()
        raw = store.meta_value(LAST_PASS)
    except StoreError as exc:
        log.warning("health check: %s", exc)  # the details (the database's address) for the operator's log only
        return False, {"status": "unavailable", "database": "unreachable"}
    last: dict[str, Any] | None = None
    if raw is not None:
        try:
            recorded = json.loads(raw)
            at = datetime.fromisoformat(recorded["at"])
            last = {"at": at.isoformat(), "ok": bool(recorded["ok"]), "age_seconds": int((now - at).total_seconds())}
        except (ValueError, KeyError, TypeError):
            last = None
    limit = settings.web.health_max_pass_age * 60
    stale = bool(limit and last is not None and last["age_seconds"] > limit)
    body = {"status": "stale" if stale else "ok", "database": "ok", "last_pass": last}
    return not stale, body


def routes(settings: Settings, store: Store, metrics: Metrics) -> list[Route]:
    def healthz(request: Request) -> Response:
        healthy, body = health(store, settings, datetime.now(UTC))
        return JSONResponse(body, status_code=200 if healthy else 503, headers=_NO_CACHE)

    def metrics_page(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE, headers=_NO_CACHE)

    async def healthz_async(request: Request) -> Response:
        return cast(Response, await run_in_threadpool(healthz, request))

    async def metrics_async(request: Request) -> Response:
        return cast(Response, await run_in_threadpool(metrics_page, request))

    found = [Route("/healthz", healthz_async, methods=["GET", "HEAD"])]
    if settings.web.metrics:
        found.append(Route("/metrics", metrics_async, methods=["GET"]))
    return found

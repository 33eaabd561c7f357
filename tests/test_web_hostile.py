"""Every public URL of the site, walked with hostile path and query values: the answer is never a 5xx.

The routes are read from the app itself (``newsletter.web.app.site``), so a route added later is walked too. Requests
go through a real uvicorn with :mod:`http.client`, which sends the path exactly as written (httpx would normalise
``..`` and re-encode escapes).
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from starlette.routing import BaseRoute, Route

from ingest.store import Store
from newsletter.digest import job
from newsletter.web.app import site
from tests.maildata import W48_DUE, W48_START, confirmed, make_settings, page_story
from tests.mailsite import serve_app

#: Path segments, already percent-encoded as they go on the wire.
HOSTILE_SEGMENTS = (
    "9223372036854775808",  # 2**63: past SQLite's INTEGER
    "9223372036854775807",
    "2147483648",  # 2**31: past PostgreSQL's INTEGER
    "2147483647",
    "18446744073709551616",
    "9" * 60,
    "-1",
    "0",
    "000000000000000000001",
    "%00",
    "a%00b",
    "%ff%fe",
    "%c0%af",  # overlong UTF-8 for "/"
    "%C3%28",  # invalid UTF-8
    "%e2%82",  # truncated UTF-8
    "..",
    "%2e%2e",
    "..%2f..%2fetc%2fpasswd",
    "%C3%A9t%C3%A9",  # été
    "%F0%9F%98%80",  # an emoji
    "%E2%80%AE",  # right-to-left override
    "x" * 5000,
    "99999999999999999.abcdefghijklmnopqrstuvwxyz",  # token shapes with huge ids
    "9223372036854775808.abcdefghijklmnopqrstuvwxyz",
    "2147483648.abcdefghijklmnopqrstuvwxyz",
    "2147483648.1a2b3c.abcdefghijklmnopqrstuvwxyz",
    "99999999999999999.1a2b3c.abcdefghijklmnopqrstuvwxyz",
    "2026-W99",
    "0000-W00",
    "%00-W%00",
)
#: Query strings, as sent.
HOSTILE_QUERIES = (
    *(f"q={v}" for v in HOSTILE_SEGMENTS),
    "q=%00%00%00",
    "q=" + "%25" * 300,
    "q=%5C%27%22%3B--",
    "page=-1&limit=9223372036854775808",
    "%00=%00",
    "q&q&q=1",
)
#: Form bodies for the POST routes.
HOSTILE_FORMS = (
    "email=%00",
    "email=a%00b%40example.org",
    "email=%ff%fe%40example.org",
    "email=" + "a" * 3000 + "%40example.org",
    "email=..%40..",
    "List-Unsubscribe=One-Click",
    "email=x%40example.org&email=y%40example.org",
)
_PARAM = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-zA-Z_][a-zA-Z0-9_]*)?\}")


def _requests(routes: list[BaseRoute]) -> Iterator[tuple[str, str, str | None]]:
    """(method, raw path with query, form body or None) for every route, method and hostile value."""
    for route in routes:
        assert isinstance(route, Route), f"{route!r}: a route of a kind this test does not walk yet"
        plain = _PARAM.sub("1", route.path)
        paths = [plain]
        if _PARAM.search(route.path):
            paths += [_PARAM.sub(value, route.path) for value in HOSTILE_SEGMENTS]
        for method in sorted(route.methods or {"GET"}):
            forms: tuple[str | None, ...] = HOSTILE_FORMS if method == "POST" else (None,)
            for form in forms:
                for path in paths:
                    yield method, path, form
            for query in HOSTILE_QUERIES:
                yield method, f"{plain}?{query}", forms[0]


@pytest.fixture
def site_url(tmp_path: Path, db_url: str) -> Iterator[tuple[str, list[BaseRoute]]]:
    store = Store.open(db_url)
    # No subscribe limits: every hostile form must reach the address check and the store, not stop at the limit.
    # The relays' hooks on: every hostile body must meet their checks, not a 404.
    hooks = {"ses": True, "postmark_username": "postmark", "sendgrid_public_key": "AAAA"}
    settings = make_settings(tmp_path, subscribe={"per_client_per_hour": 0, "mails_per_hour": 0}, hooks=hooks)
    settings = settings.model_copy(update={"postmark_hook_password": SecretStr("s3cret")})
    page_story(store, "A story of the week", first_seen=W48_START + timedelta(days=1), tags=["lung cancer"])
    confirmed(store, "reader@example.org")
    job.send_due_digest(store, settings, W48_DUE)
    app = site(settings, store)
    try:
        with serve_app(app) as url:
            yield url, list(app.routes)
    finally:
        store.close()


def test_every_route_answers_hostile_values_without_a_server_error(site_url: tuple[str, list[BaseRoute]]) -> None:
    url, routes = site_url
    assert {r.path for r in routes if isinstance(r, Route)} >= {"/", "/stories/{story_id:int}", "/subscribe"}
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
    failures: list[str] = []
    asked = 0
    for method, path, body in _requests(routes):
        status = _ask(conn, method, path, body)
        if status is None:  # the server may close a connection after a 4xx: a fresh one must get an answer
            conn.close()
            status = _ask(conn, method, path, body)
        asked += 1
        if status is None or status >= 500:
            failures.append(f"{method} {path[:120]} {body or ''}: {status or 'no answer'}")
    conn.close()
    assert asked > 1000
    assert not failures, f"{len(failures)} answer(s) of {asked} were server errors:\n" + "\n".join(failures)


def _ask(conn: http.client.HTTPConnection, method: str, path: str, body: str | None) -> int | None:
    """The status of one request, or None when the connection was closed instead of an answer."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
    except (http.client.RemoteDisconnected, ConnectionError):
        return None
    if response.getheader("connection", "").lower() == "close":
        conn.close()
    return response.status

"""A live site for the subscriber pages: a store with a sent digest, and the app on a real uvicorn on 127.0.0.1.

Used by the HTTP tests and the browser tests. The clock of the routes is :class:`Clock`, settable by a test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from ingest.core.config import Settings
from ingest.store import Store
from newsletter.digest import job
from newsletter.subscribers.tokens import Tokens
from newsletter.web import create_app
from newsletter.web.digests import routes as digest_routes
from newsletter.web.subscribe import routes
from tests.maildata import SECRET, W48_DUE, W48_START, confirmed, make_settings, page_story


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    url: str
    store: Store
    settings: Settings
    clock: Clock
    extra: dict[str, object] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, follow_redirects=False)

    def outbox(self) -> list[EmailMessage]:
        out = []
        folder = self.settings.mail.outbox_dir
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            msg = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    def status(self, email: str) -> str | None:
        found = self.store.subscriber_by_email(email)
        return found.status if found else None

    def unsubscribe_token(self, email: str) -> str:
        found = self.store.subscriber_by_email(email)
        assert found is not None
        return Tokens(SECRET).unsubscribe(found.id, found.email)


@contextmanager
def serve(settings: Settings, store: Store, clock: Clock) -> Iterator[str]:
    """The site with the subscriber pages on ``clock``, on a real uvicorn; yields its base URL."""
    app = create_app(
        settings, store, extra_routes=[*routes(settings, store, clock=clock), *digest_routes(settings, store)]
    )
    with serve_app(app) as url:
        yield url


@contextmanager
def serve_app(app: ASGIApp | uvicorn.Config) -> Iterator[str]:
    """Any ASGI app (or a whole uvicorn config: its host and port are ignored) on a real uvicorn on 127.0.0.1, on a
    free port; yields its base URL."""
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it each
    # answer (headers, then body) waits ~40 ms on the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before the thread starts: clients queue, nobody waits or sleeps
    port = sock.getsockname()[1]
    config = app if isinstance(app, uvicorn.Config) else uvicorn.Config(app, log_level="warning", ws="none")
    config.lifespan = "off"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def live_site(tmp_path: Path, db_url: str, settings: Settings | None = None) -> Iterator[Site]:
    """Two stories, two confirmed readers and the digest of 2026-W48 sent (its copies removed from the outbox)."""
    store = Store.open(db_url)
    settings = settings or make_settings(tmp_path)
    page_story(store, "A <b>bold</b> story of the week", first_seen=W48_START + timedelta(days=1))
    page_story(store, "Recap: an old one", first_seen=W48_START + timedelta(days=2), tags=["recap"], page="/s/r.txt")
    confirmed(store, "reader@example.org", "other@example.org")
    job.send_due_digest(store, settings, W48_DUE)
    for path in settings.mail.outbox_dir.glob("*.eml"):
        path.unlink()  # the digest's copies: tests look at what the web sends
    clock = Clock(W48_DUE + timedelta(hours=2))
    try:
        with serve(settings, store, clock) as url:
            yield Site(url, store, settings, clock)
    finally:
        store.close()


def confirm_url(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return next(line.strip() for line in body.get_content().splitlines() if "/confirm/" in line)

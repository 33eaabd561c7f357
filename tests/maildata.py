"""Test data for the digest: settings, stories from seed pages and feeds at chosen times, subscribers.

Times follow tests.conftest.NOW (Fri 2026-11-27 10:00 UTC, in ISO week 2026-W48, whose digest is due Mon Nov 30
08:00 UTC with the default ``send_at``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from ingest.core.config import (
    DigestConfig,
    FetchConfig,
    HooksConfig,
    MailConfig,
    PublishConfig,
    Settings,
    SubscribeConfig,
    WebConfig,
)
from ingest.core.models import FeedState, ParsedItem
from ingest.store import Store
from newsletter.subscribers import manage as subscribers

SECRET = "test-secret-key-0123456789abcdef"
BASE_URL = "https://news.example.org/"
#: Monday of 2026-W48, and the digest's due time.
W48_START = datetime(2026, 11, 23, tzinfo=UTC)
W48_DUE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def make_settings(
    tmp_path: Path,
    *,
    mail: dict[str, Any] | None = None,
    digest: dict[str, Any] | None = None,
    subscribe: dict[str, Any] | None = None,
    web: dict[str, Any] | None = None,
    hooks: dict[str, Any] | None = None,
    fetch: dict[str, Any] | None = None,
) -> Settings:
    return Settings(
        publish=PublishConfig(dir=tmp_path / "public", base_url=BASE_URL, title="Oncology news"),
        digest=DigestConfig(**(digest or {})),
        subscribe=SubscribeConfig(**(subscribe or {})),
        web=WebConfig(**(web or {})),
        hooks=HooksConfig(**(hooks or {})),
        fetch=FetchConfig(**(fetch or {})),
        mail=MailConfig(
            outbox_dir=tmp_path / "outbox", from_address="Oncology digest <digest@news.example.org>", **(mail or {})
        ),
        secret_key=SecretStr(SECRET),
    )


def _key(title: str) -> str:
    return hashlib.sha256(title.encode()).hexdigest()[:16]


def page_story(
    store: Store,
    title: str,
    *,
    first_seen: datetime,
    published: datetime | None = None,
    tags: Sequence[str] = (),
    page: str = "/srv/seeds/page.txt",
    summary: str = "",
    link: str | None = None,
) -> int:
    """One story seen on a seed page at ``first_seen``; returns its id."""
    src = store.page_source(page, str(Path(page).parent), first_seen)
    item = ParsedItem(
        kind="teaser",
        key=_key(title),
        position=1,
        title=title,
        published=published,
        summary=summary or f"What {title} is about.",
        link=link,
        tags=tuple(tags),
    )
    store.save_page(src.id, [item], content_hash=_key(title + page), warning=None, now=first_seen)
    return _story_id(store, title)


def feed_stories(
    store: Store,
    url: str,
    entries: Sequence[tuple[str, datetime | None]],
    *,
    fetched: datetime,
    name: str | None = None,
    tags: Sequence[str] = (),
    summary: str = "What {title} is about.",
) -> list[int]:
    """One fetch of a feed at ``fetched`` bringing ``entries`` (title, published); returns their story ids.
    ``summary`` is each entry's summary, ``{title}`` filled in."""
    source, _ = store.upsert_feed(url, name=name, tags=tags, interval=None, origin="cli", now=fetched)
    items = [
        ParsedItem(
            kind="entry",
            key=_key(url + title),
            position=i,
            title=title,
            published=published,
            summary=summary.format(title=title),
            link=f"https://feeds.example.org/{_key(title)}",
            tags=tuple(tags),
        )
        for i, (title, published) in enumerate(entries, start=1)
    ]
    state = FeedState(status="active", last_status=200, error_count=0, next_check_at=None, success=True)
    store.save_feed(source.id, items, state, fetched)
    return [_story_id(store, title) for title, _ in entries]


def _story_id(store: Store, title: str) -> int:
    matches = [s.id for s in store.stories() if s.title == title]
    assert len(matches) == 1, (title, matches)
    return matches[0]


def confirmed(store: Store, *addresses: str, now: datetime = W48_START) -> None:
    for address in addresses:
        subscribers.add(store, address, now)

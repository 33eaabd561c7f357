"""Sources as readers know them: a source's name, and the distinct sources of one story. Pure.

A reader knows a site, not our rows: every page saved from one site (a seed folder) is one source, and two rows that
go by one name (two feeds of one site, a feed and the site's saved pages) are one source too. Nothing here may show a
path on the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import PurePath
from urllib.parse import urlsplit

from ingest.core.models import ReaderSource, SourceKind

__all__ = ["reader_sources", "source_name", "web_url"]


def source_name(kind: SourceKind, name: str | None, location: str, url: str | None, folder: str | None) -> str:
    """How a source is named to readers: its name (a feed's configured name, else the feed's own title; a seed
    folder's ``[[seeds.folders]] name``); else a feed's or a live page's host; else a saved page's folder name (its
    file name when it has none)."""
    if name and name.strip():
        return name.strip()
    if kind == "feed" or url:  # a feed, or a live page (a page with an address): its host
        try:
            host = urlsplit(url or location).hostname
        except ValueError:
            host = None
        return host or url or location
    return PurePath(folder).name if folder else PurePath(location).name


def web_url(value: str | None) -> str | None:
    """``value`` when it is an http(s) URL a reader's browser may follow, else None (a path, ``javascript:``...)."""
    return value if value and value.lower().startswith(("http://", "https://")) else None


def reader_sources(
    sightings: Iterable[tuple[str, str | None, str | None, datetime, str | None]],
) -> list[ReaderSource]:
    """The distinct sources of one story, first seen first, from its sightings as (source name, site URL, link,
    first seen, author) in first-seen order. Names are compared without case; each source keeps the first site
    URL, link and author any of its sightings gives."""
    found: dict[str, ReaderSource] = {}
    for name, site, link, first_seen, author in sightings:
        key = name.casefold()
        known = found.get(key)
        if known is None:
            found[key] = ReaderSource(name, web_url(site), web_url(link), first_seen, author or None)
        elif not (known.url and known.link and known.author):
            found[key] = ReaderSource(
                known.name,
                known.url or web_url(site),
                known.link or web_url(link),
                known.first_seen,
                known.author or author or None,
            )
    return list(found.values())

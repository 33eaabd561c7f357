"""One ingest pass, for the CLI and the service alike: every seed page, then every due feed, into the store.

A source that fails is recorded as failed and the pass goes on. The clock is passed in. The feeds' module (httpx,
feedparser) is imported only when a pass reaches the feeds, so commands that never fetch stay light.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ingest.core.config import SeedsConfig, SeedSite, Settings
from ingest.core.errors import PageError
from ingest.core.models import SourceReport
from ingest.seeds import content_hash, parse_page
from ingest.store import Store
from ingest.topics import Taxonomy, tag_items, taxonomy_of

SEED_SUFFIXES = (".txt",)


def ingest_pass(
    store: Store,
    settings: Settings,
    now: datetime,
    *,
    force: bool = False,
    on_progress: Callable[[SourceReport, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[SourceReport]:
    """Read every seed folder, then fetch the due feeds (every live feed with ``force``) unless ``stop()`` says so.

    ``stop`` is asked once, between the seeds and the feeds: a feed pass that has begun runs to its end.
    ``on_progress(report, total)`` follows the feeds one by one (the CLI's progress bar).
    """
    reports = ingest_seeds(store, settings.seeds, now, taxonomy=taxonomy_of(settings.topics))
    if stop is not None and stop():
        return reports
    sync_config_feeds(store, settings, now)
    if not store.count_due_feeds(now, force=force):  # the usual cron run: start no fetcher, import no parser
        return reports
    from ingest.feeds import ingest_feeds  # imports httpx and feedparser: only when fetching

    return reports + ingest_feeds(store, settings, now, force=force, on_progress=on_progress)


def sync_config_feeds(store: Store, settings: Settings, now: datetime) -> None:
    """The config's ``[[feeds]]`` and ``[[pages]]`` mirrored into the store's sources."""
    store.sync_config_feeds([(f.url, f.name, f.tags, f.interval) for f in settings.feeds], now)
    store.sync_config_feeds([(p.url, p.name, p.tags, p.interval) for p in settings.pages], now, kind="page")


def seed_files(folder: Path, *, follow_symlinks: bool = False) -> tuple[list[Path], list[Path]]:
    """Text pages in a seed folder and its subfolders, in a stable order, and the symbolic links left unread.

    Hidden files and folders are skipped. Only regular files are read: a symbolic link (to a page, to a folder, or
    to nothing) is not followed unless ``follow_symlinks``, and is listed second so that the pass can say so. When
    links are followed, a folder reached twice (through a link back up the tree) is walked once."""
    pages: list[Path] = []
    links: list[Path] = []
    walked = {folder.resolve()}
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:  # a subfolder we may not list: as rglob did, it holds no pages
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            link = entry.is_symlink()
            if link and not follow_symlinks:
                if entry.is_dir() or path.suffix.lower() in SEED_SUFFIXES:
                    links.append(path)
                continue
            if entry.is_dir():
                if _first_visit(path, walked):
                    pending.append(path)
            elif path.suffix.lower() in SEED_SUFFIXES and (entry.is_file() or link):
                pages.append(path)  # a followed link that leads nowhere is read, and its error reported
    return sorted(pages), sorted(links)


def _first_visit(path: Path, walked: set[Path]) -> bool:
    real = path.resolve()
    if real in walked:
        return False
    walked.add(real)
    return True


def ingest_seeds(store: Store, seeds: SeedsConfig, now: datetime, *, taxonomy: Taxonomy) -> list[SourceReport]:
    """Read every seed folder. Processes sharing a database take turns: one reads the folders, the others skip."""
    with store.exclusive("ingest-seeds") as mine:
        return _ingest_seed_folders(store, seeds, now, taxonomy) if mine else []


def _ingest_seed_folders(store: Store, seeds: SeedsConfig, now: datetime, taxonomy: Taxonomy) -> list[SourceReport]:
    reports: list[SourceReport] = []
    tz = ZoneInfo(seeds.timezone)
    for site in seeds.sites():
        folder = site.path
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            reports.append(SourceReport(location=str(folder), error=f"{folder}: seed folder {what} ({site.key})"))
            continue
        pages, links = seed_files(folder, follow_symlinks=seeds.follow_symlinks)
        for path in pages:
            reports.append(_ingest_page(store, path, site, seeds=seeds, tz=tz, now=now, taxonomy=taxonomy))
        reports.extend(
            SourceReport(
                location=str(link),
                warning=f"{link}: a symbolic link, not read ([seeds] follow_symlinks is off)",
                skipped=True,
            )
            for link in links
        )
    return reports


def _ingest_page(
    store: Store, path: Path, site: SeedSite, *, seeds: SeedsConfig, tz: ZoneInfo, now: datetime, taxonomy: Taxonomy
) -> SourceReport:
    location = str(path)
    source = store.page_source(location, str(site.path), now, name=site.name, site_url=site.url)
    try:
        data = _read(path, seeds.max_bytes, follow_symlinks=seeds.follow_symlinks)
        digest = content_hash(data)
        if digest == source.content_hash and source.status == "active":
            return SourceReport(location=location, unchanged=True, warning=source.warning)
        page = parse_page(
            data,
            name=location,
            boilerplate=seeds.boilerplate,
            tz=tz,
            max_bytes=seeds.max_bytes,
            title_max_chars=seeds.title_max_chars,
        )
    except PageError as exc:
        store.record_source_error(source.id, str(exc), now)
        return SourceReport(location=location, error=str(exc))
    warning = "; ".join(page.warnings) or None
    items = tag_items(page.items, taxonomy)
    result = store.save_page(source.id, items, content_hash=digest, warning=warning, now=now)
    return SourceReport(
        location=location, new=result.new, seen=result.seen, new_stories=result.new_stories, warning=warning
    )


def _read(path: Path, max_bytes: int, *, follow_symlinks: bool) -> bytes:
    # O_NOFOLLOW: a page swapped for a link after the folder was listed is still not followed. O_NONBLOCK: a FIFO
    # swapped in is refused below instead of blocking the open.
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise PageError(f"{path}: cannot read the file (permission denied)") from None
    except OSError as exc:
        raise PageError(f"{path}: cannot read the file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PageError(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise PageError(
                f"{path}: file is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit ([seeds] max_bytes)"
            )
        try:
            return fh.read(max_bytes + 1)
        except OSError as exc:
            raise PageError(f"{path}: cannot read the file: {exc.strerror}") from None


def summarize(reports: Sequence[SourceReport]) -> dict[str, int]:
    read = [r for r in reports if not r.skipped]
    return {
        "sources": len(read),
        "new": sum(r.new for r in reports),
        "new_stories": sum(r.new_stories for r in reports),
        "errors": sum(1 for r in reports if r.error),
        "unchanged": sum(1 for r in reports if r.unchanged),
    }

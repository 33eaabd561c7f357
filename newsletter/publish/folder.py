"""The published folder: ``[publish] dir`` brought up to date incrementally, with atomic writes. Renders no XML itself.

The folder::

    feed.atom  feed.rss  feed.json   the newest stories first, at most [publish] max_entries
    tags/SLUG.atom                   one per tag (see :func:`tag_slug`)
    topics/SLUG.atom                 one per topic of the taxonomy (handed in by the caller: names by slug)
    archive/N.atom                   RFC 5005 archive documents, N = 1 the oldest
    .publish-state.json              what the last publish saw, so the next one skips what did not change

Archive scheme: story rows, merged-away ones included, are cut in id (creation) order into pages of ``max_entries``;
page N holds rows ``(N-1)*size+1 .. N*size``. Only full pages are published, so the set of entries of a published
page never changes (a story merged away later leaves its page, which is then rewritten); it is rewritten only when
one of its stories is updated, or once to gain its ``next-archive`` link when the next page fills. The main feed
links ``prev-archive`` to the newest full page, and always carries the stories not in a full page yet (fewer than a
page; the newest by date fill the rest of the cap), so the main feed and the archives together hold every story: a
reader walking ``prev-archive`` back to the last page it has seen misses nothing, even a 2022 story found today.

A story the operator hid keeps its place in that scheme but is no entry: each Atom document that would hold it (the
main feed while it is among the newest, its archive page for good, a tag feed) carries an RFC 6721
``at:deleted-entry`` for it instead. RSS and JSON Feed have no such thing: the item just goes. A tag feed left with
tombstones only is removed, like one whose stories were merged away. A topic feed is kept whatever it holds (even
nothing): the topics are a fixed list the site links to, so its address never turns into a 404.

What is rebuilt: nothing when the store's fingerprint (publish generation, newest id, newest ``updated``) is the one
saved.
Otherwise the main feed, plus the archive pages and tag feeds holding a story updated since the last publish (with
a margin), new pages, and missing files. Each candidate is first reduced to its stories' (id, updated) list; when
that matches what the state file remembers, the document is not rendered at all. ``updated`` moves whenever a
story's content changes (the store's contract), so a story merged away must get a new ``updated`` too.

Replicas: every process serving the feeds keeps its own folder at the database's publish generation (a counter
bumped in each transaction that changes a story): :class:`Publisher` reads it before answering and republishes when
it moved, so a story another process ingested is served at once, as the same bytes (the same ETag) everywhere.

Files are written through a temp file in the same folder, fsync, :func:`os.replace` and an fsync of the folder; a
file whose bytes did not change is left alone, so its mtime (Last-Modified) and ETag stay put. The state file is a
cache: it is replaced atomically but not fsynced (an old one only makes the next publish do more). The module reads
no clock: ``now`` only dates a document that has no entries.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ingest.core.config import PublishConfig, Settings
from ingest.core.errors import OutputError
from ingest.core.links import feed_url
from ingest.core.models import Byline, StoreState, Story, StoryVersion
from ingest.store import Store
from newsletter.publish.documents import GENERATOR, FeedPage, atom_feed, json_feed, rss_feed

__all__ = [
    "STATE_FILE",
    "PublishReport",
    "Publisher",
    "archive_name",
    "document",
    "publish",
    "published_tags",
    "tag_name",
    "tag_slug",
    "topic_name",
]

log = logging.getLogger("newsletter.publish")  # the name log lines have always carried

STATE_FILE = ".publish-state.json"
#: Bump when the layout of the documents changes: every file is then rebuilt once. 2: entries credit their source.
FORMAT = 2
#: Stories updated this long before the last publish's newest ``updated`` are looked at again: an ingest that read
#: its clock before ours but committed after we looked must still reach its archive page.
UPDATE_MARGIN = timedelta(minutes=10)
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")
_MAX_SLUG = 60


@dataclass(frozen=True, slots=True)
class PublishReport:
    written: tuple[str, ...] = ()  # files whose bytes changed, relative to [publish] dir
    unchanged: int = 0  # files rebuilt to the same bytes, left alone
    removed: tuple[str, ...] = ()  # tag feeds of tags no story carries any more, stale archive pages
    entries: int = 0  # entries in feed.atom
    archive_pages: int = 0
    tags: int = 0
    topics: int = 0
    skipped: tuple[str, ...] = ()  # uids of stories that could not be rendered (logged; the rest was published)
    up_to_date: bool = False  # nothing changed since the last publish: nothing was rebuilt
    stale_pages: tuple[int, ...] = field(default=())  # archive pages rendered this time (written or not)


# ---- names ----------------------------------------------------------------------------------------------------


def tag_slug(tag: str) -> str:
    """A tag as a file and URL name: itself when already ``[a-z0-9-]``; else a readable part and a short hash.

    The hash makes the mapping one-to-one whatever tags exist ("breast cancer" and "breast-cancer" never share a
    file), and a tag's name never depends on which other tags exist, so its feed URL is stable.
    """
    tag = tag.lower()
    readable = _SLUG_CHARS.sub("-", tag).strip("-")[:_MAX_SLUG].strip("-")
    if readable == tag:
        return tag
    digest = hashlib.sha256(tag.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def tag_name(tag: str) -> str:
    return f"tags/{tag_slug(tag)}.atom"


def topic_name(slug: str) -> str:
    return f"topics/{slug}.atom"


def archive_name(page: int) -> str:
    return f"archive/{page}.atom"


# ---- the state file -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Saved:
    config: str
    state: StoreState
    bounds: tuple[int, ...]
    anchor: str | None  # uid of the row closing the last page: a different database at the same path is noticed
    tags: tuple[str, ...]
    topics: dict[str, str]  # slug -> name, as handed in
    prints: dict[str, str]  # document key -> fingerprint of what it was built from


def _config_key(cfg: PublishConfig) -> str:
    seen = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "dir"}
    blob = json.dumps([FORMAT, GENERATOR, seen], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load(out: Path) -> _Saved | None:
    try:
        raw = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
        st = raw["state"]
        return _Saved(
            config=str(raw["config"]),
            state=StoreState(
                generation=int(st["generation"]),
                max_id=int(st["max_id"]),
                max_updated=datetime.fromisoformat(st["max_updated"]) if st["max_updated"] else None,
            ),
            bounds=tuple(int(b) for b in raw["bounds"]),
            anchor=raw.get("anchor"),
            tags=tuple(str(t) for t in raw["tags"]),
            topics={str(k): str(v) for k, v in raw["topics"].items()},
            prints={str(k): str(v) for k, v in raw["prints"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing or damaged: rebuild everything
        return None


def _dump(saved: _Saved) -> bytes:
    st = saved.state
    raw: dict[str, Any] = {
        "config": saved.config,
        "state": {
            "generation": st.generation,
            "max_id": st.max_id,
            "max_updated": st.max_updated.isoformat() if st.max_updated else None,
        },
        "bounds": list(saved.bounds),
        "anchor": saved.anchor,
        "tags": list(saved.tags),
        "topics": saved.topics,
        "prints": dict(sorted(saved.prints.items())),
    }
    return (json.dumps(raw, separators=(",", ":")) + "\n").encode()


def _fingerprint(*parts: object, versions: Sequence[StoryVersion]) -> str:
    blob = json.dumps([list(map(str, parts)), [(v.id, v.updated.isoformat()) for v in versions]])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ---- atomic writes --------------------------------------------------------------------------------------------


class _Writer:
    """Writes files under ``out`` only when their bytes change; fsyncs each touched folder once at the end."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []
        self.unchanged = 0
        self._dirs: set[Path] = set()

    def write(self, name: str, data: bytes, *, durable: bool = True) -> None:
        path = self.out / name
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                self.unchanged += 1
                return
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a web server running as another user must read the feed
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if durable:
            self._dirs.add(path.parent)
        if not name.startswith("."):
            self.written.append(name)

    def remove(self, name: str) -> None:
        (self.out / name).unlink(missing_ok=True)
        self._dirs.add((self.out / name).parent)

    def sync(self) -> None:
        for folder in sorted(self._dirs):
            _fsync_dir(folder)
        self._dirs.clear()


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (POSIX): without it a crash can bring the old file back, or none."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows): the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- documents --------------------------------------------------------------------------------------------------


class _Skips:
    def __init__(self) -> None:
        self.uids: dict[str, None] = {}

    def __call__(self, story: Story, exc: Exception) -> None:
        log.warning("story %s (%s) left out of a feed: %s: %s", story.id, story.uid, type(exc).__name__, exc)
        self.uids[story.uid] = None


def _main_page(pages: int) -> FeedPage:
    return FeedPage(path="feed.atom", prev_archive=archive_name(pages) if pages else None)


def _archive_page(cfg: PublishConfig, page: int, pages: int) -> FeedPage:
    return FeedPage(
        path=archive_name(page),
        feed_id=cfg.id,
        current="feed.atom",
        prev_archive=archive_name(page - 1) if page > 1 else None,
        next_archive=archive_name(page + 1) if page < pages else None,
        archive=True,
    )


def _tag_page(cfg: PublishConfig, tag: str) -> FeedPage:
    return FeedPage(path=tag_name(tag), feed_id=f"{cfg.id}/tags/{tag_slug(tag)}", title=f"{cfg.title}: {tag}")


def _topic_page(cfg: PublishConfig, slug: str, name: str) -> FeedPage:
    return FeedPage(path=topic_name(slug), feed_id=f"{cfg.id}/topics/{slug}", title=f"{cfg.title}: {name}")


@dataclass
class _Build:
    """Chooses each document's stories (as versions, cheaply) and renders documents from them."""

    store: Store
    cfg: PublishConfig
    now: datetime | None  # dates only a document without entries
    skips: _Skips = field(default_factory=_Skips)
    entries: int = 0

    # -- which stories (versions only: no text is read) --

    def main_versions(self, bounds: Sequence[int]) -> list[StoryVersion]:
        size = self.cfg.max_entries
        # The stories not in a full archive page yet (fewer than a page) are always here, so this document and the
        # archives together hold every story (RFC 5005 section 4); the newest by date fill the rest.
        chosen = {v.id: v for v in self.store.versions_between(bounds[-1] if bounds else 0)}
        for version in self.store.recent_versions(size):
            if len(chosen) >= size:
                break
            chosen.setdefault(version.id, version)
        return sorted(chosen.values(), key=lambda v: (v.when, v.id), reverse=True)

    def tag_versions(self, tag: str) -> list[StoryVersion]:
        return self.store.recent_versions(self.cfg.max_entries, tag=tag)

    def topic_versions(self, slug: str) -> list[StoryVersion]:
        return self.store.recent_versions(self.cfg.max_entries, topic=slug)

    def archive_versions(self, bounds: Sequence[int], page: int) -> list[StoryVersion]:
        return self.store.versions_between(bounds[page - 2] if page > 1 else 0, bounds[page - 1])

    # -- the documents --

    def _stories(self, versions: Sequence[StoryVersion]) -> tuple[list[Story], list[Story], dict[int, Byline]]:
        """The visible stories of ``versions``, the hidden ones (the document's tombstones), and the bylines."""
        stories = self.store.stories_by_id([v.id for v in versions])
        shown = [s for s in stories if s.hidden_at is None]
        return shown, [s for s in stories if s.hidden_at is not None], self.store.bylines(s.id for s in shown)

    def main(self, versions: Sequence[StoryVersion], pages: int) -> dict[str, bytes]:
        stories, hidden, bylines = self._stories(versions)
        cfg, now, skips = self.cfg, self.now, self.skips
        docs = {
            "feed.atom": atom_feed(
                stories, cfg, _main_page(pages), bylines=bylines, deleted=hidden, updated=now, on_skip=skips
            ),
            "feed.rss": rss_feed(stories, cfg, updated=now, on_skip=skips),
            "feed.json": json_feed(stories, cfg, bylines=bylines, on_skip=skips),
        }
        self.entries = len([s for s in stories if s.uid not in skips.uids])
        return docs

    def _atom(self, versions: Sequence[StoryVersion], page: FeedPage) -> bytes:
        stories, hidden, bylines = self._stories(versions)
        return atom_feed(stories, self.cfg, page, bylines=bylines, deleted=hidden, updated=self.now, on_skip=self.skips)

    def tag(self, tag: str, versions: Sequence[StoryVersion]) -> bytes:
        return self._atom(versions, _tag_page(self.cfg, tag))

    def topic(self, slug: str, name: str, versions: Sequence[StoryVersion]) -> bytes:
        return self._atom(versions, _topic_page(self.cfg, slug, name))

    def archive(self, page: int, pages: int, versions: Sequence[StoryVersion]) -> bytes:
        return self._atom(versions, _archive_page(self.cfg, page, pages))


def document(
    store: Store, settings: Settings, name: str, now: datetime | None = None, *, topics: Mapping[str, str] | None = None
) -> bytes | None:
    """One document built on demand (the web serves it when its file is missing); None when no such document.
    ``topics``: the taxonomy's names by slug (a topic feed exists for each)."""
    cfg = settings.publish
    build = _Build(store, cfg, now)
    saved = _valid_saved(store, cfg, _load(cfg.dir))
    archive = re.fullmatch(r"archive/([1-9][0-9]{0,8})\.atom", name)
    if name in ("feed.atom", "feed.rss", "feed.json") or archive:
        bounds = list(saved.bounds) if saved else store.boundaries(cfg.max_entries)
        if archive:
            page = int(archive.group(1))
            if page > len(bounds):
                return None
            return build.archive(page, len(bounds), build.archive_versions(bounds, page))
        return build.main(build.main_versions(bounds), len(bounds))[name]
    tag = re.fullmatch(r"tags/([a-z0-9-]+)\.atom", name)
    if tag:
        found = {tag_slug(t): t for t in (saved.tags if saved else ())}.get(tag.group(1))
        if found is None and saved is None:  # nothing published yet: look at every story (not on every 404)
            found = {tag_slug(t): t for t in store.tags()}.get(tag.group(1))
        versions = build.tag_versions(found) if found is not None else []
        return build.tag(found, versions) if found is not None and _shows_any(versions) else None
    topic = re.fullmatch(r"topics/([a-z0-9-]+)\.atom", name)
    if topic and topic.group(1) in (topics or {}):
        slug = topic.group(1)
        return build.topic(slug, (topics or {})[slug], build.topic_versions(slug))
    return None


def published_tags(settings: Settings) -> tuple[str, ...] | None:
    """The tags the last publish wrote a feed for; None when nothing was published with this config."""
    saved = _load(settings.publish.dir)
    return saved.tags if saved is not None and saved.config == _config_key(settings.publish) else None


def _valid_saved(store: Store, cfg: PublishConfig, saved: _Saved | None) -> _Saved | None:
    """The last publish's record when it still describes this database and config, else None (rebuild)."""
    if saved is None or saved.config != _config_key(cfg):
        return None
    if saved.bounds and (saved.anchor is None or store.story_uid(saved.bounds[-1]) != saved.anchor):
        return None
    return saved


def _listing(out: Path) -> set[str]:
    """Names of the published files, from three directory reads (a thousand archive pages cost no stat each)."""
    names: set[str] = set()
    for folder in ("", "tags", "topics", "archive"):
        try:
            with os.scandir(out / folder) as entries:
                names.update(f"{folder}/{e.name}".lstrip("/") for e in entries if e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            pass
    return names


def _present(files: set[str], saved: _Saved) -> bool:
    names = ["feed.atom", "feed.rss", "feed.json"]
    names += [tag_name(t) for t in saved.tags]
    names += [topic_name(t) for t in saved.topics]
    names += [archive_name(p) for p in range(1, len(saved.bounds) + 1)]
    return all(n in files for n in names)


def _page_number(name: str) -> int:
    """N of ``archive/N.atom``; a huge number for a name publish would not make, so it is removed."""
    stem = name.removeprefix("archive/").removesuffix(".atom")
    return int(stem) if stem.isdigit() and not stem.startswith("0") else 1 << 62


def _shows_any(versions: Sequence[StoryVersion]) -> bool:
    """Whether a document of ``versions`` would have an entry, not only tombstones."""
    return any(not v.hidden for v in versions)


def _page_of(bounds: Sequence[int], story_id: int) -> int:
    """The 1-based archive page of a story row; ``len(bounds) + 1`` when it is not in a full page yet."""
    return bisect.bisect_left(bounds, story_id) + 1


def publish(
    store: Store, settings: Settings, now: datetime, *, topics: Mapping[str, str] | None = None
) -> PublishReport:
    """Bring ``[publish] dir`` up to date with the store. Three aggregate queries when nothing changed. ``topics``:
    the taxonomy's names by slug, one feed each (the callers load it: this layer does not read the taxonomy).

    A folder that cannot be written (read-only, a full disk, a file where a folder should be) raises
    :class:`OutputError` naming it: every file is replaced atomically, so what was published before stays whole."""
    try:
        return _publish(store, settings, now, dict(topics or {}))
    except OSError as exc:
        where = settings.publish.dir
        raise OutputError(
            f"{where}: cannot write the published feeds: {exc.strerror or exc} ([publish] dir); "
            "the files published before are unchanged"
        ) from None


def _publish(store: Store, settings: Settings, now: datetime, topics: dict[str, str]) -> PublishReport:
    cfg = settings.publish
    out = cfg.dir
    size = cfg.max_entries
    state = store.publish_state()  # read first: whatever commits after this is seen by the next publish
    loaded = _load(out)
    files = _listing(out)
    if (
        loaded is not None
        and loaded.config == _config_key(cfg)
        and loaded.state == state
        and loaded.topics == topics
        and _present(files, loaded)
    ):
        return PublishReport(
            up_to_date=True, archive_pages=len(loaded.bounds), tags=len(loaded.tags), topics=len(topics)
        )
    saved = _valid_saved(store, cfg, loaded)
    prints = dict(saved.prints) if saved else {}

    # Archive pages: the full ones already known, then any that filled since.
    old: list[int] = list(saved.bounds) if saved else store.boundaries(size)
    bounds = list(old)
    while (closing := store.next_boundary(bounds[-1] if bounds else 0, size)) is not None:
        bounds.append(closing)
    pages = len(bounds)
    if saved is None:
        candidates = set(range(1, pages + 1))
        tags = set(store.tags())  # one scan of every story: only when rebuilding
        tag_candidates = set(tags)
        topic_candidates = set(topics)
    else:
        candidates = set(range(len(old) + 1, pages + 1))
        if pages > len(old) and old:
            candidates.add(len(old))  # gains its next-archive link, once
        tags = set(saved.tags)
        tag_candidates = set()
        # A topic new or renamed since the last publish; then those of the stories changed since.
        topic_candidates = {t for t in topics if saved.topics.get(t) != topics[t]}
        if saved.state.max_updated is not None:
            for story_id, story_tags, story_topics in store.changed_since(saved.state.max_updated - UPDATE_MARGIN):
                page = _page_of(bounds, story_id)
                if page <= pages:
                    candidates.add(page)
                tag_candidates.update(t.lower() for t in story_tags if t.strip())
                topic_candidates.update(t for t in story_topics if t in topics)
        tags |= tag_candidates
        candidates.update(p for p in range(1, pages + 1) if archive_name(p) not in files)
        tag_candidates.update(t for t in tags if tag_name(t) not in files)
        topic_candidates.update(t for t in topics if topic_name(t) not in files)

    build = _Build(store, cfg, now)
    writer = _Writer(out)
    removed: list[str] = []
    rebuilt: list[int] = []

    def fresh(key: str, fingerprint: str, *names: str) -> bool:
        """True when the document was built from exactly these inputs last time and its files are still there."""
        same = prints.get(key) == fingerprint and all(n in files for n in names)
        prints[key] = fingerprint
        return same

    # Archives first, then tags, then the main feed: a link in a written document never points at a missing file.
    for page in sorted(candidates):
        versions = build.archive_versions(bounds, page)
        if not fresh(archive_name(page), _fingerprint(page, page < pages, versions=versions), archive_name(page)):
            writer.write(archive_name(page), build.archive(page, pages, versions))
            rebuilt.append(page)
    if len(old) > pages or saved is None:  # fewer pages than before (a new page size, rows deleted): drop the rest
        for key in [k for k in prints if k.startswith("archive/") and _page_number(k) > pages]:
            del prints[key]
        archive_dir = out / "archive"
        for path in archive_dir.glob("*.atom") if archive_dir.is_dir() else ():
            if _page_number(f"archive/{path.name}") > pages:
                writer.remove(f"archive/{path.name}")
                removed.append(f"archive/{path.name}")

    for tag in sorted(tag_candidates):
        versions = build.tag_versions(tag)
        if not _shows_any(versions):  # no visible story carries it any more (merged away, hidden): its feed goes
            tags.discard(tag)
            prints.pop(tag_name(tag), None)
        elif not fresh(tag_name(tag), _fingerprint(tag, versions=versions), tag_name(tag)):
            writer.write(tag_name(tag), build.tag(tag, versions))
    keep = {tag_slug(t) + ".atom" for t in tags}
    tag_dir = out / "tags"
    if tag_dir.is_dir():
        for path in tag_dir.glob("*.atom"):
            if path.name not in keep:
                writer.remove(f"tags/{path.name}")
                removed.append(f"tags/{path.name}")

    for slug in sorted(topic_candidates):
        versions = build.topic_versions(slug)
        if not fresh(topic_name(slug), _fingerprint(slug, topics[slug], versions=versions), topic_name(slug)):
            writer.write(topic_name(slug), build.topic(slug, topics[slug], versions))
    for key in [k for k in prints if k.startswith("topics/") and k not in {topic_name(t) for t in topics}]:
        del prints[key]
    topic_dir = out / "topics"
    if topic_dir.is_dir():  # a topic gone from the taxonomy: its feed goes
        for path in topic_dir.glob("*.atom"):
            if path.name.removesuffix(".atom") not in topics:
                writer.remove(f"topics/{path.name}")
                removed.append(f"topics/{path.name}")

    versions = build.main_versions(bounds)
    entries = None
    if not fresh("feed", _fingerprint(pages, versions=versions), "feed.atom", "feed.rss", "feed.json"):
        for name, data in build.main(versions, pages).items():
            writer.write(name, data)
        entries = build.entries
    writer.sync()
    anchor = store.story_uid(bounds[-1]) if bounds else None
    saved_now = _Saved(_config_key(cfg), state, tuple(bounds), anchor, tuple(sorted(tags)), topics, prints)
    writer.write(STATE_FILE, _dump(saved_now), durable=False)
    if writer.written or removed:
        log.info("published %s (%d unchanged)", ", ".join(writer.written + removed), writer.unchanged)
    return PublishReport(
        written=tuple(writer.written),
        unchanged=writer.unchanged,
        removed=tuple(sorted(removed)),
        entries=len(versions) if entries is None else entries,
        archive_pages=pages,
        tags=len(tags),
        topics=len(topics),
        skipped=tuple(build.skips.uids),
        stale_pages=tuple(rebuilt),
    )


class Publisher:
    """``[publish] dir`` for one process: publishes, knows which publish generation its folder shows, and pings the
    WebSub hubs for the feeds a publish changed (in a thread of its own: a slow hub never holds up a request).

    Thread-safe: the service's passes and the web's requests publish one at a time."""

    def __init__(self, store: Store, settings: Settings, *, topics: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.topics = dict(topics or {})  # the taxonomy's names by slug (this layer does not read the taxonomy)
        self._lock = threading.Lock()
        self._shown: int | None = None  # the generation the folder was last brought up to
        self._pings: list[threading.Thread] = []

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the hub pings in flight (a command that exits after publishing)."""
        for thread in list(self._pings):
            thread.join(timeout)

    def publish(self, now: datetime) -> PublishReport:
        """Bring the folder up to date (see :func:`publish`)."""
        with self._lock:
            return self._publish(now)

    def current(self, now: datetime) -> PublishReport | None:
        """Republish when a change was committed since the last publish (one primary-key read when none was);
        None when the folder was current."""
        if self.store.publish_generation() == self._shown:
            return None
        with self._lock:
            if self.store.publish_generation() == self._shown:  # another request published it meanwhile
                return None
            return self._publish(now)

    def _publish(self, now: datetime) -> PublishReport:
        generation = self.store.publish_generation()  # before publish reads: a later change is seen next time
        report = publish(self.store, self.settings, now, topics=self.topics)
        self._shown = generation
        self._ping(report)
        return report

    def _ping(self, report: PublishReport) -> None:
        cfg = self.settings.publish
        topics = [
            feed_url(cfg, name)
            for name in report.written
            if name == "feed.atom" or name.startswith(("tags/", "topics/"))
        ]
        if not cfg.websub_hubs or not topics:
            return
        from newsletter.publish.websub import ping_hubs  # httpx's home here, loaded only when hubs are set

        agent = self.settings.fetch.user_agent
        thread = threading.Thread(
            target=ping_hubs, args=(cfg.websub_hubs, topics), kwargs={"user_agent": agent}, name="websub", daemon=True
        )
        self._pings = [t for t in self._pings if t.is_alive()] + [thread]
        thread.start()

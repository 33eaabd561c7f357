"""Run parse_feed over every file of a folder and compare its entries with plain feedparser's.

    .venv/bin/python scripts/corpus_parse_check.py ../shared/corpora/feedparser-6.0.14

For each file: our parse (fast path or feedparser fallback, nh3, normalization) and ``feedparser.parse`` with its
defaults, both given the same bytes and the HTTP headers the file declares in ``Header:`` comment lines (feedparser's
own test convention). Prints crashes, files where we return fewer entries than feedparser (with the reason), entries
dropped as repeats of an id within one feed (reported apart: not lost), files where the fast path and the feedparser
path disagree, entries whose key, title, link, date or summary text differ from feedparser with its own sanitizer on,
and the slowest files. Exit code 1 when anything crashed or was lost. Reads the folder; never writes.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import feedparser

from ingest.parse import _parse, _parse_xml

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # the parser has no clock

_HEADER = re.compile(rb"^\s*Header:\s*([A-Za-z-]+):\s*(.*?)\s*$", re.MULTILINE)
_ESSENTIALS = ("key", "title", "link", "published", "summary")
_COMPARED = ("key", "position", "title", "published", "summary", "content", "link", "author", "tags", "raw_date")


def declared_headers(data: bytes) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in _HEADER.findall(data[:4000])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--no-parity", action="store_true", help="skip the fast-path versus feedparser-path comparison")
    args = ap.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.is_file())
    crashes: list[tuple[Path, str]] = []
    reference_crashes: list[tuple[Path, str]] = []
    lost: list[tuple[Path, int, int, str]] = []
    dup_files: list[tuple[Path, int]] = []
    parity: list[tuple[Path, str]] = []
    sanitizer_diffs: list[tuple[Path, str]] = []
    kinds: Counter[str] = Counter()
    timings: list[tuple[float, Path]] = []
    ours_total = theirs_total = fast_files = 0
    started = time.perf_counter()
    for path in files:
        data = path.read_bytes()
        rel = path.relative_to(args.folder).as_posix()
        url = f"http://127.0.0.1:8000/{rel}"
        headers = declared_headers(data)
        t0 = time.perf_counter()
        try:
            ours = _parse(data, now=NOW, url=url, headers=headers, tags=(), engine="auto")
        except Exception:  # the point of this script is to count these
            crashes.append((path, traceback.format_exc(limit=3)))
            continue
        timings.append((time.perf_counter() - t0, path))
        kinds[ours.kind] += 1
        try:
            theirs = feedparser.parse(io.BytesIO(data), response_headers=headers)
            expected = len(theirs.get("entries") or ())
        except Exception as exc:  # plain feedparser crashes on some hostile input (&#xD800; in an ill-formed feed)
            reference_crashes.append((path, f"{type(exc).__name__}: {exc}"))
            expected = 0
        got = len(ours.items)
        ours_total += got
        theirs_total += expected
        if ours.duplicates:
            dup_files.append((path, ours.duplicates))
        if got + ours.duplicates < expected:
            reason = ours.error or ours.warning or "entries missing with no error"
            lost.append((path, got, expected, reason))
        if args.no_parity or ours.kind == "not_a_feed" or data.lstrip()[:1] in (b"{", b"["):
            continue
        plain = _parse(data, now=NOW, url=url, headers=headers, tags=(), engine="feedparser_defaults")
        for x, y in zip(ours.items, plain.items, strict=False):
            for name in _ESSENTIALS:
                if getattr(x, name) != getattr(y, name):
                    sanitizer_diffs.append(
                        (path, f"entry {x.position} {name}: {getattr(x, name)!r:.90} != {getattr(y, name)!r:.90}")
                    )
                    break
        raw = _parse_xml(data, url=url, headers=dict(headers), engine="auto")
        if not raw.fast:
            continue
        fast_files += 1
        slow = _parse(data, now=NOW, url=url, headers=headers, tags=(), engine="feedparser")
        diff = _difference(ours, slow)
        if diff:
            parity.append((path, diff))
    elapsed = time.perf_counter() - started

    print(f"files: {len(files)}  crashes: {len(crashes)}  kinds: {dict(kinds)}  ({elapsed:.1f} s)")
    print(f"entries: ours {ours_total}, feedparser {theirs_total}")
    for path, text in reference_crashes:
        print(f"  plain feedparser crashed (counted as 0 entries) on {path}: {text:.120}")
    print(f"fast path taken: {fast_files} files; fast path differs from the feedparser path: {len(parity)}")
    print(
        f"entries whose key, title, link, date or summary text differ from feedparser with its own sanitizer: "
        f"{len(sanitizer_diffs)} (nh3 and feedparser disagree on what is text; first 10 below)"
    )
    for path, diff in sanitizer_diffs[:10]:
        print(f"  sanitizer {path}: {diff}")
    print(f"files with fewer entries than feedparser (lost): {len(lost)}")
    for path, got, expected, reason in lost:
        print(f"  LOST {path}: {got} of {expected}: {reason}")
    dropped = sum(n for _, n in dup_files)
    print(f"files with entries dropped as repeated ids (not lost): {len(dup_files)}, {dropped} entries")
    for path, n in dup_files:
        print(f"  dup {path}: {n}")
    for path, text in crashes:
        print(f"  CRASH {path}\n{text}")
    for path, diff in parity:
        print(f"  PARITY {path}: {diff}")
    print("slowest:")
    for seconds, path in sorted(timings, reverse=True)[:5]:
        print(f"  {seconds * 1000:8.1f} ms  {path}")
    return 1 if crashes or lost else 0


def _difference(a: object, b: object) -> str:
    for name in ("kind", "title", "link", "ttl", "duplicates"):
        if getattr(a, name) != getattr(b, name):
            return f"feed {name}: {getattr(a, name)!r} != {getattr(b, name)!r}"
    items_a, items_b = getattr(a, "items"), getattr(b, "items")  # noqa: B009
    if len(items_a) != len(items_b):
        return f"{len(items_a)} entries != {len(items_b)}"
    for x, y in zip(items_a, items_b, strict=True):
        for name in _COMPARED:
            if getattr(x, name) != getattr(y, name):
                return f"entry {x.position} {name}: {getattr(x, name)!r:.120} != {getattr(y, name)!r:.120}"
    return ""


if __name__ == "__main__":
    sys.exit(main())

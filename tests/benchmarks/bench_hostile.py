"""Benchmark of three hostile feeds of issue 13: a huge RSS <author> (item 2), a feed of 50,000 entries (item 4) and a
feed of thousands of alike titles (item 3).

A plain script, not collected by pytest:

    .venv/bin/python tests/benchmarks/bench_hostile.py [--authors 100 1024] [--entries 50000]
        [--alike 1000 2000 4000 50000] [--timeout 600] [--root PATH]

A :class:`tests.servers.HostileServer` on 127.0.0.1 serves the generated feeds, and each measurement is one real
``newsletter ingest`` in a child process of its own, on a fresh SQLite database (the loopback network trusted,
``[fetch] max_bytes`` raised to 64 MB so that the size cap is not what is measured). Reported per run: wall seconds,
the child's peak memory (max RSS, from ``wait4``) and the entries stored. A run still going after ``--timeout``
seconds is stopped and shown as "> N s".

- authors: one feed of two entries whose first ``<author>`` is N KB of "a" (the worst case for the e-mail regex that
  feedparser and our fast path run on an author), once well-formed (the fast path) and once not well-formed (a stray
  "&" in the second entry: feedparser's strict, then its lenient parser);
- entries: one well-formed RSS feed of N entries with distinct made-up titles, dated an hour apart;
- alike: one feed of N entries titled "Story number i about topic j" (j = i mod 10), a minute apart, each with its
  own guid and link: the campaign's clustering blow-up (1k entries 2.3 s, 2k 7.9 s, 4k 52.6 s, 50k not done after
  13 min). ``[fetch] max_entries`` is raised to N so that every entry is stored; each must be a story of its own.

``--root`` runs the children on another checkout's code (``PYTHONPATH``), e.g. an export of main, to compare before
and after on the same machine: ``git archive main | tar -x -C /tmp/main && bench_hostile.py --root /tmp/main``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers import HostileServer  # noqa: E402

START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def author_feed(kilobytes: int, *, well_formed: bool) -> bytes:
    author = "a" * (kilobytes * 1024)
    second = "Second entry" if well_formed else "Second & not well-formed"
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Author</title>'
        "<link>http://example.org/</link>"
        f"<item><title>First entry</title><link>http://example.org/1</link><guid>g1</guid><author>{author}</author>"
        "<pubDate>Wed, 25 Nov 2026 08:00:00 GMT</pubDate><description>The first.</description></item>"
        f"<item><title>{second}</title><guid>g2</guid><description>The second.</description></item>"
        "</channel></rss>"
    ).encode()


def alike_feed(count: int) -> bytes:
    parts = ['<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Alike</title>']
    parts.append("<link>http://example.org/</link>")
    for i in range(count):
        when = format_datetime(START - timedelta(minutes=i), usegmt=True)
        parts.append(
            f"<item><title>Story number {i} about topic {i % 10}</title><link>http://example.org/story/{i}</link>"
            f"<guid>s{i}</guid><pubDate>{when}</pubDate></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def many_entries_feed(count: int, seed: int = 13) -> bytes:
    rng = random.Random(seed)
    syllables = ["ba", "ce", "di", "fo", "gu", "ka", "le", "mi", "no", "pu", "ra", "se", "ti", "vo", "zu", "xan"]
    words = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(6000)})
    parts = ['<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Many</title>']
    parts.append("<link>http://example.org/</link>")
    for i in range(count):
        title = " ".join(rng.sample(words, 7)).capitalize()
        lead = " ".join(rng.sample(words, 14))
        when = format_datetime(START - timedelta(hours=i), usegmt=True)
        parts.append(
            f"<item><title>{title}</title><link>http://example.org/{i}</link><guid>e{i}</guid>"
            f"<pubDate>{when}</pubDate><description>{lead}.</description></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


@dataclass(frozen=True)
class Run:
    label: str
    seconds: float
    peak_mb: float
    entries: int | None
    stories: int | None
    stopped: bool
    code: int | None


def ingest_once(
    code_root: Path, server: HostileServer, path: str, body: bytes, label: str, timeout: float, max_entries: int = 0
) -> Run:
    server.set(path, headers={"Content-Type": "application/rss+xml"}, body=body)
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        folder = Path(tmp)
        (folder / "seeds").mkdir()
        db = folder / "bench.db"
        (folder / "newsletter.toml").write_text(
            f'[storage]\nurl = "sqlite:///{db}"\n\n[seeds]\ndirs = ["seeds"]\n\n'
            '[fetch]\ntimeout = 600.0\nmax_bytes = 67108864\ntrusted_networks = ["127.0.0.1/32"]\n'
            + (f"max_entries = {max_entries}\n" if max_entries else "")
            + f'\n[[feeds]]\nurl = "{server.url(path)}"\n',
            encoding="utf-8",
        )
        env = {**os.environ, "PYTHONPATH": str(code_root)}
        env = {k: v for k, v in env.items() if not k.startswith("NEWSLETTER_")}
        command = [sys.executable, "-m", "newsletter", "--config", str(folder / "newsletter.toml"), "ingest"]
        started = time.perf_counter()
        child = subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        stopped = False
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(child.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(child.pid, 0)
                stopped = True
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        entries = stories = None
        if not stopped and db.exists():
            with sqlite3.connect(db) as conn:
                entries = conn.execute("SELECT count(*) FROM sighting").fetchone()[0]
                stories = conn.execute("SELECT count(*) FROM story WHERE merged_into IS NULL").fetchone()[0]
        code = None if stopped else child.returncode
        return Run(label, seconds, usage.ru_maxrss / 1024, entries, stories, stopped, code)


def code_of(root: Path) -> str:
    probe = "import ingest, sys; sys.stdout.write(ingest.__file__)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True
    ).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--authors", type=int, nargs="*", default=[0, 100, 1024], help="author sizes in KB (0: the baseline)"
    )
    parser.add_argument("--entries", type=int, nargs="*", default=[50_000], help="entries in the big feed")
    parser.add_argument("--alike", type=int, nargs="*", default=[1000, 2000, 4000, 50_000], help="alike-title feeds")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is stopped")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose code the children run")
    parser.add_argument(
        "--no-max-entries", action="store_true", help="code from before [fetch] max_entries: do not write the key"
    )
    args = parser.parse_args()
    root = args.root.resolve()
    print(f"code: {code_of(root)}  (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    runs: list[Run] = []
    with HostileServer() as server:
        for kilobytes in args.authors:
            for well_formed in (True, False):
                path = "fast" if well_formed else "feedparser"
                label = f"author {kilobytes:>5} KB, {path} path"
                runs.append(
                    ingest_once(
                        root, server, "/author", author_feed(kilobytes, well_formed=well_formed), label, args.timeout
                    )
                )
                print(_line(runs[-1]), flush=True)
        for count in args.entries:
            body = many_entries_feed(count)
            label = f"{count:,} entries ({len(body) / 1e6:.1f} MB)"
            runs.append(ingest_once(root, server, "/many", body, label, args.timeout))
            print(_line(runs[-1]), flush=True)
        for count in args.alike:
            label = f"{count:,} alike titles"
            cap = 0 if args.no_max_entries else count
            runs.append(ingest_once(root, server, "/alike", alike_feed(count), label, args.timeout, max_entries=cap))
            print(_line(runs[-1]), flush=True)


def _line(run: Run) -> str:
    seconds = f"> {run.seconds:6.0f} s (stopped)" if run.stopped else f"{run.seconds:8.2f} s"
    entries = "-" if run.entries is None else f"{run.entries:,} stored, {run.stories:,} stories"
    return f"{run.label:<36} {seconds:>20}  peak {run.peak_mb:7.0f} MB  {entries}  exit {run.code}"


if __name__ == "__main__":
    main()

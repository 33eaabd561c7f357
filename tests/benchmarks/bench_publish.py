"""Benchmark: publishing from a store of 100k stories, and serving /feed.atom under load from another process.

Run: ``.venv/bin/python tests/benchmarks/bench_publish.py [--stories 100000] [--runs 15] [--seconds 10]``.
Not collected by pytest. Load comes from ``wrk`` (Debian: ``apt-get install -y wrk``) when it is installed, else from
a small multi-process raw-socket client in this file. Figures go to stdout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from ingest.core.config import PublishConfig, Settings  # noqa: E402
from ingest.core.links import mint_uid  # noqa: E402
from ingest.core.models import ParsedItem  # noqa: E402
from ingest.store import Store, schema  # noqa: E402
from newsletter.publish import document, publish  # noqa: E402

START = datetime(2024, 1, 1, tzinfo=UTC)
FEED_TAGS = ["breast", "lung", "myeloma", "lymphoma", "melanoma", "prostate", "colorectal", "trials"]
WORDS = [
    "tumour",
    "therapy",
    "trial",
    "phase",
    "patients",
    "survival",
    "response",
    "dose",
    "cohort",
    "biomarker",
    "immunotherapy",
]


def fill(store: Store, n: int) -> datetime:
    """n stories (with one sighting each) by bulk insert; returns the last first_seen."""
    rnd = random.Random(5)
    with store.engine.begin() as conn:
        conn.execute(
            insert(schema.source).values(
                kind="feed", location="https://bench.example/feed", origin="cli", created_at=START, tags=[]
            )
        )
        source_id = conn.execute(schema.source.select()).first().id  # type: ignore[union-attr]
        batch_st: list[dict[str, object]] = []
        batch_si: list[dict[str, object]] = []
        last = START
        for i in range(1, n + 1):
            seen = START + timedelta(minutes=5 * i)
            last = seen
            published = None if i % 7 == 0 else seen - timedelta(days=rnd.randint(0, 900 if i % 11 == 0 else 3))
            title = " ".join(rnd.choice(WORDS) for _ in range(8)).capitalize() + f" {i}"
            tags = sorted({"recap"} if i % 5 == 0 else set()) + ([rnd.choice(FEED_TAGS)] if i % 2 else [])
            content = "" if i % 3 else "<p>" + " ".join(rnd.choice(WORDS) for _ in range(200)) + "</p>"
            batch_st.append(
                {
                    "id": i,
                    "uid": mint_uid("bench.example", seen),
                    "title": title,
                    "summary": " ".join(rnd.choice(WORDS) for _ in range(25)),
                    "content": content,
                    "link": f"https://bench.example/a/{i}",
                    "published": published,
                    "first_seen": seen,
                    "updated": seen,
                    "tags": tags,
                    "content_hash": f"{i:064d}",
                }
            )
            batch_si.append(
                {
                    "source_id": source_id,
                    "key": f"k{i}",
                    "kind": "entry",
                    "position": 1,
                    "title": title,
                    "published": published,
                    "summary": "",
                    "content": "",
                    "link": f"https://bench.example/a/{i}",
                    "author": "A. Writer" if i % 4 == 0 else None,
                    "tags": tags,
                    "first_seen": seen,
                    "last_seen": seen,
                    "story_id": i,
                }
            )
            if len(batch_st) == 5000:
                conn.execute(insert(schema.story), batch_st)
                conn.execute(insert(schema.sighting), batch_si)
                batch_st, batch_si = [], []
        if batch_st:
            conn.execute(insert(schema.story), batch_st)
            conn.execute(insert(schema.sighting), batch_si)
    return last


def timed(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), samples


def bench_publish(store: Store, settings: Settings, last: datetime, runs: int, label: str) -> None:
    shutil.rmtree(settings.publish.dir, ignore_errors=True)
    t0 = time.perf_counter()
    first = publish(store, settings, last)
    first_ms = (time.perf_counter() - t0) * 1000
    pages, tags = first.archive_pages, first.tags
    print(f"[{label}] first publish (empty folder, {pages} archive pages, {tags} tags): {first_ms:.0f} ms")

    idle, _ = timed(lambda: publish(store, settings, last), runs)
    print(f"[{label}] publish with nothing changed: median {idle:.2f} ms")

    counter = [0]
    src_id = store.page_source(f"/bench/new-{label}.txt", "/bench", last).id

    def one_new_story() -> None:
        counter[0] += 1
        now = last + timedelta(minutes=counter[0])
        item = ParsedItem(
            kind="teaser", key=f"{label}-{counter[0]}", position=1, title=f"Fresh story {counter[0]}",
            published=now, summary="A new blurb.", tags=("recap",),
        )  # fmt: skip
        store.save_page(src_id, [item], content_hash=str(counter[0]), warning=None, now=now)

    samples = []
    reports = []
    for _ in range(runs):
        one_new_story()
        t0 = time.perf_counter()
        reports.append(publish(store, settings, last))
        samples.append((time.perf_counter() - t0) * 1000)
    written = sorted({n for r in reports for n in r.written})
    print(
        f"[{label}] publish after one new story (main feed + twins + {first.tags} tag feeds + affected archives): "
        f"median {statistics.median(samples):.1f} ms, min {min(samples):.1f}, max {max(samples):.1f}; "
        f"files written: {written}"
    )
    main, _ = timed(lambda: document(store, settings, "feed.atom"), runs)
    tag, _ = timed(lambda: document(store, settings, "tags/recap.atom"), runs)
    page, _ = timed(lambda: document(store, settings, "archive/500.atom"), runs)
    print(
        f"[{label}] build only: feed.atom {main:.1f} ms, tags/recap.atom {tag:.1f} ms, archive/500.atom {page:.1f} ms"
    )


# ---- load ------------------------------------------------------------------------------------------------------

SERVER = """
import sys
sys.path.insert(0, {root!r})
import uvicorn
from ingest.core.config import PublishConfig, Settings, LogConfig
from ingest.store import Store
from newsletter.web import create_app
settings = Settings(publish=PublishConfig(dir={dir!r}, max_entries=100), log=LogConfig(level="WARNING"))
store = Store.open({url!r})
uvicorn.run(create_app(settings, store), host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)  # a benchmark script, not a test: polling a port that a subprocess opens
    raise RuntimeError("server did not start")


def raw_get(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port)) as s:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"GET /feed.atom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def run_wrk(port: int, seconds: int, headers: dict[str, str], connections: int) -> str:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    return subprocess.run(
        [*args, f"http://127.0.0.1:{port}/feed.atom"], capture_output=True, text=True, check=True
    ).stdout


def summarize_wrk(out: str) -> str:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"\s50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"\s99%\s+([\d.]+\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    extra = f", non-2xx/3xx {non2xx.group(1)}" if non2xx else ""
    extra += f", socket errors: {errors.group(1)}" if errors else ""
    rate = float(rps.group(1)) if rps else 0.0
    return f"{rate:.0f} req/s, p50 {p50.group(1) if p50 else '?'}, p99 {p99.group(1) if p99 else '?'}{extra}"


def _client(args: tuple[int, dict[str, str], float]) -> list[float]:
    port, headers, until = args
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET /feed.atom HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    latencies = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        buf = b""
        while time.monotonic() < until:
            t0 = time.perf_counter()
            s.sendall(request)
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            m = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            need = int(m.group(1)) if m else 0
            while len(buf) < need:
                buf += s.recv(65536)
            buf = buf[need:]
            latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def run_python_load(port: int, seconds: int, headers: dict[str, str], workers: int) -> str:
    until = time.monotonic() + seconds
    with multiprocessing.Pool(workers) as pool:
        results = pool.map(_client, [(port, headers, until)] * workers)
    lat = sorted(x for r in results for x in r)
    q = statistics.quantiles(lat, n=100)
    return f"{len(lat) / seconds:.0f} req/s, p50 {q[49]:.2f}ms, p99 {q[98]:.2f}ms ({workers} keep-alive clients)"


def bench_serve(url: str, folder: Path, seconds: int) -> None:
    port = free_port()
    code = SERVER.format(root=str(ROOT), dir=str(folder), url=url, port=port)
    server = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for(port)
        status, response = raw_get(port, {"Accept-Encoding": "identity"})
        etag = re.search(rb"etag: (\S+)", response, re.IGNORECASE)
        assert status == 200 and etag, response[:300]
        _, gz = raw_get(port, {"Accept-Encoding": "gzip"})
        gz_etag = re.search(rb"etag: (\S+)", gz, re.IGNORECASE)
        assert gz_etag
        size = len(response.partition(b"\r\n\r\n")[2])
        gz_size = len(gz.partition(b"\r\n\r\n")[2])
        cases = {
            f"200 identity ({size} bytes)": {"Accept-Encoding": "identity"},
            f"200 gzip ({gz_size} bytes)": {"Accept-Encoding": "gzip"},
            "304 If-None-Match": {"Accept-Encoding": "gzip", "If-None-Match": gz_etag.group(1).decode()},
        }
        have_wrk = shutil.which("wrk") is not None
        load = "wrk -t2 -c32" if have_wrk else "python clients"
        print(f"serving /feed.atom: uvicorn (1 process) vs {load}, {seconds}s each, {os.cpu_count()} CPUs shared")
        for label, headers in cases.items():
            if have_wrk:
                result = summarize_wrk(run_wrk(port, seconds, headers, 32))
            else:
                result = run_python_load(port, seconds, headers, 8)
            print(f"  {label}: {result}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stories", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--skip-serve", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(publish=PublishConfig(dir=Path(tmp) / "public", max_entries=100))
        with Store.open(url) as store:
            t0 = time.perf_counter()
            last = fill(store, args.stories)
            print(f"filled {args.stories} stories in {time.perf_counter() - t0:.1f} s")
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
            bench_publish(store, settings, last, args.runs, "schema with its publishing indexes")
        if not args.skip_serve:
            bench_serve(url, settings.publish.dir, args.seconds)


if __name__ == "__main__":
    main()

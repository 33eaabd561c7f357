"""Benchmark of scale-out: ingest and digest delivery with 1, 2 and 3 processes on one PostgreSQL database, against
one process on SQLite; and (``--parts size``) the hot operations on a PostgreSQL database of 100k and 1M stories.

A plain script, not collected by pytest. PostgreSQL is the server NEWSLETTER_TEST_PG_URL names, or a throwaway one:

    scripts/with_postgres.sh .venv/bin/python tests/benchmarks/bench_scale.py
        [--feeds 1000] [--subscribers 10000] [--processes 1 2 3] [--repeat 1] [--profile] [--no-wait]

Each measurement gets a fresh database (a new schema on PostgreSQL, a new file on SQLite) and its own OS processes
(this script re-run as ``--child``), which share that database as ``newsletter run --once --no-web`` processes do.
Every child opens the store, says it is ready and waits; all are then let go at once, so "work" is the time from the
go to the last child's end and "procs" the time from the first child's start to the last child's exit (interpreter
start, imports and opening the store included).

- ingest: the feed server of bench_ingest.py (its own process; 1,000 feeds of 50 entries over 8 loopback addresses,
  ETag/304) and that many feeds added to the database beforehand (as ``newsletter feeds add`` does, untimed). Each
  child runs the service's ingest step (``Service.ingest``: the seed folders, here one empty folder, then every due
  feed; default [fetch] settings, the loopback network trusted). Checked: the server served each feed once (as many
  200s as feeds, no 304 or 404, and every feed holds its 50 sightings), and there are feeds x 50 stories.
- delivery: bench_digest.py's ``fill`` (40 stories, N confirmed subscribers) and an aiosmtpd sink in its own process
  that counts what each recipient got. Each child runs the service's digest step (``Service.send_digest``: make the
  due digest once, then claim, send and record deliveries one at a time). Checked: each subscriber got exactly one
  copy, one child made the digest, and it ends ``sent``.

Beside the times: the machine's CPU use over the work (% of all cores busy, from /proc/stat), CPU seconds of our
processes (with their parse workers), of PostgreSQL (its postmaster and backends, when the server is local) and of
the feed server or the sink, and, on PostgreSQL, the time our statements spent in the database (claims apart) and,
for ingest, waiting for and holding the clustering advisory lock (``pg_advisory_xact_lock``, taken for each save).
``--profile`` runs each part once more with one process on PostgreSQL under cProfile (the main thread: what the
processes would share out or queue for) and sums the time by stage.

- size (``--parts size [--stories 100000 1000000]``, not in the default parts): for each size, a fresh PostgreSQL
  schema seeded with COPY (that many stories over three years, titles and summaries drawn from a Zipf-distributed
  vocabulary of 5,000 words, some with medical compounds such as HER2-positive; one sighting each; a tenth as many
  feeds, due over the next hour; every story before the last week carried by a digest), then VACUUM ANALYZE.
  Timed, each ``--samples`` times (p50 and p95, ms): a feed claim of 8 feeds (``claim_due_feeds``, released
  untimed), the publish check when nothing changed (``Publisher.current``: one primary-key read), an incremental
  publish after one new story, the home page (``GET /`` in-process through the real app, the first one apart: it
  counts the stories once per publish generation), a search (a mix of rare, common and compound words, through
  ``store.search``), a tag feed (``document`` for ``tags/lung.atom``: the query and the rendering), and the digest
  selection of one week (``store.candidates``). The first full publish (every archive page) is timed once.

Another benchmark on this machine (bench_ingest) is waited for before measuring (``--no-wait`` skips that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import json
import multiprocessing
import os
import pstats
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks import bench_ingest  # noqa: E402

PG_URL_ENV = "NEWSLETTER_TEST_PG_URL"
SECRET_KEY = "benchmark-key-0123456789abcdef"
#: The ingest pass runs at bench_ingest's time; the digest is due at bench_digest's.
INGEST_NOW = bench_ingest.NOW
DIGEST_DUE = datetime(2026, 11, 30, 8, tzinfo=UTC)
STORIES = 40
OTHER_BENCHMARK = "bench_ingest"


# --- machine and process CPU ------------------------------------------------------------------------------------


def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot (/proc/stat); idle and iowait count as not busy."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already inside user
    return total - fields[3] - fields[4], total


def _proc_cpu(pid: int, *, children: bool) -> float:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = float(parts[11]) + float(parts[12])
    waited = float(parts[13]) + float(parts[14]) if children else 0.0
    return (own + waited) / _ticks()


def postmaster_pid(url: str) -> int | None:
    """The local PostgreSQL's postmaster, from the lock file beside its unix socket (None for a remote server)."""
    query = parse_qs(urlsplit(url.replace("postgresql+psycopg", "postgresql", 1)).query)
    host, port = query.get("host", [""])[0], query.get("port", ["5432"])[0]
    if not host.startswith("/"):
        return None
    try:
        return int(Path(host, f".s.PGSQL.{port}.lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def postgres_cpu(pid: int | None) -> float | None:
    """CPU seconds of the postmaster, its ended backends (reaped, so in its children's time) and its live ones."""
    if pid is None:
        return None
    total = _proc_cpu(pid, children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            status = (entry / "status").read_text()
            ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
            if ppid == pid:
                total += _proc_cpu(int(entry.name), children=False)
    return total


def code_stamp() -> str:
    """A digest of ingest/ and newsletter/ as they are on disk now: other people edit the tree while a benchmark
    runs, and each child imports it afresh, so a row is only comparable with rows of the same stamp."""
    digest = hashlib.sha256()
    for package in ("ingest", "newsletter"):
        for path in sorted((ROOT / package).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:8]


# --- databases --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file in ``folder``, or a PostgreSQL schema of its own (dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    from sqlalchemy import create_engine, text

    base = os.environ[PG_URL_ENV]
    name = f"bench_{secrets.token_hex(5)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {name}"))
        yield f"{base}{'&' if '?' in base else '?'}options={quote(f'-csearch_path={name}')}"
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
    finally:
        admin.dispose()


def write_config(folder: Path, url: str, extra: str) -> Path:
    seeds = folder / "seeds"  # empty: only feeds are measured
    seeds.mkdir(exist_ok=True)
    path = folder / "newsletter.toml"
    path.write_text(
        f'[storage]\nurl = "{url}"\n\n[seeds]\ndirs = ["{seeds}"]\n\n'
        f'[publish]\ndir = "{folder / "public"}"\nbase_url = "https://news.example.org/"\n\n' + extra,
        encoding="utf-8",
    )
    return path


# --- the children (one OS process each) -------------------------------------------------------------------------


@dataclass
class SqlTimes:
    """Time our statements spent in the database, and around the clustering advisory lock (PostgreSQL)."""

    sql: float = 0.0
    claim: float = 0.0  # the statements that lease feeds or deliveries
    lock_wait: float = 0.0
    lock_hold: float = 0.0
    lock_taken: dict[int, float] = field(default_factory=dict)

    def watch(self, engine: Any) -> None:
        from sqlalchemy import event

        @event.listens_for(engine, "before_cursor_execute")
        def before(conn: Any, _cursor: Any, _statement: str, _params: Any, _ctx: Any, _many: bool) -> None:
            conn.info["bench_t0"] = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def after(conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool) -> None:
            now = time.perf_counter()
            spent = now - conn.info.pop("bench_t0", now)
            self.sql += spent
            if "RETURNING" in statement and "lease_owner" in statement.split("RETURNING", 1)[0]:
                self.claim += spent
            if "pg_advisory_xact_lock" in statement:
                self.lock_wait += spent
                self.lock_taken.setdefault(id(conn), now)  # held to the end of the transaction

        def ended(conn: Any) -> None:
            taken = self.lock_taken.pop(id(conn), None)
            if taken is not None:
                self.lock_hold += time.perf_counter() - taken

        event.listen(engine, "commit", ended)
        event.listen(engine, "rollback", ended)


def _cpu_seconds() -> float:
    """This process's CPU time and that of its ended children (the ingest's parse workers)."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def child(kind: str, config: Path, profile_out: Path | None) -> None:
    from ingest.core.config import load_settings
    from ingest.store import Store
    from newsletter.service.service import Service

    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": SECRET_KEY})
    store = Store.open(settings.storage.url)
    times = SqlTimes()
    times.watch(store.engine)
    service = Service(settings, store)
    print("ready", flush=True)
    sys.stdin.readline()  # the go
    profiler = cProfile.Profile() if profile_out is not None else None
    cpu_before = _cpu_seconds()
    start = time.time()
    if profiler is not None:
        profiler.enable()
    result: dict[str, Any]
    if kind == "ingest":
        reports = service.ingest(INGEST_NOW)
        errors = [f"{r.location}: {r.error}" for r in reports if r.error]
        result = {
            "feeds": sum(1 for r in reports if r.location.startswith("http")),
            "new": sum(r.new for r in reports),
            "new_stories": sum(r.new_stories for r in reports),
            "errors": len(errors),
            "first_errors": errors[:3],
        }
    else:
        report = service.send_digest(DIGEST_DUE)
        result = {
            "sent": report.sent,
            "failed": report.failed,
            "created": report.created,
            "status": report.status,
            "error": report.error,
        }
    if profiler is not None and profile_out is not None:
        profiler.disable()
        profiler.dump_stats(profile_out / f"{os.getpid()}.prof")
    end = time.time()
    cpu = _cpu_seconds() - cpu_before
    store.close()
    times.lock_taken.clear()
    print(
        json.dumps(
            {
                **result,
                "start": start,
                "end": end,
                "cpu": cpu,
                "sql": times.sql,
                "claim": times.claim,
                "lock_wait": times.lock_wait,
                "lock_hold": times.lock_hold,
            }
        ),
        flush=True,
    )


@dataclass
class Run:
    """One measurement: n children on one database."""

    procs_wall: float
    work_wall: float
    children: list[dict[str, Any]]
    busy: float  # share of all cores busy during the work
    pg_cpu: float | None

    def total(self, key: str) -> float:
        return float(sum(c[key] for c in self.children))


def run_children(kind: str, config: Path, count: int, pg_pid: int | None, profile_out: Path | None = None) -> Run:
    command = [sys.executable, __file__, "--child", kind, "--config", str(config)]
    if profile_out is not None:
        command += ["--profile-out", str(profile_out)]
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(count)]
        spawned = time.time()
        procs = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
            for log in logs
        ]
        try:
            for p, log in zip(procs, logs, strict=True):
                assert p.stdout is not None
                if p.stdout.readline().strip() != "ready":
                    p.wait()
                    log.seek(0)
                    raise SystemExit(f"a {kind} child did not start:\n{log.read()}")
            pg_before, cpu_before = postgres_cpu(pg_pid), machine_cpu()
            go = time.time()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            children = []
            for p, log in zip(procs, logs, strict=True):
                out, _ = p.communicate()
                if p.returncode != 0:
                    log.seek(0)
                    raise SystemExit(f"a {kind} child failed ({p.returncode}):\n{log.read()}")
                children.append(json.loads(out.strip().splitlines()[-1]))
            exited = time.time()
            cpu_after, pg_after = machine_cpu(), postgres_cpu(pg_pid)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    busy = (cpu_after[0] - cpu_before[0]) / max(1.0, cpu_after[1] - cpu_before[1])
    pg_cpu = pg_after - pg_before if pg_before is not None and pg_after is not None else None
    return Run(exited - spawned, max(c["end"] for c in children) - go, children, busy, pg_cpu)


# --- part 1: ingest ---------------------------------------------------------------------------------------------


@dataclass
class FeedServer:
    process: subprocess.Popen[str]
    ports: list[int]

    def stats(self) -> dict[str, Any]:
        return bench_ingest.server_stats(self.ports)


def start_feed_server(feeds: int) -> FeedServer:
    """bench_ingest's server, started from this script (``pgrep -f bench_ingest`` must not find our own server)."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-feeds", str(feeds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise SystemExit("the feed server did not start")
    return FeedServer(process, json.loads(line)["ports"])


@dataclass
class Row:
    backend: str
    processes: int
    run: Run
    counts: dict[str, float]
    problems: list[str]
    code: str = ""


def stamped(measure: Any, *args: Any, **kwargs: Any) -> Row:
    """Run one measurement, noting the code it ran (and a change of the code while it ran)."""
    before = code_stamp()
    row: Row = measure(*args, **kwargs)
    after = code_stamp()
    row.code = before if before == after else f"{before}>{after}"
    if before != after:
        row.problems.append(f"the code changed during the measurement ({before} -> {after}): not comparable")
    return row


def measure_ingest(
    backend: str, processes: int, feeds: int, server: FeedServer, pg_pid: int | None, profile_out: Path | None = None
) -> Row:
    from ingest.core.errors import StoreError
    from ingest.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, fresh_database(backend, Path(tmp)) as url:
        config = write_config(Path(tmp), url, '[fetch]\ntrusted_networks = ["127.0.0.0/8"]\n')
        with Store.open(url) as store:
            for feed_url in bench_ingest.feed_urls(server.ports, feeds):
                store.upsert_feed(feed_url, name=None, tags=[], interval=None, origin="cli", now=INGEST_NOW)
        before = server.stats()
        run = run_children("ingest", config, processes, pg_pid if backend == "postgresql" else None, profile_out)
        after = server.stats()
        served = {k: after.get(k, 0) - before.get(k, 0) for k in ("200", "304", "404")}
        try:
            with Store.open(url) as store:
                counts = store.counts()
                sources = store.sources(kind="feed")
        except StoreError as exc:  # the children ran a newer schema than this process imported
            return Row(backend, processes, run, {}, [f"cannot check: {exc}"])
    entries = feeds * bench_ingest.ENTRIES
    problems = []
    if served != {"200": feeds, "304": 0, "404": 0}:
        problems.append(f"server answered {served}, expected {feeds} 200s only")
    short = [s.location for s in sources if s.sightings != bench_ingest.ENTRIES or s.status != "active"]
    if short:
        problems.append(f"{len(short)} feed(s) without their {bench_ingest.ENTRIES} sightings, e.g. {short[:2]}")
    if counts["stories"] != entries or counts["sightings"] != entries:
        problems.append(f"{counts['stories']} stories and {counts['sightings']} sightings, expected {entries}")
    if run.total("feeds") != feeds or run.total("errors"):
        errors = [e for c in run.children for e in c["first_errors"]]
        problems.append(f"children reported {run.total('feeds'):.0f} feeds, {run.total('errors'):.0f} errors {errors}")
    return Row(backend, processes, run, {"server_cpu": after["cpu_s"] - before["cpu_s"], **served}, problems)


# --- part 2: delivery -------------------------------------------------------------------------------------------


def sink_process(conn: Connection) -> None:
    """An aiosmtpd sink that keeps no message, only how many each recipient got."""
    from tests.smtpd import Received, SmtpSink

    got: Counter[str] = Counter()

    def count(message: Received) -> None:
        got.update(message.rcpt_tos)

    with SmtpSink(keep=False) as sink:
        sink.on_message = count
        conn.send(sink.port)
        while (command := conn.recv()) != "stop":
            with sink.lock:
                if command == "reset":
                    got.clear()
                    sink.count = 0
                usage = resource.getrusage(resource.RUSAGE_SELF)
                conn.send(
                    {
                        "messages": sink.count,
                        "recipients": len(got),
                        "most": max(got.values(), default=0),
                        "twice": sorted(a for a, n in got.items() if n > 1)[:3],
                        "cpu_s": usage.ru_utime + usage.ru_stime,
                        "got": sorted(got) if command == "who" else None,
                    }
                )


class Sink:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=sink_process, args=(theirs,), daemon=True)
        self.process.start()
        self.port = int(self.conn.recv())

    def ask(self, command: str) -> dict[str, Any]:
        self.conn.send(command)
        answer: dict[str, Any] = self.conn.recv()
        return answer

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(timeout=30)


def measure_delivery(
    backend: str, processes: int, subscribers: int, sink: Sink, pg_pid: int | None, profile_out: Path | None = None
) -> Row:
    from ingest.core.errors import StoreError
    from ingest.store import Store
    from tests.benchmarks.bench_digest import fill

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, fresh_database(backend, Path(tmp)) as url:
        config = write_config(Path(tmp), url, f'[mail]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\n')
        with Store.open(url) as store:
            fill(store, subscribers, STORIES)
        before = sink.ask("reset")
        run = run_children("deliver", config, processes, pg_pid if backend == "postgresql" else None, profile_out)
        after = sink.ask("who")
        try:
            with Store.open(url) as store:
                made = store.digests()
        except StoreError as exc:
            return Row(backend, processes, run, {}, [f"cannot check: {exc}"])
    problems = []
    expected = [f"reader{i:05d}@example.org" for i in range(subscribers)]
    if after["got"] != expected or after["most"] != 1 or after["messages"] != subscribers:
        problems.append(
            f"the sink got {after['messages']} messages for {after['recipients']} recipients "
            f"(most to one: {after['most']}, e.g. {after['twice']}), expected one to each of {subscribers}"
        )
    if run.total("sent") != subscribers or run.total("failed"):
        problems.append(f"children reported {run.total('sent'):.0f} sent, {run.total('failed'):.0f} failed")
    if run.total("created") != 1 or len(made) != 1 or made[0].status != "sent":
        problems.append(f"{run.total('created'):.0f} digest(s) made, {[(d.period, d.status) for d in made]}")
    errors = [c["error"] for c in run.children if c["error"]]
    if errors:
        problems.append(f"errors: {errors}")
    return Row(backend, processes, run, {"sink_cpu": after["cpu_s"] - before["cpu_s"]}, problems)


# --- report -----------------------------------------------------------------------------------------------------


def _pg(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(title: str, unit: str, amount: int, rows: list[Row], other_cpu: str) -> None:
    print(f"\n{title}")
    print(
        f"{'backend':10} {'procs':>5} {'work s':>7} {'procs s':>7} {f'{unit}/s':>10} {'speed-up':>8} {'busy':>5} "
        f"{'our CPU':>7} {'PG CPU':>6} {other_cpu:>7} {'SQL s':>6} {'claim s':>7} {'lock wait':>9} {'lock held':>9} "
        f"{'share':>11} {'check':>5} {'code':>8}"
    )
    base: dict[str, float] = {}
    for row in rows:
        run = row.run
        rate = amount / run.work_wall
        key = "postgresql"
        if row.backend == key and row.processes == 1:
            base.setdefault(key, rate)
        speedup = f"{rate / base[key]:.2f}x" if row.backend == key and key in base else ""
        share_key = "feeds" if "feeds" in run.children[0] else "sent"
        share = "/".join(f"{c[share_key]:.0f}" for c in run.children)
        other = row.counts.get("server_cpu", row.counts.get("sink_cpu", 0.0))
        pg = row.backend == "postgresql"
        print(
            f"{row.backend:10} {row.processes:5d} {run.work_wall:7.2f} {run.procs_wall:7.2f} {rate:10.0f} "
            f"{speedup:>8} {run.busy:5.0%} {run.total('cpu'):7.1f} {_pg(run.pg_cpu):>6} {other:7.1f} "
            f"{run.total('sql'):6.1f} {run.total('claim'):7.1f} {_pg(run.total('lock_wait') if pg else None, 2):>9} "
            f"{_pg(run.total('lock_hold') if pg else None, 2):>9} {share:>11} "
            f"{'ok' if not row.problems else 'FAIL':>5} {row.code:>8}"
        )
    for row in rows:
        for problem in row.problems:
            print(f"  FAIL {row.backend} x{row.processes}: {problem}")


def print_profile(title: str, folder: Path) -> None:
    files = sorted(folder.glob("*.prof"))
    if not files:
        return
    by_stage: Counter[str] = Counter()
    for path in files:
        raw = pstats.Stats(str(path), stream=io.StringIO()).stats  # type: ignore[attr-defined]
        by_stage.update(bench_ingest.stage_times(raw))
    total = sum(by_stage.values())
    print(f"\nprofile: {title} ({len(files)} processes, cProfile own time by stage, {total:.1f} s in all)")
    for stage, seconds in by_stage.most_common():
        print(f"  {stage:16} {seconds:7.2f} s {100 * seconds / total:5.1f} %")
    out = io.StringIO()
    pstats.Stats(*(str(path) for path in files), stream=out).sort_stats("tottime").print_stats(12)
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


# --- the orchestrator -------------------------------------------------------------------------------------------


def wait_for_other_benchmark(every: float = 30.0, limit: float = 40 * 60) -> None:
    """The machine has two cores: do not measure while another benchmark runs on it."""
    deadline = time.monotonic() + limit
    while True:
        found = subprocess.run(["pgrep", "-f", OTHER_BENCHMARK], capture_output=True, text=True, check=False)
        if not found.stdout.strip():
            return
        if time.monotonic() >= deadline:
            print(f"{OTHER_BENCHMARK} still running after {limit / 60:.0f} min: measuring anyway", file=sys.stderr)
            return
        print(f"waiting for {OTHER_BENCHMARK} to end (pids {found.stdout.split()})", file=sys.stderr, flush=True)
        time.sleep(every)


def plan(processes: list[int], repeat: int, sqlite: bool) -> list[tuple[str, int]]:
    """The measurements, every other round in reverse order, so drift on a shared machine hits all alike."""
    one = ([("sqlite", 1)] if sqlite else []) + [("postgresql", n) for n in processes]
    return [m for r in range(repeat) for m in (one if r % 2 == 0 else one[::-1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3], help="process counts on PostgreSQL")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--parts", nargs="+", choices=("ingest", "delivery", "size"), default=["ingest", "delivery"])
    ap.add_argument("--stories", type=int, nargs="+", default=[100_000, 1_000_000], help="database sizes (size)")
    ap.add_argument("--samples", type=int, default=30, help="timings per operation (size)")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--profile", action="store_true", help="then profile each part with one process on PostgreSQL")
    ap.add_argument("--no-wait", action="store_true", help=f"do not wait for {OTHER_BENCHMARK} to end")
    ap.add_argument("--serve-feeds", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=("ingest", "deliver"), help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_feeds:
        asyncio.run(bench_ingest._serve(args.serve_feeds))
        return
    if args.child:
        child(args.child, args.config, args.profile_out)
        return
    if not os.environ.get(PG_URL_ENV):
        raise SystemExit(f"{PG_URL_ENV} is not set: run under scripts/with_postgres.sh (see the docstring)")
    if not args.no_wait:
        wait_for_other_benchmark()
    pg_pid = postmaster_pid(os.environ[PG_URL_ENV])
    measurements = plan(args.processes, args.repeat, not args.no_sqlite)
    cpus = os.cpu_count()
    print(f"scale-out benchmark: {cpus} CPUs, code {code_stamp()}, PostgreSQL local: {pg_pid is not None}")
    top = max(args.processes)

    if "size" in args.parts:
        from tests.benchmarks.bench_size import measure_sizes

        measure_sizes(args.stories, args.samples)
        if args.parts == ["size"]:
            return

    if "ingest" in args.parts:
        server = start_feed_server(args.feeds)
        try:
            rows = []
            for backend, n in measurements:
                row = stamped(measure_ingest, backend, n, args.feeds, server, pg_pid)
                print(f"  ingest {backend} x{n}: {row.run.work_wall:.2f} s {row.problems}", file=sys.stderr, flush=True)
                rows.append(row)
            entries = args.feeds * bench_ingest.ENTRIES
            print_table(
                f"Ingest, first pass: {args.feeds} feeds x {bench_ingest.ENTRIES} = {entries} new entries "
                f"(server CPU: the feed server)",
                "entries",
                entries,
                rows,
                "server",
            )
            if args.profile:
                with tempfile.TemporaryDirectory(prefix="bench-scale-prof-") as prof:
                    measure_ingest("postgresql", 1, args.feeds, server, pg_pid, Path(prof))
                    print_profile("ingest, PostgreSQL x1 (the main thread: storing, dedupe under the lock)", Path(prof))
        finally:
            server.process.terminate()
            server.process.wait()

    if "delivery" in args.parts:
        sink = Sink()
        try:
            rows = []
            for backend, n in measurements:
                row = stamped(measure_delivery, backend, n, args.subscribers, sink, pg_pid)
                print(
                    f"  deliver {backend} x{n}: {row.run.work_wall:.2f} s {row.problems}", file=sys.stderr, flush=True
                )
                rows.append(row)
            print_table(
                f"Delivery: one digest ({STORIES} stories) to {args.subscribers} confirmed subscribers, aiosmtpd sink "
                "in its own process (sink CPU)",
                "msgs",
                args.subscribers,
                rows,
                "sink",
            )
            if args.profile:
                with tempfile.TemporaryDirectory(prefix="bench-scale-prof-") as prof:
                    measure_delivery("postgresql", 1, args.subscribers, sink, pg_pid, Path(prof))
                    print_profile("delivery, PostgreSQL x1", Path(prof))
        finally:
            sink.stop()

    print(
        f"\nwork s: from the go to the last process's end; procs s: from the first process's start to the last one's "
        f"exit. busy: share of the {cpus} cores in use during the work. our CPU: the measured processes' CPU seconds "
        "(parse workers included); "
        "SQL s: their time in database statements (lock wait included), claim s the part spent leasing feeds or "
        "deliveries; lock wait/held: the clustering advisory lock, "
        "summed over processes; share: what each process did."
    )
    if cpus is not None and cpus < top:
        print(
            f"This machine has {cpus} cores: with {top} processes (plus PostgreSQL and the server or sink on the same "
            "cores) the work cannot scale linearly."
        )


if __name__ == "__main__":
    main()

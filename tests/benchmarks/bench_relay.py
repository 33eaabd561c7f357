"""Benchmark: the digest to 10,000 subscribers through a relay that takes 50 ms to answer each message.

Run: ``.venv/bin/python tests/benchmarks/bench_relay.py [--messages 10000] [--delay 0.05] [--db sqlite|postgresql]``
(``postgresql`` uses ``NEWSLETTER_TEST_PG_URL``: run it under scripts/with_postgres.sh). Not collected by pytest.

The sink is aiosmtpd on 127.0.0.1 in its own process (tests/smtpd.py), waiting ``--delay`` before it answers each
DATA, as relays do. For 1 and 4 sending processes (``--processes``) times 1, 4 and 16 ``[mail] connections``
(``--connections``): a fresh database with ``--messages`` confirmed subscribers and the digest made, then that many
``send_due_digest`` processes started together; msg/s is messages over the time from the first process starting to
send to the last one done. Exactly once is checked at the sink: every subscriber got exactly one copy. Target: one
process with 16 connections at least 150 msg/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from ingest.core.config import load_settings  # noqa: E402
from ingest.store import Store  # noqa: E402
from newsletter.digest import job  # noqa: E402
from newsletter.digest.select import period_for  # noqa: E402
from tests.benchmarks.bench_digest import DUE, RemoteSink, fill  # noqa: E402

SECRET = "benchmark-key-0123456789abcdef"
SENDER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import datetime
    from pathlib import Path

    from ingest.core.config import load_settings
    from ingest.store import Store
    from newsletter.digest.job import send_due_digest

    settings = load_settings(Path(sys.argv[1]))
    with Store.open(settings.storage.url) as store:
        start = time.time()
        report = send_due_digest(store, settings, datetime.fromisoformat(sys.argv[2]))
        print(json.dumps({"start": start, "end": time.time(), "sent": report.sent, "error": report.error}))
    """
)


def database(kind: str, folder: Path, run: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / f'{run}.db'}"
    base = os.environ.get("NEWSLETTER_TEST_PG_URL")
    if not base:
        raise SystemExit("--db postgresql needs NEWSLETTER_TEST_PG_URL (run under scripts/with_postgres.sh)")
    schema = f"bench_{run}"
    with Store.open(base) as admin, admin.engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def one(kind: str, folder: Path, sink: RemoteSink, processes: int, connections: int, messages: int) -> float:
    run = f"p{processes}c{connections}"
    url = database(kind, folder, run)
    config = folder / f"{run}.toml"
    config.write_text(
        f'[storage]\nurl = "{url}"\n\n[publish]\nbase_url = "https://news.example.org/"\n\n'
        f'[mail]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\nconnections = {connections}\n'
        'from_address = "Oncology digest <digest@news.example.org>"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    with Store.open(url) as store:
        fill(store, messages, 10)
        job.ensure_digest(store, settings, period_for("2026-W48", settings.digest), DUE)
    before = sink.recipients()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_SECRET_KEY=SECRET, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, str(config), DUE.isoformat()], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=3600)
        assert proc.returncode == 0, out
        reports.append(json.loads(out.strip().splitlines()[-1]))
    seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    after = sink.recipients()
    got = {r: n - before.get(r, 0) for r, n in after.items() if n != before.get(r, 0)}
    everyone = {f"reader{i:05d}@example.org" for i in range(messages)}
    assert set(got) == everyone, f"{len(everyone - set(got))} subscribers got nothing"
    twice = {r: n for r, n in got.items() if n != 1}
    assert not twice, f"exactly once broken: {len(twice)} got more than one copy"
    assert sum(r["sent"] for r in reports) == messages, reports
    assert not any(r["error"] for r in reports), reports
    return messages / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds the relay takes to answer a message")
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    print(
        f"relay benchmark: {args.messages} messages, relay answers each DATA after {args.delay * 1000:.0f} ms, "
        f"{args.db}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; exactly once checked at the sink"
    )
    print("processes  connections  msg/s")
    with tempfile.TemporaryDirectory() as tmp:
        sink = RemoteSink(delay=args.delay)
        try:
            for processes in args.processes:
                for connections in args.connections:
                    rate = one(args.db, Path(tmp), sink, processes, connections, args.messages)
                    mark = ""
                    if (processes, connections) == (1, 16):
                        mark = "  OK (target >= 150)" if rate >= 150 else "  UNDER (target >= 150)"
                    print(f"{processes:>9}  {connections:>11}  {rate:>5.0f}{mark}", flush=True)
        finally:
            sink.stop()


if __name__ == "__main__":
    main()

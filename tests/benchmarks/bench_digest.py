"""Benchmark: the weekly digest to 10,000 confirmed subscribers: build every message, deliver them to an SMTP sink.

Run: ``.venv/bin/python tests/benchmarks/bench_digest.py [--subscribers 10000] [--stories 40]``. Not collected by
pytest. The sink is aiosmtpd on 127.0.0.1 in its own process (tests/smtpd.py, counting only). In the same run:

- build: the digest rendered once, then one message per subscriber by substitution (tokens signed, headers and
  quoted-printable values encoded). Target: all of them in under 1 s.
- raw: smtplib sending one prepared message over one reused connection, as fast as the sink takes it.
- delivery: ``send_due_digest`` over SMTP (per message one SQLite transaction: record the last, claim the next).
  Target: at least 80% of the raw rate.
- personalised build (issue 18): the same subscribers spread over ``--topic-sets`` distinct topic sets. "Build" is:
  the digest made (``ensure_digest``: selected, one edition rendered per topic set, digest, editions and one delivery
  row per subscriber stored), one message template per edition, then every pending delivery read back and its message
  built as ``deliver_digest`` builds it (address, signed unsubscribe and preferences links, Message-ID, bytes).
  Nothing is sent. Target: all of it in under 2 s.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import smtplib
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from ingest.core.config import DigestConfig, MailConfig, PublishConfig, Settings  # noqa: E402
from ingest.core.links import preferences_url  # noqa: E402
from ingest.store import (  # noqa: E402
    Store,
    schema,
)
from ingest.topics import taxonomy_of  # noqa: E402
from newsletter.digest import compose, job  # noqa: E402
from newsletter.digest.select import period_for  # noqa: E402
from newsletter.digest.send import unsubscribe_links  # noqa: E402
from newsletter.subscribers.addresses import normalize  # noqa: E402
from newsletter.subscribers.tokens import Tokens  # noqa: E402
from tests.maildata import page_story  # noqa: E402
from tests.smtpd import SmtpSink  # noqa: E402

W48_START = datetime(2026, 11, 23, tzinfo=UTC)
DUE = datetime(2026, 11, 30, 8, tzinfo=UTC)


def sink_process(conn: Connection, delay: float = 0.0) -> None:
    with SmtpSink(keep=False) as sink:
        sink.delay = delay
        conn.send(sink.port)
        while (asked := conn.recv()) != "stop":
            conn.send(dict(sink.recipients) if asked == "recipients" else sink.count)
        conn.send(sink.count)


class RemoteSink:
    """The sink in a process of its own (``delay``: seconds before each DATA is answered, as a relay takes)."""

    def __init__(self, delay: float = 0.0) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=sink_process, args=(child, delay), daemon=True)
        self.proc.start()
        self.port = int(self.conn.recv())

    def count(self) -> int:
        self.conn.send("count")
        return int(self.conn.recv())

    def recipients(self) -> dict[str, int]:
        """Messages received per recipient."""
        self.conn.send("recipients")
        got: dict[str, int] = self.conn.recv()
        return got

    def stop(self) -> int:
        self.conn.send("stop")
        n = int(self.conn.recv())
        self.proc.join(timeout=30)
        return n


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
    "radiation",
    "surgery",
    "relapse",
    "remission",
    "screening",
    "imaging",
    "genomic",
    "mutation",
    "inhibitor",
    "antibody",
    "vaccine",
    "chemotherapy",
    "adjuvant",
    "lesion",
    "marrow",
    "lymph",
    "breast",
    "lung",
    "prostate",
    "colon",
    "ovarian",
    "pancreatic",
    "gastric",
    "renal",
    "bladder",
    "melanoma",
    "myeloma",
    "leukaemia",
]


def fill(store: Store, subscribers: int, stories: int) -> None:
    """``stories`` stories of the week and ``subscribers`` confirmed subscribers of every topic."""
    rnd = random.Random(48)
    for i in range(stories):
        page_story(
            store,
            " ".join(rnd.sample(WORDS, 9)).capitalize() + f" ({i})",
            first_seen=W48_START + timedelta(hours=i),
            published=W48_START - timedelta(days=i % 5),
            tags=["recap"] if i % 6 == 0 else [],
            page=f"/srv/seeds/page{i % 7}.txt",
            summary=" ".join(rnd.choices(WORDS, k=40)).capitalize() + ".",
        )
    add_subscribers(store, subscribers)


def add_subscribers(store: Store, n: int, topic_sets: Sequence[tuple[str, ...]] = ((),)) -> None:
    """``n`` confirmed subscribers, their topics taken from ``topic_sets`` in turn."""
    if not n:
        return
    with store.engine.begin() as conn:
        conn.execute(
            insert(schema.subscriber),
            [
                {
                    "email": f"reader{i:05d}@example.org",
                    "status": "confirmed",
                    "created_at": W48_START,
                    "confirmed_at": W48_START,
                    "bounces": 0,
                    "topics": list(topic_sets[i % len(topic_sets)]),
                }
                for i in range(n)
            ],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--stories", type=int, default=40)
    parser.add_argument("--topic-sets", type=int, default=200)
    parser.add_argument("--only-personalised", action="store_true", help="Skip the delivery part.")
    args = parser.parse_args()
    personalised(args.subscribers, args.stories, args.topic_sets)
    if args.only_personalised:
        return
    n = args.subscribers
    print(f"digest benchmark: {n} subscribers, {args.stories} stories, {os.cpu_count()} CPUs, sink in its own process")

    with tempfile.TemporaryDirectory() as tmp:
        sink = RemoteSink()
        settings = Settings(
            publish=PublishConfig(dir=Path(tmp) / "public", base_url="https://news.example.org/"),
            digest=DigestConfig(),
            mail=MailConfig(transport="smtp", host="127.0.0.1", port=sink.port, outbox_dir=Path(tmp) / "outbox"),
            secret_key=SecretStr("benchmark-key-0123456789abcdef"),
        )
        store = Store.open(f"sqlite:///{tmp}/bench.db")
        fill(store, n, args.stories)

        # ---- build ----------------------------------------------------------------------------------------------
        t0 = time.perf_counter()
        selection = job.select_for(store, settings, period_for("2026-W48", settings.digest))
        rendered = compose.render_digest(selection, settings)
        t1 = time.perf_counter()
        template = compose.message_template(rendered, settings, DUE)
        t2 = time.perf_counter()
        tokens = Tokens("benchmark-key-0123456789abcdef")
        sizes = 0
        raw = b""
        for i in range(1, n + 1):
            address = f"reader{i - 1:05d}@example.org"
            url, mailto = unsubscribe_links(settings, tokens, i, address)
            raw = template.build(
                compose.Recipient(address, url, mailto, f"<digest.2026-W48.1.{i}.1796025600@localhost>", url)
            )
            sizes += len(raw)
        t3 = time.perf_counter()
        print(f"render once (select, templates, css-inline): {(t1 - t0) * 1000:.1f} ms")
        print(f"message template (MIME, quoted-printable, cut at slots): {(t2 - t1) * 1000:.1f} ms")
        print(
            f"build {n} messages by substitution: {(t3 - t2) * 1000:.0f} ms "
            f"({(t3 - t2) / n * 1e6:.1f} us each, {sizes / n / 1024:.1f} KiB each) "
            f"-> {'OK' if t3 - t2 < 1 else 'OVER'} (target < 1 s)"
        )

        # ---- raw sink rate, before and after the delivery (the machine is shared: both halves show drift) ------
        def raw_rate(count: int) -> float:
            with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
                start = time.perf_counter()
                for i in range(count):
                    smtp.sendmail("digest@localhost", [f"reader{i:05d}@example.org"], raw)
                return count / (time.perf_counter() - start)

        before_rate = raw_rate(n // 2)

        # ---- delivery -------------------------------------------------------------------------------------------
        before = sink.count()
        t0 = time.perf_counter()
        report = job.send_due_digest(store, settings, DUE)
        deliver_s = time.perf_counter() - t0
        got = sink.count() - before
        after_rate = raw_rate(n // 2)
        sink.stop()
        digest = store.digest_by_period("2026-W48")
        assert digest is not None
        assert report.sent == n == got, (report, got)
        rate = n / deliver_s
        raw_mean = (before_rate + after_rate) / 2
        print(
            f"raw: smtplib, one prepared message, one connection: {before_rate:.0f} msg/s before, "
            f"{after_rate:.0f} msg/s after ({n // 2} messages each)"
        )
        print(
            f"delivery: send_due_digest (make digest + {n} claims/sends/records): {deliver_s:.2f} s = {rate:.0f} msg/s"
            f" = {rate / raw_mean:.0%} of raw -> {'OK' if rate >= 0.8 * raw_mean else 'UNDER'} (target >= 80%)"
        )
        store.close()


def personalised(subscribers: int, stories: int, sets: int) -> None:
    """The build of issue 18: ``subscribers`` spread over ``sets`` distinct topic sets."""
    rnd = random.Random(18)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            publish=PublishConfig(dir=Path(tmp) / "public", base_url="https://news.example.org/"),
            digest=DigestConfig(),
            mail=MailConfig(outbox_dir=Path(tmp) / "outbox"),
            secret_key=SecretStr("benchmark-key-0123456789abcdef"),
        )
        store = Store.open(f"sqlite:///{tmp}/bench.db")
        fill(store, 0, stories)  # the subscribers come with their topics below
        slugs = taxonomy_of(settings.topics).slugs
        for story in store.stories():
            for topic in rnd.sample(slugs, 2):
                store.set_story_topic(story.id, topic, added=True, now=W48_START)
        chosen: set[tuple[str, ...]] = set()
        while len(chosen) < sets:
            chosen.add(tuple(sorted(rnd.sample(slugs, rnd.randint(1, 3)))))
        add_subscribers(store, subscribers, sorted(chosen))
        t0 = time.perf_counter()
        digest, _ = job.ensure_digest(store, settings, period_for("2026-W48", settings.digest), DUE)
        t1 = time.perf_counter()
        editions = store.editions(digest.id)
        templates = {
            eid: compose.message_template(compose.Rendered(e.subject, e.html, e.text), settings, DUE)
            for eid, e in editions.items()
            if e.story_count
        }
        t2 = time.perf_counter()
        tokens = Tokens("benchmark-key-0123456789abcdef")
        built = 0
        for d in store.deliveries(digest.id):
            if d.status != "pending" or d.edition_id is None:
                continue
            # What deliver_digest does for each delivery before sending it: its address, links and message.
            url, mailto = unsubscribe_links(settings, tokens, d.subscriber_id, d.email)
            prefs = preferences_url(settings.publish, tokens.preferences(d.subscriber_id, d.email))
            message_id = compose.message_id(digest, d.subscriber_id, "localhost")
            recipient = compose.Recipient(normalize(d.email), url, mailto, message_id, prefs)
            templates[d.edition_id].build(recipient)
            built += 1
        t3 = time.perf_counter()
        empty = sum(1 for e in editions.values() if not e.story_count)
        print(
            f"personalised: {subscribers} subscribers over {sets} topic sets, {stories} stories "
            f"({len(editions)} editions, {empty} of them empty)"
        )
        print(f"  make the digest (select, render {len(editions) - empty} editions, deliveries): {t1 - t0:.2f} s")
        print(f"  message templates, one per edition: {t2 - t1:.2f} s")
        print(f"  build {built} messages: {t3 - t2:.2f} s")
        total = t3 - t0
        print(f"  total {total:.2f} s -> {'OK' if total < 2 else 'OVER'} (target < 2 s)")
        store.close()


if __name__ == "__main__":
    main()

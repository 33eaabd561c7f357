"""The service: one pass of what is due, catch-up after downtime, the single-instance lock, and the real
``newsletter run`` in a subprocess with a feed server and an SMTP server, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.core.config import Settings, load_settings
from ingest.store import Store
from newsletter.service.lock import SingleInstanceError, instance_lock
from newsletter.service.service import Service
from newsletter.subscribers import manage as subscribers
from tests.conftest import NOW, ROOT
from tests.servers import FEED_BODY, HostileServer
from tests.smtpd import SmtpSink

RunCli = Callable[..., tuple[int, str, str]]
#: Monday of 2026-W49: the digest of 2026-W48 (Nov 23 to 29) is due at 08:00.
DUE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _settings(project: Path, extra: str = "", mail: str = "") -> Settings:
    cfg = project / "newsletter.toml"
    sections = f'\n[mail]\noutbox_dir = "outbox"\n{mail}\n[publish]\ndir = "public"\n'
    cfg.write_text(cfg.read_text() + sections + extra)
    return load_settings(cfg, environ={})


@pytest.fixture
def service(project: Path) -> Iterator[Service]:
    settings = _settings(project)
    with Store.open(settings.storage.url) as store:
        for address in ("ann@example.org", "bob@example.org"):
            subscribers.add(store, address, NOW)
        yield Service(settings, store, clock=lambda: NOW)


def _outbox(service: Service) -> list[Path]:
    return sorted(service.settings.mail.outbox_dir.glob("*.eml")) if service.settings.mail.outbox_dir.exists() else []


def test_a_pass_ingests_publishes_and_sends_nothing_before_the_digest_is_due(service: Service) -> None:
    report = service.run_pass(NOW)
    assert report.errors == ()
    assert sum(r.new for r in report.sources) == 6
    assert report.published is not None
    assert (service.settings.publish.dir / "feed.atom").is_file()
    assert report.digest is not None
    assert _outbox(service) == []


def test_the_digest_missed_during_downtime_is_sent_once_on_restart(service: Service) -> None:
    service.run_pass(NOW)
    report = service.run_pass(DUE + timedelta(hours=5))  # down over the due time, back within catch_up_hours
    assert report.digest is not None
    assert (report.digest.period, report.digest.status, report.digest.sent) == ("2026-W48", "sent", 2)
    assert len(_outbox(service)) == 2
    again = service.run_pass(DUE + timedelta(hours=6))
    assert again.digest is not None
    assert again.digest.sent == 0
    assert len(_outbox(service)) == 2


def test_a_digest_too_late_is_recorded_as_skipped(service: Service) -> None:
    service.run_pass(NOW)
    report = service.run_pass(DUE + timedelta(hours=30))  # catch_up_hours is 24
    assert report.digest is not None
    assert report.digest.status == "skipped"
    assert _outbox(service) == []
    found = service.store.digest_by_period("2026-W48")
    assert found is not None
    assert found.status == "skipped"
    assert found.note is not None and "30.0 h late" in found.note


def test_status_shows_sources_digests_and_subscribers(service: Service, run_cli: RunCli) -> None:
    service.run_pass(NOW)
    service.run_pass(DUE + timedelta(hours=30))
    assert service.settings.source_path is not None
    code, out, err = run_cli("--config", str(service.settings.source_path), "status", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["subscribers"] == {"confirmed": 2}
    assert data["last_digest"]["status"] == "skipped"
    assert data["sources"][0]["status"] == "active"
    (page,) = data["sources"]
    assert {k: page[k] for k in ("kind", "error_count", "last_error", "next_check", "last_success")} == {
        "kind": "page",
        "error_count": 0,
        "last_error": None,
        "next_check": None,  # a seed page is read at every pass
        "last_success": NOW.isoformat(),
    }
    assert data["stories"]["live"] == 6
    assert set(data["stories"]) == {"live", "hidden", "first_seen_this_week", "week"}
    assert data["last_digest"]["note"] == "not sent: due 2026-11-30 08:00 UTC, 30.0 h late"
    assert data["last_digest"]["deliveries"] == {}
    assert set(data["next_digest"]) == {"period", "due"}
    code, out, _ = run_cli("--config", str(service.settings.source_path), "status")
    assert "last digest 2026-W48: skipped" in out


def test_run_once_exit_code_says_whether_a_source_failed(project: Path, run_cli: RunCli) -> None:
    settings = _settings(project)
    assert settings.source_path is not None
    code, _out, err = run_cli("--config", str(settings.source_path), "run", "--once")
    assert code == 0, err
    (project / "seeds" / "broken.txt").write_bytes(b"")
    code, _, err = run_cli("--config", str(settings.source_path), "run", "--once")
    assert code == 1
    assert "file is empty" in err


@pytest.mark.sqlite_only
def test_a_second_instance_refuses_to_start(project: Path) -> None:
    settings = _settings(project)
    assert settings.source_path is not None
    with instance_lock(settings):
        with (
            pytest.raises(SingleInstanceError, match="another `newsletter run` is already using this database"),
            instance_lock(settings),
        ):
            pass
        proc = subprocess.run(
            [sys.executable, "-m", "newsletter", "--config", str(settings.source_path), "run", "--once"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    assert proc.returncode == 2
    assert f"(pid {os.getpid()})" in proc.stderr
    assert "Traceback" not in proc.stderr
    with instance_lock(settings):  # released with its holder
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


@contextlib.contextmanager
def _newsletter(settings: Settings, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``newsletter --config CONFIG ARGS`` in a subprocess, killed if the test leaves it running."""
    assert settings.source_path is not None
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", str(settings.source_path), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_the_real_service_end_to_end(project: Path, hostile_server: HostileServer) -> None:
    """``newsletter run`` in a subprocess: the feed is served, a new seed file and a changed feed appear, the digest
    reaches each confirmed subscriber once, and SIGTERM ends it cleanly (exit 0)."""
    now = datetime.now(UTC)
    due = now - timedelta(minutes=2)  # this week's send time just passed: last week's digest is due now
    send_at = f"{('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')[due.weekday()]} {due:%H:%M}"
    port = _free_port()
    with SmtpSink() as sink:
        settings = _settings(
            project,
            f"""
[[feeds]]
url = "{hostile_server.url("/news")}"
name = "Local news"
[fetch]
trusted_networks = ["127.0.0.1/32"]
timeout = 5.0
interval = 0.02
[web]
port = {port}
[digest]
send_at = "{send_at}"
send_empty = true
""",
            mail=f'transport = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\n',
        )
        assert settings.source_path is not None
        body = FEED_BODY.replace(b"<ttl>90</ttl>", b"")  # no ttl: the feed is checked again within seconds
        hostile_server.set("/news", headers={"Content-Type": "application/rss+xml"}, body=body, etag='"1"')
        with Store.open(settings.storage.url) as store:
            for address in ("ann@example.org", "bob@example.org"):
                subscribers.add(store, address, now)
            subscribers.add(store, "carol@example.org", now)
            subscribers.remove(store, "carol@example.org", now)
        with _newsletter(settings, "run", "--tick", "1") as proc:
            base = f"http://127.0.0.1:{port}"
            _wait_for(lambda: b"First story" in _get(f"{base}/feed.atom")[1], "the feed with the feed's stories")
            assert b"Prolaris in Practice" in _get(f"{base}/feed.atom")[1]
            _wait_for(lambda: sink.count >= 2, "the digest to reach both subscribers")

            page = (project / "seeds" / "000_a91153ef02972648.txt").read_text()
            (project / "seeds" / "new-page.txt").write_text(
                page + "\nA Fresh Teaser From a New Page\nNovember 26th 2026A fresh blurb on a new page.\n"
            )
            changed = body.replace(
                b"<item>",
                b"<item><title>Third story</title><link>http://example.org/3</link><guid>http://example.org/3</guid>"
                b"<description>The third.</description></item><item>",
                1,
            )
            hostile_server.set("/news", headers={"Content-Type": "application/rss+xml"}, body=changed, etag='"2"')
            _wait_for(lambda: b"A Fresh Teaser From a New Page" in _get(f"{base}/feed.atom")[1], "the new seed page")
            _wait_for(lambda: b"Third story" in _get(f"{base}/feed.atom")[1], "the changed feed")
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "stopped" in stderr
        assert sink.received_by() == {"ann@example.org": 1, "bob@example.org": 1}


@pytest.mark.slow
def test_sigint_while_sending_finishes_the_message_in_flight_and_loses_nothing(project: Path) -> None:
    """Ctrl-C (SIGINT) half way through a digest sent over four connections: exit 0; each connection finishes its
    message in flight, every message the server took is recorded as sent, the rest stay pending for the next run
    (none left claimed, none sent twice)."""
    now = datetime.now(UTC)
    due = now - timedelta(minutes=2)
    send_at = f"{('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')[due.weekday()]} {due:%H:%M}"
    with SmtpSink() as sink:
        sink.on_message = lambda _: time.sleep(0.05)  # a slow server: the digest takes a few seconds
        settings = _settings(
            project,
            f'[digest]\nsend_at = "{send_at}"\nsend_empty = true\n',
            mail=f'transport = "smtp"\nhost = "127.0.0.1"\nport = {sink.port}\nconnections = 4\n',
        )
        assert settings.source_path is not None
        with Store.open(settings.storage.url) as store:
            for n in range(80):
                subscribers.add(store, f"reader{n:02d}@example.org", now)
        with _newsletter(settings, "run", "--no-web") as proc:
            _wait_for(lambda: sink.count >= 10, "the digest to start going out")
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "received SIGINT" in stderr
        got = sink.received_by()
        assert 10 <= len(got) < 80  # stopped half way
        assert len(sink.peers) == 4
        assert set(got.values()) == {1}
        with Store.open(settings.storage.url) as store:
            (digest,) = store.digests(limit=1)
            statuses = {d.email: d.status for d in store.deliveries(digest.id)}
        assert {e for e, s in statuses.items() if s == "sent"} == set(got)
        assert {s for e, s in statuses.items() if e not in got} == {"pending"}


@pytest.mark.slow
def test_serve_serves_the_published_feeds_on_the_configured_address(project: Path, run_cli: RunCli) -> None:
    port = _free_port()
    settings = _settings(project, f'[web]\nhost = "127.0.0.1"\nport = {port}\n')
    assert settings.source_path is not None
    assert run_cli("--config", str(settings.source_path), "run", "--once")[0] == 0
    with _newsletter(settings, "serve") as proc:
        _wait_for(lambda: _get(f"http://127.0.0.1:{port}/feed.atom")[0] == 200, "the feed on the configured port")
        assert b"Prolaris in Practice" in _get(f"http://127.0.0.1:{port}/feed.atom")[1]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert f"serving on http://127.0.0.1:{port}/" in out
    assert proc.returncode == 0


def test_each_role_runs_only_its_steps(project: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run --once --role ingest`` reads the sources and publishes, and sends nothing even when a digest is due;
    ``--role sender`` sends the due digest and reads no source."""
    from newsletter import cli

    settings = _settings(project)
    cfg = str(settings.source_path)
    with Store.open(settings.storage.url) as store:
        subscribers.add(store, "ann@example.org", NOW)
    monkeypatch.setattr(cli, "now", lambda: NOW)
    code, _, err = run_cli("--config", cfg, "run", "--once", "--role", "ingest")
    assert code == 0, err
    assert (settings.publish.dir / "feed.atom").is_file()
    with Store.open(settings.storage.url) as store:
        assert len(store.stories()) == 6
    page = next((project / "seeds").glob("*.txt")).read_text(encoding="utf-8")

    monkeypatch.setattr(cli, "now", lambda: DUE + timedelta(hours=1))
    code, _, err = run_cli("--config", cfg, "run", "--once", "--role", "ingest")
    assert code == 0, err
    with Store.open(settings.storage.url) as store:
        assert store.digest_by_period("2026-W48") is None  # due now, but not this process's to send
    (project / "seeds" / "later.txt").write_text(page + "\nA Later Teaser\nNovember 28th 2026A later blurb.\n")

    code, _, err = run_cli("--config", cfg, "run", "--once", "--role", "sender")
    assert code == 0, err
    assert len(list(settings.mail.outbox_dir.glob("*.eml"))) == 1
    with Store.open(settings.storage.url) as store:
        assert len(store.stories()) == 6  # the new page waits for an ingest process
        assert not [s for s in store.stories() if s.title == "A Later Teaser"]
        digest = store.digest_by_period("2026-W48")
        assert digest is not None
        assert digest.status == "sent"

    code, _, err = run_cli("--config", cfg, "run", "--once", "--role", "web")
    assert (code, err.strip()) == (
        2,
        "error: --once runs the ingest and sender steps once; --role web alone has none (use `serve`)",
    )
    code, _, err = run_cli("--config", cfg, "run", "--role", "nobody")
    assert code == 2
    assert "'nobody' is not one of 'ingest', 'sender', 'web'" in err


@pytest.mark.slow
def test_a_web_process_runs_beside_the_workers(project: Path) -> None:
    """Big installs run the parts apart: ``run --role ingest --role sender`` (it holds the SQLite instance lock) and
    ``run --role web`` beside it, serving what the other publishes; SIGTERM stops each cleanly."""
    port = _free_port()
    settings = _settings(project, f"[web]\nport = {port}\n")
    with _newsletter(settings, "run", "--role", "ingest", "--role", "sender", "--tick", "1") as workers:
        with _newsletter(settings, "run", "--role", "web") as web:
            base = f"http://127.0.0.1:{port}"
            _wait_for(lambda: b"Prolaris in Practice" in _get(f"{base}/feed.atom")[1], "the feed the workers publish")
            assert _get(f"{base}/subscribe")[0] == 200
            web.send_signal(signal.SIGTERM)
            web_out, web_err = web.communicate(timeout=60)
        assert web.returncode == 0, web_err
        assert "roles     web" in web_out
        assert workers.poll() is None  # the workers go on without the web
        workers.send_signal(signal.SIGTERM)
        out, err = workers.communicate(timeout=60)
    assert workers.returncode == 0, err
    assert "roles     ingest, sender" in out
    assert f"127.0.0.1:{port}" not in out  # no web in that process

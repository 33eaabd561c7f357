"""The subscribe form against floods: a limit per client address, an hourly cap on confirmation mails, a honeypot.

Through the real app on uvicorn with a fixed clock. Clients other than 127.0.0.1 are real: Linux routes all of
127.0.0.0/8 to the loopback, so a client socket bound to 127.0.0.7 is a different client address. Refused requests get
the very page a granted one gets ("check your inbox"), nothing is mailed, and one warning line is logged.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from ingest.store import Store
from newsletter.web.app import server_config
from tests.maildata import make_settings
from tests.mailsite import Site, live_site, serve, serve_app

LOGGER = "newsletter.subscribers"


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Site]:
    settings = make_settings(tmp_path, subscribe={"per_client_per_hour": 5, "mails_per_hour": 8})
    with live_site(tmp_path, db_url, settings) as s:
        yield s


def _client(url: str, ip: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from ``ip`` (any address of 127.0.0.0/8)."""
    return httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=ip))


def _subscribe(client: httpx.Client, email: str, **extra: str) -> str:
    answer = client.post("/subscribe", data={"email": email, **extra})
    assert answer.status_code == 200, answer.text
    assert "Check your inbox" in answer.text
    # The page must be the same whatever happened: only the address it echoes differs.
    return answer.text.replace(email, "ADDRESS")


def _mailed(site: Site) -> list[str]:
    return sorted(str(m["To"]) for m in site.outbox())


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_one_client_gets_per_client_per_hour_requests(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with _client(site.url) as client, caplog.at_level(logging.WARNING, logger=LOGGER):
        pages = {_subscribe(client, f"reader{n}@example.org") for n in range(7)}
        assert len(pages) == 1  # the refused ones look exactly like the others
        assert _mailed(site) == [f"reader{n}@example.org" for n in range(5)]
        assert site.status("reader5@example.org") is None  # refused before anything was stored
        assert _refusals(caplog) == [
            "subscribe request from 127.0.0.1 not mailed: 6 requests from this client in the last hour, over "
            "[subscribe] per_client_per_hour = 5",
            "subscribe request from 127.0.0.1 not mailed: 7 requests from this client in the last hour, over "
            "[subscribe] per_client_per_hour = 5",
        ]
        with _client(site.url, "127.0.0.2") as other:  # another client is not held back
            _subscribe(other, "neighbour@example.org")
        site.clock.now += timedelta(minutes=59)
        _subscribe(client, "reader7@example.org")  # the window slides: still seven in the last hour
        site.clock.now += timedelta(minutes=2)
        _subscribe(client, "reader8@example.org")
    assert _mailed(site) == sorted(
        [*(f"reader{n}@example.org" for n in range(5)), "neighbour@example.org", "reader8@example.org"]
    )


def test_confirmation_mails_are_capped_per_hour_whoever_asks(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for n in range(12):
            with _client(site.url, f"127.0.1.{n + 1}") as client:
                _subscribe(client, f"reader{n}@example.org")
    assert _mailed(site) == sorted(f"reader{n}@example.org" for n in range(8))
    assert _refusals(caplog)[-1] == (
        "subscribe request from 127.0.1.12 not mailed: 8 confirmation mails in the last hour, the cap of "
        "[subscribe] mails_per_hour = 8"
    )
    assert len(_refusals(caplog)) == 4
    site.clock.now += timedelta(hours=1, seconds=1)
    with _client(site.url, "127.0.1.12") as client:
        _subscribe(client, "reader11@example.org")
    assert "reader11@example.org" in _mailed(site)


def test_a_flood_at_once_mails_exactly_the_cap(site: Site) -> None:
    """Forty requests at the same moment from forty clients: the counts are taken one at a time in the database."""
    barrier = threading.Barrier(40)
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            with _client(site.url, f"127.0.2.{n + 1}") as client:
                barrier.wait(timeout=30)
                _subscribe(client, f"flood{n}@example.org")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(_mailed(site)) == 8


def test_the_honeypot_field_filled_sends_nothing(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    with _client(site.url) as client, caplog.at_level(logging.WARNING, logger=LOGGER):
        form = client.get("/subscribe").text
        assert re.search(r'<input id="website" name="website" type="text"[^>]* tabindex="-1"', form)
        human = _subscribe(client, "human@example.org", website="")
        bot = _subscribe(client, "bot@example.org", website="http://spam.example/")
    assert bot == human
    assert _mailed(site) == ["human@example.org"]
    assert site.status("bot@example.org") is None
    assert _refusals(caplog) == ["subscribe request from 127.0.0.1 not mailed: the hidden field was filled (a bot)"]


def test_the_counts_are_shared_by_processes_and_outlive_a_restart(
    site: Site, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two servers, each with its own store handle on the same database (as two processes would have); then a
    third, started after the second stopped (a restart)."""
    with _other_server(site, db_url) as second, _client(site.url) as a, _client(second) as b:
        for n in range(4):
            _subscribe(a if n % 2 else b, f"reader{n}@example.org")
    with _other_server(site, db_url) as restarted, _client(restarted) as c, caplog.at_level(logging.WARNING):
        _subscribe(c, "reader4@example.org")
        _subscribe(c, "reader5@example.org")
    assert _mailed(site) == [f"reader{n}@example.org" for n in range(5)]
    assert len(_refusals(caplog)) == 1


@contextmanager
def _other_server(site: Site, db_url: str) -> Iterator[str]:
    store = Store.open(db_url)
    try:
        with serve(site.settings, store, site.clock) as url:
            yield url
    finally:
        store.close()


@pytest.mark.parametrize(("trusted", "limited"), [([], True), (["127.0.0.1"], False)])
def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(
    tmp_path: Path, db_url: str, trusted: list[str], limited: bool, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, subscribe={"per_client_per_hour": 2}, web={"trusted_proxies": trusted})
    with (
        Store.open(db_url) as store,
        serve_app(server_config(settings, store)) as url,
        _client(url) as proxy,
        caplog.at_level(logging.WARNING, logger=LOGGER),
    ):
        for n in range(3):
            answer = proxy.post(
                "/subscribe",
                data={"email": f"reader{n}@example.org"},
                headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
            )
            assert answer.status_code == 200
    mailed = len(list(settings.mail.outbox_dir.glob("*.eml")))
    assert mailed == (2 if limited else 3)
    assert len(_refusals(caplog)) == (1 if limited else 0)

"""Delivery against a real aiosmtpd server on 127.0.0.1: one copy each, 4xx retried, 5xx bounced, the outbox,
unsubscribing mid-send, TLS and login, and exactly once across SIGKILL (a subprocess killed half way, restarted).
Hostile rows and servers: unusable addresses edited into the table, a server closing with 421 or answering 4xx to
everything, soft bounces counted until the subscriber is suppressed."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from ingest.core.config import Settings
from ingest.core.errors import AddressError
from ingest.core.models import Outcome
from ingest.store import Store
from newsletter import cli
from newsletter.digest import compose, job
from newsletter.digest.select import period_for
from newsletter.digest.send import BACKOFF, Pacer, backoff, deliver_digest, lease_length
from newsletter.digest.transports import OutboxTransport, SmtpTransport
from newsletter.subscribers import manage as subscribers
from newsletter.subscribers.tokens import Tokens
from tests.conftest import write_config
from tests.maildata import SECRET, W48_DUE, W48_START, confirmed, make_settings, page_story
from tests.servers import self_signed_certificate
from tests.smtpd import Received, SmtpSink

SENDER = "digest@news.example.org"
RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        page_story(s, "A story of the week", first_seen=W48_START + timedelta(days=1))
        page_story(s, "Another story", first_seen=W48_START + timedelta(days=2), page="/srv/seeds/b.txt")
        yield s


def _smtp(tmp_path: Path, sink: SmtpSink, **mail_kw: object) -> Settings:
    return make_settings(tmp_path, mail={"transport": "smtp", "host": sink.host, "port": sink.port, **mail_kw})


def _statuses(store: Store, period: str = "2026-W48") -> dict[str, str]:
    digest = store.digest_by_period(period)
    assert digest is not None
    return {d.email: d.status for d in store.deliveries(digest.id)}


def test_each_confirmed_subscriber_gets_one_copy(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = _smtp(tmp_path, smtp_sink)
    confirmed(store, "a@example.org", "b@example.org", "c@xn--bcher-kva.example.org")
    subscribers.request(store, make_settings(tmp_path), "pending@example.org", W48_START)  # never confirmed
    confirmed(store, "gone@example.org")
    subscribers.remove(store, "gone@example.org", W48_START)

    report = job.send_due_digest(store, settings, W48_DUE)
    assert (report.period, report.status, report.created, report.stories, report.sent) == (
        "2026-W48",
        "sent",
        True,
        2,
        3,
    )
    assert smtp_sink.received_by() == {"a@example.org": 1, "b@example.org": 1, "c@xn--bcher-kva.example.org": 1}
    for got in smtp_sink.messages:
        assert got.mail_from == SENDER
        msg = got.parsed()
        assert msg["To"] == got.rcpt_tos[0]  # the header says who the envelope goes to, never the other way
        assert msg["Subject"] == "Oncology digest: 2 new stories, Nov 23 to 29"
    rows = {d.email: d for d in store.deliveries(store.digest_by_period("2026-W48").id)}  # type: ignore[union-attr]
    assert {d.status for d in rows.values()} == {"sent"}
    ids = {m.parsed()["Message-ID"] for m in smtp_sink.messages}
    assert ids == {d.message_id for d in rows.values()}
    assert all((d.reply or "").startswith("250 ") for d in rows.values())

    again = job.send_due_digest(store, settings, W48_DUE + timedelta(hours=1))
    assert (again.created, again.sent, again.runs) == (False, 0, ())
    assert len(smtp_sink.messages) == 3


def test_4xx_is_retried_with_backoff_and_the_rest_go_on(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = _smtp(tmp_path, smtp_sink)
    confirmed(store, "a@example.org", "busy@example.org", "c@example.org")
    smtp_sink.soft["busy@example.org"] = 2

    first = job.send_due_digest(store, settings, W48_DUE)
    assert (first.status, first.sent, first.runs[0].retried) == ("pending", 2, 1)
    assert first.retry_at is not None
    assert first.retry_at - W48_DUE >= backoff(1)  # type: ignore[operator]
    assert _statuses(store)["busy@example.org"] == "pending"

    early = job.send_due_digest(store, settings, W48_DUE + timedelta(seconds=30))
    assert early.sent == 0  # not due yet: nothing tried
    second = job.send_due_digest(store, settings, first.retry_at)
    assert second.runs[0].retried == 1  # the second 450
    third = job.send_due_digest(store, settings, second.retry_at)  # type: ignore[arg-type]
    assert (third.sent, third.status) == (1, "sent")
    assert smtp_sink.received_by() == {"a@example.org": 1, "busy@example.org": 1, "c@example.org": 1}
    assert smtp_sink.rcpt_calls["busy@example.org"] == 3


def test_5xx_fails_counts_a_bounce_and_marks_bounced_at_the_limit(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    settings = _smtp(tmp_path, smtp_sink, bounce_limit=2)
    confirmed(store, "a@example.org", "nobody@example.org", "refused@example.org")
    smtp_sink.hard.add("nobody@example.org")
    smtp_sink.hard_data.add("refused@example.org")

    report = job.send_due_digest(store, settings, W48_DUE)
    assert (report.status, report.sent, report.failed) == ("sent", 1, 2)
    assert _statuses(store) == {
        "a@example.org": "sent",
        "nobody@example.org": "failed",
        "refused@example.org": "failed",
    }
    digest = store.digest_by_period("2026-W48")
    assert digest is not None
    replies = {d.email: d.reply for d in store.deliveries(digest.id)}
    assert (replies["nobody@example.org"] or "").startswith("550 5.1.1")
    assert (replies["refused@example.org"] or "").startswith("554 5.7.1")
    nobody = store.subscriber_by_email("nobody@example.org")
    assert nobody is not None
    assert (nobody.status, nobody.bounces) == ("confirmed", 1)

    page_story(store, "Next week's story", first_seen=W48_DUE, page="/srv/seeds/c.txt")
    job.send_due_digest(store, settings, W48_DUE + timedelta(days=7))
    nobody = store.subscriber_by_email("nobody@example.org")
    assert nobody is not None
    assert (nobody.status, nobody.bounces) == ("bounced", 2)

    page_story(store, "A third week", first_seen=W48_DUE + timedelta(days=7), page="/srv/seeds/d.txt")
    job.send_due_digest(store, settings, W48_DUE + timedelta(days=14))
    assert "nobody@example.org" not in _statuses(store, "2026-W50")  # bounced: no longer sent to
    assert smtp_sink.received_by()["a@example.org"] == 3


def test_a_success_clears_the_bounce_count(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = _smtp(tmp_path, smtp_sink)
    confirmed(store, "flaky@example.org")
    smtp_sink.hard.add("flaky@example.org")
    job.send_due_digest(store, settings, W48_DUE)
    smtp_sink.hard.clear()
    page_story(store, "Next week's story", first_seen=W48_DUE, page="/srv/seeds/c.txt")
    job.send_due_digest(store, settings, W48_DUE + timedelta(days=7))
    flaky = store.subscriber_by_email("flaky@example.org")
    assert flaky is not None
    assert flaky.bounces == 0


def test_a_timeout_is_retried_and_the_rest_go_on(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = _smtp(tmp_path, smtp_sink, timeout=2)
    confirmed(store, "a@example.org", "slow@example.org", "c@example.org")
    smtp_sink.hang.add("slow@example.org")
    report = job.send_due_digest(store, settings, W48_DUE)
    assert (report.sent, report.runs[0].retried, report.status) == (2, 1, "pending")
    assert _statuses(store)["slow@example.org"] == "pending"
    assert smtp_sink.received_by() == {"a@example.org": 1, "c@example.org": 1}


def test_unsubscribing_while_a_digest_goes_out(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """One connection: c's delivery is not claimed yet when the first message is on the wire (with several, each
    connection claims one ahead: c unsubscribing then is sent this one digest)."""
    settings = _smtp(tmp_path, smtp_sink, connections=1)
    confirmed(store, "a@example.org", "b@example.org", "c@example.org")
    c = store.subscriber_by_email("c@example.org")
    assert c is not None
    token = Tokens(SECRET).unsubscribe(c.id, c.email)

    def unsubscribe_c(got: Received) -> None:
        if got.rcpt_tos == ("a@example.org",):  # the first message is on the wire: c clicks "unsubscribe" now
            assert subscribers.unsubscribe(store, settings, token, W48_DUE) is not None

    smtp_sink.on_message = unsubscribe_c
    report = job.send_due_digest(store, settings, W48_DUE)
    assert smtp_sink.received_by() == {"a@example.org": 1, "b@example.org": 1}
    assert _statuses(store) == {"a@example.org": "sent", "b@example.org": "sent", "c@example.org": "cancelled"}
    assert report.status == "sent"


def test_a_server_that_is_down_loses_nothing(store: Store, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(tmp_path, mail={"transport": "smtp", "host": "127.0.0.1", "port": port, "timeout": 5})
    confirmed(store, "a@example.org", "b@example.org")
    report = job.send_due_digest(store, settings, W48_DUE)
    assert report.error is not None
    assert "cannot connect" in report.error
    assert (report.status, report.sent) == ("pending", 0)
    digest = store.digest_by_period("2026-W48")
    assert digest is not None
    assert [(d.status, d.attempts) for d in store.deliveries(digest.id)] == [("pending", 0), ("pending", 0)]
    with SmtpSink() as sink:
        later = job.send_due_digest(store, _smtp(tmp_path, sink), W48_DUE + timedelta(minutes=10))
        assert (later.sent, later.status) == (2, "sent")
        assert sink.received_by() == {"a@example.org": 1, "b@example.org": 1}


def test_a_claim_holds_until_its_lease_runs_out(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    confirmed(store, "a@example.org")
    digest, _ = job.ensure_digest(store, settings, period_for("2026-W48", settings.digest), W48_DUE)
    lease = lease_length(settings)
    held = store.claim_next(digest.id, "dead process", W48_DUE, W48_DUE + lease)
    assert held is not None
    assert (held.status, held.attempts, held.email) == ("sending", 1, "a@example.org")
    assert store.claim_next(digest.id, "another", W48_DUE + lease / 2, W48_DUE + lease) is None
    taken = store.claim_next(digest.id, "another", W48_DUE + lease, W48_DUE + 2 * lease)
    assert taken is not None
    assert (taken.id, taken.lease_owner, taken.attempts) == (held.id, "another", 2)
    # The dead process's late outcome does not overwrite the new holder's claim.
    store.record_outcomes([Outcome(held.id, held.subscriber_id, "sent", W48_DUE + lease, "250 late")], "dead process")
    assert store.deliveries(digest.id)[0].status == "sending"
    # A restart that knows it is alone ends the claim at once.
    assert store.expire_leases(W48_DUE + lease) == 1
    again = store.claim_next(digest.id, "restarted", W48_DUE + lease, W48_DUE + 2 * lease)
    assert again is not None
    assert again.lease_owner == "restarted"


def test_outbox_transport_writes_one_file_per_delivery(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    confirmed(store, "a@example.org", "b@example.org")
    report = job.send_due_digest(store, settings, W48_DUE)
    assert (report.sent, report.status) == (2, "sent")
    files = sorted(p.name for p in settings.mail.outbox_dir.iterdir())
    a = store.subscriber_by_email("a@example.org")
    b = store.subscriber_by_email("b@example.org")
    assert a is not None
    assert b is not None
    assert files == sorted([f"2026-W48-{a.id}.eml", f"2026-W48-{b.id}.eml"])  # no temp file left behind
    raw = (settings.mail.outbox_dir / f"2026-W48-{a.id}.eml").read_bytes()
    assert b"\r\nTo: a@example.org\r\n" in raw
    assert b"\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw


class _Watching(OutboxTransport):
    """The outbox, checking at each :meth:`finish` that no earlier message lacks its outcome, and able to stop."""

    def __init__(self, store: Store, folder: Path, *, fail_at: int = 0) -> None:
        super().__init__(folder)
        self.store = store
        self.finished = 0
        self.fail_at = fail_at

    def finish(self) -> None:
        self.finished += 1
        if self.finished == self.fail_at:
            raise RuntimeError("boom")
        sending = [d for d in self.store.deliveries(1) if d.status == "sending"]
        assert len(sending) <= 2, sending  # this message, and the next one claimed
        super().finish()
        sent = [d for d in self.store.deliveries(1) if d.status == "sent"]
        assert len(sent) == self.finished - 1  # every message before this one has its outcome stored


def _run(store: Store, settings: Settings, transport: OutboxTransport, stop: Callable[[], bool] | None = None) -> None:
    digest, _ = job.ensure_digest(store, settings, period_for("2026-W48", settings.digest), W48_DUE)
    assert digest.id == 1
    deliver_digest(
        store, settings, digest, transports=[transport], tokens=Tokens(SECRET), clock=lambda: W48_DUE, stop=stop
    )


def test_each_outcome_is_stored_before_the_next_message_can_be_accepted(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    confirmed(store, *(f"s{i}@example.org" for i in range(5)))
    transport = _Watching(store, settings.mail.outbox_dir)
    _run(store, settings, transport)
    assert transport.finished == 5
    assert {d.status for d in store.deliveries(1)} == {"sent"}


def test_stopping_half_way_leaves_nothing_claimed(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    confirmed(store, *(f"s{i}@example.org" for i in range(5)))
    transport = _Watching(store, settings.mail.outbox_dir)
    _run(store, settings, transport, stop=lambda: transport.finished >= 2)
    assert [(d.status, d.attempts) for d in store.deliveries(1)] == [("sent", 1)] * 2 + [("pending", 0)] * 3


def test_an_unexpected_error_releases_what_was_claimed(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    confirmed(store, *(f"s{i}@example.org" for i in range(4)))
    transport = _Watching(store, settings.mail.outbox_dir, fail_at=2)
    with pytest.raises(RuntimeError, match="boom"):
        _run(store, settings, transport)
    # The first was sent; the second (failed before it could go) and the third (claimed ahead) are back untouched.
    assert [(d.status, d.attempts) for d in store.deliveries(1)] == [("sent", 1)] + [("pending", 0)] * 3


def test_an_error_after_a_message_went_still_stores_its_outcome(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while the server answers (building the next message) must not lose the outcome of the message that went:
    put back as untried, it would be sent again at every run."""
    settings = make_settings(tmp_path)
    confirmed(store, *(f"s{i}@example.org" for i in range(4)))
    real = compose.MessageTemplate.build
    built: list[str] = []

    def third_fails(self: compose.MessageTemplate, recipient: compose.Recipient) -> bytes:
        built.append(recipient.address)
        if len(built) == 3:
            raise RuntimeError("a bug in building")
        return real(self, recipient)

    monkeypatch.setattr(compose.MessageTemplate, "build", third_fails)
    transport = _Watching(store, settings.mail.outbox_dir)
    with pytest.raises(RuntimeError, match="a bug in building"):
        _run(store, settings, transport)
    # The second went while the third was being built: it is sent, and the third is back untouched.
    assert [(d.status, d.attempts) for d in store.deliveries(1)] == [("sent", 1)] * 2 + [("pending", 0)] * 2


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_login(store: Store, tmp_path: Path, security: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # our client verifies the server against the default trust store
    confirmed(store, "a@example.org")
    kw = {"tls": server_ctx} if security == "tls" else {"starttls": server_ctx, "logins": {"digest": "s3cret"}}
    with SmtpSink(**kw) as sink:  # type: ignore[arg-type]
        settings = _smtp(tmp_path, sink, security=security, username="digest" if security == "starttls" else None)
        settings = settings.model_copy(update={"smtp_password": SecretStr("s3cret")})
        report = job.send_due_digest(store, settings, W48_DUE)
        assert report.error is None
        assert sink.received_by() == {"a@example.org": 1}
        if security == "starttls":
            assert sink.auth_seen == ["digest"]


def test_a_wrong_password_stops_the_run(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed_certificate(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    confirmed(store, "a@example.org")
    with SmtpSink(starttls=server_ctx, logins={"digest": "right"}) as sink:
        settings = _smtp(tmp_path, sink, security="starttls", username="digest")
        report = job.send_due_digest(store, settings, W48_DUE)
        assert report.error is not None
        assert "login as 'digest' refused" in report.error
        assert sink.messages == []
    assert _statuses(store) == {"a@example.org": "pending"}


def test_the_connection_is_reused(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = _smtp(tmp_path, smtp_sink)
    transport = SmtpTransport(settings)
    connects = 0
    real = transport._connect

    def counting() -> object:
        nonlocal connects
        connects += 1
        return real()

    transport._connect = counting  # type: ignore[method-assign,assignment]
    confirmed(store, *(f"r{i}@example.org" for i in range(5)))
    job.send_due_digest(store, settings, W48_DUE, transports=[transport])
    transport.close()
    assert connects == 1
    assert len(smtp_sink.messages) == 5


def test_several_connections_send_together_each_copy_once(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """``[mail] connections = 4``: four sessions, each reused, with four messages on the wire at once (the sink
    answers none until four wait), and still one copy each."""
    settings = _smtp(tmp_path, smtp_sink, connections=4)
    everyone = [f"r{i:02d}@example.org" for i in range(12)]
    confirmed(store, *everyone)
    smtp_sink.hold_until = 4
    report = job.send_due_digest(store, settings, W48_DUE)
    assert (report.status, report.sent) == ("sent", 12)
    assert smtp_sink.received_by() == dict.fromkeys(everyone, 1)
    assert len(smtp_sink.peers) == 4  # four connections, none opened twice
    assert sum(smtp_sink.peers.values()) == 12
    assert {d.status for d in store.deliveries(1)} == {"sent"}
    ids = [m.parsed()["Message-ID"] for m in smtp_sink.messages]
    assert len(set(ids)) == 12


class _PerConnection(OutboxTransport):
    """One of several connections: at each :meth:`finish`, every message this connection finished before has its
    outcome stored (at most one of its messages is ever without it), whatever the others are doing."""

    def __init__(self, store: Store, folder: Path, connections: int) -> None:
        super().__init__(folder)
        self.store = store
        self.connections = connections
        self.names: list[str] = []

    def finish(self) -> None:
        rows = {f"2026-W48-{d.subscriber_id}": d.status for d in self.store.deliveries(1)}
        assert [n for n in self.names if rows[n] != "sent"] == []
        assert list(rows.values()).count("sending") <= 2 * self.connections  # one on the wire, one claimed ahead
        assert self._target is not None
        self.names.append(self._target.stem)
        super().finish()


def test_each_connection_has_at_most_one_message_without_its_outcome(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    confirmed(store, *(f"s{i:02d}@example.org" for i in range(16)))
    digest, _ = job.ensure_digest(store, settings, period_for("2026-W48", settings.digest), W48_DUE)
    transports = [_PerConnection(store, settings.mail.outbox_dir, 4) for _ in range(4)]
    run = deliver_digest(store, settings, digest, transports=transports, tokens=Tokens(SECRET), clock=lambda: W48_DUE)
    assert (run.sent, run.complete) == (16, True)
    assert sorted(n for t in transports for n in t.names) == sorted(p.stem for p in settings.mail.outbox_dir.iterdir())
    assert len(list(settings.mail.outbox_dir.glob("*.eml"))) == 16


def test_a_server_closing_stops_every_connection(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """A 421 on one connection stops the others after their message in flight; the rest wait, untried."""
    confirmed(store, *(f"r{i:02d}@example.org" for i in range(12)))
    smtp_sink.rcpt_reply = "421 4.3.2 service shutting down"
    report = job.send_due_digest(store, _smtp(tmp_path, smtp_sink, connections=4), W48_DUE)
    assert report.paused is not None
    assert report.paused.startswith("the server answered 421")
    rows = store.deliveries(1)
    tried = [d for d in rows if d.attempts]
    assert 1 <= len(tried) <= 4  # at most the one in flight on each connection
    assert {d.status for d in rows} == {"pending"}
    waits = {d.next_attempt_at for d in rows if not d.attempts}
    assert len(waits) == 1  # the untried wait as long as the first one answered 421
    (until,) = waits
    assert until is not None
    assert until - W48_DUE >= backoff(1)  # type: ignore[operator]
    for d in tried:  # each tried one waits its own backoff, from its own answer
        assert d.next_attempt_at is not None
        assert until <= d.next_attempt_at < until + timedelta(seconds=30)


# ---- hostile rows and servers ------------------------------------------------------------------------------------

#: Addresses no subscribe form lets in, as a migration or an editor could write them: a header injection, the same
#: with its line break lost, an address that is not ASCII (no SMTPUTF8 here), a stray angle bracket.
BAD_ROWS = ("bad\r\nBcc: x@evil.example", "bad Bcc: x@evil.example", "pässe@example.org", "x@evil.example>")


def _insert_raw(store: Store, *emails: str) -> None:
    """Confirmed subscriber rows written with plain SQL: nothing checks them on the way in."""
    with store.engine.begin() as conn:
        for email in emails:
            conn.execute(
                text(
                    "INSERT INTO subscriber (email, status, created_at, bounces)"
                    " VALUES (:email, 'confirmed', CURRENT_TIMESTAMP, 0)"
                ),
                {"email": email},
            )


def _cli_config(tmp_path: Path, sink: SmtpSink | None, extra: str = "") -> str:
    """A config file on the test's database: the sink's SMTP server, or the outbox in ``tmp_path/outbox``."""
    smtp = f'transport = "smtp"\nhost = "{sink.host}"\nport = {sink.port}\n' if sink else 'transport = "outbox"\n'
    mail = f'from_address = "Oncology digest <{SENDER}>"\noutbox_dir = "outbox"\n{smtp}{extra}'
    return str(write_config(tmp_path, f'\n[publish]\nbase_url = "https://news.example.org/"\n\n[mail]\n{mail}'))


def _outbox_messages(folder: Path) -> list[Received]:
    """The outbox's files as the sink would have received them (the recipient from the To header)."""
    found = []
    for path in sorted(folder.glob("*.eml")):
        data = path.read_bytes()
        found.append(Received(SENDER, (str(Received("", (), data).parsed()["To"]),), data))
    return found


@pytest.mark.parametrize("transport", ["smtp", "outbox"])
def test_an_unusable_address_fails_that_delivery_only(
    store: Store,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> None:
    confirmed(store, "a@example.org", "b@example.org")
    _insert_raw(store, *BAD_ROWS)
    confirmed(store, "c@example.org", "d@example.org")
    cfg = _cli_config(tmp_path, smtp_sink if transport == "smtp" else None)
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)

    code, out, err = run_cli("--config", cfg, "digest", "send")
    assert code == 0, err
    assert "digest 2026-W48: sent, 2 stories, 4 sent, 4 failed" in out
    got = smtp_sink.messages if transport == "smtp" else _outbox_messages(tmp_path / "outbox")
    good = {"a@example.org": 1, "b@example.org": 1, "c@example.org": 1, "d@example.org": 1}
    assert Counter(r for m in got for r in m.rcpt_tos) == good
    for m in got:
        msg = m.parsed()
        assert msg["To"] == m.rcpt_tos[0]
        assert "Bcc" not in msg
        assert b"evil.example" not in m.data
    assert not [r for r in smtp_sink.rcpt_calls if "evil" in r]  # nothing even tried at that recipient
    rows = {d.email: d for d in store.deliveries(1)}
    for bad in BAD_ROWS:
        assert rows[bad].status == "failed"
        assert (rows[bad].reply or "").startswith(f"address not usable: {bad!r}: not a valid email address"), bad
        assert "\n" not in (rows[bad].reply or "")
    injected = store.subscriber_by_email(BAD_ROWS[0])
    assert injected is not None
    assert injected.bounces == 1  # what a server would answer to it (553 5.1.3): a hard bounce

    code, out, err = run_cli("--config", cfg, "digest", "send")  # again: nothing more for anyone
    assert code == 0, err
    again = smtp_sink.messages if transport == "smtp" else _outbox_messages(tmp_path / "outbox")
    assert len(again) == 4
    assert {d.status for d in store.deliveries(1)} == {"sent", "failed"}


def _tries(sink: SmtpSink, where: str) -> int:
    """How many times the sink was asked at ``where`` (mail, rcpt or data)."""
    return {"mail": sink.mail_calls, "rcpt": sum(sink.rcpt_calls.values()), "data": sink.data_calls}[where]


@pytest.mark.parametrize("where", ["mail", "rcpt", "data"])
def test_a_421_stops_the_run_and_the_rest_wait(
    store: Store,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    everyone = [f"r{i}@example.org" for i in range(6)]
    confirmed(store, *everyone)
    setattr(smtp_sink, f"{where}_reply", "421 4.3.2 service shutting down")
    cfg = _cli_config(tmp_path, smtp_sink, "connections = 1\n")  # one at a time: exactly one tried
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)

    code, out, err = run_cli("--config", cfg, "digest", "send")
    assert code == 1
    assert "digest 2026-W48: pending, 2 stories, 0 sent, 0 failed" in out
    assert "421 4.3.2 service shutting down" in out + err
    assert _tries(smtp_sink, where) == 1  # the first answer stops the run
    rows = store.deliveries(1)
    assert [(d.status, d.attempts) for d in rows] == [("pending", 1)] + [("pending", 0)] * 5
    assert (rows[0].reply or "").startswith("421 4.3.2")
    assert [d.reply for d in rows[1:]] == [None] * 5  # never tried
    until = rows[0].next_attempt_at
    assert until is not None
    assert backoff(1) <= until - W48_DUE < backoff(1) + timedelta(seconds=30)  # type: ignore[operator]
    assert {d.next_attempt_at for d in rows} == {until}  # everyone waits as long as the one that was answered
    code, out, _ = run_cli("--config", cfg, "status")
    assert code == 0
    assert "last digest 2026-W48: pending (paused: the server answered 421 4.3.2 service shutting down" in out

    monkeypatch.setattr(cli, "now", lambda: W48_DUE + timedelta(seconds=30))
    code, out, err = run_cli("--config", cfg, "digest", "send")
    assert code == 0, err
    assert _tries(smtp_sink, where) == 1  # still waiting: nothing tried

    smtp_sink.mail_reply = smtp_sink.rcpt_reply = smtp_sink.data_reply = None
    monkeypatch.setattr(cli, "now", lambda: until + timedelta(seconds=1))
    code, out, err = run_cli("--config", cfg, "digest", "send")
    assert code == 0, err
    assert "digest 2026-W48: sent, 2 stories, 6 sent, 0 failed" in out
    assert smtp_sink.received_by() == dict.fromkeys(everyone, 1)
    code, out, _ = run_cli("--config", cfg, "status")
    assert "paused" not in out


def test_temporary_failures_in_a_row_stop_the_run(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirmed(store, *(f"r{i}@example.org" for i in range(8)))
    smtp_sink.data_reply = "451 4.3.0 try again later"
    cfg = _cli_config(tmp_path, smtp_sink, "pause_after_retries = 3\nconnections = 1\n")
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)
    code, out, err = run_cli("--config", cfg, "digest", "send")
    assert code == 1
    assert "3 temporary failures in a row, the last: 451 4.3.0 try again later" in out + err
    assert smtp_sink.data_calls == 3
    rows = store.deliveries(1)
    assert [(d.status, d.attempts) for d in rows] == [("pending", 1)] * 3 + [("pending", 0)] * 5
    assert len({d.next_attempt_at for d in rows}) == 1  # the untried wait with the tried
    assert smtp_sink.messages == []


def test_the_default_stops_after_five_temporary_failures(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    confirmed(store, *(f"r{i}@example.org" for i in range(7)))
    smtp_sink.rcpt_reply = "451 4.7.1 greylisted, come back later"
    report = job.send_due_digest(store, _smtp(tmp_path, smtp_sink, connections=1), W48_DUE)
    assert sum(smtp_sink.rcpt_calls.values()) == 5
    assert report.paused is not None
    assert report.paused.startswith("5 temporary failures in a row")
    assert [d.attempts for d in store.deliveries(1)] == [1] * 5 + [0] * 2


# ---- soft bounces ----------------------------------------------------------------------------------------------


def _until_done(store: Store, settings: Settings, now: datetime) -> job.DigestReport:
    """Send the due digest, then each retry when it falls due, until nothing is left."""
    report = job.send_due_digest(store, settings, now)
    for _ in range(20):
        if report.retry_at is None:
            return report
        report = job.send_due_digest(store, settings, report.retry_at)
    raise AssertionError("retries never ended")


def test_soft_bounces_are_counted_and_suppress_at_their_limit(
    store: Store, tmp_path: Path, smtp_sink: SmtpSink, run_cli: RunCli
) -> None:
    settings = _smtp(tmp_path, smtp_sink, soft_bounce_limit=2)
    confirmed(store, "a@example.org", "full@example.org")
    smtp_sink.soft["full@example.org"] = 1000  # a mailbox that stays full

    first = _until_done(store, settings, W48_DUE)
    assert first.status == "sent"
    row = {d.email: d for d in store.deliveries(1)}["full@example.org"]
    assert row.status == "failed"
    assert (row.reply or "").startswith(f"gave up after {len(BACKOFF) + 1} attempts; last answer: 450 4.2.1")
    full = store.subscriber_by_email("full@example.org")
    assert full is not None
    assert (full.status, full.bounces, full.soft_bounces) == ("confirmed", 0, 1)

    page_story(store, "Next week's story", first_seen=W48_DUE, page="/srv/seeds/c.txt")
    _until_done(store, settings, W48_DUE + timedelta(days=7))
    full = store.subscriber_by_email("full@example.org")
    assert full is not None
    assert (full.status, full.bounces, full.soft_bounces) == ("bounced", 0, 2)

    cfg = _cli_config(tmp_path, smtp_sink)
    code, out, err = run_cli("--config", cfg, "subscribers", "list", "--json")
    assert code == 0, err
    listed = {s["email"]: s for s in json.loads(out)}
    assert (listed["full@example.org"]["bounces"], listed["full@example.org"]["soft_bounces"]) == (0, 2)
    assert listed["full@example.org"]["status"] == "bounced"
    code, out, _ = run_cli("--config", cfg, "subscribers", "list")
    assert "soft bounces" in out

    page_story(store, "A third week", first_seen=W48_DUE + timedelta(days=7), page="/srv/seeds/d.txt")
    job.send_due_digest(store, settings, W48_DUE + timedelta(days=14))
    assert "full@example.org" not in _statuses(store, "2026-W50")  # suppressed
    assert smtp_sink.received_by() == {"a@example.org": 3}


def test_a_success_clears_soft_bounces(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = _smtp(tmp_path, smtp_sink)
    confirmed(store, "flaky@example.org")
    smtp_sink.soft["flaky@example.org"] = len(BACKOFF) + 1  # every try of the first week
    _until_done(store, settings, W48_DUE)
    flaky = store.subscriber_by_email("flaky@example.org")
    assert flaky is not None
    assert flaky.soft_bounces == 1
    page_story(store, "Next week's story", first_seen=W48_DUE, page="/srv/seeds/c.txt")
    job.send_due_digest(store, settings, W48_DUE + timedelta(days=7))
    flaky = store.subscriber_by_email("flaky@example.org")
    assert flaky is not None
    assert (flaky.status, flaky.soft_bounces) == ("confirmed", 0)
    assert smtp_sink.received_by() == {"flaky@example.org": 1}


def test_a_server_closing_is_no_soft_bounce(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    """421 says the server is going away, not that this mailbox cannot take mail: giving up on it counts nothing."""
    settings = _smtp(tmp_path, smtp_sink)
    confirmed(store, "a@example.org")
    smtp_sink.rcpt_reply = "421 4.3.2 service shutting down"
    _until_done(store, settings, W48_DUE)
    assert _statuses(store) == {"a@example.org": "failed"}
    a = store.subscriber_by_email("a@example.org")
    assert a is not None
    assert (a.status, a.bounces, a.soft_bounces) == ("confirmed", 0, 0)


# ---- exactly once across SIGKILL ---------------------------------------------------------------------------------

NO_STORY = "sarcoma.reader@example.org"  # chose a topic no story of the week is in
SENDER_SCRIPT = textwrap.dedent(
    """
    import sys
    from datetime import datetime
    from pathlib import Path

    from ingest.core.config import load_settings
    from ingest.store import Store
    from newsletter.digest.job import send_due_digest

    settings = load_settings(Path(sys.argv[1]))
    with Store.open(settings.storage.url) as store:
        report = send_due_digest(store, settings, datetime.fromisoformat(sys.argv[2]))
    print(report.status, report.sent)
    """
)


def _run_sender(config: Path, now: datetime) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["NEWSLETTER_SECRET_KEY"] = SECRET
    return subprocess.Popen(
        [sys.executable, "-c", SENDER_SCRIPT, str(config), now.isoformat()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("connections", [1, 4])
def test_exactly_once_across_sigkill(tmp_path: Path, smtp_sink: SmtpSink, db_url: str, connections: int) -> None:
    """Killed while the server holds a message: at most one duplicate per connection, each the message that
    connection had in flight (same Message-ID); everyone else exactly one copy, of their own edition (issue 18: the
    readers who chose lung get the lung story alone; one whose topic had no story gets nothing)."""
    with Store.open(db_url) as store:
        page_story(store, "A story of the week", first_seen=W48_START + timedelta(days=1))
        lung = page_story(store, "A lung story", first_seen=W48_START + timedelta(days=2))
        store.set_story_topic(lung, "lung", added=True, now=W48_START + timedelta(days=2))
        everyone = [f"reader{i:03d}@example.org" for i in range(200)]
        # Two rows no message can be addressed to: one well before the kill, one right after the message in flight
        # (claimed while that message is on the wire). Both fail; neither disturbs exactly once.
        confirmed(store, *everyone[:50])
        _insert_raw(store, BAD_ROWS[0])
        confirmed(store, *everyone[50:100])
        _insert_raw(store, BAD_ROWS[2])
        confirmed(store, *everyone[100:], NO_STORY)
        for address in everyone[::3]:
            subscribers.set_topics(store, address, ("lung",))
        subscribers.set_topics(store, NO_STORY, ("sarcoma",))
    lung_readers = set(everyone[::3])
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'[storage]\nurl = "{db_url}"\n\n[mail]\ntransport = "smtp"\nhost = "127.0.0.1"\n'
        f'port = {smtp_sink.port}\nfrom_address = "Digest <{SENDER}>"\nconnections = {connections}\n',
        encoding="utf-8",
    )
    victim: dict[str, int] = {}
    killed: list[Received] = []

    def kill_half_way(got: Received) -> None:
        # The 100th message is in the server's hands, its 250 not yet sent back: the sender dies knowing nothing.
        if len(smtp_sink.messages) == 100 and not killed:
            killed.append(got)
            os.kill(victim["pid"], signal.SIGKILL)

    smtp_sink.on_message = kill_half_way
    first = _run_sender(config, W48_DUE)
    victim["pid"] = first.pid
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == -signal.SIGKILL, first_err
    # Other connections' messages may still have reached the server's end of DATA as the sender died.
    assert 100 <= len(smtp_sink.messages) <= 100 + connections - 1

    with Store.open(db_url) as store:
        digest = store.digest_by_period("2026-W48")
        assert digest is not None
        rows = store.deliveries(digest.id)
        states = [d.status for d in rows]
        # The ones in flight when it died (one per connection at most), and those claimed ahead of them.
        in_flight = {d.email for d in rows if d.status == "sending"}
        assert set(killed[0].rcpt_tos) <= in_flight
        assert len(in_flight) <= 2 * connections
        if connections == 1:
            assert states.count("sent") == 99
            assert in_flight == {*killed[0].rcpt_tos, BAD_ROWS[2]}  # claimed ahead, as the comment above says
            assert states.count("failed") == 1  # the first bad row, written with the claim after it
        else:
            assert 100 - connections <= states.count("sent") <= 99
        settings = make_settings(tmp_path)
    # Restarted once the dead process's lease has run out, it finishes the job.
    second = _run_sender(config, W48_DUE + lease_length(settings) + timedelta(seconds=1))
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err

    counts = smtp_sink.received_by()
    assert set(counts) == set(everyone)
    for m in smtp_sink.messages:
        (address,) = m.rcpt_tos
        expected = "1 new story" if address in lung_readers else "2 new stories"
        assert expected in str(m.parsed()["Subject"]), address
    duplicated = {address for address, n in counts.items() if n > 1}
    assert set(killed[0].rcpt_tos) <= duplicated  # the one the server held when the sender died
    assert duplicated <= in_flight  # only messages in flight: never one whose outcome was stored
    assert len(duplicated) <= connections
    assert out.split() == ["sent", str(200 - states.count("sent"))]  # everyone whose outcome was not stored
    for address in duplicated:
        assert counts[address] == 2
        copies = [m.parsed()["Message-ID"] for m in smtp_sink.messages if m.rcpt_tos == (address,)]
        assert copies[0] == copies[1]  # the same Message-ID: mail stores fold the two into one
    with Store.open(db_url) as store:
        digest = store.digest_by_period("2026-W48")
        assert digest is not None
        assert digest.status == "sent"
        final = {d.email: d.status for d in store.deliveries(digest.id)}
        assert final == {
            **dict.fromkeys(everyone, "sent"),
            BAD_ROWS[0]: "failed",
            BAD_ROWS[2]: "failed",
            NO_STORY: "empty",
        }
        assert len(store.editions(digest.id)) == 2  # lung, and sarcoma (empty): rendered once each


# ---- preview and test send ---------------------------------------------------------------------------------------


def test_preview_writes_what_would_be_sent_and_sends_nothing(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    confirmed(store, "a@example.org")
    out = tmp_path / "preview"
    shown = job.preview(store, settings, W48_DUE, out)  # default: the digest due now, not made yet
    assert (shown.period, shown.stories, shown.stored) == ("2026-W48", 2, False)
    assert shown.subject == "Oncology digest: 2 new stories, Nov 23 to 29"
    assert sorted(p.name for p in out.iterdir()) == ["2026-W48.eml", "2026-W48.html", "2026-W48.txt"]
    msg = Received("", (), shown.eml.read_bytes()).parsed()
    assert msg["To"] == shown.address == "a@example.org"  # the first confirmed subscriber
    assert "A story of the week" in shown.html.read_text(encoding="utf-8")
    assert "\x1e" not in shown.html.read_text(encoding="utf-8") + shown.text.read_text(encoding="utf-8")
    assert store.digest_by_period("2026-W48") is None  # nothing made
    assert not settings.mail.outbox_dir.exists()  # nothing sent

    job.send_due_digest(store, settings, W48_DUE)
    page_story(store, "A story that came later", first_seen=W48_START + timedelta(days=3), page="/srv/seeds/c.txt")
    stored = job.preview(store, settings, W48_DUE, out, period="2026-W48")
    assert (stored.stored, stored.stories) == (True, 2)  # exactly what went out, not a new selection
    upcoming = job.preview(store, settings, W48_DUE, out)  # made already: the week in progress
    assert upcoming.period == "2026-W49"


def test_send_test_sends_the_preview_to_one_address(store: Store, tmp_path: Path, smtp_sink: SmtpSink) -> None:
    settings = _smtp(tmp_path, smtp_sink)
    result = job.send_test(store, settings, "Editor@Example.org", W48_DUE)
    assert result.status == "sent"
    assert smtp_sink.received_by() == {"editor@example.org": 1}
    assert smtp_sink.messages[0].parsed()["To"] == "editor@example.org"
    assert store.digest_by_period("2026-W48") is None
    with pytest.raises(AddressError):
        job.send_test(store, settings, "not an address", W48_DUE)


def test_the_sending_rate_is_one_budget_for_every_process(db_url: str, tmp_path: Path) -> None:
    """``[mail] rate = 10``: each message waits for its 1/10 s slot, and two processes (two handles on the database)
    share the budget: their waits interleave instead of each getting 10/s (a clock standing still, so waits add up).
    ``domain_rates``: mail to gmail.com also waits for its own slower slot, and the rest of the mail does not."""
    waits: list[tuple[str, float]] = []
    settings = make_settings(tmp_path, mail={"transport": "smtp", "rate": 10, "domain_rates": {"GMail.com": 1}})
    with Store.open(db_url) as one, Store.open(db_url) as two:
        pacers = {
            name: Pacer(s, settings, wall=lambda: 100.0, sleep=lambda d, n=name: waits.append((n, d)))
            for name, s in (("one", one), ("two", two))
        }
        for name in ("one", "two", "one", "two"):
            pacers[name].wait("a@example.org")
        assert waits == [("two", pytest.approx(0.1)), ("one", pytest.approx(0.2)), ("two", pytest.approx(0.3))]
        waits.clear()
        pacers["one"].wait("x@gmail.com")  # all mail's next slot (0.4); gmail's first is free already
        pacers["two"].wait("y@gmail.com")  # all mail's next is 0.5, gmail's is a second after its first: 1.0
        pacers["one"].wait("b@example.org")  # the rest goes on at all mail's rate: 0.6
        assert waits == [("one", pytest.approx(0.4)), ("two", pytest.approx(1.0)), ("one", pytest.approx(0.6))]
    unlimited = Pacer(Store.open(db_url), make_settings(tmp_path), sleep=lambda d: waits.append(("none", d)))
    unlimited.wait("a@example.org")
    unlimited.store.close()
    assert len(waits) == 3

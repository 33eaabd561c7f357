"""Mail that comes back: delivery reports of Postfix, Exim, Gmail and Exchange, an ARF complaint and a mail to the
unsubscribe address classified from golden files; then, end to end, the digest sent through an SMTP relay, the
reports delivered by aiosmtpd into a Maildir, and ``newsletter inbound`` matching each to its delivery by the signed
envelope sender (VERP), and leaving alone what names none of ours."""

from __future__ import annotations

import json
import mailbox
import os
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import pytest

from ingest.core.config import load_settings
from ingest.store import Store
from newsletter import cli
from newsletter.inbound.classify import classify
from newsletter.subscribers import manage as subscribers
from tests.conftest import GOLDEN, write_config
from tests.imapd import Dovecot
from tests.maildata import W48_DUE, W48_START, confirmed, page_story
from tests.smtpd import Received, SmtpSink

INBOUND = GOLDEN / "inbound"
BOUNCES = "bounces@news.example.org"
UNSUBSCRIBE = "unsubscribe@news.example.org"
PREFIX = "https://news.example.org/unsubscribe/"


@pytest.mark.no_database
@pytest.mark.parametrize("name", sorted(p.stem for p in INBOUND.glob("*.eml")))
def test_what_each_message_says(name: str, update_golden: bool) -> None:
    found = classify(
        (INBOUND / f"{name}.eml").read_bytes(),
        bounce_address=BOUNCES,
        unsubscribe_address=UNSUBSCRIBE,
        unsubscribe_prefix=PREFIX,
    )
    got = json.dumps(asdict(found), indent=2, ensure_ascii=False) + "\n"
    expected = INBOUND / f"{name}.json"
    if update_golden:
        expected.write_text(got, encoding="utf-8")
    assert got == expected.read_text(encoding="utf-8")


# ---- end to end: relay, reports delivered into a Maildir, `newsletter inbound` ------------------------------------

SENDER = "digest@news.example.org"
RunCli = Callable[..., tuple[int, str, str]]


class MailExchanger:
    """Our domain's mail server: aiosmtpd on 127.0.0.1 handing each message, with the envelope in ``Return-Path`` and
    ``Delivered-To`` as Postfix's delivery agents write them, to ``deliver`` (into a Maildir, or an IMAP mailbox);
    what ``deliver`` returned for each, in order, in ``delivered``."""

    def __init__(self, deliver: Callable[[bytes], object]) -> None:
        self.deliver = deliver
        self.delivered: list[object] = []
        self.sink = SmtpSink(keep=False)
        self.sink.on_message = self._deliver

    def _deliver(self, got: Received) -> None:
        for rcpt in got.rcpt_tos:
            head = f"Return-Path: <{got.mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode()
            self.delivered.append(self.deliver(head + got.data))

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> None:
        with smtplib.SMTP(self.sink.host, self.sink.port) as smtp:
            smtp.sendmail(envelope_from, [rcpt], data)


@pytest.fixture
def mx(tmp_path: Path) -> Iterator[MailExchanger]:
    exchanger = MailExchanger(mailbox.Maildir(tmp_path / "inbound", create=True).add)
    with exchanger.sink:
        yield exchanger


def _golden(name: str, pairs: dict[str, str]) -> bytes:
    """A golden message (CRLF line ends, as on the wire) with its placeholders replaced."""
    data = (INBOUND / f"{name}.eml").read_bytes()
    for old, new in pairs.items():
        assert old.encode() in data, (name, old)
        data = data.replace(old.encode(), new.encode())
    return data


POSTFIX_TAG = "bounces+42-0123456789abcdef0123@news.example.org"


def _digest_sent(
    db_url: str, tmp_path: Path, smtp_sink: SmtpSink, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, inbound: str
) -> tuple[str, dict[str, Received]]:
    """Three weeks of stories, four subscribers, and week 48's digest sent through the relay, each delivery with an
    envelope sender of its own (VERP). The config (``inbound``: its ``[inbound]`` keys) and what each one got."""
    with Store.open(db_url) as store:
        page_story(store, "A story of the week", first_seen=W48_START + timedelta(days=1))
        page_story(store, "The next week's story", first_seen=W48_DUE + timedelta(days=1), page="/srv/seeds/b.txt")
        page_story(store, "A third week", first_seen=W48_DUE + timedelta(days=8), page="/srv/seeds/c.txt")
        confirmed(store, "a@example.org", "dead@example.net", "angry@example.com", "leaving@example.com")
    cfg = str(
        write_config(
            tmp_path,
            f'\n[publish]\nbase_url = "https://news.example.org/"\n\n[mail]\ntransport = "smtp"\n'
            f'host = "{smtp_sink.host}"\nport = {smtp_sink.port}\nfrom_address = "Oncology digest <{SENDER}>"\n'
            'bounce_address = "bounces@news.example.org"\nunsubscribe_address = "unsubscribe@news.example.org"\n'
            f"bounce_limit = 2\n\n[inbound]\n{inbound}",
        )
    )
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)
    code, _, err = run_cli("--config", cfg, "digest", "send")
    assert code == 0, err
    sent = {m.rcpt_tos[0]: m for m in smtp_sink.messages}
    assert set(sent) == {"a@example.org", "dead@example.net", "angry@example.com", "leaving@example.com"}
    verp = {m.mail_from for m in sent.values()}
    assert all(v.startswith("bounces+") and v.endswith("@news.example.org") for v in verp)
    assert len(verp) == 4  # one envelope sender per delivery
    return cfg, sent


def _send_reports(mx: MailExchanger, sent: dict[str, Received]) -> None:
    """What the world sends back: a relay's report for dead@, an ARF complaint (to a feedback address: the tag is in
    the report), a one-click mailto unsubscribe (these three first), a report about mail that was never ours naming
    a@, a report with a forged tag for a@'s delivery, a reply."""
    verp = {rcpt: m.mail_from for rcpt, m in sent.items()}
    dead = {POSTFIX_TAG: verp["dead@example.net"], "nobody@example.net": "dead@example.net"}
    mx.send("", verp["dead@example.net"], _golden("postfix-hard", dead))
    arf_tag = "bounces+48-0123456789abcdef0123@news.example.org"
    mx.send("fbl@fbl.mail.example.com", "fbl@news.example.org", _golden("arf", {arf_tag: verp["angry@example.com"]}))
    mailto = str(sent["leaving@example.com"].parsed()["List-Unsubscribe"]).split("<mailto:")[1].split("?")[0]
    assert mailto.startswith("unsubscribe+")
    placeholder = "unsubscribe+23-fedcba9876543210fedc@news.example.org"
    mx.send("leaving@example.com", mailto, _golden("unsubscribe", {placeholder: mailto}))
    mx.send("", SENDER, _golden("someone-elses-bounce", {"nobody@example.net": "a@example.org"}))
    local = verp["a@example.org"].removesuffix("@news.example.org")
    forged = local[:-1] + ("1" if local.endswith("0") else "0") + "@news.example.org"  # one hex digit changed
    mx.send("", forged, _golden("postfix-hard", {POSTFIX_TAG: forged, "nobody@example.net": "a@example.org"}))
    mx.send("a@example.org", SENDER, (INBOUND / "reply.eml").read_bytes())


def _reports_applied(cfg: str, out: str) -> None:
    """What ``newsletter inbound`` said and did with :func:`_send_reports`' six messages."""
    lines = out.splitlines()
    assert any(line.startswith("hard bounce dead@example.net: dead@example.net: 5.1.1") for line in lines), out
    assert any(line.startswith("complained angry@example.com: abuse report") for line in lines), out
    assert any(line.startswith("unsubscribed leaving@example.com:") for line in lines), out
    assert lines[-1].endswith("6 message(s): 1 complained, 1 hard bounce, 3 left alone, 1 unsubscribed"), out
    assert "left alone (no delivery of ours): a@example.org: 5.1.1" in out  # the forged tag
    settings = load_settings(Path(cfg), environ={"NEWSLETTER_SECRET_KEY": "k" * 32})
    with Store.open(settings.storage.url) as store:
        subs = {s.email: s for s in store.subscribers()}
        assert (subs["dead@example.net"].status, subs["dead@example.net"].bounces) == ("confirmed", 1)
        assert subs["angry@example.com"].status == "complained"
        assert subs["leaving@example.com"].status == "unsubscribed"
        assert (subs["a@example.org"].status, subs["a@example.org"].bounces) == ("confirmed", 0)
        rows = {d.email: d for d in store.deliveries(1)}
        assert rows["dead@example.net"].status == "failed"
        assert (rows["dead@example.net"].reply or "").startswith("bounced: dead@example.net: 5.1.1")
        assert rows["a@example.org"].status == "sent"
        # Nobody can make us mail the address that complained, not even a confirmation.
        assert not subscribers.request(store, settings, "angry@example.com", W48_DUE)


def test_reports_that_come_back_are_matched_to_their_deliveries(
    db_url: str,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    mx: MailExchanger,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    maildir = 'source = "maildir"\nmaildir = "inbound"\n'
    cfg, sent = _digest_sent(db_url, tmp_path, smtp_sink, run_cli, monkeypatch, maildir)
    _send_reports(mx, sent)
    code, out, err = run_cli("--config", cfg, "inbound")
    assert code == 0, err
    _reports_applied(cfg, out)
    assert len(smtp_sink.messages) == 4

    # Each message is read once: handled ones are marked seen, the rest left unread for a person.
    code, out, _ = run_cli("--config", cfg, "inbound")
    assert (code, out.splitlines()[-1].endswith("0 message(s): nothing new")) == (0, True), out
    flags = sorted(name.rpartition(":2,")[2] for name in os.listdir(tmp_path / "inbound" / "cur"))
    assert flags == ["", "", "", "S", "S", "S"]
    assert os.listdir(tmp_path / "inbound" / "new") == []

    # Next week the relay takes dead@'s copy again (which clears the count at once) and reports it later: the streak
    # of two reported bounces reaches the limit, and the week after dead@ is not mailed.
    monkeypatch.setattr(cli, "now", lambda: W48_DUE + timedelta(days=7))
    assert run_cli("--config", cfg, "digest", "send")[0] == 0
    week2 = smtp_sink.messages[4:]
    assert sorted(m.rcpt_tos[0] for m in week2) == ["a@example.org", "dead@example.net"]
    again = next(m.mail_from for m in week2 if m.rcpt_tos == ("dead@example.net",))
    report = _golden("postfix-hard", {POSTFIX_TAG: again, "nobody@example.net": "dead@example.net"})
    mx.send("", again, report)
    mx.send("", again, report)
    code, out, err = run_cli("--config", cfg, "inbound")
    assert code == 0, err
    assert "hard bounce (now bounced) dead@example.net" in out
    assert "counted already dead@example.net" in out  # the same report twice counts once
    monkeypatch.setattr(cli, "now", lambda: W48_DUE + timedelta(days=14))
    assert run_cli("--config", cfg, "digest", "send")[0] == 0
    assert [m.rcpt_tos[0] for m in smtp_sink.messages[6:]] == ["a@example.org"]


# ---- the same through a real IMAP server (Dovecot) ----------------------------------------------------------------


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    server = Dovecot(tmp_path / "imap").start()
    try:
        yield server
    finally:
        server.stop()


def _imap(server: Dovecot, **keys: object) -> str:
    """``[inbound]`` keys reading ``server``'s INBOX, with ``keys`` added or changed."""
    values: dict[str, object] = {
        "source": "imap",
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "ca_file": str(server.ca_file),
        "timeout": 5.0,
    } | keys
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items() if value is not None)


@pytest.mark.sqlite_only  # the database's side is the Maildir test's, on both; this one is the IMAP side
def test_reports_read_from_an_imap_server(
    db_url: str,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    dovecot: Dovecot,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reports delivered into a real IMAP mailbox (Dovecot, TLS with a certificate of our own CA), read by
    ``newsletter inbound``: applied to their deliveries, the handled ones flagged \\Seen on the server, the rest
    left unread; a second run reads nothing new."""
    cfg, sent = _digest_sent(db_url, tmp_path, smtp_sink, run_cli, monkeypatch, _imap(dovecot))
    exchanger = MailExchanger(dovecot.append)
    with exchanger.sink:
        _send_reports(exchanger, sent)
        uids = exchanger.delivered
        assert len(uids) == 6
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", dovecot.password)
        code, out, err = run_cli("--config", cfg, "inbound")
        assert code == 0, err + dovecot.tail()
        assert out.splitlines()[-1].startswith(f"inbound imap://news@127.0.0.1:{dovecot.port}/INBOX: 6 message(s)")
        _reports_applied(cfg, out)
        flags = dovecot.flags()
        assert sorted(flags) == sorted(uids)  # nothing deleted or moved
        assert {uid for uid, got in flags.items() if "\\Seen" in got} == set(uids[:3])  # the three handled

        code, out, err = run_cli("--config", cfg, "inbound")
        assert (code, out.splitlines()[-1].endswith("0 message(s): nothing new")) == (0, True), err + out
        assert dovecot.flags() == flags

        # What comes later is read, and only it.
        exchanger.send("a@example.org", SENDER, (INBOUND / "reply.eml").read_bytes())
        code, out, err = run_cli("--config", cfg, "inbound")
        assert (code, out.splitlines()[-1].endswith("1 message(s): 1 left alone")) == (0, True), err + out


@pytest.mark.sqlite_only  # nothing is read: no database involved
def test_imap_says_what_is_wrong_with_its_server(
    tmp_path: Path, dovecot: Dovecot, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"imap://news@127.0.0.1:{dovecot.port}/INBOX"

    def inbound(password: str, **keys: object) -> tuple[int, str, str]:
        monkeypatch.setenv("NEWSLETTER_IMAP_PASSWORD", password)
        return run_cli("--config", str(write_config(tmp_path, "[inbound]\n" + _imap(dovecot, **keys))), "inbound")

    # STARTTLS on the plain port, with the right password: in, and nothing to read.
    code, out, err = inbound(dovecot.password, security="starttls", port=dovecot.starttls_port)
    assert code == 0, err + dovecot.tail()
    assert out == f"inbound imap://news@127.0.0.1:{dovecot.starttls_port}/INBOX: 0 message(s): nothing new\n"

    # A certificate no CA we trust signed; a CA file that is not there, or not one.
    code, _, err = inbound(dovecot.password, ca_file=None)
    assert code == 1
    assert err.startswith(f"error: {name}: the server's certificate is not trusted (self-signed certificate)"), err
    assert "[inbound] ca_file" in err
    code, _, err = inbound(dovecot.password, ca_file="nowhere.pem")
    assert (code, err) == (1, f"error: [inbound] ca_file {tmp_path / 'nowhere.pem'}: No such file or directory\n")
    code, _, err = inbound(dovecot.password, ca_file=str(dovecot.log))
    assert (code, err) == (1, f"error: [inbound] ca_file {dovecot.log}: no PEM certificate in it\n")

    # Last: Dovecot makes logins from an address wait seconds after a failed one.
    code, out, err = inbound("not-the-password")
    assert (code, out) == (1, ""), err
    assert err == f"error: {name}: login refused: [AUTHENTICATIONFAILED] Authentication failed.\n"


def test_inbound_says_what_is_wrong_with_its_mailbox(tmp_path: Path, run_cli: RunCli) -> None:
    cfg = str(write_config(tmp_path, ""))
    code, _, err = run_cli("--config", cfg, "inbound")
    assert (code, err.strip()) == (
        2,
        "error: [inbound] source is 'none': set it to 'maildir' or 'imap' to read mail that comes back",
    )
    cfg = str(write_config(tmp_path, '[inbound]\nsource = "maildir"\nmaildir = "nowhere"\n'))
    code, _, err = run_cli("--config", cfg, "inbound")
    assert code == 1
    assert f"[inbound] maildir {tmp_path / 'nowhere'}: not a Maildir folder (no new/ and cur/ in it)" in err
    assert "Traceback" not in err
    (tmp_path / "secret.toml").write_text('[inbound]\nsource = "imap"\npassword = "hunter2"\n', encoding="utf-8")
    code, _, err = run_cli("--config", str(tmp_path / "secret.toml"), "inbound")
    assert code == 2
    assert "'imap_password' is a secret and is read only from the environment variable NEWSLETTER_IMAP_PASSWORD" in err


def test_the_service_reads_the_mailbox_on_each_pass(
    project: Path, smtp_sink: SmtpSink, mx: MailExchanger, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``newsletter run --once``: bounces that came back are read before the digest goes out."""
    cfg = project / "newsletter.toml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8")
        + f'\n[mail]\ntransport = "smtp"\nhost = "{smtp_sink.host}"\nport = {smtp_sink.port}\n'
        f'from_address = "Oncology digest <{SENDER}>"\nbounce_address = "bounces@news.example.org"\n'
        '\n[inbound]\nsource = "maildir"\nmaildir = "inbound"\n\n[digest]\nsend_empty = true\n',
        encoding="utf-8",
    )
    with Store.open(load_settings(cfg, environ={}).storage.url) as store:
        confirmed(store, "dead@example.net", now=W48_START)
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)
    code, _, err = run_cli("--config", str(cfg), "run", "--once")
    assert code == 0, err
    (message,) = smtp_sink.messages
    report = {POSTFIX_TAG: message.mail_from, "nobody@example.net": "dead@example.net"}
    mx.send("", message.mail_from, _golden("postfix-hard", report))
    code, _, err = run_cli("--config", str(cfg), "run", "--once")
    assert code == 0, err
    assert "inbound 1 message(s)" in err
    with Store.open(load_settings(cfg, environ={}).storage.url) as store:
        dead = store.subscriber_by_email("dead@example.net")
        assert dead is not None
        assert dead.bounces == 1

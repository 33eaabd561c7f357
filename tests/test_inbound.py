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
    """Our domain's mail server: aiosmtpd on 127.0.0.1 delivering each message into a Maildir, with the envelope in
    ``Return-Path`` and ``Delivered-To`` as Postfix's delivery agents write them."""

    def __init__(self, folder: Path) -> None:
        self.maildir = mailbox.Maildir(folder, create=True)
        self.sink = SmtpSink(keep=False)
        self.sink.on_message = self._deliver

    def _deliver(self, got: Received) -> None:
        for rcpt in got.rcpt_tos:
            head = f"Return-Path: <{got.mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode()
            self.maildir.add(head + got.data)

    def send(self, envelope_from: str, rcpt: str, data: bytes) -> None:
        with smtplib.SMTP(self.sink.host, self.sink.port) as smtp:
            smtp.sendmail(envelope_from, [rcpt], data)


@pytest.fixture
def mx(tmp_path: Path) -> Iterator[MailExchanger]:
    exchanger = MailExchanger(tmp_path / "inbound")
    with exchanger.sink:
        yield exchanger


def _golden(name: str, pairs: dict[str, str]) -> bytes:
    """A golden message (CRLF line ends, as on the wire) with its placeholders replaced."""
    data = (INBOUND / f"{name}.eml").read_bytes()
    for old, new in pairs.items():
        assert old.encode() in data, (name, old)
        data = data.replace(old.encode(), new.encode())
    return data


def test_reports_that_come_back_are_matched_to_their_deliveries(
    db_url: str,
    tmp_path: Path,
    smtp_sink: SmtpSink,
    mx: MailExchanger,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
            'bounce_limit = 2\n\n[inbound]\nsource = "maildir"\nmaildir = "inbound"\n',
        )
    )
    monkeypatch.setattr(cli, "now", lambda: W48_DUE)
    code, out, err = run_cli("--config", cfg, "digest", "send")
    assert code == 0, err
    sent = {m.rcpt_tos[0]: m for m in smtp_sink.messages}
    assert set(sent) == {"a@example.org", "dead@example.net", "angry@example.com", "leaving@example.com"}
    verp = {rcpt: m.mail_from for rcpt, m in sent.items()}
    assert all(v.startswith("bounces+") and v.endswith("@news.example.org") for v in verp.values())
    assert len(set(verp.values())) == 4  # one envelope sender per delivery

    # What the world sends back: a relay's report for dead@, an ARF complaint (to a feedback address: the tag is in
    # the report), a one-click mailto unsubscribe, a report about mail that was never ours naming a@, a report with
    # a forged tag for a@'s delivery, a reply.
    postfix_tag = "bounces+42-0123456789abcdef0123@news.example.org"
    dead = {postfix_tag: verp["dead@example.net"], "nobody@example.net": "dead@example.net"}
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
    mx.send("", forged, _golden("postfix-hard", {postfix_tag: forged, "nobody@example.net": "a@example.org"}))
    mx.send("a@example.org", SENDER, (INBOUND / "reply.eml").read_bytes())

    code, out, err = run_cli("--config", cfg, "inbound")
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith("hard bounce dead@example.net: dead@example.net: 5.1.1") for line in lines), out
    assert any(line.startswith("complained angry@example.com: abuse report") for line in lines), out
    assert any(line.startswith("unsubscribed leaving@example.com:") for line in lines), out
    assert lines[-1].endswith("6 message(s): 1 complained, 1 hard bounce, 3 left alone, 1 unsubscribed"), out
    assert "left alone (no delivery of ours): a@example.org: 5.1.1" in out  # the forged tag
    with Store.open(db_url) as store:
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
        settings = load_settings(Path(cfg), environ={"NEWSLETTER_SECRET_KEY": "k" * 32})
        assert not subscribers.request(store, settings, "angry@example.com", W48_DUE)
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
    mx.send("", again, _golden("postfix-hard", {postfix_tag: again, "nobody@example.net": "dead@example.net"}))
    mx.send("", again, _golden("postfix-hard", {postfix_tag: again, "nobody@example.net": "dead@example.net"}))
    code, out, err = run_cli("--config", cfg, "inbound")
    assert code == 0, err
    assert "hard bounce (now bounced) dead@example.net" in out
    assert "counted already dead@example.net" in out  # the same report twice counts once
    monkeypatch.setattr(cli, "now", lambda: W48_DUE + timedelta(days=14))
    assert run_cli("--config", cfg, "digest", "send")[0] == 0
    assert [m.rcpt_tos[0] for m in smtp_sink.messages[6:]] == ["a@example.org"]


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
    postfix_tag = "bounces+42-0123456789abcdef0123@news.example.org"
    report = {postfix_tag: message.mail_from, "nobody@example.net": "dead@example.net"}
    mx.send("", message.mail_from, _golden("postfix-hard", report))
    code, _, err = run_cli("--config", str(cfg), "run", "--once")
    assert code == 0, err
    assert "inbound 1 message(s)" in err
    with Store.open(load_settings(cfg, environ={}).storage.url) as store:
        dead = store.subscriber_by_email("dead@example.net")
        assert dead is not None
        assert dead.bounces == 1

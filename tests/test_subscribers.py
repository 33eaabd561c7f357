"""Subscribers: address checks with IDN, add/list/remove, CSV import, double opt-in, signed tokens and their key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest.core.errors import AddressError
from ingest.store import Store
from newsletter.subscribers import manage as subscribers
from newsletter.subscribers.addresses import normalize
from newsletter.subscribers.tokens import Tokens, signing_key, subscriber_id
from tests.conftest import NOW
from tests.maildata import make_settings


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as s:
        yield s


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Reader@Example.ORG", "reader@example.org"),
        ("  reader@example.org\n", "reader@example.org"),
        ("leser@Bücher.example.org", "leser@xn--bcher-kva.example.org"),
        ("leser@xn--bcher-kva.example.org", "leser@xn--bcher-kva.example.org"),
        ("a=b&c+tag@example.com", "a=b&c+tag@example.com"),
    ],
)
def test_addresses_are_stored_in_one_form(raw: str, stored: str) -> None:
    assert normalize(raw) == stored


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not-an-address", "An email address must have an @-sign"),
        ("reader@", "There must be something after the @-sign"),
        ("reader@localhost", "should have a period"),
        ("Reader <reader@example.org>", "display name"),
        ("用户@例子.广告", "Internationalized characters before the @-sign"),
        ("reader@example.org\r\nBcc: x@example.org", "not a valid email address"),
        ("", "an empty email address"),
    ],
)
def test_a_bad_address_is_named_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(AddressError) as caught:
        normalize(raw)
    message = str(caught.value)
    assert reason in message
    if raw.strip() and "\n" not in raw:
        assert repr(raw.strip()) in message


_TRICKY = [
    "a@example.org",
    "a.b-c_d+e@sub.example.co.uk",
    "a..b@example.org",
    ".a@example.org",
    "a.@example.org",
    "a@-example.org",
    "a@example-.org",
    "a@example.123",
    "a@example.o",
    "a@ex--ample.org",
    "a@xn--zz.example.org",
    "a@xn--bcher-kva.example.org",
    "a@example.test",
    "a@mail.local",
    "a@host.localhost",
    "a@onion",
    "a@x.onion",
    "a@example.arpa",
    "a@example.invalid",
    "A@example.org",
    "a@Example.org",
    f"{'l' * 64}@example.org",
    f"{'l' * 65}@example.org",
    f"a@{'d' * 63}.org",
    f"a@{'d' * 64}.org",
    f"a@{'.'.join(['d' * 60] * 4)}.org",
    "a@example.org\nbcc: b@example.org",
    "a b@example.org",
    '"a b"@example.org',
    "a@[192.0.2.1]",
    "a@192.0.2.1",
    "{}|~`!#$%&'*+/=?^_@example.org",
]


@pytest.mark.no_database
@pytest.mark.parametrize("raw", _TRICKY)
def test_the_fast_check_of_a_plain_address_agrees_with_email_validator(raw: str) -> None:
    """normalize() takes a regular expression for an address already canonical (the check at every send): whatever it
    accepts that way, email-validator accepts unchanged; what it does not, goes to email-validator."""
    from newsletter.subscribers import addresses

    try:
        full: str | None = addresses.validate_email(raw.strip(), check_deliverability=False).ascii_email
        full = full.lower() if full else None
    except addresses.EmailNotValidError:
        full = None
    if addresses._plain(raw):
        assert full == raw, f"fast path accepted {raw!r}; email-validator says {full!r}"
    try:
        got: str | None = normalize(raw)
    except AddressError:
        got = None
    assert got == full


def test_add_list_remove(store: Store) -> None:
    first = subscribers.add(store, "Reader@Example.org", NOW)
    assert (first.outcome, first.address) == ("added", "reader@example.org")
    assert subscribers.add(store, "reader@example.org", NOW).outcome == "exists"
    subscribers.add(store, "other@example.org", NOW)
    assert [(s.email, s.status) for s in subscribers.list_subscribers(store)] == [
        ("other@example.org", "confirmed"),
        ("reader@example.org", "confirmed"),
    ]
    gone = subscribers.remove(store, "READER@example.org", NOW)
    assert gone is not None
    assert gone.status == "unsubscribed"
    assert subscribers.remove(store, "nobody@example.org", NOW) is None
    assert [s.email for s in subscribers.list_subscribers(store, "confirmed")] == ["other@example.org"]
    back = subscribers.add(store, "reader@example.org", NOW)
    assert back.outcome == "resubscribed"


def test_import_csv_reports_bad_lines_and_goes_on(store: Store, tmp_path: Path) -> None:
    subscribers.add(store, "left@example.org", NOW)
    subscribers.remove(store, "left@example.org", NOW)
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "name,Email\n"
        "Ann,ann@example.org\n"
        'Bob,"bob@@example.org"\n'
        "\n"
        "Cid,CID@Bücher.example.org\n"
        "Ann again,ann@example.org\n"
        "Left,left@example.org\n"
        "Nobody,\n",
        encoding="utf-8",
    )
    report = subscribers.import_csv(store, csv_file, NOW)
    assert [(line.line, line.outcome) for line in report.lines] == [
        (2, "added"),
        (3, "invalid"),
        (5, "added"),
        (6, "exists"),
        (7, "refused"),
        (8, "invalid"),
    ]
    bad = report.lines[1].message
    assert bad.startswith("people.csv line 3: 'bob@@example.org': not a valid email address")
    assert {s.email for s in subscribers.list_subscribers(store, "confirmed")} == {
        "ann@example.org",
        "cid@xn--bcher-kva.example.org",
    }
    assert subscribers.list_subscribers(store, "unsubscribed")[0].email == "left@example.org"


def test_import_a_plain_list(store: Store, tmp_path: Path) -> None:
    plain = tmp_path / "list.csv"
    plain.write_bytes("\ufeff# exported list\none@example.org\ntwo@example.org\r\n".encode())
    report = subscribers.import_csv(store, plain, NOW)
    assert report.count("added") == 2
    assert report.invalid == 0


def _outbox(folder: Path) -> list[EmailMessage]:
    out = []
    for path in sorted(folder.glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def _confirm_link(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return next(line for line in body.get_content().splitlines() if "/confirm/" in line).strip()


def test_double_opt_in(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert subscribers.request(store, settings, "New@Example.org", NOW)
    pending = store.subscriber_by_email("new@example.org")
    assert pending is not None
    assert pending.status == "pending"
    (sent,) = _outbox(settings.mail.outbox_dir)
    assert sent["To"] == "new@example.org"
    link = _confirm_link(sent)
    assert link.startswith("https://news.example.org/confirm/")
    token = link.rsplit("/", 1)[1]

    # The form again within the interval: no second mail. After it: a new one.
    assert not subscribers.request(store, settings, "new@example.org", NOW + timedelta(minutes=5))
    assert len(_outbox(settings.mail.outbox_dir)) == 1
    assert subscribers.request(store, settings, "new@example.org", NOW + subscribers.REQUEST_INTERVAL)
    assert len(_outbox(settings.mail.outbox_dir)) == 2

    assert subscribers.confirm(store, settings, token + "x", NOW) is None
    done = subscribers.confirm(store, settings, token, NOW + timedelta(days=1))
    assert done is not None
    assert done.status == "confirmed"
    assert subscribers.confirm(store, settings, token, NOW + timedelta(days=2)) is not None  # again: harmless
    # A confirmed address asking again gets no mail, and stays confirmed.
    assert not subscribers.request(store, settings, "new@example.org", NOW + timedelta(days=3))
    assert store.subscriber_by_email("new@example.org").status == "confirmed"  # type: ignore[union-attr]


def test_confirm_tokens_expire_and_cannot_be_forged(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    subscribers.request(store, settings, "a@example.org", NOW)
    subscribers.request(store, settings, "b@example.org", NOW)
    a = store.subscriber_by_email("a@example.org")
    b = store.subscriber_by_email("b@example.org")
    assert a is not None
    assert b is not None
    tokens = Tokens(signing_key(store, settings))
    good = tokens.confirm(a.id, a.email, NOW)
    signature = good.rsplit(".", 1)[1]
    forged = [
        f"{b.id}.{good.split('.', 1)[1]}",  # a's token with b's id
        tokens.confirm(a.id, "someone@example.org", NOW),  # made for another address
        Tokens("another key").confirm(a.id, a.email, NOW),
        good.replace(good.split(".")[1], "zzzzzz"),  # another time stamp
        f"{a.id}.{signature}",
        "0.abc.def",
        "../../etc/passwd",
        "9" * 300,
    ]
    for token in forged:
        assert subscribers.confirm(store, settings, token, NOW) is None, token
    assert subscribers.confirm(store, settings, good, NOW + timedelta(days=7, seconds=1)) is None  # expired
    assert subscribers.confirm(store, settings, good, NOW + timedelta(days=6)) is not None


def test_unsubscribe_tokens(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    subscribers.add(store, "a@example.org", NOW)
    subscribers.add(store, "b@example.org", NOW)
    a = store.subscriber_by_email("a@example.org")
    b = store.subscriber_by_email("b@example.org")
    assert a is not None
    assert b is not None
    tokens = Tokens(signing_key(store, settings))
    token = tokens.unsubscribe(a.id, a.email)
    assert subscriber_id(token) == a.id
    assert subscribers.unsubscribe(store, settings, f"{b.id}.{token.split('.', 1)[1]}", NOW) is None
    assert subscribers.unsubscribe(store, settings, Tokens("x").unsubscribe(a.id, a.email), NOW) is None
    target = subscribers.unsubscribe_target(store, settings, token)
    assert target is not None
    assert target.status == "confirmed"  # looking does not unsubscribe
    done = subscribers.unsubscribe(store, settings, token, NOW)
    assert done is not None
    assert done.status == "unsubscribed"
    assert subscribers.unsubscribe(store, settings, token, NOW + timedelta(days=400)) is not None  # never expires
    assert store.subscriber_by_email("b@example.org").status == "confirmed"  # type: ignore[union-attr]


def test_the_signing_key(tmp_path: Path, caplog: pytest.LogCaptureFixture, db_url: str) -> None:
    url = db_url
    keyless = make_settings(tmp_path).model_copy(update={"secret_key": None})
    with caplog.at_level(logging.WARNING), Store.open(url) as store:
        made = signing_key(store, keyless)
    assert "NEWSLETTER_SECRET_KEY is not set" in caplog.text
    assert len(made) >= 32
    with Store.open(url) as store:
        assert signing_key(store, keyless) == made  # stable: links sent yesterday still work
        keyed = keyless.model_copy(update={"secret_key": SecretStr("from the environment")})
        assert signing_key(store, keyed) == "from the environment"
    with Store.open(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert signing_key(other, keyless) != made  # per database

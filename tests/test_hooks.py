"""Relays' webhooks through a real uvicorn, with the payloads their documentation shows (tests/fixtures/hooks): SES
through SNS (signature checked against a certificate served on 127.0.0.1, subscription confirmed), Postmark (basic
auth), SendGrid (signed events); a bounce turns its delivery failed and counts, a complaint suppresses. A payload
without its proof changes nothing; a hook not configured is a 404."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pydantic import SecretStr

from ingest.core.config import Settings
from ingest.store import Store
from newsletter.digest import job
from newsletter.inbound.relays import sns_string_to_sign
from newsletter.web.app import site
from tests.maildata import W48_DUE, W48_START, confirmed, make_settings, page_story
from tests.mailsite import serve_app
from tests.servers import HostileServer, self_signed_certificate

HOOKS = Path(__file__).resolve().parent / "fixtures" / "hooks"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
READERS = ("jane@example.com", "mary@example.com", "richard@example.com", "john@example.com", "example@test.com")


@dataclass
class Relay:
    url: str
    store: Store
    settings: Settings
    sns_key: rsa.RSAPrivateKey
    cert_url: str
    sendgrid_key: ec.EllipticCurvePrivateKey

    def sns(self, message: str, *, kind: str = "Notification", **extra: str) -> dict[str, str]:
        """An SNS message signed with our certificate's key, as SNS signs them (SignatureVersion 1)."""
        envelope = {
            "Type": kind,
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC,
            "Subject": "Amazon SES Email Event Notification",
            "Message": message,
            "Timestamp": "2026-11-30T08:00:05.000Z",
            "SignatureVersion": "1",
            "SigningCertURL": self.cert_url,
            **extra,
        }
        if kind != "Notification":
            del envelope["Subject"]
        signature = self.sns_key.sign(sns_string_to_sign(envelope), padding.PKCS1v15(), hashes.SHA1())
        return {**envelope, "Signature": base64.b64encode(signature).decode()}

    def sendgrid(self, body: bytes, stamp: str = "1796025605") -> dict[str, str]:
        signature = self.sendgrid_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }

    def subscriber(self, email: str) -> tuple[str, int, int]:
        found = self.store.subscriber_by_email(email)
        assert found is not None
        return found.status, found.bounces, found.soft_bounces

    def delivery(self, email: str) -> str:
        return next(d.status for d in self.store.deliveries(1) if d.email == email)


@pytest.fixture
def relay(tmp_path: Path, db_url: str, hostile_server: HostileServer) -> Iterator[Relay]:
    cert, key = self_signed_certificate(tmp_path)
    hostile_server.set("/SimpleNotificationService-0000.pem", body=cert.read_bytes())
    hostile_server.set("/confirm-subscription", body=b"<ConfirmSubscriptionResponse/>")
    sns_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(sns_key, rsa.RSAPrivateKey)
    sendgrid_key = ec.generate_private_key(ec.SECP256R1())
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = make_settings(
        tmp_path,
        hooks={
            "ses": True,
            "ses_topics": [TOPIC],
            "sns_cert_url": "^" + re.escape(hostile_server.url("/")),  # Amazon's hosts, here the test server
            "postmark_username": "postmark",
            "sendgrid_public_key": base64.b64encode(public).decode(),
        },
        fetch={"trusted_networks": ["127.0.0.1/32"]},
    ).model_copy(update={"postmark_hook_password": SecretStr("s3cret")})
    store = Store.open(db_url)
    page_story(store, "A story of the week", first_seen=W48_START + timedelta(days=1))
    confirmed(store, *READERS)
    job.send_due_digest(store, settings, W48_DUE)  # the outbox: every reader has a delivery sent
    try:
        with serve_app(site(settings, store)) as url:
            yield Relay(
                url, store, settings, sns_key, hostile_server.url("/SimpleNotificationService-0000.pem"), sendgrid_key
            )
    finally:
        store.close()


def _fixture(name: str) -> Any:
    return json.loads((HOOKS / name).read_text(encoding="utf-8"))


def test_ses_bounces_and_complaints_through_sns(relay: Relay, hostile_server: HostileServer) -> None:
    with httpx.Client(base_url=relay.url) as client:
        subscribe_url = hostile_server.url("/confirm-subscription") + "?Token=abc"
        confirm = relay.sns(
            "You have chosen to subscribe", kind="SubscriptionConfirmation", SubscribeURL=subscribe_url, Token="abc"
        )
        answer = client.post("/hooks/ses", json=confirm)
        assert (answer.status_code, answer.text) == (200, "subscription confirmed\n")
        assert any(r.path.startswith("/confirm-subscription") for r in hostile_server.requests)

        bounce = json.dumps(_fixture("ses-bounce.json"))
        tampered = {**relay.sns(bounce), "Message": bounce.replace("jane@", "mary@")}
        assert client.post("/hooks/ses", json=tampered).status_code == 403
        elsewhere = relay.sns(bounce, SigningCertURL="https://attacker.example/cert.pem")
        assert client.post("/hooks/ses", json=elsewhere).status_code == 403
        other_topic = relay.sns(bounce, TopicArn="arn:aws:sns:us-east-1:999999999999:not-ours")
        assert client.post("/hooks/ses", json=other_topic).status_code == 403
        assert client.post("/hooks/ses", content=b"{not json").status_code == 400
        assert relay.subscriber("mary@example.com") == ("confirmed", 0, 0)

        answer = client.post("/hooks/ses", json=relay.sns(bounce))
        assert answer.status_code == 200, answer.text
        assert answer.text.startswith("hard bounce jane@example.com: SES Permanent/General: 5.1.1")
        assert relay.subscriber("jane@example.com") == ("confirmed", 1, 0)
        assert relay.delivery("jane@example.com") == "failed"
        again = client.post("/hooks/ses", json=relay.sns(bounce))  # SNS delivers at least once: it may repeat
        assert again.text.startswith("counted already jane@example.com")
        assert relay.subscriber("jane@example.com") == ("confirmed", 1, 0)

        answer = client.post("/hooks/ses", json=relay.sns(json.dumps(_fixture("ses-complaint.json"))))
        assert (answer.status_code, answer.text.split(":")[0]) == (200, "complained richard@example.com")
    assert relay.subscriber("richard@example.com")[0] == "complained"
    assert relay.subscriber("mary@example.com") == ("confirmed", 0, 0)


def test_postmark_with_basic_auth(relay: Relay) -> None:
    bounce = _fixture("postmark-bounce.json")
    with httpx.Client(base_url=relay.url) as client:
        refused = client.post("/hooks/postmark", json=bounce)
        assert (refused.status_code, refused.headers["www-authenticate"]) == (401, 'Basic realm="hooks"')
        assert client.post("/hooks/postmark", json=bounce, auth=("postmark", "wrong")).status_code == 401
        assert relay.subscriber("john@example.com") == ("confirmed", 0, 0)
        answer = client.post("/hooks/postmark", json=bounce, auth=("postmark", "s3cret"))
        assert answer.status_code == 200, answer.text
        assert answer.text.startswith("hard bounce john@example.com: Postmark HardBounce")
        assert relay.subscriber("john@example.com") == ("confirmed", 1, 0)
        answer = client.post(
            "/hooks/postmark", json=_fixture("postmark-spam-complaint.json"), auth=("postmark", "s3cret")
        )
        assert answer.text.startswith("complained john@example.com")
        assert client.post("/hooks/postmark", content=b"[]", auth=("postmark", "s3cret")).status_code == 400
    assert relay.subscriber("john@example.com")[0] == "complained"


def test_sendgrid_signed_events(relay: Relay) -> None:
    body = (HOOKS / "sendgrid-events.json").read_bytes()
    with httpx.Client(base_url=relay.url) as client:
        forged = client.post(
            "/hooks/sendgrid", content=body.replace(b"spamreport", b"processed"), headers=relay.sendgrid(body)
        )
        assert forged.status_code == 403
        assert client.post("/hooks/sendgrid", content=body).status_code == 403
        assert relay.subscriber("example@test.com") == ("confirmed", 0, 0)
        answer = client.post("/hooks/sendgrid", content=body, headers=relay.sendgrid(body))
        assert answer.status_code == 200, answer.text
    lines = [line.split(":")[0] for line in answer.text.splitlines()]
    assert lines == [
        "left alone",  # processed
        "delayed (still being tried) example@test.com",
        "left alone",  # delivered
        "left alone",  # open
        "left alone",  # click
        "hard bounce example@test.com",
        "left alone",  # dropped: SendGrid did not send it; nothing of the address's
        "complained example@test.com",
        "unsubscribed already (complained) example@test.com",
        "unsubscribed already (complained) example@test.com",
        "left alone",  # group_resubscribe
    ]
    assert relay.subscriber("example@test.com") == ("complained", 1, 0)
    assert relay.delivery("example@test.com") == "failed"


def test_hooks_are_off_until_configured(tmp_path: Path, db_url: str) -> None:
    with Store.open(db_url) as store, serve_app(site(make_settings(tmp_path), store)) as url:
        for hook in ("ses", "postmark", "sendgrid"):
            answer = httpx.post(f"{url}/hooks/{hook}", json={})
            assert answer.status_code == 404
            assert answer.text.startswith("off: set [hooks]")

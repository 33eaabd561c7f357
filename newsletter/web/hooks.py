"""Relays' webhooks: ``POST /hooks/ses`` (Amazon SES through SNS), ``/hooks/postmark``, ``/hooks/sendgrid``. Each is
off (404) until configured in ``[hooks]``, and believes nothing its sender has not proved:

- SES: the SNS message's signature, checked against the certificate at its ``SigningCertURL``, which must match
  ``[hooks] sns_cert_url`` (Amazon's hosts over https) and is fetched through the feed fetcher's address guard; the
  topic must be one of ``ses_topics`` when any are listed. A ``SubscriptionConfirmation`` is confirmed by fetching its
  ``SubscribeURL`` (same rule).
- Postmark: HTTP basic auth, ``[hooks] postmark_username`` and ``NEWSLETTER_POSTMARK_HOOK_PASSWORD``.
- SendGrid: its signed Event Webhook, checked with ``[hooks] sendgrid_public_key``.

An authenticated event is mapped (:mod:`newsletter.inbound.relays`) and applied as a report read from the mailbox would
be (:func:`newsletter.inbound.apply.apply`), matched by the recipient it names. Answers: 200 when done (also for an
event about nobody we know: the relay must not retry it), 400 for a body that is not what the relay sends, 401/403
for a failed check, 404 when off, 413 past :data:`MAX_BODY`. Never a 5xx for what a client sends.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ingest.core.config import Settings
from ingest.core.models import Feedback
from ingest.fetch.fetcher import FetchRequest, fetch_all_sync
from ingest.store import Store
from newsletter.inbound.apply import apply
from newsletter.inbound.relays import postmark_feedback, sendgrid_feedback, ses_feedback, sns_string_to_sign
from newsletter.inbound.signatures import verify_sendgrid, verify_sns
from newsletter.subscribers.tokens import Tokens, signing_key

__all__ = ["MAX_BODY", "routes"]

log = logging.getLogger("newsletter.hooks")

#: SNS messages are at most 256 KB; SendGrid batches events up to about a megabyte.
MAX_BODY = 2 * 1024 * 1024
_MAX_CERT = 64 * 1024


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class _Refused(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers or {}


def routes(settings: Settings, store: Store, *, clock: Callable[[], datetime] = _wall_clock) -> list[BaseRoute]:
    hooks = settings.hooks
    certificates: dict[str, bytes] = {}  # SNS signing certificates by URL: a handful, reused for every message

    async def body_of(request: Request) -> bytes:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise _Refused(413, "body too large")
        return body

    def fetch(url: str, limit: int) -> bytes | None:
        """``url``'s body through the feed fetcher (its address guard, timeout and size cap), or None."""
        config = settings.fetch.model_copy(update={"max_bytes": limit, "max_redirects": 0})
        (result,) = fetch_all_sync([FetchRequest(0, url)], config)
        return result.body if result.outcome == "ok" else None

    def allowed(url: object) -> str:
        if not isinstance(url, str) or not re.match(hooks.sns_cert_url, url):
            raise _Refused(403, f"not an SNS address ([hooks] sns_cert_url): {str(url)[:200]!r}")
        return url

    async def act(request: Request, feedback: list[Feedback], relay: str) -> Response:
        now = clock()

        def run() -> list[str]:
            tokens = Tokens(signing_key(store, settings))
            return [apply(store, settings, tokens, f, now, trusted=True).line for f in feedback]

        lines = await run_in_threadpool(run)
        for line in lines:
            log.info("%s: %s", relay, line)
        return PlainTextResponse("".join(f"{line}\n" for line in lines) or "nothing\n")

    async def ses(request: Request) -> Response:
        if not hooks.ses:
            raise _Refused(404, "off: set [hooks] ses = true")
        envelope = _json(await body_of(request), dict)
        try:
            signed = sns_string_to_sign(envelope)
        except ValueError as exc:
            raise _Refused(400, str(exc)) from None
        if hooks.ses_topics and envelope.get("TopicArn") not in hooks.ses_topics:
            raise _Refused(403, f"topic not in [hooks] ses_topics: {str(envelope.get('TopicArn'))[:200]!r}")
        cert_url = allowed(envelope.get("SigningCertURL"))
        if cert_url not in certificates:
            cert = await run_in_threadpool(fetch, cert_url, _MAX_CERT)
            if cert is None:
                raise _Refused(403, f"signing certificate not available at {cert_url}")
            certificates[cert_url] = cert
        signature, version = envelope.get("Signature"), str(envelope.get("SignatureVersion", ""))
        if not isinstance(signature, str) or not verify_sns(signed, signature, version, certificates[cert_url]):
            raise _Refused(403, "SNS signature does not verify")
        kind = envelope["Type"]
        if kind == "SubscriptionConfirmation":
            url = allowed(envelope.get("SubscribeURL"))
            confirmed = await run_in_threadpool(fetch, url, _MAX_CERT)
            log.info(
                "ses: subscription to %s %s", envelope.get("TopicArn"), "confirmed" if confirmed else "not confirmed"
            )
            return PlainTextResponse("subscription confirmed\n" if confirmed else "subscription not confirmed\n")
        if kind != "Notification":
            return PlainTextResponse("nothing\n")
        message = _json(str(envelope.get("Message", "")).encode("utf-8"), dict)
        return await act(request, _mapped(ses_feedback, message), "ses")

    async def postmark(request: Request) -> Response:
        password = settings.postmark_hook_password
        if not hooks.postmark_username or password is None:
            raise _Refused(404, "off: set [hooks] postmark_username and NEWSLETTER_POSTMARK_HOOK_PASSWORD")
        if not _basic_auth(request, hooks.postmark_username, password.get_secret_value()):
            raise _Refused(401, "wrong or missing credentials", {"WWW-Authenticate": 'Basic realm="hooks"'})
        payload = _json(await body_of(request), dict)
        return await act(request, _mapped(postmark_feedback, payload), "postmark")

    async def sendgrid(request: Request) -> Response:
        if not hooks.sendgrid_public_key:
            raise _Refused(404, "off: set [hooks] sendgrid_public_key")
        body = await body_of(request)
        signature = request.headers.get("x-twilio-email-event-webhook-signature", "")
        stamp = request.headers.get("x-twilio-email-event-webhook-timestamp", "")
        if not verify_sendgrid(hooks.sendgrid_public_key, stamp, body, signature):
            raise _Refused(403, "SendGrid signature does not verify")
        events = _json(body, list)
        return await act(request, _mapped(sendgrid_feedback, events), "sendgrid")

    def guarded(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def answer(request: Request) -> Response:
            try:
                response: Response = await endpoint(request)
            except _Refused as refused:
                if refused.status in (401, 403):
                    log.warning("%s: refused: %s", request.url.path, refused)
                return PlainTextResponse(f"{refused}\n", status_code=refused.status, headers=refused.headers)
            return response

        return answer

    return [
        Route("/hooks/ses", guarded(ses), methods=["POST"]),
        Route("/hooks/postmark", guarded(postmark), methods=["POST"]),
        Route("/hooks/sendgrid", guarded(sendgrid), methods=["POST"]),
    ]


def _json(body: bytes, kind: type) -> Any:
    try:
        found = json.loads(body)
    except (ValueError, RecursionError):
        raise _Refused(400, "not JSON") from None
    if not isinstance(found, kind):
        raise _Refused(400, f"expected a JSON {'object' if kind is dict else 'list'}")
    return found


def _mapped(parse: Callable[[Any], list[Feedback]], data: Any) -> list[Feedback]:
    try:
        return parse(data)
    except ValueError as exc:
        raise _Refused(400, str(exc)) from None


def _basic_auth(request: Request, username: str, password: str) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, given = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), username.encode()) & hmac.compare_digest(
        given.encode(), password.encode()
    )

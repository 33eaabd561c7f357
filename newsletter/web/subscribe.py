"""The subscriber pages: subscribe (double opt-in, with topics), confirm, unsubscribe, and the signed
"manage preferences" page. Pages only: no SQL, no mail of its own.

``routes(settings, store)`` returns them for :func:`newsletter.web.create_app` (``extra_routes``). Only a POST
changes a subscription: ``GET /unsubscribe/{token}`` shows a button (mail scanners and link previews follow GETs),
``POST /unsubscribe/{token}`` unsubscribes at once, and is also the RFC 8058 one-click target (body
``List-Unsubscribe=One-Click``, no cookie, no session): 200, never a redirect, harmless to repeat. Confirming is the
same: ``GET /confirm/{token}`` shows a button and ``POST /confirm/{token}`` confirms, because link scanners (a
hospital's mail gateway, a link preview) open every link of a message, and would otherwise confirm addresses nobody
asked for. ``/preferences/{token}`` (every digest's footer links it) shows the subscriber's topics; a
POST saves them, and its unsubscribe button posts to ``/unsubscribe/{token}``. A forged, expired or unknown token gets
the same 400 page, whatever was wrong with it. No route sets a cookie.

The web reads the clock (it answers people now); ``clock`` is passed in so tests can set it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ingest.core import links
from ingest.core.config import Settings
from ingest.core.errors import AddressError, UsageError
from ingest.store import Store
from ingest.topics import taxonomy_of
from newsletter.subscribers import manage
from newsletter.web.pages import page, site_path, site_root

__all__ = ["routes"]

MAX_FORM_BYTES = 4096
#: Form fields read: the address, the honeypot and one per topic (with room for a bigger taxonomy).
MAX_FIELDS = 100

#: The honeypot: a text field the form hides from people (and from screen readers); a bot filling every field fills it.
HONEYPOT = "website"
#: Token pages: never cached, never indexed; and (pages.page) no Referer leaves with the token in it.
_PRIVATE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def routes(settings: Settings, store: Store, *, clock: Callable[[], datetime] = _wall_clock) -> list[BaseRoute]:
    root = site_root(settings)

    def private(response: Response) -> Response:
        response.headers.update(_PRIVATE)
        return response

    def invalid(request: Request) -> Response:
        return private(page(request, "web/unsubscribe.html", status_code=400, state="invalid", action=""))

    taxonomy = taxonomy_of(settings.topics)

    def choices(chosen: Sequence[str]) -> dict[str, Any]:
        return {"topics": taxonomy.topics, "chosen": set(chosen)}

    def chosen_in(fields: dict[str, list[str]]) -> tuple[str, ...]:
        """The form's topics; :class:`UsageError` for a slug no form of ours sends."""
        return manage.check_topics(fields.get("topic", []), taxonomy.slugs, where="topics")

    def subscribe_form(request: Request) -> Response:
        return page(
            request,
            "web/subscribe.html",
            state="form",
            email="",
            error="",
            action=f"{root}subscribe",
            **choices(()),
        )

    async def subscribe_post(request: Request) -> Response:
        fields = await _form(request)
        if fields is None:
            return _too_large()
        raw = (fields.get("email") or [""])[0]
        trap = bool((fields.get(HONEYPOT) or [""])[0].strip())
        client = manage.client_key(request.client.host if request.client else None)
        chosen: tuple[str, ...] = ()
        try:
            chosen = chosen_in(fields)
            await run_in_threadpool(
                manage.request, store, settings, raw, clock(), client=client, trap=trap, topics=chosen
            )
        except (AddressError, UsageError) as exc:
            return page(
                request,
                "web/subscribe.html",
                status_code=400,
                state="form",
                email=raw[:300],
                error=str(exc),
                action=f"{root}subscribe",
                **choices(chosen),
            )
        # The same answer whether a mail went out, the address was confirmed already or was asked for a minute ago,
        # or the request was refused (a bot, a flood): the page must not tell a stranger who is subscribed, nor a bot
        # that it was caught.
        return page(request, "web/subscribe.html", state="sent", email=raw[:300], error="", action="")

    def confirm_page(request: Request) -> Response:
        token = request.path_params["token"]
        found = manage.confirm_target(store, settings, token, clock())
        if found is None:
            return private(page(request, "web/confirm.html", status_code=400, state="invalid", action=""))
        state = "confirmed" if found.status == "confirmed" else "ask"
        action = site_path(settings, links.confirm_url(settings.publish, token))
        return private(page(request, "web/confirm.html", state=state, action=action))

    def confirm_post(request: Request) -> Response:
        if manage.confirm(store, settings, request.path_params["token"], clock()) is None:
            return private(page(request, "web/confirm.html", status_code=400, state="invalid", action=""))
        return private(page(request, "web/confirm.html", state="confirmed", action=""))

    def unsubscribe_page(request: Request) -> Response:
        token = request.path_params["token"]
        found = manage.unsubscribe_target(store, settings, token)
        if found is None:
            return invalid(request)
        state = "done" if found.status in ("unsubscribed", "complained") else "ask"
        action = site_path(settings, links.unsubscribe_url(settings.publish, token))
        return private(page(request, "web/unsubscribe.html", state=state, action=action))

    def unsubscribe_post(request: Request) -> Response:
        # RFC 8058 section 3.2: the one-click POST carries "List-Unsubscribe=One-Click"; any POST here means the same.
        token = request.path_params["token"]
        if manage.unsubscribe(store, settings, token, clock()) is None:
            return invalid(request)
        return private(page(request, "web/unsubscribe.html", state="done", action=""))

    def preferences_page(request: Request, state: str = "form") -> Response:
        token = request.path_params["token"]
        found = manage.preferences_target(store, settings, token)
        if found is None:
            return private(page(request, "web/preferences.html", status_code=400, state="invalid"))
        unsubscribe = links.unsubscribe_url(settings.publish, manage.unsubscribe_token(store, settings, found))
        return private(
            page(
                request,
                "web/preferences.html",
                state=state,
                email=found.email,
                summary=manage.describe(found),
                unsubscribed=found.status not in ("pending", "confirmed"),
                action=site_path(settings, links.preferences_url(settings.publish, token)),
                unsubscribe_action=site_path(settings, unsubscribe),
                **choices(found.topics),
            )
        )

    async def preferences_post(request: Request) -> Response:
        fields = await _form(request)
        if fields is None:
            return _too_large()
        try:
            chosen = chosen_in(fields)
        except UsageError as exc:
            return private(Response(str(exc), status_code=400, media_type="text/plain"))
        token = request.path_params["token"]
        if await run_in_threadpool(manage.save_preferences, store, settings, token, chosen) is None:
            return private(page(request, "web/preferences.html", status_code=400, state="invalid"))
        return preferences_page(request, state="saved")

    return [
        Route("/subscribe", subscribe_form, methods=["GET"]),
        Route("/subscribe", subscribe_post, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm_post, methods=["POST"]),
        Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_post, methods=["POST"]),
        Route("/preferences/{token}", preferences_page, methods=["GET"]),
        Route("/preferences/{token}", preferences_post, methods=["POST"]),
    ]


def _too_large() -> Response:
    return Response("form too large", status_code=413, media_type="text/plain")


async def _form(request: Request) -> dict[str, list[str]] | None:
    """A posted form's fields; None when it is larger than :data:`MAX_FORM_BYTES` (read no further)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FIELDS)

"""WebSub publishing: telling ``[publish] websub_hubs`` which feeds changed (W3C WebSub, the publisher's ping).

A hub is sent one ``hub.mode=publish`` POST per changed feed (``hub.url``: the feed's ``rel="self"`` URL); the hub
then fetches the feed and pushes it to its subscribers. A hub that is down or refuses is logged and skipped: the
feeds are published either way, and the next change pings again. The only home of httpx outside ingest's fetcher.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

__all__ = ["TIMEOUT", "ping_hubs"]

log = logging.getLogger("newsletter.publish")

#: Seconds a hub gets to answer one ping.
TIMEOUT = 10.0


def ping_hubs(hubs: Sequence[str], topics: Sequence[str], *, user_agent: str) -> int:
    """Ping every hub for every topic; returns how many pings a hub accepted (2xx)."""
    accepted = 0
    with httpx.Client(timeout=TIMEOUT, headers={"User-Agent": user_agent}, follow_redirects=False) as client:
        for hub in hubs:
            for topic in topics:
                try:
                    response = client.post(hub, data={"hub.mode": "publish", "hub.url": topic})
                except httpx.HTTPError as exc:
                    log.warning("websub hub %s: not reached for %s: %s", hub, topic, exc or type(exc).__name__)
                    break  # the same for the other topics: try this hub again at the next change
                if response.is_success:
                    accepted += 1
                else:
                    log.warning("websub hub %s: refused %s: HTTP %s", hub, topic, response.status_code)
    return accepted

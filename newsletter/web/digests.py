"""The digest archive: ``/digests/``, ``/digests/{period}`` and the digests' own feed ``/digests.atom``. Read only.

Only digests that carry stories (sent, or still being sent) are shown; a skipped or empty week has no page. A
digest's page lists the stories stored with it, in the email's sections.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ingest.core import links
from ingest.core.config import Settings
from ingest.core.models import Candidate, Digest, Story
from ingest.core.text import counted
from ingest.store import CARRYING, Store
from ingest.topics import taxonomy_of
from newsletter.digest.select import period_for, sections
from newsletter.publish import EPOCH, FeedPage, atom_feed
from newsletter.render import render
from newsletter.web.conditional import Document, respond
from newsletter.web.feeds import ATOM
from newsletter.web.pages import digests_feed, not_found_page, page, site_path, site_root

__all__ = ["routes"]

ARCHIVE_MAX_AGE = 300
_PERIOD = re.compile(r"\d{4}-W\d{2}")


def routes(settings: Settings, store: Store) -> list[BaseRoute]:
    cfg = settings.publish
    subscribe_url = f"{site_root(settings)}subscribe"  # ingest.core.links has no helper for it (yet)
    names = taxonomy_of(settings.topics).names

    def archive(request: Request) -> Response:
        items = store.digests(statuses=CARRYING)
        return page(
            request,
            "web/digests.html",
            digests=[_listed(d, settings) for d in items],
            feed=digests_feed(settings),
            subscribe_url=subscribe_url,
        )

    def one_digest(request: Request) -> Response:
        key = request.path_params["period"]
        found = store.digest_by_period(key) if _PERIOD.fullmatch(key) else None
        if found is None or found.status not in CARRYING:
            return not_found_page(request)
        period = period_for(found.period, settings.digest)
        shown = sections(store.digest_stories(found.id), settings, period)  # less any story hidden since it was sent
        return page(
            request,
            "web/digest.html",
            subject=found.subject,
            period=found.period,
            period_label=period.label,
            count=sum(len(section.items) for section in shown),
            sections=shown,
            topic_names=names,
            archive_url=site_path(settings, links.digests_url(cfg)),
            subscribe_url=subscribe_url,
        )

    def digests_atom(request: Request) -> Response:
        items = store.digests(statuses=CARRYING, limit=cfg.max_entries)
        stories = [_as_entry(d, store.digest_stories(d.id), settings, names) for d in items]
        page_ = FeedPage(path="digests.atom", feed_id=f"{cfg.id}:digests", title=digests_feed(settings).title)
        body = atom_feed(stories, cfg, page_, updated=EPOCH)
        modified = max((s.updated for s in stories), default=EPOCH).timestamp()
        return respond(request, Document.of(body, modified), ATOM, ARCHIVE_MAX_AGE)

    return [
        Route("/digests/", archive, methods=["GET"]),
        Route("/digests/{period}", one_digest, methods=["GET"]),
        Route("/digests.atom", digests_atom, methods=["GET"]),
    ]


def _listed(d: Digest, settings: Settings) -> dict[str, object]:
    url = site_path(settings, links.digest_url(settings.publish, d.period))
    return {"period": d.period, "subject": d.subject, "url": url, "count": d.story_count}


def _as_entry(d: Digest, carried: Sequence[Candidate], settings: Settings, names: Mapping[str, str]) -> Story:
    """A digest as an entry of the digests' feed: its subject, a link to its archive page, its period as id, and as
    content the digest as its web page shows it (never the stored email, whose copies are each a subscriber's)."""
    link = links.digest_url(settings.publish, d.period)
    content = render(
        "web/digest_sections.html",
        sections=sections(carried, settings, period_for(d.period, settings.digest)),
        topic_names=names,
    )
    return Story(
        id=d.id,
        uid=f"{settings.publish.id}:digest:{d.period}",
        title=d.subject,
        summary=f"{counted(d.story_count, 'story', 'stories')}: the digest of {d.period}.",
        content=content,
        link=link,
        published=d.due_at,
        first_seen=d.created_at,
        updated=d.sent_at or d.created_at,
        tags=(),
    )

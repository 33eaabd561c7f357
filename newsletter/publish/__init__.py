"""Publishing the feeds: the documents (Atom, RSS, JSON Feed) and the folder they are written to. No SQL of its own.

- :mod:`newsletter.publish.documents`: stories in, document bytes out; the only home of feedgen. Pure.
- :mod:`newsletter.publish.folder`: ``[publish] dir`` brought up to date, incrementally, with atomic writes.

This module is the public face of both: import from here.
"""

from __future__ import annotations

from newsletter.publish.documents import (
    ATOM_TYPE,
    EPOCH,
    JSON_TYPE,
    MAIN,
    RSS_TYPE,
    UNTITLED,
    FeedPage,
    atom_feed,
    feed_updated,
    json_feed,
    rss_feed,
)
from newsletter.publish.folder import (
    STATE_FILE,
    Publisher,
    PublishReport,
    archive_name,
    document,
    publish,
    published_tags,
    tag_name,
    tag_slug,
    topic_name,
)

__all__ = [
    "ATOM_TYPE",
    "EPOCH",
    "JSON_TYPE",
    "MAIN",
    "RSS_TYPE",
    "STATE_FILE",
    "UNTITLED",
    "FeedPage",
    "PublishReport",
    "Publisher",
    "archive_name",
    "atom_feed",
    "document",
    "feed_updated",
    "json_feed",
    "publish",
    "published_tags",
    "rss_feed",
    "tag_name",
    "tag_slug",
    "topic_name",
]

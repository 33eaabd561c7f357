"""The tables of DESIGN.md, in SQLAlchemy Core: source, sighting, story, digest, subscriber, delivery.

Portable across SQLite and PostgreSQL: no dialect-only types. Times are stored in UTC and read back aware.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    cast,
    event,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class CleanText(TypeDecorator[str]):
    """Text with NUL characters replaced (U+FFFD): PostgreSQL's text cannot hold them, and nothing we store needs
    them. Ingest already replaces every character XML cannot carry; this is the last line for everything else
    (server messages, operator input)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


class Tags(TypeDecorator[tuple[str, ...]]):
    """A list of tags in a JSON column, read back as a tuple (the records' type). The one JSON column type."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> list[str]:
        return list(value or ())

    def process_result_value(self, value: Any, dialect: Dialect) -> tuple[str, ...]:
        if isinstance(value, str):  # a driver that hands JSON back as text
            value = json.loads(value)
        return tuple(value or ())


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; naive datetimes are refused (they are always a bug here)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),  # e.g. the per-database signing key when none is configured
    Column("value", CleanText, nullable=False),
)

# One row: bumped in every transaction that changes a story (ingest.store.clustering.stamp), so a process serving
# the published feeds learns with one primary-key read whether they may be stale (every replica republishes then).
publish_generation = Table(
    "publish_generation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("generation", BigInteger, nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

source = Table(
    "source",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(8), nullable=False),  # page | feed
    Column("location", CleanText, nullable=False, unique=True),  # a page's path, a feed's URL as added
    Column("name", CleanText),
    Column("folder", CleanText),  # a page's seed folder
    Column("url", CleanText),  # a feed's current URL, after permanent redirects
    Column("tags", Tags, nullable=False, default=tuple),
    Column("interval", Integer),  # minutes between checks, None for the default
    Column("origin", String(16), nullable=False, default="config"),  # config | cli | opml | seed
    Column("status", String(16), nullable=False, default="active"),  # models.SourceStatus
    Column("content_hash", String(64)),
    Column("etag", CleanText),
    Column("last_modified", CleanText),
    Column("last_fetch_at", UtcDateTime),
    Column("last_success_at", UtcDateTime),
    Column("next_check_at", UtcDateTime),
    Column("last_status", Integer),
    Column("error_count", Integer, nullable=False, default=0),
    Column("failing_since", UtcDateTime),  # the first failure of the current streak (a feed is paused after a while)
    Column("last_error", CleanText),
    Column("warning", CleanText),
    Column("created_at", UtcDateTime, nullable=False),
    Column("lease_owner", CleanText),
    Column("lease_until", UtcDateTime),
    Column("site_url", CleanText),  # the site readers may visit: a feed's own link, a seed folder's configured url
    Column("suggested_url", CleanText),  # a broken feed: a feed found on its site, offered to the operator
    Index(None, "next_check_at"),  # the feed claim: the due feeds, soonest first
)

story = Table(
    "story",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", CleanText, unique=True),  # the tag: URI minted at creation, never changed (Atom entry id)
    Column("title", CleanText, nullable=False),
    Column("title_derived", Boolean, nullable=False, default=False),
    Column("summary", CleanText, nullable=False, default=""),
    Column("content", CleanText, nullable=False, default=""),
    Column("link", CleanText),
    Column("published", UtcDateTime),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("updated", UtcDateTime, nullable=False),
    Column("tags", Tags, nullable=False, default=tuple),
    Column("content_hash", String(64), nullable=False, default=""),
    Column("merged_into", Integer, ForeignKey("story.id")),  # a merged-away story resolves to its survivor
    # Whether any sighting carries a date or a blurb (ingest.dedupe.is_informative): kept for the matcher.
    Column("informative", Boolean, nullable=False, default=False),
    # The operator hid (retracted) it: out of every page, feed and future digest until shown again.
    Column("hidden_at", UtcDateTime),
    Column("hidden_reason", CleanText),  # the operator's note: shown to operators only
    # Topic slugs (ingest.topics): its sightings' with story_topic_override applied. A server default for rows
    # written before the column.
    Column("topics", Tags, nullable=False, default=tuple, server_default="[]"),
    # Title and summary as search tokens (ingest.core.search.search_text): what both engines' full-text index holds.
    Column("search_title", CleanText, nullable=False, default="", server_default=""),
    Column("search_body", CleanText, nullable=False, default="", server_default=""),
    # Copies (sightings) removed by retention ([storage] keep_sightings_days): still counted in ``sightings``.
    Column("folded_sightings", Integer, nullable=False, default=0, server_default="0"),
    Index(None, "first_seen"),
    Index(None, "published"),
)

# Publishing reads the newest live stories and what changed since last time: both must be index scans at 100k.
Index(
    "ix_story_recency",
    func.coalesce(story.c.published, story.c.first_seen),
    story.c.id,
    sqlite_where=story.c.merged_into.is_(None),
    postgresql_where=story.c.merged_into.is_(None),
)
Index("ix_story_updated", story.c.updated)


def tag_set(tags: Any) -> Any:
    """PostgreSQL: a story's tags lower-cased, as jsonb, for ``@>`` (the expression :data:`ix_story_tags` indexes)."""
    return cast(func.lower(cast(tags, Text)), JSONB)


# Tag (and topic) feeds are read on public requests: PostgreSQL finds a tag's stories in a GIN index. SQLite, the
# one-machine engine, filters the tags' JSON text instead (no index can serve it).
# Search: on PostgreSQL a stored tsvector column (computed by the server from the two token columns, the title
# weighted above the summary; the ``simple`` configuration: the tokens are made already, none is dropped) in a GIN
# index, so a query ranks its matches without parsing their text again; on SQLite an FTS5 table over the same two
# columns, kept by triggers. Neither is in the Table above: SQLAlchemy never reads or writes them.
SEARCH_VECTOR = "search_vector"
POSTGRES_SEARCH_DDL = (
    f"ALTER TABLE story ADD COLUMN IF NOT EXISTS {SEARCH_VECTOR} tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple'::regconfig, search_title), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, search_body), 'B')) STORED",
    f"CREATE INDEX IF NOT EXISTS ix_story_search ON story USING gin ({SEARCH_VECTOR})",
)
for _statement in POSTGRES_SEARCH_DDL:
    event.listen(story, "after_create", DDL(_statement).execute_if(dialect="postgresql"))  # type: ignore[no-untyped-call]
SEARCH_TABLE = "story_search"
SQLITE_SEARCH_DDL = (
    "CREATE VIRTUAL TABLE story_search USING fts5(search_title, search_body, content='story', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER story_search_insert AFTER INSERT ON story BEGIN INSERT INTO story_search(rowid, search_title, "
    "search_body) VALUES (new.id, new.search_title, new.search_body); END",
    "CREATE TRIGGER story_search_delete AFTER DELETE ON story BEGIN INSERT INTO story_search(story_search, rowid, "
    "search_title, search_body) VALUES ('delete', old.id, old.search_title, old.search_body); END",
    "CREATE TRIGGER story_search_update AFTER UPDATE OF search_title, search_body ON story BEGIN "
    "INSERT INTO story_search(story_search, rowid, search_title, search_body) "
    "VALUES ('delete', old.id, old.search_title, old.search_body); "
    "INSERT INTO story_search(rowid, search_title, search_body) VALUES (new.id, new.search_title, new.search_body); "
    "END",
    "INSERT INTO story_search(story_search) VALUES ('rebuild')",  # a table made with rows already (a migration)
)
for _statement in SQLITE_SEARCH_DDL:
    event.listen(story, "after_create", DDL(_statement).execute_if(dialect="sqlite"))  # type: ignore[no-untyped-call]

ix_story_tags = Index("ix_story_tags", tag_set(story.c.tags), postgresql_using="gin").ddl_if(dialect="postgresql")

sighting = Table(
    "sighting",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source_id", Integer, ForeignKey("source.id"), nullable=False),
    Column("key", CleanText, nullable=False),
    Column("kind", String(8), nullable=False),  # article | teaser | entry
    Column("position", Integer, nullable=False),
    Column("title", CleanText, nullable=False),
    Column("title_derived", Boolean, nullable=False, default=False),
    Column("published", UtcDateTime),
    Column("raw_date", CleanText),
    Column("summary", CleanText, nullable=False, default=""),
    Column("content", CleanText, nullable=False, default=""),
    Column("link", CleanText),
    Column("author", CleanText),
    Column("tags", Tags, nullable=False, default=tuple),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("story_id", Integer, ForeignKey("story.id")),
    Column("match_rule", CleanText),
    Column("match_score", Float),
    Column("topics", Tags, nullable=False, default=tuple, server_default="[]"),  # from its title and summary
    UniqueConstraint("source_id", "key"),
    Index(None, "story_id"),
    Index(None, "source_id", "first_seen"),  # when a source was first read (the digest's "new source" note)
)

# One B-tree, looked up by key (WITHOUT ROWID on SQLite): a dozen random-key inserts per sighting were most of
# the cost of ingest while the table had a rowid and two indexes to keep.
sighting_key = Table(
    "sighting_key",
    metadata,
    Column("key", Text, primary_key=True),  # a blocking key of ingest.dedupe (our own ASCII): candidates share one
    Column("sighting_id", Integer, ForeignKey("sighting.id"), primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)

story_override = Table(
    "story_override",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(8), nullable=False),  # merge (must link) | split (cannot link)
    Column("sighting_a", Integer, ForeignKey("sighting.id"), nullable=False),
    Column("sighting_b", Integer, ForeignKey("sighting.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("note", CleanText),
)

# The operator's word on a story's topics (`stories tag` / `untag`): added (True) or removed (False), whatever its
# sightings say. Kept apart from the sightings' topics so that `stories retag` never undoes it.
story_topic_override = Table(
    "story_topic_override",
    metadata,
    Column("story_id", Integer, ForeignKey("story.id"), primary_key=True),
    Column("topic", String(64), primary_key=True),
    Column("added", Boolean, nullable=False),
)

digest = Table(
    "digest",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("period", String(16), nullable=False, unique=True),  # ISO week, e.g. 2026-W48
    Column("status", String(16), nullable=False, default="pending"),  # pending | sent | skipped | empty
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    Column("subject", CleanText, nullable=False, default=""),
    Column("html", CleanText, nullable=False, default=""),
    Column("text", CleanText, nullable=False, default=""),
    Column("note", CleanText),
)

digest_story = Table(
    "digest_story",
    metadata,
    Column("digest_id", Integer, ForeignKey("digest.id"), primary_key=True),
    Column("story_id", Integer, ForeignKey("story.id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Index(None, "story_id"),  # "no digest carries it yet", asked of each candidate story
)

subscriber = Table(
    "subscriber",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", CleanText, nullable=False, unique=True),
    Column("status", String(16), nullable=False, default="pending"),  # pending|confirmed|unsubscribed|bounced
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime),
    Column("unsubscribed_at", UtcDateTime),
    Column("bounces", Integer, nullable=False, default=0),  # hard bounces (decision 0015)
    Column("last_request_at", UtcDateTime),
    # A server default too: rows written by hand or by an older release's code still get a count.
    Column("soft_bounces", Integer, nullable=False, default=0, server_default="0"),
    Column("topics", Tags, nullable=False, default=tuple, server_default="[]"),  # chosen topic slugs; none: all
)

# A digest's rendering for one topic set (issue 18): rendered once, whoever many subscribers chose that set.
digest_edition = Table(
    "digest_edition",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest_id", Integer, ForeignKey("digest.id"), nullable=False),
    Column("topic_key", CleanText, nullable=False),  # the sorted slugs joined by commas
    Column("topics", Tags, nullable=False, default=tuple),
    Column("story_count", Integer, nullable=False, default=0),
    Column("subject", CleanText, nullable=False, default=""),
    Column("html", CleanText, nullable=False, default=""),
    Column("text", CleanText, nullable=False, default=""),
    UniqueConstraint("digest_id", "topic_key"),
)

delivery = Table(
    "delivery",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest_id", Integer, ForeignKey("digest.id"), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscriber.id"), nullable=False),
    Column("status", String(16), nullable=False, default="pending"),  # pending|sending|sent|failed|cancelled
    Column("attempts", Integer, nullable=False, default=0),
    Column("reply", CleanText),
    Column("message_id", CleanText),
    Column("next_attempt_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("lease_owner", CleanText),
    Column("lease_until", UtcDateTime),
    # A failed delivery counted against its subscriber: hard | soft (models.BounceKind), at the answer or reported
    # later (a delivery report, a relay's event); the streak of these is what a late report counts.
    Column("bounce", String(8)),
    Column("edition_id", Integer, ForeignKey("digest_edition.id")),  # None: the digest's own rendering (all topics)
    UniqueConstraint("digest_id", "subscriber_id"),
    Index(None, "digest_id", "status"),
)

# One row per subscribe form request, kept for an hour: the per-client limit and the hourly cap on confirmation mails
# count them here, so every process sharing the database counts the same, across restarts.
subscribe_request = Table(
    "subscribe_request",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client", String(64), nullable=False),  # the client's address (IPv6: its /64 network)
    Column("at", UtcDateTime, nullable=False),
    Column("mailed", Boolean, nullable=False, default=False),  # a confirmation mail went out for it
    Index(None, "client", "at"),
    Index(None, "at"),
)

# The sending rate shared by every process ([mail] rate, domain_rates): per budget ("*" for all mail, else a recipient
# domain) the earliest time (seconds since the epoch) the next message may go. Each message reserves its slot.
send_slot = Table(
    "send_slot",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("next_at", Float, nullable=False),
)

"""The frozen records that travel between modules, and the typed vocabularies of every status. A parser's dict or a
database row never leaves the module that received it: it becomes one of these first.

- in-stage: :class:`ParsedItem`, :class:`ParsedPage` (what a parser saw);
- what the store holds, as read back: :class:`Source`, :class:`Sighting`, :class:`Story`, and its answers
  (:class:`SaveResult`, :class:`FeedState`, :class:`Explanation`, :class:`StoreState`, :class:`StoryVersion`,
  :class:`StorySource`, :class:`Byline`, and :class:`ReaderSource`, a source as readers count them);
- the digest's side: :class:`Subscriber`, :class:`Digest`, :class:`NewDigest`, :class:`Delivery`,
  :class:`Outcome`, :class:`BounceLimits`, :class:`Settled`, :class:`Candidate` and its :class:`Origin`; the
  subscribe form's :class:`RequestCounts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

ItemKind = Literal["article", "teaser", "entry"]
SourceKind = Literal["page", "feed"]
#: A source's state (README "Feeds"): a seed page is active or error; a feed any of the others. ``paused``: a feed
#: that failed for ``[fetch] pause_after_days`` in a row, no longer polled until resumed.
SourceStatus = Literal["active", "failing", "gone", "empty", "not_a_feed", "error", "removed", "paused"]
#: A digest: pending (delivering), sent, skipped (too late to send), empty (no story).
DigestStatus = Literal["pending", "sent", "skipped", "empty"]
#: A delivery: pending (due or waiting for a retry), sending (claimed, under a lease), sent, failed, cancelled.
#: ``empty``: the subscriber's topics had no story this period: nothing was sent, and nothing will be (issue 18).
DeliveryStatus = Literal["pending", "sending", "sent", "failed", "cancelled", "empty"]
#: ``complained``: marked our mail as spam (a feedback report, a relay's complaint): never mailed again, not even a
#: confirmation from the subscribe form; only the operator's ``subscribers add`` brings the address back.
SubscriberStatus = Literal["pending", "confirmed", "unsubscribed", "bounced", "complained"]
#: A delivery that failed for good, counted against its subscriber: hard (5xx, or an address no message can go to) or
#: soft (4xx until the retries ran out). Each kind has its own count and limit (decision 0015).
BounceKind = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """One raw appearance of an item, before it is stored as a sighting."""

    kind: ItemKind
    key: str  # stable within its source: the same item parsed again gets the same key
    position: int  # 0 for a page's article, 1.. along a page's rail or down a feed
    title: str
    published: datetime | None  # timezone-aware, or None when the source gave no usable date
    summary: str  # plain text: a teaser's blurb, an article's standfirst, a feed entry's summary
    content: str = ""  # sanitized HTML of the full body when known
    link: str | None = None
    author: str | None = None
    tags: tuple[str, ...] = ()
    title_derived: bool = False  # True when the title was made from the first sentence
    raw_date: str | None = None  # the date exactly as written
    topics: tuple[str, ...] = ()  # taxonomy slugs from its title and summary (ingest.topics), set by the in-stage


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """A seed page: its article (None when the page holds only a rail) and its teasers."""

    article: ParsedItem | None
    teasers: tuple[ParsedItem, ...]
    warnings: tuple[str, ...] = ()

    @property
    def items(self) -> tuple[ParsedItem, ...]:
        return ((self.article,) if self.article else ()) + self.teasers


@dataclass(frozen=True, slots=True)
class Source:
    id: int
    kind: SourceKind
    location: str  # a page's absolute path, or a feed's URL as configured
    name: str | None
    status: SourceStatus
    last_error: str | None
    content_hash: str | None
    sightings: int = 0
    folder: str | None = None
    url: str | None = None  # a feed's current URL (after a permanent redirect)
    tags: tuple[str, ...] = ()
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_status: int | None = None
    error_count: int = 0
    next_check_at: datetime | None = None
    warning: str | None = None
    interval: int | None = None
    origin: str = "config"
    etag: str | None = None
    last_modified: str | None = None
    created_at: datetime | None = None
    failing_since: datetime | None = None  # the first failure of the current streak; None after a success
    site_url: str | None = None  # the site readers may visit: a feed's own link, a seed folder's configured url
    suggested_url: str | None = None  # a broken feed: a feed found on its site ("moved? try URL"); never adopted


@dataclass(frozen=True, slots=True)
class Sighting:
    id: int
    source_id: int
    source_location: str
    kind: ItemKind
    key: str
    position: int
    title: str
    published: datetime | None
    summary: str
    content: str
    link: str | None
    tags: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    story_id: int | None
    title_derived: bool = False
    match_rule: str | None = None
    match_score: float | None = None
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Story:
    id: int
    uid: str  # tag: URI minted at creation, never changed
    title: str
    summary: str
    content: str
    link: str | None
    published: datetime | None
    first_seen: datetime
    updated: datetime
    tags: tuple[str, ...]
    sightings: int = 0
    sources: tuple[str, ...] = field(default=())
    hidden_at: datetime | None = None  # the operator hid it (``stories hide``): readers no longer see it
    hidden_reason: str | None = None  # the operator's note, for operators only
    title_derived: bool = False  # the title was made from its first sentence: no source gave it a headline
    topics: tuple[str, ...] = ()  # its sightings' topics with the operator's additions, less the removals

    @property
    def is_recap(self) -> bool:
        return "recap" in self.tags


# ---- the store's answers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What storing one source's items did."""

    new: int  # sightings not seen before
    seen: int  # sightings already stored, now seen again
    new_stories: int


@dataclass(frozen=True, slots=True)
class FeedState:
    """A feed source's fetch state after one fetch, written with its entries in one transaction."""

    status: SourceStatus
    last_status: int | None
    error_count: int
    next_check_at: datetime | None
    last_error: str | None = None
    warning: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    store_validators: bool = False  # True: replace the stored ETag/Last-Modified with these (a fresh 200)
    url: str | None = None  # a permanently redirected feed's new URL
    success: bool = False  # the server answered with a usable feed (200 or 304)
    title: str | None = None  # the feed's own title, used when the source has no name
    site_url: str | None = None  # the feed's own link (its site), http(s) only; None: keep the one stored
    failing_since: datetime | None = None  # when the failure streak began (None: the feed is not failing)


@dataclass(frozen=True, slots=True)
class Override:
    """An operator's decision about two sightings: kept together (merge) or kept apart (split)."""

    kind: Literal["merge", "split"]
    sighting_a: int
    sighting_b: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Explanation:
    """What ``newsletter stories explain`` shows. ``story`` is None when the id was merged away."""

    story: Story | None
    merged_into: int | None
    merged: tuple[int, ...]
    sightings: tuple[Sighting, ...]
    overrides: tuple[Override, ...]


@dataclass(frozen=True, slots=True)
class StoreState:
    """A cheap fingerprint of what a publish depends on: it changes when a story row is added or updated."""

    generation: int  # the publish generation: bumped by every transaction that changes a story
    max_id: int
    max_updated: datetime | None


@dataclass(frozen=True, slots=True)
class StoryVersion:
    """Which story, in which version, at which place in "newest first": enough to tell whether a document changed."""

    id: int
    when: datetime  # coalesce(published, first_seen), the sort key
    updated: datetime
    hidden: bool = False  # hidden by the operator: an Atom document that would hold it says it was deleted


@dataclass(frozen=True, slots=True)
class StorySource:
    """One appearance of a story as its page shows it: where it was seen and what that source called it."""

    source: str  # the source as readers know it (ingest.core.sources.source_name); never a path on the server
    kind: SourceKind
    title: str
    link: str | None
    published: datetime | None
    first_seen: datetime
    author: str | None
    site_url: str | None = None  # the source's site (Source.site_url)


@dataclass(frozen=True, slots=True)
class ReaderSource:
    """A source as a reader counts them: one name (every page of a seed folder, every copy a feed sent, are one),
    its site's address, and what it brought of one story."""

    name: str
    url: str | None  # the site's address, http(s) only; never a path on the server
    link: str | None  # that source's own link to the story, http(s) only
    first_seen: datetime
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Byline:
    """Whom a feed entry credits: where the story was seen (a source, named as :class:`StorySource` names it) and
    the author that source gave, when it gave one."""

    source: str
    author: str | None = None


# ---- subscribers, digests, deliveries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str  # as stored: lower case, domain in ASCII (IDNA); the envelope recipient
    status: SubscriberStatus
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    bounces: int  # hard bounces since the last delivery that went through
    last_request_at: datetime | None
    soft_bounces: int = 0  # soft bounces since the last delivery that went through
    topics: tuple[str, ...] = ()  # the topic slugs they chose; none: every story


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """A subscribe form request, as recorded: its row, and what the window before it holds (it included)."""

    id: int
    client_requests: int  # requests from the same client
    mails: int  # confirmation mails sent, whoever asked


@dataclass(frozen=True, slots=True)
class Digest:
    id: int
    period: str  # ISO week, e.g. 2026-W48
    status: DigestStatus
    period_start: datetime
    period_end: datetime
    due_at: datetime
    created_at: datetime
    sent_at: datetime | None
    subject: str
    html: str  # rendered once, with per-recipient slots still in (see newsletter.digest.compose)
    text: str
    note: str | None
    story_count: int = 0


@dataclass(frozen=True, slots=True)
class NewDigest:
    """A digest to create, with its stories in order. Deliveries are made for ``pending`` ones only."""

    period: str
    status: DigestStatus
    period_start: datetime
    period_end: datetime
    due_at: datetime
    created_at: datetime
    subject: str = ""
    html: str = ""
    text: str = ""
    note: str | None = None
    story_ids: tuple[int, ...] = ()
    editions: tuple[NewEdition, ...] = ()  # one per distinct topic set chosen by confirmed subscribers


@dataclass(frozen=True, slots=True)
class NewEdition:
    """A digest's rendering for the subscribers who chose ``topics`` (sorted): only those topics' stories."""

    topics: tuple[str, ...]
    story_count: int  # 0: those subscribers get nothing this period (their deliveries are ``empty``)
    subject: str = ""
    html: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class Edition:
    id: int
    digest_id: int
    topics: tuple[str, ...]
    story_count: int
    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    digest_id: int
    subscriber_id: int
    email: str  # the subscriber row's address: checked again, in canonical form, it is the envelope recipient
    status: DeliveryStatus
    attempts: int
    reply: str | None
    message_id: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    subscriber_bounces: int = 0
    subscriber_soft_bounces: int = 0
    edition_id: int | None = None  # the digest's edition for the subscriber's topics; None: the whole digest


#: What a sender decided about one claimed delivery (see :class:`Outcome`).
OutcomeStatus = Literal["sent", "failed", "retry", "release"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claimed delivery.

    ``sent`` and ``failed`` are final (``bounce`` counts a failure against the subscriber, ``reset_bounces`` clears
    both counts); ``retry`` puts it back for ``next_attempt_at``; ``release`` puts it back untouched (it was never
    tried: the transport was down, or the run stopped before it).
    """

    delivery_id: int
    subscriber_id: int
    status: OutcomeStatus
    at: datetime
    reply: str | None = None
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    bounce: BounceKind | None = None
    reset_bounces: bool = False


#: What one ``newsletter run`` process does (``--role``): ``ingest`` reads the sources and publishes, ``sender`` reads
#: mail that came back and sends the digest, ``web`` serves the site. One process does all three unless told.
Role = Literal["ingest", "sender", "web"]
ROLES: tuple[Role, ...] = ("ingest", "sender", "web")

#: What a message that came back says (:class:`Feedback`): a delivery failed (``bounce``: hard or soft), a delivery is
#: late but still tried (``delayed``: counts nothing), a reader complained, a reader asked to unsubscribe by mail, or
#: something else (a reply, an auto-reply, a report naming none of our deliveries): left alone.
FeedbackKind = Literal["bounce", "delayed", "complaint", "unsubscribe", "other"]


@dataclass(frozen=True, slots=True)
class Feedback:
    """What one message that came back (a delivery report, a complaint, a mail to the unsubscribe address) or one
    relay's event says, before it is matched to a delivery. Tags are as found, not yet checked."""

    kind: FeedbackKind
    detail: str  # for a person: the status and the server's words, or the subject of a message left alone
    bounce: BounceKind | None = None
    bounce_tags: tuple[str, ...] = ()  # TOKEN of bounces+TOKEN@ addresses (VERP): a delivery, signed
    unsubscribe_tags: tuple[str, ...] = ()  # TOKEN of unsubscribe+TOKEN@ addresses: a subscriber, signed
    unsubscribe_tokens: tuple[str, ...] = ()  # tokens of List-Unsubscribe https links found in a returned original
    message_ids: tuple[str, ...] = ()  # our Message-IDs named (a relay's event)
    recipients: tuple[str, ...] = ()  # the addresses the report names (a relay's event: whom it is about)


@dataclass(frozen=True, slots=True)
class BounceLimits:
    """Bounces of each kind after which a confirmed subscriber becomes ``bounced`` (``[mail] bounce_limit`` and
    ``soft_bounce_limit``)."""

    hard: int = 3
    soft: int = 5


@dataclass(frozen=True, slots=True)
class Settled:
    """A digest's deliveries by status after settling, and when the earliest retry is due."""

    counts: dict[str, int]
    retry_at: datetime | None
    complete: bool  # nothing left to send: the digest is marked sent


@dataclass(frozen=True, slots=True)
class Origin:
    """One sighting of a candidate story, as the digest's selection needs it."""

    source_kind: SourceKind
    source_name: str  # the source as readers know it (ingest.core.sources.source_name)
    source_tags: tuple[str, ...]
    published: datetime | None
    first_seen: datetime
    source_first_seen: datetime  # the first sighting of its source: when that source was first read
    source_url: str | None = None  # the source's site (Source.site_url)
    link: str | None = None  # the sighting's link as a story shows it (tracking parameters dropped)
    title: str = ""
    title_derived: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """A story a digest may carry, with where it was seen."""

    story: Story
    origins: tuple[Origin, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one ingest pass did to one source, for the per-source line the CLI prints and the service's log line."""

    location: str
    new: int = 0
    seen: int = 0
    new_stories: int = 0
    unchanged: bool = False
    error: str | None = None
    warning: str | None = None
    skipped: bool = False  # not read at all (a symbolic link in a seed folder): only the warning says why
    fetch_seconds: float | None = None  # a feed's fetch, from the start of its request to the end of its body


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one retention pass removed: deliveries of old digests, and old stories' copies folded into a count."""

    deliveries: int = 0
    stories: int = 0  # stories whose copies were folded
    sightings: int = 0  # copies (sightings) removed, now counted in their story's folded_sightings

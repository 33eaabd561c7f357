"""Signed links for subscribers: confirm tokens (they expire), unsubscribe and preferences tokens, the key. Changes
no subscriber.

The only home of itsdangerous. A token carries a subscriber id in clear and a signature over the id AND the address
(and, for confirm tokens, the time it was made), so it names exactly one subscriber, cannot be made for another id,
and dies when the key changes. The caller looks the id up and passes the address in; any mismatch, a bad signature, a
malformed token and (for confirm) an expired one all give the same answer: None.

Unsubscribe tokens do not expire: an RFC 8058 one-click POST or a footer link may come from a digest months old, and
an unsubscribe link only ever lets its holder stop one subscriber's mail. Preferences tokens (a digest's "manage
preferences" link) do not expire either, for the same reason; one lets its holder change one subscriber's topics, or
stop their mail, and nothing else. Confirm tokens expire after
:data:`CONFIRM_MAX_AGE`.

Key: ``NEWSLETTER_SECRET_KEY`` when set. Otherwise a random key made once and kept in the database (so links stay
valid across restarts and every process sharing the database signs alike), with a warning: anyone who can read the
database can then forge links, which matters little (they can already change any row) but the environment is the
place for secrets in production.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, timedelta

from itsdangerous import Signer

from ingest.core.config import Settings
from ingest.core.links import parse_row_id
from ingest.store import Store

__all__ = ["CONFIRM_MAX_AGE", "Tokens", "signing_key", "subscriber_id"]

log = logging.getLogger("newsletter.tokens")  # the name log lines have always carried

CONFIRM_MAX_AGE = timedelta(days=7)
#: A confirm token made this far in the future (clock skew between processes) is still accepted.
_SKEW = timedelta(minutes=5)
_MAX_LEN = 200
_UNSUBSCRIBE = re.compile(r"([1-9][0-9]{0,9})\.([A-Za-z0-9_-]{20,100})")
_CONFIRM = re.compile(r"([1-9][0-9]{0,9})\.([0-9a-z]{1,12})\.([A-Za-z0-9_-]{20,100})")
_KEY_NAME = "signing_key"
#: An address tag (the TOKEN of bounces+TOKEN@, unsubscribe+TOKEN@): an id and 80 bits of HMAC, lower case, because
#: mail systems may change the case of an address's local part.
_TAG = re.compile(r"([1-9][0-9]{0,9})-([0-9a-f]{20})")


class Tokens:
    """Makes and checks tokens with one key. Cheap to make: one HMAC-SHA256 per token."""

    def __init__(self, key: str | bytes) -> None:
        self._unsubscribe = Signer(key, salt="feed-newsletter unsubscribe", digest_method=hashlib.sha256)
        self._confirm = Signer(key, salt="feed-newsletter confirm", digest_method=hashlib.sha256)
        self._preferences = Signer(key, salt="feed-newsletter preferences", digest_method=hashlib.sha256)
        self._tag_key = Signer(key, salt="feed-newsletter address tag", digest_method=hashlib.sha256).derive_key()

    def _tag(self, ident: int, what: str) -> str:
        return hmac.new(self._tag_key, f"{what}:{ident}".encode(), hashlib.sha256).hexdigest()[:20]

    def _check_tag(self, tag: str, what: str) -> int | None:
        m = _TAG.fullmatch(tag.lower()) if len(tag) <= _MAX_LEN else None
        if m is None or not hmac.compare_digest(self._tag(int(m.group(1)), what), m.group(2)):
            return None
        return int(m.group(1))

    def bounce_tag(self, delivery_id: int) -> str:
        """The TOKEN of a delivery's envelope sender ``bounces+TOKEN@domain`` (VERP): a report of that message's
        fate comes back to it, and names exactly one delivery."""
        return f"{delivery_id}-{self._tag(delivery_id, 'bounce')}"

    def check_bounce_tag(self, tag: str) -> int | None:
        """The delivery id ``tag`` was made for; None for anything else."""
        return self._check_tag(tag, "bounce")

    def unsubscribe_tag(self, subscriber_id: int, email: str) -> str:
        """The TOKEN of a subscriber's List-Unsubscribe mailto ``unsubscribe+TOKEN@domain``."""
        return f"{subscriber_id}-{self._tag(subscriber_id, 'unsubscribe ' + email)}"

    def check_unsubscribe_tag(self, tag: str, email: str) -> int | None:
        """The subscriber id when ``tag`` is the unsubscribe tag of that id and ``email``."""
        return self._check_tag(tag, "unsubscribe " + email)

    def unsubscribe(self, subscriber_id: int, email: str) -> str:
        return _lasting(self._unsubscribe, subscriber_id, email)

    def check_unsubscribe(self, token: str, email: str) -> int | None:
        """The subscriber id when ``token`` is an unsubscribe token for that id and ``email``."""
        return _check_lasting(self._unsubscribe, token, email)

    def preferences(self, subscriber_id: int, email: str) -> str:
        """The token of a subscriber's "manage preferences" page (topics, unsubscribe): it does not expire,
        like an unsubscribe token, since it sits in the footer of every digest (decision 0020)."""
        return _lasting(self._preferences, subscriber_id, email)

    def check_preferences(self, token: str, email: str) -> int | None:
        """The subscriber id when ``token`` is a preferences token for that id and ``email``."""
        return _check_lasting(self._preferences, token, email)

    def confirm(self, subscriber_id: int, email: str, now: datetime) -> str:
        stamp = _base36(int(now.timestamp()))
        signature = self._confirm.get_signature(f"{subscriber_id}.{stamp}:{email}").decode("ascii")
        return f"{subscriber_id}.{stamp}.{signature}"

    def check_confirm(self, token: str, email: str, now: datetime, max_age: timedelta = CONFIRM_MAX_AGE) -> int | None:
        """The subscriber id when ``token`` is a confirm token for that id and ``email``, made at most ``max_age``
        before ``now``."""
        m = _CONFIRM.fullmatch(token) if len(token) <= _MAX_LEN else None
        if m is None:
            return None
        ident, stamp, signature = int(m.group(1)), m.group(2), m.group(3)
        if not self._confirm.verify_signature(f"{ident}.{stamp}:{email}", signature):
            return None
        made = int(stamp, 36)
        age = now.timestamp() - made
        if age > max_age.total_seconds() or age < -_SKEW.total_seconds():
            return None
        return ident


def _lasting(signer: Signer, subscriber_id: int, email: str) -> str:
    """A token that does not expire: the id and a signature over the id and the address."""
    return f"{subscriber_id}.{signer.get_signature(f'{subscriber_id}:{email}').decode('ascii')}"


def _check_lasting(signer: Signer, token: str, email: str) -> int | None:
    m = _UNSUBSCRIBE.fullmatch(token) if len(token) <= _MAX_LEN else None
    if m is None:
        return None
    ident = int(m.group(1))
    if not signer.verify_signature(f"{ident}:{email}", m.group(2)):
        return None
    return ident


def subscriber_id(token: str) -> int | None:
    """The subscriber id a token (or an address tag) claims (unchecked: look it up, then check the token against its
    address)."""
    return parse_row_id(re.split(r"[.-]", token, maxsplit=1)[0]) if len(token) <= _MAX_LEN else None


def signing_key(store: Store, settings: Settings) -> str:
    """``NEWSLETTER_SECRET_KEY``, else the database's own key (made on first use), with a warning."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    key, created = store.stored_secret(_KEY_NAME, lambda: secrets.token_urlsafe(32))
    where = store.engine.url.render_as_string(hide_password=True)
    if created or where not in _warned:  # once per database and process: the web asks on every request
        _warned.add(where)
        log.warning(
            "NEWSLETTER_SECRET_KEY is not set: confirm and unsubscribe links are signed with a key %s the database; "
            "set NEWSLETTER_SECRET_KEY in production (changing it later invalidates the links already sent)",
            "just made and kept in" if created else "kept in",
        )
    return key


_warned: set[str] = set()


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
        if not value:
            return out

"""Checking and normalizing feed URLs given by a person (config, CLI, OPML). Pure; no DNS, no I/O.

Whether an address is private is decided at connect time by :mod:`ingest.fetch`; here only the form is checked.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ingest.core.errors import UsageError

MAX_URL_LENGTH = 2000


def check_feed_url(url: str) -> str:
    """Return the URL cleaned (scheme and host lower-cased, fragment dropped), or raise :class:`UsageError`."""
    raw = url
    url = url.strip()
    if not url:
        raise UsageError("feed URL is empty; expected an http:// or https:// URL")
    if len(url) > MAX_URL_LENGTH:
        raise UsageError(f"feed URL is {len(url):,} characters long; at most {MAX_URL_LENGTH:,} are accepted")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise UsageError(f"{raw!r}: a URL cannot contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{raw!r}: not a well-formed URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"'{scheme}:'" if scheme else "no scheme"
        raise UsageError(f"{raw!r}: only http:// and https:// feeds can be followed, got {shown}")
    host = parts.hostname
    if not host:
        raise UsageError(f"{raw!r}: the URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"{raw!r}: credentials in a feed URL are not accepted")
    if port == 0:
        raise UsageError(f"{raw!r}: port 0 is not a valid port")
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_key(url: str) -> str:
    """What two spellings of one address share: scheme and host lower-cased, no default port, no fragment, an empty
    path as "/". Anything that is not an http(s) URL (a seed page's path) is its own key."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return url
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))

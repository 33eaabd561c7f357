"""Text as the matcher compares it: titles, blurbs and links folded to one spelling. Pure string functions.

Folding undoes what scrapes and feeds do to the same words: entities (twice: scrapes double-escape), NFKC
(non-breaking spaces, "…", full-width forms), curly quotes, dashes, case, runs of spaces; a title also loses a
leading "Recap:" label and trailing " | Site Name" suffixes, a blurb its truncation mark, a link its scheme,
"www.", default port, fragment, trailing slash and tracking parameters.
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "TOKEN",
    "drop_tracking",
    "fold",
    "has_site_suffix",
    "is_truncated",
    "normalize_blurb",
    "normalize_link",
    "normalize_title",
    "title_key",
]

# Quotes, dashes and invisible characters that NFKC leaves alone; compared as their plain forms.
_FOLD = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′`´", "'"),
        **dict.fromkeys("“”„‟″«»", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", None),
    }
)
_RECAP = re.compile(r"^recap\s*:\s*")
# " | Site Name" at the end of a title: at most six words after the bar.
_SITE_SUFFIX = re.compile(r"\s+\|\s+(?:[^|\s]+\s?){1,6}$")
# A blurb cut short: "...", "…" (NFKC makes it "..."), "[...]" or "(...)", possibly repeated, at the very end.
_TRUNCATION = re.compile(r"(?:\s*(?:\[\s*\.{3,}\s*\]|\(\s*\.{3,}\s*\)|\.{3,}))+\s*$")
_MARK_ENDS = ("...", "]", ")")  # what a truncation mark ends with: a cheap test before the regex
TOKEN = re.compile(r"[^\W_]+\+*")
_TRACKING = re.compile(r"^(?:utm_.*|fbclid|gclid|mc_cid|mc_eid)$")


def fold(text: str) -> str:
    """Entities (twice: scrapes double-escape), NFKC (nbsp, "…", full-width forms), quotes, dashes, case, spaces."""
    for _ in range(2):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    if text.isascii():  # most text: NFKC and the quote table change nothing but a backtick
        return " ".join((text.translate(_FOLD) if "`" in text else text).lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).translate(_FOLD).casefold().split())


def normalize_title(title: str) -> str:
    """A title as compared: folded, without a leading "Recap:" label or trailing " | Site Name" suffixes."""
    text = fold(title)
    if text.startswith("recap"):
        text = _RECAP.sub("", text, count=1)
    return _strip_site_suffix(text)[0].rstrip(" .")


def title_key(title: str) -> str:
    """A title's words, normalized: two titles that differ only in punctuation have the same key."""
    return " ".join(TOKEN.findall(normalize_title(title)))


def _strip_site_suffix(text: str) -> tuple[str, bool]:
    stripped = False
    while "|" in text and (m := _SITE_SUFFIX.search(text)) and len(TOKEN.findall(text[: m.start()])) >= 2:
        text, stripped = text[: m.start()], True
    return text, stripped


def has_site_suffix(title: str) -> bool:
    return _strip_site_suffix(fold(title))[1]


def normalize_blurb(text: str) -> str:
    """A blurb as compared: folded, without a trailing truncation mark ("...", "…", "[...]")."""
    folded = fold(text)
    if folded.endswith(_MARK_ENDS):
        folded = _TRUNCATION.sub("", folded)
    return folded.rstrip(" ,;:-")


def is_truncated(text: str) -> bool:
    """Whether a blurb ends with a truncation mark."""
    folded = fold(text)
    return folded.endswith(_MARK_ENDS) and bool(_TRUNCATION.search(folded))


def normalize_link(link: str | None) -> str | None:
    """A link as compared: scheme dropped (http = https), host lowercased without "www." and default port, no
    fragment, no trailing slash, tracking parameters (utm_*, fbclid, ...) dropped, the rest sorted. None for no link."""
    if link is None or not link.strip():
        return None
    text = link.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    if not parts.hostname:
        return text
    host = parts.hostname.lower().removeprefix("www.")
    if port is not None and port not in (80, 443):
        host = f"{host}:{port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k))
    path = parts.path.rstrip("/")
    return f"//{host}{path}" + (f"?{urlencode(query)}" if query else "")


def drop_tracking(link: str) -> str:
    """``link`` as given, without its tracking parameters."""
    try:
        parts = urlsplit(link)
    except ValueError:
        return link
    if not parts.query:
        return link
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)]
    return urlunsplit(parts._replace(query=urlencode(query)))

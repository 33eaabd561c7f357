"""Incoming HTML made safe to store and publish, and its plain text: the only module that imports nh3.

:func:`sanitize_html` keeps a conservative set of tags; links may be http, https or mailto, images http or https;
relative URLs are resolved against the item's base URL (or dropped without one); scripts, styles, frames, event
handlers and ``javascript:`` URLs never survive. :func:`html_to_text` gives the words a reader would see, for
summaries and duplicate matching. Pure functions; no I/O.
"""

from __future__ import annotations

import re
from functools import lru_cache

import nh3

from ingest.core.text import xml_safe

#: Elements removed with everything inside them: nothing in them is text a reader of an article should see.
_DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math", "textarea", "select"}
)
_TAGS = frozenset(nh3.ALLOWED_TAGS - _DROP_WITH_CONTENT)
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_IMAGE_SCHEMES = frozenset({"http", "https"})
_SCHEME = re.compile(r"\s*([a-zA-Z][a-zA-Z0-9+.-]*):")
_LINK_REL = "noopener noreferrer nofollow"

#: Elements that separate words: stripping them must leave a space, or "<p>one</p><p>two</p>" reads "onetwo".
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "li",
        "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
# nh3 escapes "<" and ">" in text and in attribute values alike, so in its output every "<" opens a tag and every
# ">" closes one: these patterns are exact there. They must not be used on HTML that did not come out of nh3.
# (tests/test_sanitize.py holds attribute values with ">" in them, to notice if nh3 ever stops escaping it.)
_COMMON_BLOCKS = ("p", "br", "li", "div", "td", "tr", "h2", "h3", "ul", "ol")  # tried first: the regex is the cost
_BLOCK_TAG = re.compile(r"</?(?:" + "|".join((*_COMMON_BLOCKS, *sorted(_BLOCKS - set(_COMMON_BLOCKS)))) + r")\b[^>]*>")
_ANY_TAG = re.compile(r"<[^>]*>")
# The characters xml_safe replaces (C0 and C1 controls, surrogates, U+FFFE and U+FFFF): finding whether there is
# anything to replace, which there rarely is, costs a tenth of replacing. ASCII text has its own, faster check.
_NOT_XML_SAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_XML_SAFE_ASCII = bytes([9, 10, 13, *range(0x20, 0x80)])


def _xml_safe(text: str) -> str:
    if text.isascii():
        return xml_safe(text) if text.encode().translate(None, _XML_SAFE_ASCII) else text
    return xml_safe(text) if _NOT_XML_SAFE.search(text) else text


def _keep_image_source(tag: str, attribute: str, value: str) -> str | None:
    # url_schemes is shared by href and src: mailto: is fine on a link but not as an image source. The filter runs
    # before relative URLs are resolved, so a URL without a scheme is left for url_relative to resolve or drop.
    if tag == "img" and attribute == "src":
        scheme = _SCHEME.match(value)
        if scheme and scheme.group(1).lower() not in _IMAGE_SCHEMES:
            return None
    return value


@lru_cache(maxsize=512)
def _cleaner(base_url: str | None) -> nh3.Cleaner:
    # One cleaner per base URL: building one costs about a tenth of a cleaning, and a feed has few bases.
    return nh3.Cleaner(
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        url_schemes=set(_LINK_SCHEMES),
        link_rel=_LINK_REL,
        url_relative=("rewrite_with_base", base_url) if base_url else "deny",
        attribute_filter=_keep_image_source,
    )


# Only block elements the sanitizer also keeps, so that the text of an entry is the same whether it is taken from
# the raw HTML or from the sanitized HTML (see text_of_sanitized).
_TEXT_CLEANER = nh3.Cleaner(
    tags=set(_BLOCKS & _TAGS),
    clean_content_tags=set(_DROP_WITH_CONTENT),
    attributes={},
    link_rel=None,
)


def _usable_base(base_url: str | None) -> str | None:
    if base_url and base_url.lower().startswith(("http://", "https://")):
        return base_url
    return None


def sanitize_html(html_text: str, *, base_url: str | None) -> str:
    """``html_text`` with only safe tags, attributes and URLs left; relative URLs made absolute against ``base_url``."""
    if not html_text:
        return ""
    try:
        cleaner = _cleaner(_usable_base(base_url))
    except ValueError:  # a base URL nh3 cannot parse: relative links are dropped rather than guessed
        cleaner = _cleaner(None)
    try:
        clean = cleaner.clean(html_text)
    except UnicodeEncodeError:  # nh3 cannot take a lone surrogate
        clean = cleaner.clean(xml_safe(html_text))
    return _xml_safe(clean)  # control characters pass through nh3, and "&#1;" makes one


def text_of_sanitized(clean_html: str) -> str:
    """The plain text of HTML that came out of :func:`sanitize_html` (faster than :func:`html_to_text`)."""
    text = clean_html
    if "<" in text:
        text = _ANY_TAG.sub("", _BLOCK_TAG.sub(" ", text))
    if "&" in text:
        # nh3 escapes exactly these in text; str.replace beats html.unescape's regex and callback, and "&amp;" goes
        # last so that "&amp;lt;" stays the literal "&lt;".
        text = (
            text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&nbsp;", "\xa0")
        ).replace("&amp;", "&")
    return " ".join(text.split())


def html_to_text(html_text: str) -> str:
    """The words of an HTML fragment, as a reader would see them: tags gone, entities decoded, whitespace collapsed."""
    if not html_text:
        return ""
    if "<" not in html_text and "&" not in html_text:
        return _xml_safe(" ".join(html_text.split()))
    try:
        clean = _TEXT_CLEANER.clean(html_text)
    except UnicodeEncodeError:
        clean = _TEXT_CLEANER.clean(xml_safe(html_text))
    return _xml_safe(text_of_sanitized(clean))

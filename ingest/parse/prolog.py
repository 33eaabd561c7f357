"""What happens to a feed's bytes before any parser sees them: decoding to UTF-8 as feedparser would, the DOCTYPE and
entity guard, the caps on each field's text, and the fix for character references to characters that cannot exist.
Bytes in, bytes out.
"""

from __future__ import annotations

import re
from typing import Any

from feedparser.encodings import convert_to_utf8
from feedparser.sanitizer import RE_ENTITY_PATTERN

from ingest.parse.normalize import RAW_AUTHOR_MAX, RAW_BODY_MAX, RAW_FIELD_MAX


def to_utf8(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """The body as UTF-8 with a UTF-8 XML declaration, decoded exactly as feedparser decodes it.

    Done here once, so the DOCTYPE guard sees the text the parser will see (a UTF-16 body hides its DOCTYPE from a
    byte search) and the fast path reads the same characters as feedparser. The headers handed on declare UTF-8."""
    scratch: dict[str, Any] = {}
    try:
        data = convert_to_utf8(headers, body, scratch)
    except (UnicodeDecodeError, ValueError):
        # An encoding name with a non-ASCII byte or a NUL in it (declaration or charset) crashes feedparser; such a
        # name is garbage anyway: keep its printable ASCII, drop the charset, and let the usual fallbacks decide.
        start = body.find(b"<?", 0, 1024)
        end = body.find(b"?>", start, 1024) if start >= 0 else -1
        if end >= 0:
            body = body[:start] + bytes(b for b in body[start:end] if 0x20 <= b < 0x7F) + body[end:]
        mime = headers.get("content-type", "").split(";")[0]
        headers = {**headers, "content-type": mime} if mime else headers
        try:
            data = convert_to_utf8(headers, body, scratch)
        except (UnicodeDecodeError, ValueError):
            return body, headers
    if not isinstance(data, bytes) or not scratch.get("encoding"):
        return body, headers
    mime = headers.get("content-type", "").split(";")[0].strip()
    return data, {**headers, "content-type": f"{mime or 'application/xml'}; charset=utf-8"}


_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_FIRST_ELEMENT = re.compile(rb"<\w")


def strip_internal_subset(data: bytes) -> bytes:
    """Remove a DOCTYPE's internal subset (``<!DOCTYPE x [ ... ]>`` becomes ``<!DOCTYPE x >``) and any stray entity
    declaration before the root element, so that no parser ever expands an entity the document defines.

    The DOCTYPE is looked for where expat looks (the prolog, comments and processing instructions skipped) and where
    feedparser looks (before the first ``<`` followed by a letter), which differ when a comment holds a tag."""
    if b"<!" not in data:
        return data
    for _ in range(8):  # one DOCTYPE is legal; a few more cover a hostile document repeating it
        span = _subset_to_remove(data)
        if span is None:
            break
        data = data[: span[0]] + data[span[1] :]
    end = max(_prolog_end(data), _first_element(data) + 1)
    head = data[:end]
    if b"<!ENTITY" in head.upper():
        # feedparser re-inserts the "safe" declarations it finds here (RE_ENTITY_PATTERN); leave none to find.
        head = _ENTITY_DECL.sub(b"", RE_ENTITY_PATTERN.sub(b"", head))
        data = head + data[end:]
    return data


_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_SPACE = re.compile(rb"[ \t\r\n]+")


def _subset_to_remove(data: bytes) -> tuple[int, int] | None:
    first = _first_element(data)
    found = _DOCTYPE.search(data, 0, first if first >= 0 else len(data))
    candidates = [found.end()] if found else []
    candidates += _prolog_doctypes(data)
    for pos in candidates:
        start, end = _internal_subset(data, pos)
        if start >= 0:
            return start, end
    return None


def _prolog_doctypes(data: bytes) -> list[int]:
    return _scan_prolog(data)[1]


def _prolog_end(data: bytes) -> int:
    return _scan_prolog(data)[0]


def _scan_prolog(data: bytes) -> tuple[int, list[int]]:
    """Where the prolog ends (the root element, or whatever expat would stop at), and where each DOCTYPE name starts."""
    n = len(data)
    i = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    doctypes: list[int] = []
    while i < n:
        if data[i] in b" \t\r\n":
            i = _SPACE.match(data, i).end()  # type: ignore[union-attr]
        elif data.startswith(b"<?", i):
            close = data.find(b"?>", i + 2)
            i = n if close < 0 else close + 2
        elif data.startswith(b"<!--", i):
            close = data.find(b"-->", i + 4)
            i = n if close < 0 else close + 3
        elif data[i : i + 9].upper() == b"<!DOCTYPE":
            doctypes.append(i + 9)
            start, end = _internal_subset(data, i + 9)
            close = data.find(b">", end if start >= 0 else i + 9)
            i = n if close < 0 else close + 1
        else:
            break
    return i, doctypes


def _first_element(data: bytes) -> int:
    match = _FIRST_ELEMENT.search(data)
    return match.start() if match else -1


_DOCTYPE_HEAD_TOKEN = re.compile(rb"[\"'\[>]")
_SUBSET_TOKEN = re.compile(rb"[\"'\]]|<!--|<\?")


def _internal_subset(data: bytes, pos: int) -> tuple[int, int]:
    """Where the internal subset of the DOCTYPE whose name starts at ``pos`` begins and ends (-1 when there is none).

    Quoted strings, comments and processing instructions are skipped, so a ``]>`` inside an entity value does not
    end the subset early. An unterminated subset runs to the end of the document. Regular expressions jump from
    token to token: a hostile megabyte-long DOCTYPE costs no Python loop per byte."""
    n = len(data)
    i = pos
    while True:  # the name and the external id, up to '[' or '>'
        token = _DOCTYPE_HEAD_TOKEN.search(data, i)
        if token is None:
            return -1, -1
        c = data[token.start()]
        if c == 0x3E:  # >
            return -1, -1
        if c == 0x5B:  # [
            break
        close = data.find(bytes([c]), token.end())
        if close < 0:
            return -1, -1
        i = close + 1
    start = token.start()
    i = token.end()
    while True:
        token = _SUBSET_TOKEN.search(data, i)
        if token is None:
            return start, n
        found = token.group()
        if found == b"]":
            return start, token.end()
        closer = {b"<!--": b"-->", b"<?": b"?>"}.get(found, found)
        close = data.find(closer, token.end())
        if close < 0:
            return start, n
        i = close + len(closer)


_CHARREF = re.compile(rb"&#([0-9]{1,12}|[xX][0-9a-fA-F]{1,12});")
_CHARREF_ANY = re.compile(rb"&#(?:[0-9]{13,}|[xX][0-9a-fA-F]{13,});")


def replace_impossible_charrefs(data: bytes) -> bytes:
    """``&#xD800;`` and ``&#x110000;`` make feedparser's lenient parser raise; they become U+FFFD."""
    if b"&#" not in data:
        return data

    def fix(match: re.Match[bytes]) -> bytes:
        ref = match.group(1)
        code = int(ref[1:], 16) if ref[:1] in (b"x", b"X") else int(ref)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return b"&#xFFFD;"
        return match.group(0)

    return _CHARREF_ANY.sub(b"&#xFFFD;", _CHARREF.sub(fix, data))


# Element local names (any namespace prefix, any case) and the cap on all the text inside one, children included.
# The outermost of these around a piece of text decides: text in a <b> inside an <author> counts towards the author.
_FIELD_CAPS: dict[bytes, int] = {
    **dict.fromkeys(
        (b"author", b"creator", b"contributor", b"managingeditor", b"webmaster", b"publisher", b"owner", b"name",
         b"email"),
        RAW_AUTHOR_MAX,
    ),
    **dict.fromkeys(
        (b"title", b"link", b"guid", b"id", b"category", b"subject", b"keywords", b"pubdate", b"published",
         b"updated", b"modified", b"issued", b"created", b"date", b"lastbuilddate", b"ttl", b"uri", b"url",
         b"homepage"),
        RAW_FIELD_MAX,
    ),
    **dict.fromkeys(
        (b"description", b"encoded", b"content", b"summary", b"abstract", b"fullitem", b"body", b"subtitle",
         b"tagline", b"info"),
        RAW_BODY_MAX,
    ),
}  # fmt: skip
# A start or end tag. No "<" inside: XML allows none in a tag, and a failed match then stops at the next "<", so a
# hostile run of unclosed tags costs linear time, not quadratic.
_TAG = re.compile(rb"""<(/?)([A-Za-z_:\x80-\xff][^\s/<>"']*)(?:[^<>"']++|"[^"<]*+"|'[^'<]*+')*+>""")


def cap_fields(data: bytes) -> tuple[bytes, int]:
    """The document with the text of each field cut to its cap (``RAW_*_MAX`` in :mod:`ingest.parse.normalize`), and
    how many fields were cut. Nothing else changes: a well-formed document stays well-formed (cuts fall between
    characters and outside entity references; CDATA sections keep their ends), and tags stay where they are.

    A lexical pass that never fails, for not-well-formed documents too: an end tag closes the innermost open element
    of its name (an end tag of none is ignored); an unterminated comment, CDATA section or tag makes the rest of the
    document text, as a lenient parser would read it."""
    if len(data) <= RAW_AUTHOR_MAX:
        return data, 0
    return _Capper(data).run()


class _Capper:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.kept: list[bytes] = []
        self.copied = 0  # data[:copied] is in kept
        self.cuts = 0
        self.stack: list[bytes] = []  # the open elements' local names
        self.where: dict[bytes, list[int]] = {}  # local name -> its depths on the stack
        self.field_depth = -1  # depth of the element whose cap applies; -1 for none
        self.left = 0  # bytes of text the current field may still take
        self.field_cut = False

    def run(self) -> tuple[bytes, int]:
        data, n, pos = self.data, len(self.data), 0
        while pos < n:
            lt = data.find(b"<", pos)
            if lt < 0:
                self._text(pos, n)
                break
            if lt > pos:
                self._text(pos, lt)
            if data.startswith(b"<!--", lt):
                pos = self._skip(lt, b"-->")
            elif data.startswith(b"<![CDATA[", lt):
                end = data.find(b"]]>", lt + 9)
                self._text(lt + 9, n if end < 0 else end, cdata=True)
                pos = n if end < 0 else end + 3
            elif data.startswith(b"<?", lt):
                pos = self._skip(lt, b"?>")
            elif data.startswith(b"<!", lt):
                pos = self._skip(lt, b">")
            elif (tag := _TAG.match(data, lt)) is not None:
                pos = tag.end()
                local = tag.group(2).rpartition(b":")[2].lower()
                if tag.group(1):
                    self._close(local)
                elif data[pos - 2] != 0x2F:  # not an empty-element tag "<x/>"
                    self._open(local)
            else:  # a "<" that starts no tag: text to a lenient parser
                self._text(lt, lt + 1)
                pos = lt + 1
        if not self.cuts:
            return data, 0
        self.kept.append(data[self.copied :])
        return b"".join(self.kept), self.cuts

    def _skip(self, start: int, closer: bytes) -> int:
        end = self.data.find(closer, start + 2)
        if end < 0:
            self._text(start, len(self.data))
            return len(self.data)
        return end + len(closer)

    def _open(self, local: bytes) -> None:
        self.where.setdefault(local, []).append(len(self.stack))
        self.stack.append(local)
        if self.field_depth < 0 and (cap := _FIELD_CAPS.get(local)) is not None:
            self.field_depth, self.left, self.field_cut = len(self.stack) - 1, cap, False

    def _close(self, local: bytes) -> None:
        depths = self.where.get(local)
        if not depths:
            return
        depth = depths[-1]
        while len(self.stack) > depth:
            self.where[self.stack.pop()].pop()
        if self.field_depth >= depth:
            self.field_depth = -1

    def _text(self, start: int, end: int, *, cdata: bool = False) -> None:
        size = end - start
        if self.field_depth < 0:  # text outside any field: each run on its own
            if size <= RAW_BODY_MAX:
                return
            keep = RAW_BODY_MAX
            self.cuts += 1
        elif size <= self.left:
            self.left -= size
            return
        else:
            keep, self.left = self.left, 0
            if not self.field_cut:
                self.cuts += 1
                self.field_cut = True
        cut = _cut_point(self.data, start, start + keep, cdata=cdata)
        self.kept.append(self.data[self.copied : cut])
        self.copied = end


def _cut_point(data: bytes, start: int, cut: int, *, cdata: bool) -> int:
    """``cut`` moved back so that it splits no UTF-8 character and, outside CDATA, no entity or character reference."""
    if not cdata:
        amp = data.rfind(b"&", max(start, cut - 32), cut)
        if amp >= 0 and data.find(b";", amp, cut) < 0:
            cut = amp
    while cut > start and 0x80 <= data[cut] < 0xC0:  # data[cut] is the first byte dropped: not inside a character
        cut -= 1
    return cut

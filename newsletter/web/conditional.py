"""HTTP validators and content coding for what the web serves: strong ETags, Last-Modified, 304s, gzip. No routes.

Conditional requests follow RFC 9110 section 13: If-None-Match (weak comparison) wins over If-Modified-Since. The
gzip body is another representation, so it has its own strong ETag (``"<hash>-gz"``) and every answer carries
``Vary: Accept-Encoding``; If-None-Match accepts either tag, since both name the same version of the document.
Starlette's GZipMiddleware is not used: it compresses whenever "gzip" appears in Accept-Encoding, even ``gzip;q=0``,
and would leave the identity ETag on a gzip body.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Document", "accepts_gzip", "gzip_body", "not_modified", "respond"]

_GZIP_LEVEL = 6


@dataclass(frozen=True, slots=True)
class Document:
    """One document's bytes, gzip twin and validators, computed once per version."""

    body: bytes
    gzipped: bytes
    etag: str  # quoted, strong: '"<sha256 prefix>"'
    gzip_etag: str
    last_modified: str  # IMF-fixdate
    modified: int  # seconds since the epoch, what If-Modified-Since compares with

    @classmethod
    def of(cls, body: bytes, modified: float) -> Document:
        digest = hashlib.sha256(body).hexdigest()[:32]
        # mtime=0: the same bytes always give the same gzip bytes, so the gzip ETag is stable across restarts.
        gzipped = gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)
        seconds = int(modified)
        return cls(
            body=body,
            gzipped=gzipped,
            etag=f'"{digest}"',
            gzip_etag=f'"{digest}-gz"',
            last_modified=formatdate(seconds, usegmt=True),
            modified=seconds,
        )


def accepts_gzip(request: Request) -> bool:
    """True when Accept-Encoding lists gzip (or ``*``) with a non-zero q."""
    header = request.headers.get("accept-encoding", "")
    star = False
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding == "*":
            star = q > 0
        else:
            return q > 0
    return star


def not_modified(request: Request, doc: Document) -> bool:
    """RFC 9110 13.1.2 and 13.1.3 for GET and HEAD: If-None-Match first; If-Modified-Since only without it."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or doc.etag in tags or doc.gzip_etag in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False  # not an HTTP-date: ignored, as RFC 9110 requires
        if since.tzinfo is None:
            return False
        return doc.modified <= since.timestamp()
    return False


def respond(request: Request, doc: Document, media_type: str, max_age: int) -> Response:
    """200 with the body (gzip when accepted), or 304 when the client's validators match."""
    gz = accepts_gzip(request)
    headers = {
        "ETag": doc.gzip_etag if gz else doc.etag,
        "Last-Modified": doc.last_modified,
        "Cache-Control": f"public, max-age={max_age}",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if not_modified(request, doc):
        return Response(status_code=304, headers=headers)
    headers["Content-Type"] = media_type
    if gz:
        headers["Content-Encoding"] = "gzip"
        return Response(doc.gzipped, headers=headers)
    return Response(doc.body, headers=headers)


def gzip_body(request: Request, body: bytes, headers: dict[str, str], minimum: int = 1024) -> bytes:
    """``body`` gzipped when the client accepts it and it is worth it; sets Content-Encoding and Vary in ``headers``."""
    headers["Vary"] = "Accept-Encoding"
    if len(body) < minimum or not accepts_gzip(request):
        return body
    headers["Content-Encoding"] = "gzip"
    return gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)

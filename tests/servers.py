"""A hostile HTTP server on 127.0.0.1 for tests: every way a feed server can misbehave, settable path by path.

It writes HTTP by hand on raw sockets (a thread per connection), so it can do what a well-behaved server library
refuses to: lie about or omit Content-Length, stream forever, drip one byte at a time, answer a bomb. Each response
closes its connection. It records every request (method, target, headers) so tests can check what the client sent,
and how many requests were in flight at once.

Use the ``hostile_server`` fixture, or ``with HostileServer() as server:`` outside pytest (benchmarks, scripts).
``server.set(path, status=..., headers=..., body=..., ...)`` replaces a route; :data:`DEFAULT_ROUTES` lists the
ready-made ones.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import socketserver
import subprocess
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import pytest

Framing = Literal["length", "close", "chunked"]

FEED_ETAG = '"feed-v1"'
FEED_LAST_MODIFIED = "Wed, 25 Nov 2026 08:00:00 GMT"
#: Two hours after tests.conftest.NOW: what the default 503 route asks for.
RETRY_DATE = "Fri, 27 Nov 2026 12:00:00 GMT"
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
PRIVATE_URL = "http://10.0.0.1/feed"

FEED_BODY = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Hostile test feed</title><link>http://example.org/</link>
<description>A feed served by tests/servers.py</description><ttl>90</ttl>
<item><title>First story</title><link>http://example.org/1</link><guid>http://example.org/1</guid>
<pubDate>Wed, 25 Nov 2026 08:00:00 GMT</pubDate><description>The first story.</description></item>
<item><title>Second story</title><link>http://example.org/2</link><guid>http://example.org/2</guid>
<pubDate>Tue, 24 Nov 2026 08:00:00 GMT</pubDate><description>The second story.</description></item>
</channel></rss>
"""
LOGIN_PAGE = b"""<!DOCTYPE html>
<html><head><title>Sign in</title></head><body><form method="post" action="/login">
<input name="user"><input name="password" type="password"><button>Sign in</button></form></body></html>
"""
#: Bodies are sent this many bytes at a time (one chunk each when chunked).
PIECE = 16 * 1024
_SOCKET_TIMEOUT = 5.0


@functools.cache
def gzip_bomb(inflated: int = 64 * 1024 * 1024) -> bytes:
    """``inflated`` zero bytes, gzipped: about a thousandth of that on the wire. Built once per session."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [packer.compress(zeros) for _ in range(inflated // len(zeros))]
    parts.append(packer.compress(bytes(inflated % len(zeros))))
    parts.append(packer.flush())
    return b"".join(parts)


def gzipped(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def deflated(data: bytes, *, raw: bool = False) -> bytes:
    """zlib-wrapped deflate, as RFC 9110 means it; ``raw=True`` for the bare deflate some servers send instead."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@dataclass(frozen=True, slots=True)
class Route:
    """What the server answers on one path."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    repeat: int | None = 1  # the body is sent this many times; None: forever (an endless body)
    framing: Framing = "length"  # Content-Length, none (the body ends when the connection closes), or chunked
    drip: float | None = None  # seconds between single bytes of the body
    etag: str | None = None  # sent, and a request whose If-None-Match matches gets 304
    last_modified: str | None = None  # sent, and a request with this exact If-Modified-Since gets 304
    barrier: threading.Barrier | None = None  # hold each answer until this many requests of the route are waiting


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the server received it."""

    method: str
    target: str  # the request target: path and query
    headers: Mapping[str, str]  # lower-case names

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


def _redirect(status: int, location: str) -> Route:
    return Route(status=status, headers=[("Location", location)])


def _feed_route() -> Route:
    return Route(
        headers=[("Content-Type", "application/rss+xml; charset=utf-8"), ("Cache-Control", "max-age=600")],
        body=FEED_BODY,
        etag=FEED_ETAG,
        last_modified=FEED_LAST_MODIFIED,
    )


_RSS = [("Content-Type", "application/rss+xml")]

#: The ready-made routes. Redirect targets starting with "/" are on the server itself.
DEFAULT_ROUTES: dict[str, Route] = {
    "/feed": _feed_route(),
    "/big": Route(headers=_RSS, body=b"x" * PIECE, repeat=256),  # 4 MiB with Content-Length
    "/big-no-length": Route(headers=_RSS, body=b"x" * PIECE, repeat=256, framing="close"),
    "/big-chunked": Route(headers=_RSS, body=b"x" * PIECE, repeat=256, framing="chunked"),
    "/endless": Route(headers=_RSS, body=b"<rss>" + b"x" * (PIECE - 5), repeat=None, framing="chunked"),
    "/endless-no-length": Route(headers=_RSS, body=b"x" * PIECE, repeat=None, framing="close"),
    "/gzip": Route(headers=[*_RSS, ("Content-Encoding", "gzip")], body=gzipped(FEED_BODY)),
    "/deflate": Route(headers=[*_RSS, ("Content-Encoding", "deflate")], body=deflated(FEED_BODY)),
    "/raw-deflate": Route(headers=[*_RSS, ("Content-Encoding", "deflate")], body=deflated(FEED_BODY, raw=True)),
    "/gzip-bomb": Route(headers=[*_RSS, ("Content-Encoding", "gzip")], body=gzip_bomb()),  # 64 MiB of zeros
    "/bad-gzip": Route(headers=[*_RSS, ("Content-Encoding", "gzip")], body=b"this is not gzip at all"),
    "/brotli": Route(headers=[*_RSS, ("Content-Encoding", "br")], body=b"\x0b\x02\x80hello\x03"),
    "/drip": Route(headers=_RSS, body=FEED_BODY[:600], drip=0.05),  # 600 bytes, 20 a second: 30 s
    "/loop-a": _redirect(302, "/loop-b"),
    "/loop-b": _redirect(302, "/loop-a"),
    "/to-metadata": _redirect(302, METADATA_URL),
    "/to-private": _redirect(302, PRIVATE_URL),
    "/to-file": _redirect(302, "file:///etc/passwd"),
    "/no-location": Route(status=302),
    "/moved-301": _redirect(301, "/feed"),
    "/found-302": _redirect(302, "/feed"),
    "/see-other-303": _redirect(303, "/feed"),
    "/temporary-307": _redirect(307, "/feed"),
    "/permanent-308": _redirect(308, "/feed"),
    "/gone": Route(status=410, body=b"gone"),
    "/slow-down": Route(status=429, headers=[("Retry-After", "120")], body=b"too many requests"),
    "/unavailable": Route(status=503, headers=[("Retry-After", RETRY_DATE)], body=b"down for maintenance"),
    "/login": Route(headers=[("Content-Type", "text/html; charset=utf-8")], body=LOGIN_PAGE),
    "/empty": Route(headers=_RSS),
    "/error": Route(status=500, body=b"internal error"),
}


class HostileServer:
    """The server: start it, point a fetcher at :meth:`url`, then read :attr:`requests`."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = dict(DEFAULT_ROUTES)
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life ---

    def start(self) -> Self:
        server = _TCPServer(("127.0.0.1", 0), _Handler)
        server.hostile = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            barriers = [r.barrier for r in self._routes.values() if r.barrier is not None]
        for barrier in barriers:
            barrier.abort()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the connection threads (block_on_close)
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # --- use ---

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def set(
        self,
        path: str,
        *,
        status: int = 200,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        repeat: int | None = 1,
        framing: Framing = "length",
        drip: float | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        barrier: threading.Barrier | None = None,
    ) -> Route:
        """Answer ``path`` this way from now on (replacing any default). Returns the route."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        route = Route(status, pairs, body, repeat, framing, drip, etag, last_modified, barrier)
        with self._lock:
            self._routes[path] = route
        return route

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.set(path, status=status, headers=[("Location", location)])

    def change(self, path: str, **changes: object) -> None:
        """Change some fields of an existing route, e.g. ``change("/feed", body=b"...", etag='"v2"')``."""
        with self._lock:
            self._routes[path] = replace(self._routes[path], **changes)  # type: ignore[arg-type]

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def requests_for(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    # --- serving (connection threads) ---

    def _route(self, path: str) -> Route:
        with self._lock:
            return self._routes.get(path) or Route(status=404, body=b"not found")

    def _arrived(self, request: Received) -> None:
        with self._lock:
            self._received.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _answering(self) -> None:
        # Counted out before the first byte of the answer: the client cannot send its next request before this.
        with self._lock:
            self._in_flight -= 1

    def _serve(self, sock: socket.socket) -> None:
        head = _read_head(sock)
        if head is None:
            return
        request = _parse_head(head)
        self._arrived(request)
        route = self._route(request.path)
        try:
            if route.barrier is not None:
                # Broken (timed out or aborted): answer anyway; the test sees the missing overlap in max_in_flight.
                with contextlib.suppress(threading.BrokenBarrierError):
                    route.barrier.wait()
        finally:
            self._answering()
        self._answer(sock, request, route)

    def _answer(self, sock: socket.socket, request: Received, route: Route) -> None:
        status = route.status
        headers = list(route.headers)
        if route.etag:
            headers.append(("ETag", route.etag))
        if route.last_modified:
            headers.append(("Last-Modified", route.last_modified))
        if _not_modified(request, route):
            sock.sendall(_status_line(304) + _header_block(headers) + b"\r\n")
            return
        names = {name.lower() for name, _ in headers}
        if route.framing == "length" and "content-length" not in names:
            if route.repeat is None:
                raise ValueError("an endless body cannot have a Content-Length; use framing='chunked' or 'close'")
            headers.append(("Content-Length", str(len(route.body) * route.repeat)))
        elif route.framing == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        if location := next((v for n, v in headers if n.lower() == "location" and v.startswith("/")), None):
            headers = [(n, v) for n, v in headers if n.lower() != "location"]
            headers.append(("Location", f"http://127.0.0.1:{self.port}{location}"))
        sock.sendall(_status_line(status) + _header_block(headers) + b"\r\n")
        for data in self._wire_body(route):
            if route.drip is None:
                sock.sendall(data)
                continue
            for i in range(len(data)):
                if self._stop.wait(route.drip):
                    return
                sock.sendall(data[i : i + 1])

    def _wire_body(self, route: Route) -> Iterator[bytes]:
        sent = 0
        while route.body and (route.repeat is None or sent < route.repeat) and not self._stop.is_set():
            for start in range(0, len(route.body), PIECE):
                piece = route.body[start : start + PIECE]
                yield b"%x\r\n%s\r\n" % (len(piece), piece) if route.framing == "chunked" else piece
            sent += 1
        if route.framing == "chunked":
            yield b"0\r\n\r\n"


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Whatever"
    return f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")


def _header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"{name}: {value}\r\n" for name, value in headers if name.lower() != "connection"]
    lines.append("Connection: close\r\n")
    return "".join(lines).encode("latin-1")


def _not_modified(request: Received, route: Route) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip() for t in if_none_match.split(",")}
        return route.etag is not None and (route.etag in tags or "*" in tags)
    since = request.headers.get("if-modified-since")
    return since is not None and route.last_modified is not None and since == route.last_modified


def _read_head(sock: socket.socket) -> bytes | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(4096)
        if not data or len(buffer) > 64 * 1024:
            return None
        buffer += data
    return buffer.split(b"\r\n\r\n", 1)[0]


def _parse_head(head: bytes) -> Received:
    first, *lines = head.decode("latin-1").split("\r\n")
    method, target, *_ = [*first.split(" "), "", ""]
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Received(method, target, headers)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = False  # server_close() joins them, so no thread outlives its test
    block_on_close = True
    allow_reuse_address = True
    hostile: HostileServer


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer
    request: socket.socket

    def handle(self) -> None:
        self.request.settimeout(_SOCKET_TIMEOUT)
        # The client hanging up (giving up on a drip, a bomb, a body over its cap) is what we test for, not a failure.
        with contextlib.suppress(OSError):
            self.server.hostile._serve(self.request)


@pytest.fixture
def hostile_server() -> Iterator[HostileServer]:
    """A started :class:`HostileServer` with the default routes, stopped (every thread joined) after the test."""
    with HostileServer() as server:
        yield server


__all__ = ["DEFAULT_ROUTES", "HostileServer", "Received", "Route", "hostile_server"]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for CN=127.0.0.1, made with openssl, valid two days."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key

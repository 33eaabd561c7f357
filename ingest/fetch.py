"""Every HTTP request of the service: conditional GETs of feeds, behind guards that a hostile server cannot get past.

The only module that imports httpx (and httpcore, whose network backend it replaces). It turns each
:class:`FetchRequest` into a :class:`FetchResult` and never raises for a failed fetch: a failure is an outcome with a
message for a person that names the URL. It knows nothing of feed formats, the store or the schedule
(:mod:`ingest.polling` decides when to fetch again).

The guards, each against a named attack or accident:

- size: a cap counted after decompression and checked against Content-Length first; gzip and deflate are inflated
  here, ``max_length`` at a time, so a gzip bomb stops at the cap instead of filling memory first;
- time: one deadline per fetch over DNS, connect, headers, every redirect and the whole body (httpx's own timeouts
  are per read, so a server dripping one byte a second would otherwise never time out);
- redirects: followed by hand, each hop checked again (http/https only, address, loops, a hop limit);
- SSRF: unless private networks are allowed, the host is resolved once and the address actually connected to is
  checked (no second lookup for DNS rebinding to change), on every hop; literal hosts are recognised in every
  spelling ``inet_aton`` accepts (``2130706433``, ``0x7f000001``, ``127.1``, ``0``, ``017700000001``,
  ``[::ffff:127.0.0.1]``) and refused before any connection.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ipaddress
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Literal, Protocol

import httpcore
import httpx

from ingest.core.config import FetchConfig

Outcome = Literal["ok", "not_modified", "gone", "retry_later", "blocked", "error"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Retry-After further away than this is read as this: a misconfigured server cannot silence a feed for a year.
MAX_RETRY_AFTER = timedelta(days=1)
ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, "
    "application/feed+json;q=0.9, application/json;q=0.8, */*;q=0.5"
)
#: Only what we can inflate with a cap; brotli and zstd are never asked for.
ACCEPT_ENCODING = "gzip, deflate"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECTS = frozenset({301, 308})


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """One feed to fetch, with the validators stored from its last 200 (sent back for a conditional GET)."""

    source_id: int
    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FetchResult:
    """How one fetch ended. ``body`` is set only for ``ok``; ``error`` only for the failures."""

    request: FetchRequest
    outcome: Outcome
    final_url: str  # where the body came from after redirects; for a failure, the last URL tried
    permanent_url: str | None  # the URL to adopt: end of the leading 301/308 hops, set only for ok/not_modified
    status: int | None  # last HTTP status; None when no response at all
    body: bytes | None  # decompressed, only when outcome == "ok"
    headers: Mapping[str, str]  # the last response's headers, lower-case names, repeated ones joined by ", "
    etag: str | None  # validators to store: set for ok (from the response) and not_modified (response, else request)
    last_modified: str | None
    retry_after: datetime | None  # for retry_later: when the server allows the next try, capped at MAX_RETRY_AFTER
    max_age: int | None  # seconds from Cache-Control max-age (s-maxage ignored); None when absent or no-cache
    error: str | None  # for a person: the URL, what went wrong, what was expected
    elapsed: float  # seconds from the start of the fetch (after waiting for a slot) to its end


ResultCallback = Callable[[FetchResult], Awaitable[None] | None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def fetch_all(
    requests: Sequence[FetchRequest],
    config: FetchConfig,
    *,
    on_result: ResultCallback | None = None,
    clock: Callable[[], datetime] = _utcnow,
    trusted_networks: Iterable[str] = (),
) -> list[FetchResult]:
    """Fetch every request, at most ``config.concurrency`` at once and ``config.per_host`` per host.

    Returns one result per request, in the order of ``requests``. ``on_result`` is called (and awaited when it
    returns an awaitable) as each fetch finishes; calls never overlap, so it can write to the store. A failed fetch
    never raises; an exception from ``on_result``, or a bug, does (and cancels the fetches still running).
    ``clock`` turns Retry-After into an absolute time. ``trusted_networks`` (CIDR strings) are reachable even when
    private networks are not allowed: a known internal feed server, or the test server on 127.0.0.1.
    """
    policy = AddressPolicy(config.allow_private_networks, [*config.trusted_networks, *trusted_networks])
    results: list[FetchResult | None] = [None] * len(requests)
    callback_lock = asyncio.Lock()
    async with _Fetcher(config, policy, clock) as fetcher:

        async def worker() -> None:
            while (job := await fetcher.next_job()) is not None:
                index, request = job
                result = await fetcher.fetch(request)
                results[index] = result
                if on_result is not None:
                    async with callback_lock:
                        returned = on_result(result)
                        if inspect.isawaitable(returned):
                            await returned

        fetcher.queue(list(enumerate(requests)))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(config.concurrency, len(requests))):
                    group.create_task(worker())
        except ExceptionGroup as group_error:
            # A bug or a failing on_result: surface the first one as itself, not wrapped in a group.
            raise group_error.exceptions[0] from None
    done = [r for r in results if r is not None]
    assert len(done) == len(requests)
    return done


def fetch_all_sync(
    requests: Sequence[FetchRequest],
    config: FetchConfig,
    on_result: ResultCallback | None = None,
    *,
    clock: Callable[[], datetime] = _utcnow,
    trusted_networks: Iterable[str] = (),
) -> list[FetchResult]:
    """:func:`fetch_all` for callers without an event loop (the CLI)."""
    return asyncio.run(fetch_all(requests, config, on_result=on_result, clock=clock, trusted_networks=trusted_networks))


# --- headers ---------------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime, cap: timedelta = MAX_RETRY_AFTER) -> datetime | None:
    """Retry-After (RFC 9110 10.2.3) as an absolute time: delay-seconds or an HTTP-date, never past ``now + cap``.

    A date in the past means now; a value that is neither form is ignored (None).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = min(int(value), int(cap.total_seconds()))
        return now + timedelta(seconds=seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 5.6.7: HTTP-dates are UTC even when written "-0000"
        when = when.replace(tzinfo=UTC)
    return min(max(when, now), now + cap)


def parse_max_age(cache_control: str | None) -> int | None:
    """Seconds of ``max-age`` in a Cache-Control value; None when absent, malformed, or no-cache/no-store.

    ``s-maxage`` is for shared caches (RFC 9111 5.2.2.10), and we are a private one, so it is ignored.
    """
    if not cache_control:
        return None
    max_age: int | None = None
    for directive in cache_control.split(","):
        name, _, arg = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-cache", "no-store"):
            return None
        if name == "max-age" and max_age is None:
            arg = arg.strip().strip('"')
            if not arg.isdigit():
                return None
            max_age = int(arg)
    return max_age


def _headers_of(response: httpx.Response) -> Mapping[str, str]:
    return MappingProxyType(dict(response.headers.items()))


def _header_value(value: str | None) -> bytes | None:
    """A stored validator as bytes to send, or None when it cannot be sent back as it was received."""
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    return value.encode("utf-8", "replace")


# --- addresses (SSRF) ------------------------------------------------------------------------------------------

_METADATA = {
    ipaddress.ip_address("169.254.169.254"): "the cloud metadata address",  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"): "the cloud metadata address",  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"): "the cloud metadata address",  # Alibaba
    ipaddress.ip_address("192.0.0.192"): "the cloud metadata address",  # Oracle
    ipaddress.ip_address("fd00:ec2::254"): "the cloud metadata address",  # AWS over IPv6
}

# IANA's special-purpose registries (RFC 6890 and updates), named for the message. Checked before the stdlib's
# is_global, whose answer has changed between Python versions.
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private address (RFC 1918)"),
        ("100.64.0.0/10", "a carrier-grade NAT address (RFC 6598)"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address (RFC 1918)"),
        ("192.0.0.0/24", "an IETF protocol address (RFC 6890)"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address (RFC 1918)"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("100::/64", "a discard-only address"),
        ("64:ff9b:1::/48", "a local NAT64 address"),
        ("2001::/23", "an IETF protocol address (RFC 6890)"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from when private networks are not allowed (None: a public address).

    IPv6 forms that carry an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, NAT64
    ``64:ff9b::a.b.c.d``, 6to4 ``2002:aabb:ccdd::``) are judged by the IPv4 address inside.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_ipv4(ip)
        if inner is not None:
            problem = address_problem(inner)
            return f"{problem} inside an IPv6 address" if problem else None
    if ip in _METADATA:
        return _METADATA[ip]
    for net, why in _SPECIAL:
        if ip.version == net.version and ip in net:
            return why
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return "an address that is not globally routable"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = int(ip)
    if packed >> 32 == 0x0064_FF9B << 64:  # NAT64 well-known prefix 64:ff9b::/96 (RFC 6052)
        return ipaddress.IPv4Address(packed & 0xFFFF_FFFF)
    if packed >> 32 == 0 and packed > 1:  # IPv4-compatible ::a.b.c.d (deprecated, RFC 4291 2.5.5.1)
        return ipaddress.IPv4Address(packed)
    return None


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL's host names literally, in any spelling a resolver accepts; None for a host name.

    IPv4 follows ``inet_aton`` (and the WHATWG URL standard): one to four dot-separated parts, each decimal, octal
    (leading 0) or hex (0x), the last filling the remaining bytes; so ``127.1``, ``2130706433``, ``0x7f000001``,
    ``017700000001`` and ``0`` are all addresses. IPv6 may come with or without brackets.
    """
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    if host.endswith("."):
        host = host[:-1]
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _inet_aton_part(part)
        if number is None:
            return None
        numbers.append(number)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _inet_aton_part(part: str) -> int | None:
    if part.startswith("0x"):
        digits, base = part[2:], 16
        if not digits:
            return 0  # "0x" alone is zero for inet_aton and WHATWG alike
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    if not digits or not digits.isascii() or not digits.isalnum():
        return None
    try:
        return int(digits, base)
    except ValueError:
        return None


class AddressPolicy:
    """Which addresses may be connected to: any when private networks are allowed, else public or trusted ones."""

    def __init__(self, allow_private_networks: bool, trusted_networks: Iterable[str] = ()) -> None:
        self.allow_private_networks = allow_private_networks
        self.trusted: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_networks)

    def problem(self, ip: IPAddress) -> str | None:
        if self.allow_private_networks or any(ip.version == n.version and ip in n for n in self.trusted):
            return None
        return address_problem(ip)


class BlockedAddressError(Exception):
    """Raised at connect time for an address the policy refuses; never leaves this module."""

    def __init__(self, host: str, ip: str, reason: str) -> None:
        super().__init__(_blocked_text(host, ip, reason))
        self.host, self.ip, self.reason = host, ip, reason


# --- the network backend and transport --------------------------------------------------------------------------


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves a host once, refuses the addresses the policy forbids, and connects to an allowed one by address.

    Connecting by address is what defeats DNS rebinding: the address checked is the address used. TLS still
    verifies the certificate against the host name, because httpcore passes that as ``server_hostname``.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port)
        allowed: list[str] = []
        refused: tuple[str, str] | None = None
        for address in addresses:
            problem = self._policy.problem(ipaddress.ip_address(address))
            if problem is None:
                allowed.append(address)
            elif refused is None:
                refused = (address, problem)
        if not allowed:
            assert refused is not None
            raise BlockedAddressError(host, *refused)
        failure: Exception | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        where = host if len(allowed) == 1 and allowed[0] == host else f"{host} ({', '.join(allowed)})"
        raise type(failure)(f"cannot connect to {where} port {port}: {failure}") from failure

    async def _resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve host {host!r}: {getattr(exc, 'strerror', exc)}") from exc
        addresses: list[str] = []
        for *_, sockaddr in infos:
            address = str(sockaddr[0])  # an IPv6 link-local one keeps its "%scope": needed to connect
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve host {host!r}: no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for fetching")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


_CORE_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    # most specific first
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's, as httpx's own transport does (its mapping is private)."""
    try:
        yield
    except Exception as exc:
        for core, ours in _CORE_ERRORS:
            if isinstance(exc, core):
                raise ours(str(exc)) from exc
        raise


class _CoreStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one loads the CA bundle (tens of milliseconds)."""
    return httpx.create_ssl_context(trust_env=False)


class _GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, rebuilt on :class:`_GuardedBackend` (httpx 0.28 takes no network backend)."""

    def __init__(self, policy: AddressPolicy, keepalive: int) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=None,  # the fetcher's own slots bound what is in flight
            max_keepalive_connections=keepalive,
            http1=True,
            http2=False,
            retries=0,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_CoreStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


# --- bodies ----------------------------------------------------------------------------------------------------


class _Decoder(Protocol):
    def feed(self, data: bytes, room: int) -> bytes: ...


class _Identity:
    def feed(self, data: bytes, room: int) -> bytes:
        return data


class _Inflater:
    """gzip or deflate, inflating at most ``room + 1`` bytes per call so a bomb is caught at the cap, not after it."""

    def __init__(self, coding: str) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        self._fallback_done = False
        self._ended = False

    def feed(self, data: bytes, room: int) -> bytes:
        out: list[bytes] = []
        produced = 0
        while data and not self._ended:
            try:
                chunk = self._obj.decompress(data, room + 1 - produced)
            except zlib.error:
                # "deflate" is meant to be zlib-wrapped (RFC 9110 8.4.1.2) but some servers send raw deflate.
                if self._gzip or self._fallback_done:
                    raise
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                self._fallback_done = True
                continue
            self._fallback_done = True
            out.append(chunk)
            produced += len(chunk)
            if produced > room:
                break
            if self._obj.eof:
                rest = self._obj.unused_data
                if self._gzip and rest.startswith(b"\x1f\x8b"):  # another gzip member (RFC 1952 2.2)
                    self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest
                    continue
                self._ended = True  # bytes after the end of the stream are ignored, as browsers do
                break
            data = self._obj.unconsumed_tail
        return b"".join(out)


# --- one fetch -------------------------------------------------------------------------------------------------


class _Failure(Exception):
    """Ends one fetch with a non-ok outcome and a message for a person; caught in :meth:`_Fetcher.fetch`."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome
        self.message = message


@dataclass(slots=True)
class _Trail:
    """How far one fetch got, so that a failure at any point can report it."""

    request: FetchRequest
    url: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    permanent_url: str | None = None
    host: str | None = None  # the host whose slot is held
    started: float | None = None

    @property
    def where(self) -> str:
        """The feed's URL, and the hop's when a redirect led elsewhere: what every message starts with."""
        if self.url == self.request.url:
            return self.request.url
        return f"{self.request.url} (redirected to {self.url})"


def _host_key(url: str) -> str:
    try:
        return httpx.URL(url).host
    except (httpx.InvalidURL, UnicodeError):
        return ""


class _Fetcher:
    """The shared state of one :func:`fetch_all`: the client, the queue and the per-host slots."""

    def __init__(self, config: FetchConfig, policy: AddressPolicy, clock: Callable[[], datetime]) -> None:
        self._config = config
        self._policy = policy
        self._clock = clock
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(policy, keepalive=config.concurrency),
            follow_redirects=False,
            trust_env=False,  # no proxies and no .netrc credentials from the environment
            timeout=httpx.Timeout(config.timeout),
            headers={"User-Agent": config.user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING},
        )
        self._slots = asyncio.Condition()
        self._busy: dict[str, int] = {}
        self._pending: dict[str, deque[tuple[int, FetchRequest]]] = {}

    async def __aenter__(self) -> _Fetcher:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    def queue(self, jobs: Iterable[tuple[int, FetchRequest]]) -> None:
        for job in jobs:
            self._pending.setdefault(_host_key(job[1].url), deque()).append(job)

    async def next_job(self) -> tuple[int, FetchRequest] | None:
        """The next request whose host has a free slot, with that slot taken; None when the queue is empty.

        Picking by free host (rather than taking the next request and then waiting for its host) keeps a run of
        feeds on one host from holding every worker while other hosts wait.
        """
        async with self._slots:
            while self._pending:
                for host, jobs in self._pending.items():
                    if self._busy.get(host, 0) < self._config.per_host:
                        job = jobs.popleft()
                        if not jobs:
                            del self._pending[host]
                        self._busy[host] = self._busy.get(host, 0) + 1
                        return job
                await self._slots.wait()
            return None

    async def _take_host(self, host: str) -> None:
        async with self._slots:
            while self._busy.get(host, 0) >= self._config.per_host:
                await self._slots.wait()
            self._busy[host] = self._busy.get(host, 0) + 1

    async def _release_host(self, host: str) -> None:
        async with self._slots:
            self._busy[host] -= 1
            self._slots.notify_all()

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Fetch one request whose host slot :meth:`next_job` has taken; releases whatever slot it ends holding."""
        trail = _Trail(request, request.url, host=_host_key(request.url), started=time.monotonic())
        deadline = asyncio.timeout(self._config.timeout)
        try:
            async with deadline:
                return await self._follow(trail)
        except TimeoutError:
            message = f"no complete response within {self._config.timeout:g} s ([fetch] timeout)"
            if not deadline.expired():
                message = "timed out"
            return self._result(trail, "error", error=f"{trail.where}: {message}")
        except _Failure as failure:
            return self._result(trail, failure.outcome, error=failure.message)
        finally:
            if trail.host is not None:
                await self._release_host(trail.host)

    async def _follow(self, trail: _Trail) -> FetchResult:
        request = trail.request
        url = self._check_url(trail, request.url)
        seen = {str(url)}
        permanent = True
        for hop in range(self._config.max_redirects + 1):
            if url.host != trail.host:
                # Release before taking the next, so a fetch never holds one host's slot while waiting for another's.
                if trail.host is not None:
                    await self._release_host(trail.host)
                    trail.host = None
                await self._take_host(url.host)
                trail.host = url.host
            response = await self._send(trail, url)
            try:
                trail.status = response.status_code
                trail.headers = _headers_of(response)
                status = response.status_code
                if status in REDIRECT_STATUSES:
                    target = self._redirect_target(trail, url, response)
                    if str(target) in seen:
                        raise _Failure("error", f"{trail.where}: redirect loop: {target} was already visited")
                    if hop == self._config.max_redirects:
                        raise _Failure(
                            "error",
                            f"{trail.where}: more than {self._config.max_redirects} redirects ([fetch] max_redirects)",
                        )
                    permanent = permanent and status in PERMANENT_REDIRECTS
                    if permanent:
                        trail.permanent_url = str(target)
                    seen.add(str(target))
                    url = target
                    trail.url = str(url)
                    continue
                if 200 <= status < 300:
                    # An empty body is still "ok" here: the parser names it (the source's "empty" state).
                    return self._result(trail, "ok", body=await self._read_body(trail, response))
                if status == 304:
                    return self._result(trail, "not_modified")
                if status == 410:
                    return self._result(trail, "gone", error=f"{trail.where}: HTTP 410 Gone: the feed was removed")
                if status in (429, 503):
                    return self._result(
                        trail,
                        "retry_later",
                        error=f"{trail.where}: HTTP {status} {response.reason_phrase}; the server asks to retry later",
                    )
                raise _Failure(
                    "error", f"{trail.where}: HTTP {status} {response.reason_phrase}; expected 200 with a feed"
                )
            finally:
                await response.aclose()
        raise AssertionError("unreachable: the last hop either returns or raises")  # pragma: no cover

    def _check_url(self, trail: _Trail, raw: str | httpx.URL, *, redirect: bool = False) -> httpx.URL:
        """A URL we may request: well-formed, http or https, and not a literal address the policy refuses."""
        prefix = f"{trail.where}: redirect to {str(raw)!r}" if redirect else f"{trail.where}"
        try:
            url = raw if isinstance(raw, httpx.URL) else httpx.URL(raw)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise _Failure("error", f"{prefix}: not a valid URL ({exc})") from None
        if url.scheme not in ("http", "https"):
            raise _Failure("error", f"{prefix}: only http and https URLs are fetched")
        host = url.host
        if not host or "%" in host:
            raise _Failure("error", f"{prefix}: expected a host name or an IP address in the URL")
        ip = parse_ip_host(host)
        if ip is not None:
            problem = self._policy.problem(ip)
            if problem is not None:
                raise _Failure("blocked", f"{prefix}: refused: {_blocked_text(host, str(ip), problem)}")
        return url.copy_with(fragment=None)

    def _redirect_target(self, trail: _Trail, url: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("location", "").strip()
        if not location:
            raise _Failure("error", f"{trail.where}: HTTP {response.status_code} without a Location header")
        try:
            target = url.join(location)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise _Failure("error", f"{trail.where}: redirect to {location!r}: not a valid URL ({exc})") from None
        return self._check_url(trail, target, redirect=True)

    async def _send(self, trail: _Trail, url: httpx.URL) -> httpx.Response:
        headers: list[tuple[bytes, bytes]] = []
        if (etag := _header_value(trail.request.etag)) is not None:
            headers.append((b"If-None-Match", etag))
        if (modified := _header_value(trail.request.last_modified)) is not None:
            headers.append((b"If-Modified-Since", modified))
        request = self._client.build_request("GET", url, headers=headers)
        try:
            return await self._client.send(request, stream=True)
        except BlockedAddressError as exc:
            raise _Failure(
                "blocked", f"{trail.where}: refused: {_blocked_text(exc.host, exc.ip, exc.reason)}"
            ) from None
        except httpx.HTTPError as exc:
            raise _Failure("error", f"{trail.where}: {_describe(exc)}") from None

    async def _read_body(self, trail: _Trail, response: httpx.Response) -> bytes:
        limit = self._config.max_bytes
        too_big = f"{trail.where}: body over the {limit:,}-byte limit ([fetch] max_bytes)"
        length = response.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > limit:
            raise _Failure("error", f"{too_big}: Content-Length is {int(length):,}")
        codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        decoder: _Decoder = _Identity()
        if codings:
            if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
                raise _Failure(
                    "error",
                    f"{trail.where}: unsupported Content-Encoding {', '.join(codings)!r}; expected gzip or deflate",
                )
            decoder = _Inflater(codings[0])
        parts: list[bytes] = []
        size = raw = 0
        try:
            async for chunk in response.aiter_raw():
                raw += len(chunk)
                if raw > limit:  # the wire is capped too: an endless stream of empty gzip members is still endless
                    raise _Failure("error", too_big)
                out = decoder.feed(chunk, limit - size)
                size += len(out)
                if size > limit:
                    raise _Failure("error", too_big)
                parts.append(out)
        except zlib.error as exc:
            raise _Failure("error", f"{trail.where}: the body is not valid {codings[0]} data ({exc})") from None
        except httpx.HTTPError as exc:
            raise _Failure("error", f"{trail.where}: {_describe(exc)}") from None
        return b"".join(parts)

    def _result(
        self, trail: _Trail, outcome: Outcome, *, body: bytes | None = None, error: str | None = None
    ) -> FetchResult:
        headers = trail.headers
        etag = last_modified = None
        if outcome in ("ok", "not_modified"):
            etag, last_modified = headers.get("etag"), headers.get("last-modified")
        if outcome == "not_modified":  # a 304 need not repeat the validators (RFC 9110 15.4.5)
            etag = etag or trail.request.etag
            last_modified = last_modified or trail.request.last_modified
        retry_after = None
        if outcome == "retry_later":
            retry_after = parse_retry_after(headers.get("retry-after"), self._clock())
        permanent = trail.permanent_url if outcome in ("ok", "not_modified") else None
        return FetchResult(
            request=trail.request,
            outcome=outcome,
            final_url=trail.url,
            permanent_url=permanent if permanent != trail.request.url else None,
            status=trail.status,
            body=body if outcome == "ok" else None,
            headers=headers,
            etag=etag,
            last_modified=last_modified,
            retry_after=retry_after,
            max_age=parse_max_age(headers.get("cache-control")),
            error=error,
            elapsed=time.monotonic() - (trail.started or time.monotonic()),
        )


def _blocked_text(host: str, ip: str, reason: str) -> str:
    subject = f"{ip} is" if host.strip("[]") == ip else f"{host} is {ip},"
    return (
        f"{subject} {reason}; private networks are not fetched from "
        "(list a trusted server in [fetch] trusted_networks to reach it)"
    )


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return f"timed out connecting ({detail})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out waiting for the server ({detail})"
    if isinstance(exc, httpx.ConnectError):
        return detail if detail.startswith("cannot ") else f"cannot connect: {detail}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the server broke the HTTP protocol: {detail}"
    if isinstance(exc, httpx.NetworkError):
        return f"the connection failed: {detail}"
    return f"{type(exc).__name__}: {detail}"

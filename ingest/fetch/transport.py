"""The guarded network backend (resolve once, check every address, connect by address) and the httpx transport on it.

The only module that imports httpcore; it knows no feeds, redirects or bodies (:mod:`ingest.fetch.fetcher`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from ingest.fetch.policy import AddressPolicy, blocked_text


class BlockedAddressError(Exception):
    """Raised at connect time for an address the policy refuses; never leaves the fetch package."""

    def __init__(self, host: str, ip: str, reason: str) -> None:
        super().__init__(blocked_text(host, ip, reason))
        self.host, self.ip, self.reason = host, ip, reason


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


class GuardedTransport(httpx.AsyncBaseTransport):
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

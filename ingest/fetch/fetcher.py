"""One :func:`fetch_all`: the queue and per-host slots, one deadline per fetch, redirects followed by hand and checked
on every hop, the capped body, and every failure turned into a :class:`FetchResult` with a message for a person.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

import httpx

from ingest.core.config import FetchConfig
from ingest.fetch.body import Decoder, Identity, Inflater
from ingest.fetch.headers import ACCEPT, ACCEPT_ENCODING, header_value, parse_max_age, parse_retry_after
from ingest.fetch.policy import AddressPolicy, blocked_text, parse_ip_host
from ingest.fetch.transport import BlockedAddressError, GuardedTransport

Outcome = Literal["ok", "not_modified", "gone", "retry_later", "blocked", "error"]
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
    results: list[FetchResult | None] = [None] * len(requests)
    jobs = list(enumerate(requests))

    async def once() -> Sequence[tuple[int, FetchRequest]]:
        batch = list(jobs)
        jobs.clear()
        return batch

    async def keep(index: int, result: FetchResult) -> None:
        results[index] = result
        if on_result is not None:
            await _notify(on_result, result)

    await _fetch_jobs(once, keep, config, clock=clock, trusted_networks=trusted_networks)
    done = [r for r in results if r is not None]
    assert len(done) == len(requests)
    return done


async def _notify(on_result: ResultCallback, result: FetchResult) -> None:
    """Call ``on_result``, awaiting what it returns when that is awaitable."""
    returned = on_result(result)
    if inspect.isawaitable(returned):
        await returned


async def _fetch_jobs(
    batches: Callable[[], Awaitable[Sequence[tuple[int, FetchRequest]]]],
    on_result: Callable[[int, FetchResult], Awaitable[None]],
    config: FetchConfig,
    *,
    clock: Callable[[], datetime],
    trusted_networks: Iterable[str],
) -> None:
    """Fetch ``(index, request)`` jobs batch after batch (``batches()`` until an empty one); ``on_result(index,
    result)`` as each ends, never two calls at once. A failed fetch never raises; an exception from ``on_result``, or
    a bug, does (and cancels the fetches still running)."""
    policy = AddressPolicy(config.allow_private_networks, [*config.trusted_networks, *trusted_networks])
    callback_lock = asyncio.Lock()
    refill_lock = asyncio.Lock()
    exhausted = False
    async with _Fetcher(config, policy, clock) as fetcher:

        async def refill() -> bool:
            """Queue the next batch; False when there is none."""
            nonlocal exhausted
            async with refill_lock:  # one worker asks; the others find its batch queued
                if fetcher.has_jobs():
                    return True
                if not exhausted:
                    batch = await batches()
                    fetcher.queue(batch)
                    exhausted = not batch
                return not exhausted

        async def worker() -> None:
            while True:
                job = await fetcher.next_job()
                if job is None:
                    if await refill():
                        continue
                    return
                result = await fetcher.fetch(job[1])
                async with callback_lock:
                    await on_result(job[0], result)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(config.concurrency):
                    group.create_task(worker())
        except ExceptionGroup as group_error:
            # A bug or a failing on_result: surface the first one as itself, not wrapped in a group.
            raise group_error.exceptions[0] from None


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


def fetch_stream_sync(
    next_requests: Callable[[], Sequence[FetchRequest]],
    config: FetchConfig,
    on_result: ResultCallback,
    *,
    clock: Callable[[], datetime] = _utcnow,
    trusted_networks: Iterable[str] = (),
) -> None:
    """Fetch the requests ``next_requests()`` hands out, batch after batch until it hands out none, as
    :func:`fetch_all` fetches one list: at most ``config.concurrency`` at once, ``on_result`` as each ends. For
    callers without an event loop (the feed pass's fetch thread).

    One transport serves every batch, so connections kept alive by one batch serve the next. The next batch is asked
    for as soon as the current one has no request left to start, while its last fetches are still running.
    ``next_requests`` runs in a worker thread, so it may block: wait for room, read a database.
    """

    async def batches() -> Sequence[tuple[int, FetchRequest]]:
        return [(0, request) for request in await asyncio.to_thread(next_requests)]

    async def each(_: int, result: FetchResult) -> None:
        await _notify(on_result, result)

    asyncio.run(_fetch_jobs(batches, each, config, clock=clock, trusted_networks=trusted_networks))


def _headers_of(response: httpx.Response) -> Mapping[str, str]:
    return MappingProxyType(dict(response.headers.items()))


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
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)

    @property
    def where(self) -> str:
        """The feed's URL, and the hop's when a redirect led elsewhere: what every message starts with."""
        if self.url == self.request.url:
            return self.request.url
        return f"{self.request.url} (redirected to {self.url})"


def _host_key(url: str) -> str:
    try:
        return _host(httpx.URL(url))
    except (httpx.InvalidURL, UnicodeError):
        return ""


def _host(url: httpx.URL) -> str:
    # raw_host: the host as sent (IDNA-encoded), never decoded. URL.host decodes an "xn--" label and raises
    # idna's IDNAError for one that is not valid punycode ("http://xn--/").
    return url.raw_host.decode("ascii", "replace")


class _Fetcher:
    """The shared state of one :func:`fetch_all`: the transport, the queue and the per-host slots."""

    def __init__(self, config: FetchConfig, policy: AddressPolicy, clock: Callable[[], datetime]) -> None:
        self._config = config
        self._policy = policy
        self._clock = clock
        # The transport itself, not an httpx.AsyncClient: the client's send() works out the next request of every
        # 3xx even with follow_redirects=False, and a Location such as "mailto:x@y" makes it raise InvalidURL (an
        # Exception, not an httpx.HTTPError) before we see the response. Redirects are ours (_redirect_target), and
        # so is what the client would add: default headers and the timeout here, cookies in _send. No proxies and
        # no .netrc credentials from the environment, as nothing reads the environment.
        self._transport = GuardedTransport(policy, keepalive=config.concurrency)
        self._headers: list[tuple[bytes, bytes]] = [
            (b"User-Agent", config.user_agent.encode()),
            (b"Accept", ACCEPT.encode()),
            (b"Accept-Encoding", ACCEPT_ENCODING.encode()),
        ]
        self._timeouts = httpx.Timeout(config.timeout).as_dict()
        self._slots = asyncio.Condition()
        self._busy: dict[str, int] = {}
        self._pending: dict[str, deque[tuple[int, FetchRequest]]] = {}

    async def __aenter__(self) -> _Fetcher:
        await self._transport.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._transport.aclose()

    def queue(self, jobs: Iterable[tuple[int, FetchRequest]]) -> None:
        for job in jobs:
            self._pending.setdefault(_host_key(job[1].url), deque()).append(job)

    def has_jobs(self) -> bool:
        return bool(self._pending)

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
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # Each step above turns these into messages of its own; should a new one slip through (an httpx upgrade),
            # it still ends this fetch alone: both come from what a server sent, never from a bug of ours.
            return self._result(trail, "error", error=f"{trail.where}: {_describe(exc)}")
        finally:
            if trail.host is not None:
                await self._release_host(trail.host)

    async def _follow(self, trail: _Trail) -> FetchResult:
        request = trail.request
        url = self._check_url(trail, request.url)
        seen = {str(url)}
        permanent = True
        for hop in range(self._config.max_redirects + 1):
            host = _host(url)
            if host != trail.host:
                # Release before taking the next, so a fetch never holds one host's slot while waiting for another's.
                if trail.host is not None:
                    await self._release_host(trail.host)
                    trail.host = None
                await self._take_host(host)
                trail.host = host
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

    def _check_url(self, trail: _Trail, raw: str | httpx.URL, *, location: str | None = None) -> httpx.URL:
        """A URL we may request: well-formed, http or https, and not a literal address the policy refuses.

        ``location``: the Location header that led to ``raw``, for a redirect."""
        redirect = location is not None
        prefix = f"{trail.where}: redirect to {str(raw)!r}" if redirect else f"{trail.where}"
        try:
            url = raw if isinstance(raw, httpx.URL) else httpx.URL(raw)
            url.host  # noqa: B018 - decodes an "xn--" label, as building the request would: idna raises here instead
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise _Failure("error", f"{prefix}: not a valid URL ({exc})") from None
        if url.scheme not in ("http", "https"):
            if redirect:
                prefix = f"{trail.where}: redirect to a non-http URL {location!r}"
            raise _Failure("error", f"{prefix}: only http and https URLs are fetched")
        host = _host(url)
        if not host or "%" in host:
            raise _Failure("error", f"{prefix}: expected a host name or an IP address in the URL")
        ip = parse_ip_host(host)
        if ip is not None:
            problem = self._policy.problem(ip)
            if problem is not None:
                raise _Failure("blocked", f"{prefix}: refused: {blocked_text(host, str(ip), problem)}")
        return url.copy_with(fragment=None)

    def _redirect_target(self, trail: _Trail, url: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("location", "").strip()
        if not location:
            raise _Failure("error", f"{trail.where}: HTTP {response.status_code} without a Location header")
        try:
            target = url.join(location)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise _Failure("error", f"{trail.where}: redirect to {location!r}: not a valid URL ({exc})") from None
        return self._check_url(trail, target, location=location)

    async def _send(self, trail: _Trail, url: httpx.URL) -> httpx.Response:
        headers = list(self._headers)
        if (etag := header_value(trail.request.etag)) is not None:
            headers.append((b"If-None-Match", etag))
        if (modified := header_value(trail.request.last_modified)) is not None:
            headers.append((b"If-Modified-Since", modified))
        request = httpx.Request("GET", url, headers=headers)
        request.extensions["timeout"] = self._timeouts
        with contextlib.suppress(UnicodeEncodeError):  # a cookie a server set in bytes no header can carry: none sent
            trail.cookies.set_cookie_header(request)
        try:
            response = await self._transport.handle_async_request(request)
        except BlockedAddressError as exc:
            raise _Failure("blocked", f"{trail.where}: refused: {blocked_text(exc.host, exc.ip, exc.reason)}") from None
        except httpx.HTTPError as exc:
            raise _Failure("error", f"{trail.where}: {_describe(exc)}") from None
        response.request = request
        # A server that sets a cookie and redirects may want it back; one jar per fetch, so that no feed's server
        # can send cookies (or a 64 KB one that no server accepts) along with another feed's requests.
        trail.cookies.extract_cookies(response)
        return response

    async def _read_body(self, trail: _Trail, response: httpx.Response) -> bytes:
        limit = self._config.max_bytes
        too_big = f"{trail.where}: body over the {limit:,}-byte limit ([fetch] max_bytes)"
        length = response.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > limit:
            raise _Failure("error", f"{too_big}: Content-Length is {int(length):,}")
        codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        decoder: Decoder = Identity()
        if codings:
            if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
                raise _Failure(
                    "error",
                    f"{trail.where}: unsupported Content-Encoding {', '.join(codings)!r}; expected gzip or deflate",
                )
            decoder = Inflater(codings[0])
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


def _describe(exc: httpx.HTTPError | httpx.InvalidURL) -> str:
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

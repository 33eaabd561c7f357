"""Every HTTP request of the service: conditional GETs of feeds, behind guards that a hostile server cannot get past.

The only package that imports httpx (and httpcore, whose network backend it replaces). It turns each
:class:`FetchRequest` into a :class:`FetchResult` and never raises for a failed fetch: a failure is an outcome with a
message for a person that names the URL. It knows nothing of feed formats, the store or the schedule
(:mod:`ingest.polling` decides when to fetch again).

Its modules: :mod:`~ingest.fetch.fetcher` (the queue, the deadline, redirects, outcomes and messages),
:mod:`~ingest.fetch.transport` (the guarded httpcore backend and the httpx transport on it),
:mod:`~ingest.fetch.policy` (which addresses may be reached: pure, no network), :mod:`~ingest.fetch.body` (capped
decompression) and :mod:`~ingest.fetch.headers` (the headers sent and read).

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

from ingest.fetch.fetcher import (
    FetchRequest,
    FetchResult,
    Outcome,
    ResultCallback,
    fetch_all,
    fetch_all_sync,
    fetch_stream_sync,
)
from ingest.fetch.headers import MAX_RETRY_AFTER, parse_max_age, parse_retry_after
from ingest.fetch.policy import AddressPolicy, address_problem, parse_ip_host

__all__ = [
    "MAX_RETRY_AFTER",
    "AddressPolicy",
    "FetchRequest",
    "FetchResult",
    "Outcome",
    "ResultCallback",
    "address_problem",
    "fetch_all",
    "fetch_all_sync",
    "fetch_stream_sync",
    "parse_ip_host",
    "parse_max_age",
    "parse_retry_after",
]

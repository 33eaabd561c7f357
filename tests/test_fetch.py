"""The fetch layer against a real hostile server on 127.0.0.1: each misbehaviour ends in the FetchResult it should.

Most tests allow private networks (the server is on loopback); the SSRF tests turn that off and either trust only
127.0.0.1/32 (to reach the server and be redirected somewhere private) or expect the server itself to be refused.
None of them needs the internet: refused addresses are refused before or at connect. The address policy's own rules
(spellings, IPv4 inside IPv6, metadata addresses, trusted networks) are tested without a server in test_fetch_policy.py.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterable
from datetime import timedelta

import pytest

from ingest.core.config import FetchConfig
from ingest.fetch import FetchRequest, FetchResult, fetch_all, fetch_all_sync, parse_max_age, parse_retry_after
from tests.conftest import NOW
from tests.servers import FEED_BODY, FEED_ETAG, FEED_LAST_MODIFIED, LOGIN_PAGE, HostileServer, gzipped

pytestmark = pytest.mark.no_database  # opens no database: one run

CAP = 1024 * 1024
TOO_BIG = "body over the 1,048,576-byte limit ([fetch] max_bytes)"


def _config(**overrides: object) -> FetchConfig:
    settings: dict[str, object] = {"allow_private_networks": True, "timeout": 10.0, "max_bytes": CAP}
    settings.update(overrides)
    return FetchConfig.model_validate(settings)


def _fetch(
    server: HostileServer,
    path: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    trusted: Iterable[str] = (),
    **overrides: object,
) -> FetchResult:
    request = FetchRequest(1, server.url(path), etag=etag, last_modified=last_modified)
    [result] = fetch_all_sync([request], _config(**overrides), clock=lambda: NOW, trusted_networks=trusted)
    return result


def _fetch_url(url: str, **overrides: object) -> FetchResult:
    [result] = fetch_all_sync([FetchRequest(7, url)], _config(**overrides), clock=lambda: NOW)
    return result


# --- a normal feed and conditional GET -------------------------------------------------------------------------


def test_feed_is_fetched_with_its_validators_and_cache_hint(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/feed")
    assert result.outcome == "ok"
    assert result.status == 200
    assert result.body == FEED_BODY
    assert (result.etag, result.last_modified, result.max_age) == (FEED_ETAG, FEED_LAST_MODIFIED, 600)
    assert result.final_url == hostile_server.url("/feed")
    assert result.permanent_url is None
    assert result.error is None
    assert result.headers["content-type"] == "application/rss+xml; charset=utf-8"
    [sent] = hostile_server.requests
    assert "if-none-match" not in sent.headers
    assert "if-modified-since" not in sent.headers
    assert sent.headers["accept-encoding"] == "gzip, deflate"


def test_user_agent_comes_from_the_config(hostile_server: HostileServer) -> None:
    _fetch(hostile_server, "/feed", user_agent="test-agent/9 (+mailto:a@example.org)")
    assert hostile_server.requests[0].headers["user-agent"] == "test-agent/9 (+mailto:a@example.org)"


def test_conditional_get_sends_the_validators_and_gets_not_modified(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/feed", etag=FEED_ETAG, last_modified=FEED_LAST_MODIFIED)
    assert result.outcome == "not_modified"
    assert result.status == 304
    assert result.body is None
    assert (result.etag, result.last_modified) == (FEED_ETAG, FEED_LAST_MODIFIED)
    [sent] = hostile_server.requests
    assert sent.headers["if-none-match"] == FEED_ETAG
    assert sent.headers["if-modified-since"] == FEED_LAST_MODIFIED


def test_last_modified_alone_is_enough_for_a_304(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/feed", last_modified=FEED_LAST_MODIFIED)
    assert result.outcome == "not_modified"
    assert hostile_server.requests[0].headers["if-modified-since"] == FEED_LAST_MODIFIED


def test_a_304_without_validators_keeps_the_stored_ones(hostile_server: HostileServer) -> None:
    hostile_server.set("/bare-304", status=304)
    result = _fetch(hostile_server, "/bare-304", etag='"old"', last_modified="Mon, 02 Nov 2026 08:00:00 GMT")
    assert result.outcome == "not_modified"
    assert (result.etag, result.last_modified) == ('"old"', "Mon, 02 Nov 2026 08:00:00 GMT")


def test_a_changed_feed_comes_back_with_its_new_validators(hostile_server: HostileServer) -> None:
    hostile_server.change("/feed", body=FEED_BODY.replace(b"First", b"Updated"), etag='"feed-v2"')
    result = _fetch(hostile_server, "/feed", etag=FEED_ETAG)
    assert result.outcome == "ok"
    assert result.body is not None
    assert b"Updated story" in result.body
    assert result.etag == '"feed-v2"'


def test_a_validator_with_a_line_break_is_not_sent(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/feed", etag='"a"\r\nX-Injected: 1')
    assert result.outcome == "ok"
    assert "x-injected" not in hostile_server.requests[0].headers
    assert "if-none-match" not in hostile_server.requests[0].headers


# --- bodies: encodings and the size cap ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/gzip", "/deflate", "/raw-deflate"])
def test_compressed_bodies_are_inflated(hostile_server: HostileServer, path: str) -> None:
    result = _fetch(hostile_server, path)
    assert result.outcome == "ok"
    assert result.body == FEED_BODY


@pytest.mark.parametrize("path", ["/big-no-length", "/big-chunked", "/endless", "/endless-no-length"])
def test_a_body_over_the_cap_is_cut_off(hostile_server: HostileServer, path: str) -> None:
    result = _fetch(hostile_server, path)
    assert result.outcome == "error"
    assert result.status == 200
    assert result.body is None
    assert result.error == f"{hostile_server.url(path)}: {TOO_BIG}"


def test_content_length_over_the_cap_is_refused_before_reading(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/big")
    assert result.outcome == "error"
    assert result.error == f"{hostile_server.url('/big')}: {TOO_BIG}: Content-Length is 4,194,304"


def test_the_cap_counts_inflated_bytes_and_a_body_of_exactly_the_cap_passes(hostile_server: HostileServer) -> None:
    assert len(gzipped(FEED_BODY)) < len(FEED_BODY) - 1
    assert _fetch(hostile_server, "/gzip", max_bytes=len(FEED_BODY)).outcome == "ok"
    assert _fetch(hostile_server, "/feed", max_bytes=len(FEED_BODY)).outcome == "ok"
    squeezed = _fetch(hostile_server, "/gzip", max_bytes=len(FEED_BODY) - 1)
    assert squeezed.outcome == "error"
    assert squeezed.error is not None
    assert "body over the 620-byte limit" in squeezed.error


def test_a_gzip_bomb_stops_at_the_cap_without_being_inflated(hostile_server: HostileServer) -> None:
    # 65 KB on the wire, 64 MiB inflated: inflating any whole network read of it would allocate tens of MiB.
    tracemalloc.start()
    try:
        result = _fetch(hostile_server, "/gzip-bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome == "error"
    assert result.error == f"{hostile_server.url('/gzip-bomb')}: {TOO_BIG}"
    assert peak < 16 * CAP


def test_a_body_that_is_not_the_gzip_it_claims_is_an_error(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/bad-gzip")
    assert result.outcome == "error"
    assert result.error is not None
    assert result.error.startswith(f"{hostile_server.url('/bad-gzip')}: the body is not valid gzip data")


def test_an_encoding_we_did_not_ask_for_is_an_error(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/brotli")
    assert result.outcome == "error"
    expected = "unsupported Content-Encoding 'br'; expected gzip or deflate"
    assert result.error == f"{hostile_server.url('/brotli')}: {expected}"


def test_an_empty_body_is_passed_on_for_the_parser_to_call_empty(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/empty")
    assert result.outcome == "ok"
    assert result.status == 200
    assert result.body == b""


def test_an_html_page_is_passed_on_for_the_parser_to_call_not_a_feed(hostile_server: HostileServer) -> None:
    # Plenty of real feeds are served as text/html, so judging the content is the parser's job, not ours.
    result = _fetch(hostile_server, "/login")
    assert result.outcome == "ok"
    assert result.body == LOGIN_PAGE
    assert result.headers["content-type"].startswith("text/html")


# --- the deadline ----------------------------------------------------------------------------------------------


def test_a_byte_drip_cannot_stretch_the_deadline(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/drip", timeout=1.0)  # the drip would take 30 s
    assert result.outcome == "error"
    assert result.status == 200  # the headers came at once; the body never finished
    assert result.error == f"{hostile_server.url('/drip')}: no complete response within 1 s ([fetch] timeout)"
    assert result.elapsed < 10.0  # a sanity bound, not a timing test


def test_the_deadline_covers_every_hop(hostile_server: HostileServer) -> None:
    hostile_server.redirect("/to-drip", "/drip")
    result = _fetch(hostile_server, "/to-drip", timeout=1.0)
    assert result.outcome == "error"
    assert result.final_url == hostile_server.url("/drip")
    assert result.error is not None
    assert "no complete response within 1 s" in result.error


# --- redirects -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "adopt"),
    [
        ("/moved-301", True),
        ("/permanent-308", True),
        ("/found-302", False),
        ("/see-other-303", False),
        ("/temporary-307", False),
    ],
)
def test_redirects_are_followed_and_only_permanent_ones_adopted(
    hostile_server: HostileServer, path: str, adopt: bool
) -> None:
    result = _fetch(hostile_server, path)
    assert result.outcome == "ok"
    assert result.body == FEED_BODY
    assert result.final_url == hostile_server.url("/feed")
    assert result.permanent_url == (hostile_server.url("/feed") if adopt else None)
    assert [r.path for r in hostile_server.requests] == [path, "/feed"]


def test_adoption_stops_at_the_first_temporary_redirect(hostile_server: HostileServer) -> None:
    hostile_server.redirect("/a", "/b", 301)
    hostile_server.redirect("/b", "/c", 308)
    hostile_server.redirect("/c", "/feed", 302)
    result = _fetch(hostile_server, "/a")
    assert result.outcome == "ok"
    assert result.permanent_url == hostile_server.url("/c")


def test_a_permanent_redirect_after_a_temporary_one_is_not_adopted(hostile_server: HostileServer) -> None:
    hostile_server.redirect("/a", "/moved-301", 302)
    assert _fetch(hostile_server, "/a").permanent_url is None


def test_a_permanent_redirect_to_a_failing_url_is_not_adopted(hostile_server: HostileServer) -> None:
    hostile_server.redirect("/a", "/error", 301)
    result = _fetch(hostile_server, "/a")
    assert result.outcome == "error"
    assert result.permanent_url is None
    assert result.final_url == hostile_server.url("/error")
    assert result.error == (
        f"{hostile_server.url('/a')} (redirected to {hostile_server.url('/error')}): "
        "HTTP 500 Internal Server Error; expected 200 with a feed"
    )


def test_a_not_modified_answer_after_a_permanent_redirect_adopts_it(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/moved-301", etag=FEED_ETAG)
    assert result.outcome == "not_modified"
    assert result.permanent_url == hostile_server.url("/feed")
    assert hostile_server.requests_for("/feed")[0].headers["if-none-match"] == FEED_ETAG


def test_a_redirect_loop_is_an_error(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/loop-a")
    assert result.outcome == "error"
    assert result.status == 302
    assert result.error is not None
    assert result.error.startswith(hostile_server.url("/loop-a"))
    assert f"redirect loop: {hostile_server.url('/loop-a')} was already visited" in result.error
    assert len(hostile_server.requests) == 2


def test_redirects_stop_at_the_hop_limit(hostile_server: HostileServer) -> None:
    for i in range(3):
        hostile_server.redirect(f"/hop{i}", f"/hop{i + 1}")
    hostile_server.redirect("/hop3", "/feed")
    assert _fetch(hostile_server, "/hop0", max_redirects=4).outcome == "ok"
    result = _fetch(hostile_server, "/hop0", max_redirects=3)
    assert result.outcome == "error"
    assert result.error is not None
    assert result.error.endswith(": more than 3 redirects ([fetch] max_redirects)")
    assert _fetch(hostile_server, "/moved-301", max_redirects=0).outcome == "error"


def test_a_redirect_without_a_location_is_an_error(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/no-location")
    assert result.outcome == "error"
    assert result.error == f"{hostile_server.url('/no-location')}: HTTP 302 without a Location header"


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "mailto:x@y", "javascript:alert(1)", "data:text/html,<b>hi</b>", "urn:isbn:0451450523",
     "about:blank", "ftp://example.org/feed", "MAILTO:X@Y"],
)  # fmt: skip
def test_a_redirect_to_another_scheme_is_refused(hostile_server: HostileServer, location: str) -> None:
    hostile_server.redirect("/elsewhere", location)
    result = _fetch(hostile_server, "/elsewhere")
    assert (result.outcome, result.status, result.body) == ("error", 302, None)
    assert result.error == (
        f"{hostile_server.url('/elsewhere')}: redirect to a non-http URL {location!r}: "
        "only http and https URLs are fetched"
    )


@pytest.mark.parametrize(
    "location",
    ["::::garbage", "http://[::1", "http://exa mple.org/", "http://", "https://:80/", "//[zz]/", "http://a:99999/",
     "http://xn--/", "%", "?\u00e9", "http://\u00e9\u00e9\u00e9.example/", "  ", "\u00ff:\u00ff"],
)  # fmt: skip
def test_a_redirect_to_garbage_ends_the_fetch_with_an_error(hostile_server: HostileServer, location: str) -> None:
    hostile_server.redirect("/garbage", location)
    result = _fetch(hostile_server, "/garbage")
    assert result.outcome == "error"
    assert result.error is not None
    assert result.error.startswith(hostile_server.url("/garbage"))


def test_hostile_redirects_fail_alone_and_the_batch_goes_on(hostile_server: HostileServer) -> None:
    locations = ["mailto:x@y", "javascript:void(0)", "data:,x", "urn:x", "about:blank", "::::garbage", "http://[::1"]
    for i, location in enumerate(locations):
        hostile_server.redirect(f"/bad{i}", location)
    paths = [f"/bad{i}" for i in range(len(locations))] + ["/feed"]
    requests = [FetchRequest(i, hostile_server.url(path)) for i, path in enumerate(paths)]
    results = fetch_all_sync(requests, _config(), clock=lambda: NOW)
    assert [r.outcome for r in results] == ["error"] * len(locations) + ["ok"]
    assert results[-1].body == FEED_BODY


def test_cookies_go_back_along_their_own_fetch_only(hostile_server: HostileServer) -> None:
    hostile_server.set("/consent", status=302, headers=[("Set-Cookie", "consent=yes; Path=/"), ("Location", "/feed")])
    hostile_server.set("/latin", status=302, headers=[("Set-Cookie", "\xff=\xfe; Path=/"), ("Location", "/feed")])
    requests = [FetchRequest(i, hostile_server.url(path)) for i, path in enumerate(["/consent", "/latin", "/feed"])]
    results = fetch_all_sync(requests, _config(concurrency=1), clock=lambda: NOW)
    assert [r.outcome for r in results] == ["ok", "ok", "ok"]  # a cookie no header can carry is not sent back
    assert [r.headers.get("cookie") for r in hostile_server.requests_for("/feed")] == ["consent=yes", None, None]


# --- statuses --------------------------------------------------------------------------------------------------


def test_410_is_gone(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/gone")
    assert (result.outcome, result.status, result.body) == ("gone", 410, None)
    assert result.error is not None
    assert result.error.startswith(hostile_server.url("/gone"))


def test_429_retries_after_the_seconds_it_asks_for(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/slow-down")
    assert (result.outcome, result.status) == ("retry_later", 429)
    assert result.retry_after == NOW + timedelta(seconds=120)
    assert result.error is not None
    assert result.error.startswith(hostile_server.url("/slow-down"))


def test_503_retries_after_the_date_it_asks_for(hostile_server: HostileServer) -> None:
    result = _fetch(hostile_server, "/unavailable")
    assert (result.outcome, result.status) == ("retry_later", 503)
    assert result.retry_after == NOW + timedelta(hours=2)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ([("Retry-After", "31536000")], NOW + timedelta(days=1)),
        ([("Retry-After", "Fri, 01 Jan 2027 00:00:00 GMT")], NOW + timedelta(days=1)),
        ([("Retry-After", "Sat, 01 Jan 2000 00:00:00 GMT")], NOW),
        ([("Retry-After", "soon")], None),
        ([], None),
    ],
)
def test_retry_after_is_capped_and_garbage_ignored(
    hostile_server: HostileServer, header: list[tuple[str, str]], expected: object
) -> None:
    hostile_server.set("/busy", status=503, headers=header)
    result = _fetch(hostile_server, "/busy")
    assert result.outcome == "retry_later"
    assert result.retry_after == expected


@pytest.mark.parametrize(("path", "status"), [("/error", 500), ("/nothing-here", 404)])
def test_other_error_statuses_are_errors(hostile_server: HostileServer, path: str, status: int) -> None:
    result = _fetch(hostile_server, path)
    assert (result.outcome, result.status, result.body) == ("error", status, None)
    assert result.error is not None
    assert result.error.startswith(f"{hostile_server.url(path)}: HTTP {status} ")
    assert result.error.endswith("; expected 200 with a feed")


def test_nothing_listening_is_an_error_without_a_status() -> None:
    with socket_port() as port:
        pass  # closed again: nothing listens there now
    result = _fetch_url(f"http://127.0.0.1:{port}/feed")
    assert (result.outcome, result.status) == ("error", None)
    assert result.error is not None
    assert result.error.startswith(f"http://127.0.0.1:{port}/feed: cannot connect to 127.0.0.1 port {port}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org/feed", "only http and https URLs are fetched"),
        ("file:///etc/passwd", "only http and https URLs are fetched"),
        ("http:///feed", "expected a host name or an IP address in the URL"),
        ("http://exa mple.org/", "expected a host name or an IP address in the URL"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_urls_we_cannot_fetch_are_errors_before_any_connection(url: str, message: str) -> None:
    result = _fetch_url(url)
    assert result.outcome == "error"
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith(f"{url}: ")
    assert message in result.error


# --- SSRF ------------------------------------------------------------------------------------------------------

SPELLINGS_OF_LOOPBACK = [
    "http://2130706433/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://0/",
    "http://[::ffff:127.0.0.1]/",
    "http://017700000001/",
    "http://0x7f.0.0.1/",
    "http://127.0.0.1./",
    "http://[::1]/",
    "http://[::]/",
]
OTHER_REFUSED = [
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://224.0.0.1/",
]


@pytest.mark.parametrize("url", SPELLINGS_OF_LOOPBACK + OTHER_REFUSED)
def test_private_addresses_are_refused_in_every_spelling(url: str) -> None:
    result = _fetch_url(url, allow_private_networks=False)
    assert result.outcome == "blocked"
    assert result.status is None
    assert result.error is not None
    assert result.error.startswith(f"{url}: refused: ")
    assert "[fetch] trusted_networks" in result.error


def test_the_loopback_server_itself_is_refused_when_private_networks_are_not_allowed(
    hostile_server: HostileServer,
) -> None:
    result = _fetch(hostile_server, "/feed", allow_private_networks=False)
    assert result.outcome == "blocked"
    assert result.error == (
        f"{hostile_server.url('/feed')}: refused: 127.0.0.1 is a loopback address; private networks are not "
        "fetched from (list a trusted server in [fetch] trusted_networks to reach it)"
    )
    assert hostile_server.requests == []


def test_a_host_name_is_checked_at_connect_time_after_resolving(hostile_server: HostileServer) -> None:
    # "localhost" is no literal address: only the check of the resolved address can refuse it.
    url = f"http://localhost:{hostile_server.port}/feed"
    result = _fetch_url(url, allow_private_networks=False)
    assert result.outcome == "blocked"
    assert result.error is not None
    assert result.error.startswith(f"{url}: refused: localhost is ")
    assert "a loopback address" in result.error
    assert hostile_server.requests == []


@pytest.mark.parametrize(
    ("location", "address"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is the cloud metadata address"),
        ("http://10.0.0.1/feed", "10.0.0.1 is a private address (RFC 1918)"),
        ("http://0x7f000002:{port}/feed", "0x7f000002 is 127.0.0.2, a loopback address"),
        ("http://[::ffff:a9fe:a9fe]/", "the cloud metadata address inside an IPv6 address"),
    ],
)
def test_a_redirect_to_a_private_address_is_refused(hostile_server: HostileServer, location: str, address: str) -> None:
    target = location.format(port=hostile_server.port)
    hostile_server.redirect("/sneaky", target)
    result = _fetch(hostile_server, "/sneaky", allow_private_networks=False, trusted=["127.0.0.1/32"])
    assert result.outcome == "blocked"
    assert result.status == 302
    assert result.error is not None
    assert result.error.startswith(f"{hostile_server.url('/sneaky')}: redirect to '")
    assert address in result.error
    assert [r.path for r in hostile_server.requests] == ["/sneaky"]


def test_the_default_private_redirect_routes_are_refused(hostile_server: HostileServer) -> None:
    for path in ("/to-metadata", "/to-private"):
        result = _fetch(hostile_server, path, allow_private_networks=False, trusted=["127.0.0.1/32"])
        assert result.outcome == "blocked", path


# --- header parsing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", NOW + timedelta(seconds=120)),
        (" 0 ", NOW),
        ("Fri, 27 Nov 2026 12:00:00 GMT", NOW + timedelta(hours=2)),
        ("Friday, 27-Nov-26 12:00:00 GMT", NOW + timedelta(hours=2)),
        ("999999999", NOW + timedelta(days=1)),
        ("Thu, 01 Jan 1970 00:00:00 GMT", NOW),
        ("-5", None),
        ("1.5", None),
        ("tomorrow", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: object) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age=600", 600),
        ("public, MAX-AGE=60, must-revalidate", 60),
        ('max-age="30"', 30),
        ("s-maxage=900", None),
        ("s-maxage=900, max-age=60", 60),
        ("no-cache, max-age=600", None),
        ("max-age=600, no-store", None),
        ("max-age=soon", None),
        ("max-age=-1", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_max_age(value: str | None, expected: int | None) -> None:
    assert parse_max_age(value) == expected


# --- many fetches ----------------------------------------------------------------------------------------------


def test_every_request_gets_a_result_in_order_and_failures_do_not_spread(hostile_server: HostileServer) -> None:
    paths = ["/error", "/feed", "/gone", "/nothing-here", "/slow-down", "/gzip"]
    requests = [FetchRequest(i, hostile_server.url(p)) for i, p in enumerate(paths)]
    requests.append(FetchRequest(99, "gopher://example.org/"))
    seen: list[int] = []
    results = fetch_all_sync(requests, _config(), on_result=lambda r: seen.append(r.request.source_id))
    assert [r.request for r in results] == requests
    assert [r.outcome for r in results] == ["error", "ok", "gone", "error", "retry_later", "ok", "error"]
    assert sorted(seen) == [0, 1, 2, 3, 4, 5, 99]


def test_an_async_callback_is_awaited_and_never_overlaps(hostile_server: HostileServer) -> None:
    import asyncio

    active = 0
    overlaps = 0
    done: list[str] = []

    async def store(result: FetchResult) -> None:
        nonlocal active, overlaps
        active += 1
        overlaps += active > 1
        await asyncio.sleep(0)  # yield to the other fetches, as a database call would
        done.append(result.outcome)
        active -= 1

    requests = [FetchRequest(i, hostile_server.url("/feed")) for i in range(6)]
    results = asyncio.run(fetch_all(requests, _config(), on_result=store))
    assert done == ["ok"] * 6
    assert overlaps == 0
    assert len(results) == 6


def test_an_exception_in_the_callback_is_raised_as_itself(hostile_server: HostileServer) -> None:
    def broken(result: FetchResult) -> None:
        raise KeyError("a bug in the caller")

    with pytest.raises(KeyError, match="a bug in the caller"):
        fetch_all_sync([FetchRequest(1, hostile_server.url("/feed"))], _config(), on_result=broken)


def test_no_requests_no_results() -> None:
    assert fetch_all_sync([], _config()) == []


def _held(server: HostileServer, parties: int, timeout: float = 5.0) -> None:
    # Each answer waits until `parties` requests are in flight together (or the barrier times out): concurrency is
    # shown by who meets at the barrier, never by timing.
    server.set("/held", body=FEED_BODY, barrier=threading.Barrier(parties, timeout=timeout))


@pytest.mark.parametrize(("concurrency", "per_host"), [(8, 2), (2, 8)])
def test_the_concurrency_limits_hold(hostile_server: HostileServer, concurrency: int, per_host: int) -> None:
    # The barrier waits for one request more than the limits allow. It never comes, so after 1 s the barrier breaks
    # and all are answered; a leaking limit would have let a third request in while the first two were held.
    _held(hostile_server, parties=3, timeout=1.0)
    requests = [FetchRequest(i, hostile_server.url("/held")) for i in range(4)]
    results = fetch_all_sync(requests, _config(concurrency=concurrency, per_host=per_host))
    assert [r.outcome for r in results] == ["ok"] * 4
    assert hostile_server.max_in_flight == 2


def test_a_busy_host_does_not_hold_up_the_others(hostile_server: HostileServer) -> None:
    # Two hosts (127.0.0.1 and localhost), one slot each, two workers: the requests queued behind a busy host must
    # not take the second worker, or the first pair never meets at the barrier.
    _held(hostile_server, parties=2)
    a = hostile_server.url("/held")
    b = f"http://localhost:{hostile_server.port}/held"
    requests = [FetchRequest(i, url) for i, url in enumerate([a, a, b, b])]
    results = fetch_all_sync(requests, _config(concurrency=2, per_host=1))
    assert [r.outcome for r in results] == ["ok"] * 4
    assert hostile_server.max_in_flight == 2


class socket_port:
    """A free port on 127.0.0.1, bound for the duration of the block (so nothing listens there afterwards)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

"""The SSRF address policy on its own: every spelling of a literal host, IPv4 inside IPv6, metadata addresses, and
trusted networks. Pure functions of :mod:`ingest.fetch.policy`: no server, no socket, no DNS.

tests/test_fetch.py checks the same guard end to end: refused before connecting, at connect time after resolving,
and on a redirect.
"""

from __future__ import annotations

import ipaddress

import pytest

from ingest.fetch.policy import AddressPolicy, address_problem, blocked_text, parse_ip_host

pytestmark = pytest.mark.no_database  # opens no database: one run

# --- literal hosts and the reasons addresses are refused -----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.0.0.1", "10.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("::1", "::1"),
        ("example.org", None),
        ("127.0.0.1.example.org", None),
        ("256.0.0.1", None),
        ("1.2.3.4.5", None),
        ("1.2.65536", None),
        ("4294967296", None),
        ("08.0.0.1", None),
        ("0xg.0.0.1", None),
        ("", None),
    ],
)
def test_literal_hosts_are_read_as_a_resolver_would(host: str, address: str | None) -> None:
    parsed = parse_ip_host(host)
    assert (str(parsed) if parsed is not None else None) == address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private address (RFC 1918)"),
        ("172.31.255.255", "private address (RFC 1918)"),
        ("192.168.0.1", "private address (RFC 1918)"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique local"),
        ("::ffff:10.0.0.1", "private address (RFC 1918) inside an IPv6 address"),
        ("::ffff:169.254.169.254", "metadata address inside an IPv6 address"),
        ("64:ff9b::7f00:1", "loopback address inside an IPv6 address"),
        ("2002:c0a8:101::1", "private address (RFC 1918) inside an IPv6 address"),
        ("::7f00:1", "loopback address inside an IPv6 address"),
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
    ],
)
def test_non_public_addresses_are_named(address: str, reason: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_trusted_networks_and_the_allow_switch() -> None:
    strict = AddressPolicy(False, ["10.1.0.0/16"])
    assert strict.problem(ipaddress.ip_address("10.1.2.3")) is None
    assert strict.problem(ipaddress.ip_address("10.2.0.1")) is not None
    assert AddressPolicy(True).problem(ipaddress.ip_address("127.0.0.1")) is None


# --- the spellings the README and decision 0005 promise are refused ---------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("2130706433", "a loopback address"),
        ("0x7f000001", "a loopback address"),
        ("127.1", "a loopback address"),
        ("0", "an unspecified ('this network') address"),
        ("017700000001", "a loopback address"),
        ("[::ffff:127.0.0.1]", "a loopback address inside an IPv6 address"),
        ("[::1]", "a loopback address"),
    ],
)
def test_every_listed_spelling_of_a_private_host_is_refused(host: str, reason: str) -> None:
    ip = parse_ip_host(host)
    assert ip is not None
    assert AddressPolicy(False).problem(ip) == reason


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:7f00:1",  # the same, written in hex
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "64:ff9b::127.0.0.1",  # NAT64 well-known prefix
        "2002:7f00:1::",  # 6to4
    ],
)
def test_ipv4_inside_ipv6_is_judged_by_the_ipv4_address(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == "a loopback address inside an IPv6 address"


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1"])
def test_a_public_ipv4_inside_ipv6_passes(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254"],
)
def test_every_cloud_metadata_address_is_named(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) == "the cloud metadata address"
    assert AddressPolicy(False, ["192.168.0.0/16"]).problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "64:ff9b::a9fe:a9fe"])
def test_a_metadata_address_inside_ipv6_is_named(address: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem == "the cloud metadata address inside an IPv6 address"


def test_a_scoped_ipv6_address_is_judged_without_its_scope() -> None:
    assert address_problem(ipaddress.ip_address("fe80::1%eth0")) == "a link-local address"


# --- trusted networks ------------------------------------------------------------------------------------------


def test_a_trusted_network_is_reachable_and_every_other_private_one_stays_refused() -> None:
    policy = AddressPolicy(False, ["10.1.2.0/24", "fd00:1::/32"])
    for reachable in ("10.1.2.3", "10.1.2.255", "fd00:1::5"):
        assert policy.problem(ipaddress.ip_address(reachable)) is None, reachable
    refused = {
        "10.1.3.1": "a private address (RFC 1918)",
        "192.168.1.1": "a private address (RFC 1918)",
        "127.0.0.1": "a loopback address",
        "169.254.169.254": "the cloud metadata address",
        "fd00:2::5": "a unique local (private) address",
    }
    for address, reason in refused.items():
        assert policy.problem(ipaddress.ip_address(address)) == reason, address


def test_a_trusted_network_may_be_written_with_host_bits_set() -> None:
    policy = AddressPolicy(False, ["10.1.2.3/24"])
    assert policy.problem(ipaddress.ip_address("10.1.2.200")) is None


# --- the message ----------------------------------------------------------------------------------------------

ADVICE = "private networks are not fetched from (list a trusted server in [fetch] trusted_networks to reach it)"


@pytest.mark.parametrize(
    ("host", "ip", "expected"),
    [
        ("127.0.0.1", "127.0.0.1", f"127.0.0.1 is a loopback address; {ADVICE}"),
        ("[::1]", "::1", f"::1 is a loopback address; {ADVICE}"),
        ("127.1", "127.0.0.1", f"127.1 is 127.0.0.1, a loopback address; {ADVICE}"),
        ("localhost", "127.0.0.1", f"localhost is 127.0.0.1, a loopback address; {ADVICE}"),
    ],
)
def test_the_refusal_names_the_host_its_address_and_the_way_out(host: str, ip: str, expected: str) -> None:
    assert blocked_text(host, ip, "a loopback address") == expected

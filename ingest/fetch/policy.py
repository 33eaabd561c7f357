"""Which addresses a fetch may connect to (the SSRF guard's rules): pure, the standard library's ipaddress only.

Knows nothing of HTTP, sockets or DNS: :mod:`ingest.fetch.transport` asks it about each address it resolved, and
:mod:`ingest.fetch.fetcher` about each literal host before any connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def blocked_text(host: str, ip: str, reason: str) -> str:
    """Why a fetch was refused, for a person: the host, the address it is, the reason, and how to allow it."""
    subject = f"{ip} is" if host.strip("[]") == ip else f"{host} is {ip},"
    return (
        f"{subject} {reason}; private networks are not fetched from "
        "(list a trusted server in [fetch] trusted_networks to reach it)"
    )

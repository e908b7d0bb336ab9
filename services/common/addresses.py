"""Client IP addresses, one way for every service: parsing, network membership and the address
a trusted reverse proxy forwards.

IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``, RFC 4291 section 2.5.5.2, what a dual-stack
socket reports for an IPv4 peer) are taken as the IPv4 address they carry, so a network list of
IPv4 ranges matches them and a limit per address does not count one host twice.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def unmapped(address: Address) -> Address:
    """``address``, or the IPv4 address an IPv4-mapped IPv6 address carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_address(text: str) -> Address | None:
    """An IP address as a socket or a header gives it (brackets allowed), or None."""
    try:
        return unmapped(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def parse_networks(networks: tuple[str, ...]) -> tuple[Network, ...]:
    """CIDR networks from settings (host bits allowed); entries that do not parse are skipped.
    Cached: a service asks this for every new connection with the same few settings."""
    out = []
    for net in networks:
        with contextlib.suppress(ValueError):
            out.append(ipaddress.ip_network(net.strip(), strict=False))
    return tuple(out)


def in_networks(address: str | Address, networks: Iterable[Network]) -> bool:
    """Whether ``address`` is in one of ``networks`` (an unparsable address is in none)."""
    ip = parse_address(address) if isinstance(address, str) else unmapped(address)
    return ip is not None and any(ip in net for net in networks)


def forwarded_client(peer: str, forwarded: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: when the peer is a trusted proxy (nginx), the right-most entry of
    its ``X-Forwarded-For`` / ``X-Real-IP`` value (the one the proxy itself added; entries to
    its left are the client's say), if that is an IP address; otherwise the peer."""
    if forwarded and in_networks(peer, trusted):
        last = parse_address(forwarded.split(",")[-1])
        if last is not None:
            return str(last)
    return peer

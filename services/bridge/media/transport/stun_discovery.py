"""The bridge's public address, found with STUN (like jitsi-videobridge's STUN mapping harvester).

A bridge behind a 1:1 NAT (a cloud VM with a floating IP, a host behind a router forwarding the
media port) does not know the address clients reach it at. When ``JVB_ADVERTISE_IPS`` is unset and
``JVB_STUN_SERVERS`` names STUN servers, the bridge asks them at start which address they see it
at, and advertises that address as a server-reflexive candidate (RFC 8445 section 5.1.1.2) beside
its local address. As in jvb, the mapped *address* is used with the bridge's own media port: the
NAT must forward that port unchanged.

``plan_candidates`` decides what to advertise and does no I/O; ``discover`` does the asking.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from services.common.stun import StunError, binding_request, parse_server

log = logging.getLogger("bridge.stun")


@dataclass(frozen=True)
class AddressPlan:
    """Addresses to advertise: ``host`` candidates and ``srflx`` ones as ``(mapped, local)``."""

    host: tuple[str, ...]
    srflx: tuple[tuple[str, str], ...] = ()


def plan_candidates(
    advertise_ips: tuple[str, ...], bind_address: str, mappings: list[tuple[str, str]]
) -> AddressPlan:
    """``mappings`` are ``(mapped, local)`` address pairs from STUN. Configured addresses win;
    otherwise the local address the STUN exchange used (or the bind address) is the host
    candidate and every distinct mapped address that differs from it is a srflx candidate."""
    if advertise_ips:
        return AddressPlan(tuple(advertise_ips))
    wildcard = bind_address in ("0.0.0.0", "::", "")
    hosts: list[str] = []
    srflx: list[tuple[str, str]] = []
    for mapped, local in mappings:
        local = local if wildcard else bind_address
        if local not in hosts:
            hosts.append(local)
        if mapped != local and all(mapped != m for m, _ in srflx) and not _unusable(mapped):
            srflx.append((mapped, local))
    if not hosts:
        hosts.append("127.0.0.1" if wildcard else bind_address)
    return AddressPlan(tuple(hosts), tuple(srflx))


def _unusable(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    return addr.is_unspecified or addr.is_multicast


async def discover(servers: tuple[str, ...], wait: float = 3.0) -> list[tuple[str, str]]:
    """``(mapped, local)`` from every server that answers; servers that do not are logged."""

    async def one(spec: str) -> tuple[str, str] | None:
        try:
            mapping = await binding_request(parse_server(spec), wait=wait)
        except (StunError, OSError, ValueError) as exc:
            log.warning("STUN server %s gave no mapped address: %s", spec, exc)
            return None
        log.info("STUN server %s sees this bridge at %s", spec, mapping.mapped[0])
        return mapping.mapped[0], mapping.local[0]

    results = await asyncio.gather(*(one(s) for s in servers))
    return [r for r in results if r is not None]

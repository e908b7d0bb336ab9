"""The addresses ``./parley up`` has its bridges advertise when ``JVB_ADVERTISE_IPS`` is unset.

Firefox and Safari never gather a loopback candidate, so a bridge that advertises only 127.0.0.1
is unreachable for them even on the same machine (``docs/nat.md``). The launcher therefore
advertises the host's own IPv4 addresses first and 127.0.0.1 last (Chromium with loopback
candidates, and a host with no other address, keep working).

The addresses are read locally, without sending any traffic: ``ip -j addr`` (iproute2's JSON),
else the addresses the host name resolves to. :func:`advertise_ips` is the pure choice and is
unit-tested; :func:`host_advertise_ips` does the reading.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import socket
import subprocess
from collections.abc import Iterable
from typing import Any

LOOPBACK = "127.0.0.1"
MAX_ADDRESSES = 8  # a host with dozens of container bridges would make every offer huge


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return (
        ip.version == 4
        and not ip.is_loopback
        and not ip.is_link_local
        and not ip.is_multicast
        and not ip.is_unspecified
    )


def advertise_ips(interfaces: Any) -> list[str]:
    """The addresses to advertise from ``ip -j addr`` output (parsed JSON): each IPv4 address of
    global scope on an interface that is up and not loopback, in the kernel's order, without
    duplicates, then 127.0.0.1. Anything malformed is skipped."""
    chosen: list[str] = []
    for iface in interfaces if isinstance(interfaces, list) else []:
        if not isinstance(iface, dict):
            continue
        flags = iface.get("flags") or []
        if not isinstance(flags, list) or "UP" not in flags or "LOOPBACK" in flags:
            continue
        for addr in iface.get("addr_info") or []:
            if not isinstance(addr, dict) or addr.get("family") != "inet":
                continue
            if addr.get("scope", "global") != "global":
                continue
            local = addr.get("local")
            if isinstance(local, str) and _usable(local) and local not in chosen:
                chosen.append(local)
    return [*chosen[:MAX_ADDRESSES], LOOPBACK]


def advertise_ips_from_names(addresses: Iterable[str]) -> list[str]:
    """The same choice from plain addresses (the host name's resolution, when ``ip`` is missing)."""
    chosen: list[str] = []
    for a in addresses:
        if _usable(a) and a not in chosen:
            chosen.append(a)
    return [*chosen[:MAX_ADDRESSES], LOOPBACK]


def host_advertise_ips() -> list[str]:
    """This host's addresses to advertise (see :func:`advertise_ips`); 127.0.0.1 alone when none
    can be read."""
    ip = shutil.which("ip")
    if ip:
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
            out = subprocess.run(
                [ip, "-j", "addr", "show"], capture_output=True, text=True, timeout=10, check=True
            ).stdout
            return advertise_ips(json.loads(out))
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return [LOOPBACK]
    return advertise_ips_from_names(str(info[4][0]) for info in infos)

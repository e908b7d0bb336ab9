"""Which addresses ``./parley up`` has the bridges advertise when ``JVB_ADVERTISE_IPS`` is unset."""

import argparse
from pathlib import Path
from typing import Any

from services.launcher import __main__ as launcher
from services.launcher.addresses import (
    MAX_ADDRESSES,
    advertise_ips,
    advertise_ips_from_names,
    host_advertise_ips,
)


def iface(name: str, flags: list[str], *addrs: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "ifname": name,
        "flags": flags,
        "addr_info": [{"family": f, "local": a, "scope": s} for f, a, s in addrs],
    }


UP = ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]

# the shape of `ip -j addr` on a host with a LAN address, IPv6, a down interface and a container bridge
HOST = [
    iface("lo", ["LOOPBACK", "UP", "LOWER_UP"], ("inet", "127.0.0.1", "host"), ("inet6", "::1", "host")),
    iface("ifb0", ["BROADCAST", "NOARP"]),
    iface(
        "eth0",
        UP,
        ("inet", "192.0.2.2", "global"),
        ("inet6", "fd00::2", "global"),
        ("inet6", "fe80::1", "link"),
    ),
    iface("wlan0", ["BROADCAST", "MULTICAST"], ("inet", "198.51.100.7", "global")),  # down
    iface("podman0", UP, ("inet", "10.88.0.1", "global"), ("inet", "169.254.3.3", "global")),
]


def test_the_hosts_up_ipv4_global_addresses_then_loopback() -> None:
    assert advertise_ips(HOST) == ["192.0.2.2", "10.88.0.1", "127.0.0.1"]


def test_only_loopback_when_the_host_has_no_other_address() -> None:
    assert advertise_ips(HOST[:2]) == ["127.0.0.1"]
    assert advertise_ips([]) == ["127.0.0.1"]


def test_malformed_output_is_skipped_not_fatal() -> None:
    junk: list[Any] = [
        "eth0",
        {"flags": "UP"},
        {"flags": ["UP"], "addr_info": "x"},
        {"flags": ["UP"], "addr_info": [{"family": "inet", "local": "not-an-ip"}, 7]},
        {"flags": ["UP"], "addr_info": [{"family": "inet", "local": "203.0.113.9"}]},  # scope absent
    ]
    assert advertise_ips(junk) == ["203.0.113.9", "127.0.0.1"]
    assert advertise_ips({"not": "a list"}) == ["127.0.0.1"]


def test_duplicates_are_dropped_and_many_addresses_capped() -> None:
    many = [iface(f"br{i}", UP, ("inet", f"10.0.{i}.1", "global")) for i in range(20)]
    chosen = advertise_ips([*many, iface("dup", UP, ("inet", "10.0.0.1", "global"))])
    assert len(chosen) == MAX_ADDRESSES + 1
    assert chosen[0] == "10.0.0.1" and chosen[-1] == "127.0.0.1"
    assert len(set(chosen)) == len(chosen)


def test_the_host_name_fallback_keeps_non_loopback_ipv4() -> None:
    assert advertise_ips_from_names(["127.0.1.1", "192.0.2.5", "::1", "192.0.2.5"]) == [
        "192.0.2.5",
        "127.0.0.1",
    ]


def test_this_host_always_includes_loopback_last() -> None:
    found = host_advertise_ips()
    assert found[-1] == "127.0.0.1"
    assert "127.0.0.1" not in found[:-1]


def _args(tmp_path: Path) -> argparse.Namespace:
    return argparse.Namespace(
        http_port=8000,
        port_offset=0,
        bridges=1,
        public_url=None,
        run_dir=str(tmp_path),
        nginx="/usr/sbin/nginx",
        no_turn=True,
        turn_relay_ports="49152-65535",
    )


def test_the_launcher_uses_the_host_addresses_unless_told(tmp_path: Path) -> None:
    assert launcher.settings_from(_args(tmp_path), {}).advertise_ips == ",".join(host_advertise_ips())
    told = launcher.settings_from(_args(tmp_path), {"JVB_ADVERTISE_IPS": "203.0.113.1"})
    assert told.advertise_ips == "203.0.113.1"

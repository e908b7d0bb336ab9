"""A SIP WebSocket client's address behind nginx (services/sip/transport.py ``client_address``)."""

from __future__ import annotations

import ipaddress

from services.sip.transport import client_address

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


def test_only_a_trusted_proxy_forwards_an_address_and_only_its_own_entry_counts() -> None:
    assert client_address("127.0.0.1", "10.0.0.1, 203.0.113.7", LOOPBACK) == "203.0.113.7"
    assert client_address("::ffff:127.0.0.1", "203.0.113.7", LOOPBACK) == "203.0.113.7"
    assert client_address("::1", "2001:db8::5", LOOPBACK) == "2001:db8::5"
    assert client_address("198.51.100.2", "203.0.113.7", LOOPBACK) == "198.51.100.2"  # not a proxy
    assert client_address("127.0.0.1", None, LOOPBACK) == "127.0.0.1"
    assert client_address("127.0.0.1", "203.0.113.7, junk", LOOPBACK) == "127.0.0.1"  # not an address
    assert client_address("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"

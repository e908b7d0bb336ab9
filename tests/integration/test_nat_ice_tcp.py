"""(a, continued) A browser whose site drops all UDP joins through the bridge's own ICE over TCP
(RFC 6544 passive candidate, RFC 4571 framing), with no TURN server offered, and the others, who
reach the bridge over UDP, decode it and are decoded by it: one per-packet path for both."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.browser import BROWSER_MARKS
from tests.integration.nat_stack import (
    MeetingStack,
    decode_each_other,
    meet,
    one_site,
    selected_pair,
)
from tests.integration.netns import NetLab, Site, netns_available

pytestmark = [
    *BROWSER_MARKS,
    pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nftables"),
]


@pytest.fixture(scope="module")
def office() -> Iterator[tuple[NetLab, MeetingStack, Site]]:
    # the site drops UDP; the bridge advertises the address it reaches, on UDP and (lower) on TCP
    with one_site("t", NetLab.drop_udp, ice_tcp=True) as lab_stack_site:
        yield lab_stack_site


def test_udp_blocked_site_joins_through_the_bridges_ice_tcp(
    office: tuple[NetLab, MeetingStack, Site],
) -> None:
    lab, meeting, site = office
    for people in meet(lab, meeting.front, {"Office": site, "Home": None}):
        office_person, home = people
        assert office_person.page.evaluate("window.parley.iceServers") == []  # no TURN here
        decode_each_other(people)
        pair = selected_pair(office_person, people)
        assert pair["remote"]["candidateType"] == "host", pair
        assert pair["remote"]["protocol"] == "tcp", pair
        assert (pair["remote"]["address"], pair["remote"]["port"]) == (site.gateway, meeting.bridge_tcp), pair
        assert pair["remote"]["tcpType"] == "passive", pair
        assert (pair["local"]["protocol"], pair["local"]["tcpType"]) == ("tcp", "active"), pair
        assert pair["bytesReceived"] > 10_000, pair
        assert lab.udp_dropped(site) > 0  # Chromium tried the UDP candidate first
        stats = httpx.get(f"{meeting.colibri}/colibri/stats", timeout=5).json()
        assert stats["ice_tcp_connections"] >= 1, stats
        debug = httpx.get(f"{meeting.colibri}/debug", timeout=5).json()
        endpoints = [e for c in debug["conferences"] for e in c["endpoints"]]
        on_tcp = sorted(e["media"]["remote_address"].startswith("tcp:") for e in endpoints)
        assert on_tcp == [False, True], endpoints  # Home on UDP, Office on TCP
        home_pair = selected_pair(home, people)
        assert home_pair["remote"]["protocol"] == "udp", home_pair
        assert home_pair["remote"]["port"] == meeting.bridge_udp, home_pair


def test_hostile_tcp_connections_are_closed(office: tuple[NetLab, MeetingStack, Site]) -> None:
    """Not ICE (no STUN first): closed at once. Silent, or never completing ICE: closed after the
    handshake timeout (10 s). The bridge keeps serving."""
    import socket

    from services.bridge.media.transport import aiortc_adapter as adapter
    from services.bridge.media.transport.ice_tcp import Rfc4571Framer, frame

    _, meeting, site = office
    assert meeting.bridge_tcp is not None
    address = (site.gateway, meeting.bridge_tcp)

    def received_until_closed(sock: socket.socket, seconds: float = 60) -> bytes:
        sock.settimeout(seconds)  # generous: the machine may be busy; a timeout fails the test
        out = b""
        while chunk := sock.recv(4096):
            out += chunk
        return out

    with socket.create_connection(address) as http:
        http.sendall(frame(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert received_until_closed(http) == b""
    with socket.create_connection(address) as silent, socket.create_connection(address) as stranger:
        # a well-formed check for an endpoint that does not exist: answered (401), never selected
        stranger.sendall(frame(adapter.binding_request("them", "nobody", "x" * 24)))
        reply = Rfc4571Framer().feed(received_until_closed(stranger))
        assert len(reply) == 1 and reply[0][:2] == b"\x01\x11"  # Binding error response
        assert received_until_closed(silent) == b""

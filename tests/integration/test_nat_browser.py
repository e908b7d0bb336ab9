"""Real Chromium in network namespaces this test creates, joining through coturn:

(a) a browser whose site drops all UDP (nftables) joins through TURN over TCP, and decodes the
    others, who decode it;
(b) a browser behind a masquerading NAT joins through TURN over UDP.

The stack runs in the test's own namespace and the bridge advertises only 127.0.0.1, which no site
can reach: like a bridge on a private network whose only public door is the TURN server. coturn
listens on the sites' gateway address and relays from 127.0.0.1, the one peer address it allows.
The pages are configured with ``forceTurnRelay``, so "Home", in the test's own namespace, relays
too. Each test asserts which candidate pair carried the media (getStats: the transport's selected
``candidate-pair`` and its ``local-candidate`` / ``remote-candidate``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.browser import BROWSER_MARKS
from tests.integration.nat_stack import (
    MeetingStack,
    build_web_client,
    decode_each_other,
    meet,
    selected_pair,
    start_meeting_stack,
)
from tests.integration.netns import NetLab, Site, netns_available
from tests.integration.turn import coturn_available, start_coturn, stop_coturn

pytestmark = [
    *BROWSER_MARKS,
    pytest.mark.peer,
    pytest.mark.skipif(not coturn_available(), reason="needs coturn (/usr/bin/turnserver)"),
    pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nftables"),
]

SECRET = "nat-browser-secret"


@dataclass
class Stack:
    lab: NetLab
    meeting: MeetingStack
    udp_blocked: Site
    nat_router: Site
    behind_nat: Site


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    build_web_client()
    lab = NetLab()
    meeting = MeetingStack()
    turn = None
    try:
        udp_blocked = lab.site("a")
        lab.drop_udp(udp_blocked)
        nat_router, behind_nat = lab.nat_site("n")
        public = udp_blocked.gateway  # this namespace's address on site a's link
        turn, turn_port = start_coturn(
            SECRET,
            listen_ips=(public, nat_router.gateway, "127.0.0.1"),
            allowed_peer_ips=("127.0.0.1",),
            relay_ip="127.0.0.1",
        )
        # every page relays (jitsi-meet's forceTurnRelay): "Home" could reach the bridge directly
        start_meeting_stack(
            public, "127.0.0.1", turn=(public, turn_port, SECRET), stack=meeting, force_turn_relay=True
        )
        # the NAT forwards UDP but not TURN over TCP: with both relays up, the browser would be free
        # to select either, and this site is the UDP one
        lab.nft(
            nat_router.ns,
            f"""
            table inet parley_fw {{
              chain forward {{ type filter hook forward priority filter; policy accept;
                udp dport {turn_port} counter accept
                tcp dport {turn_port} drop
              }}
            }}""",
        )
        yield Stack(lab, meeting, udp_blocked, nat_router, behind_nat)
    finally:
        meeting.stop()
        if turn is not None:
            stop_coturn(turn)
        lab.close()


def test_udp_blocked_site_joins_through_turn_over_tcp(stack: Stack) -> None:
    for people in meet(stack.lab, stack.meeting.front, {"Office": stack.udp_blocked, "Home": None}):
        office, home = people
        assert any("transport=tcp" in url for url in office.page.evaluate("window.parley.iceServers"))
        decode_each_other(people)
        pair = selected_pair(office, people)
        assert pair["local"]["candidateType"] == "relay", pair
        assert pair["local"]["relayProtocol"] == "tcp", pair
        assert pair["remote"]["candidateType"] == "host", pair
        assert (pair["remote"]["address"], pair["remote"]["port"]) == (
            "127.0.0.1",
            stack.meeting.bridge_udp,
        ), pair
        assert pair["bytesReceived"] > 10_000, pair
        # the site's firewall really dropped UDP (Chromium tried it)
        assert stack.lab.udp_dropped(stack.udp_blocked) > 0
        home_pair = selected_pair(home, people)
        assert home_pair["local"]["candidateType"] == "relay", home_pair  # forceTurnRelay
        assert home_pair["remote"]["port"] == stack.meeting.bridge_udp, home_pair


def test_site_behind_nat_joins_through_turn_over_udp(stack: Stack) -> None:
    for people in meet(stack.lab, stack.meeting.front, {"Cafe": stack.behind_nat, "Home": None}):
        cafe, _home = people
        decode_each_other(people)
        pair = selected_pair(cafe, people)
        assert pair["local"]["candidateType"] == "relay", pair
        assert pair["local"]["relayProtocol"] == "udp", pair
        assert (pair["remote"]["address"], pair["remote"]["port"]) == (
            "127.0.0.1",
            stack.meeting.bridge_udp,
        ), pair
        assert pair["bytesReceived"] > 10_000, pair
        # the browser's traffic was masqueraded by the NAT, and its media went through it to TURN
        assert stack.lab.masqueraded(stack.nat_router) > 0
        assert stack.lab.counted(stack.nat_router, "inet", "parley_fw") > 100
        assert pair["local"]["url"].endswith("?transport=udp"), pair

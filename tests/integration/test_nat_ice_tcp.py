"""(a, continued) A browser whose site drops all UDP joins through the bridge's own ICE over TCP
(RFC 6544 passive candidate, RFC 4571 framing), with no TURN server offered, and the others, who
reach the bridge over UDP, decode it and are decoded by it: one per-packet path for both."""

from __future__ import annotations

from collections.abc import Iterator

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

pytestmark = [
    *BROWSER_MARKS,
    pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nftables"),
]


@pytest.fixture(scope="module")
def office() -> Iterator[tuple[NetLab, MeetingStack, Site]]:
    build_web_client()
    lab = NetLab()
    meeting = MeetingStack()
    try:
        site = lab.site("t")
        lab.drop_udp(site)
        # the bridge advertises the address the site reaches, on UDP and (lower) on TCP
        start_meeting_stack(site.gateway, site.gateway, ice_tcp=True, stack=meeting)
        yield lab, meeting, site
    finally:
        meeting.stop()
        lab.close()


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
        home_pair = selected_pair(home, people)
        assert home_pair["remote"]["protocol"] == "udp", home_pair
        assert home_pair["remote"]["port"] == meeting.bridge_udp, home_pair

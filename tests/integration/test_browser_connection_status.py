"""Connection status, as jitsi-videobridge reports it: a participant whose network (its own
namespace, ``netns.py``) starts dropping every UDP packet stops sending media; the bridge tells the
others (``EndpointConnectivityStatusChangeEvent`` active=false) and their page shows "Connection
interrupted" on that tile. When the network comes back, so do the media and the tile."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.browser import BROWSER_MARKS
from tests.integration.harness import REPO
from tests.integration.nat_stack import (
    MeetingStack,
    Person,
    build_web_client,
    decode_each_other,
    meet,
    start_meeting_stack,
    wait_until,
)
from tests.integration.netns import NetLab, Site, netns_available

pytestmark = [
    *BROWSER_MARKS,
    pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nftables"),
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def site_stack() -> Iterator[tuple[NetLab, MeetingStack, Site]]:
    build_web_client()
    lab = NetLab()
    meeting = MeetingStack()
    try:
        site = lab.site("c")
        start_meeting_stack(site.gateway, site.gateway, stack=meeting)
        yield lab, meeting, site
    finally:
        meeting.stop()
        lab.close()


def test_a_participant_whose_network_drops_packets_is_shown_as_interrupted(
    site_stack: tuple[NetLab, MeetingStack, Site],
) -> None:
    lab, meeting, site = site_stack
    for people in meet(lab, meeting.front, {"Cut": site, "Home": None}):
        check_interruption(lab, site, people)


def check_interruption(lab: NetLab, site: Site, people: list[Person]) -> None:
    cut, home = people
    decode_each_other(people)
    cut_ep = cut.endpoint
    tile = f'.tile[data-endpoint="{cut_ep}"] .tile-interrupted'
    assert home.page.evaluate("window.parley.interrupted()") == []
    assert home.page.is_hidden(tile)
    lab.drop_udp(site)
    wait_until(
        "Home to show Cut as interrupted",
        lambda: cut_ep in home.page.evaluate("window.parley.interrupted()"),
        people,
    )
    home.page.wait_for_selector(f"{tile}:not([hidden])", timeout=10_000)
    assert lab.udp_dropped(site) > 0
    shots = REPO / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    home.page.screenshot(path=str(shots / "connection-interrupted.png"))
    lab.sh("nft", "delete", "table", "inet", "parley_fw", ns=site.ns)
    wait_until(
        "Home to show Cut's media back",
        lambda: cut_ep not in home.page.evaluate("window.parley.interrupted()"),
        people,
        timeout=120,
    )
    before = home.frames().get(cut_ep, 0)
    time.sleep(2)
    wait_until(
        "Cut's video to advance again", lambda: home.frames().get(cut_ep, 0) > before, people, timeout=60
    )
    home.page.wait_for_selector(tile, state="hidden", timeout=10_000)

"""Connection status, as jitsi-videobridge reports it: a participant whose network (its own
namespace, ``netns.py``) starts dropping every UDP packet stops sending media; the bridge tells the
others (``EndpointConnectivityStatusChangeEvent`` active=false) and their page shows "Connection
interrupted" on that tile. Someone who joins while the media is still stopped is told too (the
bridge sends the current status on every new bridge channel), so the late joiner's page shows
it as well. When the network comes back, so do the media and the tile."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.browser import BROWSER_MARKS, browsers, console_log
from tests.integration.harness import REPO
from tests.integration.nat_stack import (
    MeetingStack,
    Person,
    decode_each_other,
    join_from,
    one_site,
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
    with one_site("c") as lab_stack_site:
        yield lab_stack_site


def test_a_participant_whose_network_drops_packets_is_shown_as_interrupted(
    site_stack: tuple[NetLab, MeetingStack, Site],
) -> None:
    lab, meeting, site = site_stack
    room = f"{meeting.front}/cs-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        people = join_from(lab, pool, meeting.front, room, {"Cut": site, "Home": None}, Person, 120_000)

        # Late waits on the pre-join screen (its browser started now, not during the interruption)
        page = lab.open_browser(pool, None, meeting.front)
        late = Person("Late", page, console_log(page))
        page.goto(room)
        page.wait_for_selector("#join-button", timeout=120_000)
        check_interruption(lab, site, people, late)


def check_interruption(lab: NetLab, site: Site, people: list[Person], late: Person) -> None:
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
    # Someone joining now missed the change: the bridge tells their new bridge channel. Home's
    # tile must stay interrupted meanwhile: had Cut's media come back (or Cut been invited anew)
    # and stopped again, Late could have learnt it from a change instead.
    home.page.evaluate(
        """(ep) => { window.cutTileChanges = [];
        const tile = document.querySelector(`.tile[data-endpoint="${ep}"]`);
        new MutationObserver(() => { if (tile.dataset.interrupted !== 'true') window.cutTileChanges.push('active'); })
          .observe(tile, { attributes: true, attributeFilter: ['data-interrupted'] }); }""",
        cut_ep,
    )
    everyone = [*people, late]
    late.page.fill("#name-input", "Late")
    late.page.click("#join-button")
    late.page.wait_for_selector("#meeting:not([hidden])", timeout=120_000)
    wait_until(
        "Late, who joined during the interruption, to show Cut as interrupted",
        lambda: cut_ep in late.page.evaluate("window.parley.interrupted()"),
        everyone,
        timeout=120,
    )
    late.page.wait_for_selector(f"{tile}:not([hidden])", timeout=10_000)
    assert home.page.evaluate("window.cutTileChanges") == [], "Cut's status changed meanwhile"
    assert cut_ep in home.page.evaluate("window.parley.interrupted()")  # still cut off
    shots = REPO / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    home.page.screenshot(path=str(shots / "connection-interrupted.png"))
    lab.sh("nft", "delete", "table", "inet", "parley_fw", ns=site.ns)
    wait_until(
        "Home and Late to show Cut's media back",
        lambda: all(cut_ep not in p.page.evaluate("window.parley.interrupted()") for p in (home, late)),
        everyone,
        timeout=120,
    )
    before = home.frames().get(cut_ep, 0)
    time.sleep(2)
    wait_until(
        "Cut's video to advance again", lambda: home.frames().get(cut_ep, 0) > before, people, timeout=60
    )
    home.page.wait_for_selector(tile, state="hidden", timeout=10_000)
    late.page.wait_for_selector(tile, state="hidden", timeout=10_000)

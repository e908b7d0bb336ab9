"""The bridge's send-side bandwidth estimate with real Chromium receivers
(``videobridge.forwarding.send-side-bwe``, on by default): the bridge numbers what it forwards to each receiver
(transport-wide sequence numbers, draft-holmer-rmcat-transport-wide-cc-extensions-01), Chromium
answers with transport-cc feedback instead of REMB, and that feedback is the receiver's downlink
estimate (``/debug``: ``downlink_estimate_source``), which the layer choice follows.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.browser import BROWSER_MARKS, DESKTOP, LauncherStack, browsers, console_log
from tests.integration.test_browser_simulcast import Person, wait_until

pytestmark = [*BROWSER_MARKS, pytest.mark.peer]


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Person]]:
    stack = LauncherStack(tmp_path_factory.mktemp("stack") / "run", bridges=1).start()
    room = f"ssbwe-{uuid.uuid4().hex[:8]}"
    try:
        with browsers() as pool:
            people = []
            for name in ("Ada", "Bob"):
                page = pool.open(DESKTOP)
                log = console_log(page)
                page.goto(f"{stack.front}/{room}?name={name}")
                people.append(Person(name, page, log))
            for p in people:
                p.page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
            for p in people:
                wait_until(
                    f"{p.name} to decode the other",
                    lambda p=p: sum(1 for s in p.received().values() if s["framesDecoded"] > 0) == 1,
                    people,
                    timeout=45,
                )
            yield people
    finally:
        stack.stop()


def bridge_view(person: Person, endpoint: str) -> dict[str, Any]:
    offset = int(person.page.url.split("/")[2].rsplit(":", 1)[1]) - 8000
    debug = httpx.get(f"http://127.0.0.1:{8080 + offset}/debug", timeout=5).json()
    media = [e["media"] for c in debug["conferences"] for e in c["endpoints"] if e["id"] == endpoint]
    return media[0] if media and media[0] else {}


def test_a_chromium_receivers_feedback_is_its_downlink_estimate(meeting: list[Person]) -> None:
    ada, bob = meeting
    wait_until(
        "the bridge to estimate Bob's downlink from his transport-cc feedback",
        lambda: bridge_view(bob, bob.endpoint).get("downlink_estimate_source") == "transport-cc",
        meeting,
    )
    before = bridge_view(bob, bob.endpoint)["transport_cc_feedback_received"]
    decoded = bob.received()[ada.endpoint]["framesDecoded"]
    time.sleep(3)
    view = bridge_view(bob, bob.endpoint)
    print("the bridge on Bob:", view)
    # Chromium sends feedback every 50-100 ms on the bridge's numbering, and it is read
    assert view["transport_cc_feedback_received"] - before >= 15
    assert view["send_side_estimate_bps"] > 100_000
    assert bob.received()[ada.endpoint]["framesDecoded"] > decoded
    # what the page is told is that estimate (ConnectionStats)
    wait_until(
        "Bob's page to be told an estimate",
        lambda: bool(bob.page.evaluate("window.parley.downlinkBps")),
        meeting,
    )


# -- a real limited link: the receiver in its own network namespace, its downlink shaped by tc ----

LIMIT = "450kbit"  # below the 360p layer plus audio, above the 180p one


@pytest.fixture(scope="module")
def limited_site() -> Iterator[tuple[Any, Any, Any]]:
    from tests.integration.nat_stack import MeetingStack, build_web_client, start_meeting_stack
    from tests.integration.netns import NetLab

    build_web_client()
    lab = NetLab()
    stack = MeetingStack()
    try:
        site = lab.site("r")
        start_meeting_stack(site.gateway, site.gateway, stack=stack, simulcast=True)
        yield lab, stack, site
    finally:
        stack.stop()
        lab.close()


def test_a_limited_downlink_moves_the_receiver_down_and_back_up(limited_site: tuple[Any, Any, Any]) -> None:
    """Bob's downlink (the root-side end of his site's veth) is shaped to 450 kbit/s with a token
    bucket (``tc tbf``): the bridge's send-side estimate of it falls (the delay trend of his
    transport-cc feedback), the bridge forwards him a lower layer of Ada's camera; when the limit
    goes, the step-up probe and the estimate take him back to 720p."""
    from tests.integration.netns import netns_available

    if not netns_available() or not shutil.which("tc"):
        pytest.skip("needs root, iproute2, nftables and tc")
    lab, stack, site = limited_site
    veth = f"{lab.tag}ra"  # this namespace's end: what leaves it towards Bob
    room = f"{stack.front}/ssbwe-tc-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        people = []
        for name, where in (("Ada", None), ("Bob", site)):
            page = lab.open_browser(pool, where, stack.front)
            log = console_log(page)
            page.goto(f"{room}?name={name}")
            people.append(Person(name, page, log))
        for p in people:
            p.page.wait_for_selector("#meeting:not([hidden])", timeout=60_000)
        ada, bob = people

        def view() -> dict[str, Any]:
            debug = httpx.get(f"{stack.colibri}/debug", timeout=5).json()
            media = [
                e["media"] for c in debug["conferences"] for e in c["endpoints"] if e["id"] == bob.endpoint
            ]
            return media[0] if media and media[0] else {}

        def height() -> int:
            return int(bob.received().get(ada.endpoint, {}).get("frameHeight", 0))

        wait_until("Bob to get Ada's 720p layer", lambda: height() >= 720, people, timeout=60)
        assert view().get("downlink_estimate_source") == "transport-cc"
        print("unlimited:", view().get("send_side_estimate_bps"), "bps, height", height())
        lab.sh(*f"tc qdisc add dev {veth} root tbf rate {LIMIT} burst 16kb latency 400ms".split())
        try:
            wait_until(
                "the bridge to move Bob below 360p on his limited downlink", lambda: 0 < height() < 360, people,
                timeout=60,
            )  # fmt: skip
            limited = view()
            print("limited:", limited.get("send_side_estimate_bps"), "bps, height", height())
            assert limited["downlink_estimate_source"] == "transport-cc"
            assert limited["send_side_estimate_bps"] < 600_000
            decoded = bob.received()[ada.endpoint]["framesDecoded"]
            time.sleep(2)
            assert bob.received()[ada.endpoint]["framesDecoded"] > decoded  # still moving
        finally:
            lab.sh("tc", "qdisc", "del", "dev", veth, "root")
        wait_until("Bob to get Ada's 720p layer back", lambda: height() >= 720, people, timeout=120)
        print("lifted:", view().get("send_side_estimate_bps"), "bps, height", height())

"""The bridge's send-side bandwidth estimate with real Chromium receivers
(``videobridge.forwarding.send-side-bwe``, on by default): the bridge numbers what it forwards to each receiver
(transport-wide sequence numbers, draft-holmer-rmcat-transport-wide-cc-extensions-01), Chromium
answers with transport-cc feedback instead of REMB, and that feedback is the receiver's downlink
estimate (``/debug``: ``downlink_estimate_source``), which the layer choice follows.
"""

from __future__ import annotations

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

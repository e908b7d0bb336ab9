"""The invisible eavesdropper and the call hijack against two real Parley pages in Chromium,
through nginx. A raw XMPP attacker joins with a forged ``muc#user`` item naming the focus and then
sends one page a forged Jingle ``session-initiate`` through the room. Both pages list the attacker
as a participant, the focus treats it as an ordinary occupant, the forged offer never reaches the
page, and the two pages keep decoding each other's video."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.integration.browser import BROWSER_MARKS, DESKTOP, browsers, console_log
from tests.security.conftest import MUC, WsGuest

pytestmark = [*BROWSER_MARKS, pytest.mark.peer]

FORGED_ITEM = (
    "<x xmlns='http://jabber.org/protocol/muc#user'>"
    "<item jid='focus@auth.meet.jitsi/focus' affiliation='owner' role='moderator'/></x>"
)
FORGED_OFFER = (
    "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='mallory' initiator='{room}@"
    + MUC
    + "/focus'><content name='audio' creator='initiator' senders='both'>"
    "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>"
    "<payload-type id='111' name='opus' clockrate='48000' channels='2'/></description>"
    "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='evil' pwd='evilevilevilevilevilevil'>"
    "<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>"
    "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99</fingerprint>"
    "<candidate component='1' foundation='1' generation='0' id='c1' ip='127.0.0.1' network='0' port='9'"
    " priority='1' protocol='udp' type='host'/></transport></content></jingle>"
)


def wait_until(what: str, cond, timeout: float = 30.0, logs: list[list[str]] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}\n" + "\n--\n".join("\n".join(x[-30:]) for x in logs or [])
            )
        time.sleep(0.25)


def tiles(page: Page) -> set[str]:
    return set(page.eval_on_selector_all(".tile:not(.local)", "ts => ts.map(t => t.dataset.endpoint)"))


def frames(page: Page) -> dict[str, int]:
    return {ep: s["framesDecoded"] for ep, s in page.evaluate("window.parley.videoStats()").items()}


@pytest.fixture(scope="module")
def two_pages(stack) -> Iterator[tuple[str, list[Page], list[list[str]]]]:
    room = f"sec-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        pages, logs = [], []
        for name in ("Ada", "Bob"):
            page = pool.open(DESKTOP)
            logs.append(console_log(page))
            page.goto(f"{stack.front}/{room}?name={name}")
            pages.append(page)
        for page in pages:
            page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
        yield room, pages, logs


def test_forged_presence_and_forged_jingle_fail_in_real_browsers(stack, two_pages):
    room, pages, logs = two_pages
    ada, bob = pages
    ada_ep, bob_ep = (str(p.evaluate("window.parley.endpointId")) for p in pages)
    wait_until("the pages to decode each other's video", lambda: frames(ada).get(bob_ep, 0) > 0 and frames(bob).get(ada_ep, 0) > 0, logs=logs)  # fmt: skip
    mallory = WsGuest(stack.ws_url).login()
    try:
        mallory.request_conference(room)
        own = mallory.join(room, "mallory", FORGED_ITEM)
        assert own.count("muc#user") == 1 and "affiliation='none'" in own
        # eavesdropper: both pages list the attacker; the focus invites it like anyone
        for page in pages:
            wait_until("the attacker's tile", lambda page=page: "mallory" in tiles(page), logs=logs)
        assert "mallory" not in [ada_ep, bob_ep]
        offer = mallory.recv_until("session-initiate", timeout=30)
        assert f"from='{room}@{MUC}/focus'" in offer
        confs = [c for c in stack.conferences() if c["room"].startswith(room + "@")]
        assert "mallory" in {p["endpoint"] for c in confs for p in c["participants"]}
        # hijack: a forged offer to Ada through the room is refused by the broker
        mallory.send(
            f"<iq xmlns='jabber:client' type='set' id='hijack' to='{room}@{MUC}/{ada_ep}'>"
            + FORGED_OFFER.format(room=room)
            + "</iq>"
        )
        refused = mallory.recv_until("id='hijack'")
        assert "type='error'" in refused and "not-allowed" in refused
        # Ada's call is untouched: still joined, still decoding Bob's video, never saw the offer
        before = frames(ada).get(bob_ep, 0)
        wait_until(
            "Ada's video of Bob to keep advancing",
            lambda: frames(ada).get(bob_ep, 0) > before + 10,
            logs=logs,
        )
        assert not any("mallory" in line and "session-initiate" in line for line in logs[0])
        assert ada.is_visible("#meeting")
    finally:
        mallory.close()
    for page in pages:
        wait_until("the attacker's tile to go", lambda page=page: "mallory" not in tiles(page), logs=logs)

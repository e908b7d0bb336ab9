"""Firefox in the meeting: Debian's ``firefox-esr`` (driven over WebDriver BiDi, ``firefox.py``)
and two Chromium in one room, in a private network namespace where the host has a second address
(``netns.multi_homed``) that the bridge advertises beside 127.0.0.1: Firefox never gathers a
loopback candidate, so it reaches the bridge on the second address, and the bridge answers from
the address each check came to (one socket per advertised address).

Everyone decodes everyone; Firefox sends RID-signalled simulcast (``a=rid``/``a=simulcast``), which
the bridge identifies by the RTP stream id header extensions and forwards as plain single-SSRC
streams, and a Firefox receiver sees the layer change with what it asks the bridge for.

Firefox runs with a window on a virtual X display (``firefox.xvfb``) so that it can share its
screen: the two Chromium pages get the screen on stage at its full height while Firefox's camera
keeps flowing.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from tests.integration import netns
from tests.integration.browser import BROWSER_MARKS, DESKTOP, browsers, console_log
from tests.integration.firefox import FIREFOX_MARKS, FirefoxPage, install_driver, xvfb, xvfb_available
from tests.integration.nat_stack import MeetingStack, build_web_client, start_meeting_stack

pytestmark = [
    *BROWSER_MARKS,
    *FIREFOX_MARKS,
    pytest.mark.skipif(not netns.available(), reason="needs root and iproute2 (a network namespace)"),
    # three browsers and a stack on a loaded machine: the module's setup alone may take minutes
    pytest.mark.timeout(1200),
]


class AnyPage(Protocol):
    def evaluate(self, expr: str) -> Any: ...

    def goto(self, url: str) -> Any: ...

    def wait_for_selector(self, selector: str, timeout: float = ...) -> Any: ...


@dataclass
class Person:
    name: str
    page: AnyPage
    log: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return str(self.page.evaluate("window.parley.endpointId"))

    def received(self) -> dict[str, dict[str, Any]]:
        return dict(self.page.evaluate("window.parley.videoStats()"))

    def sent(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("window.parley.sendStats()"))

    def height_of(self, endpoint: str) -> int:
        return int(self.received().get(endpoint, {}).get("frameHeight") or 0)

    def decoding(self) -> set[str]:
        return {ep for ep, s in self.received().items() if s.get("framesDecoded", 0) > 0}


@dataclass
class Meeting:
    stack: MeetingStack
    firefox: Person
    chromium: list[Person]
    display: str | None = None  # Firefox's X display (None: headless, no screen to share)

    @property
    def people(self) -> list[Person]:
        return [self.firefox, *self.chromium]


def wait_until(what: str, cond: Any, people: list[Person], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            detail = []
            for p in people:
                try:
                    state = (
                        f"sends {p.sent()}\nreceives {p.received()}\n"
                        f"forwarded {p.page.evaluate('window.parley.forwardedSources')}\n"
                        f"asks {p.page.evaluate('window.parley.videoConstraints')}\n"
                    )
                except Exception as exc:  # the page may be what failed
                    state = f"(no stats: {exc})\n"
                detail.append(f"--- {p.name}\n{state}" + "\n".join(p.log[-30:]))
            raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(detail))
        time.sleep(0.4)


@pytest.fixture(scope="module")
def meeting() -> Iterator[Meeting]:
    # before the namespace, which has no network: the client and the driver's npm packages
    build_web_client()
    install_driver()
    with netns.multi_homed(default_route=True) as second, contextlib.ExitStack() as x:
        display = x.enter_context(xvfb()) if xvfb_available() else None
        stack = MeetingStack()
        try:
            # the bridge advertises the second address first: the one Firefox can use
            start_meeting_stack(
                "127.0.0.1", f"{second},127.0.0.1", stack=stack, simulcast=True, start_timeout=180
            )
            room = f"ff-{uuid.uuid4().hex[:8]}"
            fox = FirefoxPage(display=display)
            try:
                firefox = Person("Firefox", fox, fox.log)
                with browsers() as pool:
                    chromium = []
                    for name in ("Ada", "Bob"):
                        page = pool.open(DESKTOP)
                        log = console_log(page)
                        page.goto(f"{stack.front}/{room}?name={name}")
                        chromium.append(Person(name, page, log))
                    fox.goto(f"{stack.front}/{room}?name=Firefox")
                    people = [firefox, *chromium]
                    for p in people:
                        p.page.wait_for_selector("#meeting:not([hidden])", timeout=240_000)
                    yield Meeting(stack, firefox, chromium, display)
            finally:
                fox.close()
        finally:
            stack.stop()


def test_firefox_and_two_chromium_decode_each_other(meeting: Meeting) -> None:
    people = meeting.people
    endpoints = {p.name: p.endpoint for p in people}
    for p in people:
        others = {endpoints[o.name] for o in people if o is not p}
        wait_until(f"{p.name} to decode the others' video", lambda p=p, o=others: o <= p.decoding(), people)
    # and the video keeps coming
    for p in people:
        before = {ep: s["framesDecoded"] for ep, s in p.received().items()}
        wait_until(
            f"{p.name}'s decoded frames to advance",
            lambda p=p, b=before: all(
                p.received().get(ep, {}).get("framesDecoded", 0) > n
                for ep, n in b.items()
                if ep in endpoints.values()
            ),
            people,
        )


def sender_heights(person: Person) -> list[int]:
    return sorted(s["frameHeight"] for s in person.sent() if s["frameHeight"])


def test_firefox_sends_three_rid_layers_and_the_bridge_forwards_them_by_the_receivers_constraints(
    meeting: Meeting,
) -> None:
    firefox, (ada, bob) = meeting.firefox, meeting.chromium
    people = meeting.people
    sdp = str(firefox.page.evaluate("window.parley.localSdp()"))
    assert "a=simulcast:send q;h;f" in sdp, sdp
    assert "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in sdp, sdp
    fox = firefox.endpoint
    # three layers, but Firefox scales them down when the machine is busy and stops encoding one
    # that would be too small: at least two sizes; the limits follow what it sends
    wait_until(
        "Firefox to send layers at two sizes or more", lambda: len(set(sender_heights(firefox))) >= 2, people
    )
    assert len(firefox.sent()) == 3, firefox.sent()
    low = sender_heights(firefox)[0]
    ada.page.evaluate(f"window.parley.limitVideo({fox!r}, {low})")
    bob.page.evaluate(f"window.parley.limitVideo({fox!r}, 2160)")
    wait_until(
        "Ada to receive Firefox's low layer and Bob a higher one",
        lambda: 0 < ada.height_of(fox) <= sender_heights(firefox)[0] < bob.height_of(fox),
        people,
    )
    print("Firefox sends", firefox.sent(), "Ada receives", ada.received()[fox], "Bob", bob.received()[fox])
    # the other way round: the same receivers switch layers
    low = sender_heights(firefox)[0]
    ada.page.evaluate(f"window.parley.limitVideo({fox!r}, 2160)")
    bob.page.evaluate(f"window.parley.limitVideo({fox!r}, {low})")
    wait_until(
        "Bob to receive Firefox's low layer and Ada a higher one",
        lambda: 0 < bob.height_of(fox) <= sender_heights(firefox)[0] < ada.height_of(fox),
        people,
    )
    # each receiver got Firefox as one stream (the source's SSRC) whichever layer it was sent
    assert ada.received()[fox]["ssrc"] == bob.received()[fox]["ssrc"]
    for p in (ada, bob):
        p.page.evaluate(f"window.parley.limitVideo({fox!r}, null)")


def test_a_firefox_receiver_sees_the_layer_change_with_what_it_asks_for(meeting: Meeting) -> None:
    firefox, (ada, _bob) = meeting.firefox, meeting.chromium
    people = meeting.people
    ep = ada.endpoint
    firefox.page.evaluate(f"window.parley.limitVideo({ep!r}, 180)")
    wait_until("Firefox to receive Ada's low layer", lambda: 0 < firefox.height_of(ep) <= 180, people)
    low = firefox.height_of(ep)
    firefox.page.evaluate(f"window.parley.limitVideo({ep!r}, 2160)")
    wait_until(
        "Firefox to receive a higher layer of Ada", lambda: firefox.height_of(ep) > max(low, 180), people
    )
    # and back down, decoding all along
    firefox.page.evaluate(f"window.parley.limitVideo({ep!r}, 180)")
    wait_until("Firefox to receive Ada's low layer again", lambda: 0 < firefox.height_of(ep) <= 180, people)
    before = firefox.received()[ep]["framesDecoded"]
    wait_until(
        "Firefox to decode more of Ada", lambda: firefox.received()[ep]["framesDecoded"] > before, people
    )


def test_firefox_shares_its_screen_on_stage_at_full_height_while_its_camera_flows(meeting: Meeting) -> None:
    if meeting.display is None:
        pytest.skip("needs Xvfb (apt xvfb): headless Firefox has no screen to share")
    firefox, (ada, bob) = meeting.firefox, meeting.chromium
    people = meeting.people
    fox = firefox.endpoint
    screen, source = f"{fox}#screen", f"{fox}-v1"  # beside its camera: the second video source
    # Firefox lets a page capture the screen only from a user gesture: the Share screen button
    fox_page = meeting.firefox.page
    assert isinstance(fox_page, FirefoxPage)
    fox_page.click("#screen-button")
    wait_until(
        "Firefox to share its screen", lambda: fox_page.evaluate("window.parley.sharingScreen"), people
    )
    height = int(firefox.page.evaluate("window.parley.screenSettings().height"))
    assert height == 720, height  # the whole virtual display
    for viewer in (ada, bob):
        wait_until(
            f"{viewer.name} to decode Firefox's screen at {height} lines",
            lambda v=viewer: v.height_of(screen) == height and v.received()[screen]["framesDecoded"] > 0,
            people,
            timeout=240,
        )
        wait_until(
            f"{viewer.name} to put the screen on stage and ask for it there",
            lambda v=viewer: (
                v.page.evaluate("window.parley.stage") == screen
                and (v.page.evaluate("window.parley.videoConstraints") or {}).get("onStageSources")
                == [source]
            ),
            people,
        )
        # the bridge forwards it under the name the page gave it
        wait_until(
            f"the bridge to tell {viewer.name} it forwards {source}",
            lambda v=viewer: source in (v.page.evaluate("window.parley.forwardedSources") or []),
            people,
        )
    # Firefox's camera still flows, and still as RID simulcast
    assert "a=simulcast:send q;h;f" in str(firefox.page.evaluate("window.parley.localSdp()"))
    for viewer in (ada, bob):
        before = viewer.received()[fox]["framesDecoded"]
        before_screen = viewer.received()[screen]["framesDecoded"]
        wait_until(
            f"{viewer.name} to keep decoding Firefox's camera and screen",
            lambda v=viewer, b=before, s=before_screen: (
                v.received()[fox]["framesDecoded"] > b + 5 and v.received()[screen]["framesDecoded"] > s
            ),
            people,
        )
    print("Firefox's screen at Ada", ada.received()[screen], "camera", ada.received()[fox])
    firefox.page.evaluate("window.parley.stopScreenShare()")
    for viewer in (ada, bob):
        wait_until(
            f"{viewer.name} to take the screen off stage",
            lambda v=viewer: v.page.evaluate("window.parley.stage") != screen,
            people,
        )

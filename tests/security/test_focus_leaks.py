"""Leaks (docs/security.md, "Conferences do not leak"), against the stack the launcher starts, through nginx: conferences a
guest requested and never joined, or left, are ended (Colibri conference expired on the bridge,
MUC room destroyed); conference requests are rate-limited per session with a clear error.

The focus runs with ``JICOFO_CONFERENCE_EMPTY_TIMEOUT=3``, ``…_REQUEST_BURST=5`` and
``…_REQUESTS_PER_MINUTE=6`` so the test does not wait a minute.
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.browser import LauncherStack
from tests.security.test_browser_hijack import XmppGuest
from tests.security.test_focus_hostile_stanzas import Stack

pytestmark = [pytest.mark.peer]

FOCUS = "focus.meet.jitsi"
MUC = "muc.meet.jitsi"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JICOFO_CONFERENCE_EMPTY_TIMEOUT", "3")
        env.setenv("JICOFO_CONFERENCE_REQUEST_BURST", "5")
        env.setenv("JICOFO_CONFERENCE_REQUESTS_PER_MINUTE", "6")
        launcher = LauncherStack(tmp_path_factory.mktemp("stack") / "run", bridges=1).start()
    try:
        s = Stack(launcher)
        deadline = time.monotonic() + 30
        while not (s.bridges() and s.bridge_xmpp()["joined"]):
            assert time.monotonic() < deadline, "the bridge never joined the brewery"
            time.sleep(0.3)
        yield s
    finally:
        launcher.stop()


def request(guest: XmppGuest, room: str, ident: str) -> ET.Element:
    guest.send(
        f"<iq xmlns='jabber:client' to='{FOCUS}' type='set' id='{ident}'>"
        f"<conference xmlns='http://jitsi.org/protocol/focus' room='{room}@{MUC}' machine-uid='m'/></iq>"
    )
    return guest.iq_answer(ident, timeout=15)


def room_exists(guest: XmppGuest, room: str) -> bool:
    ident = f"disco-{uuid.uuid4().hex[:6]}"
    guest.send(
        f"<iq xmlns='jabber:client' to='{room}@{MUC}' type='get' id='{ident}'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    return guest.iq_answer(ident).get("type") == "result"


def focus_rooms(stack: Stack) -> set[str]:
    return {c["room"] for c in httpx.get(f"{stack.focus}/conferences", timeout=5).json()}


def bridge_conferences(stack: Stack) -> set[str]:
    return {c["id"] for c in httpx.get(f"{stack.bridge}/colibri/conferences", timeout=5).json()}


def wait_for(what: str, cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_rooms_requested_and_never_joined_are_ended(stack: Stack) -> None:
    guest = XmppGuest(stack.front)
    try:
        rooms = [f"never-{uuid.uuid4().hex[:8]}" for _ in range(4)]
        for i, room in enumerate(rooms):
            assert request(guest, room, f"r{i}").get("type") == "result"
        assert {f"{r}@{MUC}" for r in rooms} <= focus_rooms(stack)
        assert all(room_exists(guest, r) for r in rooms)
        wait_for(
            "the focus to end the empty conferences",
            lambda: not {f"{r}@{MUC}" for r in rooms} & focus_rooms(stack),
        )
        assert not any(room_exists(guest, r) for r in rooms), "a MUC room outlived its conference"
        assert httpx.get(f"{stack.focus}/debug", timeout=5).json()["conferences_expired"] >= 4
    finally:
        guest.close()


def test_a_conference_everyone_left_is_expired_on_the_bridge(stack: Stack) -> None:
    guest = XmppGuest(stack.front)
    try:
        room = f"left-{uuid.uuid4().hex[:8]}"
        before = bridge_conferences(stack)
        assert request(guest, room, "c1").get("type") == "result"
        guest.send(
            f"<presence xmlns='jabber:client' to='{room}@{MUC}/{uuid.uuid4().hex[:8]}'>"
            "<x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        guest.recv_until("session-initiate", timeout=20)  # the focus allocated us channels
        wait_for("a conference on the bridge", lambda: bridge_conferences(stack) - before)
        created = bridge_conferences(stack) - before
        guest.close()  # the guest just goes away
        wait_for("the conference ended on the focus", lambda: f"{room}@{MUC}" not in focus_rooms(stack))
        wait_for(
            "the Colibri conference expired", lambda: not created & bridge_conferences(stack), timeout=10
        )
        other = XmppGuest(stack.front)
        try:
            assert not room_exists(other, room)
        finally:
            other.close()
    finally:
        guest.close()


def test_conference_requests_are_rate_limited_per_session(stack: Stack) -> None:
    greedy, polite = XmppGuest(stack.front), XmppGuest(stack.front)
    try:
        answers = [request(greedy, f"flood-{uuid.uuid4().hex[:8]}", f"f{i}") for i in range(9)]
        kinds = [a.get("type") for a in answers]
        assert kinds[:5] == ["result"] * 5, kinds
        refused = answers[5:]
        assert all(a.get("type") == "error" for a in refused), kinds
        for a in refused:
            error = a.find("{jabber:client}error")
            assert error is not None and error.get("type") == "wait"
            assert error.find(f"{{{STANZAS}}}resource-constraint") is not None
            assert "too many conference requests" in (error.findtext(f"{{{STANZAS}}}text") or "")
        # the refused requests created nothing, and another session is not affected
        assert len([r for r in focus_rooms(stack) if r.startswith("flood-")]) <= 5
        assert request(polite, f"polite-{uuid.uuid4().hex[:8]}", "p1").get("type") == "result"
        assert httpx.get(f"{stack.focus}/debug", timeout=5).json()["conference_requests_refused"] >= 4
        # and the flood's rooms go away like any empty conference
        wait_for(
            "the flood's rooms ended", lambda: not [r for r in focus_rooms(stack) if r.startswith("flood-")]
        )
    finally:
        greedy.close()
        polite.close()

"""Guests attacking a meeting through the MUC, from outside (``/xmpp-websocket`` through nginx):
the invisible eavesdropper (a forged ``muc#user`` item), the call hijack (a forged Jingle offer
through the room), real-JID harvesting, and stanzas aimed straight at the service accounts.
Each attack fails, and the same clients' well-behaved requests keep working."""

from __future__ import annotations

import re
import time
import uuid

import httpx

from tests.security.conftest import MUC, WsGuest, tracebacks

FORGED_ITEM = (
    "<x xmlns='http://jabber.org/protocol/muc#user'>"
    "<item jid='focus@auth.meet.jitsi/focus' affiliation='owner' role='moderator'/></x>"
)
JINGLE = (
    "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='forged' initiator='x'>"
    "<content name='audio' creator='initiator'/></jingle>"
)


def presence_of(frames: list[str], nick: str) -> str:
    return next(f for f in frames if f"/{nick}'" in f and f.startswith("<presence"))


def wait_participants(stack, room: str, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        confs = [c for c in stack.conferences() if c["room"].startswith(room + "@")]
        eps = [p["endpoint"] for c in confs for p in c["participants"]]
        if len(eps) >= count or time.monotonic() > deadline:
            return eps
        time.sleep(0.2)


def test_forged_muc_item_is_replaced_by_the_servers_and_the_focus_invites_an_ordinary_occupant(stack):
    room = f"sec-{uuid.uuid4().hex[:8]}"
    alice, bob, mallory = (WsGuest(stack.ws_url).login() for _ in range(3))
    try:
        alice.request_conference(room)
        alice.join(room, "alice")  # the first participant: made moderator by the focus, as Jicofo does
        bob.request_conference(room)
        bob.join(room, "bob")  # an ordinary participant
        mallory.request_conference(room)
        own = mallory.join(room, "mallory", FORGED_ITEM)
        # the attacker's own presence: one muc#user element, the server's, first
        assert own.count("http://jabber.org/protocol/muc#user") == 1
        assert "affiliation='none'" in own and "role='participant'" in own
        seen = alice.recv_until(f"{room}@{MUC}/mallory'")
        assert seen.count("muc#user") == 1 and "focus@auth" not in seen
        seen = bob.recv_until(f"{room}@{MUC}/mallory'")
        assert seen.count("muc#user") == 1 and "focus@auth" not in seen
        assert "jid=" not in seen  # semi-anonymous: only moderators see real JIDs (whois moderators)
        # the focus sees an ordinary occupant and invites it like anyone else
        offer = mallory.recv_until("session-initiate", timeout=30)
        assert f"from='{room}@{MUC}/focus'" in offer
        assert "mallory" in wait_participants(stack, room, 3)
    finally:
        alice.close()
        bob.close()
        mallory.close()


def test_a_guest_cannot_send_iqs_to_another_occupant_but_the_focus_still_can(stack):
    room = f"sec-{uuid.uuid4().hex[:8]}"
    alice, mallory = WsGuest(stack.ws_url).login(), WsGuest(stack.ws_url).login()
    try:
        alice.request_conference(room)
        alice.join(room, "alice")
        alice.recv_until("session-initiate", timeout=30)  # alice's real offer, from the focus
        mallory.request_conference(room)
        mallory.join(room, "mallory")
        mallory.send(
            f"<iq xmlns='jabber:client' type='set' id='hijack' to='{room}@{MUC}/alice'>{JINGLE}</iq>"
        )
        refused = mallory.recv_until("id='hijack'")
        assert "type='error'" in refused and "not-allowed" in refused
        # alice never sees the forged offer; she still talks to the focus through the room
        alice.ping("alice-after")
        assert not any("forged" in f for f in alice.seen)
        alice.send(
            f"<iq xmlns='jabber:client' type='get' id='to-focus' to='{room}@{MUC}/focus'>"
            "<ping xmlns='urn:xmpp:ping'/></iq>"
        )
        assert re.search(r"type='(result|error)'", alice.recv_until("id='to-focus'"))
    finally:
        alice.close()
        mallory.close()


def test_guests_cannot_reach_service_accounts_or_the_brewery(stack):
    mallory = WsGuest(stack.ws_url).login()
    deep = "<a>" * 20 + "</a>" * 20
    try:
        bridges_before = httpx.get(f"{stack.focus_http}/bridges", timeout=5).json()
        for i, target in enumerate(
            ("focus@auth.meet.jitsi/focus", "focus@auth.meet.jitsi", "jvb@auth.meet.jitsi/jvb1",
             "jvbbrewery@internal-muc.meet.jitsi", "jvbbrewery@internal-muc.meet.jitsi/jvb1")
        ):  # fmt: skip
            mallory.send(
                f"<iq xmlns='jabber:client' type='set' id='svc{i}' to='{target}'><query xmlns='urn:x'/></iq>"
            )
            reply = mallory.recv_until(f"id='svc{i}'")
            assert "type='error'" in reply and "service-unavailable" in reply, reply
        mallory.send(
            f"<message xmlns='jabber:client' id='m1' to='focus@auth.meet.jitsi/focus'><body>x</body>{deep}</message>"
        )
        assert "service-unavailable" in mallory.recv_until("id='m1'")
        mallory.ping("still-here")
        # the services never saw any of it: same bridges, focus healthy
        assert httpx.get(f"{stack.focus_http}/about/health", timeout=5).status_code == 200
        states = lambda bs: [(b["id"], b["state"]) for b in bs]  # noqa: E731
        assert states(httpx.get(f"{stack.focus_http}/bridges", timeout=5).json()) == states(bridges_before)
    finally:
        mallory.close()


def test_deep_stanza_to_the_focus_is_a_stream_error_for_the_sender_only(stack):
    before = tracebacks(stack.log())
    bystander = WsGuest(stack.ws_url).login()
    try:
        for _ in range(10):
            mallory = WsGuest(stack.ws_url).login()
            mallory.send(
                f"<iq xmlns='jabber:client' type='get' id='deep' to='focus.meet.jitsi'>{'<a>' * 400}"
                f"{'</a>' * 400}</iq>"
            )
            err = mallory.recv_until("policy-violation")
            assert "policy-violation" in err
            assert mallory.closed_by_server()
            mallory.close()
        bystander.ping("bystander")
        assert httpx.get(f"{stack.focus_http}/about/health", timeout=5).status_code == 200
        bridges = httpx.get(f"{stack.focus_http}/bridges", timeout=5).json()
        assert [b["state"] for b in bridges] == ["operational"]  # the bridge was never knocked off
        assert tracebacks(stack.log()) == before
    finally:
        bystander.close()

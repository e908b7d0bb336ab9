"""Amplification and hoarding through the public paths (nginx in front of the running stack):

* a guest that floods its room with presence updates makes the broker send each occupant a
  bounded number of them (a burst, then a steady trickle), the flood coalesced into its latest
  state, which every occupant still gets;
* one client address cannot hold more than ``bosh.max-sessions-per-address`` BOSH sessions
  (a forged ``X-Forwarded-For`` changes nothing), and a session that ends frees its place.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx

from tests.security.conftest import WsGuest, tracebacks

BOSH = "http://jabber.org/protocol/httpbind"
MUC = "muc.meet.jitsi"
PRESENCE_BURST = 10  # services/xmpp/reference.conf: limits.presence-burst
PRESENCE_INTERVAL = 0.5  # limits.presence-interval
BOSH_CAP = 16  # bosh.max-sessions-per-address


def presences_from(guest: WsGuest, nick: str, quiet: float = 3.0) -> list[str]:
    """Every presence from ``nick`` the guest receives until ``quiet`` seconds pass without one."""
    out = [f for f in guest.seen if f.startswith("<presence") and f"/{nick}'" in f]
    guest.seen = [f for f in guest.seen if f not in out]
    while True:
        try:
            frame = guest.ws.recv(timeout=quiet)
        except TimeoutError:
            return out
        text = frame if isinstance(frame, str) else frame.decode(errors="replace")
        if text.startswith("<presence") and f"/{nick}'" in text:
            out.append(text)


def test_a_presence_flood_reaches_the_room_coalesced_and_the_last_state_wins(stack):
    before = tracebacks(stack.log())
    room = f"amp-{uuid.uuid4().hex[:8]}"
    attacker, watchers = WsGuest(stack.ws_url).login(), [WsGuest(stack.ws_url).login() for _ in range(3)]
    try:
        attacker.request_conference(room)
        attacker.join(room, "flood")
        for i, w in enumerate(watchers):
            w.join(room, f"watch{i}")
        presences_from(watchers[0], "flood", quiet=1.0)
        flood = 400
        started = time.monotonic()
        for n in range(flood):
            attacker.send(
                f"<presence xmlns='jabber:client' to='{room}@{MUC}/flood'><status>state-{n}</status></presence>"
            )
        attacker.ping("after-flood")  # the broker has taken every update
        elapsed = time.monotonic() - started
        for w in watchers:
            got = presences_from(w, "flood")
            allowed = PRESENCE_BURST + (elapsed + 1.0) / PRESENCE_INTERVAL + 2
            assert 1 <= len(got) <= allowed, (len(got), allowed)
            assert f"state-{flood - 1}" in got[-1]  # the last state wins
        # the room is still usable: a watcher's own update goes out
        watchers[1].send(f"<presence xmlns='jabber:client' to='{room}@{MUC}/watch1'><status>hi</status></presence>")
        assert "hi" in watchers[2].recv_until(re.compile(r"/watch1'.*<status>hi"), timeout=10)
    finally:
        for g in (attacker, *watchers):
            g.close()
    assert tracebacks(stack.log()) == before


def create(front: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = (
        f"<body xmlns='{BOSH}' rid='100' to='meet.jitsi' wait='5' hold='1' ver='1.6' "
        "xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
    )
    return httpx.post(f"{front}/http-bind", content=body, headers=headers or {}, timeout=20)


def terminate(front: str, sid: str) -> None:
    body = f"<body xmlns='{BOSH}' rid='101' sid='{sid}' type='terminate'/>"
    httpx.post(f"{front}/http-bind", content=body, timeout=20)


def test_one_address_cannot_hoard_bosh_sessions(stack):
    before = tracebacks(stack.log())
    sids: list[str] = []
    refused = None
    try:
        # other tests may hold a few sessions from this address: the cap comes within BOSH_CAP tries
        for i in range(BOSH_CAP + 1):
            forged = {"X-Forwarded-For": f"198.51.100.{i}"}  # believed from nginx only, never from a client
            r = create(stack.front, forged)
            assert r.status_code == 200, r.text
            match = re.search(r"sid='([^']+)'", r.text)
            if match is None:
                refused = r.text
                break
            sids.append(match.group(1))
        assert refused is not None, f"{len(sids)} sessions from one address"
        assert "type='terminate'" in refused and "policy-violation" in refused
        # a session that ends frees its place for the next one
        terminate(stack.front, sids.pop())
        r = create(stack.front)
        match = re.search(r"sid='([^']+)'", r.text)
        assert match is not None, r.text
        sids.append(match.group(1))
        # WebSocket guests from the same address are not affected
        WsGuest(stack.ws_url).login().close()
    finally:
        for sid in sids:
            terminate(stack.front, sid)
    assert create(stack.front).status_code == 200
    assert tracebacks(stack.log()) == before

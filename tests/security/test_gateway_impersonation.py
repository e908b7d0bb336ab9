"""A guest claiming to be the SIP gateway gets nothing special from the focus.

The focus gives the bridge's mix-minus (a ``"rtp-level-relay-type": "mixer"`` audio channel, the
one mixed stream in the offer) only to an occupant whose real JID, as the broker stamps it in
the room's ``muc#user`` item, is the gateway's account ``jigasi@auth.<domain>``. A client's own
``muc#user`` payload is stripped by the broker (``services/xmpp/tests/test_hostile.py``); here the
focus is given every other claim a guest can make: the gateway's nick, the account's name on the
guest host, a look-alike host, the name as a resource."""

from __future__ import annotations

import pytest

from services.focus.focus import is_gateway
from services.focus.offer import MIX_SOURCE_NAME
from services.focus.tests.test_focus import ROOM, bridges, settle, setup  # noqa: F401 (fixture)

GATEWAY = "jigasi@auth.meet.jitsi"

FORGED = [
    None,
    "",
    "jigasi@meet.jitsi/x",  # the account's name on the guest (client) host
    "jigasi@auth.meet.jitsi.evil/x",  # a look-alike host
    "x@auth.meet.jitsi/jigasi",  # the name as a resource
    "jigasi@guest.meet.jitsi/x",
    "auth.meet.jitsi/jigasi",
    f"{ROOM}/jigasi",  # the occupant JID itself
]


@pytest.mark.parametrize("real_jid", FORGED)
def test_only_the_gateway_account_is_the_gateway(real_jid: str | None) -> None:
    assert not is_gateway(real_jid, GATEWAY)


def test_the_gateway_account_from_any_resource_is() -> None:
    assert is_gateway("jigasi@auth.meet.jitsi/sip-1a2b", GATEWAY)
    assert is_gateway("JIGASI@Auth.Meet.Jitsi/x", GATEWAY)  # JIDs compare case-insensitively here


async def test_a_guest_named_like_the_gateway_gets_everyones_sources_and_a_translator_channel(setup) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1)
    await focus.conference_request(ROOM, "a@meet.jitsi/x")
    for nick, real in (("jigasi", "jigasi@meet.jitsi/x"), ("sip", "x@auth.meet.jitsi/jigasi")):
        signaling.present.add(nick)
        focus.occupant_joined(ROOM, nick, f"{ROOM}/{nick}", real)
        await settle(focus)
    conf = focus.conferences[ROOM]
    assert not any(p.mixed_audio for p in conf.participants.values())
    # both got an ordinary offer: translator audio channels, and no mixed stream among its sources
    assert sorted(a for a in signaling.actions() if a[1] == "session-initiate") == [
        ("jigasi", "session-initiate"), ("sip", "session-initiate")]
    relay = [ch.rtp_level_relay_type for body in fake.bodies for c in body.contents for ch in c.channels or ()]
    assert relay and "mixer" not in relay, relay
    offered = [s.name for _to, m in signaling.sent if m.action == "session-initiate"
               for sources in m.sources().values() for s in sources]
    assert MIX_SOURCE_NAME not in offered, offered
    await focus.close()


async def test_the_gateway_account_is_recognised(setup) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    focus, _signaling, _fake = setup
    await focus.conference_request(ROOM, "a@meet.jitsi/x")
    focus.occupant_joined(ROOM, "caller", f"{ROOM}/caller", f"{GATEWAY}/sip-1")
    assert focus.conferences[ROOM].participants["caller"].mixed_audio
    await focus.close()

"""Moderators and mutes against the real broker, focus and bridge (no authentication: the first
participant moderates). The mute is checked at the RTP level: the muted participant's client
ignores it and keeps sending, and the others decode none of its audio any more."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.test_focus_stack import MUC_DOMAIN, Stack, bridge_missing

pytestmark = pytest.mark.skipif(bridge_missing() is not None, reason=bridge_missing() or "")

NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_AUDIO = "http://jitsi.org/jitmeet/audio"


@pytest.fixture(scope="module")
def stack():
    with Stack(bridges=1) as s:
        yield s


class Watcher:
    """Roles and removals seen in a participant's room presences, and mute IQs it was sent."""

    def __init__(self, p: JingleParticipant) -> None:
        self.roles: dict[str, str] = {}
        self.codes: dict[str, set[str]] = {}
        self.mutes: list[ET.Element] = []
        p.register_handler(Callback("roles", MatchXPath("{jabber:client}presence"), self._presence))  # type: ignore[arg-type]
        p.register_handler(
            Callback("mutes", MatchXPath(f"{{jabber:client}}iq/{{{NS_AUDIO}}}mute"), self._mute)  # type: ignore[arg-type]
        )

    def _presence(self, stanza: slixmpp.Presence) -> None:
        nick = stanza["from"].resource
        x = stanza.xml.find(f"{{{NS_MUC_USER}}}x")
        item = x.find(f"{{{NS_MUC_USER}}}item") if x is not None else None
        if item is None:
            return
        self.roles[nick] = "none" if stanza.xml.get("type") == "unavailable" else item.get("role", "")
        self.codes[nick] = {s.get("code", "") for s in x.findall(f"{{{NS_MUC_USER}}}status")}  # type: ignore[union-attr]

    def _mute(self, iq: slixmpp.Iq) -> None:
        self.mutes.append(iq.xml)
        # a malicious client: it acknowledges and keeps sending


async def people(stack: Stack, room: str, *nicks: str, media: bool = True) -> list[JingleParticipant]:
    out = []
    for i, nick in enumerate(nicks):
        p = stack.participant(nick, rgb=(60 * i, 90, 200 - 60 * i), tone=300.0 + 200 * i, media=media)
        p.watch = Watcher(p)  # type: ignore[attr-defined]
        await p.start()
        await p.join(room)
        out.append(p)
    return out


def roles(p: JingleParticipant) -> dict[str, str]:
    return p.watch.roles  # type: ignore[attr-defined, no-any-return]


async def mute(actor: JingleParticipant, target: str, on: bool = True) -> None:
    iq = actor.make_iq_set(ito=actor.focus_jid)
    el = ET.Element(f"{{{NS_AUDIO}}}mute", {"jid": f"{actor.room}/{target}"})
    el.text = "true" if on else "false"
    iq.append(el)
    await iq.send(timeout=10)


async def stop(ps: list[JingleParticipant]) -> None:
    await asyncio.gather(*(p.stop() for p in ps), return_exceptions=True)


async def test_moderator_mute_is_enforced_by_the_bridge(stack: Stack) -> None:
    room = f"mutes@{MUC_DOMAIN}"
    ps = await people(stack, room, "alice", "bob", "carol")
    alice, bob, carol = ps
    try:
        assert await wait_until(lambda: roles(carol).get("alice") == "moderator", 15), stack.logs()
        assert roles(carol).get("bob") == "participant"
        ok = await wait_until(lambda: carol.frames_from("bob")[1] > 20 and alice.frames_from("bob")[1] > 20, 30)
        assert ok, f"no audio from bob: {carol.received} {stack.logs()}"
        # a participant may not mute another: forbidden
        with pytest.raises(IqError) as err:
            await mute(carol, "bob")
        assert err.value.iq["error"]["condition"] == "forbidden"
        await mute(alice, "bob")
        assert await wait_until(lambda: bob.watch.mutes, 10)  # type: ignore[attr-defined]
        assert bob.watch.mutes[0].find(f"{{{NS_AUDIO}}}mute").get("actor") == f"{room}/alice"  # type: ignore[attr-defined, union-attr]
        await asyncio.sleep(1.5)  # what was in flight
        before = carol.frames_from("bob"), alice.frames_from("bob")
        await asyncio.sleep(3)
        after = carol.frames_from("bob"), alice.frames_from("bob")
        # bob's client still sends (it ignored the mute): nobody decodes its audio, video flows
        assert after[0][1] == before[0][1] and after[1][1] == before[1][1], (before, after)
        assert after[0][0] > before[0][0]
        # a moderator cannot unmute someone else; bob may unmute himself
        with pytest.raises(IqError) as err:
            await mute(alice, "bob", on=False)
        assert err.value.iq["error"]["condition"] == "not-allowed"
        await mute(bob, "bob", on=False)
        base = carol.frames_from("bob")[1]
        assert await wait_until(lambda: carol.frames_from("bob")[1] > base + 10, 20)
    finally:
        await stop(ps)


async def test_kick_and_moderator_handover(stack: Stack) -> None:
    room = f"handover@{MUC_DOMAIN}"
    ps = await people(stack, room, "ann", "ben", "cat", media=False)
    ann, _ben, cat = ps
    try:
        assert await wait_until(lambda: roles(cat).get("ann") == "moderator", 15), stack.logs()
        # a participant cannot kick: the MUC refuses (XEP-0045 moderator privileges)
        iq = cat.make_iq_set(ito=room)
        query = ET.Element(f"{{{NS_MUC_ADMIN}}}query")
        ET.SubElement(query, f"{{{NS_MUC_ADMIN}}}item", {"nick": "ben", "role": "none"})
        iq.append(query)
        with pytest.raises(IqError) as err:
            await iq.send(timeout=10)
        assert err.value.iq["error"]["condition"] == "forbidden"
        # nor can anyone kick the focus
        iq = ann.make_iq_set(ito=room)
        query = ET.Element(f"{{{NS_MUC_ADMIN}}}query")
        ET.SubElement(query, f"{{{NS_MUC_ADMIN}}}item", {"nick": "focus", "role": "none"})
        iq.append(query)
        with pytest.raises(IqError):
            await iq.send(timeout=10)
        # the moderator kicks ben: everyone sees him leave with 307
        iq = ann.make_iq_set(ito=room)
        query = ET.Element(f"{{{NS_MUC_ADMIN}}}query")
        ET.SubElement(query, f"{{{NS_MUC_ADMIN}}}item", {"nick": "ben", "role": "none"})
        iq.append(query)
        await iq.send(timeout=10)
        assert await wait_until(lambda: roles(cat).get("ben") == "none", 10)
        assert "307" in cat.watch.codes["ben"]  # type: ignore[attr-defined]
        assert await wait_until(lambda: "ben" not in stack.participants_of(room), 10)
        # the moderator leaves: the focus makes the longest-present participant moderator
        await ann.leave()
        assert await wait_until(lambda: roles(cat).get("cat") == "moderator", 15), stack.logs()
    finally:
        await stop(ps)

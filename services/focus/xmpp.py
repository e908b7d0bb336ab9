"""The focus's XMPP session (slixmpp): conference IQs, MUC rooms as owner, brewery, Jingle.

A thin adapter: stanzas in are decoded with the shared wire-format modules and handed to a
:class:`FocusEvents` implementation (the orchestrator); the orchestrator calls back
:meth:`FocusXmpp.ensure_room`, :meth:`FocusXmpp.send_jingle` and :meth:`FocusXmpp.leave_room`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import xml.etree.ElementTree as ET
from typing import Protocol

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common import brewery, jingle
from services.common.brewery import BridgeStats

from .config import FocusSettings

log = logging.getLogger("focus.xmpp")

NS_CLIENT = "jabber:client"
NS_FOCUS = "http://jitsi.org/protocol/focus"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

RECONNECT_DELAY = 1.0

ROOM_CONFIG = {
    "FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig",
    "muc#roomconfig_whois": "anyone",  # non-anonymous: the focus sees real JIDs
    "muc#roomconfig_persistentroom": "0",
    "muc#roomconfig_publicroom": "0",
}


class FocusEvents(Protocol):
    async def conference_request(self, room: str, requester: str) -> None: ...
    def occupant_joined(self, room: str, nick: str, occupant_jid: str, real_jid: str | None) -> None: ...
    def occupant_left(self, room: str, nick: str) -> None: ...
    def bridge_presence(self, bridge_id: str, stats: BridgeStats) -> None: ...
    def bridge_left(self, bridge_id: str) -> None: ...
    def jingle_received(self, sender: str, message: jingle.Jingle) -> None: ...
    def xmpp_ready(self) -> None: ...


class RoomError(Exception):
    pass


def conference_properties(created_ms: int) -> ET.Element:
    """The focus's ``<conference-properties xmlns='http://jitsi.org/protocol/focus'>`` in its MUC
    presence, as Jicofo sends it: clients read ``support-terminate-restart`` (they may then answer
    an ICE failure with a ``session-terminate`` asking for a new offer) and the room's creation time."""
    element = ET.Element(f"{{{NS_FOCUS}}}conference-properties")
    for key, value in (("support-terminate-restart", "true"), ("created-ms", str(created_ms))):
        ET.SubElement(element, f"{{{NS_FOCUS}}}property", {"key": key, "value": value})
    return element


def _status_codes(presence: ET.Element) -> set[int]:
    codes: set[int] = set()
    x = presence.find(f"{{{NS_MUC_USER}}}x")
    if x is not None:
        for status in x.findall(f"{{{NS_MUC_USER}}}status"):
            with contextlib.suppress(TypeError, ValueError):
                codes.add(int(status.get("code")))  # type: ignore[arg-type]
    return codes


def _real_jid(presence: ET.Element) -> str | None:
    item = presence.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
    return item.get("jid") if item is not None else None


class FocusXmpp(slixmpp.ClientXMPP):
    def __init__(self, settings: FocusSettings, events: FocusEvents) -> None:
        x = settings.xmpp
        super().__init__(x.jid, x.password)
        self.settings = settings
        self.events = events
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self["feature_mechanisms"].unencrypted_scram = True
        self["feature_mechanisms"].unencrypted_plain = True
        self.ready = asyncio.Event()
        self._pending: set[asyncio.Future[None]] = set()
        self._closing = False
        self._rooms: dict[str, asyncio.Task[set[str]]] = {}
        self._joins: dict[str, tuple[asyncio.Future[set[int]], set[str]]] = {}
        self.add_event_handler("session_start", self._session_start)
        self.add_event_handler("disconnected", self._disconnected)
        self.register_handler(
            Callback(
                "focus conference",
                MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_FOCUS}}}conference"),
                self._conference_iq,  # type: ignore[arg-type]
            )
        )
        self.register_handler(
            Callback("jingle", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{jingle.NS_JINGLE}}}jingle"), self._jingle_iq)  # type: ignore[arg-type]
        )
        self.register_handler(
            Callback("muc presence", MatchXPath(f"{{{NS_CLIENT}}}presence"), self._presence)  # type: ignore[arg-type]
        )

    # ---------------------------------------------------------------- session
    async def start(self) -> None:
        x = self.settings.xmpp
        self.connect(x.server, x.port)

    async def _session_start(self, _event: object) -> None:
        self.send_presence()
        rooms = list(self._rooms)
        self._rooms.clear()
        await self._join(self.settings.brewery_jid)
        for room in rooms:  # a reconnect: be in our rooms again
            with contextlib.suppress(RoomError, TimeoutError):
                await self.ensure_room(room)
        self.ready.set()
        log.info("xmpp session started jid=%s", self.boundjid)
        self.events.xmpp_ready()

    def _disconnected(self, _event: object) -> None:
        self.ready.clear()
        for fut, _ in self._joins.values():
            if not fut.done():
                fut.set_exception(RoomError("disconnected"))
        self._joins.clear()
        if self._closing:
            return
        log.warning("xmpp disconnected; reconnecting in %.0f s", RECONNECT_DELAY)
        self.loop.call_later(RECONNECT_DELAY, self._reconnect)

    def _reconnect(self) -> None:
        if not self._closing:
            x = self.settings.xmpp
            self.connect(x.server, x.port)

    def close(self) -> None:
        self._closing = True
        self.disconnect()

    # ---------------------------------------------------------------- rooms
    async def ensure_room(self, room: str) -> set[str]:
        """Be in ``room`` as its owner (create and configure it if new). Returns the nicks present
        when we joined."""
        task = self._rooms.get(room)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = asyncio.ensure_future(self._join(room))
            self._rooms[room] = task
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._rooms.get(room) is task:
                del self._rooms[room]
            raise

    async def _join(self, room: str) -> set[str]:
        nick = self.settings.xmpp.nick
        fut: asyncio.Future[set[int]] = asyncio.get_running_loop().create_future()
        present: set[str] = set()
        self._joins[room] = (fut, present)
        presence = self.make_presence(pto=f"{room}/{nick}")
        presence.append(ET.Element(f"{{{NS_MUC}}}x"))
        presence.append(conference_properties(created_ms=int(time.time() * 1000)))
        presence.send()
        try:
            codes = await asyncio.wait_for(fut, self.settings.xmpp.iq_timeout)
        finally:
            self._joins.pop(room, None)
        if 201 in codes:  # we created it: it stays locked until configured
            await self._configure(room)
            log.info("room created room=%s", room)
        return present

    async def _configure(self, room: str) -> None:
        iq = self.make_iq_set(ito=room)
        query = ET.Element(f"{{{NS_MUC_OWNER}}}query")
        form = ET.SubElement(query, f"{{{NS_DATA}}}x", {"type": "submit"})
        for var, value in ROOM_CONFIG.items():
            field = ET.SubElement(form, f"{{{NS_DATA}}}field", {"var": var})
            ET.SubElement(field, f"{{{NS_DATA}}}value").text = value
        iq.append(query)
        try:
            await iq.send(timeout=self.settings.xmpp.iq_timeout)
        except (IqError, IqTimeout) as exc:
            raise RoomError(f"configuring {room} failed: {exc}") from exc

    def leave_room(self, room: str) -> None:
        if self._rooms.pop(room, None) is not None:
            self.make_presence(pto=f"{room}/{self.settings.xmpp.nick}", ptype="unavailable").send()
            log.info("left room=%s", room)

    def _presence(self, stanza: slixmpp.Presence) -> None:
        el = stanza.xml
        sender = stanza["from"]
        room, nick = sender.bare, sender.resource
        if not nick:
            return
        ptype = el.get("type")
        if room == self.settings.brewery_jid:
            self._brewery_presence(nick, ptype, el)
            return
        join = self._joins.get(room)
        if nick == self.settings.xmpp.nick and (110 in _status_codes(el) or ptype == "error"):
            if join is not None and not join[0].done():
                if ptype == "error":
                    join[0].set_exception(
                        RoomError(f"joining {room} refused: {ET.tostring(el, 'unicode')[:300]}")
                    )
                else:
                    join[0].set_result(_status_codes(el))
            elif ptype == "unavailable":
                self._rooms.pop(room, None)
            return
        if sender.domain != self.settings.xmpp.muc_domain:
            return
        if ptype == "unavailable":
            self.events.occupant_left(room, nick)
        elif ptype in (None, "available"):
            if join is not None:
                join[1].add(nick)
            self.events.occupant_joined(room, nick, str(sender), _real_jid(el))

    def _brewery_presence(self, nick: str, ptype: str | None, el: ET.Element) -> None:
        if nick == self.settings.xmpp.nick:
            join = self._joins.get(self.settings.brewery_jid)
            if join is not None and not join[0].done():
                join[0].set_result(_status_codes(el))
            return
        if ptype == "unavailable":
            self.events.bridge_left(nick)
            return
        if ptype not in (None, "available"):
            return
        stats_el = brewery.find_stats(el)
        try:
            stats = BridgeStats.from_element(stats_el) if stats_el is not None else BridgeStats()
        except brewery.BreweryFormatError as exc:
            log.warning("bad brewery presence from %s: %s", nick, exc)
            return
        self.events.bridge_presence(nick, stats)

    # ---------------------------------------------------------------- IQs in
    def _error(self, iq: slixmpp.Iq, condition: str, text: str, etype: str = "modify") -> None:
        reply = iq.reply(clear=False)
        reply["type"] = "error"
        reply["error"]["type"] = etype
        reply["error"]["condition"] = condition
        reply["error"]["text"] = text
        reply.send()

    def _conference_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        request = iq.xml.find(f"{{{NS_FOCUS}}}conference")
        room = (request.get("room") or "").strip() if request is not None else ""
        if not room or "@" not in room or room.split("@", 1)[1] != self.settings.xmpp.muc_domain:
            self._error(iq, "bad-request", f"room must be name@{self.settings.xmpp.muc_domain}, got {room!r}")
            return
        task = asyncio.ensure_future(self._answer_conference(iq, room.lower()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _answer_conference(self, iq: slixmpp.Iq, room: str) -> None:
        try:
            await self.events.conference_request(room, str(iq["from"]))
        except Exception as exc:
            log.warning("conference request for %s failed: %s", room, exc)
            self._error(iq, "internal-server-error", f"cannot create {room}: {exc}", "wait")
            return
        reply = iq.reply(clear=True)
        answer = ET.Element(
            f"{{{NS_FOCUS}}}conference",
            {
                "room": room,
                "ready": "true",
                "focusjid": f"{self.settings.xmpp.username}@{self.settings.xmpp.auth_domain}",
            },
        )
        reply.append(answer)
        reply.send()

    def _jingle_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        el = iq.xml.find(f"{{{jingle.NS_JINGLE}}}jingle")
        try:
            message = jingle.parse_element(el)  # type: ignore[arg-type]
        except jingle.JingleError as exc:
            log.warning("bad jingle from %s: %s", iq["from"], exc)
            self._error(iq, "bad-request", str(exc))
            return
        iq.reply(clear=True).send()
        self.events.jingle_received(str(iq["from"]), message)

    # ---------------------------------------------------------------- IQs out
    async def send_jingle(self, to: str, message: jingle.Jingle) -> bool:
        """Send a Jingle IQ; True when the peer answered ``result``."""
        iq = self.make_iq_set(ito=to)
        iq.append(jingle.to_element(message))
        try:
            await iq.send(timeout=self.settings.xmpp.iq_timeout)
            return True
        except IqError as exc:
            log.warning("jingle %s to %s refused: %s", message.action, to, exc.iq["error"]["condition"])
        except IqTimeout:
            log.warning("jingle %s to %s: no answer", message.action, to)
        return False

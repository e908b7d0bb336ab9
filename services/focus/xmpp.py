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
from collections.abc import Callable
from typing import Protocol

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common import brewery, jibri, jingle
from services.common.brewery import BridgeStats
from services.common.logging import RateLimitedLogger
from services.common.xmpp_guard import GuardedStreamMixin, send_iq_error

from .config import FocusSettings
from .limits import RequestRefused

log = logging.getLogger("focus.xmpp")

NS_CLIENT = "jabber:client"
NS_FOCUS = "http://jitsi.org/protocol/focus"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_JINGLE_ERRORS = "urn:xmpp:jingle:errors:1"

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
    def jingle_received(self, sender: str, message: jingle.Jingle) -> bool: ...
    def xmpp_ready(self) -> None: ...


class JibriEvents(Protocol):
    """The recorder side of the orchestrator (:class:`services.focus.jibri.JibriService`)."""

    def recorder_presence(self, nick: str, status: jibri.RecorderStatus) -> None: ...
    def recorder_left(self, nick: str) -> None: ...
    def recorder_update(self, nick: str, iq: jibri.JibriIq) -> None: ...
    async def request(self, room: str, requester_nick: str, iq: jibri.JibriIq) -> jibri.JibriIq: ...


class RoomError(Exception):
    pass


def _muc_user(presence: ET.Element) -> ET.Element | None:
    """The server's ``muc#user`` payload: the last one. A MUC service appends its own after the
    occupant's payload; an occupant's forged one (with someone else's real JID) comes first, should
    a server relay it (Prosody strips it)."""
    found = presence.findall(f"{{{NS_MUC_USER}}}x")
    return found[-1] if found else None


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
    x = _muc_user(presence)
    if x is not None:
        for status in x.findall(f"{{{NS_MUC_USER}}}status"):
            with contextlib.suppress(TypeError, ValueError):
                codes.add(int(status.get("code")))  # type: ignore[arg-type]
    return codes


def _real_jid(presence: ET.Element) -> str | None:
    x = _muc_user(presence)
    item = x.find(f"{{{NS_MUC_USER}}}item") if x is not None else None
    return item.get("jid") if item is not None else None


class FocusXmpp(GuardedStreamMixin, slixmpp.ClientXMPP):
    def __init__(
        self, settings: FocusSettings, events: FocusEvents, recorders: JibriEvents | None = None
    ) -> None:
        x = settings.xmpp
        super().__init__(x.jid, x.password)
        self.settings = settings
        self.events = events
        self.recorders = recorders
        self._room_extensions: dict[str, dict[str, ET.Element]] = {}  # room -> tag -> element
        self.max_stanza_depth, self.max_stanza_bytes = x.max_stanza_depth, x.max_stanza_size
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self["feature_mechanisms"].unencrypted_scram = True
        self["feature_mechanisms"].unencrypted_plain = True
        self.ready = asyncio.Event()
        self._pending: set[asyncio.Future[None]] = set()
        self._closing = False
        self.sessions = 0  # XMPP sessions started (1 unless the connection was lost)
        self._refused_log = RateLimitedLogger(log)
        self._rooms: dict[str, asyncio.Task[set[str]]] = {}
        self._joins: dict[str, tuple[asyncio.Future[set[int]], set[str]]] = {}
        # called with (room, nick, presence type, presence) after the orchestrator saw an
        # occupant's presence (services/focus/moderator.py)
        self.occupant_listeners: list[Callable[[str, str, str | None, ET.Element], None]] = []
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
            Callback("jibri", MatchXPath(f"{{{NS_CLIENT}}}iq/{jibri.JIBRI_TAG}"), self._jibri_iq)  # type: ignore[arg-type]
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
        if self.recorders is not None:
            with contextlib.suppress(RoomError, TimeoutError):
                await self._join(self.settings.jibri_brewery_jid)
        for room in rooms:  # a reconnect: be in our rooms again
            with contextlib.suppress(RoomError, TimeoutError):
                await self.ensure_room(room)
        self.ready.set()
        self.sessions += 1
        log.info("xmpp session started jid=%s", self.boundjid)
        self.events.xmpp_ready()

    def session_stats(self) -> dict[str, object]:
        return {
            "sessions": self.sessions,
            "ready": self.ready.is_set(),
            "stanzas_refused": getattr(self, "stanzas_refused", 0),
        }

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
        extensions = self._room_extensions.setdefault(room, {})
        extensions["conference-properties"] = conference_properties(created_ms=int(time.time() * 1000))
        for element in extensions.values():
            presence.append(element)
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

    async def destroy_room(self, room: str, reason: str) -> None:
        """Destroy ``room`` as its owner (XEP-0045 section 10.9): its occupants are told and it is
        gone from the broker. Falls back to leaving it."""
        self._rooms.pop(room, None)
        self._room_extensions.pop(room, None)
        iq = self.make_iq_set(ito=room)
        query = ET.Element(f"{{{NS_MUC_OWNER}}}query")
        destroy = ET.SubElement(query, f"{{{NS_MUC_OWNER}}}destroy")
        ET.SubElement(destroy, f"{{{NS_MUC_OWNER}}}reason").text = reason
        iq.append(query)
        try:
            await iq.send(timeout=self.settings.xmpp.iq_timeout)
            log.info("room destroyed room=%s (%s)", room, reason)
        except (IqError, IqTimeout) as exc:
            log.warning("destroying room=%s failed (%s); leaving it", room, exc)
            self.make_presence(pto=f"{room}/{self.settings.xmpp.nick}", ptype="unavailable").send()

    def set_room_extension(self, room: str, tag: str, element: ET.Element | None) -> None:
        """Put ``element`` in (or, when None, take ``tag`` out of) the focus's presence in
        ``room``, and send it: the MUC relays it to every occupant and keeps it for joiners."""
        extensions = self._room_extensions.setdefault(room, {})
        if element is None:
            extensions.pop(tag, None)
        else:
            extensions[tag] = element
        if room not in self._rooms:
            return
        presence = self.make_presence(pto=f"{room}/{self.settings.xmpp.nick}")
        for el in extensions.values():
            presence.append(el)
        presence.send()

    def leave_room(self, room: str) -> None:
        self._room_extensions.pop(room, None)
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
        if room == self.settings.jibri_brewery_jid:
            self._jibri_brewery_presence(nick, ptype, el)
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
        else:
            return
        for listener in self.occupant_listeners:
            listener(room, nick, ptype, el)

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

    def _jibri_brewery_presence(self, nick: str, ptype: str | None, el: ET.Element) -> None:
        if nick == self.settings.xmpp.nick:
            join = self._joins.get(self.settings.jibri_brewery_jid)
            if join is not None and not join[0].done():
                join[0].set_result(_status_codes(el))
            return
        if self.recorders is None:
            return
        if ptype == "unavailable":
            self.recorders.recorder_left(nick)
            return
        status_el = jibri.find_status(el)
        if ptype not in (None, "available") or status_el is None:
            return
        try:
            self.recorders.recorder_presence(nick, jibri.RecorderStatus.from_element(status_el))
        except jibri.JibriFormatError as exc:
            log.warning("bad recorder presence from %s: %s", nick, exc)

    # ---------------------------------------------------------------- IQs in
    def _jibri_iq(self, iq: slixmpp.Iq) -> None:
        """Jibri IQs: a participant's start/stop (sent to ``room@muc/focus``, so the broker
        stamps the sender's occupant JID) or a recorder's status (from the recorders' brewery)."""
        if iq["type"] != "set":
            return
        sender = iq["from"]
        try:
            request = jibri.JibriIq.from_element(jibri.find_jibri(iq.xml))  # type: ignore[arg-type]
        except jibri.JibriFormatError as exc:
            self._error(iq, "bad-request", str(exc))
            return
        if self.recorders is None:
            self._error(iq, "service-unavailable", "recording is not enabled", "cancel")
        elif sender.bare == self.settings.jibri_brewery_jid and sender.resource:
            iq.reply(clear=True).send()
            self.recorders.recorder_update(sender.resource, request)
        elif sender.domain == self.settings.xmpp.muc_domain and sender.resource:
            task = asyncio.ensure_future(self._answer_jibri(iq, sender.bare, sender.resource, request))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        else:
            self._error(iq, "forbidden", "send recording requests to the focus in the room", "auth")

    async def _answer_jibri(self, iq: slixmpp.Iq, room: str, nick: str, request: jibri.JibriIq) -> None:
        from .jibri import JibriRefused

        assert self.recorders is not None
        try:
            answer = await self.recorders.request(room, nick, request)
        except JibriRefused as exc:
            etype = {"forbidden": "auth", "service-unavailable": "wait", "resource-constraint": "wait",
                     "bad-request": "modify", "not-acceptable": "modify"}.get(exc.condition, "cancel")  # fmt: skip
            self._error(iq, exc.condition, exc.text, etype)
            return
        except Exception as exc:
            log.exception("recording request in %s failed", room)
            self._error(iq, "internal-server-error", f"recording request failed: {exc}", "wait")
            return
        reply = iq.reply(clear=True)
        reply.append(answer.to_element())
        reply.send()

    def _error(self, iq: slixmpp.Iq, condition: str, text: str, etype: str = "modify") -> None:
        send_iq_error(iq, condition, text, etype)

    def _conference_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] in ("result", "error"):
            return
        if iq["type"] != "set":  # every IQ get/set is answered (RFC 6120 section 8.2.3)
            self._error(iq, "bad-request", "a conference request is an IQ set")
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
        except RequestRefused as exc:
            self._refused_log.warning(
                exc.condition, "conference request from %s refused: %s", iq["from"], exc
            )
            self._error(iq, exc.condition, str(exc), "wait")
            return
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
        if iq["type"] in ("result", "error"):
            return
        if iq["type"] != "set":
            self._error(iq, "bad-request", "Jingle is an IQ set")
            return
        el = iq.xml.find(f"{{{jingle.NS_JINGLE}}}jingle")
        try:
            message = jingle.parse_element(el)  # type: ignore[arg-type]
        except jingle.JingleError as exc:
            self._refused_log.warning("bad-jingle", "bad jingle from %s: %s", iq["from"], str(exc)[:200])
            self._error(iq, "bad-request", str(exc)[:200])
            return
        if not self.events.jingle_received(str(iq["from"]), message):
            # XEP-0166 section 7.2: item-not-found with <unknown-session/>
            reply = iq.reply(clear=False)
            reply["type"] = "error"
            reply["error"]["type"] = "cancel"
            reply["error"]["condition"] = "item-not-found"
            reply["error"].xml.append(ET.Element(f"{{{NS_JINGLE_ERRORS}}}unknown-session"))
            reply.send()
            return
        iq.reply(clear=True).send()

    # ---------------------------------------------------------------- IQs out
    async def send_jibri(self, recorder: str, request: jibri.JibriIq) -> jibri.JibriIq:
        """A start/stop IQ to a recorder; its answer, or an exception (error, timeout)."""
        iq = self.make_iq_set(ito=recorder)
        iq.append(request.to_element())
        try:
            result = await iq.send(timeout=self.settings.jibri.iq_timeout)
        except IqError as exc:
            from .jibri import JibriRefused

            raise JibriRefused(str(exc.iq["error"]["condition"]), str(exc.iq["error"]["text"])[:256]) from None
        el = jibri.find_jibri(result.xml)
        return jibri.JibriIq.from_element(el) if el is not None else jibri.JibriIq()

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

"""The lobby of the conference rooms (Jitsi's mod_muc_lobby_rooms), without I/O.

A moderator turns the lobby on by making the room members-only (``muc#roomconfig_membersonly``
in the owner form). From then on a participant who is not a member is refused with
``registration-required`` and Jitsi's ``<lobbyroom xmlns='http://jitsi.org/jitmeet'>`` naming
``<room>@lobby.<domain>``; it knocks by joining that address with its display name (a
``<nick xmlns='http://jabber.org/protocol/nick'>``). Moderators of the room join the same address
to watch: they receive every knocker's presence (with its real JID) and are told when one
arrives or leaves.

* **Admit**: a moderator makes the knocker a member of the room (``muc#admin`` affiliation
  ``member`` for its JID, as lib-jitsi-meet's ``approveLobbyAccess``); the knocker gets a
  XEP-0045 mediated invitation from the room and joins it.
* **Deny**: a moderator kicks the knocker from the lobby (``muc#admin`` role ``none`` with its
  nick, sent to the lobby address); the knocker gets its unavailable presence with status 307.
* The room's password lets a participant past the lobby (services/xmpp/modules/muc.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..jid import JID, InvalidJid, parse_jid
from ..stanza import DISCO_INFO, MUC, MUC_ADMIN, MUC_USER, error_reply, iq_result
from ..xml import CLIENT_NS, Element
from .muc import MucService, Occupant, Room

log = logging.getLogger("xmpp.lobby")

JITMEET = "http://jitsi.org/jitmeet"
NICK_NS = "http://jabber.org/protocol/nick"
MAX_KNOCKERS = 100
MAX_NICK = 64


@dataclass
class Knocker:
    nick: str
    real_jid: JID
    name: str


@dataclass
class LobbyRoom:
    knockers: dict[str, Knocker] = field(default_factory=dict)
    watchers: dict[JID, str] = field(default_factory=dict)  # moderators' real JIDs -> nick


class Lobby:
    """The component of ``lobby.<domain>``."""

    def __init__(self, domain: str, conference: MucService, send: Callable[[JID, bytes], bool]) -> None:
        self.domain = domain
        self.conference = conference
        self.send = send
        self.rooms: dict[str, LobbyRoom] = {}  # by the room's node
        conference.members_only_refusal = self._where
        conference.affiliation_listeners.append(self._affiliation_changed)
        conference.room_listeners.append(self._room_changed)

    def disco_identity(self) -> tuple[str, str, str]:
        return ("conference", "text", "Lobby")

    def _where(self, room: Room) -> list[Element]:
        return [Element("lobbyroom", JITMEET, children=[f"{room.jid.node}@{self.domain}"])]

    def _main(self, node: str) -> Room | None:
        return self.conference.rooms.get(JID(node, self.conference.domain, ""))

    def _moderator(self, room: Room, real: JID) -> Occupant | None:
        occupant = room.by_real.get(real)
        return occupant if occupant is not None and occupant.role == "moderator" else None

    # -- entry ---------------------------------------------------------------------------------
    def handle(self, stanza: Element, to: JID, frm: JID) -> None:
        if stanza.name == "presence":
            self._presence(stanza, to, frm)
        elif stanza.name == "iq" and stanza.get("type") in ("get", "set"):
            self._iq(stanza, to, frm)
        elif stanza.name == "message" and stanza.get("type") != "error":
            self._error(stanza, "not-allowed", "the lobby carries no messages")

    def _error(self, stanza: Element, condition: str, text: str) -> None:
        reply = error_reply(stanza, condition, text)
        if reply is not None and reply.get("to"):
            try:
                self.send(parse_jid(reply.get("to") or ""), reply.to_bytes())
            except InvalidJid:
                pass

    def _presence(self, stanza: Element, to: JID, frm: JID) -> None:
        kind = stanza.get("type")
        state = self.rooms.get(to.node)
        if kind == "unavailable":
            if state is not None:
                state.watchers.pop(frm, None)
                for knocker in list(state.knockers.values()):
                    if knocker.real_jid == frm:
                        self._remove(to.node, state, knocker, codes=())
            return
        if kind is not None:
            return
        room = self._main(to.node)
        if not to.node or room is None or not room.config.members_only:
            self._error(stanza, "item-not-found", "this room has no lobby")
            return
        if not to.resource:
            self._error(stanza, "jid-malformed", "knock with room@lobby/nick")
            return
        state = self.rooms.setdefault(to.node, LobbyRoom())
        if self._moderator(room, frm) is not None:
            state.watchers[frm] = to.resource
            self._presence_to(to.node, frm, to.resource, "moderator", frm, "", ("110",))
            for knocker in state.knockers.values():
                self._presence_to(to.node, frm, knocker.nick, "participant", knocker.real_jid, knocker.name)
            return
        if any(k.real_jid == frm for k in state.knockers.values()):
            return  # a presence update of a waiting knocker: nothing to tell
        nick = to.resource[:MAX_NICK]
        if nick in state.knockers or nick in state.watchers.values():
            self._error(stanza, "conflict", "that nickname is waiting already")
            return
        if len(state.knockers) >= MAX_KNOCKERS:
            self._error(stanza, "service-unavailable", "the lobby is full")
            return
        nick_el = stanza.find("nick", NICK_NS)
        name = (nick_el.text if nick_el is not None else nick)[:MAX_NICK]
        knocker = Knocker(nick, frm, name)
        state.knockers[nick] = knocker
        self._presence_to(to.node, frm, nick, "participant", frm, name, ("110",))
        for watcher in state.watchers:
            self._presence_to(to.node, watcher, nick, "participant", frm, name)
        log.info("knock room=%s nick=%s", to.node, nick)

    def _iq(self, stanza: Element, to: JID, frm: JID) -> None:
        payload = stanza.first_element()
        room = self._main(to.node)
        state = self.rooms.get(to.node)
        if payload is not None and payload.ns == DISCO_INFO and stanza.get("type") == "get":
            q = Element("query", DISCO_INFO)
            q.sub("identity", attrs={"category": "conference", "type": "text", "name": "Lobby"})
            q.sub("feature", attrs={"var": MUC})
            self.send(frm, iq_result(stanza, q).to_bytes())
            return
        if payload is None or payload.ns != MUC_ADMIN or stanza.get("type") != "set":
            self._error(stanza, "service-unavailable", "the lobby answers muc#admin kicks only")
            return
        if room is None or state is None or self._moderator(room, frm) is None:
            self._error(stanza, "forbidden", "only the room's moderators may deny access")
            return
        item = payload.find("item", MUC_ADMIN)
        knocker = state.knockers.get(item.get("nick") or "") if item is not None else None
        if item is None or item.get("role") != "none" or knocker is None:
            self._error(stanza, "item-not-found", "no such knocker")
            return
        self._remove(to.node, state, knocker, codes=("307",))
        log.info("denied room=%s nick=%s", to.node, knocker.nick)
        self.send(frm, iq_result(stanza).to_bytes())

    # -- changes -------------------------------------------------------------------------------
    def _affiliation_changed(self, room: Room, bare: JID, affiliation: str, actor: Occupant) -> None:
        state = self.rooms.get(room.jid.node)
        if state is None or affiliation not in ("member", "admin", "owner"):
            return
        for knocker in [k for k in state.knockers.values() if k.real_jid.bare == bare]:
            invite = Element("message", CLIENT_NS, {"from": room.jid_str, "to": str(knocker.real_jid)})
            invite.sub("x", MUC_USER).sub("invite", attrs={"from": room.occupant_jid(actor.nick)})
            self.send(knocker.real_jid, invite.to_bytes())
            self._remove(room.jid.node, state, knocker, codes=())
            log.info("admitted room=%s nick=%s", room.jid.node, knocker.nick)

    def _room_changed(self, room: Room, created: bool) -> None:
        if not created:
            state = self.rooms.pop(room.jid.node, None)
            if state is not None:
                for knocker in list(state.knockers.values()):
                    self._presence_to(
                        room.jid.node, knocker.real_jid, knocker.nick, "none", knocker.real_jid, "", (), True
                    )

    def _remove(self, node: str, state: LobbyRoom, knocker: Knocker, codes: tuple[str, ...]) -> None:
        state.knockers.pop(knocker.nick, None)
        for to in [knocker.real_jid, *state.watchers]:
            self._presence_to(node, to, knocker.nick, "none", knocker.real_jid, knocker.name, codes, True)
        if not state.knockers and not state.watchers:
            self.rooms.pop(node, None)

    def _presence_to(
        self,
        node: str,
        to: JID,
        nick: str,
        role: str,
        real: JID,
        name: str,
        codes: tuple[str, ...] = (),
        unavailable: bool = False,
    ) -> None:
        attrs = {"from": f"{node}@{self.domain}/{nick}", "to": str(to)}
        if unavailable:
            attrs["type"] = "unavailable"
        pres = Element("presence", CLIENT_NS, attrs)
        if name:
            pres.sub("nick", NICK_NS, text=name)
        x = pres.sub("x", MUC_USER)
        x.sub("item", attrs={"affiliation": "none", "role": role, "jid": str(real)})
        for code in codes:
            x.sub("status", attrs={"code": code})
        self.send(to, pres.to_bytes())


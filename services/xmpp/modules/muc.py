"""Multi-User Chat (XEP-0045) as Jitsi uses it, without I/O.

A :class:`MucService` is the component for one MUC host. Rooms keep their occupants by nick and
by real JID; every broadcast is serialized once per variant (with or without the real JID, self
or others) and only the recipient's address is spliced in per delivery.

Policy knobs match Jitsi's Prosody setup: ``creators`` limits who may create rooms (the focus on
the conference host), ``presence_domains`` limits who may join (service accounts on the brewery
host), ``admins`` are owners of every room, rooms are unlocked on creation
(``muc_room_locking = false``) and destroyed when the last occupant leaves.

Guests are hostile, so the service stamps what only it may say, the way Prosody's mod_muc does:

* a client's own presence payload loses every element in a server-only namespace (``muc#user``,
  ``muc#admin``, ``muc#owner``, delays, occupant ids) and the server's ``<x xmlns='muc#user'>``
  with the true affiliation, role and (for those allowed to see it) real JID comes first;
* forwarded messages lose a client's own ``muc#user`` payload;
* IQs between occupants pass only to or from a service admin (the focus: it sends Jingle to
  occupant JIDs), so one guest cannot send another a forged Jingle offer through the room;
* ``fixed_whois`` pins who sees real JIDs (``moderators``: semi-anonymous rooms, XEP-0045
  section 4.2), whatever the owner's configuration form says;
* ``reserved_nicks`` keeps a nick (the focus's) for one account;
* ``presence_throttle`` bounds how often one occupant's presence updates go to the whole room,
  coalescing the excess (last state wins, ``presence_throttle.py``).
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..jid import JID, InvalidJid, parse_jid
from ..stanza import (
    DATA_FORMS,
    DISCO_INFO,
    DISCO_ITEMS,
    MUC,
    MUC_ADMIN,
    MUC_OWNER,
    MUC_USER,
    PING_NS,
    error_reply,
    iq_result,
)
from ..xml import CLIENT_NS, Element, escape_attr
from .presence_throttle import PresenceThrottle

log = logging.getLogger("xmpp.muc")

ROLE_FOR_AFFILIATION = {
    "owner": "moderator",
    "admin": "moderator",
    "member": "participant",
    "none": "participant",
}
AFFILIATIONS = ("owner", "admin", "member", "none", "outcast")
ROLES = ("moderator", "participant", "visitor", "none")

# payloads only the MUC service may put in an occupant's presence
SERVER_ONLY_NS = frozenset(
    {MUC, MUC_USER, MUC_ADMIN, MUC_OWNER, "urn:xmpp:delay", "jabber:x:delay", "urn:xmpp:occupant-id:0"}
)


@dataclass
class Occupant:
    nick: str
    real_jid: JID
    affiliation: str
    role: str
    payload: list[Element | str] = field(default_factory=list)
    real_to: bytes = b""

    def __post_init__(self) -> None:
        self.real_to = escape_attr(str(self.real_jid)).encode()


@dataclass
class RoomConfig:
    name: str = ""
    description: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    whois: str = "moderators"  # or "anyone": who sees real JIDs
    password: str = ""
    change_subject: bool = False
    max_users: int = 0  # 0 = unlimited

    def form(self) -> Element:
        x = Element("x", DATA_FORMS, {"type": "form"})
        x.sub("title", text="Room configuration")

        def field_(var: str, kind: str, value: str, label: str, options: Iterable[str] = ()) -> None:
            f = x.sub("field", attrs={"var": var, "type": kind, "label": label})
            f.sub("value", text=value)
            for opt in options:
                f.sub("option").sub("value", text=opt)

        field_("FORM_TYPE", "hidden", "http://jabber.org/protocol/muc#roomconfig", "")
        field_("muc#roomconfig_roomname", "text-single", self.name, "Name")
        field_("muc#roomconfig_roomdesc", "text-single", self.description, "Description")
        field_("muc#roomconfig_persistentroom", "boolean", _b(self.persistent), "Persistent")
        field_("muc#roomconfig_publicroom", "boolean", _b(self.public), "Public")
        field_("muc#roomconfig_membersonly", "boolean", _b(self.members_only), "Members only")
        field_("muc#roomconfig_moderatedroom", "boolean", _b(self.moderated), "Moderated")
        field_(
            "muc#roomconfig_whois",
            "list-single",
            self.whois,
            "Who may see real JIDs",
            ("moderators", "anyone"),
        )
        field_("muc#roomconfig_passwordprotectedroom", "boolean", _b(bool(self.password)), "Password")
        field_("muc#roomconfig_roomsecret", "text-private", self.password, "Password")
        field_("muc#roomconfig_changesubject", "boolean", _b(self.change_subject), "Change subject")
        field_("muc#roomconfig_maxusers", "text-single", str(self.max_users), "Maximum users")
        return x

    def apply(self, form: Element) -> None:
        """Apply a submitted muc#roomconfig form; unknown fields are ignored (XEP-0045 10.2)."""
        values: dict[str, list[str]] = {}
        for f in form.find_all("field", DATA_FORMS):
            values[f.get("var") or ""] = [v.text for v in f.find_all("value", DATA_FORMS)]

        def one(var: str) -> str | None:
            v = values.get(var)
            return v[0] if v else None

        def flag(var: str, current: bool) -> bool:
            v = one(var)
            return current if v is None else v in ("1", "true")

        self.name = one("muc#roomconfig_roomname") or self.name
        self.description = one("muc#roomconfig_roomdesc") or self.description
        self.persistent = flag("muc#roomconfig_persistentroom", self.persistent)
        self.public = flag("muc#roomconfig_publicroom", self.public)
        self.members_only = flag("muc#roomconfig_membersonly", self.members_only)
        self.moderated = flag("muc#roomconfig_moderatedroom", self.moderated)
        self.change_subject = flag("muc#roomconfig_changesubject", self.change_subject)
        whois = one("muc#roomconfig_whois")
        if whois in ("moderators", "anyone"):
            self.whois = whois
        if flag("muc#roomconfig_passwordprotectedroom", bool(self.password)):
            secret = one("muc#roomconfig_roomsecret")
            if secret is not None:
                self.password = secret
        else:
            self.password = ""
        maxusers = one("muc#roomconfig_maxusers")
        if maxusers and maxusers.isdigit():
            self.max_users = int(maxusers)


def _b(v: bool) -> str:
    return "1" if v else "0"


class MucError(Exception):
    def __init__(self, condition: str, text: str | None = None, extra: list[Element] | None = None) -> None:
        super().__init__(condition)
        self.condition = condition
        self.text = text
        self.extra = extra or []  # more children of the <error/> (e.g. Jitsi's <lobbyroom/>)


class Room:
    def __init__(self, jid: JID, config: RoomConfig) -> None:
        self.jid = jid
        self.jid_str = str(jid)
        self.config = config
        self.occupants: dict[str, Occupant] = {}
        self.by_real: dict[JID, Occupant] = {}
        self.affiliations: dict[JID, str] = {}
        self.subject = ""
        self.subject_from = ""
        # what Jitsi's mod_muc_meeting_id gives every room: clients read it from disco#info
        self.meeting_id = str(uuid.uuid4())

    def occupant_jid(self, nick: str) -> str:
        return f"{self.jid_str}/{nick}"

    def affiliation_of(self, real: JID, admins: set[JID]) -> str:
        if real.bare in admins:
            return "owner"
        return self.affiliations.get(real.bare, "none")

    def sees_real_jids(self, viewer: Occupant) -> bool:
        return self.config.whois == "anyone" or viewer.role == "moderator"


class MucService:
    """The component serving one MUC host."""

    def __init__(
        self,
        domain: str,
        send: Callable[[JID, bytes], bool],
        route: Callable[[Element], None],
        *,
        admins: Iterable[JID] = (),
        creators: Iterable[JID] | None = None,
        presence_domains: Iterable[str] | None = None,
        name: str = "Chatrooms",
        default_config: RoomConfig | None = None,
        fixed_whois: str | None = None,
        reserved_nicks: dict[str, JID] | None = None,
        presence_throttle: PresenceThrottle | None = None,
        schedule: Callable[[float, Callable[[], None]], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.domain = domain
        self.send = send
        self.route = route
        self.admins = {a.bare for a in admins}
        self.creators = None if creators is None else {c.bare for c in creators}
        self.presence_domains = None if presence_domains is None else set(presence_domains)
        self.name = name
        self.default_config = default_config or RoomConfig()
        self.fixed_whois = fixed_whois
        if fixed_whois is not None:
            self.default_config.whois = fixed_whois
        self.reserved_nicks = {n: j.bare for n, j in (reserved_nicks or {}).items()}
        self.rooms: dict[JID, Room] = {}
        self.room_listeners: list[Callable[[Room, bool], None]] = []
        # a throttle needs a timer to send the coalesced presence later
        self.presence_throttle = presence_throttle if schedule is not None else None
        self.schedule = schedule
        self.clock = clock
        self._coalesced: dict[tuple[JID, str], Any] = {}  # (room, nick) -> timer handle
        # features hook here (services/xmpp/modules/): a check may refuse a join by raising
        # MucError (the room is None before it exists); a stamp adds elements only the server
        # may put in an occupant's presence (a client's own elements of those names are dropped)
        self.join_checks: list[Callable[[Room | None, JID, JID, Element], None]] = []
        self.presence_stamps: list[Callable[[JID], list[Element]]] = []
        self.stamped: set[tuple[str, str]] = set()
        # told of refusals of members-only rooms (the lobby adds where to knock) and of
        # affiliation changes (room, bare JID, new affiliation, actor)
        self.members_only_refusal: Callable[[Room], list[Element]] | None = None
        self.affiliation_listeners: list[Callable[[Room, JID, str, Occupant], None]] = []

    def disco_identity(self) -> tuple[str, str, str]:
        return ("conference", "text", self.name)

    def occupant_count(self) -> int:
        return sum(len(r.occupants) for r in self.rooms.values())

    # -- entry -------------------------------------------------------------------------------
    def handle(self, stanza: Element, to: JID, frm: JID) -> None:
        try:
            if not to.node:
                self._to_service(stanza, frm)
                return
            room = self.rooms.get(to.bare)
            kind = stanza.name
            if kind == "presence":
                self._presence(stanza, to, frm, room)
            elif kind == "message":
                self._message(stanza, to, frm, room)
            elif kind == "iq":
                self._iq(stanza, to, frm, room)
        except MucError as err:
            self._error(stanza, err.condition, err.text, err.extra)

    def _error(
        self, stanza: Element, condition: str, text: str | None = None, extra: list[Element] | None = None
    ) -> None:
        reply = error_reply(stanza, condition, text)
        if reply is not None:
            if extra:
                error = reply.find("error")
                if error is not None:
                    error.children.extend(extra)
            self.route_from_component(reply)

    def route_from_component(self, stanza: Element) -> None:
        to = stanza.get("to")
        if to is None:
            return
        try:
            self.send(parse_jid(to), stanza.to_bytes())
        except InvalidJid:
            pass

    # -- service-level IQs -------------------------------------------------------------------
    def _to_service(self, stanza: Element, frm: JID) -> None:
        if stanza.name != "iq" or stanza.get("type") not in ("get", "set"):
            if stanza.name == "message":
                self._error(stanza, "service-unavailable")
            return
        payload = stanza.first_element()
        if payload is not None and stanza.get("type") == "get":
            if payload.ns == DISCO_INFO:
                q = Element("query", DISCO_INFO)
                q.sub("identity", attrs={"category": "conference", "type": "text", "name": self.name})
                for var in (DISCO_INFO, DISCO_ITEMS, MUC, PING_NS):
                    q.sub("feature", attrs={"var": var})
                self.route_from_component(iq_result(stanza, q))
                return
            if payload.ns == DISCO_ITEMS:
                q = Element("query", DISCO_ITEMS)
                for room in self.rooms.values():
                    if room.config.public:
                        q.sub("item", attrs={"jid": room.jid_str, "name": room.config.name or room.jid.node})
                self.route_from_component(iq_result(stanza, q))
                return
            if payload.ns == PING_NS:
                self.route_from_component(iq_result(stanza))
                return
        raise MucError("service-unavailable")

    # -- presence ----------------------------------------------------------------------------
    def _presence(self, stanza: Element, to: JID, frm: JID, room: Room | None) -> None:
        kind = stanza.get("type")
        occupant = room.by_real.get(frm) if room is not None else None
        if kind == "unavailable" or kind == "error":
            if room is not None and occupant is not None:
                self._leave(room, occupant, stanza if kind == "unavailable" else None)
            return
        if kind is not None:
            return  # subscriptions and probes mean nothing to a room
        if not to.resource:
            raise MucError("jid-malformed", "join with room@host/nick")
        if occupant is not None:
            assert room is not None
            occupant.payload = self._payload(stanza, frm)
            if occupant.nick != to.resource:
                self._change_nick(room, occupant, to.resource)
                return
            if not self._throttled(room, occupant):
                self._broadcast_presence(room, occupant)
            return
        self._join(stanza, to, frm, room)

    def _throttled(self, room: Room, occupant: Occupant) -> bool:
        """True when this update waits: the occupant's latest presence goes out once its budget
        allows (service admins, the focus, are not throttled)."""
        throttle = self.presence_throttle
        if throttle is None or self.schedule is None or occupant.real_jid.bare in self.admins:
            return False
        key = (room.jid, occupant.nick)
        if key in self._coalesced:
            return True  # already waiting: it will carry this (latest) payload
        delay = throttle.admit(key, self.clock())
        if delay is None:
            return False
        self._coalesced[key] = self.schedule(delay, lambda: self._send_coalesced(room, occupant))
        return True

    def _send_coalesced(self, room: Room, occupant: Occupant) -> None:
        key = (room.jid, occupant.nick)
        self._coalesced.pop(key, None)
        if self.rooms.get(room.jid) is not room or room.occupants.get(occupant.nick) is not occupant:
            return  # left (or renamed) meanwhile: that presence was broadcast instead
        if not self._throttled(room, occupant):
            self._broadcast_presence(room, occupant)
    def _payload(self, stanza: Element, frm: JID) -> list[Element | str]:
        payload = _presence_payload(stanza)
        if not self.presence_stamps:
            return payload
        payload = [c for c in payload if not (isinstance(c, Element) and (c.name, c.ns) in self.stamped)]
        for stamp in self.presence_stamps:
            payload.extend(stamp(frm))
        return payload

    def _join(self, stanza: Element, to: JID, frm: JID, room: Room | None) -> None:
        if self.presence_domains is not None and frm.domain not in self.presence_domains:
            raise MucError("forbidden", "only service accounts may join rooms here")
        for check in self.join_checks:
            check(room, frm, to, stanza)
        created = False
        if room is None:
            if self.creators is not None and frm.bare not in self.creators:
                raise MucError("not-allowed", "Room creation is restricted")
            room = Room(to.bare, RoomConfig(**vars(self.default_config)))
            room.affiliations[frm.bare] = "owner"
            self.rooms[room.jid] = room
            created = True
            for listener in self.room_listeners:
                listener(room, True)
        nick = to.resource
        reserved = self.reserved_nicks.get(nick)
        if reserved is not None and reserved != frm.bare:
            self._maybe_destroy(room)
            raise MucError("conflict", "That nickname is reserved")
        other = room.occupants.get(nick)
        if other is not None:
            if other.real_jid.bare != frm.bare:
                self._maybe_destroy(room)
                raise MucError("conflict", "That nickname is already in use by another occupant")
            # same account, another resource under the same nick: replaces the old one
            self._remove(room, other)
        affiliation = room.affiliation_of(frm, self.admins)
        if affiliation == "outcast":
            self._maybe_destroy(room)
            raise MucError("forbidden", "You are banned from this room")
        password_ok = False
        if room.config.password and frm.bare not in self.admins:
            x = stanza.find("x", MUC)
            given = x.find("password", MUC) if x is not None else None
            password_ok = given is not None and hmac.compare_digest(
                given.text.encode(), room.config.password.encode()
            )
        if room.config.members_only and affiliation == "none" and not password_ok:
            # (the room's password lets one past the lobby, as mod_muc_lobby_rooms)
            self._maybe_destroy(room)
            extra = self.members_only_refusal(room) if self.members_only_refusal is not None else []
            raise MucError("registration-required", "Members only: knock in the lobby", extra)
        if room.config.password and frm.bare not in self.admins and not password_ok:
            self._maybe_destroy(room)
            raise MucError("not-authorized", "Password required")
        if (
            room.config.max_users
            and len(room.occupants) >= room.config.max_users
            and affiliation not in ("owner", "admin")
        ):
            raise MucError("service-unavailable", "Room is full")
        role = ROLE_FOR_AFFILIATION.get(affiliation, "participant")
        if room.config.moderated and role == "participant" and affiliation == "none":
            role = "visitor"
        occupant = Occupant(nick, frm, affiliation, role, self._payload(stanza, frm))
        # existing occupants to the newcomer
        for existing in list(room.occupants.values()):
            self._send_presence(room, existing, [occupant], codes=())
        room.occupants[nick] = occupant
        room.by_real[frm] = occupant
        self._broadcast_presence(room, occupant, created=created)
        subject = Element(
            "message",
            CLIENT_NS,
            {
                "type": "groupchat",
                "from": room.occupant_jid(room.subject_from) if room.subject_from else room.jid_str,
            },
        )
        subject.sub("subject", text=room.subject)
        self.send(frm, _with_to(subject, occupant.real_to))

    def _change_nick(self, room: Room, occupant: Occupant, nick: str) -> None:
        """XEP-0045 7.6: unavailable with 303 and the new nick, then available under it."""
        reserved = self.reserved_nicks.get(nick)
        if nick in room.occupants or (reserved is not None and reserved != occupant.real_jid.bare):
            raise MucError("conflict", "That nickname is already in use by another occupant")
        payload = occupant.payload
        occupant.payload = []
        self._send_presence(
            room,
            occupant,
            list(room.occupants.values()),
            codes=("303",),
            kind="unavailable",
            item_extra={"nick": nick},
        )
        del room.occupants[occupant.nick]
        self._forget_presence(room, occupant.nick)  # the broadcast below carries the latest payload
        occupant.nick = nick
        occupant.payload = payload
        room.occupants[nick] = occupant
        self._broadcast_presence(room, occupant)

    def _leave(
        self,
        room: Room,
        occupant: Occupant,
        stanza: Element | None,
        codes: tuple[str, ...] = (),
        actor_item: dict[str, str] | None = None,
    ) -> None:
        self._remove(room, occupant)
        occupant.role = "none"
        status = stanza.find("status") if stanza is not None else None
        occupant.payload = [status] if status is not None else []
        recipients = [*room.occupants.values(), occupant]
        self._send_presence(
            room, occupant, recipients, codes=codes, kind="unavailable", item_extra=actor_item
        )
        self._maybe_destroy(room)

    def _remove(self, room: Room, occupant: Occupant) -> None:
        room.occupants.pop(occupant.nick, None)
        room.by_real.pop(occupant.real_jid, None)
        self._forget_presence(room, occupant.nick)

    def _forget_presence(self, room: Room, nick: str) -> None:
        """A waiting coalesced presence and the throttle's bucket of ``nick`` go."""
        key = (room.jid, nick)
        handle = self._coalesced.pop(key, None)
        if handle is not None:
            handle.cancel()
        if self.presence_throttle is not None:
            self.presence_throttle.forget(key)

    def _maybe_destroy(self, room: Room) -> None:
        if not room.occupants and not room.config.persistent and self.rooms.get(room.jid) is room:
            del self.rooms[room.jid]
            for listener in self.room_listeners:
                listener(room, False)

    def _broadcast_presence(self, room: Room, occupant: Occupant, created: bool = False) -> None:
        codes = ("201",) if created else ()
        self._send_presence(room, occupant, list(room.occupants.values()), codes=codes)

    def _send_presence(
        self,
        room: Room,
        occupant: Occupant,
        recipients: list[Occupant],
        codes: tuple[str, ...],
        kind: str | None = None,
        item_extra: dict[str, str] | None = None,
    ) -> None:
        """``occupant``'s presence to each recipient: one serialization per variant."""
        cache: dict[tuple[bool, bool], tuple[bytes, bytes]] = {}
        # A service account's real JID (the focus's) is no one's secret, and Jitsi's clients need it:
        # lib-jitsi-meet takes Jingle only from the occupant whose real JID is the focus's.
        public = occupant.real_jid.bare in self.admins
        for r in recipients:
            is_self = r is occupant
            with_jid = is_self or public or room.sees_real_jids(r)
            key = (is_self, with_jid)
            parts = cache.get(key)
            if parts is None:
                parts = self._presence_parts(room, occupant, is_self, with_jid, codes, kind, item_extra)
                cache[key] = parts
            self.send(r.real_jid, parts[0] + r.real_to + parts[1])

    def _presence_parts(
        self,
        room: Room,
        occupant: Occupant,
        is_self: bool,
        with_jid: bool,
        codes: tuple[str, ...],
        kind: str | None,
        item_extra: dict[str, str] | None,
    ) -> tuple[bytes, bytes]:
        attrs = {"from": room.occupant_jid(occupant.nick)}
        if kind:
            attrs["type"] = kind
        # the server's muc#user element first, then the occupant's (already filtered) payload
        x = Element("x", MUC_USER)
        pres = Element("presence", CLIENT_NS, attrs, [x, *occupant.payload])
        item_attrs = {"affiliation": occupant.affiliation, "role": occupant.role}
        if with_jid:
            item_attrs["jid"] = str(occupant.real_jid)
        if item_extra and item_extra.get("nick"):
            item_attrs["nick"] = item_extra["nick"]
        item = x.sub("item", attrs=item_attrs)
        if item_extra:
            reason = item_extra.get("reason")
            if item_extra.get("actor"):
                item.sub("actor", attrs={"nick": item_extra["actor"]})
            if reason:
                item.sub("reason", text=reason)
        all_codes = list(codes)
        if is_self:
            if room.config.whois == "anyone":
                all_codes.insert(0, "100")
            all_codes.insert(0, "110")
        for code in all_codes:
            x.sub("status", attrs={"code": code})
        return pres.split_at_to()

    # -- messages ----------------------------------------------------------------------------
    def _message(self, stanza: Element, to: JID, frm: JID, room: Room | None) -> None:
        kind = stanza.get("type", "normal")
        if room is None:
            if kind != "error":
                raise MucError("item-not-found", "No such room")
            return
        sender = room.by_real.get(frm)
        if kind == "error":
            return
        if sender is None:
            raise MucError("not-acceptable", "You are not in the room")
        if to.resource:
            if kind == "groupchat":
                raise MucError("bad-request", "groupchat goes to the room, not an occupant")
            target = room.occupants.get(to.resource)
            if target is None:
                raise MucError("item-not-found", "No such occupant")
            out = Element(
                "message",
                CLIENT_NS,
                _fwd_attrs(stanza, room.occupant_jid(sender.nick)),
                [Element("x", MUC_USER), *_client_payload(stanza)],
            )
            self.send(target.real_jid, _with_to(out, target.real_to))
            return
        if kind != "groupchat":
            self._room_message(room, sender, stanza)
            return
        if sender.role == "visitor":
            raise MucError("forbidden", "Visitors may not speak")
        subject = stanza.find("subject")
        if subject is not None and stanza.find("body") is None:
            if sender.role != "moderator" and not room.config.change_subject:
                raise MucError("forbidden", "You may not change the subject")
            room.subject = subject.text
            room.subject_from = sender.nick
        out = Element(
            "message", CLIENT_NS, _fwd_attrs(stanza, room.occupant_jid(sender.nick)), _client_payload(stanza)
        )
        head, tail = out.split_at_to()
        send = self.send
        for occ in room.occupants.values():
            send(occ.real_jid, head + occ.real_to + tail)

    def _room_message(self, room: Room, sender: Occupant, stanza: Element) -> None:
        """Non-groupchat messages to the room: mediated invitations (XEP-0045 7.8.2)."""
        x = stanza.find("x", MUC_USER)
        invite = x.find("invite", MUC_USER) if x is not None else None
        if invite is None or not invite.get("to"):
            raise MucError("bad-request", "send groupchat messages to the room")
        try:
            invitee = parse_jid(invite.get("to") or "")
        except InvalidJid:
            raise MucError("jid-malformed") from None
        out = Element("message", CLIENT_NS, {"from": room.jid_str, "to": str(invitee)})
        ox = out.sub("x", MUC_USER)
        forwarded = ox.sub("invite", attrs={"from": str(sender.real_jid)})
        reason = invite.find("reason", MUC_USER)
        if reason is not None:
            forwarded.append(reason)
        self.route(out)

    # -- IQs ---------------------------------------------------------------------------------
    def _iq(self, stanza: Element, to: JID, frm: JID, room: Room | None) -> None:
        kind = stanza.get("type")
        if room is None:
            if kind in ("get", "set"):
                raise MucError("item-not-found", "No such room")
            return
        if to.resource:
            self._iq_to_occupant(stanza, to, frm, room)
            return
        if kind not in ("get", "set"):
            return
        payload = stanza.first_element()
        if payload is None:
            raise MucError("bad-request")
        sender = room.by_real.get(frm)
        affiliation = room.affiliation_of(frm, self.admins)
        if payload.ns == DISCO_INFO and kind == "get":
            self.route_from_component(iq_result(stanza, self._room_info(room)))
        elif payload.ns == DISCO_ITEMS and kind == "get":
            self.route_from_component(iq_result(stanza, Element("query", DISCO_ITEMS)))
        elif payload.ns == PING_NS and kind == "get":
            if sender is None:
                raise MucError("not-acceptable", "not an occupant")
            self.route_from_component(iq_result(stanza))
        elif payload.ns == MUC_OWNER:
            if affiliation != "owner":
                raise MucError("forbidden", "Owner privileges required")
            self._owner(stanza, payload, room, kind)
        elif payload.ns == MUC_ADMIN:
            if sender is None or (sender.role != "moderator" and affiliation not in ("owner", "admin")):
                raise MucError("forbidden", "Moderator privileges required")
            self._admin(stanza, payload, room, sender, affiliation, kind)
        else:
            raise MucError("service-unavailable")

    def _iq_to_occupant(self, stanza: Element, to: JID, frm: JID, room: Room) -> None:
        """IQs to room/nick reach that occupant's real JID (Jingle, health checks)."""
        sender = room.by_real.get(frm)
        target = room.occupants.get(to.resource)
        kind = stanza.get("type")
        if sender is None:
            if kind in ("get", "set"):
                raise MucError("not-acceptable", "Only occupants may send IQs to occupants")
            return
        if target is None:
            if kind in ("get", "set"):
                raise MucError("item-not-found", "No such occupant")
            return
        if sender.real_jid.bare not in self.admins and target.real_jid.bare not in self.admins:
            # only the focus talks IQ with occupants (Jingle): a guest's forged session-initiate
            # to another guest stops here
            if kind in ("get", "set"):
                raise MucError("not-allowed", "IQs between occupants are not relayed")
            return
        attrs = dict(stanza.attrs)
        attrs["from"] = room.occupant_jid(sender.nick)
        out = Element("iq", CLIENT_NS, attrs, stanza.children)
        out.attrs.pop("to", None)
        self.send(target.real_jid, _with_to(out, target.real_to))

    def _room_info(self, room: Room) -> Element:
        q = Element("query", DISCO_INFO)
        q.sub(
            "identity",
            attrs={"category": "conference", "type": "text", "name": room.config.name or room.jid.node},
        )
        features = [
            MUC,
            "muc_temporary" if not room.config.persistent else "muc_persistent",
            "muc_public" if room.config.public else "muc_hidden",
            "muc_nonanonymous" if room.config.whois == "anyone" else "muc_semianonymous",
            "muc_membersonly" if room.config.members_only else "muc_open",
            "muc_passwordprotected" if room.config.password else "muc_unsecured",
        ]
        for var in features:
            q.sub("feature", attrs={"var": var})
        form = q.sub("x", DATA_FORMS, {"type": "result"})
        f = form.sub("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
        f.sub("value", text="http://jabber.org/protocol/muc#roominfo")
        f = form.sub("field", attrs={"var": "muc#roominfo_occupants"})
        f.sub("value", text=str(len(room.occupants)))
        f = form.sub("field", attrs={"var": "muc#roominfo_meetingId", "type": "text-single"})
        f.sub("value", text=room.meeting_id)
        return q

    def _owner(self, stanza: Element, payload: Element, room: Room, kind: str | None) -> None:
        if kind == "get":
            q = Element("query", MUC_OWNER, children=[room.config.form()])
            self.route_from_component(iq_result(stanza, q))
            return
        destroy = payload.find("destroy", MUC_OWNER)
        if destroy is not None:
            self.destroy(room, destroy.find("reason", MUC_OWNER))
            self.route_from_component(iq_result(stanza))
            return
        form = payload.find("x", DATA_FORMS)
        if form is None:
            raise MucError("bad-request", "expected a data form")
        if form.get("type") == "submit":
            room.config.apply(form)
            if self.fixed_whois is not None:
                room.config.whois = self.fixed_whois
        self.route_from_component(iq_result(stanza))

    def destroy(self, room: Room, reason: Element | None = None) -> None:
        for occ in list(room.occupants.values()):
            pres = Element(
                "presence", CLIENT_NS, {"from": room.occupant_jid(occ.nick), "type": "unavailable"}
            )
            x = pres.sub("x", MUC_USER)
            x.sub("item", attrs={"affiliation": "none", "role": "none"})
            d = x.sub("destroy", MUC_USER)
            if reason is not None:
                d.sub("reason", text=reason.text)
            self.send(occ.real_jid, _with_to(pres, occ.real_to))
            self._forget_presence(room, occ.nick)
        room.occupants.clear()
        room.by_real.clear()
        room.config.persistent = False
        self._maybe_destroy(room)

    def _admin(
        self, stanza: Element, payload: Element, room: Room, actor: Occupant, actor_aff: str, kind: str | None
    ) -> None:
        items = payload.find_all("item", MUC_ADMIN)
        if kind == "get":
            q = Element("query", MUC_ADMIN)
            for item in items:
                if item.get("affiliation"):
                    want = item.get("affiliation")
                    for jid, aff in room.affiliations.items():
                        if aff == want:
                            q.sub("item", attrs={"affiliation": aff, "jid": str(jid)})
                elif item.get("role"):
                    want = item.get("role")
                    for occ in room.occupants.values():
                        if occ.role == want:
                            q.sub(
                                "item",
                                attrs={
                                    "role": occ.role,
                                    "nick": occ.nick,
                                    "affiliation": occ.affiliation,
                                    "jid": str(occ.real_jid),
                                },
                            )
            self.route_from_component(iq_result(stanza, q))
            return
        if not items:
            raise MucError("bad-request", "no item")
        for item in items:
            reason_el = item.find("reason", MUC_ADMIN)
            reason = reason_el.text if reason_el is not None else ""
            if item.get("affiliation") is not None:
                self._set_affiliation(room, actor, actor_aff, item, reason)
            elif item.get("role") is not None:
                self._set_role(room, actor, actor_aff, item, reason)
            else:
                raise MucError("bad-request", "item needs a role or an affiliation")
        self.route_from_component(iq_result(stanza))

    def _set_role(self, room: Room, actor: Occupant, actor_aff: str, item: Element, reason: str) -> None:
        role = item.get("role")
        nick = item.get("nick")
        if role not in ROLES or not nick:
            raise MucError("bad-request", "role items need a nick and a valid role")
        target = room.occupants.get(nick)
        if target is None:
            raise MucError("item-not-found", "No such occupant")
        if target.real_jid.bare in self.admins and target is not actor:
            raise MucError("not-allowed", "The focus cannot be kicked or demoted")
        rank = AFFILIATIONS.index
        if target.affiliation in ("owner", "admin") and rank(actor_aff) > rank(target.affiliation):
            raise MucError("not-allowed", "Cannot change the role of a higher affiliation")
        if role == "none":
            self._leave(
                room, target, None, codes=("307",), actor_item={"actor": actor.nick, "reason": reason}
            )
            return
        target.role = role
        self._broadcast_presence(room, target)

    def _set_affiliation(
        self, room: Room, actor: Occupant, actor_aff: str, item: Element, reason: str
    ) -> None:
        affiliation = item.get("affiliation")
        if affiliation not in AFFILIATIONS:
            raise MucError("bad-request", "unknown affiliation")
        if actor_aff not in ("owner", "admin") or (
            affiliation in ("owner", "admin") and actor_aff != "owner"
        ):
            raise MucError("forbidden", "Not allowed to change affiliations")
        jid_text = item.get("jid")
        target: Occupant | None = None
        if jid_text:
            try:
                bare = parse_jid(jid_text).bare
            except InvalidJid:
                raise MucError("jid-malformed") from None
        elif item.get("nick") and item.get("nick") in room.occupants:
            target = room.occupants[item.get("nick") or ""]
            bare = target.real_jid.bare
        else:
            raise MucError("bad-request", "affiliation items need a jid or a nick")
        if bare in self.admins and affiliation != "owner":
            raise MucError("not-allowed", "Service admins stay owners")
        if affiliation == "none":
            room.affiliations.pop(bare, None)
        else:
            room.affiliations[bare] = affiliation
        for listener in self.affiliation_listeners:
            listener(room, bare, affiliation, actor)
        for occ in [o for o in room.occupants.values() if o.real_jid.bare == bare]:
            occ.affiliation = affiliation
            if affiliation == "outcast":
                self._leave(
                    room, occ, None, codes=("301",), actor_item={"actor": actor.nick, "reason": reason}
                )
                continue
            occ.role = (
                ROLE_FOR_AFFILIATION[affiliation]
                if affiliation in ("owner", "admin")
                else ("participant" if occ.role == "moderator" else occ.role)
            )
            self._broadcast_presence(room, occ)


def _presence_payload(stanza: Element) -> list[Element | str]:
    """The client's presence children minus the MUC join element and anything only the server
    may say (its ``muc#user`` item above all): the rest is rebroadcast verbatim."""
    return [c for c in stanza.children if isinstance(c, Element) and c.ns not in SERVER_ONLY_NS]


def _client_payload(stanza: Element) -> list[Element | str]:
    """A message's children without a ``muc#user`` payload the client made up."""
    return [c for c in stanza.children if not (isinstance(c, Element) and c.ns == MUC_USER)]


def _fwd_attrs(stanza: Element, frm: str) -> dict[str, str]:
    attrs = {k: v for k, v in stanza.attrs.items() if k not in ("to", "from")}
    attrs["from"] = frm
    return attrs


def _with_to(stanza: Element, to_escaped: bytes) -> bytes:
    head, tail = stanza.split_at_to()
    return head + to_escaped + tail

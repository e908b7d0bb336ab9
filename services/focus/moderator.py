"""The focus's moderation over XMPP: a thin adapter around :mod:`.moderation`.

* Occupant presences (with the broker's ``<identity>`` stamp) feed the decisions; a grant is a
  XEP-0045 ``muc#admin`` affiliation change to ``owner``.
* Jitsi's mute IQs to the focus (lib-jitsi-meet ``muteParticipant``):
  ``<mute xmlns='http://jitsi.org/jitmeet/audio' jid='room@muc/nick'>true</mute>`` and
  ``<mute-video xmlns='http://jitsi.org/jitmeet/video' jid=…>true</mute-video>``; the muted
  participant gets the same element with ``actor`` from the focus (as Jicofo sends it), and the
  bridge is told to drop its media of that kind.
* AV moderation: an IQ with ``<json-message xmlns='http://jitsi.org/jitmeet'>`` carrying
  ``{"type": "av_moderation", "room": …, "kind": "audio", "enable": true}`` or
  ``{…, "jidToWhitelist": "room@muc/nick"}`` (the messages of Jitsi's
  ``mod_av_moderation_component``, sent here to the room's owner). The state is published in the
  focus's room presence as ``<av-moderation xmlns='http://jitsi.org/jitmeet/av-moderation'
  audio='true|false' video='true|false'/>``; an approved participant gets a private message with
  ``{"type": "av_moderation", "approved": true, "kind": …}``. ``{…, "jidToBlacklist": …}`` turns a
  request down (or withdraws an approval, muting again): the participant gets ``"removed": true``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import xml.etree.ElementTree as ET
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common import xmpp_names
from services.common.logging import RateLimitedLogger
from services.common.xmpp_guard import send_iq_error

from .moderation import Moderation, MuteAction, Refused
from .xmpp import NS_CLIENT, NS_MUC_USER, FocusXmpp, _muc_user

log = logging.getLogger("focus.moderation")

NS_AUDIO = "http://jitsi.org/jitmeet/audio"
NS_VIDEO = "http://jitsi.org/jitmeet/video"
NS_JITMEET = "http://jitsi.org/jitmeet"
NS_AV_MODERATION = "http://jitsi.org/jitmeet/av-moderation"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
MUTE_ELEMENT = {"audio": (NS_AUDIO, "mute"), "video": (NS_VIDEO, "mute-video")}
MAX_JSON = 4096


class Moderator:
    def __init__(self, client: FocusXmpp, focus: Any, core: Moderation) -> None:
        """``focus`` is the orchestrator (its ``set_muted`` tells the bridge); ``core`` the
        moderation decisions, which the focus's recording service reads too (who is a moderator)."""
        self.client = client
        self.focus = focus
        self.core = core
        self._tasks: set[asyncio.Future[Any]] = set()
        self._log = RateLimitedLogger(log)
        client.occupant_listeners.append(self.occupant)
        for kind, (ns, name) in MUTE_ELEMENT.items():
            client.register_handler(
                Callback(
                    f"mute {kind}",
                    MatchXPath(f"{{{NS_CLIENT}}}iq/{{{ns}}}{name}"),
                    lambda iq, kind=kind: self._mute_iq(iq, kind),  # type: ignore[misc]
                )
            )
        client.register_handler(
            Callback(
                "av moderation",
                MatchXPath(f"{{{NS_CLIENT}}}iq/{{{NS_JITMEET}}}json-message"),
                self._json_iq,  # type: ignore[arg-type]
            )
        )

    def _requester(self, iq: slixmpp.Iq) -> str:
        """The real JID behind an IQ: the broker's client proxy (``focus.<domain>``) sends it to
        us from ``focus.<domain>/<the sender's full JID>``."""
        sender = iq["from"]
        if sender.bare == xmpp_names.focus_component(self.client.settings.xmpp.domain) and sender.resource:
            return str(sender.resource)
        return str(sender)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- occupants -----------------------------------------------------------------------------
    def occupant(self, room: str, nick: str, ptype: str | None, el: ET.Element) -> None:
        if ptype == "unavailable":
            for heir in self.core.left(room, nick):
                self._grant(room, heir)
            return
        x = _muc_user(el)
        item = x.find(f"{{{NS_MUC_USER}}}item") if x is not None else None
        real_jid = item.get("jid") if item is not None else None
        if not real_jid:
            return
        role = item.get("role", "participant") if item is not None else "participant"
        user = el.find(f"{{{NS_CLIENT}}}identity/{{{NS_CLIENT}}}user")
        claim_el = user.find(f"{{{NS_CLIENT}}}moderator") if user is not None else None
        claim = None if claim_el is None else (claim_el.text or "").strip().lower() == "true"
        grants = self.core.presence(room, nick, real_jid, role, user is not None, claim)
        for nick_ in grants:
            self._grant(room, nick_)
        for action in self.core.join_mutes(room, nick):
            self._spawn(self._apply(action))

    def _grant(self, room: str, nick: str) -> None:
        member = self.core.room(room).members.get(nick)
        if member is None:
            return
        log.info("moderator granted room=%s nick=%s", room, nick)
        self._spawn(self._set_owner(room, member.real_jid))

    async def _set_owner(self, room: str, real_jid: str) -> None:
        iq = self.client.make_iq_set(ito=room)
        query = ET.Element(f"{{{NS_MUC_ADMIN}}}query")
        ET.SubElement(
            query, f"{{{NS_MUC_ADMIN}}}item", {"affiliation": "owner", "jid": real_jid.split("/")[0]}
        )
        iq.append(query)
        try:
            await iq.send(timeout=self.client.settings.xmpp.iq_timeout)
        except (IqError, IqTimeout) as exc:
            self._log.warning("grant", "granting moderator in %s failed: %s", room, exc)

    # -- mutes ---------------------------------------------------------------------------------
    def _mute_iq(self, iq: slixmpp.Iq, kind: str) -> None:
        if iq["type"] in ("result", "error"):
            return
        ns, name = MUTE_ELEMENT[kind]
        el = iq.xml.find(f"{{{ns}}}{name}")
        if iq["type"] != "set" or el is None:
            send_iq_error(iq, "bad-request", "a mute request is an IQ set", "modify")
            return
        target = (el.get("jid") or "").strip()
        room, _, nick = target.partition("/")
        mute = (el.text or "").strip().lower() == "true"
        try:
            if not nick:
                raise Refused("bad-request", "jid must be room@muc/nick")
            action = self.core.mute_request(room, self._requester(iq), nick, kind, mute)
        except Refused as refused:
            self._log.info(refused.condition, "mute request from %s refused: %s", iq["from"], refused.text)
            send_iq_error(
                iq, refused.condition, refused.text, "auth" if refused.condition == "forbidden" else "cancel"
            )
            return
        self._spawn(self._apply(action, iq))

    async def _apply(self, action: MuteAction, iq: slixmpp.Iq | None = None) -> None:
        if action.bridge_changed:
            kinds = self.core.muted_kinds(action.room, action.nick)
            await self.focus.set_muted(action.room, action.nick, kinds)
            log.info(
                "%s %s room=%s nick=%s by=%s",
                "muted" if action.mute else "unmuted",
                action.kind,
                action.room,
                action.nick,
                action.actor or "itself",
            )
        if iq is not None:
            iq.reply(clear=True).send()
        if action.actor is not None and action.mute:
            ns, name = MUTE_ELEMENT[action.kind]
            tell = self.client.make_iq_set(ito=f"{action.room}/{action.nick}")
            el = ET.Element(f"{{{ns}}}{name}", {"actor": f"{action.room}/{action.actor}"})
            el.text = "true"
            tell.append(el)
            try:
                await tell.send(timeout=self.client.settings.xmpp.iq_timeout)
            except (IqError, IqTimeout):
                pass  # the bridge enforces the mute whatever the client says

    # -- AV moderation -------------------------------------------------------------------------
    def _json_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] in ("result", "error"):
            return
        el = iq.xml.find(f"{{{NS_JITMEET}}}json-message")
        text = (el.text or "") if el is not None else ""
        try:
            if iq["type"] != "set" or len(text) > MAX_JSON:
                raise Refused("bad-request", "an av_moderation request is an IQ set with a short JSON body")
            try:
                body = json.loads(text)
            except ValueError:
                raise Refused("bad-request", "not JSON") from None
            if not isinstance(body, dict) or body.get("type") != "av_moderation":
                raise Refused("feature-not-implemented", "only av_moderation messages are handled")
            room, kind = str(body.get("room", "")), str(body.get("kind", ""))
            actor = self._requester(iq)
            if "jidToWhitelist" in body:
                target_room, _, nick = str(body["jidToWhitelist"]).partition("/")
                if target_room != room or not nick:
                    raise Refused("bad-request", "jidToWhitelist must be an occupant of the room")
                self.core.approve(room, actor, kind, nick)
                self._tell(room, nick, {"type": "av_moderation", "approved": True, "kind": kind, "room": room})
                iq.reply(clear=True).send()
                return
            if "jidToBlacklist" in body:
                target_room, _, nick = str(body["jidToBlacklist"]).partition("/")
                if target_room != room or not nick:
                    raise Refused("bad-request", "jidToBlacklist must be an occupant of the room")
                again = self.core.reject(room, actor, kind, nick)
                self._tell(room, nick, {"type": "av_moderation", "removed": True, "kind": kind, "room": room})
                iq.reply(clear=True).send()
                if again is not None:
                    self._spawn(self._apply(again))
                return
            if not isinstance(body.get("enable"), bool):
                raise Refused("bad-request", "enable must be true or false")
            actions = self.core.set_av_moderation(room, actor, kind, body["enable"])
        except Refused as refused:
            self._log.info(refused.condition, "av_moderation from %s refused: %s", iq["from"], refused.text)
            send_iq_error(
                iq, refused.condition, refused.text, "auth" if refused.condition == "forbidden" else "cancel"
            )
            return
        self._publish(room)
        iq.reply(clear=True).send()
        for action in actions:
            self._spawn(self._apply(action))

    def _publish(self, room: str) -> None:
        state = self.core.room(room)
        el = ET.Element(
            f"{{{NS_AV_MODERATION}}}av-moderation",
            {kind: "true" if kind in state.av_moderation else "false" for kind in ("audio", "video")},
        )
        self.client.set_room_extension(room, "av-moderation", el)

    def _tell(self, room: str, nick: str, body: dict[str, Any]) -> None:
        """A private message from the focus's occupant to ``nick`` (approved, or removed)."""
        msg = self.client.make_message(mto=f"{room}/{nick}", mtype="chat")
        el = ET.Element(f"{{{NS_JITMEET}}}json-message")
        el.text = json.dumps(body)
        msg.append(el)
        msg.send()

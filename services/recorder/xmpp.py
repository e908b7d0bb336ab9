"""The recorder's XMPP session (slixmpp): brewery presence, Jibri IQs and Jingle from the focus.

It logs in as ``<username>@<auth-domain>/<nick>`` and joins ``jibribrewery@<internal-muc>``
with its ``<jibri-status/>`` (:mod:`services.common.jibri`), re-sent whenever it changes. The
focus, also in that room, sends start/stop IQs and the Jingle of each recording's media session to
the recorder's occupant JID; only IQs from occupants of the brewery (service accounts, which the
broker alone admits there) are accepted.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common import jibri, jingle
from services.common.jibri import JibriIq, RecorderStatus
from services.common.tasks import Background
from services.common.xmpp_guard import send_iq_error

from .config import RecorderSettings
from .service import Recorder, Refused

log = logging.getLogger("recorder.xmpp")

NS_CLIENT = "jabber:client"
NS_MUC = "http://jabber.org/protocol/muc"
RECONNECT_DELAY = 1.0


class RecorderXmpp(slixmpp.ClientXMPP):
    def __init__(self, settings: RecorderSettings, recorder: Recorder) -> None:
        x = settings.xmpp
        super().__init__(x.jid, x.password)
        self.settings = settings
        self.recorder = recorder
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self["feature_mechanisms"].unencrypted_scram = True
        self["feature_mechanisms"].unencrypted_plain = True
        self.ready = asyncio.Event()
        self._closing = False
        self._status = recorder.status()
        self.background = Background(log)
        self.add_event_handler("session_start", self._session_start)
        self.add_event_handler("disconnected", self._disconnected)
        self.register_handler(
            Callback("jibri", MatchXPath(f"{{{NS_CLIENT}}}iq/{jibri.JIBRI_TAG}"), self._jibri_iq)  # type: ignore[arg-type]
        )
        self.register_handler(
            Callback("jingle", MatchXPath(f"{{{NS_CLIENT}}}iq/{{{jingle.NS_JINGLE}}}jingle"), self._jingle_iq)  # type: ignore[arg-type]
        )

    async def start(self) -> None:
        self.connect(self.settings.xmpp.server, self.settings.xmpp.port)

    def _session_start(self, _event: object) -> None:
        self.send_presence()
        self._send_brewery_presence(join=True)
        self.ready.set()
        log.info("xmpp session started jid=%s; in %s", self.boundjid, self.settings.xmpp.brewery_jid)

    def _disconnected(self, _event: object) -> None:
        self.ready.clear()
        if not self._closing:
            log.warning("xmpp disconnected; reconnecting in %.0f s", RECONNECT_DELAY)
            self.loop.call_later(RECONNECT_DELAY, self._reconnect)

    def _reconnect(self) -> None:
        if not self._closing:
            self.connect(self.settings.xmpp.server, self.settings.xmpp.port)

    def close(self) -> None:
        self._closing = True
        self.disconnect()

    def _send_brewery_presence(self, join: bool = False) -> None:
        x = self.settings.xmpp
        presence = self.make_presence(pto=f"{x.brewery_jid}/{x.the_nick}")
        if join:
            presence.append(ET.Element(f"{{{NS_MUC}}}x"))
        presence.append(self._status.to_element())
        presence.send()

    def publish_status(self, status: RecorderStatus) -> None:
        self._status = status
        if self.ready.is_set():
            self._send_brewery_presence()

    # ------------------------------------------------------------------ in
    def _from_brewery(self, iq: slixmpp.Iq) -> bool:
        return bool(iq["from"].bare == self.settings.xmpp.brewery_jid and iq["from"].resource)

    def _error(self, iq: slixmpp.Iq, condition: str, text: str, etype: str = "cancel") -> None:
        send_iq_error(iq, condition, text, etype)

    def _jibri_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        if not self._from_brewery(iq):
            self._error(iq, "forbidden", "only the focus controls this recorder", "auth")
            return
        try:
            request = JibriIq.from_element(jibri.find_jibri(iq.xml))  # type: ignore[arg-type]
        except jibri.JibriFormatError as exc:
            self._error(iq, "bad-request", str(exc), "modify")
            return
        self.background.spawn(self._answer_jibri(iq, request), "recording request")

    async def _answer_jibri(self, iq: slixmpp.Iq, request: JibriIq) -> None:
        try:
            answer = await self.recorder.jibri_request(str(iq["from"]), request)
        except Refused as exc:
            self._error(
                iq, exc.condition, exc.text, "wait" if exc.condition == "resource-constraint" else "cancel"
            )
            return
        except Exception as exc:
            log.exception("jibri %s failed", request.action)
            self._error(iq, "internal-server-error", str(exc), "wait")
            return
        reply = iq.reply(clear=True)
        reply.append(answer.to_element())
        reply.send()

    def _jingle_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        if not self._from_brewery(iq):
            self._error(iq, "forbidden", "only the focus sends Jingle to this recorder", "auth")
            return
        try:
            message = jingle.parse_element(iq.xml.find(f"{{{jingle.NS_JINGLE}}}jingle"))  # type: ignore[arg-type]
        except jingle.JingleError as exc:
            self._error(iq, "bad-request", str(exc), "modify")
            return
        iq.reply(clear=True).send()
        self.background.spawn(self._jingle(str(iq["from"]), message), "jingle from the focus")

    async def _jingle(self, sender: str, message: jingle.Jingle) -> None:
        try:
            await self.recorder.jingle(sender, message)
        except Exception:
            log.exception("jingle %s (sid %s) failed", message.action, message.sid)

    # ------------------------------------------------------------------ out
    async def send_jingle(self, to: str, message: jingle.Jingle) -> bool:
        iq = self.make_iq_set(ito=to)
        iq.append(jingle.to_element(message))
        try:
            await iq.send(timeout=self.settings.xmpp.iq_timeout)
            return True
        except (IqError, IqTimeout) as exc:
            log.warning("jingle %s to %s not accepted: %s", message.action, to, exc)
            return False

    async def send_status(self, to: str, update: JibriIq) -> bool:
        iq = self.make_iq_set(ito=to)
        iq.append(update.to_element())
        try:
            await iq.send(timeout=self.settings.xmpp.iq_timeout)
            return True
        except (IqError, IqTimeout) as exc:
            log.warning("status %s to %s not accepted: %s", update.status, to, exc)
            return False

"""A conference participant for integration tests: real XMPP (slixmpp), real Jingle, real WebRTC (aiortc).

It does what the web client does, in Python:

1. logs in anonymously to the client host;
2. asks the focus for the room (``<conference xmlns='http://jitsi.org/protocol/focus' room=.../>``);
3. joins the MUC room with Jitsi's presence extensions (nick, stats-id, audio/video muted);
4. answers the focus's ``session-initiate``: the Jingle offer becomes an SDP offer
   (:class:`services.common.jingle_sdp.SdpOffer`), an ``RTCPeerConnection`` answers it sending one
   Opus tone and one VP8 colour, and the SDP answer goes back as ``session-accept``;
5. applies ``source-add`` / ``source-remove`` by renegotiating, follows ``session-terminate``
   (reason ``moving``: a new ``session-initiate`` follows), reports ICE failure with
   ``session-info``, and decodes what it receives, per remote owner;
6. when the offer has the ``data`` content, takes the data channel the bridge opens as its bridge
   channel (:attr:`JingleParticipant.bridge_messages`, :meth:`JingleParticipant.send_bridge_message`).

aioice skips loopback addresses; :func:`allow_loopback_ice` (from the media client) makes it offer
127.0.0.1 so everything stays on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

import slixmpp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common import jingle, jingle_sdp
from services.common.jingle import Jingle, JingleContent, JingleReason
from services.common.jingle_sdp import SdpOffer
from tests.integration.media_client import ColourTrack, ToneTrack, allow_loopback_ice

log = logging.getLogger("parley.tests.participant")

NS_FOCUS = "http://jitsi.org/protocol/focus"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_NICK = "http://jabber.org/protocol/nick"

__all__ = ["JingleParticipant", "Received", "allow_loopback_ice"]


@dataclass
class Received:
    """What this participant decoded from one remote owner."""

    video_frames: int = 0
    audio_frames: int = 0
    first_at: float | None = None
    last_at: float | None = None
    last_rgb: tuple[float, float, float] | None = None


@dataclass
class SessionLog:
    initiated_at: list[float] = field(default_factory=list)
    terminated: list[tuple[float, str | None, str | None]] = field(default_factory=list)
    source_adds: int = 0
    source_removes: int = 0
    removed_ssrcs: list[int] = field(default_factory=list)


class JingleParticipant(slixmpp.ClientXMPP):
    def __init__(
        self,
        nick: str,
        *,
        port: int,
        domain: str,
        muc_domain: str,
        focus_jid: str,
        rgb: tuple[int, int, int] = (200, 30, 30),
        tone: float = 440.0,
        media: bool = True,
        make_track: Callable[[str], MediaStreamTrack] | None = None,
    ) -> None:
        super().__init__(domain, None)
        self.make_track = make_track  # "audio"/"video" -> the track to send (default: tone, colour)
        self.nick = nick
        self.port = port
        self.muc_domain = muc_domain
        self.focus_jid = focus_jid
        self.rgb, self.tone, self.media = rgb, tone, media
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self.room: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.offer: SdpOffer | None = None
        self.sid: str | None = None
        self.bridge_session: str | None = None  # the <bridge-session id> of the current offer
        self.focus_full_jid: str | None = None
        self.received: dict[str, Received] = {}
        self.log_ = SessionLog()
        self.conference_iq_at: float | None = None
        self.session_event = asyncio.Event()
        self.sources_event = asyncio.Event()
        self._started = asyncio.Event()
        self._joined: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tracks: list[MediaStreamTrack] = []
        self.bridge_channel: RTCDataChannel | None = None
        self.bridge_messages: list[dict[str, object]] = []
        self.add_event_handler("session_start", lambda _e: self._started.set())
        self.register_handler(
            Callback(
                "jingle", MatchXPath(f"{{jabber:client}}iq/{{{jingle.NS_JINGLE}}}jingle"), self._jingle_iq
            )  # type: ignore[arg-type]
        )
        self.register_handler(Callback("presence", MatchXPath("{jabber:client}presence"), self._presence))  # type: ignore[arg-type]

    @property
    def occupant_jid(self) -> str:
        return f"{self.room}/{self.nick}"

    # ------------------------------------------------------------------ XMPP
    async def start(self, within: float = 10.0) -> None:
        self.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self._started.wait(), within)

    async def request_conference(self, room: str, within: float = 10.0) -> ET.Element:
        """The conference IQ to the focus; returns its ``<conference ready='true'/>`` answer."""
        iq = self.make_iq_set(ito=self.focus_jid)
        iq.append(ET.Element(f"{{{NS_FOCUS}}}conference", {"room": room, "machine-uid": self.nick}))
        self.conference_iq_at = time.perf_counter()
        result = await iq.send(timeout=within)
        answer = result.xml.find(f"{{{NS_FOCUS}}}conference")
        if answer is None or answer.get("ready") != "true":
            raise RuntimeError(f"focus did not make {room} ready: {result}")
        return answer

    async def join(self, room: str, within: float = 10.0) -> None:
        """Conference IQ, then MUC join with Jitsi presence extensions."""
        await self.request_conference(room, within)
        self.room = room
        self._joined = asyncio.get_running_loop().create_future()
        presence = self.make_presence(pto=self.occupant_jid)
        presence.append(ET.Element(f"{{{NS_MUC}}}x"))
        nick = ET.Element(f"{{{NS_NICK}}}nick")
        nick.text = self.nick
        presence.append(nick)
        for tag, text in (
            ("stats-id", f"{self.nick}-stats"),
            ("audiomuted", "false"),
            ("videomuted", "false"),
        ):
            el = ET.Element(f"{{jabber:client}}{tag}")
            el.text = text
            presence.append(el)
        presence.send()
        await asyncio.wait_for(self._joined, within)

    def _presence(self, stanza: slixmpp.Presence) -> None:
        sender = stanza["from"]
        if self.room is None or sender.bare != self.room or sender.resource != self.nick:
            return
        if self._joined is not None and not self._joined.done():
            if stanza.xml.get("type") == "error":
                self._joined.set_exception(RuntimeError(f"MUC join refused: {stanza}"))
            else:
                self._joined.set_result(None)

    async def leave(self) -> None:
        if self.room is not None:
            self.make_presence(pto=self.occupant_jid, ptype="unavailable").send()
        async with self._lock:  # not in the middle of a renegotiation
            await self._close_pc()

    async def stop(self) -> None:
        await self.leave()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.disconnect()

    # ------------------------------------------------------------------ Jingle in
    def _jingle_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        try:
            message = jingle.parse_element(iq.xml.find(f"{{{jingle.NS_JINGLE}}}jingle"))  # type: ignore[arg-type]
        except jingle.JingleError as exc:
            reply = iq.reply(clear=False)
            reply["type"] = "error"
            reply["error"]["condition"] = "bad-request"
            reply["error"]["text"] = str(exc)
            reply.send()
            return
        iq.reply(clear=True).send()
        self.focus_full_jid = str(iq["from"])
        task = asyncio.ensure_future(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: Jingle) -> None:
        async with self._lock:
            try:
                if message.action == "session-initiate":
                    self.log_.initiated_at.append(time.perf_counter())
                    await self._on_initiate(message)
                elif message.sid != self.sid:
                    log.warning("%s: %s for an old session %s", self.nick, message.action, message.sid)
                elif message.action == "source-add" and self.offer is not None:
                    self.log_.source_adds += 1
                    self.offer.add_sources(message)
                    await self._renegotiate()
                    self.sources_event.set()
                elif message.action == "source-remove" and self.offer is not None:
                    self.log_.source_removes += 1
                    self.log_.removed_ssrcs += [s.ssrc for ss in message.sources().values() for s in ss]
                    self.offer.remove_sources(message)
                    await self._renegotiate()
                    self.sources_event.set()
                elif message.action == "session-terminate":
                    reason = message.reason
                    self.log_.terminated.append(
                        (
                            time.perf_counter(),
                            reason.condition if reason else None,
                            reason.text if reason else None,
                        )
                    )
                    await self._close_pc()
                    self.sid = None
            except Exception:
                log.exception("%s: handling %s failed", self.nick, message.action)
                raise

    async def _on_initiate(self, message: Jingle) -> None:
        await self._close_pc()
        self.sid = message.sid
        self.bridge_session = message.bridge_session
        self.received = {}  # what arrives from now on belongs to this session
        self.offer = SdpOffer(message)
        # no ICE servers: aiortc's default is a public STUN server, and tests stay on loopback
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = pc = RTCPeerConnection(config)
        pc.on("track", self._on_track)
        pc.on("iceconnectionstatechange", self._ice_state_changed)
        pc.on("datachannel", self._on_datachannel)
        await pc.setRemoteDescription(RTCSessionDescription(self.offer.render(), "offer"))
        if self.media:
            for transceiver in pc.getTransceivers():
                if transceiver.mid in ("audio", "video"):
                    track: MediaStreamTrack
                    if self.make_track is not None:
                        track = self.make_track(transceiver.mid)
                    else:
                        track = ToneTrack(self.tone) if transceiver.mid == "audio" else ColourTrack(self.rgb)
                    self._tracks.append(track)
                    transceiver.sender.replaceTrack(track)
                    transceiver.direction = "sendrecv"
        await pc.setLocalDescription(await pc.createAnswer())
        contents = jingle_sdp.parse_sdp_answer(
            pc.localDescription.sdp, owner=self.occupant_jid, name_prefix=self.nick
        )
        accept = Jingle(
            action="session-accept",
            sid=message.sid,
            responder=str(self.boundjid),
            contents=[c for c in contents if c.name in {x.name for x in message.contents}],
            bundle=[c.name for c in message.contents],
        )
        self.session_event.set()
        await self._send_jingle(accept)

    async def _renegotiate(self) -> None:
        if self.pc is None or self.offer is None:
            return  # left or terminated meanwhile: the next session-initiate carries everything
        await self.pc.setRemoteDescription(RTCSessionDescription(self.offer.render(), "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.bridge_channel = channel
        channel.on("message", lambda text: self.bridge_messages.append(json.loads(text)))

    def send_bridge_message(self, message: dict[str, object]) -> None:
        """One bridge-channel message over the data channel (which must be open)."""
        if self.bridge_channel is None or self.bridge_channel.readyState != "open":
            raise RuntimeError(f"{self.nick} has no open bridge data channel")
        self.bridge_channel.send(json.dumps(message))

    def _ice_state_changed(self) -> None:
        if self.pc is not None and self.pc.iceConnectionState == "failed" and self.sid is not None:
            task = asyncio.ensure_future(self.report_ice_failure())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def report_ice_failure(self) -> bool:
        """What a client sends when ICE fails: ``session-info`` with ``<ice-state>failed``."""
        if self.sid is None:
            return False
        return await self._send_jingle(Jingle(action="session-info", sid=self.sid, ice_state="failed"))

    async def request_restart(self, bridge_session: str | None = None, close_pc: bool = True) -> bool:
        """What lib-jitsi-meet sends when ICE fails and the focus supports it: ``session-terminate``
        naming the bridge session with ``restart='true'``, after closing the peer connection."""
        if self.sid is None:
            return False
        message = Jingle(
            action="session-terminate",
            sid=self.sid,
            reason=JingleReason("connectivity-error", "ICE FAILED"),
            bridge_session=bridge_session or self.bridge_session,
            bridge_session_restart=True,
        )
        if close_pc:
            async with self._lock:
                await self._close_pc()
        return await self._send_jingle(message)

    async def _send_jingle(self, message: Jingle) -> bool:
        iq = self.make_iq_set(ito=self.focus_full_jid or self.focus_jid)
        iq.append(jingle.to_element(message))
        try:
            await iq.send(timeout=10)
            return True
        except (IqError, IqTimeout) as exc:
            log.warning("%s: %s not accepted: %s", self.nick, message.action, exc)
            return False

    async def add_source(self, media: str, ssrc: int) -> None:
        """Announce one more source (what unmuting a second track looks like on the wire)."""
        assert self.sid is not None
        desc = jingle.RtpDescription(media=media, sources=[jingle.Source(ssrc, f"{self.nick}-{media[0]}1")])
        await self._send_jingle(
            Jingle(action="source-add", sid=self.sid, contents=[JingleContent(name=media, description=desc)])
        )

    # ------------------------------------------------------------------ media in
    def _owner_of(self, mid: str | None) -> str | None:
        if self.offer is None:
            return None
        for slot in self.offer.slots:
            if slot.mid == mid:
                return slot.owner.rsplit("/", 1)[-1]
        return None

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.pc is None:
            return  # the session ended meanwhile
        transceiver = next((t for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        owner = self._owner_of(transceiver.mid if transceiver else None)
        if owner is None:
            return  # the local m-lines: the bridge sends nothing on them
        task = asyncio.ensure_future(self._consume(track, self.received.setdefault(owner, Received())))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, track: MediaStreamTrack, into: Received) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                into.first_at = into.first_at or now
                into.last_at = now
                if isinstance(frame, VideoFrame):
                    into.video_frames += 1
                    if into.video_frames % 5 == 1:
                        image = frame.to_ndarray(format="rgb24")
                        h, w = image.shape[:2]
                        centre = image[h // 4 : 3 * h // 4, : w // 4]
                        into.last_rgb = tuple(float(v) for v in centre.reshape(-1, 3).mean(axis=0))  # type: ignore[assignment]
                else:
                    into.audio_frames += 1

    def frames_from(self, owner: str) -> tuple[int, int]:
        r = self.received.get(owner)
        return (r.video_frames, r.audio_frames) if r else (0, 0)

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        for track in self._tracks:
            track.stop()
        self._tracks = []
        if pc is not None:
            await pc.close()


async def wait_until(predicate, within: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout``; returns whether it became true."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())

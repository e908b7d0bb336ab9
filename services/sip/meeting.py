"""The media side of calls: each call joins its meeting as a visible participant and carries
audio both ways.

The meeting leg does what Jigasi does: an XMPP session with the gateway's own account
(``jigasi@auth.<domain>``), the conference IQ to the focus, a MUC join with the caller's display
name as nick, and a Jingle answer (aiortc) to the focus's ``session-initiate`` sending one audio
source: the caller's voice, which the bridge forwards to everyone. The focus recognises the
account (by the real JID the broker stamps) and gives the leg a mixer audio channel
(``"rtp-level-relay-type": "mixer"``, Colibri): its offer carries one audio source, the bridge's
mix-minus of everyone else (``jvb-mix-a0``), and no video (last-n 0; video m-lines are answered
``inactive``). aiortc decodes that one stream for the caller; the gateway mixes nothing itself.

The caller leg is either WebRTC (a browser SIP client such as JsSIP: ICE + DTLS-SRTP + Opus,
answered by a second aiortc peer connection) or plain RTP with G.711 (a desk phone, baresip,
SIPp): one UDP socket per call, μ-law/A-law through numpy tables, 8 kHz ⇄ 48 kHz.

A moderator's mute (Jicofo's ``<mute xmlns='http://jitsi.org/jitmeet/audio'>``) silences the
caller's voice and is shown in the leg's presence (``audiomuted``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import slixmpp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common import jingle, jingle_sdp
from services.common.jingle import Jingle
from services.common.jingle_sdp import SdpOffer
from services.common.logging import RateLimitedLogger
from services.common.xmpp_guard import send_iq_error

from . import audio, dtmf, msrp
from .config import SipSettings
from .consent import MediaConsent
from .core import Call
from .transport import CallRefused

log = logging.getLogger("sip.meeting")
rl = RateLimitedLogger(log)

NS_FOCUS = "http://jitsi.org/protocol/focus"
NS_MUC = "http://jabber.org/protocol/muc"
NS_NICK = "http://jabber.org/protocol/nick"
NS_AUDIO_MUTE = "http://jitsi.org/jitmeet/audio"
MAX_QUEUED_FRAMES = 8  # 160 ms: older audio is dropped rather than delayed


class Pacer:
    """20 ms ticks on the wall clock (as aiortc's own audio tracks pace themselves)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.frames = 0

    async def wait(self) -> int:
        if self.start is None:
            self.start = time.monotonic()
        else:
            due = self.start + self.frames * 0.02
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:  # fell far behind (a loaded machine): skip ahead, do not burst
                self.start = time.monotonic() - self.frames * 0.02
        self.frames += 1
        return self.frames - 1


def _frame(pcm: np.ndarray, index: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = audio.RATE
    frame.pts = index * audio.FRAME
    frame.time_base = fractions.Fraction(1, audio.RATE)
    return frame


def _pcm(frame: Any) -> np.ndarray:
    """Mono int16 of a decoded aiortc audio frame."""
    return audio.to_mono(frame.to_ndarray(), len(frame.layout.channels))


class FrameQueue:
    """One stream of 48 kHz mono audio in 20 ms frames, bounded (older audio is dropped rather
    than delayed), and an announcement that is played instead of it while it lasts."""

    def __init__(self) -> None:
        self.frames: deque[np.ndarray] = deque()
        self.frames_in = 0
        self.frames_dropped = 0
        self.prompt: deque[np.ndarray] = deque()

    def play(self, frames: list[np.ndarray]) -> None:
        """Play ``frames`` (replacing what was playing) instead of the stream."""
        self.prompt = deque(frames)

    def push(self, pcm: np.ndarray) -> None:
        for start in range(0, len(pcm) - audio.FRAME + 1, audio.FRAME):
            if len(self.frames) >= MAX_QUEUED_FRAMES:
                self.frames.popleft()
                self.frames_dropped += 1
            self.frames.append(pcm[start : start + audio.FRAME])
            self.frames_in += 1

    def pull(self) -> np.ndarray:
        frame = self.frames.popleft() if self.frames else None
        if self.prompt:
            return self.prompt.popleft()
        return frame if frame is not None else np.zeros(audio.FRAME, np.int16)


class QueueTrack(MediaStreamTrack):
    """An audio track playing what :class:`FrameQueue` pulls, every 20 ms."""

    kind = "audio"

    def __init__(self, queue: FrameQueue) -> None:
        super().__init__()
        self.queue = queue
        self.pacer = Pacer()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self.pacer.wait()
        return _frame(self.queue.pull(), index)


def tap_telephone_events(pc: RTCPeerConnection, pt: int, on_event: Callable[[int, int, bytes], None]) -> bool:
    """RFC 4733 events from a WebRTC caller, which aiortc neither negotiates nor delivers: the
    decrypted RTP of payload type ``pt`` is routed to the audio receiver and taken there, before
    aiortc looks for a decoder (``on_event(ssrc, timestamp, payload)``); every other packet goes
    on to aiortc. False when the connection has no audio receiver with a transport yet."""
    receiver = next((t.receiver for t in pc.getTransceivers()
                     if t.kind == "audio" and t.receiver.transport is not None), None)
    if receiver is None:
        return False
    router = receiver.transport._rtp_router  # aiortc's SSRC/payload-type demultiplexer (BUNDLE)
    router.payload_type_table.setdefault(pt, set()).add(receiver)
    original = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        if packet.payload_type == pt:
            on_event(packet.ssrc, packet.timestamp, bytes(packet.payload[:16]))
            return
        await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
    return True


class MeetingLeg(slixmpp.ClientXMPP):
    """The call's participant in the meeting: XMPP, Jingle, one aiortc peer connection."""

    def __init__(self, settings: SipSettings, nick: str, voice: FrameQueue, heard: FrameQueue,
                 on_gone: Callable[[str], None]) -> None:
        x = settings.xmpp
        # one session per call, each its own resource of the gateway's account
        super().__init__(f"{x.account}/sip-{secrets.token_hex(6)}", x.password)
        self.settings = settings
        self.nick = nick
        self.voice = voice  # the caller's voice, sent into the meeting
        self.heard = heard  # the bridge's mix-minus of everyone else, for the caller
        self.on_gone = on_gone
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self["feature_mechanisms"].unencrypted_scram = True
        self["feature_mechanisms"].unencrypted_plain = True
        self._heard_track: MediaStreamTrack | None = None
        self.room: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.offer: SdpOffer | None = None
        self.sid: str | None = None
        self.focus_full_jid: str | None = None
        self.muted = False
        self.session = asyncio.Event()
        self._started = asyncio.Event()
        self._joined: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._track: QueueTrack | None = None
        self.add_event_handler("session_start", lambda _e: self._started.set())
        self.add_event_handler("disconnected", lambda _e: self._gone("XMPP session lost"))
        self.register_handler(Callback(
            "jingle", MatchXPath(f"{{jabber:client}}iq/{{{jingle.NS_JINGLE}}}jingle"), self._jingle_iq))  # type: ignore[arg-type]
        self.register_handler(Callback(
            "mute", MatchXPath(f"{{jabber:client}}iq/{{{NS_AUDIO_MUTE}}}mute"), self._mute_iq))  # type: ignore[arg-type]
        self.register_handler(Callback("presence", MatchXPath("{jabber:client}presence"), self._presence))  # type: ignore[arg-type]
        self.register_handler(Callback("chat", MatchXPath("{jabber:client}message"), self._message))  # type: ignore[arg-type]
        self.on_chat: Callable[[str, str], None] | None = None  # (nick, text) of the room's live chat
        self._closing = False
        self._connected_once = False

    @property
    def occupant_jid(self) -> str:
        return f"{self.room}/{self.nick}"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _gone(self, reason: str) -> None:
        if not self._closing:
            self._closing = True
            self.on_gone(reason)

    async def join(self, room: str, within: float) -> None:
        x = self.settings.xmpp
        if not x.password:
            raise CallRefused(503, "The gateway has no meeting account (JIGASI_XMPP_PASSWORD)")
        self._connected_once = True
        self.connect(x.server, x.port)
        await asyncio.wait_for(self._started.wait(), within)
        iq = self.make_iq_set(ito=x.focus)
        iq.append(ET.Element(f"{{{NS_FOCUS}}}conference", {"room": f"{room}@{x.muc_domain}",
                                                            "machine-uid": secrets.token_hex(8)}))
        result = await iq.send(timeout=within)
        answer = result.xml.find(f"{{{NS_FOCUS}}}conference")
        if answer is None or answer.get("ready") != "true":
            raise CallRefused(480, "The meeting is not available")
        self.room = f"{room}@{x.muc_domain}"
        self._joined = asyncio.get_running_loop().create_future()
        self._send_presence(join=True)
        await asyncio.wait_for(self._joined, within)
        await asyncio.wait_for(self.session.wait(), within)

    def _send_presence(self, join: bool = False) -> None:
        presence = self.make_presence(pto=self.occupant_jid)
        if join:
            presence.append(ET.Element(f"{{{NS_MUC}}}x"))
        nick = ET.Element(f"{{{NS_NICK}}}nick")
        nick.text = self.nick
        presence.append(nick)
        for tag, text in (("audiomuted", "true" if self.muted else "false"), ("videomuted", "true")):
            el = ET.Element(f"{{jabber:client}}{tag}")
            el.text = text
            presence.append(el)
        presence.send()

    def _presence(self, stanza: slixmpp.Presence) -> None:
        sender = stanza["from"]
        if self.room is None or sender.bare != self.room or sender.resource != self.nick:
            return
        if self._joined is not None and not self._joined.done():
            if stanza.xml.get("type") == "error":
                self._joined.set_exception(CallRefused(480, "The meeting refused the caller"))
            else:
                self._joined.set_result(None)
        elif stanza.xml.get("type") == "unavailable":
            self._gone("removed from the meeting")

    def _message(self, stanza: slixmpp.Message) -> None:
        sender = stanza["from"]
        if (self.on_chat is None or self.room is None or stanza.xml.get("type") != "groupchat"
                or sender.bare != self.room or not sender.resource or sender.resource in (self.nick, "focus")):
            return
        if stanza.xml.find("{urn:xmpp:delay}delay") is not None:  # history replayed on join
            return
        body = stanza.xml.find("{jabber:client}body")
        if body is not None and body.text:
            self.on_chat(sender.resource, body.text[:4096])

    def send_chat(self, text: str) -> None:
        """A groupchat message into the room, from this participant (the caller's nick)."""
        if self.room is not None and self.is_connected() and text:
            self.make_message(mto=self.room, mbody=text, mtype="groupchat").send()

    def _mute_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set" or not self._from_focus(iq):
            return
        el = iq.xml.find(f"{{{NS_AUDIO_MUTE}}}mute")
        self.muted = (el is not None and (el.text or "").strip() == "true")
        iq.reply(clear=True).send()
        log.info("%s in %s %s by the meeting", self.nick, self.room, "muted" if self.muted else "unmuted")
        self._send_presence()

    def _from_focus(self, iq: slixmpp.Iq) -> bool:
        """Only the room's focus occupant (the reserved nick) mutes us or sends Jingle."""
        return self.room is not None and iq["from"].bare == self.room and iq["from"].resource == "focus"

    def _jingle_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        if not self._from_focus(iq):
            send_iq_error(iq, "not-allowed", "Jingle is taken from the room's focus only", "cancel")
            return
        try:
            message = jingle.parse_element(iq.xml.find(f"{{{jingle.NS_JINGLE}}}jingle"))  # type: ignore[arg-type]
        except jingle.JingleError as exc:
            send_iq_error(iq, "bad-request", str(exc)[:200], "modify")
            return
        iq.reply(clear=True).send()
        self.focus_full_jid = str(iq["from"])
        self._spawn(self._handle(message))

    async def _handle(self, message: Jingle) -> None:
        async with self._lock:
            if message.action == "session-initiate":
                await self._initiate(message)
            elif message.sid != self.sid or self.offer is None or self.pc is None:
                return
            elif message.action in ("source-add", "source-remove"):
                if message.action == "source-add":
                    self.offer.add_sources(message)
                else:
                    self.offer.remove_sources(message)
                await self.pc.setRemoteDescription(RTCSessionDescription(self.offer.render(), "offer"))
                self._inactivate_video()
                await self.pc.setLocalDescription(await self.pc.createAnswer())
            elif message.action == "session-terminate":
                reason = message.reason
                await self._close_pc()
                self.sid = None
                if not (reason and reason.text == "moving"):
                    self._gone("the meeting ended the session")

    def _inactivate_video(self) -> None:
        assert self.pc is not None
        for t in self.pc.getTransceivers():
            if t.kind == "video":
                t.direction = "inactive"

    async def _initiate(self, message: Jingle) -> None:
        await self._close_pc()
        self.sid = message.sid
        self.offer = SdpOffer(message)
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(self.offer.render(), "offer"))
        self._track = QueueTrack(self.voice)
        for t in pc.getTransceivers():
            if t.mid == "audio":
                t.sender.replaceTrack(self._track)
                t.direction = "sendrecv"
        self._inactivate_video()
        await pc.setLocalDescription(await pc.createAnswer())
        contents = jingle_sdp.parse_sdp_answer(pc.localDescription.sdp, owner=self.occupant_jid, name_prefix=self.nick)
        wanted = {c.name for c in message.contents if c.name != "video"}
        accept = Jingle(action="session-accept", sid=message.sid, responder=str(self.boundjid),
                        contents=[c for c in contents if c.name in wanted], bundle=sorted(wanted))
        if self._closing:  # the call ended while this answer was being made
            return
        iq = self.make_iq_set(ito=self.focus_full_jid or self.settings.xmpp.focus)
        iq.append(jingle.to_element(accept))
        try:
            await iq.send(timeout=self.settings.xmpp.iq_timeout)
        except (IqError, IqTimeout) as exc:
            if not self._closing:
                rl.warning("accept", "%s: session-accept not accepted: %s", self.nick, str(exc)[:200])
            return
        self.session.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        """The bridge's mixed stream (the one audio source of the offer), decoded by aiortc; a
        newer track (a new session) takes over."""
        self._heard_track = track
        with contextlib.suppress(MediaStreamError):
            while self._heard_track is track:
                self.heard.push(_pcm(await track.recv()))

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        if self._track is not None:
            self._track.stop()
            self._track = None
        if pc is not None:
            await pc.close()

    async def leave(self) -> None:
        self._closing = True
        if self.room is not None and self.is_connected():
            self.make_presence(pto=self.occupant_jid, ptype="unavailable").send()
        async with self._lock:
            await self._close_pc()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connected_once:  # a dial-in caller that never got past the PIN has no session
            self.disconnect()


class PlainRtp(asyncio.DatagramProtocol):
    """One plain-RTP (G.711) caller: decode what it sends into the voice queue, send it what the
    meeting leg hears (the bridge's mix-minus)."""

    def __init__(self, pt: int, remote: tuple[str, int], voice: FrameQueue, heard: FrameQueue,
                 muted: Callable[[], bool], telephone_event: int | None = None,
                 on_digit: Callable[[str], None] | None = None, unverified_send: float = 1.0,
                 consent_timeout: float = 30.0) -> None:
        self.pt = pt
        # no media to an address that sends none (services/sip/consent.py)
        self.consent = MediaConsent(unverified_send, consent_timeout, time.monotonic())
        self.packets_held = 0
        self.telephone_event = telephone_event
        self.on_digit = on_digit
        self.events = dtmf.EventDecoder()
        self.remote = remote
        self.voice, self.heard, self.muted = voice, heard, muted
        self.transport: asyncio.DatagramTransport | None = None
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.packets_in = 0
        self.packets_out = 0
        self.lost = 0
        self._expected: int | None = None
        self._source_ssrc: int | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._task = asyncio.ensure_future(self._send_loop())

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if addr[0] != self.remote[0]:  # only the caller's media address (its port may differ: NAT)
            return
        packet = audio.parse_rtp(data)
        if packet is None or len(packet.payload) > 1920:
            return
        self.consent.heard(time.monotonic())
        if packet.pt == self.telephone_event and self.telephone_event is not None:
            self.remote = (addr[0], addr[1])
            digit = self.events.feed(packet.ssrc, packet.timestamp, packet.payload)
            if digit is not None and self.on_digit is not None:
                self.on_digit(digit)
            return
        if packet.pt not in (audio.PCMU, audio.PCMA):
            return
        if self._source_ssrc != packet.ssrc:
            self._source_ssrc, self._expected = packet.ssrc, None
        if self._expected is not None:
            gap = (packet.seq - self._expected) & 0xFFFF
            if gap < 1000:
                self.lost += gap
            elif gap > 0xFFFF - 100:  # late or duplicate: dropped
                return
        self._expected = (packet.seq + 1) & 0xFFFF
        self.remote = (addr[0], addr[1])  # symmetric RTP
        self.packets_in += 1
        if self.muted():
            return
        self.voice.push(audio.up_8k_to_48k(audio.g711_decode(packet.payload, packet.pt)))

    async def _send_loop(self) -> None:
        pacer = Pacer()
        while self.transport is not None:
            await pacer.wait()
            pcm = audio.down_48k_to_8k(self.heard.pull())
            if not self.consent.may_send(time.monotonic()):
                self.ts = (self.ts + audio.G711_FRAME) & 0xFFFFFFFF  # the clock runs on
                self.packets_held += 1
                if self.packets_held == 1:
                    rl.info("no-rtp", "no RTP from %s:%d: its media held until some arrives",
                            self.remote[0], self.remote[1])
                continue
            payload = audio.g711_encode(pcm, self.pt)
            self.transport.sendto(audio.rtp_packet(self.pt, self.seq, self.ts, self.ssrc, payload,
                                                   marker=self.packets_out == 0), self.remote)
            self.seq = (self.seq + 1) & 0xFFFF
            self.ts = (self.ts + audio.G711_FRAME) & 0xFFFFFFFF
            self.packets_out += 1

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class CallSession:
    def __init__(self, call: Call, settings: SipSettings, on_gone: Callable[[str], None]) -> None:
        self.call = call
        self.voice = FrameQueue()
        self.heard = FrameQueue()
        self.leg = MeetingLeg(settings, call.display_name, self.voice, self.heard, on_gone)
        self.kind = audio.sdp_kind(call.offer.decode("utf-8", "replace"))
        self.caller_pc: RTCPeerConnection | None = None
        self.rtp: PlainRtp | None = None
        self.session_id = secrets.randbits(40)
        self.version = 1
        self.plain_offer: audio.PlainOffer | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        # dial-in: the PIN entry, then the room it named
        self.pin: dtmf.PinEntry | None = None
        self.digits: asyncio.Queue[str] = asyncio.Queue(maxsize=64)
        self.digit_rate = dtmf.DigitRate()  # whatever carries them: RTP events, INFO
        self.webrtc_events = dtmf.EventDecoder()  # RFC 4733 from a WebRTC caller (tapped)
        self.telephone_event: int | None = None  # its payload type, when negotiated
        self.room: str | None = None if call.room == settings.dial_in.number else call.room
        self.msrp: msrp.MsrpLink | None = None
        self.msrp_id = ""

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def digit(self, d: str) -> None:
        if not self.digit_rate.allow(time.monotonic()):
            rl.warning("dtmf-rate", "call %s: DTMF beyond %.0f digits/s dropped", self.call.call_id[:40],
                       dtmf.RATE)
            return
        with contextlib.suppress(asyncio.QueueFull):  # a flood of events: the entry is bounded anyway
            self.digits.put_nowait(d)

    def webrtc_event(self, ssrc: int, timestamp: int, payload: bytes) -> None:
        digit = self.webrtc_events.feed(ssrc, timestamp, payload)
        if digit is not None:
            self.digit(digit)

    def view(self) -> dict[str, object]:
        out: dict[str, object] = {"media": self.kind, "muted": self.leg.muted,
                                  "heard_frames": self.heard.frames_in, "heard_dropped": self.heard.frames_dropped}
        if self.msrp is not None:
            m = self.msrp.session
            out.update(msrp_connected=self.msrp.writer is not None, msrp_in=m.received_messages,
                       msrp_out=m.sent_messages, msrp_refused=m.refused)
        if self.pin is not None:
            out.update(dial_in=True, pin_attempt=self.pin.attempt, room=self.room or self.call.room)
        if self.rtp is not None:
            out.update(rtp_in=self.rtp.packets_in, rtp_out=self.rtp.packets_out, rtp_held=self.rtp.packets_held, rtp_lost=self.rtp.lost,
                       dtmf_events=self.rtp.events.events)
        elif self.telephone_event is not None:
            out.update(dtmf_events=self.webrtc_events.events)
        out.update(dtmf_dropped=self.digit_rate.dropped)
        return out

    async def close(self) -> None:
        if self.rtp is not None:
            self.rtp.close()
        if self.caller_pc is not None:
            await self.caller_pc.close()
        for task in list(self.tasks):
            task.cancel()
        await self.leg.leave()


class MeetingMedia:
    """:class:`~services.sip.transport.CallMedia` joining meetings through the focus."""

    def __init__(self, settings: SipSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, CallSession] = {}
        self.hangup: Callable[[str, str], None] = lambda key, reason: None
        # joins at once: a burst of calls queues here rather than starving every join of CPU
        self._joining = asyncio.Semaphore(settings.limits.max_joining)
        # MSRP sessions by the session id in the gateway's a=path, for the WebSocket that names it
        self.msrp_links: dict[str, msrp.MsrpLink] = {}
        self.msrp_authority = f"{settings.public_host}:{settings.websocket.port}"  # set once listening
        self.msrp_limits = msrp.SessionLimits(
            max_message=settings.msrp.max_message_size, max_partial=settings.msrp.max_partial_messages,
            rate=settings.msrp.rate, burst=settings.msrp.burst)

    def msrp_link(self, session_id: str) -> msrp.MsrpLink | None:
        return self.msrp_links.get(session_id)

    def view(self, key: str) -> dict[str, object]:
        session = self.sessions.get(key)
        return session.view() if session else {}

    def digit(self, call: Call, digit: str) -> None:
        """A digit the caller sent as SIP INFO (RFC 6086): to its PIN entry, if it has one."""
        session = self.sessions.get(call.key)
        if session is not None and session.pin is not None:
            session.digit(digit)

    async def offered(self, call: Call) -> bytes:
        sdp = call.offer.decode("utf-8", "replace")
        kind = audio.sdp_kind(sdp)
        if kind == "unsupported" and "m=audio" not in sdp:
            try:
                message = msrp.parse_message_offer(sdp)
            except ValueError as exc:
                raise CallRefused(488, f"Bad SDP: {exc}") from exc
            if message is not None:
                return await self._chat(call, message)
        if kind == "unsupported":
            raise CallRefused(488, "Offer audio over RTP/AVP (G.711) or WebRTC (DTLS-SRTP)")
        plain: audio.PlainOffer | None = None
        pt: int | None = None
        if kind == "plain":
            try:
                plain = audio.parse_plain_offer(sdp)
            except ValueError as exc:
                raise CallRefused(488, f"Bad SDP: {exc}") from exc
            pt = audio.choose_g711(plain)
            if pt is None:
                raise CallRefused(488, "Offer PCMU or PCMA")
        session = CallSession(call, self.settings, lambda reason: self.hangup(call.key, reason))
        if session.room is None:
            return await self._dial_in(session, sdp, plain, pt)
        self.sessions[call.key] = session
        try:
            async with self._joining:
                await session.leg.join(call.room, self.settings.limits.offer_timeout * 0.8)
            if plain is not None and pt is not None:
                return (await self._plain(session, plain, pt)).encode()
            return (await self._webrtc(session, sdp)).encode()
        except BaseException:
            self.sessions.pop(call.key, None)
            await session.close()
            raise

    async def _chat(self, call: Call, offer: msrp.MessageOffer) -> bytes:
        """An MSRP session (RFC 4975 over WebSocket, RFC 7977) relayed to and from the room's chat:
        the caller joins as a participant (muted: no voice) and its messages carry its nick."""
        if not offer.proto.startswith("TCP/WS"):
            raise CallRefused(488, "MSRP is offered over WebSocket only (TCP/WS/MSRP, TCP/WSS/MSRP)")
        if not msrp.accepts_text(offer):
            raise CallRefused(488, "MSRP sessions carry text/plain")
        session = CallSession(call, self.settings, lambda reason: self.hangup(call.key, reason))
        session.kind = "msrp"
        session.leg.muted = True
        session.msrp_id = secrets.token_urlsafe(12)
        local_path = f"msrp://{self.msrp_authority}/{session.msrp_id};ws"
        link = msrp.MsrpLink(msrp.MsrpSession(local_path, offer.path, self.msrp_limits), session.leg.send_chat)
        session.msrp = link
        session.leg.on_chat = lambda nick, text: link.send_text(f"{nick}: {text}")
        self.sessions[call.key] = session
        try:
            async with self._joining:
                await session.leg.join(call.room, self.settings.limits.offer_timeout * 0.8)
        except BaseException:
            self.sessions.pop(call.key, None)
            await session.close()
            raise
        self.msrp_links[session.msrp_id] = link
        host = self.settings.public_host
        return msrp.message_answer(offer, local_path, host, session.session_id).encode()

    async def _dial_in(self, session: CallSession, sdp: str, plain: audio.PlainOffer | None,
                       pt: int | None) -> bytes:
        """Answer at once, prompt for the PIN, join the room it names (or hang up). Digits come as
        RFC 4733 events (G.711: telephone-event/8000; WebRTC: telephone-event/48000) or SIP INFO."""
        dial_in = self.settings.dial_in
        if plain is not None and (pt is None or plain.telephone_event is None):
            raise CallRefused(488, "Dial-in needs G.711 with telephone-event/8000 (RFC 4733)")
        if not dial_in.pins:
            raise CallRefused(404, "No dial-in PINs are configured")
        self.sessions[session.call.key] = session
        try:
            if plain is not None and pt is not None:
                answer = await self._plain(session, plain, pt)
            else:
                answer = await self._webrtc(session, sdp)
        except BaseException:
            self.sessions.pop(session.call.key, None)
            await session.close()
            raise
        session.pin = dtmf.PinEntry(dial_in.rules)
        session.spawn(self._collect_pin(session, session.pin))
        return answer.encode()

    async def _collect_pin(self, session: CallSession, entry: dtmf.PinEntry) -> None:
        key = session.call.key
        loop = asyncio.get_running_loop()
        decision: dtmf.Decision | None = entry.start(loop.time())
        while True:
            if isinstance(decision, dtmf.Prompt):
                session.heard.play(audio.prompt_frames(*((330.0, 3) if decision.retry else (440.0, 2))))
            elif isinstance(decision, dtmf.HangUp):
                log.info("dial-in call %s: %s, hanging up", session.call.call_id[:40], decision.reason)
                self.hangup(key, f"dial-in: {decision.reason}")
                return
            elif isinstance(decision, dtmf.Join):
                session.heard.play([])
                session.room = decision.room
                log.info("dial-in call %s: PIN accepted, joining %s", session.call.call_id[:40], decision.room)
                try:
                    async with self._joining:
                        await session.leg.join(decision.room, self.settings.limits.offer_timeout * 0.8)
                except (Exception, TimeoutError) as exc:
                    log.warning("dial-in call %s cannot join %s: %s", session.call.call_id[:40], decision.room,
                                str(exc)[:200])
                    self.hangup(key, "dial-in: cannot join the meeting")
                return
            deadline = entry.next_deadline()
            timeout = 0.0 if deadline is None else max(0.0, deadline - loop.time())
            try:
                digit = await asyncio.wait_for(session.digits.get(), timeout)
            except TimeoutError:
                decision = entry.tick(loop.time())
            else:
                decision = entry.digit(digit, loop.time())

    async def _plain(self, session: CallSession, offer: audio.PlainOffer, pt: int) -> str:
        loop = asyncio.get_running_loop()
        host = self.settings.media.rtp_host
        _, proto = await loop.create_datagram_endpoint(
            lambda: PlainRtp(pt, (offer.address, offer.port), session.voice, session.heard,
                             lambda: session.leg.muted, offer.telephone_event, session.digit,
                             self.settings.media.unverified_send, self.settings.media.consent_timeout),
            local_addr=(host, 0),
        )
        session.rtp = proto
        session.plain_offer = offer
        port = proto.transport.get_extra_info("sockname")[1] if proto.transport else 0
        return audio.plain_answer(offer, pt, self.settings.public_host, port, session.session_id)

    async def _webrtc(self, session: CallSession, sdp: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session.caller_pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                task = asyncio.ensure_future(self._caller_voice(session, track))
                session.tasks.add(task)
                task.add_done_callback(session.tasks.discard)

        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        for t in pc.getTransceivers():
            if t.kind == "audio":
                t.sender.replaceTrack(QueueTrack(session.heard))
                t.direction = "sendrecv"
            else:
                t.direction = "inactive"
        await pc.setLocalDescription(await pc.createAnswer())
        return self._with_dtmf(session, sdp, pc.localDescription.sdp)

    def _with_dtmf(self, session: CallSession, offer: str, answer: str) -> str:
        """Accept the caller's telephone-event/48000 (RFC 4733) in the answer and tap its events."""
        pt = audio.telephone_event_pt(offer)
        if pt is None or session.caller_pc is None:
            return answer
        if session.telephone_event != pt:
            if not tap_telephone_events(session.caller_pc, pt, session.webrtc_event):
                return answer
            session.telephone_event = pt
        return audio.with_telephone_event(answer, pt)

    async def _caller_voice(self, session: CallSession, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if session.leg.muted:
                    continue
                pcm = _pcm(frame)
                session.voice.push(pcm)

    async def reoffered(self, call: Call, sdp: bytes) -> bytes:
        session = self.sessions.get(call.key)
        if session is None:
            raise CallRefused(481, "No such call")
        text = sdp.decode("utf-8", "replace")
        if session.rtp is not None:
            try:
                offer = audio.parse_plain_offer(text)
            except ValueError as exc:
                raise CallRefused(488, f"Bad SDP: {exc}") from exc
            pt = audio.choose_g711(offer)
            if pt is None or pt != session.rtp.pt:
                raise CallRefused(488, "The codec cannot change in this call")
            session.rtp.remote = (offer.address, offer.port)
            session.version += 1
            port = session.rtp.transport.get_extra_info("sockname")[1] if session.rtp.transport else 0
            return audio.plain_answer(offer, pt, self.settings.public_host, port, session.session_id,
                                      session.version).encode()
        if session.caller_pc is None:
            raise CallRefused(488, "No media session")
        await session.caller_pc.setRemoteDescription(RTCSessionDescription(text, "offer"))
        await session.caller_pc.setLocalDescription(await session.caller_pc.createAnswer())
        return self._with_dtmf(session, text, session.caller_pc.localDescription.sdp).encode()

    async def ended(self, call: Call, reason: str) -> None:
        session = self.sessions.pop(call.key, None)
        if session is not None and session.msrp is not None:
            session.msrp.closed = True
            self.msrp_links.pop(session.msrp_id, None)
        if session is not None:
            await session.close()

    async def close(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)

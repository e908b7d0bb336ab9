"""The recorder's media session: one receive-only WebRTC peer of the bridge per recording.

The focus invites the recorder like a participant that sends nothing (:mod:`services.focus.jibri`):
a Jingle ``session-initiate`` whose offer (:class:`services.common.jingle_sdp.SdpOffer`) has one
``sendonly`` line per remote participant and media. aiortc answers it (``recvonly``, no sources:
nobody sees the recorder) and receives every stream over ICE/DTLS-SRTP, as a browser would.

Each aiortc receiver's packet handling is replaced by the recorder's own (:mod:`.receive`), and
the transport hands it the packets of known SSRCs with their fixed header parsed only: it keeps what a receiver owes its sender (receiver reports, NACK, PLI, a fixed REMB) and hands every
complete encoded frame (VP8 frame, Opus packet) to the recording at once, which decodes it
itself, once, where it is needed (:mod:`.composite`); aiortc's decoder threads get nothing to do.
Every packet's arrival time and timestamp feed that track's :class:`~.sync.TrackClock`. When the
composer wants a key frame (before the first one, after a frame that did not decode), the
receiver sends the sender a PLI (RFC 4585 section 6.3.1) at most every
:data:`.receive.PLI_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from services.common import bridge_channel as bc
from services.common import jingle_sdp
from services.common.jingle import Jingle
from services.common.jingle_sdp import SdpOffer

from .bridge_link import BridgeLink, channel_url
from .receive import RecorderReceive, RecorderRoute
from .sync import TrackClock

log = logging.getLogger("recorder.media")

# owner, kind, frame, capture time -> True when a key frame is wanted
EncodedSink = Callable[[str, str, bytes, float], bool]


class MediaSession:
    """One Jingle session with the bridge for one recording."""

    def __init__(
        self,
        sid: str,
        offer: Jingle,
        on_encoded: EncodedSink,
        receive_bitrate: int,
        on_speaker: Callable[[bc.DominantSpeakerEndpointChangeEvent], None] | None = None,
        constraints: Callable[[dict[str, list[str]]], bc.ReceiverVideoConstraints] | None = None,
    ) -> None:
        self.sid = sid
        self.receive_bitrate = receive_bitrate
        self.offer = SdpOffer(offer)
        self.on_encoded = on_encoded
        self.on_speaker = on_speaker
        self.constraints = constraints
        self.bridge: BridgeLink | None = None
        self._loop = asyncio.get_running_loop()
        self.pc: RTCPeerConnection | None = None
        self.tracks: dict[str, str] = {}  # mid -> owner nick
        self._lock = asyncio.Lock()  # renegotiations and close, one at a time
        self.receivers: list[RecorderReceive] = []
        self.owners: dict[int, str] = {}  # id(receiver) -> owner nick

    async def answer(self, responder: str) -> Jingle:
        """Build the peer connection and the ``session-accept``."""
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = pc = RTCPeerConnection(config)
        pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(self.offer.render(), "offer"))
        for transceiver in pc.getTransceivers():
            transceiver.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        contents = jingle_sdp.parse_sdp_answer(pc.localDescription.sdp)
        names = {c.name for c in self.offer.offer.contents}
        own = []
        for content in contents:
            if content.name not in names:
                continue
            if content.description is not None:  # the recorder sends nothing: announce no source
                content = replace(
                    content, description=replace(content.description, sources=[], ssrc_groups=[])
                )
            own.append(content)
        return Jingle(action="session-accept", sid=self.sid, responder=responder, contents=own,
                      bundle=[c.name for c in self.offer.offer.contents])  # fmt: skip

    async def sources(self, message: Jingle) -> None:
        """``source-add`` / ``source-remove``: renegotiate (one at a time, never after close)."""
        async with self._lock:
            if message.action == "source-add":
                self.offer.add_sources(message)
            else:
                self.offer.remove_sources(message)
            pc = self.pc
            if pc is None:
                return
            await pc.setRemoteDescription(RTCSessionDescription(self.offer.render(), "offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.direction != "inactive":
                    transceiver.direction = "recvonly"
            await pc.setLocalDescription(await pc.createAnswer())

    # ------------------------------------------------------------------ bridge channel
    def open_bridge_channel(self, origin: str = "") -> None:
        """Open the bridge channel the offer names (:mod:`.bridge_link`), if it names one."""
        offered = self.offer.transport.web_socket
        if not offered or self.pc is None:
            log.info("session %s: no bridge channel offered; no speaker events, no constraints", self.sid)
            return
        try:
            url = channel_url(offered, origin)
        except ValueError as exc:
            log.warning("session %s: %s", self.sid, exc)
            return
        self.bridge = BridgeLink(url, self._speaker)
        self.bridge.start()
        self.refresh_constraints()

    def _speaker(self, event: bc.DominantSpeakerEndpointChangeEvent) -> None:
        if self.on_speaker is not None:
            self.on_speaker(event)

    def video_sources(self) -> dict[str, list[str]]:
        """Video source names (``<endpoint>-v0``) by owner nick, from the offer."""
        out: dict[str, list[str]] = {}
        for slot in self.offer.slots:
            if slot.media == "video" and slot.active:
                owner = slot.owner.rsplit("/", 1)[-1]
                names = out.setdefault(owner, [])
                for source in slot.sources:
                    if source.name and source.name not in names:
                        names.append(source.name)
        return out

    def refresh_constraints(self) -> None:
        """Send the constraints for the current picture (event loop only)."""
        if self.bridge is not None and self.constraints is not None:
            self.bridge.send_constraints(self.constraints(self.video_sources()))

    def arrangement_changed(self, _arranged: object) -> None:
        """The composer's picture changed (its thread): refresh the constraints on the loop."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the recorder is going away
            self._loop.call_soon_threadsafe(self.refresh_constraints)

    def _owner(self, mid: str | None) -> str | None:
        for slot in self.offer.slots:
            if slot.mid == mid:
                return slot.owner.rsplit("/", 1)[-1]
        return None

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.pc is None:
            return
        transceiver = next((t for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        owner = self._owner(transceiver.mid if transceiver else None)
        if transceiver is None or owner is None:
            return  # our own (unused) lines
        kind = track.kind
        clock = TrackClock(rate=90000 if kind == "video" else 48000)

        def on_frame(_codec: str, data: bytes, ts: int) -> None:
            at = clock.wall(ts)
            if at is not None and self.on_encoded(owner, kind, data, at):
                receive.want_key_frame()

        receive = RecorderReceive(transceiver.receiver, clock, on_frame, self.receive_bitrate)
        receive.install()
        RecorderRoute.of(transceiver.receiver.transport).add(receive)
        self.receivers.append(receive)
        self.owners[id(receive)] = owner
        log.info("receiving %s of %s (mid %s)", kind, owner, transceiver.mid)

    @property
    def packets(self) -> int:
        """RTP packets received so far (all tracks)."""
        return sum(r.packets for r in self.receivers)

    def packets_by_owner(self) -> dict[str, int]:
        """RTP packets received so far by participant (audio and video): whose media reaches
        the recording, e.g. for ``/recordings``."""
        out: dict[str, int] = {}
        for r in self.receivers:
            owner = self.owners.get(id(r), "")
            out[owner] = out.get(owner, 0) + r.packets
        return out

    async def close(self) -> None:
        pc, self.pc = self.pc, None  # renegotiations from now on do nothing
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            await bridge.close()
        async with self._lock:
            if pc is not None:
                await pc.close()

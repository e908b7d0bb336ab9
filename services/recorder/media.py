"""The recorder's media session: one receive-only WebRTC peer of the bridge per recording.

The focus invites the recorder like a participant that sends nothing (:mod:`services.focus.jibri`):
a Jingle ``session-initiate`` whose offer (:class:`services.common.jingle_sdp.SdpOffer`) has one
``sendonly`` line per remote participant and media. aiortc answers it (``recvonly``, no sources:
nobody sees the recorder) and receives every stream over ICE/DTLS-SRTP, as a browser would.

Hooks on each aiortc receiver give the recorder the encoded media, which it decodes itself, once,
where it is needed (:mod:`.composite`), instead of in aiortc's decoder thread per track:

* every RTP packet's arrival time and timestamp feed that track's :class:`~.sync.TrackClock`
  (the receiver's own timestamp mapping is replaced by a plain unwrapper);
* every complete frame the jitter buffer hands to the decoder is taken out as it is (VP8 frame,
  Opus packet) and given to the recording (per-participant WebM files, composed output); aiortc's
  decoder thread gets nothing to do. When the composer wants a key frame (before the first one,
  after a frame that did not decode), the receiver's own "decoder error" flag is raised, on which
  aiortc sends the sender a PLI (RFC 4585 section 6.3.1), at most every :data:`PLI_INTERVAL`.

The hooks use aiortc internals (name-mangled attributes of ``RTCRtpReceiver`` in aiortc 1.16,
pinned in ``pyproject.toml``); :func:`hook_receiver` checks they exist and fails loudly if not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from services.common import bridge_channel as bc
from services.common import jingle_sdp
from services.common.jingle import Jingle
from services.common.jingle_sdp import SdpOffer
from services.common.logging import RateLimitedLogger

from .bridge_link import BridgeLink, channel_url
from .sync import TrackClock, Unwrapper

log = logging.getLogger("recorder.media")
_limited = RateLimitedLogger(log)  # what a sender's frames cause: a line now and then

# owner, kind, frame, capture time -> True when a key frame is wanted
EncodedSink = Callable[[str, str, bytes, float], bool]
PLI_INTERVAL = 0.3  # seconds between two key frame requests for one track


class _UnwrappingMapper:
    """Stands in for aiortc's TimestampMapper: the unwrapped RTP timestamp itself."""

    def __init__(self) -> None:
        self.unwrap = Unwrapper()

    def map(self, timestamp: int) -> int:
        return self.unwrap(timestamp)


class _FrameQueue(queue.Queue):  # type: ignore[type-arg]
    """The receiver's decoder queue: each encoded frame goes to ``sink``, not to the decoder
    thread, which only ever gets the final ``None`` (and ends)."""

    def __init__(self, sink: Callable[[str, bytes, int], None]) -> None:
        super().__init__()
        self.sink = sink

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(item, block, timeout)
            return
        codec, frame = item
        try:
            self.sink(codec.name, bytes(frame.data), frame.timestamp)
        except Exception as exc:  # one bad frame must not stop the receiver
            _limited.warning(("frame", type(exc)), "frame handler failed: %r", exc)


def hook_receiver(
    receiver: RTCRtpReceiver, clock: TrackClock, on_frame: Callable[[str, bytes, int], None]
) -> Callable[[], None]:
    """Install the hooks (before the receiver starts, i.e. from the ``track`` event); returns a
    function asking the sender for a key frame (event loop thread)."""
    for name in (
        "_RTCRtpReceiver__timestamp_mapper",
        "_RTCRtpReceiver__decoder_queue",
        "_RTCRtpReceiver__decoder_error",
    ):
        if not hasattr(receiver, name):
            raise RuntimeError(f"aiortc changed: RTCRtpReceiver has no {name}")
    receiver._RTCRtpReceiver__timestamp_mapper = _UnwrappingMapper()  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__decoder_queue = _FrameQueue(on_frame)  # type: ignore[attr-defined]
    decoder_error: threading.Event = receiver._RTCRtpReceiver__decoder_error  # type: ignore[attr-defined]
    original = receiver._handle_rtp_packet
    unwrap = Unwrapper()

    async def handle_rtp_packet(packet: Any, arrival_time_ms: int) -> None:
        clock.observe(time.monotonic(), unwrap(packet.timestamp))
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
    last_request = [-PLI_INTERVAL]

    def want_key_frame() -> None:
        now = time.monotonic()
        if now - last_request[0] >= PLI_INTERVAL:
            last_request[0] = now
            decoder_error.set()  # aiortc sends a PLI with its next packet (video only)

    return want_key_frame


class MediaSession:
    """One Jingle session with the bridge for one recording."""

    def __init__(
        self,
        sid: str,
        offer: Jingle,
        on_encoded: EncodedSink,
        on_speaker: Callable[[bc.DominantSpeakerEndpointChangeEvent], None] | None = None,
        constraints: Callable[[dict[str, list[str]]], bc.ReceiverVideoConstraints] | None = None,
    ) -> None:
        self.sid = sid
        self.offer = SdpOffer(offer)
        self.on_encoded = on_encoded
        self.on_speaker = on_speaker
        self.constraints = constraints
        self.bridge: BridgeLink | None = None
        self._loop = asyncio.get_running_loop()
        self.pc: RTCPeerConnection | None = None
        self.tracks: dict[str, str] = {}  # mid -> owner nick
        self._lock = asyncio.Lock()  # renegotiations and close, one at a time
        self.packets = 0

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
                want_key_frame()

        want_key_frame = hook_receiver(transceiver.receiver, clock, on_frame)
        log.info("receiving %s of %s (mid %s)", kind, owner, transceiver.mid)

    async def close(self) -> None:
        pc, self.pc = self.pc, None  # renegotiations from now on do nothing
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            await bridge.close()
        async with self._lock:
            if pc is not None:
                await pc.close()

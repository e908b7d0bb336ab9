"""A conference participant for media tests: aiortc with real VP8 and Opus encoders and decoders.

Each participant sends video of one solid colour and audio of one sine tone, so a receiver can
tell who it decoded. It talks to the bridge's media engine through the engine's dev server
(``tests.integration.media_devserver``): it creates its endpoint, offers its own SDP (sendonly
audio+video, one recvonly audio+video pair per other participant), and turns the bridge's
``LocalTransport`` plus the others' sources into the answer — the translation the focus and
Jingle do in the full stack.

aioice skips loopback when it gathers host candidates; :func:`allow_loopback_ice` makes it
offer 127.0.0.1 so everything stays on loopback.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aioice.ice
import httpx
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription
from av import AudioFrame, VideoFrame

log = logging.getLogger("parley.tests.media_client")

AUDIO_RATE = 48000
AUDIO_PTIME = 0.02
VIDEO_CLOCK = 90000


def allow_loopback_ice() -> None:
    """Make aioice gather 127.0.0.1 (it skips loopback addresses by default)."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]


class FirstCopyLoss:
    """Loss at the participants' sockets that only NACK recovery repairs: the first copy of
    every RTP packet whose SSRC is in ``ssrcs`` and whose sequence number is a multiple of
    ``every`` is dropped (read from the SRTP packet's clear header, right after the socket);
    later copies -- retransmissions -- pass. Use as a context manager; ``dropped`` counts per
    SSRC. aiortc's jitter buffer never skips a missing packet, so a receiver whose loss is not
    repaired stops decoding that stream."""

    def __init__(self, ssrcs: set[int], every: int) -> None:
        self.ssrcs, self.every = ssrcs, every
        self.dropped: dict[int, int] = {}
        self.arrived: dict[int, int] = {}  # every RTP datagram per SSRC, dropped or not
        self._seen: set[tuple[int, int, int]] = set()  # (socket, ssrc, seq)
        self._original: Any = None

    def __enter__(self) -> FirstCopyLoss:
        self._original = original = aioice.ice.StunProtocol.datagram_received

        def datagram_received(protocol: Any, data: bytes, addr: tuple[Any, ...]) -> None:
            if len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
                seq = int.from_bytes(data[2:4], "big")
                ssrc = int.from_bytes(data[8:12], "big")
                self.arrived[ssrc] = self.arrived.get(ssrc, 0) + 1
                if ssrc in self.ssrcs and seq % self.every == 0:
                    key = (id(protocol), ssrc, seq)
                    if key not in self._seen:
                        self._seen.add(key)
                        self.dropped[ssrc] = self.dropped.get(ssrc, 0) + 1
                        return
            original(protocol, data, addr)

        aioice.ice.StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        aioice.ice.StunProtocol.datagram_received = self._original  # type: ignore[method-assign]


class ColourTrack(MediaStreamTrack):
    """Solid-colour frames (with a moving bar so the encoder has work to do)."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int], width: int = 160, height: int = 120, fps: int = 15) -> None:
        super().__init__()
        self.rgb = rgb
        self.width, self.height, self.fps = width, height, fps
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self._count / self.fps - time.time()))
        image = np.empty((self.height, self.width, 3), dtype=np.uint8)
        image[:] = self.rgb
        bar = (self._count * 4) % self.width
        image[:, bar : bar + 4] = (255 - self.rgb[0], 255 - self.rgb[1], 255 - self.rgb[2])
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = int(self._count * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """A sine tone, 20 ms frames of 48 kHz mono s16."""

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._start: float | None = None
        self._samples = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(AUDIO_RATE * AUDIO_PTIME)
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self._samples / AUDIO_RATE - time.time()))
        t = (np.arange(n) + self._samples) / AUDIO_RATE
        wave = (np.sin(2 * math.pi * self.frequency * t) * self.amplitude * 32767).astype(np.int16)
        frame = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._samples += n
        return frame


@dataclass
class ReceivedMedia:
    """What a participant decoded from one remote slot."""

    video_frames: int = 0
    audio_frames: int = 0
    last_rgb: tuple[float, float, float] | None = None
    recent_rgb: list[tuple[float, float, float]] = field(default_factory=list)  # last 30 frames
    samples: list[np.ndarray] = field(default_factory=list)
    first_video_at: float | None = None
    last_video_at: float | None = None

    def dominant_frequency(self) -> float | None:
        if not self.samples:
            return None
        data = np.concatenate(self.samples[-25:]).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
        return float(np.argmax(spectrum) * AUDIO_RATE / len(data))


def nearest(value: Any, options: dict[str, Any]) -> str:
    return min(options, key=lambda k: float(np.linalg.norm(np.asarray(options[k]) - np.asarray(value))))


class BridgeParticipant:
    """One participant: an RTCPeerConnection whose remote side is the bridge's media engine."""

    def __init__(
        self,
        name: str,
        rgb: tuple[int, int, int],
        tone: float,
        control_url: str,
        conference: str = "conf",
        rtx: bool = False,
    ) -> None:
        """``rtx``: negotiate RTX (RFC 4588) for video, so the bridge repairs loss with RTX
        packets on the RTX SSRC paired (``FID``) with the sender's. aiortc routes an RTX packet
        to its receiver only by payload type, so this works with one video slot, not more."""
        self.name = name
        self.rtx = rtx
        self.rgb = rgb
        self.tone = tone
        self.control_url = control_url
        self.conference = conference
        # one transport for every m-line, as with the bridge (aiortc's balanced policy mis-bundles)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.received: dict[int, ReceivedMedia] = {}
        self.local_transport: dict[str, Any] | None = None
        self.sources: dict[str, Any] | None = None
        self.remote_transport: dict[str, Any] | None = None
        self._offer: SessionDescription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def endpoint_url(self) -> str:
        return f"{self.control_url}/conferences/{self.conference}/endpoints/{self.name}"

    async def prepare(self, slots: int) -> None:
        """Create the bridge endpoint and the local offer with ``slots`` receive pairs."""
        async with httpx.AsyncClient() as http:
            response = await http.post(self.endpoint_url)
            response.raise_for_status()
            self.local_transport = response.json()
        self.pc.addTransceiver(ToneTrack(self.tone), direction="sendonly")
        self.pc.addTransceiver(ColourTrack(self.rgb), direction="sendonly")
        for _ in range(slots):
            self.pc.addTransceiver("audio", direction="recvonly")
            self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._offer = SessionDescription.parse(self.pc.localDescription.sdp)
        audio, video = self._offer.media[0], self._offer.media[1]
        dtls = audio.dtls
        assert audio.ice is not None and dtls is not None
        self.remote_transport = {
            "ufrag": audio.ice.usernameFragment,
            "pwd": audio.ice.password,
            # the answer makes the bridge passive, so this side will be the DTLS client
            "fingerprints": [
                {"hash": f.algorithm, "fingerprint": f.value, "setup": "active"} for f in dtls.fingerprints
            ],
            "candidates": [],
        }
        # Without ``rtx`` the answer leaves RTX out: aiortc routes RTX by payload type when several
        # video receivers share one transport, which cannot work, so retransmissions are plain
        # packets (the bridge sends RTX only when the sources say RTX was negotiated).
        fid = [g.items for g in video.ssrc_group if g.semantic == "FID"]
        rtx_ssrcs = {items[1] for items in fid}
        media_ssrc = [s.ssrc for s in video.ssrc if s.ssrc not in rtx_ssrcs][:1]
        self.sources = {
            "audio_ssrcs": [s.ssrc for s in audio.ssrc],
            "video_ssrcs": media_ssrc + ([fid[0][1]] if self.rtx and fid else []),
            "ssrc_groups": [["FID", list(fid[0])]] if self.rtx and fid else [],
            "payload_types": [
                {
                    "id": c.payloadType,
                    "name": c.mimeType.split("/")[1],
                    "clockrate": c.clockRate,
                    "channels": c.channels or 1,
                    "parameters": {k: str(v) for k, v in c.parameters.items()},
                    "rtcp_fbs": [[fb.type, fb.parameter or ""] for fb in c.rtcpFeedback],
                }
                for m in (audio, video)
                for c in m.rtp.codecs
                if c.mimeType.lower() in self._codec_names()
            ],
            "rtp_hdrexts": [{"id": 2, "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level"}],
        }

    def _codec_names(self) -> tuple[str, ...]:
        return ("audio/opus", "video/vp8", "video/rtx") if self.rtx else ("audio/opus", "video/vp8")

    async def register(self) -> None:
        """Give the bridge this participant's transport and sources."""
        async with httpx.AsyncClient() as http:
            (await http.put(f"{self.endpoint_url}/transport", json=self.remote_transport)).raise_for_status()
            (await http.put(f"{self.endpoint_url}/sources", json=self.sources)).raise_for_status()

    async def connect(self, others: list[BridgeParticipant], via: tuple[str, int] | None = None) -> None:
        """Apply the answer: the bridge's transport, and ``others``' sources in the receive
        slots (in order). ``via`` replaces the bridge candidate (a relay in between)."""
        assert self._offer is not None and self.local_transport is not None
        self.slot_owner = {i: other.name for i, other in enumerate(others)}
        await self.pc.setRemoteDescription(RTCSessionDescription(self._answer(others, via), "answer"))

    def _answer(self, others: list[BridgeParticipant], via: tuple[str, int] | None) -> str:
        assert self._offer is not None and self.local_transport is not None
        lt = self.local_transport
        mids = [m.rtp.muxId for m in self._offer.media]
        lines = [
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=-",
            "t=0 0",
            f"a=group:BUNDLE {' '.join(mids)}",
            "a=ice-lite",
            "a=msid-semantic:WMS *",
        ]
        for index, media in enumerate(self._offer.media):
            codecs = [c for c in media.rtp.codecs if c.mimeType.lower() in self._codec_names()]
            if self.rtx:  # only the rtx codec that repairs VP8
                vp8 = {c.payloadType for c in codecs if c.mimeType.lower() == "video/vp8"}
                codecs = [
                    c for c in codecs if c.mimeType.lower() != "video/rtx" or c.parameters.get("apt") in vp8
                ]
            lines.append(f"m={media.kind} 9 UDP/TLS/RTP/SAVPF {' '.join(str(c.payloadType) for c in codecs)}")
            lines.append("c=IN IP4 0.0.0.0")
            lines.append(f"a=mid:{media.rtp.muxId}")
            lines.append("a=rtcp-mux")
            if media.kind == "audio":
                lines.append("a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level")
            else:
                lines.append("a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")
            for c in codecs:
                name = c.mimeType.split("/")[1]
                channels = f"/{c.channels}" if c.channels else ""
                lines.append(f"a=rtpmap:{c.payloadType} {name}/{c.clockRate}{channels}")
                if c.parameters:
                    params = ";".join(f"{k}={v}" if v is not None else k for k, v in c.parameters.items())
                    lines.append(f"a=fmtp:{c.payloadType} {params}")
                for fb in c.rtcpFeedback:
                    lines.append(
                        f"a=rtcp-fb:{c.payloadType} {fb.type}{' ' + fb.parameter if fb.parameter else ''}"
                    )
            lines.append(f"a=ice-ufrag:{lt['ufrag']}")
            lines.append(f"a=ice-pwd:{lt['pwd']}")
            for fp in lt["fingerprints"]:
                lines.append(f"a=fingerprint:{fp['hash']} {fp['fingerprint']}")
            lines.append("a=setup:passive")
            for cand in lt["candidates"]:
                ip, port = via if via else (cand["ip"], cand["port"])
                lines.append(
                    f"a=candidate:{cand['foundation']} 1 udp {cand['priority']} {ip} {port} typ host"
                )
            lines.append("a=end-of-candidates")
            if index < 2:
                lines.append("a=recvonly")
                continue
            lines.append("a=sendonly")
            other = others[(index - 2) // 2]
            assert other.sources is not None
            kind_ssrcs = (
                other.sources["audio_ssrcs"] if media.kind == "audio" else other.sources["video_ssrcs"]
            )
            ssrcs = list(kind_ssrcs)
            lines.append(f"a=msid:{other.name} {other.name}-{media.kind}")
            # media SSRC first, then its RTX SSRC: aiortc takes the second as the RTX one
            for semantics, group in other.sources["ssrc_groups"] if media.kind == "video" else ():
                lines.append(f"a=ssrc-group:{semantics} {' '.join(map(str, group))}")
            for ssrc in ssrcs:
                lines.append(f"a=ssrc:{ssrc} cname:{other.name}")
        return "\r\n".join(lines) + "\r\n"

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        index = self.pc.getTransceivers().index(transceiver)
        if index < 2:
            return
        slot = (index - 2) // 2
        media = self.received.setdefault(slot, ReceivedMedia())
        self._tasks.append(asyncio.ensure_future(self._consume(track, media)))

    async def _consume(self, track: MediaStreamTrack, media: ReceivedMedia) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    image = frame.to_ndarray(format="rgb24")
                    h, w = image.shape[:2]
                    centre = image[h // 4 : 3 * h // 4, : w // 4]
                    media.last_rgb = tuple(float(v) for v in centre.reshape(-1, 3).mean(axis=0))
                    media.recent_rgb.append(media.last_rgb)
                    del media.recent_rgb[:-30]
                    media.video_frames += 1
                    now = time.monotonic()
                    media.first_video_at = media.first_video_at or now
                    media.last_video_at = now
                else:
                    pcm = frame.to_ndarray()
                    channels = len(frame.layout.channels)
                    mono = pcm.reshape(-1)[::channels] if frame.format.is_packed else pcm[0]
                    media.samples.append(mono.copy())
                    del media.samples[:-50]
                    media.audio_frames += 1
        except MediaStreamError:
            return
        except Exception:
            log.exception("%s: consuming a received track failed", self.name)
            raise

    def snapshot(self) -> dict[int, tuple[int, int]]:
        return {slot: (m.video_frames, m.audio_frames) for slot, m in self.received.items()}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


def to_json(value: Any) -> Any:
    return asdict(value)

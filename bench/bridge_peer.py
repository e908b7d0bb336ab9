"""Light WebRTC peers for the forwarding benchmark: ICE (controlling, nominating), DTLS-SRTP and
pre-encoded RTP, on one UDP socket each — no encoder or decoder in the loop, so one Python process
can drive 40 subscribers on 2 cores.

They use the bridge's own sans-I/O adapter (``services.bridge.media.transport.aiortc_adapter``) for STUN,
DTLS and SRTP, and talk to any SFU that gives them an ICE ufrag/pwd, a fingerprint and a
candidate (Parley's media engine or Janus).

Every RTP payload the publishers send ends with a 14-byte trailer: ``b"PB"``, the publisher's
packet index (uint32) and its send time (float64, ``time.monotonic()``), so subscribers can count
loss and measure latency whatever the SFU does to the RTP header.
"""

from __future__ import annotations

import asyncio
import fractions
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.bridge.media.transport import aiortc_adapter as adapter
from services.bridge.media.transport.aiortc_adapter import DtlsCertificate, DtlsSession, DtlsState
from services.bridge.media.transport.ice import random_token

TRAILER = struct.Struct("!2sId")
MAGIC = b"PB"


@dataclass
class Remote:
    ufrag: str
    pwd: str
    fingerprints: list[tuple[str, str]]
    address: tuple[str, int]
    dtls_role: str  # our role: "client" or "server"


class LightPeer(asyncio.DatagramProtocol):
    """One endpoint: a UDP socket, an ICE agent that nominates the first pair, DTLS, SRTP."""

    def __init__(self, certificate: DtlsCertificate, local_ip: str) -> None:
        self.certificate = certificate
        self.local_ip = local_ip
        self.ufrag = random_token(8)
        self.pwd = random_token(24)
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: Remote | None = None
        self.dtls: DtlsSession | None = None
        self.connected = asyncio.Event()
        self.ice_ok = False
        self.on_rtp: Callable[[bytes, float], None] | None = None
        self.rtcp_received = 0
        self.rtp_received = 0
        self._timer: asyncio.TimerHandle | None = None

    async def open(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.local_ip, 0))
        sock = self.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint("sha-256")

    async def connect(self, remote: Remote, within: float = 15.0) -> None:
        self.remote = remote
        self.dtls = DtlsSession(self.certificate, remote.dtls_role, remote.fingerprints)
        deadline = time.monotonic() + within
        while not self.connected.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"peer {self.ufrag} did not connect (ice={self.ice_ok}, dtls={self.dtls.state})"
                )
            self._send(adapter.binding_request(self.ufrag, remote.ufrag, remote.pwd, use_candidate=True))
            if self.ice_ok and self.dtls.role == "client" and self.dtls.state is DtlsState.NEW:
                self._flush(self.dtls.start())
            try:
                await asyncio.wait_for(self.connected.wait(), 0.1)
            except TimeoutError:
                pass

    def keepalive(self) -> None:
        """A consent check (RFC 7675), as browsers send every few seconds."""
        if self.remote is not None:
            self._send(
                adapter.binding_request(self.ufrag, self.remote.ufrag, self.remote.pwd, use_candidate=False)
            )

    def send_rtp(self, packet: bytes) -> None:
        if self.dtls is not None and self.dtls.srtp is not None:
            self._send(self.dtls.srtp.protect(packet))

    def send_rtcp(self, packet: bytes) -> None:
        if self.dtls is not None and self.dtls.srtp is not None:
            self._send(self.dtls.srtp.protect_rtcp(packet))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None:
            self.transport.close()

    # ---- datagrams -------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        first = data[0] if data else 255
        if first < 4:
            self._on_stun(data, addr)
        elif 19 < first < 64 and self.dtls is not None:
            self._flush(self.dtls.feed(data))
        elif 127 < first < 192 and self.dtls is not None and self.dtls.srtp is not None:
            if 191 < data[1] < 224:
                self.rtcp_received += 1
                return
            try:
                plain = self.dtls.srtp.unprotect(data)
            except adapter.SrtpError:
                return
            self.rtp_received += 1
            if self.on_rtp is not None:
                self.on_rtp(plain, time.monotonic())

    def _on_stun(self, data: bytes, addr: tuple[str, int]) -> None:
        if adapter.is_binding_success(data):
            self.ice_ok = True
            return
        try:
            request = adapter.parse_binding_request(data)
        except adapter.StunError:
            return
        if request.local_ufrag == self.ufrag:
            assert self.transport is not None
            self.transport.sendto(adapter.binding_success(request, addr, self.pwd), addr)

    def _flush(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            self._send(datagram)
        if self.dtls is None:
            return
        if self.dtls.state is DtlsState.CONNECTED:
            self.connected.set()
        elif self.dtls.state is DtlsState.CONNECTING:
            timeout = self.dtls.timeout()
            if timeout is not None:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = asyncio.get_running_loop().call_later(max(timeout, 0.01), self._retransmit)

    def _retransmit(self) -> None:
        if self.dtls is not None and self.dtls.state is DtlsState.CONNECTING:
            self._flush(self.dtls.handle_timeout())

    def _send(self, data: bytes) -> None:
        if self.transport is not None and self.remote is not None:
            self.transport.sendto(data, self.remote.address)


# ---- media -----------------------------------------------------------------------------------


def encode_vp8(
    seconds: float, fps: int, bitrate: int, width: int = 640, height: int = 360
) -> list[list[bytes]]:
    """VP8 RTP payloads (per frame) of a moving noisy pattern, encoded once with aiortc's libvpx
    encoder at ``bitrate``; a key frame every 2 seconds."""
    import numpy as np
    from aiortc.codecs.vpx import Vp8Encoder
    from av import VideoFrame

    encoder = Vp8Encoder()
    encoder.target_bitrate = bitrate
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(int(seconds * fps)):
        image = np.roll(base, i * 3, axis=1)
        image[:, (i * 7) % width] = 255
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i * 90000 // fps
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=i % (2 * fps) == 0)
        frames.append(payloads)
    return frames


def encode_vp8_layer(seconds: float, fps: int, bitrate: int, width: int, height: int) -> list[list[bytes]]:
    """VP8 RTP payloads (per frame) of one simulcast layer: libvpx in constant bit rate at
    ``bitrate`` (any rate; aiortc's encoder keeps to 250-1500 kbps), a key frame every 2 s. The
    picture is a camera-like one (smooth areas and detail, panning), which libvpx can bring
    down to a thumbnail's bit rate; payloads are packetized with aiortc's VP8 payloader."""
    import av
    import numpy as np
    from aiortc.codecs.vpx import Vp8Encoder
    from av import VideoFrame

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.bit_rate = bitrate
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(fps, 1)
    codec.time_base = fractions.Fraction(1, fps)
    codec.gop_size = 2 * fps
    codec.qmin, codec.qmax = 2, 63
    codec.options = {
        "bufsize": str(bitrate),
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "deadline": "realtime",
        "cpu-used": "-6",
        "lag-in-frames": "0",
        "undershoot-pct": "100",
        "overshoot-pct": "15",
    }
    rng = np.random.default_rng(2)
    block = max(1, width // 40)
    coarse = rng.integers(0, 255, (height // block + 1, width // block + 1, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]
    frames: list[list[bytes]] = []
    picture_id = 0
    for i in range(int(seconds * fps)):
        image = np.roll(base, i * max(1, width // 160), axis=1)
        frame = VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
            format="yuv420p"
        )
        frame.pts = i
        frame.time_base = fractions.Fraction(1, fps)
        if i % (2 * fps) == 0:
            frame.pict_type = av.video.frame.PictureType.I
        data = b"".join(bytes(packet) for packet in codec.encode(frame))
        frames.append(Vp8Encoder._packetize(data, picture_id) if data else [])
        picture_id = (picture_id + 1) % (1 << 15)
    return frames


class Publisher:
    """Replays pre-encoded video (and optionally 20 ms audio packets) through a LightPeer."""

    def __init__(
        self,
        peer: LightPeer,
        video_frames: list[list[bytes]],
        fps: int,
        *,
        audio: bool,
        video_pt: int = 96,
        audio_pt: int = 111,
    ) -> None:
        self.peer = peer
        self.video_frames = video_frames
        self.fps = fps
        self.audio = audio
        self.video_pt = video_pt
        self.audio_pt = audio_pt
        self.video_ssrc = secrets.randbits(32) | 1
        self.audio_ssrc = secrets.randbits(32) | 1
        self.sent_log: list[float] = []  # send time by packet index
        self._task: asyncio.Task[None] | None = None
        self._audio_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._video())
        if self.audio:
            self._audio_task = asyncio.ensure_future(self._audio())

    def stop(self) -> None:
        for task in (self._task, self._audio_task):
            if task is not None:
                task.cancel()

    def _stamp(self, payload: bytes) -> bytes:
        index = len(self.sent_log)
        now = time.monotonic()
        self.sent_log.append(now)
        return payload + TRAILER.pack(MAGIC, index, now)

    async def _video(self) -> None:
        seq = secrets.randbits(16)
        start = time.monotonic()
        n = 0
        while True:
            payloads = self.video_frames[n % len(self.video_frames)]
            ts = (n * 90000 // self.fps) & 0xFFFFFFFF
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                header = struct.pack(
                    "!BBHII", 0x80, marker | self.video_pt, seq & 0xFFFF, ts, self.video_ssrc
                )
                self.peer.send_rtp(header + self._stamp(payload))
                seq += 1
            n += 1
            await asyncio.sleep(max(0.0, start + n / self.fps - time.monotonic()))

    async def _audio(self) -> None:
        seq = secrets.randbits(16)
        start = time.monotonic()
        n = 0
        while True:
            header = struct.pack(
                "!BBHII", 0x80, self.audio_pt, seq & 0xFFFF, (n * 960) & 0xFFFFFFFF, self.audio_ssrc
            )
            self.peer.send_rtp(header + self._stamp(b"\xfc" + os.urandom(79)))
            seq += 1
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))


class Receipts:
    """What subscribers got: per (publisher ssrc-independent) trailer, count and latency."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0
        self.window: tuple[float, float] | None = None

    def on_rtp(self, packet: bytes, now: float) -> None:
        if len(packet) < 12 + TRAILER.size:
            return
        magic, _index, sent = TRAILER.unpack_from(packet, len(packet) - TRAILER.size)
        if magic != MAGIC or self.window is None:
            return
        if self.window[0] <= sent < self.window[1]:
            self.received += 1
            self.latencies.append(now - sent)


# ---- a meeting participant with simulcast (the 20-party scenario) ----------------------------


SEND_TIME_EXTENSION_ID = 3
SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
SEND_TIME_ELEMENT = (SEND_TIME_EXTENSION_ID << 4) | 2  # one-byte header: id, 3 bytes of data


def send_time(now: float) -> int:
    """abs-send-time: seconds in 6.18 fixed point, wrapping every 64 s."""
    return int(now * (1 << 18)) & 0xFFFFFF


class MeetingCounters:
    """What every participant of a meeting received from the SFU, read from the clear-text RTP
    header only (no SRTP unprotect, so receiving 20 parties' streams stays cheap for the client):
    every datagram arriving while ``counting`` is on (what the SFU sent in the window), and the
    RTP packets the senders sent inside the window, told by the abs-send-time extension first in
    every packet's extension block, whenever they arrive (what was delivered, however late), with
    the gaps in each stream's sequence."""

    def __init__(self) -> None:
        self.counting = False  # senders count what they send, receivers count datagram bytes
        self.window_start = 0  # abs-send-time of the window's start
        self.window_length = -1  # in abs-send-time units (-1: no window yet)
        self.rtp_packets = 0
        self.rtp_bytes = 0
        self.other_bytes = 0  # RTCP, STUN: by arrival while ``counting``
        self.arrived_packets = 0  # RTP by arrival while ``counting``: what the SFU sent then
        self.arrived_bytes = 0
        self.seq_gaps = 0
        self.stream_jumps = 0  # sequence jumps over 64: a stream paused or restarted
        self.sent_audio = 0  # packets
        self.sent_audio_bytes = 0  # as SRTP
        self.sent_by_layer: list[int] = []  # packets
        self.sent_bytes_by_layer: list[int] = []  # as SRTP
        self.sent_packets = 0
        self.sent_bytes = 0


class MeetingPeer(LightPeer):
    """One participant's transport: sends audio and simulcast video (``SimulcastSender``) and
    receives everyone else's. RTCP from the SFU is decrypted and a PLI or FIR for one of the
    participant's layers makes the sender start that layer over from a key frame."""

    def __init__(self, certificate: DtlsCertificate, local_ip: str, counters: MeetingCounters) -> None:
        super().__init__(certificate, local_ip)
        self.counters = counters
        self.last_seq: dict[int, int] = {}  # received SSRC -> last sequence number
        self.video_ssrcs_received: set[int] = set()
        self.video_pt = 96
        self.on_keyframe_request: Callable[[int], None] | None = None
        self.keyframe_requests = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        counters = self.counters
        first = data[0] if data else 255
        if not 127 < first < 192 or self.dtls is None or self.dtls.srtp is None:
            if counters.counting:
                counters.other_bytes += len(data)
            super().datagram_received(data, addr)
            return
        if 191 < data[1] < 224:
            if counters.counting:
                counters.other_bytes += len(data)
            self._on_rtcp(data)
            return
        if counters.counting:
            counters.arrived_packets += 1
            counters.arrived_bytes += len(data)
        if data[16] != SEND_TIME_ELEMENT:
            return
        sent = (data[17] << 16) | (data[18] << 8) | data[19]
        if (sent - counters.window_start) & 0xFFFFFF >= counters.window_length:
            return
        counters.rtp_packets += 1
        counters.rtp_bytes += len(data)
        seq, ssrc = struct.unpack_from("!H4xI", data, 2)
        if data[1] & 0x7F == self.video_pt:
            self.video_ssrcs_received.add(ssrc)
        last = self.last_seq.get(ssrc)
        self.last_seq[ssrc] = seq
        if last is not None:
            gap = (seq - last) & 0xFFFF
            if 1 < gap <= 64:  # larger jumps are a stream restarting, not loss
                counters.seq_gaps += gap - 1
            elif 64 < gap < 0x8000:
                counters.stream_jumps += 1

    def _on_rtcp(self, data: bytes) -> None:
        assert self.dtls is not None and self.dtls.srtp is not None
        self.rtcp_received += 1
        try:
            plain = self.dtls.srtp.unprotect_rtcp(data)
        except adapter.SrtpError:
            return
        offset = 0
        while offset + 12 <= len(plain):
            fmt, ptype, length = (
                plain[offset] & 0x1F,
                plain[offset + 1],
                struct.unpack_from("!H", plain, offset + 2)[0],
            )
            if ptype == 206 and fmt == 1:  # PLI: the media SSRC
                self._keyframe(struct.unpack_from("!I", plain, offset + 8)[0])
            elif ptype == 206 and fmt == 4 and offset + 16 <= len(plain):  # FIR: the FCI's SSRC
                self._keyframe(struct.unpack_from("!I", plain, offset + 12)[0])
            offset += 4 * (length + 1)

    def _keyframe(self, ssrc: int) -> None:
        self.keyframe_requests += 1
        if self.on_keyframe_request is not None:
            self.on_keyframe_request(ssrc)


SRTP_TAG = 10  # bytes SRTP adds to an RTP packet (AES_CM_128_HMAC_SHA1_80)
LEVEL_EXTENSION_ID = 1
"""The RTP header extension id the meeting's audio uses for RFC 6464 audio levels."""


class SimulcastSender:
    """One participant's media: Opus-sized audio (32 kbps, a packet every ``ptime``) with an RFC 6464 level (loud while
    ``speaking()`` says so, near silence otherwise) and VP8 simulcast, one SSRC per layer, all
    layers of a frame sent together with the same timestamp. A layer restarts from its first
    frame (a key frame) when the SFU asks for one; the pre-encoded cycle also has one every 2 s.
    ``phase`` (0..1) shifts this sender's schedule so that participants do not send in lockstep."""

    def __init__(
        self,
        peer: MeetingPeer,
        layers: list[list[list[bytes]]],
        fps: int,
        speaking: Callable[[], bool],
        phase: float,
        *,
        ptime: float = 0.02,
        video_pt: int = 96,
        audio_pt: int = 111,
    ) -> None:
        self.peer = peer
        self.layers = layers
        self.fps = fps
        self.ptime = ptime
        self.speaking = speaking
        self.phase = phase
        self.video_pt = video_pt
        self.audio_pt = audio_pt
        self.audio_ssrc = secrets.randbits(32) | 1
        self.layer_ssrcs = [secrets.randbits(32) | 1 for _ in layers]
        self._frame_index = [0] * len(layers)
        self._seq = {ssrc: secrets.randbits(16) for ssrc in [self.audio_ssrc, *self.layer_ssrcs]}
        self._task: asyncio.Task[None] | None = None
        peer.video_pt = video_pt
        peer.on_keyframe_request = self.keyframe

    def keyframe(self, ssrc: int) -> None:
        if ssrc in self.layer_ssrcs:
            self._frame_index[self.layer_ssrcs.index(ssrc)] = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _send(self, packet: bytes) -> None:
        counters = self.peer.counters
        if counters.counting:
            counters.sent_packets += 1
            counters.sent_bytes += len(packet) + SRTP_TAG
        self.peer.send_rtp(packet)

    def _audio(self, n: int) -> None:
        ssrc = self.audio_ssrc
        seq = self._seq[ssrc]
        self._seq[ssrc] = (seq + 1) & 0xFFFF
        # -dBov (0 is the loudest, 127 silence) and the voice-activity flag
        level = 0x80 | 10 if self.speaking() else 100
        sent = send_time(time.monotonic())
        packet = (
            struct.pack("!BBHII", 0x90, self.audio_pt, seq, int(n * 48000 * self.ptime) & 0xFFFFFFFF, ssrc)
            + struct.pack(
                "!HHBHBBBH",
                0xBEDE,
                2,
                SEND_TIME_ELEMENT,
                sent >> 8,
                sent & 0xFF,
                LEVEL_EXTENSION_ID << 4,
                level,
                0,
            )
            + b"\xfc"
            + os.urandom(int(4000 * self.ptime) - 1)  # 32 kbps
        )
        counters = self.peer.counters
        if counters.counting:
            counters.sent_audio += 1
            counters.sent_audio_bytes += len(packet) + SRTP_TAG
        self._send(packet)

    def _video(self, n: int) -> None:
        ts = (n * 90000 // self.fps) & 0xFFFFFFFF
        sent = send_time(time.monotonic())
        extension = struct.pack("!HHBHB", 0xBEDE, 1, SEND_TIME_ELEMENT, sent >> 8, sent & 0xFF)
        for layer, ssrc in enumerate(self.layer_ssrcs):
            frames = self.layers[layer]
            index = self._frame_index[layer]
            self._frame_index[layer] = index + 1
            payloads = frames[index % len(frames)]
            counters = self.peer.counters
            if counters.counting:
                while len(counters.sent_by_layer) <= layer:
                    counters.sent_by_layer.append(0)
                    counters.sent_bytes_by_layer.append(0)
                counters.sent_by_layer[layer] += len(payloads)
                counters.sent_bytes_by_layer[layer] += sum(16 + len(p) + SRTP_TAG for p in payloads)
            seq = self._seq[ssrc]
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                header = struct.pack("!BBHII", 0x90, marker | self.video_pt, (seq + i) & 0xFFFF, ts, ssrc)
                self._send(header + extension + payload)
            self._seq[ssrc] = (seq + len(payloads)) & 0xFFFF

    async def _run(self) -> None:
        start = time.monotonic() + self.phase * self.ptime
        audio_n = video_n = 0
        frame = 1.0 / self.fps
        while True:
            next_audio = start + audio_n * self.ptime
            next_video = start + video_n * frame
            wake = min(next_audio, next_video)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))
            if next_audio <= wake:
                self._audio(audio_n)
                audio_n += 1
            if next_video <= wake:
                self._video(video_n)
                video_n += 1

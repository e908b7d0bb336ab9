"""Mix-minus Opus audio mixer for channels with ``"rtp-level-relay-type": "mixer"`` (Colibri REST v1, docs/protocols.md#colibri-rest).

A mixer channel receives one Opus stream: everyone else's audio mixed, without its own. The
forwarding loop only hands packets over (:meth:`MixMinusMixer.push`: one ``deque.append``, no
decoding); the mixing runs every 20 ms on its own thread (:class:`MixerThread`), so translator
channels lose no forwarding time to it.

Per tick (:meth:`MixMinusMixer.mix`): take one queued Opus frame per sender and decode it (PyAV's
libopus, the codec aiortc uses), sum all senders in int32 with numpy, and for each mixer receiver
subtract its own frame, clip to 16 bits and encode with that receiver's own encoder (Opus encoders
keep state, so each output stream has one). :class:`MixedRtpStream` puts the payloads into RTP
packets with the bridge's SSRC, continuous sequence numbers and 48 kHz timestamps.

Kept simple on purpose: a sender's queue is a short FIFO in arrival order (no reordering, no
loss concealment -- a missing frame is silence), and the mix is mono.
"""

from __future__ import annotations

import fractions
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import av
import numpy as np

from ..packets import rtp

log = logging.getLogger("parley.bridge.mixer")

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE


class OpusDecoder:
    """One sender's Opus stream -> 20 ms frames of mono int16 PCM."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate = SAMPLE_RATE  # type: ignore[attr-defined]
        self._codec.layout = "mono"  # type: ignore[attr-defined]
        self._codec.format = "s16"  # type: ignore[attr-defined]

    def decode(self, payload: bytes) -> np.ndarray:
        """PCM of one Opus packet; raises ``ValueError`` for data libopus rejects."""
        if not payload:  # an empty packet would put the codec into draining mode
            raise ValueError("empty Opus packet")
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.error.FFmpegError as exc:
            raise ValueError(f"undecodable Opus packet ({len(payload)} bytes): {exc}") from exc
        if not frames:
            return np.zeros(FRAME_SAMPLES, np.int16)
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])  # type: ignore[union-attr]
        if pcm.size < FRAME_SAMPLES:
            pcm = np.pad(pcm, (0, FRAME_SAMPLES - pcm.size))
        return pcm[:FRAME_SAMPLES]


class OpusEncoder:
    """20 ms frames of mono int16 PCM -> Opus packets (one per frame)."""

    def __init__(self, bitrate: int = 32_000) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = SAMPLE_RATE  # type: ignore[attr-defined]
        codec.layout = "mono"  # type: ignore[attr-defined]
        codec.format = "s16"  # type: ignore[attr-defined]
        codec.bit_rate = bitrate
        codec.time_base = fractions.Fraction(1, SAMPLE_RATE)
        codec.options = {"application": "voip"}
        self._codec = codec
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return b"".join(bytes(p) for p in self._codec.encode(frame))  # type: ignore[attr-defined]


class MixMinusMixer:
    """The mixer of one conference: senders are every endpoint whose audio arrives, receivers
    are the endpoints with a mixer audio channel. Thread-safe between :meth:`push` (forwarding
    loop) and :meth:`mix` (mixer thread); membership changes take a lock."""

    def __init__(self, bitrate: int = 32_000, max_queue_frames: int = 5) -> None:
        if max_queue_frames < 1:
            raise ValueError(f"max_queue_frames must be >= 1, got {max_queue_frames}")
        self.bitrate = bitrate
        self.max_queue_frames = max_queue_frames
        self._lock = threading.Lock()
        self._queues: dict[str, deque[bytes]] = {}
        self._decoders: dict[str, OpusDecoder] = {}
        self._encoders: dict[str, OpusEncoder] = {}
        self.decode_errors = 0
        self.frames_mixed = 0

    @property
    def receivers(self) -> list[str]:
        return list(self._encoders)

    def add_receiver(self, endpoint: str) -> None:
        """``endpoint`` gets the mix (its audio channel is a mixer channel)."""
        with self._lock:
            if endpoint not in self._encoders:
                self._encoders[endpoint] = OpusEncoder(self.bitrate)

    def remove_receiver(self, endpoint: str) -> None:
        """``endpoint`` no longer gets the mix (its audio is still mixed for the others)."""
        with self._lock:
            self._encoders.pop(endpoint, None)

    def remove_endpoint(self, endpoint: str) -> None:
        with self._lock:
            self._queues.pop(endpoint, None)
            self._decoders.pop(endpoint, None)
            self._encoders.pop(endpoint, None)

    def push(self, endpoint: str, payload: bytes) -> None:
        """An Opus payload (RTP payload, header stripped) from ``endpoint``. O(1); the oldest
        frame is dropped when the sender is ``max_queue_frames`` ahead of the mixer."""
        queue = self._queues.get(endpoint)
        if queue is None:
            with self._lock:
                queue = self._queues.setdefault(endpoint, deque(maxlen=self.max_queue_frames))
                self._decoders.setdefault(endpoint, OpusDecoder())
        queue.append(payload)

    def mix(self) -> list[tuple[str, bytes]]:
        """One 20 ms tick: ``(receiver, Opus payload)`` for every mixer receiver."""
        with self._lock:
            queues = list(self._queues.items())
            decoders = dict(self._decoders)
            encoders = list(self._encoders.items())
        own: dict[str, np.ndarray] = {}
        total = np.zeros(FRAME_SAMPLES, np.int32)
        for endpoint, queue in queues:
            try:
                payload = queue.popleft()
            except IndexError:
                continue  # nothing arrived in time: silence from this sender
            try:
                pcm = decoders[endpoint].decode(payload)
            except ValueError as exc:
                self.decode_errors += 1
                log.debug("mixer: %s: %s", endpoint, exc)
                continue
            own[endpoint] = pcm
            total += pcm
        out = []
        for receiver, encoder in encoders:
            mine = own.get(receiver)
            mixed = total - mine if mine is not None else total
            out.append((receiver, encoder.encode(np.clip(mixed, -32768, 32767).astype(np.int16))))
        self.frames_mixed += 1
        return out


class MixedRtpStream:
    """RTP packets of one receiver's mixed stream: the bridge's SSRC, continuous sequence
    numbers and timestamps (+960 per 20 ms frame), marker bit on the first packet."""

    __slots__ = ("_first", "payload_type", "seq", "ssrc", "timestamp")

    def __init__(self, ssrc: int, payload_type: int = 111, seq: int = 0, timestamp: int = 0) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.seq = seq & 0xFFFF
        self.timestamp = timestamp & 0xFFFFFFFF
        self._first = True

    def packet(self, payload: bytes) -> bytes:
        header = rtp.build_header(self.payload_type, self._first, self.seq, self.timestamp, self.ssrc)
        self._first = False
        self.seq = (self.seq + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        return header + payload


Deliver = Callable[[list[tuple[str, bytes]]], None]


class MixerThread:
    """Runs :meth:`MixMinusMixer.mix` every 20 ms on its own thread and hands each tick's output
    to ``deliver`` (on the mixer thread: an asyncio user passes a function that calls
    ``loop.call_soon_threadsafe``). Ticks keep a fixed schedule; a late tick is not repeated."""

    def __init__(self, mixer: MixMinusMixer, deliver: Deliver, interval: float = FRAME_SECONDS) -> None:
        self.mixer = mixer
        self.deliver = deliver
        self.interval = interval
        self.late_ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parley-mixer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            next_tick += self.interval
            try:
                self.deliver(self.mixer.mix())
            except Exception:
                log.exception("mixer tick failed")
            delay = next_tick - time.monotonic()
            if delay < 0:
                self.late_ticks += 1
                next_tick = time.monotonic()
            elif self._stop.wait(delay):
                break

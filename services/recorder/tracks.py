"""Per-participant files: the participant's Opus and VP8 frames remuxed into WebM, never decoded.

Frames come straight from the receiver's jitter buffer (whole VP8 frames and Opus packets, RTP
payload headers removed, RFC 7741 and RFC 7587). The container is opened at the first VP8 key
frame (its header carries the picture size, RFC 6386 section 9.1), or audio-only when no video
came within :data:`AUDIO_ONLY_AFTER` seconds; frames from before are kept (bounded) and written
then. Timestamps are the recorder's clock (:mod:`.sync`), so audio and video of one file stay in
step, and the matroska muxer writes a cluster at least every second: a file cut by a crash is
playable up to its last cluster.
"""

from __future__ import annotations

import fractions
import logging
from dataclasses import dataclass
from pathlib import Path

import av

log = logging.getLogger("recorder.tracks")

AUDIO_ONLY_AFTER = 3.0
MAX_EARLY_FRAMES = 500
MUXER_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
MS = fractions.Fraction(1, 1000)
MAX_SOURCE_PIXELS = 4096 * 2304
"""A VP8 key frame claiming a larger picture (up to 16383x16383, RFC 6386 section 9.1) is refused
from its header: decoding it would allocate hundreds of MB (4K screen shares pass)."""


def vp8_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) of a VP8 key frame, None for an inter frame or garbage."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


@dataclass
class _Early:
    kind: str
    data: bytes
    at: float
    keyframe: bool


class TrackWriter:
    """One participant's WebM file. Feed it with :meth:`audio` and :meth:`video` (times in the
    recorder's clock, seconds); :meth:`close` finalises it."""

    def __init__(self, path: Path, origin: float) -> None:
        self.path = path
        self.origin = origin
        self.container: av.container.OutputContainer | None = None
        self.audio_stream: av.stream.Stream | None = None
        self.video_stream: av.stream.Stream | None = None
        self._early: list[_Early] = []
        self._first_at: float | None = None
        self._last_ms: dict[str, int] = {}
        self.frames = {"audio": 0, "video": 0}
        self.closed = False

    def audio(self, data: bytes, at: float) -> None:
        self._add("audio", data, at, True)

    def video(self, data: bytes, at: float) -> None:
        size = vp8_keyframe_size(data)
        if size is not None and size[0] * size[1] > MAX_SOURCE_PIXELS:
            return  # a forged size: whoever plays the file would decode it
        if self.container is None and size is not None:
            self._open(size)
        self._add("video", data, at, size is not None)

    def _add(self, kind: str, data: bytes, at: float, keyframe: bool) -> None:
        if self.closed or not data:
            return
        if self._first_at is None:
            self._first_at = at
        if self.container is None:
            if kind == "video" and not any(e.kind == "video" for e in self._early) and not keyframe:
                return  # nothing decodable before the first key frame
            self._early.append(_Early(kind, data, at, keyframe))
            del self._early[:-MAX_EARLY_FRAMES]
            if at - self._first_at > AUDIO_ONLY_AFTER and not any(e.kind == "video" for e in self._early):
                self._open(None)
            return
        self._mux(kind, data, at, keyframe)

    def _open(self, size: tuple[int, int] | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        c = av.open(str(self.path), "w", format="webm", options=MUXER_OPTIONS)
        self.audio_stream = c.add_stream("libopus", rate=48000)
        self.audio_stream.layout = "stereo"  # type: ignore[union-attr]
        if size is not None:
            vs = c.add_stream("libvpx", rate=30)
            vs.width, vs.height = size  # type: ignore[union-attr]
            vs.pix_fmt = "yuv420p"  # type: ignore[union-attr]
            self.video_stream = vs
        c.start_encoding()
        self.container = c
        early, self._early = self._early, []
        for e in early:
            self._mux(e.kind, e.data, e.at, e.keyframe)
        log.info("writing %s (%s)", self.path, "audio+video" if size else "audio only")

    def _mux(self, kind: str, data: bytes, at: float, keyframe: bool) -> None:
        stream = self.audio_stream if kind == "audio" else self.video_stream
        if stream is None or self.container is None:
            return
        ms = max(0, round((at - self.origin) * 1000))
        if ms <= self._last_ms.get(kind, -1):
            ms = self._last_ms[kind] + 1  # strictly increasing per stream
        self._last_ms[kind] = ms
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = MS
        packet.pts = packet.dts = ms
        packet.is_keyframe = keyframe
        try:
            self.container.mux(packet)
            self.frames[kind] += 1
        except av.FFmpegError as exc:
            log.warning("%s: dropped a %s frame: %s", self.path.name, kind, exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.container is None and self._early:
            self._open(vp8_keyframe_size(next((e.data for e in self._early if e.kind == "video"), b"")))
        if self.container is not None:
            try:
                self.container.close()
            except av.FFmpegError as exc:
                log.warning("closing %s: %s", self.path, exc)

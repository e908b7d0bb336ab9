"""The composed recording: every participant's decoded video in a grid with names, audio mixed,
encoded once (H.264 and AAC) into a Matroska file or an FLV stream pushed over RTMP.

A thread (:class:`Composer`) renders the meeting at a fixed frame rate, :attr:`Composer.latency`
behind real time so that every participant's frames for an instant have arrived. For output
instant ``t`` it takes each participant's latest frame captured at or before ``t`` and the audio
samples captured in ``[t, t + 1/fps)``; both come with capture times on the recorder's clock
(:mod:`.sync`), so audio and pictures stay in sync to the accuracy of that clock. Audio that
never arrived (packet loss, a muted participant) is silence; a participant whose video stops
keeps its last picture (greyed after :data:`STALE_AFTER` seconds).
"""

from __future__ import annotations

import collections
import fractions
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from av.audio.fifo import AudioFifo
from av.audio.resampler import AudioResampler

from . import layout

log = logging.getLogger("recorder.composite")

RATE = 48000
RING_SECONDS = 8
STALE_AFTER = 2.0
BACKGROUND = (24, 24, 28)


def label_bitmap(text: str, height: int = 14) -> np.ndarray:
    """The participant's name as white text on a dark box (rendered once, H x W x 3)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    w, h = right - left + 8, max(height, bottom - top + 6)
    image = Image.new("RGB", (int(w), int(h)), (0, 0, 0))
    ImageDraw.Draw(image).text(
        (4 - left, (h - (bottom - top)) // 2 - top), text, fill=(255, 255, 255), font=font
    )
    return np.asarray(image)


@dataclass
class _Participant:
    name: str
    frames: collections.deque[tuple[float, av.VideoFrame]] = field(
        default_factory=lambda: collections.deque(maxlen=90)
    )
    ring: np.ndarray = field(default_factory=lambda: np.zeros(RATE * RING_SECONDS, np.int32))
    label: np.ndarray | None = None
    cached: tuple[int, layout.Rect, np.ndarray] | None = None  # (id(frame), rect, pixels)
    last_audio: float = 0.0


class Composer:
    """Renders and encodes; feed it from any thread with :meth:`video` and :meth:`audio`."""

    def __init__(
        self,
        target: str,
        fmt: str,
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        latency: float = 0.6,
        clock: Callable[[], float] = time.monotonic,
        video_bitrate: int = 800_000,
    ) -> None:
        self.target, self.fmt = target, fmt
        self.width, self.height, self.fps = width, height, fps
        self.latency = latency
        self.clock = clock
        self.video_bitrate = video_bitrate
        self._lock = threading.Lock()
        self._people: dict[str, _Participant] = {}
        self._order: list[str] = []
        self._start: float | None = None
        self._rendered_until = 0  # sample index
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resamplers: dict[str, AudioResampler] = {}
        self.frames_written = 0
        self.error: str | None = None

    # ------------------------------------------------------------------ input (any thread)
    def _person(self, owner: str) -> _Participant:
        p = self._people.get(owner)
        if p is None:
            p = self._people[owner] = _Participant(owner)
            self._order.append(owner)
        return p

    def video(self, owner: str, at: float, frame: av.VideoFrame) -> None:
        with self._lock:
            self._person(owner).frames.append((at, frame))
            if self._start is None:
                self._start = at

    def audio(self, owner: str, at: float, frame: av.AudioFrame) -> None:
        resampler = self._resamplers.get(owner)
        if resampler is None:
            resampler = self._resamplers[owner] = AudioResampler(format="s16", layout="mono", rate=RATE)
        samples = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)] or [np.zeros(0, np.int16)]
        )
        if not len(samples):
            return
        start = round(at * RATE)
        index = (np.arange(len(samples)) + start) % (RATE * RING_SECONDS)
        with self._lock:
            if start + len(samples) <= self._rendered_until:
                return  # later than the output: it would be heard one ring turn later
            p = self._person(owner)
            p.ring[index] = samples
            p.last_audio = max(p.last_audio, at + len(samples) / RATE)
            if self._start is None:
                self._start = at

    def remove(self, owner: str) -> None:
        with self._lock:
            if owner in self._people:
                del self._people[owner]
                self._order.remove(owner)

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"composer-{self.fmt}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self._encode_loop()
        except Exception as exc:  # an RTMP peer that went away, a full disk
            self.error = str(exc)
            log.exception("composed output %s failed", self.target)

    def _encode_loop(self) -> None:
        while self._start is None:
            if self._stop.wait(0.05):
                return
        options = {"cluster_time_limit": "1000", "flush_packets": "1"} if self.fmt == "matroska" else {}
        container = av.open(self.target, "w", format=self.fmt, options=options)
        vs = container.add_stream("libx264", rate=self.fps)
        vs.width, vs.height, vs.pix_fmt = self.width, self.height, "yuv420p"  # type: ignore[union-attr]
        vs.bit_rate = self.video_bitrate
        vs.options = {"preset": "veryfast", "tune": "zerolatency", "g": str(self.fps * 2)}  # type: ignore[union-attr]
        aus = container.add_stream("aac", rate=RATE)
        aus.layout = "mono"  # type: ignore[union-attr]
        aus.bit_rate = 64_000
        fifo = AudioFifo()
        samples_per_tick = RATE // self.fps
        tick = 0
        try:
            while True:
                assert self._start is not None
                instant = self._start + tick / self.fps
                wait = instant + self.latency - self.clock()
                if wait > 0 and self._stop.wait(wait):
                    break
                if self._stop.is_set():
                    break
                picture, mixed = self.render(instant, samples_per_tick)
                vf = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
                vf.pts = tick
                vf.time_base = fractions.Fraction(1, self.fps)
                for packet in vs.encode(vf):  # type: ignore[union-attr]
                    container.mux(packet)
                af = av.AudioFrame.from_ndarray(mixed.reshape(1, -1), format="s16", layout="mono")
                af.sample_rate = RATE
                af.pts = tick * samples_per_tick
                af.time_base = fractions.Fraction(1, RATE)
                fifo.write(af)
                while (chunk := fifo.read(1024)) is not None:
                    for packet in aus.encode(chunk):  # type: ignore[union-attr]
                        container.mux(packet)
                tick += 1
                self.frames_written = tick
        finally:
            for stream in (vs, aus):
                try:
                    for packet in stream.encode(None):  # type: ignore[union-attr]
                        container.mux(packet)
                except av.FFmpegError:
                    pass
            container.close()

    # ------------------------------------------------------------------ rendering
    def render(self, instant: float, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """The picture (H x W x 3) and mono audio (``samples`` s16) of ``instant``."""
        canvas = np.empty((self.height, self.width, 3), np.uint8)
        canvas[:] = BACKGROUND
        mix = np.zeros(samples, np.int32)
        start = round(instant * RATE)
        index = (np.arange(samples) + start) % (RATE * RING_SECONDS)
        with self._lock:
            order = list(self._order)
            people = [self._people[o] for o in order]
            chosen = []
            for p in people:
                frame: tuple[float, av.VideoFrame] | None = None
                for at, f in p.frames:
                    if at <= instant:
                        frame = (at, f)
                    else:
                        break
                chosen.append(frame)
                mix += p.ring[index]
                p.ring[index] = 0  # consumed: a gap later reads silence, not old audio
            self._rendered_until = start + samples
        for p, frame, rect in zip(
            people, chosen, layout.grid(len(people), self.width, self.height), strict=True
        ):
            self._draw(canvas, p, frame, rect, instant)
        return canvas, np.clip(mix, -32768, 32767).astype(np.int16)

    def _draw(
        self,
        canvas: np.ndarray,
        p: _Participant,
        frame: tuple[float, av.VideoFrame] | None,
        tile: layout.Rect,
        instant: float,
    ) -> None:
        canvas[tile.y : tile.y + tile.h, tile.x : tile.x + tile.w] = (0, 0, 0)
        if frame is not None:
            at, f = frame
            box = layout.fit(f.width, f.height, tile)
            if p.cached is not None and p.cached[0] == id(f) and p.cached[1] == box:
                pixels = p.cached[2]
            else:
                pixels = f.reformat(width=box.w, height=box.h, format="rgb24").to_ndarray()
                p.cached = (id(f), box, pixels)
            if instant - at > STALE_AFTER:
                pixels = (pixels // 3).astype(np.uint8)
            canvas[box.y : box.y + box.h, box.x : box.x + box.w] = pixels
        if p.label is None:
            p.label = label_bitmap(p.name)
        label = p.label[: max(0, tile.h - 4), : max(0, tile.w - 4)]
        y = tile.y + tile.h - label.shape[0] - 2
        canvas[y : y + label.shape[0], tile.x + 2 : tile.x + 2 + label.shape[1]] = label

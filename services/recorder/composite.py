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
from av.audio.codeccontext import AudioCodecContext
from av.audio.fifo import AudioFifo
from av.audio.resampler import AudioResampler
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter

from services.common.bridge_channel import ReceiverVideoConstraints
from services.common.logging import RateLimitedLogger

from . import layout
from .tracks import MAX_SOURCE_PIXELS, vp8_keyframe_size

log = logging.getLogger("recorder.composite")
_limited = RateLimitedLogger(log)

RATE = 48000
RING_SECONDS = 8
STALE_AFTER = 2.0
BACKGROUND = (24, 24, 28)
MAX_PENDING_VIDEO = 60  # encoded frames waiting for their instant (2 s at 30 fps)
MAX_PENDING_AUDIO = 250  # Opus packets waiting for the next tick (5 s of 20 ms packets)


def video_decoder() -> VideoCodecContext:
    """FFmpeg's own VP8 decoder (RFC 6386), one thread: the composer's thread is the only one."""
    ctx = av.CodecContext.create("vp8", "r")
    assert isinstance(ctx, VideoCodecContext)
    ctx.thread_count = 1
    return ctx


def audio_decoder() -> AudioCodecContext:
    """Opus (RFC 6716) decoded straight to 48 kHz mono (a stereo stream mixed down by the
    decoder), planar float, which :func:`mono_s16` turns into the mix's samples. FFmpeg's own
    Opus decoder: the same samples as libopus's (no delay between them, 76 dB apart) for about
    two thirds of its CPU per packet (18 against 27 us for 20 ms on the test machine)."""
    ctx = av.CodecContext.create("opus", "r")
    assert isinstance(ctx, AudioCodecContext)
    ctx.layout = "mono"  # type: ignore[assignment]
    ctx.sample_rate = RATE
    return ctx


LABEL_CHARACTERS = 64
"""a name is drawn on one line of at most this many characters (a nick can be 1023 long)"""


def label_text(name: str) -> str:
    """What is drawn of a participant's (guest-chosen) name: its first line that is not blank,
    control characters dropped, cut to :data:`LABEL_CHARACTERS` with an ellipsis."""
    first = next((line for line in name.splitlines() if line.strip()), "")
    line = "".join(c for c in first if c.isprintable())
    return line if len(line) <= LABEL_CHARACTERS else line[: LABEL_CHARACTERS - 1] + "\u2026"


def label_bitmap(text: str, height: int = 14) -> np.ndarray:
    """The participant's name as white text on a dark box (rendered once, H x W x 3)."""
    from PIL import Image, ImageDraw, ImageFont

    text = label_text(text)
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
    label: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # YUV planes
    drawn: tuple[int | None, layout.Rect, bool] | None = None  # what its tile shows now
    last_audio: float = 0.0
    last_frame_at: float | None = None  # capture time of its latest decoded frame
    period: float = 0.0  # its frames' mean spacing (seconds; 0: not known yet)
    # one scaler per participant: its swscale context is kept while the sizes stay the same
    # (VideoFrame.reformat builds a new one for every frame)
    scaler: VideoReformatter = field(default_factory=VideoReformatter)
    # encoded input (event loop thread in, composer thread out, under the composer's lock)
    video_in: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    audio_in: collections.deque[tuple[float, bytes]] = field(default_factory=collections.deque)
    keyed: bool = False  # a key frame was taken since the start or the last broken frame
    video_decoder: VideoCodecContext | None = None  # composer thread only
    audio_decoder: AudioCodecContext | None = None


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
        mode: str = "grid",
        preset: str = "ultrafast",
        crf: int | None = None,
        qp: int | None = None,
        on_arrangement: Callable[[list[tuple[str, layout.Rect]]], None] | None = None,
    ) -> None:
        self.target, self.fmt = target, fmt
        self.width, self.height, self.fps = width, height, fps
        self.latency = latency
        self.clock = clock
        self.video_bitrate = video_bitrate
        self.preset, self.crf, self.qp = preset, crf, qp
        self._lock = threading.Lock()
        self._people: dict[str, _Participant] = {}
        self._order: list[str] = []
        self._start: float | None = None
        self._rendered_until = 0  # sample index
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resamplers: dict[str, AudioResampler] = {}
        self.frames_written = 0  # output instants rendered (audio and, when due, a picture)
        self.pictures_written = 0  # pictures encoded (:class:`Cadence`)
        self.changed = False  # whether the last render drew anything
        self.source_rate = 0.0  # the fastest shown source's frame rate (0: not known yet)
        self.error: str | None = None
        self._canvas = YuvCanvas(width, height)
        self._stage = layout.Stage(mode, width, height)
        self._layout: list[tuple[str, layout.Rect]] | None = None
        self.on_arrangement = on_arrangement  # called from the composer's thread

    # ------------------------------------------------------------------ input (any thread)
    def _person(self, owner: str) -> _Participant:
        p = self._people.get(owner)
        if p is None:
            p = self._people[owner] = _Participant(owner)
            self._order.append(owner)
        return p

    def video(self, owner: str, at: float, frame: av.VideoFrame, of: _Participant | None = None) -> None:
        """A decoded frame of ``owner``; ``of``: only if ``owner`` is still that participant
        (the composer thread decodes outside the lock: one removed meanwhile stays removed)."""
        with self._lock:
            if of is not None and self._people.get(owner) is not of:
                return
            p = self._person(owner)
            p.frames.append((at, frame))
            if p.last_frame_at is not None and 0 < at - p.last_frame_at < 1.0:
                gap = at - p.last_frame_at
                p.period = gap if not p.period else p.period + (gap - p.period) / 8
            p.last_frame_at = at
            if self._start is None:
                self._start = at

    def video_packet(self, owner: str, at: float, data: bytes) -> bool:
        """One encoded VP8 frame (any thread); True when a key frame is wanted from the sender."""
        size = vp8_keyframe_size(data)
        if size is not None and size[0] * size[1] > MAX_SOURCE_PIXELS:
            # a hostile sender's 16383x16383 "key frame" would have the decoder allocate ~400 MB
            _limited.warning(("size", owner), "%s: refused a %dx%d VP8 key frame", owner, *size)
            size = None
            data = b""
        key = size is not None
        with self._lock:
            p = self._person(owner)
            if self._start is None:
                self._start = at
            if not data:
                p.keyed = False
                return True
            if not key and not p.keyed:
                return True  # undecodable until a key frame
            if len(p.video_in) >= MAX_PENDING_VIDEO:  # the composer is far behind: start again
                p.video_in.clear()
                p.keyed = False
                return True
            p.keyed = True
            p.video_in.append((at, data))
        return False

    def audio_packet(self, owner: str, at: float, data: bytes) -> None:
        """One encoded Opus packet (any thread)."""
        with self._lock:
            p = self._person(owner)
            if self._start is None:
                self._start = at
            if len(p.audio_in) < MAX_PENDING_AUDIO:
                p.audio_in.append((at, data))

    def _decode_inputs(self, instant: float) -> None:
        """Decode (composer thread) every participant's audio that came, and the video frames
        up to ``instant``; the results go where :meth:`video` and :meth:`audio` put them."""
        with self._lock:
            work = []
            for owner, p in self._people.items():
                frames = []
                while p.video_in and p.video_in[0][0] <= instant:
                    frames.append(p.video_in.popleft())
                packets = list(p.audio_in)
                p.audio_in.clear()
                if frames or packets:
                    work.append((owner, p, frames, packets))
        for owner, p, frames, packets in work:
            for at, data in packets:
                if p.audio_decoder is None:
                    p.audio_decoder = audio_decoder()
                try:
                    sound = p.audio_decoder.decode(av.Packet(data))
                except (av.FFmpegError, ValueError) as exc:  # a broken packet: silence there
                    _limited.info(("opus", owner), "%s: an Opus packet did not decode: %s", owner, exc)
                    continue
                for af in sound:
                    self.audio(owner, at, af, of=p)
            broken = False  # a frame did not decode: its successors cannot, up to a key frame
            for at, data in frames:
                if broken:
                    if vp8_keyframe_size(data) is None:
                        continue
                    broken = False
                if p.video_decoder is None:
                    p.video_decoder = video_decoder()
                try:
                    pictures = p.video_decoder.decode(av.Packet(data))
                except (av.FFmpegError, ValueError) as exc:
                    _limited.info(("vp8", owner), "%s: a VP8 frame did not decode: %s", owner, exc)
                    broken = True
                    continue
                if pictures:
                    self.video(owner, at, pictures[-1], of=p)
            if broken:
                with self._lock:  # wait for a key frame (one may have come meanwhile)
                    while p.video_in and vp8_keyframe_size(p.video_in[0][1]) is None:
                        p.video_in.popleft()
                    if not p.video_in:
                        p.keyed = False

    def audio(self, owner: str, at: float, frame: av.AudioFrame, of: _Participant | None = None) -> None:
        """Decoded sound of ``owner``; ``of`` as for :meth:`video`."""
        samples = mono_s16(frame)
        if samples is None:  # not 48 kHz packed s16 (what the Opus decoder gives): resample
            resampler = self._resamplers.get(owner)
            if resampler is None:
                resampler = self._resamplers[owner] = AudioResampler(format="s16", layout="mono", rate=RATE)
            samples = np.concatenate(
                [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)] or [np.zeros(0, np.int16)]
            )
        if not len(samples):
            return
        start = round(at * RATE)
        with self._lock:
            if start + len(samples) <= self._rendered_until:
                return  # later than the output: it would be heard one ring turn later
            if of is not None and self._people.get(owner) is not of:
                return
            p = self._person(owner)
            for ring, part in ring_slices(p.ring, start, len(samples)):
                ring[:] = samples[part]
            p.last_audio = max(p.last_audio, at + len(samples) / RATE)
            if self._start is None:
                self._start = at

    def speaker_changed(self, dominant: str, previous: list[str]) -> None:
        """The bridge's dominant speaker (used by the ``speaker`` layout)."""
        with self._lock:
            self._stage.speaker_changed(dominant, previous)

    def arrangement(self) -> list[tuple[str, layout.Rect]]:
        """Who is shown where now."""
        with self._lock:
            return self._stage.arrange(list(self._order))

    def constraints_for(
        self, arranged: list[tuple[str, layout.Rect]], sources: dict[str, list[str]]
    ) -> ReceiverVideoConstraints:
        """What to ask the bridge for, for ``arranged`` (:meth:`layout.Stage.constraints`)."""
        return self._stage.constraints(arranged, sources, self.fps, len(sources))

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
        vs.options = encoder_options(self.preset, self.fps, self.crf, self.qp)  # type: ignore[union-attr,assignment]
        if self.crf is None and self.qp is None:
            vs.bit_rate = self.video_bitrate
        aus = container.add_stream("aac", rate=RATE)
        aus.layout = "mono"  # type: ignore[union-attr]
        aus.bit_rate = 64_000
        aus.options = {"aac_coder": "fast"}  # FFmpeg's AAC encoder at 2/5 of its default's CPU
        fifo = AudioFifo()
        samples_per_tick = RATE // self.fps
        cadence = Cadence(self.fps)
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
                vf = self.picture(instant)
                span = 1  # instants this turn covers: an unchanged picture is looked at again next
                if self.changed or cadence.idle(tick):
                    vf.pts = tick
                    vf.time_base = fractions.Fraction(1, self.fps)
                    vf.pict_type = PictureType.I if cadence.key_due(tick) else PictureType.NONE
                    cadence.encoded(tick, vf.pict_type == PictureType.I, self.source_rate)
                    for packet in vs.encode(vf):  # type: ignore[union-attr]
                        container.mux(packet)
                    self.pictures_written += 1
                    span = cadence.step
                mixed = self.mix(instant, samples_per_tick * span)
                af = av.AudioFrame.from_ndarray(mixed.reshape(1, -1), format="s16", layout="mono")
                af.sample_rate = RATE
                af.pts = tick * samples_per_tick
                af.time_base = fractions.Fraction(1, RATE)
                fifo.write(af)
                while (chunk := fifo.read(1024)) is not None:
                    for packet in aus.encode(chunk):  # type: ignore[union-attr]
                        container.mux(packet)
                tick += span
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
    def render(self, instant: float, samples: int) -> tuple[av.VideoFrame, np.ndarray]:
        """The picture of ``instant`` (:meth:`picture`) and the mono audio (``samples`` s16)
        from it (:meth:`mix`)."""
        return self.picture(instant), self.mix(instant, samples)

    def picture(self, instant: float) -> av.VideoFrame:
        """The picture (a YUV 4:2:0 frame) of ``instant``, after decoding what came up to it.
        It is one frame kept between calls and drawn into in place (the encoder copies what it
        is given before it is called again): only tiles whose frame changed are drawn again
        (sources send 15-30 fps, most output frames repeat most tiles), and :attr:`changed`
        says whether any was."""
        half_period = 0.5 / self.fps
        self._decode_inputs(instant + half_period)
        with self._lock:
            arranged = self._stage.arrange(list(self._order))
            people = [self._people[o] for o, _ in arranged]
            chosen: list[tuple[float, av.VideoFrame] | None] = []
            for p in people:
                frame: tuple[float, av.VideoFrame] | None = None
                frames = p.frames
                # the frame nearest the instant; the ones before it are never shown again
                # (instants only grow), so they go and the next tick looks at a few only
                while len(frames) > 1 and frames[1][0] <= instant + half_period:
                    frames.popleft()
                if frames and frames[0][0] <= instant + half_period:
                    frame = frames[0]
                chosen.append(frame)
            self.source_rate = max((1 / p.period for p in people if p.period), default=0.0)
        canvas = self._canvas
        self.changed = False
        tiles = [tile for _, tile in arranged]
        if self._layout != arranged:  # someone came, went or took the floor: repaint everything
            self._layout = arranged
            self.changed = True
            canvas.fill(layout.Rect(0, 0, self.width, self.height), BACKGROUND)
            for p in people:
                p.drawn = None
            if self.on_arrangement is not None:
                self.on_arrangement(arranged)
        for p, frame, tile in zip(people, chosen, tiles, strict=True):
            stale = frame is not None and instant - frame[0] > STALE_AFTER
            key = (id(frame[1]) if frame else None, tile, stale)
            if p.drawn != key:
                self._draw(p, frame[1] if frame else None, tile, stale)
                p.drawn = key
                self.changed = True
        return canvas.frame

    def mix(self, instant: float, samples: int) -> np.ndarray:
        """Everyone's audio of ``samples`` from ``instant``, added up (call :meth:`picture`
        first: it decodes what came)."""
        mix = np.zeros(samples, np.int32)
        start = round(instant * RATE)
        with self._lock:
            for p in self._people.values():
                for ring, part in ring_slices(p.ring, start, samples):
                    mix[part] += ring
                    ring[:] = 0  # consumed: a gap later reads silence, not old audio
            self._rendered_until = start + samples
        return np.clip(mix, -32768, 32767).astype(np.int16)

    def _draw(self, p: _Participant, frame: av.VideoFrame | None, tile: layout.Rect, stale: bool) -> None:
        canvas = self._canvas
        if frame is None:
            canvas.fill(tile, (0, 0, 0))
        else:
            box = layout.fit(frame.width, frame.height, tile)
            for margin in layout.margins(tile, box):  # the picture covers the rest
                canvas.fill(margin, (0, 0, 0))
            scaled = p.scaler.reformat(
                frame,
                width=box.w,
                height=box.h,
                format="yuv420p",
                interpolation=Interpolation.BILINEAR,
                threads=1,  # FFmpeg's default starts a pool of threads per scale: more work, not less
            )
            canvas.put(box, yuv_planes(scaled), dim=stale)
        if p.label is None:
            p.label = yuv_planes(rgb_frame(label_bitmap(p.name)))
        h, w = p.label[0].shape
        h, w = min(h, tile.h - 4) // 2 * 2, min(w, tile.w - 4) // 2 * 2
        if h > 0 and w > 0:
            y = tile.y + tile.h - h - 2
            planes = (p.label[0][:h, :w], p.label[1][: h // 2, : w // 2], p.label[2][: h // 2, : w // 2])
            canvas.put(layout.Rect(tile.x + 2, y // 2 * 2, w, h), planes)


def ring_slices(ring: np.ndarray, start: int, count: int) -> list[tuple[np.ndarray, slice]]:
    """``count`` samples of ``ring`` from absolute sample ``start`` (wrapping around its end):
    (view of the ring, the matching slice of a ``count``-long array), one or two of them."""
    size = len(ring)
    at = start % size
    first = min(count, size - at)
    out = [(ring[at : at + first], slice(0, first))]
    if first < count:
        out.append((ring[: count - first], slice(first, count)))
    return out


def mono_s16(frame: av.AudioFrame) -> np.ndarray | None:
    """A 48 kHz frame of packed s16 (mono or stereo, as libopus decodes) or mono float (as
    FFmpeg's Opus decoder does) as mono s16 samples, without a resampler; None for any other
    format or rate."""
    if frame.sample_rate != RATE:
        return None
    channels = len(frame.layout.channels)
    fmt = frame.format.name
    # the plane itself (samples, then padding), not to_ndarray's stacked copy
    if fmt in ("fltp", "flt") and channels == 1:
        samples = np.frombuffer(memoryview(frame.planes[0]), np.float32, count=frame.samples) * 32768.0
        np.minimum(samples, 32767.0, out=samples)  # (np.clip's wrapper costs more than the work)
        np.maximum(samples, -32768.0, out=samples)
        return samples.astype(np.int16)
    if fmt != "s16":
        return None
    data = np.frombuffer(memoryview(frame.planes[0]), np.int16)[: frame.samples * channels]
    if channels == 1:
        return data
    return (data.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels).astype(np.int16)


def rgb_frame(image: np.ndarray) -> av.VideoFrame:
    """An RGB image (cropped to even sizes) as a YUV 4:2:0 frame."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24").reformat(
        format="yuv420p",
        threads=1,  # FFmpeg's default starts (and ends) a pool of threads per call
    )


def yuv_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y, U and V planes of a yuv420p frame as arrays (line padding removed)."""
    out = []
    for i, plane in enumerate(frame.planes):
        w, h = (frame.width, frame.height) if i == 0 else ((frame.width + 1) // 2, (frame.height + 1) // 2)
        out.append(np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:h, :w])
    return out[0], out[1], out[2]


def rgb_to_yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    y, u, v = yuv_planes(rgb_frame(np.full((2, 2, 3), rgb, np.uint8)))
    return int(y[0, 0]), int(u[0, 0]), int(v[0, 0])


def encoder_options(preset: str, fps: int, crf: int | None, qp: int | None = None) -> dict[str, str]:
    """libx264's options. No ``tune=zerolatency``: nobody watches a file live, and an RTMP
    viewer is seconds behind anyway; one thread, since a recorder runs beside others on a
    machine (threads add work, not speed, when every core is busy); a key frame every two
    seconds (what RTMP services ask for).

    Rate control, in this order: ``qp``, constant quantizer (files): with scene-cut detection
    and weighted prediction off (``ultrafast`` has both off already; set here so that another
    preset keeps it), libx264 builds no half-size lookahead copy of each picture
    (``b_have_lowres``), which its CRF and bit-rate modes need for every picture to estimate
    its cost; ``crf``, constant quality (files); neither: the bit rate set on the stream (live
    streams: RTMP services ask for one, and libx264's bit-rate mode, with or without VBV and
    ``nal-hrd``, always builds the lowres copy)."""
    options = {"preset": preset, "g": str(fps * 2), "threads": "1"}
    if qp is not None:
        options.update(qp=str(qp), sc_threshold="0", weightp="none")
    elif crf is not None:
        options["crf"] = str(crf)
    return options


KEEPALIVE = 1.0  # seconds: an unchanged picture is encoded again this often
KEY_EVERY = 2.0  # seconds between key frames (what RTMP services ask for)


class Cadence:
    """Which output instants get a picture (no I/O). The output keeps its time base (1/fps) and
    its audio throughout. A picture is encoded when it changed (a tile has a new frame,
    someone came, went or took the floor), or when :data:`KEEPALIVE` passed without one
    (players and RTMP servers see a live stream); after an encoded picture the composer looks
    again :attr:`step` instants later (mixing the audio of those instants at once): the
    output's rate divided by the fastest shown source's (15 fps sources on a 30 fps output:
    every second instant), so each source frame is shown once and none is drawn or encoded
    twice; after an unchanged one, at the next instant (so the pictures fall in step with
    the sources' frames).

    The result is a variable frame rate stream (each picture lasts until the next; Matroska and
    FLV carry a time per frame), at most the configured rate and at least the sources' own, and a
    key frame every :data:`KEY_EVERY` seconds, counted in time rather than pictures."""

    def __init__(self, fps: int) -> None:
        self.fps = fps
        self.step = 1
        self.last: int | None = None
        self.last_key: int | None = None

    def idle(self, tick: int) -> bool:
        return self.last is None or tick - self.last >= KEEPALIVE * self.fps

    def key_due(self, tick: int) -> bool:
        return self.last_key is None or tick - self.last_key >= KEY_EVERY * self.fps

    def encoded(self, tick: int, key: bool, source_rate: float) -> None:
        """A picture was encoded at ``tick``; ``source_rate``: the fastest shown source's frames
        a second (0: not known, every instant may get one)."""
        self.last = tick
        if key:
            self.last_key = tick
        if source_rate <= 0:
            self.step = 1
        else:  # 15 fps (14.5-16 with jitter) on 30 -> 2; 20 on 30 -> 1; 10 on 30 -> 3
            self.step = max(1, min(self.fps // 5 or 1, int(self.fps / source_rate + 0.15)))


class YuvCanvas:
    """A persistent YUV 4:2:0 picture: one ``av.VideoFrame``, its three planes as array views
    (line padding left out), drawn into in place and handed to the encoder as it is."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.frame = av.VideoFrame(width, height, "yuv420p")
        self.y, self.u, self.v = yuv_planes(self.frame)
        self._colours: dict[tuple[int, int, int], tuple[int, int, int]] = {}

    def fill(self, r: layout.Rect, rgb: tuple[int, int, int]) -> None:
        yuv = self._colours.get(rgb)
        if yuv is None:
            yuv = self._colours[rgb] = rgb_to_yuv(rgb)
        self.y[r.y : r.y + r.h, r.x : r.x + r.w] = yuv[0]
        self.u[r.y // 2 : (r.y + r.h) // 2, r.x // 2 : (r.x + r.w) // 2] = yuv[1]
        self.v[r.y // 2 : (r.y + r.h) // 2, r.x // 2 : (r.x + r.w) // 2] = yuv[2]

    def put(
        self, r: layout.Rect, planes: tuple[np.ndarray, np.ndarray, np.ndarray], dim: bool = False
    ) -> None:
        y, u, v = planes
        if dim:  # a picture that stopped coming: a third of its brightness, grey-ish
            y = (y // 3).astype(np.uint8)
            u = (128 + (u.astype(np.int16) - 128) // 3).astype(np.uint8)
            v = (128 + (v.astype(np.int16) - 128) // 3).astype(np.uint8)
        self.y[r.y : r.y + r.h, r.x : r.x + r.w] = y[: r.h, : r.w]
        self.u[r.y // 2 : (r.y + r.h) // 2, r.x // 2 : (r.x + r.w) // 2] = u[: r.h // 2, : r.w // 2]
        self.v[r.y // 2 : (r.y + r.h) // 2, r.x // 2 : (r.x + r.w) // 2] = v[: r.h // 2, : r.w // 2]

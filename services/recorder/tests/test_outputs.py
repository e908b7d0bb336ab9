"""The writers without a network: WebM remux of real VP8/Opus frames, the composer's picture and
mix at a given instant, and a cut file that still plays."""

from __future__ import annotations

import fractions
import itertools
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from services.common.jibri import RecordingMode
from services.recorder import layout
from services.recorder.composite import (
    BACKGROUND,
    RATE,
    RING_SECONDS,
    Cadence,
    Composer,
    audio_decoder,
    encoder_options,
    mono_s16,
    rgb_to_yuv,
    ring_slices,
)
from services.recorder.recording import CompositeSettings, Recording
from services.recorder.tracks import TrackWriter, vp8_keyframe_size


def vp8_frames(n: int, rgb: tuple[int, int, int], w: int = 160, h: int = 120) -> list[bytes]:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = {"deadline": "realtime", "cpu-used": "8", "g": "10"}
    out = []
    for i in range(n):
        image = np.full((h, w, 3), rgb, np.uint8)
        image[:, (i * 4) % w : (i * 4) % w + 4] = 255
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in enc.encode(frame)]  # type: ignore[attr-defined]
    out += [bytes(p) for p in enc.encode(None)]  # type: ignore[attr-defined]
    return out


def opus_packets(n: int, freq: float = 440.0) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, 48000)
    out = []
    for i in range(n):
        t = (np.arange(960) + i * 960) / 48000
        wave = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(wave, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in enc.encode(frame)]  # type: ignore[attr-defined]
    return out


def probe(path: Path) -> str:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=False, timeout=30,
    ).stdout  # fmt: skip


def test_keyframe_size_is_read_from_the_vp8_header() -> None:
    frames = vp8_frames(3, (10, 20, 30), 320, 240)
    assert vp8_keyframe_size(frames[0]) == (320, 240)
    assert vp8_keyframe_size(frames[1]) is None
    assert vp8_keyframe_size(b"\x00" * 3) is None


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe missing")
def test_webm_remux_without_decoding_and_a_cut_file_still_plays(tmp_path: Path) -> None:
    path = tmp_path / "p.webm"
    writer = TrackWriter(path, origin=0.0)
    video, audio = vp8_frames(60, (200, 30, 30)), opus_packets(100)
    # audio starts before the first key frame (which comes after 0.2 s): kept and written
    for i, packet in enumerate(audio[:10]):
        writer.audio(packet, i * 0.02)
    for i, frame in enumerate(video):
        writer.video(frame, 0.2 + i / 30)
        for j in range(10 + i * 3 // 2, min(len(audio), 10 + (i + 1) * 3 // 2)):
            writer.audio(audio[j], j * 0.02)
    size_before_close = path.stat().st_size
    cut = tmp_path / "cut.webm"
    cut.write_bytes(path.read_bytes()[: max(size_before_close, 4096)])
    writer.close()
    assert writer.frames["video"] == 60 and writer.frames["audio"] == len(audio)
    assert sorted(probe(path).split()) == ["opus", "vp8"]
    with av.open(str(path)) as c:
        decoded = sum(1 for _ in c.decode(video=0))
    assert decoded == 60
    # what was on disk before the file was finalised (a crash) opens and decodes
    assert "vp8" in probe(cut)
    with av.open(str(cut)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 10


def test_audio_only_when_no_video_comes(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path / "a.webm", origin=0.0)
    for i, packet in enumerate(opus_packets(250)):
        writer.audio(packet, i * 0.02)
    writer.close()
    assert writer.video_stream is None and writer.frames["audio"] > 100


def test_composer_takes_the_frame_and_the_audio_of_the_instant() -> None:
    composer = Composer("unused", "matroska", width=320, height=180, fps=10)
    red = av.VideoFrame.from_ndarray(np.full((120, 160, 3), (220, 30, 30), np.uint8), format="rgb24")
    blue = av.VideoFrame.from_ndarray(np.full((120, 160, 3), (30, 30, 220), np.uint8), format="rgb24")
    composer.video("alice", 10.0, red)
    composer.video("alice", 11.0, blue)
    composer.video("bob", 10.0, blue)
    # alice: a click of 1 at exactly t=10.5 s; bob: nothing (lost) -> silence
    click = np.zeros(960, np.int16)
    click[0] = 1000
    frame = av.AudioFrame.from_ndarray(click.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 48000
    composer.audio("alice", 10.5, frame)
    tiles = layout.grid(2, 320, 180)

    def colour(picture: av.VideoFrame, tile: layout.Rect) -> tuple[int, ...]:
        rgb = picture.to_ndarray(format="rgb24")
        return tuple(int(v) for v in rgb[tile.y + tile.h // 2, tile.x + tile.w // 2])

    picture, mix = composer.render(10.45, 4800)  # [10.45, 10.55): the click is 50 ms in
    assert colour(picture, tiles[0])[0] > 150  # alice still red at 10.45
    assert colour(picture, tiles[1])[2] > 150
    assert int(np.argmax(np.abs(mix))) == 2400 and mix[2400] == 1000
    picture, mix = composer.render(11.0, 4800)
    assert colour(picture, tiles[0])[2] > 150  # alice's frame of 11.0
    assert not mix.any()
    # audio that arrives after its instant was rendered is dropped, not played one ring later
    composer.audio("alice", 10.5, frame)
    _, mix = composer.render(10.5 + 8.0, 4800)
    assert not mix.any()


def test_stereo_s16_is_mixed_down_without_a_resampler() -> None:
    stereo = np.array([[1000, 3000, -2000, -4000, 10, 20]], np.int16)  # L R L R L R
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48000
    assert list(mono_s16(frame)) == [2000, -3000, 15]  # type: ignore[arg-type]
    mono = av.AudioFrame.from_ndarray(np.array([[5, 6]], np.int16), format="s16", layout="mono")
    mono.sample_rate = 48000
    assert list(mono_s16(mono)) == [5, 6]  # type: ignore[arg-type]
    mono.sample_rate = 16000
    assert mono_s16(mono) is None  # another rate: the resampler's job


def test_opus_decodes_to_the_samples_libopus_gives_without_delay() -> None:
    """The composer's Opus decoder (FFmpeg's own) gives libopus's samples, at the same
    instants, as mono s16 read from the frame's plane (not its padding)."""
    packets = opus_packets(50)
    ours = audio_decoder()
    mine = [mono_s16(f) for packet in packets for f in ours.decode(av.Packet(packet))]
    reference = av.CodecContext.create("libopus", "r")
    reference.format, reference.layout, reference.sample_rate = "s16", "mono", RATE  # type: ignore[attr-defined]
    theirs = [f.to_ndarray().reshape(-1) for packet in packets for f in reference.decode(av.Packet(packet))]
    assert len(mine) == len(theirs) == 50
    for a, b in zip(mine, theirs, strict=True):
        assert a is not None and a.dtype == np.int16 and len(a) == len(b) == 960
    got, want = np.concatenate(mine).astype(np.int32), np.concatenate(theirs).astype(np.int32)
    assert np.abs(want).max() > 5000  # the tone
    assert np.abs(got - want).max() <= 8  # same samples at the same instants (no lag)
    clipped = av.AudioFrame.from_ndarray(
        np.array([[1.5, -2.0, 0.5]], np.float32), format="flt", layout="mono"
    )
    clipped.sample_rate = RATE
    assert list(mono_s16(clipped)) == [32767, -32768, 16384]  # type: ignore[arg-type]


def test_each_tile_is_drawn_in_yuv_where_it_belongs_and_its_margins_follow_the_source() -> None:
    """The picture is drawn in its YUV planes: a tile's picture inside its box, black bars in
    the rest of the tile (again when the source's shape changes), the background between tiles
    untouched, and a tile redrawn only when its frame changed."""
    composer = Composer("unused", "matroska", width=640, height=360, fps=10)

    def solid(w: int, h: int, rgb: tuple[int, int, int]) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(np.full((h, w, 3), rgb, np.uint8), format="rgb24")

    red, green, blue = (220, 30, 30), (30, 200, 30), (40, 60, 230)
    composer.video("alice", 10.0, solid(320, 180, red))  # 16:9: fills its tile
    composer.video("bob", 10.0, solid(160, 120, blue))  # 4:3: bars left and right
    composer.video("alice", 11.0, solid(90, 160, green))  # portrait: wide bars
    a, b = layout.grid(2, 640, 360)
    canvas = composer._canvas

    def yuv(x: int, y: int) -> tuple[int, int, int]:
        return int(canvas.y[y, x]), int(canvas.u[y // 2, x // 2]), int(canvas.v[y // 2, x // 2])

    def near(got: tuple[int, int, int], rgb: tuple[int, int, int]) -> bool:
        return all(abs(g - w) <= 3 for g, w in zip(got, rgb_to_yuv(rgb), strict=True))

    composer.picture(10.0)
    assert composer.changed
    bob_box = layout.fit(160, 120, b)
    assert near(yuv(a.x + a.w // 2, a.y + a.h // 2), red) and near(yuv(a.x + 4, a.y + 4), red)
    assert near(yuv(bob_box.x + bob_box.w // 2, b.y + b.h // 2), blue)
    assert near(yuv(b.x + 2, b.y + b.h // 2), (0, 0, 0))  # bob's bar
    assert near(yuv(bob_box.x + bob_box.w + 2, b.y + b.h // 2), (0, 0, 0))
    assert near(yuv(2, 2), BACKGROUND) and near(yuv(a.x + a.w + 1, a.y + a.h // 2), BACKGROUND)
    composer.picture(10.5)
    assert not composer.changed  # nobody's frame changed: nothing drawn
    composer.picture(11.0)
    assert composer.changed
    box = layout.fit(90, 160, a)
    assert box.w < a.w // 2
    assert near(yuv(a.x + a.w // 2, a.y + a.h // 2), green)
    assert near(yuv(a.x + 4, a.y + a.h // 2), (0, 0, 0))  # red before, in the new bar now
    assert near(yuv(a.x + a.w - 4, a.y + 4), (0, 0, 0))
    assert near(yuv(bob_box.x + bob_box.w // 2, b.y + b.h // 2), blue)  # bob's tile kept


def test_composer_decodes_encoded_input_from_the_first_key_frame() -> None:
    """The receiver's frames go to the composer encoded; it decodes them in its own thread at
    the instant they are shown, asks for a key frame until it has one and again after a frame
    that does not decode, and mixes the Opus packets at their capture times."""
    composer = Composer("unused", "matroska", width=320, height=180, fps=10)
    frames = vp8_frames(12, (220, 30, 30))  # key frame every 10: 0 and 10
    assert vp8_keyframe_size(frames[0]) and not vp8_keyframe_size(frames[1])
    assert composer.video_packet("alice", 9.9, frames[1]) is True  # no key frame yet: ask for one
    for i, data in enumerate(frames[:10]):
        assert composer.video_packet("alice", 10.0 + i / 30, data) is False
    for i, packet in enumerate(opus_packets(50)):
        composer.audio_packet("alice", 10.0 + i * 0.02, packet)
    tile = layout.grid(1, 320, 180)[0]
    picture, mix = composer.render(10.1, 4800)
    rgb = picture.to_ndarray(format="rgb24")[tile.y + tile.h // 2, tile.x + tile.w // 4]
    assert rgb[0] > 150 and rgb[1] < 80  # the red pattern, decoded here
    assert np.abs(mix).max() > 1000  # the tone, decoded and mixed at its instant
    # a frame that does not decode: the stream waits for (and asks for) the next key frame
    composer.video_packet("alice", 10.5, b"\x00" * 40)  # a key frame's flag, no start code
    composer.render(10.6, 4800)
    assert composer.video_packet("alice", 10.7, frames[11]) is True


def test_a_participant_removed_while_its_frames_decode_does_not_come_back() -> None:
    """The composer thread decodes outside its lock; a participant removed meanwhile (the event
    loop's :meth:`Composer.remove`) must stay removed: its decoded picture and sound are dropped,
    not given a new tile for the rest of the recording."""
    composer = Composer("unused", "matroska", width=320, height=180, fps=10)
    frames = vp8_frames(2, (30, 220, 30))
    assert composer.video_packet("alice", 10.0, frames[0]) is False
    for i, packet in enumerate(opus_packets(5)):
        composer.audio_packet("alice", 10.0 + i * 0.02, packet)
    composer.video_packet("bob", 10.0, frames[0])

    class Leaving:  # alice leaves while her audio is in the decoder
        def __init__(self, real: object) -> None:
            self.real = real

        def decode(self, packet: av.Packet) -> object:
            composer.remove("alice")
            return self.real.decode(packet)  # type: ignore[attr-defined]

    from services.recorder.composite import audio_decoder

    composer._people["alice"].audio_decoder = Leaving(audio_decoder())  # type: ignore[assignment]
    composer.render(10.1, 4800)
    assert "alice" not in composer._people
    assert [o for o, _ in composer.arrangement()] == ["bob"]


def test_after_a_frame_that_does_not_decode_the_next_key_frame_already_received_is_used() -> None:
    """A broken frame makes its successors undecodable up to the next key frame (RFC 6386
    section 9.1), not that key frame: one already received is decoded, no new one asked for."""
    composer = Composer("unused", "matroska", width=320, height=180, fps=10)
    frames = vp8_frames(12, (220, 30, 30))  # key frames: 0 and 10
    for at, data in ((10.0, frames[0]), (10.01, b"\x00" * 40), (10.02, frames[10]), (10.03, frames[11])):
        assert composer.video_packet("alice", at, data) is False
    composer.render(10.1, 4800)
    assert [at for at, _ in composer._people["alice"].frames][-1] == 10.03  # decoded from frame 10 on
    assert composer.video_packet("alice", 10.2, frames[1]) is False  # no key frame wanted


def forged_size(key_frame: bytes, width: int, height: int) -> bytes:
    """``key_frame`` with the picture size of its header (RFC 6386 section 9.1) replaced."""
    return key_frame[:6] + width.to_bytes(2, "little") + height.to_bytes(2, "little") + key_frame[10:]


def test_a_key_frame_claiming_more_than_4096x2304_is_refused_before_the_decoder() -> None:
    """A hostile sender's key frame header may claim up to 16383x16383 (about 400 MB of decoded
    picture): the composer refuses it from the header alone, never hands it (or the inter frames
    after it) to a decoder, asks for a real key frame, and takes the next genuine one."""
    composer = Composer("unused", "matroska", width=320, height=180, fps=10)
    frames = vp8_frames(12, (220, 30, 30))
    for width, height in ((16383, 16383), (4098, 2304), (4096, 2306)):
        forged = forged_size(frames[0], width, height)
        assert vp8_keyframe_size(forged) == (width, height)
        assert composer.video_packet("mallory", 10.0, forged) is True  # refused: asks for another
        assert composer.video_packet("mallory", 10.03, frames[1]) is True  # its successors too
    mallory = composer._people["mallory"]
    assert not mallory.video_in and not mallory.keyed
    composer.render(10.1, 4800)
    assert mallory.video_decoder is None  # nothing reached a decoder, nothing was allocated for it
    # the limit itself (a 4K screen share) passes the check
    assert (
        Composer("unused", "matroska").video_packet("carol", 10.0, forged_size(frames[0], 4096, 2304))
        is False
    )
    # a genuine key frame afterwards is taken and shown
    for i, data in enumerate(frames[:10]):
        assert composer.video_packet("mallory", 10.2 + i / 30, data) is False
    tile = layout.grid(1, 320, 180)[0]
    picture, _ = composer.render(10.3, 4800)
    rgb = picture.to_ndarray(format="rgb24")[tile.y + tile.h // 2, tile.x + tile.w // 4]
    assert rgb[0] > 150 and rgb[1] < 80
    assert mallory.video_decoder is not None


def test_the_per_participant_file_drops_a_key_frame_claiming_more_than_4096x2304(tmp_path: Path) -> None:
    """The remuxed file is not decoded here, but a player would be: a forged size never opens it."""
    writer = TrackWriter(tmp_path / "m.webm", origin=0.0)
    frames = vp8_frames(3, (30, 200, 30))
    writer.video(forged_size(frames[0], 16383, 16383), 0.0)
    assert writer.container is None and not writer._early
    writer.video(frames[0], 0.1)
    assert writer.video_stream is not None
    assert (writer.video_stream.width, writer.video_stream.height) == (160, 120)  # type: ignore[attr-defined]
    writer.close()


def test_cadence_encodes_each_source_frame_once_at_most_the_output_rate() -> None:
    """30 fps output, 15 fps sources: a picture every second instant, an unchanged one again
    after a second, a key frame every two seconds; 30 fps sources (or an unknown rate): every
    instant."""
    cadence = Cadence(30)
    assert cadence.step == 1 and cadence.idle(0) and cadence.key_due(0)
    cadence.encoded(0, True, 15.0)
    assert cadence.step == 2
    cadence.encoded(2, False, 15.2)  # jitter around 15 fps keeps the step
    assert cadence.step == 2
    assert not cadence.idle(4) and cadence.idle(32)  # nothing changed for a second: sent again
    assert not cadence.key_due(59) and cadence.key_due(60)
    cadence.encoded(4, False, 30.0)
    assert cadence.step == 1
    cadence.encoded(5, False, 0.0)
    assert cadence.step == 1
    cadence.encoded(6, False, 20.0)  # 20 fps on 30: every instant, not every second one
    assert cadence.step == 1
    cadence.encoded(7, False, 1.0)  # a slide show: still at least 5 pictures a second
    assert cadence.step == 6


def test_composed_file_has_one_picture_per_source_frame_and_audio_throughout(tmp_path: Path) -> None:
    """The encode loop with a 15 fps source on a 30 fps output: about 15 pictures a second,
    every one of them a new source frame, key frames two seconds apart, the audio unbroken."""
    start = 1000.0
    clock = [start]
    out = tmp_path / "composed.mkv"
    composer = Composer(
        str(out), "matroska", width=320, height=180, fps=30, latency=0.2, clock=lambda: clock[0]
    )
    frames = vp8_frames(58, (220, 30, 30))  # 3.9 s at 15 fps (the composer queues at most 60)
    for i, data in enumerate(frames):
        composer.video_packet("alice", start + i / 15, data)
    for i, packet in enumerate(opus_packets(200)):
        composer.audio_packet("alice", start + i * 0.02, packet)
    clock[0] = start + 3.9  # every instant up to 3.7 s is due at once
    composer.start()
    assert wait_for(lambda: composer.frames_written >= 111)
    composer.stop()
    assert composer.error is None
    assert 52 <= composer.pictures_written <= 60, composer.pictures_written  # 3.7 s at 15, plus the first
    with av.open(str(out)) as c:
        video = [(f.time, f.key_frame) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        audio_seconds = sum(f.samples for f in c.decode(audio=0)) / 48000
    times = [t for t, _ in video]
    assert all(0.06 <= b - a <= 0.07 for a, b in itertools.pairwise(times)), times  # every 2nd instant
    keys = [t for t, key in video if key]
    assert len(keys) >= 2 and all(abs(b - a - 2.0) < 0.04 for a, b in itertools.pairwise(keys)), keys
    assert audio_seconds >= 3.5


def wait_for(condition: Callable[[], bool], within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_audio_across_the_end_of_the_ring_is_mixed_in_order() -> None:
    """The per-participant ring is read and written by slices: a packet and a mix that cross
    its end wrap around to its start, sample for sample."""
    ring = np.zeros(10, np.int32)
    parts = ring_slices(ring, 27, 6)  # absolute 27..32: ring 7, 8, 9 then 0, 1, 2
    assert [(len(view), part) for view, part in parts] == [(3, slice(0, 3)), (3, slice(3, 6))]
    composer = Composer("unused", "matroska", width=320, height=180, fps=10)
    ring_end = RATE * RING_SECONDS * 3  # an absolute sample where the ring starts again
    ramp = np.arange(1, 961, dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(ramp.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    composer.audio("alice", (ring_end - 480) / RATE, frame)  # half before the end, half after
    mix = composer.mix((ring_end - 1000) / RATE, 2000)
    assert list(mix[520:1480]) == list(ramp) and not mix[:520].any() and not mix[1480:].any()


def test_nicks_that_name_the_same_file_get_files_of_their_own(tmp_path: Path) -> None:
    recording = Recording("s1", "r@muc", RecordingMode.FILE, tmp_path / "r-s1")
    try:
        packets = opus_packets(5)
        for nick in ("ada", "ada!", "ada?", "../ada"):
            recording.encoded(nick, "audio", packets[0], time.monotonic())
        names = sorted(w.path.name for w in recording.writers.values())
        assert names == ["ada-2.webm", "ada-3.webm", "ada-4.webm", "ada.webm"], names
        assert all(w.path.parent == tmp_path / "r-s1" for w in recording.writers.values())
    finally:
        recording.finish()


def test_a_guest_chosen_name_is_drawn_on_one_short_line() -> None:
    from services.recorder.composite import LABEL_CHARACTERS, label_bitmap, label_text

    assert label_text("ada") == "ada"
    assert label_text("\n \nada\nsecond line") == "ada"
    assert label_text("a\x00\x1b[31mb") == "a[31mb"
    long = label_text("x" * 1023)
    assert len(long) == LABEL_CHARACTERS and long.endswith("\u2026")
    # a 1023-character nick of many lines is one label no wider than the short cut
    many = label_bitmap("\n".join(["w" * 40] * 25))
    assert many.shape[0] <= 16 and many.shape[1] == label_bitmap("w" * 40).shape[1]
    assert label_bitmap("x" * 1023).shape[1] <= label_bitmap("x" * LABEL_CHARACTERS).shape[1] + 8


def test_encoder_options_per_rate_control() -> None:
    """Constant QP turns off what would make libx264 build a lowres copy of every picture
    (scene-cut detection, weighted prediction); CRF and the stream's bit rate keep the preset's."""
    qp = encoder_options("ultrafast", 30, None, 26)
    assert qp == {"preset": "ultrafast", "g": "60", "threads": "1", "qp": "26", "sc_threshold": "0", "weightp": "none"}
    assert encoder_options("ultrafast", 30, 25) == {"preset": "ultrafast", "g": "60", "threads": "1", "crf": "25"}
    assert encoder_options("ultrafast", 15, None) == {"preset": "ultrafast", "g": "30", "threads": "1"}
    assert encoder_options("veryfast", 30, 25, 20)["qp"] == "20"  # qp first
    assert "crf" not in encoder_options("veryfast", 30, 25, 20)


def x264_settings(path: Path) -> dict[str, str]:
    """libx264's settings as it wrote them into the stream (its SEI "x264 - core ... options:")."""
    text = path.read_bytes().split(b"options: ", 1)[1].split(b"\x00", 1)[0].split(b"\x80", 1)[0]
    return dict(item.split("=", 1) for item in text.decode("ascii", "replace").split() if "=" in item)


def composed(tmp_path: Path, name: str, **rate: int) -> Path:
    """Two seconds of one participant composed into ``name`` with the rate control ``rate``."""
    start = 1000.0
    clock = [start]
    out = tmp_path / name
    composer = Composer(str(out), "matroska", width=320, height=180, fps=15, latency=0.2,
                        clock=lambda: clock[0], **rate)  # type: ignore[arg-type]  # fmt: skip
    for i, data in enumerate(vp8_frames(30, (30, 200, 30))):
        composer.video_packet("alice", start + i / 15, data)
    for i, packet in enumerate(opus_packets(100)):
        composer.audio_packet("alice", start + i * 0.02, packet)
    clock[0] = start + 2.5
    composer.start()
    assert wait_for(lambda: composer.frames_written >= 25)
    composer.stop()
    assert composer.error is None
    return out


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe missing")
def test_a_file_at_constant_qp_is_encoded_without_rate_control_and_plays(tmp_path: Path) -> None:
    out = composed(tmp_path, "qp.mkv", qp=26)
    assert probe(out).split() == ["h264", "aac"]
    settings = x264_settings(out)
    assert (settings["rc"], settings["qp"], settings["scenecut"], settings["weightp"]) == ("cqp", "26", "0", "0")
    assert settings["mbtree"] == "0" and settings["bframes"] == "0"  # nothing else that needs a lowres copy
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 25


def test_crf_and_bit_rate_are_what_the_encoder_got(tmp_path: Path) -> None:
    crf = x264_settings(composed(tmp_path, "crf.mkv", crf=25))
    assert (crf["rc"], crf["crf"]) == ("crf", "25.0")
    abr = x264_settings(composed(tmp_path, "abr.mkv"))
    assert (abr["rc"], abr["bitrate"]) == ("abr", "800")


def test_a_file_recording_encodes_at_constant_qp_and_a_stream_at_its_bit_rate(tmp_path: Path) -> None:
    file = Recording("s1", "r@muc", RecordingMode.FILE, tmp_path / "r-s1")
    stream = Recording("s2", "r@muc", RecordingMode.STREAM, tmp_path / "r-s2", "rtmp://127.0.0.1:1/x")
    crf = Recording("s3", "r@muc", RecordingMode.FILE, tmp_path / "r-s3",
                    composite=CompositeSettings(file_rate_control="crf"))  # fmt: skip
    try:
        assert (file.composer.qp, file.composer.crf) == (CompositeSettings().qp, None)
        assert (stream.composer.qp, stream.composer.crf) == (None, None)
        assert (crf.composer.qp, crf.composer.crf) == (None, 25)
    finally:
        for r in (file, stream, crf):
            r.finish()

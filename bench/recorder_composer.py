"""The composed recording's own cost, without a network: the recorder's Composer thread (layout,
VP8 and Opus decoding, scaling, drawing, H.264 and AAC encoding) fed with encoded frames as the
media session hands them over (whole VP8 frames, Opus packets), timed by the CPU time of those threads alone (and libx264's) (``/proc/self/task/<tid>/stat``), so the
figure does not move with the load of a shared machine the way a whole process's does.

``--participants`` feeders push ``--source`` frames (a colour with a moving bar, as the test
participants send, encoded with libvpx in real time) at ``--source-fps`` and 20 ms Opus packets of
a tone each, as the receivers' jitter buffers hand them over; the
composer renders ``--size`` at ``--fps`` into a Matroska file for ``--seconds``.

    .venv/bin/python bench/recorder_composer.py --participants 3
    .venv/bin/python bench/recorder_composer.py --participants 10 --layout speaker
"""

from __future__ import annotations

import argparse
import fractions
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.recorder.composite import Composer

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(native_id: int) -> float:
    try:
        text = Path(f"/proc/self/task/{native_id}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def composer_cpu(feeders: set[int]) -> float:
    """CPU seconds of every thread of this process but the feeders and the main thread: the
    composer's and the encoders' (libx264 runs threads of its own)."""
    main = threading.main_thread().native_id
    return sum(
        thread_cpu(int(t.name))
        for t in Path("/proc/self/task").iterdir()
        if int(t.name) not in feeders | {main}
    )


def feeder(
    composer: Composer,
    name: str,
    rgb: tuple[int, int, int],
    size: tuple[int, int],
    fps: int,
    stop: threading.Event,
) -> None:
    w, h = size
    vp8 = av.CodecContext.create("libvpx", "w")
    vp8.width, vp8.height, vp8.pix_fmt = w, h, "yuv420p"  # type: ignore[attr-defined]
    vp8.time_base = fractions.Fraction(1, fps)
    vp8.options = {"deadline": "realtime", "cpu-used": "8", "g": str(fps * 10)}
    vp8.thread_count = 1  # no encoder threads of its own: they would be counted as the composer's
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate, opus.layout, opus.format = 48000, "mono", "s16"  # type: ignore[attr-defined]
    opus.time_base = fractions.Fraction(1, 48000)
    start = time.monotonic()
    n = 0
    samples = 0
    tone = 300.0 + sum(rgb)
    while not stop.is_set():
        now = time.monotonic()
        image = np.empty((h, w, 3), np.uint8)
        image[:] = rgb
        bar = (n * 4) % w
        image[:, bar : bar + 4] = 255
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        for packet in vp8.encode(frame):  # type: ignore[attr-defined]
            composer.video_packet(name, start + n / fps, bytes(packet))
        while samples < (now - start + 0.1) * 48000:
            t = (np.arange(960) + samples) / 48000
            wave = (np.sin(2 * np.pi * tone * t) * 8000).astype(np.int16)
            af = av.AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
            af.sample_rate = 48000
            af.time_base = fractions.Fraction(1, 48000)
            af.pts = samples
            for packet in opus.encode(af):  # type: ignore[attr-defined]
                composer.audio_packet(name, start + samples / 48000, bytes(packet))
            samples += 960
        n += 1
        time.sleep(max(0.0, start + n / fps - time.monotonic()))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--source", default="160x120")
    parser.add_argument("--source-fps", type=int, default=15)
    parser.add_argument("--layout", choices=["grid", "speaker"], default="grid")
    parser.add_argument("--preset", default="ultrafast")
    parser.add_argument("--crf", type=int, default=None, help="constant quality (files); default: 800 kbit/s")
    parser.add_argument("--qp", type=int, default=None, help="constant quantizer (files' default); default: 800 kbit/s")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    source = tuple(int(v) for v in args.source.split("x"))
    out = Path(tempfile.mkdtemp(prefix="parley-composer-")) / "composed.mkv"
    composer = Composer(
        str(out), "matroska", width, height, args.fps, mode=args.layout, preset=args.preset, crf=args.crf,
        qp=args.qp,
    )
    stop = threading.Event()
    feeders = [
        threading.Thread(
            target=feeder,
            args=(
                composer,
                f"p{i}",
                ((i * 73) % 256, (i * 151) % 256, (i * 31) % 256),
                source,
                args.source_fps,
                stop,
            ),
            daemon=True,
        )
        for i in range(args.participants)
    ]
    for f in feeders:
        f.start()
    composer.start()
    time.sleep(2.0)  # the latency and the first frames
    own = {f.native_id for f in feeders if f.native_id is not None}
    cpu0, frames0, t0 = composer_cpu(own), composer.frames_written, time.monotonic()
    pictures0 = composer.pictures_written
    time.sleep(args.seconds)
    cpu1, frames1, t1 = composer_cpu(own), composer.frames_written, time.monotonic()
    pictures1 = composer.pictures_written
    stop.set()
    composer.stop()
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"{args.participants} participants, {args.layout} {width}x{height}@{args.fps} {args.preset} "
        f"{'qp ' + str(args.qp) if args.qp is not None else 'crf ' + str(args.crf) if args.crf is not None else '800 kbit/s'}: composer threads "
        f"{(cpu1 - cpu0) / (t1 - t0) * 100:.1f} % of a core, {(frames1 - frames0) / (t1 - t0):.1f} frames/s "
        f"({(pictures1 - pictures0) / (t1 - t0):.1f} pictures/s encoded), "
        f"{(cpu1 - cpu0) / max(1, frames1 - frames0) * 1000:.2f} ms CPU per output frame "
        f"(load {load}); {out.stat().st_size / 1e6:.1f} MB written"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

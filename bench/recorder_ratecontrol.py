"""The composed file's rate control: libx264's CPU per picture, file size and quality at
constant QP against CRF (and the live stream's bit rate), on the pictures of a real recording.

Input: the per-participant WebM files of a file recording (``bench/recorder.py --keep DIR``
copies them). Their VP8 frames are decoded and drawn by the recorder's own composer
(:class:`services.recorder.composite.Composer`, no thread, no network) at ``--size`` and
``--fps``; the pictures it would encode (those that changed, :class:`~services.recorder.composite.Cadence`)
are kept uncompressed, then encoded once per mode with the composer's options
(:func:`~services.recorder.composite.encoder_options`, ``preset=ultrafast``, one thread, a key
frame every two seconds), each encode ``--repeat`` times, the least CPU kept (the calling
thread's CPU time: with one thread libx264 encodes and looks ahead in the caller). Quality:
FFmpeg's ``psnr`` and ``ssim`` filters, decoded output against the uncompressed pictures.
Size: the encoded bytes per minute of the recording's time.

    .venv/bin/python bench/recorder.py --sizes 3 --window 20 --keep /tmp/rec3
    .venv/bin/python bench/recorder_ratecontrol.py /tmp/rec3 --seconds 10

Numbers only; it never fails on them.
"""

from __future__ import annotations

import argparse
import fractions
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.recorder.composite import Cadence, Composer, encoder_options

MODES: list[tuple[str, dict[str, object]]] = [
    ("crf 25", {"crf": 25}),
    ("crf 23", {"crf": 23}),
    ("qp 20", {"qp": 20}),
    ("qp 23", {"qp": 23}),
    ("qp 25", {"qp": 25}),
    ("qp 26", {"qp": 26}),
    ("qp 29", {"qp": 29}),
    ("bitrate 800k", {"bitrate": 800_000}),
    ("bitrate 800k nal-hrd vbv", {"bitrate": 800_000, "hrd": True}),
]


def tracks(directory: Path) -> dict[str, list[tuple[float, av.VideoFrame]]]:
    """Every video WebM under ``directory``: its decoded frames with their times (seconds)."""
    out: dict[str, list[tuple[float, av.VideoFrame]]] = {}
    for path in sorted(directory.rglob("*.webm")):
        with av.open(str(path)) as container:
            if not container.streams.video:
                continue
            stream = container.streams.video[0]
            frames = []
            for frame in container.decode(stream):
                if frame.pts is None or frame.time_base is None:
                    continue
                frames.append((float(frame.pts * frame.time_base), frame))
            if frames:
                out[path.stem] = frames
    return out


def composed(directory: Path, width: int, height: int, fps: int, seconds: float) -> list[np.ndarray]:
    """The pictures the composer would encode in the first ``seconds`` that all tracks cover."""
    people = tracks(directory)
    if not people:
        raise SystemExit(f"no video WebM under {directory}")
    start = max(frames[0][0] for frames in people.values()) + 1.0
    composer = Composer("unused", "matroska", width, height, fps)
    fed = {name: 0 for name in people}
    cadence = Cadence(fps)
    pictures: list[np.ndarray] = []
    tick = 0
    while tick < seconds * fps:
        instant = start + tick / fps
        for name, frames in people.items():
            while fed[name] < len(frames) and frames[fed[name]][0] <= instant + 0.5 / fps:
                composer.video(name, frames[fed[name]][0], frames[fed[name]][1])
                fed[name] += 1
        vf = composer.picture(instant)
        span = 1
        if composer.changed or cadence.idle(tick):
            pictures.append(vf.to_ndarray().copy())
            cadence.encoded(tick, False, composer.source_rate)
            span = cadence.step
        tick += span
    print(f"{len(people)} participants, {len(pictures)} pictures in {seconds:.0f} s "
          f"({len(pictures) / seconds:.1f}/s) at {width}x{height}", flush=True)  # fmt: skip
    return pictures


def encode(pictures: list[np.ndarray], rate: int, mode: dict[str, object], target: Path) -> tuple[float, int]:
    """(CPU seconds of the encoder, bytes) for ``pictures`` at ``rate`` pictures a second."""
    height, width = pictures[0].shape[0] * 2 // 3, pictures[0].shape[1]
    container = av.open(str(target), "w", format="matroska")
    vs = container.add_stream("libx264", rate=rate)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"  # type: ignore[union-attr]
    crf, qp = mode.get("crf"), mode.get("qp")
    options = encoder_options("ultrafast", rate, crf if isinstance(crf, int) else None,
                              qp if isinstance(qp, int) else None)  # fmt: skip
    if "bitrate" in mode:
        vs.bit_rate = int(mode["bitrate"])  # type: ignore[call-overload]
        if mode.get("hrd"):
            options["x264-params"] = "nal-hrd=vbr"
            options["maxrate"] = str(mode["bitrate"])
            options["bufsize"] = str(2 * int(mode["bitrate"]))  # type: ignore[call-overload]
    vs.options = options  # type: ignore[union-attr]
    frames = []
    for i, picture in enumerate(pictures):
        vf = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        vf.pts, vf.time_base = i, fractions.Fraction(1, rate)
        vf.pict_type = av.video.frame.PictureType.I if i % (2 * rate) == 0 else av.video.frame.PictureType.NONE
        frames.append(vf)
    size = 0
    cpu = 0.0
    for vf in [*frames, None]:
        before = time.thread_time()
        packets = vs.encode(vf)  # type: ignore[union-attr,arg-type]
        cpu += time.thread_time() - before
        for packet in packets:
            size += packet.size
            container.mux(packet)
    container.close()
    return cpu, size


def quality(raw: Path, encoded: Path, width: int, height: int, rate: int) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``encoded`` against the raw pictures, FFmpeg's filters (averages over
    the pictures and the three planes)."""
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-f", "rawvideo", "-pix_fmt", "yuv420p",
         "-s", f"{width}x{height}", "-r", str(rate), "-i", str(raw), "-i", str(encoded),
         # picture n against picture n (Matroska keeps milliseconds: 1/15 s would not pair)
         "-lavfi", f"[0:v]settb=1/{rate},setpts=N,split[c][d];[1:v]settb=1/{rate},setpts=N,split[a][b];"
                   "[a][c]psnr;[b][d]ssim", "-f", "null", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    psnr = re.search(r"PSNR .*average:([0-9.inf]+)", result.stderr)
    ssim = re.search(r"SSIM .*All:([0-9.]+)", result.stderr)
    return (float(psnr.group(1)) if psnr else float("nan"), float(ssim.group(1)) if ssim else float("nan"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recording", type=Path, help="a directory with the per-participant WebM files")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    pictures = composed(args.recording, width, height, args.fps, args.seconds)
    rate = max(1, round(len(pictures) / args.seconds))  # pictures a second, as encoded
    with tempfile.TemporaryDirectory(prefix="parley-ratecontrol-") as work:
        raw = Path(work) / "raw.yuv"
        with raw.open("wb") as out:
            for picture in pictures:
                out.write(picture.tobytes())
        print(f"{'mode':26s} {'ms/picture':>10s} {'MB/min':>7s} {'PSNR dB':>8s} {'SSIM':>7s}")
        for name, mode in MODES:
            target = Path(work) / "out.mkv"
            runs = [encode(pictures, rate, mode, target) for _ in range(args.repeat)]
            cpu, size = min(runs)
            psnr, ssim = quality(raw, target, width, height, rate)
            print(f"{name:26s} {cpu / len(pictures) * 1000:10.2f} {size / args.seconds * 60 / 1e6:7.2f} "
                  f"{psnr:8.2f} {ssim:7.4f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

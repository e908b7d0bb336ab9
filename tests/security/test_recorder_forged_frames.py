"""The recorder's composer against a participant who forges VP8 key frames.

A VP8 key frame states its picture size in its first ten bytes (RFC 6386 section 9.1), up to
16383x16383. A hostile participant can send a few bytes claiming 16000x8000; a decoder that
believed it would reserve about 190 MB per frame (more than FFmpeg's own size check lets
through only above 16383x16383). The composer refuses any key frame above 4096x2304 from the
header alone: nothing is decoded or allocated for it, the sender is asked for a real key frame,
and the other participants' pictures and sound go on being recorded.
"""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np

from services.recorder import layout
from services.recorder.composite import Composer
from services.recorder.tests.test_outputs import forged_size, opus_packets, vp8_frames


def vm_peak() -> int:
    """This process's peak of virtual memory (bytes): a reservation counts even untouched."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmPeak")


def test_forged_key_frame_sizes_are_refused_without_allocating_them(tmp_path: Path) -> None:
    start = time.monotonic()
    out = tmp_path / "composed.mkv"
    composer = Composer(str(out), "matroska", width=320, height=180, fps=15, latency=0.2)
    alice = vp8_frames(45, (220, 30, 30))
    mallory = vp8_frames(45, (30, 200, 30))
    huge = [forged_size(f, 16000, 8000) if i % 10 == 0 else f for i, f in enumerate(mallory)]
    composer.start()
    peak = vm_peak()
    asked = 0
    for i in range(45):
        at = start + i / 15
        time.sleep(max(0.0, at - time.monotonic()))
        composer.video_packet("alice", at, alice[i])
        asked += composer.video_packet("mallory", at, huge[i])
        for j, packet in enumerate(opus_packets(3)):
            composer.audio_packet("alice", at + j * 0.02, packet)
    time.sleep(0.5)
    composer.stop()
    assert composer.error is None
    assert asked == 45  # every frame of mallory's refused, each time asking for a real key frame
    assert vm_peak() - peak < 100 * 2**20  # nothing near 16000x8000 (190 MB) was reserved
    with av.open(str(out)) as c:
        pictures = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(pictures) > 10
    alice_tile, mallory_tile = layout.grid(2, 320, 180)
    last = pictures[-1]
    red = last[alice_tile.y + alice_tile.h // 2, alice_tile.x + alice_tile.w // 4]
    assert red[0] > 150 and red[1] < 80  # alice recorded
    m = mallory_tile
    empty = last[m.y + m.h // 3 : m.y + m.h // 2, m.x + 8 : m.x + m.w - 8]
    assert int(np.max(empty)) < 40  # mallory's tile: no picture at all, not her green

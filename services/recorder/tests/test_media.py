"""The receiver hook that takes aiortc's encoded frames out (services/recorder/media.py)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from services.recorder.media import _FrameQueue


def test_a_frame_handler_failing_on_every_frame_logs_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    """What a sender's frames make the handler raise is logged rate-limited, not once per frame
    (a traceback per frame of a 30 fps stream would flood the log), and the receiver goes on."""
    seen = []

    def sink(codec: str, data: bytes, ts: int) -> None:
        seen.append(ts)
        raise ValueError("bad frame")

    q = _FrameQueue(sink)
    codec = SimpleNamespace(name="VP8")
    with caplog.at_level(logging.INFO, logger="recorder.media"):
        for ts in range(300):
            q.put((codec, SimpleNamespace(data=b"\x00" * 20, timestamp=ts)))
    assert len(seen) == 300  # every frame still handed over
    assert 1 <= len([r for r in caplog.records if r.name == "recorder.media"]) <= 2
    assert q.empty()  # the decoder thread gets nothing

"""The recorder's receive path alone: CPU per RTP packet from the DTLS transport's hand-over to a
whole frame out, aiortc's own receiver (as the recorder hooked it before: frames taken out of the
decoder queue, not decoded) against the recorder's (services/recorder/receive.py).

No network and no SRTP: 6000 VP8 packets (3 per frame, abs-send-time and transport-cc header
extensions, as the bridge sends them) are handed to a real aiortc ``RTCDtlsTransport`` in this
process; what the receiver would send is counted, not encrypted or sent. CPU is this process's
(``time.process_time``), so the figure does not depend on other load much; runs alternate.

    .venv/bin/python bench/recorder_receive.py
"""

from __future__ import annotations

import asyncio
import queue
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpReceiveParameters
from aiortc.rtp import HeaderExtensionsMap

from services.recorder import receive as rx
from services.recorder.tests import test_receive as t

EXTENSIONS = RTCRtpReceiveParameters(
    headerExtensions=[
        RTCRtpHeaderExtensionParameters(
            id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
        ),
        RTCRtpHeaderExtensionParameters(
            id=5, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
        ),
    ]
)
PACKETS = 6000


def packets() -> list[tuple[bytes, int]]:
    """Serialized packets and their arrival times (ms), about 45 a second."""
    extensions = HeaderExtensionsMap()
    extensions.configure(EXTENSIONS)
    out = []
    for i, p in enumerate(t.vp8_packets(PACKETS // 3)):
        ms = i * 22
        p.extensions.abs_send_time = ((ms << 18) // 1000) & 0xFFFFFF
        p.extensions.transport_sequence_number = i & 0xFFFF
        out.append((p.serialize(extensions), ms))
    return out


async def run(recorder: bool) -> tuple[float, int, int]:
    """(us of CPU per packet, frames out, RTCP packets the receiver sent)."""
    track = await t.make_track("video")
    transport = track.receiver.transport
    transport._rtp_header_extensions_map.configure(EXTENSIONS)
    original_queue = track.receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
    if recorder:
        rx.RecorderRoute.of(transport).add(track.receive)
    else:
        del track.receiver._handle_rtp_packet  # aiortc's own method again

        class TakeOut(queue.Queue):  # type: ignore[type-arg]
            def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
                codec, frame = item
                track.frames.append((codec.name, bytes(frame.data), frame.timestamp))

        track.receiver._RTCRtpReceiver__decoder_queue = TakeOut()  # type: ignore[attr-defined]
    data = packets()
    start = time.process_time()
    for packet, ms in data:
        await transport._handle_rtp_data(packet, arrival_time_ms=1_000_000 + ms)
    cpu = time.process_time() - start
    track.receiver._RTCRtpReceiver__decoder_queue = original_queue  # type: ignore[attr-defined]
    await track.receiver.stop()
    return 1e6 * cpu / len(data), len(track.frames), len(track.sent)


async def main() -> None:
    for recorder in (False, True, False, True, False, True):
        us, frames, sent = await run(recorder)
        name = "recorder's" if recorder else "aiortc's  "
        print(
            f"{name} receiver: {us:5.1f} us CPU per packet, {frames} frames, {sent} RTCP packets sent for {PACKETS} RTP"
        )


if __name__ == "__main__":
    asyncio.run(main())

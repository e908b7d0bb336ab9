"""The recorder's datagram path alone: CPU per SRTP datagram from the ICE connection's datagram
callback (aioice's ``Connection.data_received``) to a whole frame out, aiortc's way (the
connection's queue, the DTLS transport's receive task, ``_recv_next``, SRTP unprotect, the
transport's RTP hand-over) against the recorder's direct one (:class:`RecorderRoute.datagram`:
unprotect and hand over in the callback).

No network: 6000 VP8 packets (3 per frame, abs-send-time and transport-cc header extensions, as
the bridge sends them) are SRTP-protected (AES_CM_128_HMAC_SHA1_80) and handed to a real aiortc
``RTCDtlsTransport`` whose SRTP session is set up as after a handshake; after each datagram the
event loop (uvloop, as the recorder's) turns once, as it does between datagrams from the socket.
CPU is this process's (``time.process_time``); runs alternate.

    flock -x /work/bench.lock .venv/bin/python bench/recorder_datagram.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.recorder_receive import EXTENSIONS, PACKETS, packets
from services.recorder import receive as rx
from services.recorder.tests import test_receive as t


async def run(direct: bool) -> tuple[float, int]:
    """(us of CPU per datagram, frames out)."""
    track = await t.make_track("video")
    transport = track.receiver.transport
    transport._rtp_header_extensions_map.configure(EXTENSIONS)
    route = rx.RecorderRoute.of(transport)
    route.add(track.receive)
    sender = t.srtp_up(transport)
    connection = transport.transport._connection
    connection._nominated = {1: None}  # as once ICE has a pair: recv() waits for the queue
    transport._RTCDtlsTransport__handshake_done = True  # type: ignore[attr-defined]
    task = asyncio.ensure_future(transport._RTCDtlsTransport__run())  # type: ignore[attr-defined]
    deliver = route.datagram if direct else route.original_datagram
    data = [sender.protect(packet) for packet, _ in packets()]
    await asyncio.sleep(0)
    start = time.process_time()
    for datagram in data:
        deliver(datagram, 1)
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    cpu = time.process_time() - start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await track.receiver.stop()
    return 1e6 * cpu / len(data), len(track.frames)


async def main() -> None:
    for direct in (False, True, False, True, False, True):
        us, frames = await run(direct)
        name = "direct     " if direct else "aiortc's way"
        print(f"{name}: {us:5.1f} us CPU per datagram, {frames} frames of {PACKETS // 3}")


if __name__ == "__main__":
    uvloop.run(main())

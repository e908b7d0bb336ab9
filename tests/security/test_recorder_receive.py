"""The recorder's receive path against a hostile stream (a forged bridge peer, or whatever a
participant's packets become once forwarded): every table it keeps per track is bounded, bad
packets are dropped one by one, and a good stream on the same receiver is still recorded.

* new SSRCs on every packet: statistics are kept for at most ``MAX_SSRCS`` per track (aiortc's
  own table grows with each);
* sequence numbers jumping by 32767 on every packet: the missing-packet list and each NACK stay
  within ``NACK_HISTORY`` (aiortc's generator walks all 32767 numbers per packet);
* unknown payload types, empty and truncated payloads, RTX without its original sequence number
  or from an unknown SSRC: dropped;
* SRTP datagrams of a known SSRC that do not authenticate or replay a real one, on the path from
  the ICE connection's datagram callback: dropped by SRTP before any parsing.
"""

from __future__ import annotations

import asyncio
import os

from aiortc.rtp import RtpPacket
from pylibsrtp import Policy, Session

from services.recorder import receive as rx
from services.recorder.tests.test_receive import SSRC, feed, frame_data, make_track, srtp_up, vp8_packets


async def test_a_forged_stream_is_bounded_and_the_real_one_still_recorded() -> None:
    video = await make_track("video")
    try:
        forged = []
        for i in range(2000):
            forged.append(RtpPacket(payload_type=100, sequence_number=(i * 32767) & 0xFFFF, timestamp=i * 3000,
                                    ssrc=SSRC if i % 2 else 0x10000 + i, payload=b"\x10" + b"x" * 20))  # fmt: skip
        forged += [
            RtpPacket(payload_type=55, sequence_number=1, ssrc=SSRC, payload=b"\x10abc"),  # unknown type
            RtpPacket(
                payload_type=100, sequence_number=2, ssrc=SSRC, payload=b"\x80"
            ),  # truncated descriptor
            RtpPacket(payload_type=100, sequence_number=3, ssrc=SSRC, payload=b""),
            RtpPacket(payload_type=96, sequence_number=4, ssrc=0x5678, payload=b"\x01"),  # RTX, no sequence
            RtpPacket(
                payload_type=96, sequence_number=5, ssrc=0x9999, payload=b"\x00\x01\x10ab"
            ),  # RTX, unknown
        ]
        await feed(video, forged)
        streams = video.receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        assert len(streams) <= rx.MAX_SSRCS
        assert video.receive.nack is not None and len(video.receive.nack.missing) <= rx.NACK_HISTORY
        assert all(len(lost) <= rx.NACK_HISTORY for lost in video.nacks())

        # the sender's real stream goes on (sequence numbers far from the forged ones)
        before = len(video.frames)
        await feed(video, vp8_packets(20, first_seq=40000, first_ts=10_000_000))
        got = [d for _, d, _ in video.frames[before:]]
        assert got[-5:] == [frame_data(f) for f in range(14, 19)]
    finally:
        await video.receiver.stop()


async def test_forged_srtp_on_the_datagram_path_is_dropped_and_the_real_stream_recorded() -> None:
    """Datagrams carrying a known SSRC that do not authenticate (a guessed key, a flipped tag,
    random bytes) or replay a real packet are dropped by SRTP before any parsing, each costing
    a counter; the sender's real stream on the same track is still recorded."""
    video = await make_track("video")
    try:
        transport = video.receiver.transport
        route = rx.RecorderRoute.of(transport)
        route.add(video.receive)
        sender = srtp_up(transport)
        stranger = Session(Policy(key=bytes(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        real = [sender.protect(p.serialize()) for p in vp8_packets(20)]
        header = real[0][:12]
        forged = [stranger.protect(p.serialize()) for p in vp8_packets(300, first_seq=1000)]
        forged += [header + os.urandom(200) for _ in range(300)]
        forged += [real[0][:-1] + bytes([real[0][-1] ^ 0xFF])] * 300
        route.datagram(real[0], 1)
        for data in forged:
            route.datagram(data, 1)
        for data in [real[0], *real[1:]]:  # the first one again: a replay
            route.datagram(data, 1)
            await asyncio.sleep(0)
        assert route.unprotect_failed == len(forged) + 1 and route.direct == len(real)
        assert transport.transport._connection._queue.qsize() == 0  # none went to aiortc's queue
        assert len(video.receiver._RTCRtpReceiver__remote_streams) == 1  # type: ignore[attr-defined]
        assert [d for _, d, _ in video.frames] == [frame_data(f) for f in range(19)]
    finally:
        await video.receiver.stop()

"""The recorder's receive path (services/recorder/receive.py) on a real aiortc receiver: frames out
whole and in order, loss answered with NACK, RTX repairing it, PLI on request, a fixed REMB at
an interval (not per packet), receiver statistics for the reports. What the receiver sends is
taken where its DTLS transport would encrypt it."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport, RTCRtpReceiver
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
    RTCRtpRtxParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unpack_remb_fci,
)
from pylibsrtp import Policy, Session

from services.recorder import receive as rx
from services.recorder.sync import TrackClock

SSRC, RTX_SSRC, OUR_SSRC = 0x1234, 0x5678, 0x4242
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100)
RTX = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=96, parameters={"apt": 100})
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
REMB_BPS = 20_000_000


@dataclass
class Track:
    receiver: RTCRtpReceiver
    receive: rx.RecorderReceive
    sent: list[bytes] = field(default_factory=list)
    frames: list[tuple[str, bytes, int]] = field(default_factory=list)

    def rtcp(self) -> list[object]:
        return [p for data in self.sent for p in RtcpPacket.parse(data)]

    def nacks(self) -> list[list[int]]:
        return [p.lost for p in self.rtcp() if isinstance(p, RtcpRtpfbPacket) and p.fmt == 1]

    def plis(self) -> int:
        return sum(1 for p in self.rtcp() if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI)

    def rembs(self) -> list[tuple[int, list[int]]]:
        return [
            unpack_remb_fci(p.fci)
            for p in self.rtcp()
            if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP
        ]


async def make_track(kind: str, sink_fails: bool = False) -> Track:
    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver(kind, dtls)
    receiver._track = RemoteStreamTrack(kind)
    receiver._set_rtcp_ssrc(OUR_SSRC)
    clock = TrackClock(rate=VP8.clockRate if kind == "video" else OPUS.clockRate)
    track = Track(receiver, None)  # type: ignore[arg-type]

    async def send_rtp(data: bytes) -> None:  # where the transport would protect and send it
        track.sent.append(data)

    dtls._send_rtp = send_rtp  # type: ignore[method-assign]

    def sink(codec: str, data: bytes, ts: int) -> None:
        track.frames.append((codec, data, ts))
        if sink_fails:
            raise ValueError("bad frame")

    track.receive = rx.RecorderReceive(receiver, clock, sink, REMB_BPS)
    track.receive.install()
    if kind == "video":
        params = RTCRtpReceiveParameters(
            codecs=[VP8, RTX],
            encodings=[
                RTCRtpDecodingParameters(ssrc=SSRC, payloadType=100, rtx=RTCRtpRtxParameters(ssrc=RTX_SSRC))
            ],
        )
    else:
        params = RTCRtpReceiveParameters(
            codecs=[OPUS], encodings=[RTCRtpDecodingParameters(ssrc=SSRC, payloadType=111)]
        )
    await receiver.receive(params)
    return track


@pytest.fixture
async def video() -> AsyncIterator[Track]:
    track = await make_track("video")
    yield track
    await track.receiver.stop()


def vp8_packets(
    frames: int, per_frame: int = 3, first_seq: int = 65530, first_ts: int = 4294960000
) -> list[RtpPacket]:
    """VP8 packets (RFC 7741 descriptor: S bit on each frame's first), sequence numbers and
    timestamps wrapping."""
    out = []
    seq = first_seq
    for f in range(frames):
        ts = (first_ts + 6000 * f) & 0xFFFFFFFF
        for i in range(per_frame):
            payload = bytes([0x10 if i == 0 else 0x00]) + bytes([f & 0xFF, i]) * 50
            out.append(
                RtpPacket(
                    payload_type=100,
                    marker=int(i == per_frame - 1),
                    sequence_number=seq,
                    timestamp=ts,
                    ssrc=SSRC,
                    payload=payload,
                )
            )
            seq = (seq + 1) & 0xFFFF
    return out


def frame_data(f: int, per_frame: int = 3) -> bytes:
    return b"".join(bytes([f & 0xFF, i]) * 50 for i in range(per_frame))


async def feed(track: Track, packets: list[RtpPacket]) -> None:
    for p in packets:
        await track.receiver._handle_rtp_packet(p, arrival_time_ms=0)
        await asyncio.sleep(0)  # the RTCP it asked for is sent from its own task


async def test_frames_come_out_whole_in_order_with_unwrapped_timestamps(video: Track) -> None:
    await feed(video, vp8_packets(10))
    # a frame is complete when the next one starts: nine of ten
    assert [d for _, d, _ in video.frames] == [frame_data(f) for f in range(9)]
    timestamps = [ts for _, _, ts in video.frames]
    assert timestamps == [4294960000 + 6000 * f for f in range(9)]  # across the 32-bit wrap
    assert video.receive.clock.offset is not None  # arrival times observed
    stats = video.receiver._RTCRtpReceiver__remote_streams[SSRC]  # type: ignore[attr-defined]
    assert stats.packets_received == 30 and stats.packets_lost == 0
    assert video.nacks() == [] and video.plis() == 0


async def test_a_fixed_remb_at_an_interval_not_per_packet(
    video: Track, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(rx.time, "monotonic", lambda: now[0])
    packets = vp8_packets(40)
    await feed(video, packets[:60])  # 60 packets within one interval
    assert video.rembs() == [(REMB_BPS, [SSRC])]
    now[0] += rx.REMB_INTERVAL
    await feed(video, packets[60:])
    assert video.rembs() == [(REMB_BPS, [SSRC])] * 2


async def test_a_gap_is_nacked_and_a_late_packet_completes_its_frame(video: Track) -> None:
    packets = vp8_packets(6)
    lost = packets[7]  # frame 2, second packet
    await feed(video, packets[:7] + packets[8:12])
    assert video.nacks() == [[lost.sequence_number]]
    assert len(video.frames) == 2  # frames 0, 1; frame 2 waits for its packet
    await feed(video, [lost, *packets[12:]])
    assert [d for _, d, _ in video.frames] == [frame_data(f) for f in range(5)]


async def test_a_retransmission_repairs_the_gap(video: Track) -> None:
    packets = vp8_packets(4)
    lost = packets[4]
    await feed(video, packets[:4] + packets[5:])
    assert video.nacks() == [[lost.sequence_number]]
    rtx_packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=lost.timestamp, ssrc=RTX_SSRC,
                           payload=struct.pack("!H", lost.sequence_number) + lost.payload)  # fmt: skip
    await feed(video, [rtx_packet])
    # the jitter buffer hands over one frame per packet: frame 1 now, the next with the next packet
    assert [d for _, d, _ in video.frames] == [frame_data(f) for f in range(2)]
    assert video.nacks() == [[lost.sequence_number]]  # repaired: not asked again


async def test_a_key_frame_request_sends_one_pli_per_interval(
    video: Track, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(rx.time, "monotonic", lambda: now[0])
    packets = vp8_packets(10)
    video.receive.want_key_frame()
    await feed(video, packets[:2])
    video.receive.want_key_frame()  # again at once: not sent
    await feed(video, packets[2:4])
    assert video.plis() == 1
    now[0] += rx.PLI_INTERVAL + 0.001
    video.receive.want_key_frame()
    await feed(video, packets[4:6])
    assert video.plis() == 2


async def test_audio_packets_are_frames_with_no_remb_or_pli() -> None:
    audio = await make_track("audio")
    try:
        packets = [RtpPacket(payload_type=111, sequence_number=i, timestamp=960 * i, ssrc=SSRC, payload=bytes([i]) * 40)
                   for i in range(20)]  # fmt: skip
        audio.receive.want_key_frame()
        await feed(audio, packets)
        # the jitter buffer keeps 4 packets back (aiortc's audio prefetch)
        assert [d for _, d, _ in audio.frames] == [bytes([i]) * 40 for i in range(16)]
        assert [ts for _, _, ts in audio.frames] == [960 * i for i in range(16)]
        assert audio.sent == []
    finally:
        await audio.receiver.stop()


async def test_a_frame_handler_failing_on_every_frame_logs_now_and_then(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a sender's frames make the handler raise is logged rate-limited, not once per frame
    (a traceback per frame of a 30 fps stream would flood the log), and the receiver goes on."""
    track = await make_track("video", sink_fails=True)
    try:
        with caplog.at_level(logging.INFO, logger="recorder.media"):
            await feed(track, vp8_packets(300, per_frame=1))
        assert len(track.frames) == 299  # every frame still handed over
        assert 1 <= len([r for r in caplog.records if r.name == "recorder.media"]) <= 2
    finally:
        await track.receiver.stop()


def test_missing_packets_across_the_wrap_and_late_arrivals() -> None:
    m = rx.MissingPackets()
    assert not m.add(65533)
    assert m.add(2)  # 65534, 65535, 0, 1 missing
    assert m.missing == {65534, 65535, 0, 1}
    assert not m.add(0)  # late
    assert not m.add(3)
    assert m.missing == {65534, 65535, 1}
    assert not m.add(65000)  # far behind: nothing new
    assert m.add(3 + rx.NACK_HISTORY + 10)  # the old ones are forgotten, the gap kept to the history
    assert len(m.missing) == rx.NACK_HISTORY and 1 not in m.missing


def rtp_bytes(
    csrcs: int = 0, extension: bytes | None = None, padding: int = 0, payload: bytes = b"\x10" + b"ab" * 20
) -> bytes:
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0) | csrcs
    out = struct.pack("!BBHII", first, 0x80 | 100, 65535, 0xFFFFFFF0, SSRC) + b"\x00\x00\x00\x07" * csrcs
    if extension is not None:
        out += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    out += payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


@pytest.mark.parametrize(
    "data",
    [
        rtp_bytes(),
        rtp_bytes(csrcs=2),
        rtp_bytes(extension=b"\x22\x01\x02\x03"),
        rtp_bytes(csrcs=1, extension=b"\x10\xff\x00\x00" * 2, padding=5),
    ],
)
def test_parse_rtp_reads_the_header_as_aiortc_does(data: bytes) -> None:
    ours, theirs = rx.parse_rtp(data), RtpPacket.parse(data)
    assert ours is not None
    fields = ("payload_type", "marker", "sequence_number", "timestamp", "ssrc", "payload", "padding_size")
    assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]


@pytest.mark.parametrize(
    "data",
    [
        rtp_bytes()[:11],
        b"\x40" + rtp_bytes()[1:],  # version 1
        rtp_bytes(csrcs=3)[:20],  # CSRC list cut
        rtp_bytes(extension=b"\x22\x01\x02\x03")[:14],  # extension header cut
        rtp_bytes(extension=b"\x22\x01\x02\x03")[:18],  # extension cut
        rtp_bytes(padding=3)[:-1] + b"\x00",  # padding length 0
        rtp_bytes(padding=3)[:-1] + b"\xff",  # padding longer than the payload
    ],
)
def test_parse_rtp_refuses_what_aiortc_refuses(data: bytes) -> None:
    assert rx.parse_rtp(data) is None
    with pytest.raises(ValueError):
        RtpPacket.parse(data)


async def test_the_transport_hands_known_ssrcs_straight_to_their_track(video: Track) -> None:
    transport = video.receiver.transport
    route = rx.RecorderRoute.of(transport)
    assert rx.RecorderRoute.of(transport) is route  # installed once per transport
    route.add(video.receive)
    packets = vp8_packets(5)
    for p in packets:
        await transport._handle_rtp_data(p.serialize(), arrival_time_ms=0)
        await asyncio.sleep(0)
    assert route.fast == len(packets)
    assert [d for _, d, _ in video.frames] == [frame_data(f) for f in range(4)]
    # an SSRC the router does not know yet takes aiortc's way (which learns it) to the same track
    other = RtpPacket(payload_type=100, sequence_number=9, timestamp=5, ssrc=0xABCD, payload=b"\x10xy")
    await transport._handle_rtp_data(other.serialize(), arrival_time_ms=0)
    assert route.fast == len(packets) and 0xABCD in video.receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]


SRTP_KEY = bytes(range(30))  # master key + salt (RFC 3711, AES_CM_128_HMAC_SHA1_80)


def srtp_up(transport: RTCDtlsTransport) -> Session:
    """The transport as after its DTLS handshake (RFC 5764); the sender's SRTP session."""
    transport._rx_srtp = Session(Policy(key=SRTP_KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    transport._state = State.CONNECTED
    return Session(Policy(key=SRTP_KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))


async def test_srtp_of_a_known_ssrc_goes_from_the_datagram_callback_to_its_track(video: Track) -> None:
    transport = video.receiver.transport
    route = rx.RecorderRoute.of(transport)
    route.add(video.receive)
    connection = transport.transport._connection
    assert connection.data_received == route.datagram  # installed on the ICE connection
    queue = connection._queue
    sender = srtp_up(transport)
    packets = vp8_packets(5)
    for p in packets:
        route.datagram(sender.protect(p.serialize()), 1)
        await asyncio.sleep(0)
    assert route.direct == len(packets) and queue.qsize() == 0
    assert [d for _, d, _ in video.frames] == [frame_data(f) for f in range(4)]
    assert transport._RTCDtlsTransport__rx_packets == len(packets)  # type: ignore[attr-defined]
    # what is not SRTP of a known SSRC takes aiortc's way: SRTCP, an unknown SSRC, DTLS, STUN-less junk
    rtcp = sender.protect_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=SSRC, media_ssrc=OUR_SSRC).__bytes__())
    other = sender.protect(
        RtpPacket(payload_type=100, sequence_number=9, ssrc=0xABCD, payload=b"\x10x").serialize()
    )
    for data in (rtcp, other, b"\x16\xfe\xfd" + b"\x00" * 20, b"", b"\x80"):
        route.datagram(data, 1)
    assert queue.qsize() == 5 and route.direct == len(packets)


async def test_srtp_that_does_not_authenticate_or_is_replayed_is_dropped(video: Track) -> None:
    transport = video.receiver.transport
    route = rx.RecorderRoute.of(transport)
    route.add(video.receive)
    sender = srtp_up(transport)
    packets = [sender.protect(p.serialize()) for p in vp8_packets(4)]
    forged = packets[0][:-1] + bytes([packets[0][-1] ^ 1])  # a bad authentication tag
    for data in (forged, packets[0], packets[0], *packets[1:]):  # the second packets[0] is a replay
        route.datagram(data, 1)
        await asyncio.sleep(0)
    assert route.unprotect_failed == 2 and route.direct == len(packets)
    assert [d for _, d, _ in video.frames] == [frame_data(f) for f in range(3)]
    assert transport.transport._connection._queue.qsize() == 0


async def test_before_the_handshake_every_datagram_takes_aiortcs_way(video: Track) -> None:
    transport = video.receiver.transport
    route = rx.RecorderRoute.of(transport)
    route.add(video.receive)
    route.datagram(vp8_packets(1)[0].serialize(), 1)
    assert route.direct == 0 and transport.transport._connection._queue.qsize() == 1

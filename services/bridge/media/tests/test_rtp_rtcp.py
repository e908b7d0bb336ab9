"""RTP header helpers and RTCP packets: byte-level round trips and malformed input."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from services.bridge.media.packets import rtcp, rtp


def packet(
    seq: int = 10,
    ts: int = 1000,
    ssrc: int = 42,
    pt: int = 96,
    payload: bytes = b"abcdef",
    ext: bytes | None = None,
    marker: bool = False,
) -> bytes:
    first = 0x80 | (0x10 if ext is not None else 0)
    header = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    if ext is not None:
        padded = ext + b"\x00" * (-len(ext) % 4)
        header += struct.pack("!HH", 0xBEDE, len(padded) // 4) + padded
    return header + payload


def test_header_fields_and_rewrite() -> None:
    p = packet(marker=True)
    assert rtp.header_fields(p) == (96, 1, 10, 1000, 42)
    q = rtp.rewrite(p, 0x1FFFF, 2**32 + 5, 7)
    assert rtp.header_fields(q) == (96, 1, 0xFFFF, 5, 7)
    assert q[12:] == p[12:]


def test_marker_and_payload_type_written_in_place() -> None:
    p = bytearray(packet(pt=111))
    assert not rtp.has_marker(p) and rtp.payload_type(p) == 111
    rtp.set_marker(p)
    assert rtp.has_marker(p) and rtp.header_fields(bytes(p))[:2] == (111, 1)
    rtp.set_payload_type(p, 96)
    assert rtp.header_fields(bytes(p))[:2] == (96, 1)  # the marker stays
    assert bytes(p[2:]) == packet(pt=111)[2:]


def test_not_rtp() -> None:
    with pytest.raises(rtp.RtpError):
        rtp.header_fields(b"\x00" * 12)
    with pytest.raises(rtp.RtpError):
        rtp.header_fields(b"\x80")


def test_audio_level_one_byte_extension() -> None:
    p = packet(ext=bytes([0x20, 0x80 | 33]))  # id 2, length 1: voice, -33 dBov
    assert rtp.audio_level(p, 2) == (33, True)
    assert rtp.audio_level(p, 3) is None
    assert rtp.audio_level(packet(), 2) is None


def test_rtx_wrap_and_unwrap() -> None:
    original = packet(seq=500, ts=9000, ssrc=1, pt=96, payload=b"payload", marker=True)
    wrapped = rtp.wrap_rtx(original, rtx_payload_type=97, rtx_seq=3, rtx_ssrc=2, original_seq=500)
    assert rtp.header_fields(wrapped) == (97, 1, 3, 9000, 2)
    assert wrapped[12:14] == struct.pack("!H", 500)
    assert rtp.unwrap_rtx(wrapped, 96, 1) == original


def test_nack_round_trip() -> None:
    lost = [100, 101, 105, 116, 117, 200]
    built = rtcp.build_nack(1, 2, lost)
    ((ptype, fmt, body),) = list(rtcp.iter_packets(built))
    assert (ptype, fmt) == (rtcp.RTPFB, rtcp.FMT_NACK)
    assert rtcp.feedback_ssrcs(body) == (1, 2)
    assert sorted(rtcp.parse_nack(body)) == lost


def test_nack_across_wrap() -> None:
    built = rtcp.build_nack(1, 2, [65535, 0, 1])
    assert sorted(rtcp.parse_nack(built)) == [0, 1, 65535]


def test_remb_round_trip() -> None:
    built = rtcp.build_remb(9, 1_234_567, [11, 12])
    ((ptype, fmt, body),) = list(rtcp.iter_packets(built))
    assert (ptype, fmt) == (rtcp.PSFB, rtcp.FMT_REMB)
    bitrate, ssrcs = rtcp.parse_remb(body)  # type: ignore[misc]
    assert ssrcs == [11, 12]
    assert abs(bitrate - 1_234_567) / 1_234_567 < 0.001


def test_sr_rr_and_compound() -> None:
    sr = rtcp.build_sr(rtcp.SenderReport(5, (7 << 32) | 9, 1000, 10, 2000))
    block = rtcp.ReportBlock(5, 12, 3, 70000, 4, 0xABCD, 65536)
    rr = rtcp.build_rr(6, [block])
    compound = sr + rr + rtcp.build_pli(6, 5)
    kinds = [(p, f) for p, f, _ in rtcp.iter_packets(compound)]
    assert kinds == [(rtcp.SR, 0), (rtcp.RR, 1), (rtcp.PSFB, rtcp.FMT_PLI)]
    packets = list(rtcp.iter_packets(compound))
    assert rtcp.parse_sr(packets[0][2]) == rtcp.SenderReport(5, (7 << 32) | 9, 1000, 10, 2000)
    assert rtcp.parse_report_blocks(packets[1][2], 1, 8) == [block]


def test_fir_ssrcs() -> None:
    ((_, fmt, body),) = list(rtcp.iter_packets(rtcp.build_fir(1, 77, 3)))
    assert fmt == rtcp.FMT_FIR
    assert rtcp.parse_fir_ssrcs(body) == [77]


@pytest.mark.parametrize("data", [b"\x80\xc9", b"\x00\xc9\x00\x01abcd", b"\x80\xc9\x00\x09abcd"])
def test_malformed_rtcp(data: bytes) -> None:
    with pytest.raises(rtcp.RtcpError):
        list(rtcp.iter_packets(data))


@given(st.binary(max_size=64))
def test_rtcp_parser_never_raises_other_errors(data: bytes) -> None:
    try:
        for ptype, fmt, body in rtcp.iter_packets(data):
            if ptype == rtcp.RTPFB:
                rtcp.parse_nack(body)
            elif ptype == rtcp.PSFB and fmt == rtcp.FMT_REMB:
                rtcp.parse_remb(body)
    except rtcp.RtcpError:
        pass


def test_reception_stats_loss_and_wrap() -> None:
    stats = rtcp.ReceptionStats(1, 90000)
    for i, seq in enumerate([65533, 65534, 0, 1, 3]):  # 65535 and 2 lost, one wrap
        stats.add(seq, i * 3000, i * 0.033)
    block = stats.report_block(1.0)
    assert block.cumulative_lost == 2
    assert block.highest_seq == (1 << 16) | 3
    assert block.fraction_lost == (2 << 8) // 7
    assert stats.report_block(2.0).fraction_lost == 0


def _with_extension_block(profile: int, block: bytes) -> bytes:
    """An RTP packet whose header extension is ``block`` (padded to whole words) under ``profile``."""
    padded = block + b"\x00" * (-len(block) % 4)
    header = struct.pack("!BBHII", 0x90, 111, 1, 2, 3) + struct.pack("!HH", profile, len(padded) // 4)
    return header + padded + b"payload"


@pytest.mark.parametrize(
    ("profile", "block", "ext_id", "expected"),
    [
        # one-byte form: id 1, len 1 -> 0x10, value 0x85 (V set, level 5)
        (0xBEDE, bytes([0x10, 0x85, 0, 0]), 1, b"\x85"),
        # an element after a 3-byte element with id 2, with padding in between
        (0xBEDE, bytes([0x22, 1, 2, 3, 0, 0, 0x10, 40]), 1, b"\x28"),
        (0xBEDE, bytes([0x22, 1, 2, 3, 0, 0, 0x10, 40]), 2, b"\x01\x02\x03"),
        (0xBEDE, bytes([0x22, 1, 2, 3]), 1, None),  # absent
        (0xBEDE, bytes([0xF0, 0x10, 40, 0]), 1, None),  # id 15 stops parsing
        (0xBEDE, bytes([0x13, 1, 0, 0]), 1, None),  # element longer than the block
        # two-byte form: id, length, data
        (0x1000, bytes([0, 3, 1, 0x7F, 0, 0, 0, 0]), 3, b"\x7f"),
        (0x1000, bytes([7, 2, 9, 9, 3, 1, 0x0A, 0]), 3, b"\x0a"),
        (0x1000, bytes([3, 0, 0, 0]), 3, b""),  # zero-length element
        (0x1000, bytes([0, 0, 0, 3]), 3, None),  # truncated: the length byte is past the block
        (0x1234, bytes([0x10, 0x85, 0, 0]), 1, None),  # unknown profile
    ],
)
def test_find_extension(profile: int, block: bytes, ext_id: int, expected: bytes | None) -> None:
    assert rtp.find_extension(_with_extension_block(profile, block), ext_id) == expected


def test_zero_length_element_carries_no_audio_level() -> None:
    assert rtp.audio_level(_with_extension_block(0x1000, bytes([3, 0, 0, 0])), 3) is None


def _aiortc_packet(ext_id: int, vad: bool, level: int, csrcs: list[int] | None = None) -> bytes:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        type(
            "P",
            (),
            {"headerExtensions": [RTCRtpHeaderExtensionParameters(id=ext_id, uri=rtp.AUDIO_LEVEL_URI)]},
        )()
    )
    packet = RtpPacket(payload_type=111, sequence_number=7, timestamp=960, ssrc=1234, payload=b"\xfc" * 20)
    packet.csrc = csrcs or []
    packet.extensions.audio_level = (vad, level)
    return packet.serialize(ext_map)


@pytest.mark.parametrize(
    ("ext_id", "vad", "level", "csrcs"), [(1, True, 10, None), (5, False, 90, [1, 2, 3])]
)
def test_audio_level_reads_what_aiortc_writes(
    ext_id: int, vad: bool, level: int, csrcs: list[int] | None
) -> None:
    raw = _aiortc_packet(ext_id, vad, level, csrcs)
    assert rtp.audio_level(raw, ext_id) == (level, vad)
    assert rtp.audio_level(memoryview(raw), ext_id) == (level, vad)
    assert rtp.audio_level(raw, ext_id + 1) is None


def test_audio_level_of_bad_packets_is_none() -> None:
    plain = struct.pack("!BBHII", 0x80, 111, 1, 2, 3) + b"x"
    assert rtp.audio_level(plain, 1) is None  # no extension
    assert rtp.audio_level(b"\x90\x6f", 1) is None  # too short
    # X bit set, extension header claims 3 words but the packet ends
    truncated = struct.pack("!BBHII", 0x90, 111, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 3) + b"\x10\x05"
    assert rtp.audio_level(truncated, 1) is None


def test_payload_bounds_skip_csrcs_extension_and_padding() -> None:
    packet = bytearray(struct.pack("!BBHII", 0xB1, 100, 1, 2, 3))  # X, P, one CSRC
    packet += (
        struct.pack("!I", 77) + struct.pack("!HH", 0xBEDE, 1) + b"\x10\x05\x00\x00" + b"data" + b"\x00\x02"
    )
    assert rtp.payload_bounds(packet) == (24, 28)
    assert rtp.payload_bounds(b"\x80" * 5) == (-1, -1)
    assert rtp.payload_bounds(b"\x90" + b"\x00" * 12) == (-1, -1)  # extension header cut off
    assert rtp.payload_bounds(b"\xa0" + b"\x00" * 10 + b"\xff") == (-1, -1)  # padding longer than packet


@given(st.binary(max_size=64), st.integers(1, 14))
def test_header_readers_never_raise(data: bytes, ext_id: int) -> None:
    offset, end = rtp.payload_bounds(data)
    assert (offset, end) == (-1, -1) or 12 <= offset <= end <= len(data)
    rtp.find_extension(data, ext_id)


def test_sequence_helpers_and_in_place_rewrite() -> None:
    p = bytearray(packet(seq=65535, ts=2**32 - 1, ssrc=9))
    assert (rtp.sequence_number(p), rtp.timestamp(p)) == (65535, 2**32 - 1)
    assert rtp.is_newer_seq(3, 65530) and not rtp.is_newer_seq(65530, 3) and not rtp.is_newer_seq(7, 7)
    rtp.rewrite_in_place(p, 65536 + 4, 2**32 + 8, 10)
    assert rtp.header_fields(bytes(p))[2:] == (4, 8, 10)

"""Transport-cc: the feedback codec against published byte vectors, and the feedback generator."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.bridge.media.forwarding.transport_cc import MAX_WINDOW, FeedbackGenerator
from services.bridge.media.packets import rtcp, rtp, twcc


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# pion/rtcp transport_layer_cc_test.go, TestTransportLayerCC_Marshal "example1": one run-length
# chunk, one small delta of 37 ms
PION_EXAMPLE1 = hexbytes("afcd0005 fa17fa17 43032fa0 00990001 3de80217 20019401")
# ... "example4": a run of 7 small deltas, three bytes of padding
PION_EXAMPLE4 = hexbytes("afcd0007 fa17fa17 193dd8bb 00040007 10636e01 20074c24 24100c0c 10000003")
# ... "example5": a one-bit status vector of 14 (received, received, received, lost, received, 9 lost)
PION_EXAMPLE5 = hexbytes("afcd0006 fa17fa17 193dd8bb 0001000e 10636d00 ba00100c 0c100002")
# a Wireshark-dissected Chromium feedback (9 small deltas of 7, 3, 11, 14, 0, 1, 0, 2, 6 ms)
WIRESHARK = hexbytes("afcd0007 00000001 dd586eb6 00010009 5e911000 20091c0c 2c380004 00081801")


def test_parse_run_length_vector() -> None:
    fb = twcc.parse_feedback(PION_EXAMPLE1)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.count) == (4195875351, 1124282272, 153, 1)
    assert (fb.reference_time, fb.feedback_count) == (4057090, 23)
    assert fb.received == ((153, 4057090 * 64000 + 37000),)


def test_parse_wireshark_vector() -> None:
    fb = twcc.parse_feedback(WIRESHARK)
    assert (fb.base_seq, fb.count, fb.reference_time, fb.feedback_count) == (1, 9, 6197520, 0)
    ms = [7, 3, 11, 14, 0, 1, 0, 2, 6]
    base = 6197520 * 64000
    times = [base + 1000 * sum(ms[: i + 1]) for i in range(9)]
    assert fb.received == tuple(zip(range(1, 10), times, strict=True))
    assert fb.lost == 0


def test_parse_one_bit_vector_with_losses() -> None:
    fb = twcc.parse_feedback(PION_EXAMPLE5)
    assert fb.count == 14
    assert [s for s, _ in fb.received] == [1, 2, 3, 5]
    assert fb.lost == 10


@pytest.mark.parametrize(
    ("vector", "statuses"),
    [
        (PION_EXAMPLE1, [148]),
        (PION_EXAMPLE4, [76, 36, 36, 16, 12, 12, 16]),
        (PION_EXAMPLE5, [16, 12, 12, None, 16] + [None] * 9),
        (WIRESHARK, [28, 12, 44, 56, 0, 4, 0, 8, 24]),
    ],
)
def test_build_matches_known_vectors(vector: bytes, statuses: list[int | None]) -> None:
    _first, _, _, sender, media, base, _, ref_fb = struct.unpack_from("!BBHIIHHI", vector)
    built = twcc.build_feedback(sender, media, base, ref_fb >> 8, ref_fb & 0xFF, statuses)
    assert built == vector


def test_build_chunk_choices() -> None:
    # long run: one run-length chunk; mixed without large deltas: one-bit vectors of 14
    run = twcc.build_feedback(1, 2, 0, 0, 0, [1] * 300)
    assert run[20:22] == bytes.fromhex("212c")
    mixed = twcc.build_feedback(1, 2, 0, 0, 0, [1, None] * 7)
    assert mixed[20:22] == bytes.fromhex("aaaa")
    large = twcc.build_feedback(1, 2, 0, 0, 0, [1, 300, None, 2])
    assert large[20] >> 6 == 3  # two-bit vector
    with pytest.raises(ValueError):
        twcc.build_feedback(1, 2, 0, 0, 0, [40000])


statuses_st = st.lists(
    st.one_of(st.none(), st.integers(0, 255), st.integers(-32768, 32767)), min_size=1, max_size=400
)


@given(statuses_st, st.integers(0, 0xFFFF), st.integers(-(2**23), 2**23 - 1), st.integers(0, 255))
def test_round_trip(statuses: list[int | None], base: int, ref: int, count: int) -> None:
    built = twcc.build_feedback(7, 9, base, ref, count, statuses)
    assert len(built) % 4 == 0
    assert next(iter(rtcp.iter_packets(built)))[:2] == (rtcp.RTPFB, twcc.FMT_TRANSPORT_CC)
    fb = twcc.parse_feedback(built)
    assert (fb.base_seq, fb.count, fb.reference_time, fb.feedback_count) == (base, len(statuses), ref, count)
    t = ref * 64000
    expected = []
    for i, delta in enumerate(statuses):
        if delta is not None:
            t += delta * 250
            expected.append(((base + i) & 0xFFFF, t))
    assert fb.received == tuple(expected)


@pytest.mark.parametrize(
    "data",
    [
        PION_EXAMPLE1[:-4],  # deltas cut
        hexbytes("afcd0005 fa17fa17 43032fa0 00990003 3de80217 20019401"),  # pion example8: too short
        hexbytes("8fcd0004 9acb0442 00000000 0000ffff 00000000"),  # statuses without chunks
        hexbytes("8fcd0003 9acb0442 00000000 00000000"),  # no fixed fields
        hexbytes("afcd0004 9acb0442 00000000 00000000 000000ff"),  # padding past the packet
        hexbytes("8fcd0005 9acb0442 00000000 00000001 00000000 60010000"),  # reserved status
    ],
)
def test_parse_rejects_malformed(data: bytes) -> None:
    with pytest.raises(rtcp.RtcpError):
        twcc.parse_feedback(data)


def test_parse_empty_feedback() -> None:  # pion example7
    fb = twcc.parse_feedback(hexbytes("8fcd0004 9acb0442 00000000 00000000 00000000"))
    assert fb.count == 0 and fb.received == ()


def test_take_sequence_one_byte_form() -> None:
    header = struct.pack("!BBHII", 0x90, 96, 1, 2, 3)
    ext = bytes([0x10, 0x7F, 0x51, 0x12, 0x34]) + b"\x00" * 3  # id 1 (1 byte), id 5 (2 bytes)
    packet = header + struct.pack("!HH", 0xBEDE, 2) + ext + b"payload"
    seq, erased = twcc.take_sequence(packet, 5)
    assert seq == 0x1234
    assert len(erased) == len(packet) and erased.endswith(b"payload")
    assert rtp.find_extension(erased, 5) is None and rtp.find_extension(erased, 1) == b"\x7f"
    assert rtp.payload_bounds(erased) == rtp.payload_bounds(packet)
    assert twcc.take_sequence(packet, 1) == (None, packet)  # one byte long: not a sequence number
    assert twcc.take_sequence(packet, 7) == (None, packet)
    assert twcc.take_sequence(header + b"x", 5) == (None, header + b"x")


def test_take_sequence_two_byte_form() -> None:
    header = struct.pack("!BBHII", 0x90, 96, 1, 2, 3)
    ext = bytes([20, 1, 0x7F, 0, 5, 2, 0xAB, 0xCD])  # id 20 (1 byte), padding, id 5 (2 bytes)
    packet = header + struct.pack("!HH", 0x1000, 2) + ext + b"payload"
    seq, erased = twcc.take_sequence(packet, 5)
    assert seq == 0xABCD
    assert rtp.find_extension(erased, 5) is None and rtp.find_extension(erased, 20) == b"\x7f"
    truncated = header + struct.pack("!HH", 0x1000, 3) + ext
    assert twcc.find_sequence(truncated, 5) == (-1, -1)


# ---------------------------------------------------------------------------- generator


def reported(gen: FeedbackGenerator, now: float = 1.0) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for packet in gen.feedback(1, 2, now):
        fb = twcc.parse_feedback(packet)
        out.extend(fb.received)
        out.extend((s, -1) for s in range(fb.base_seq, fb.base_seq + fb.count) if s not in dict(fb.received))
    return sorted(out)


def test_generator_reports_arrivals_within_a_tick() -> None:
    gen = FeedbackGenerator()
    arrivals = {10: 5_000_123, 11: 5_001_000, 12: 5_020_480, 14: 5_021_000}
    for seq, t in arrivals.items():
        gen.on_packet(seq, t)
    assert gen.due(1.0)
    packets = gen.feedback(1, 2, 1.0)
    assert len(packets) == 1
    fb = twcc.parse_feedback(packets[0])
    assert fb.base_seq == 10 and fb.count == 5 and fb.lost == 1
    for seq, t in fb.received:
        assert abs(t - arrivals[seq]) <= 125  # rounded to the 250 µs tick, no drift
    assert not gen.due(1.1) and gen.feedback(1, 2, 1.1) == []


def test_generator_reports_loss_between_feedbacks_and_late_packets() -> None:
    gen = FeedbackGenerator()
    for seq in range(5):
        gen.on_packet(seq, 1000 * seq)
    gen.feedback(1, 2, 0.0)
    gen.on_packet(7, 10_000)  # 5 and 6 lost so far
    fb = twcc.parse_feedback(gen.feedback(1, 2, 0.1)[0])
    assert (fb.base_seq, fb.count, fb.lost) == (5, 3, 2)
    gen.on_packet(5, 12_000)  # late: reported received after all
    fb = twcc.parse_feedback(gen.feedback(1, 2, 0.2)[0])
    assert fb.base_seq == 5 and (5, 12_000) in fb.received
    gen.on_packet(5, 13_000)  # duplicate: ignored
    assert gen.feedback(1, 2, 0.3) == []


def test_generator_wraps_and_counts_feedback() -> None:
    gen = FeedbackGenerator()
    for i, seq in enumerate([65534, 65535, 0, 1]):
        gen.on_packet(seq, 100_000 + 1000 * i)
    fb = twcc.parse_feedback(gen.feedback(1, 2, 0.0)[0])
    assert fb.base_seq == 65534 and fb.count == 4 and [s for s, _ in fb.received] == [65534, 65535, 0, 1]
    gen.on_packet(2, 200_000)
    assert twcc.parse_feedback(gen.feedback(1, 2, 0.1)[0]).feedback_count == 1


def test_generator_splits_on_large_gaps_in_time_and_bounds_the_window() -> None:
    gen = FeedbackGenerator()
    gen.on_packet(1, 0)
    gen.on_packet(2, 20_000_000)  # 20 s later: beyond a 16-bit delta
    packets = gen.feedback(1, 2, 0.0)
    assert [twcc.parse_feedback(p).base_seq for p in packets] == [1, 2]
    seq = 3
    for _ in range(40):  # a sender jumping its numbers
        seq = (seq + 0x7000) & 0xFFFF
        gen.on_packet(seq, 21_000_000)
    total = sum(twcc.parse_feedback(p).count for p in gen.feedback(1, 2, 0.1))
    assert total <= MAX_WINDOW + 1


def test_generator_many_packets_stay_under_the_size_limit() -> None:
    gen = FeedbackGenerator()
    for seq in range(1500):
        gen.on_packet(seq, seq * 70_000 % 9_000_000)  # large, negative deltas
    packets = gen.feedback(1, 2, 0.0)
    assert all(len(p) <= twcc.MAX_PACKET_BYTES for p in packets)
    assert sum(len(twcc.parse_feedback(p).received) for p in packets) == 1500

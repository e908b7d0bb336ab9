"""Transport-cc from hostile endpoints: the feedback parser fuzzed (only its parse error escapes,
work bounded by the packet's bytes), feedback claiming huge status counts or numbers the bridge
never sent, and senders flooding or jumping their transport-wide sequence numbers (the bridge's
feedback to them stays bounded)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.bridge.media.allocation.send_side_bwe import SendHistory, SendSideEstimator
from services.bridge.media.forwarding.transport_cc import MAX_WINDOW, FeedbackGenerator
from services.bridge.media.packets import rtcp, twcc

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def header(count: int, base: int = 0, padding: bool = False, words: int = 4) -> bytes:
    first = 0x80 | (0x20 if padding else 0) | 15
    return struct.pack("!BBHIIHHI", first, rtcp.RTPFB, words, 1, 2, base, count, 0)


@FUZZ
@given(st.binary(max_size=300))
def test_parser_raises_only_its_error(body: bytes) -> None:
    data = header(0)[:12] + body
    data = data[:2] + struct.pack("!H", max(0, (len(data) + 3) // 4 - 1)) + data[4:]
    try:
        fb = twcc.parse_feedback(data)
    except rtcp.RtcpError:
        return
    assert len(fb.received) <= len(data)  # one byte at least per received packet


@FUZZ
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.lists(st.integers(0, 0xFFFF), max_size=40))
def test_chunks_of_any_kind(count: int, base: int, chunks: list[int]) -> None:
    body = b"".join(struct.pack("!H", c) for c in chunks)
    try:
        fb = twcc.parse_feedback(header(count, base) + body)
    except rtcp.RtcpError:
        return
    assert fb.count == count and len(fb.received) <= len(body)


def test_claims_of_65535_statuses() -> None:
    # a received run of 8191 claimed without the bytes for its deltas: refused once they run out
    claim = header(0xFFFF, words=5) + struct.pack("!HH", 0x2000 | 0x1FFF, 0x0101)
    try:
        twcc.parse_feedback(claim)
        raise AssertionError("parsed deltas that are not there")
    except rtcp.RtcpError:
        pass
    estimator = SendSideEstimator(SendHistory(64), start_bps=800_000)
    for i in range(64):
        estimator.history.record(i * 1000, 1200)
    everything_lost = twcc.parse_feedback(header(0xFFFF, words=9) + struct.pack("!H", 0x1FFF) * 9 + bytes(2))
    estimator.on_feedback(everything_lost, 1.0)  # only the 64 numbers it sent count
    assert estimator.last_loss == 1.0
    estimator.on_feedback(everything_lost, 2.1)  # loss is taken over a second of feedback
    assert estimator.window_loss == 1.0 and estimator.estimate < 800_000


def test_feedback_on_numbers_never_sent_is_ignored() -> None:
    estimator = SendSideEstimator(SendHistory(64), start_bps=800_000)
    for i in range(10):
        estimator.history.record(i * 1000, 1200)
    bogus = twcc.build_feedback(1, 2, 30_000, 0, 0, [1] * 200 + [None] * 100)
    for _ in range(100):
        estimator.on_feedback(twcc.parse_feedback(bogus), 1.0)
    assert estimator.feedbacks == 0 and estimator.estimate == 800_000


def test_a_sender_jumping_its_numbers_gets_bounded_feedback() -> None:
    generator = FeedbackGenerator()
    seq = 0
    for i in range(20_000):
        seq = (seq + 0x7FFF) & 0xFFFF if i % 2 else (seq * 7919 + 13) & 0xFFFF
        generator.on_packet(seq, i * 10)
        if generator.due(i * 0.001):
            for packet in generator.feedback(1, 2, i * 0.001):
                assert len(packet) <= twcc.MAX_PACKET_BYTES
                assert twcc.parse_feedback(packet).count <= MAX_WINDOW + 1
    assert len(generator._arrivals) <= 2 * MAX_WINDOW + 1


def test_feedback_replayed_without_end_keeps_the_estimator_bounded() -> None:
    # a receiver acknowledging the same numbers at the same arrival time, feedback after feedback:
    # nothing ages out of the acknowledged-rate window by arrival time, so it must by count
    estimator = SendSideEstimator(SendHistory(4096), start_bps=800_000)
    for i in range(1000):
        estimator.history.record(i * 1000, 1200)
    replay = twcc.parse_feedback(twcc.build_feedback(1, 2, 0, 0, 0, [0] * 1000))
    for n in range(2000):
        estimator.on_feedback(replay, 1.0 + n * 0.001)
    assert len(estimator._acked) <= 4096
    assert estimator.estimate <= 20_000_000

from __future__ import annotations

import fractions
import itertools
import struct

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor, vp8_depayload

from services.bridge.media.forwarding.simulcast import (
    LayerMeter,
    SimulcastLayer,
    SimulcastProjection,
    VideoSource,
    default_layer_heights,
    highest_layer_within,
    parse_packet,
    video_sources,
)
from services.bridge.media.model import MediaSources
from services.bridge.media.packets.rtp import payload_bounds, sequence_number_and_timestamp

CHROME_SIMULCAST = MediaSources(
    video_ssrcs=[1, 2, 3, 11, 12, 13],
    ssrc_groups=[("SIM", [1, 2, 3]), ("FID", [1, 11]), ("FID", [2, 12]), ("FID", [3, 13])],
)


def test_sim_and_fid_groups_make_one_source_with_three_layers() -> None:
    (source,) = video_sources("ep1", CHROME_SIMULCAST)
    assert source == VideoSource(
        "ep1-v0", "ep1", (SimulcastLayer(0, 1, 11), SimulcastLayer(1, 2, 12), SimulcastLayer(2, 3, 13))
    )
    assert source.primary_ssrc == 1
    assert source.layer_of(3) == 2
    assert source.layer_of(13) == -1


def test_plain_video_with_rtx_and_a_second_simulcast_source() -> None:
    sources = MediaSources(
        video_ssrcs=[5, 6, 7, 8, 9],
        ssrc_groups=[("FID", [5, 6]), ("SIM", [7, 8])],
    )
    assert video_sources("a", sources) == [
        VideoSource("a-v0", "a", (SimulcastLayer(0, 7), SimulcastLayer(1, 8))),
        VideoSource("a-v1", "a", (SimulcastLayer(0, 5, 6),)),
        VideoSource("a-v2", "a", (SimulcastLayer(0, 9),)),
    ]
    assert video_sources("a", MediaSources(audio_ssrcs=[1])) == []


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([("SIM", [1, 2, 99])], "99"),
        ([("FID", [1, 2, 3])], "exactly two"),
        ([("SIM", [1, 2]), ("SIM", [2, 3])], "more than one layer"),
        ([("SIM", [1, 2]), ("FID", [1, 2])], "RTX"),
    ],
)
def test_bad_groups_are_rejected_with_the_group_named(
    groups: list[tuple[str, list[int]]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        video_sources("ep", MediaSources(video_ssrcs=[1, 2, 3], ssrc_groups=groups))


@pytest.mark.parametrize(
    ("heights", "max_height", "expected"),
    [
        ([180, 360, 720], 180, 0),
        ([180, 360, 720], 360, 1),
        ([180, 360, 720], 719, 1),
        ([180, 360, 720], 1080, 2),
        ([180, 360, 720], -1, 2),
        ([180, 360, 720], 90, 0),  # all taller: the lowest still goes
        ([180, 360, 720], 0, -1),  # receiver wants none
        ([], 720, -1),
    ],
)
def test_highest_layer_within(heights: list[int], max_height: int, expected: int) -> None:
    assert highest_layer_within(heights, max_height) == expected


def test_default_heights_halve_per_layer() -> None:
    assert default_layer_heights(3) == [180, 360, 720]
    assert default_layer_heights(1) == [720]


def test_layer_meter_rates_and_silence() -> None:
    meter = LayerMeter(window=0.5)
    for i in range(51):  # 1000-byte packets every 10 ms = 800 kbps
        meter.on_packet(1, 1000, i * 0.01)
    assert meter.bitrate(1, 0.5) == pytest.approx(800_000, rel=0.05)
    assert meter.bitrate(1, 2.0) == 0.0  # nothing for two windows
    assert meter.bitrate(2, 0.5) == 0.0
    with pytest.raises(ValueError, match="window"):
        LayerMeter(window=0)


def rtp(seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False, padding: int = 0) -> bytearray:
    first = 0x80 | (0x20 if padding else 0)
    pad = (b"\x00" * (padding - 1) + bytes([padding])) if padding else b""
    return bytearray(
        struct.pack("!BBHII", first, (0x80 if marker else 0) | 100, seq, ts, ssrc) + payload + pad
    )


class EncodedLayer:
    """One simulcast layer: real VP8 frames from aiortc's encoder in RTP packets."""

    def __init__(self, ssrc: int, width: int, height: int, seq: int, ts: int) -> None:
        self.ssrc, self.width, self.height = ssrc, width, height
        self.encoder = Vp8Encoder()
        self.seq, self.ts = seq, ts

    def frame(self, index: int, keyframe: bool = False) -> list[bytearray]:
        image = np.zeros((self.height, self.width, 3), np.uint8)
        image[:, : (index * 7) % self.width] = 200
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = index * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = self.encoder.encode(frame, force_keyframe=keyframe)
        packets = []
        for i, payload in enumerate(payloads):
            packets.append(rtp(self.seq, self.ts + index * 3000, self.ssrc, payload, i == len(payloads) - 1))
            self.seq = (self.seq + 1) & 0xFFFF
        return packets


def decode(packets: list[bytearray]) -> list[tuple[int, int]]:
    """Reassemble frames by marker bit and decode them; the decoded (width, height) list."""
    decoder = av.CodecContext.create("libvpx", "r")
    sizes = []
    data = b""
    for packet in packets:
        offset, end = payload_bounds(packet)
        data += vp8_depayload(bytes(packet[offset:end]))
        if packet[1] & 0x80:
            for frame in decoder.decode(av.Packet(data)):
                sizes.append((frame.width, frame.height))
            data = b""
    return sizes


def test_projection_forwards_the_constrained_layer_and_switches_up_cleanly() -> None:
    layers = [
        EncodedLayer(1, 160, 90, seq=65000, ts=4_000_000_000),
        EncodedLayer(2, 320, 180, seq=100, ts=7),
        EncodedLayer(3, 640, 360, seq=30000, ts=123456),
    ]
    source = video_sources("s", CHROME_SIMULCAST)[0]
    meter = LayerMeter()
    projection = SimulcastProjection(source)
    assert projection.set_target(highest_layer_within(meter.layer_heights(source), 180)) is True
    assert projection.keyframe_wanted == 1  # default guess 180/360/720: layer 0 fits 180

    out: list[bytearray] = []

    def send_frame(index: int, keyframe_on: int | None = None) -> None:
        for layer_index, layer in enumerate(layers):
            for packet in layer.frame(index, keyframe=(layer_index == keyframe_on)):
                offset, end = payload_bounds(packet)
                meter.on_packet(layer.ssrc, len(packet), index / 30)
                meter.on_keyframe(layer.ssrc, packet, offset, end)
                if projection.project(packet, layer_index, index / 30):
                    out.append(packet)

    send_frame(0)  # every encoder starts with a key frame: heights are learned
    assert [meter.height(s) for s in (1, 2, 3)] == [90, 180, 360]
    projection.set_target(highest_layer_within(meter.layer_heights(source), 180))
    assert projection.keyframe_wanted == 2
    for i in range(1, 4):
        send_frame(i)  # no key frame on layer 1 yet: layer 0 keeps flowing
    send_frame(4, keyframe_on=1)
    for i in range(5, 8):
        send_frame(i)
    assert projection.current == 1
    projection.set_target(highest_layer_within(meter.layer_heights(source), 360))  # constraint rises
    send_frame(8)
    send_frame(9, keyframe_on=2)
    for i in range(10, 13):
        send_frame(i)
    assert projection.switches == 3

    sizes = decode(out)
    # layers are fed low to high per frame: the old layer's frame goes out before the key frame
    assert sizes == [(160, 90)] * 5 + [(320, 180)] * 6 + [(640, 360)] * 4
    seqs = [(p[2] << 8) | p[3] for p in out]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    assert {int.from_bytes(p[8:12], "big") for p in out} == {1}
    stamps = [int.from_bytes(p[4:8], "big") for p in out]
    assert all(0 <= (b - a) & 0xFFFFFFFF < 10_000 for a, b in itertools.pairwise(stamps))
    starts = [VpxPayloadDescriptor.parse(bytes(p[12:]))[0] for p in out]
    picture_ids = [d.picture_id for d in starts if d.partition_start]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(picture_ids))


def test_target_minus_one_stops_at_once_and_restart_waits_for_a_keyframe() -> None:
    source = VideoSource("s-v0", "s", (SimulcastLayer(0, 9),))
    projection = SimulcastProjection(source, wait_for_keyframe=True)
    key = bytes(VpxPayloadDescriptor(1, 0, picture_id=10)) + b"\x00\x00\x00\x9d\x01\x2a"
    delta = bytes(VpxPayloadDescriptor(1, 0, picture_id=11)) + b"\x01\x00\x00"
    assert not projection.project(rtp(1, 0, 9, key), 0, 0.0)  # no target yet
    projection.set_target(0)
    assert not projection.project(rtp(2, 0, 9, delta), 0, 0.0)
    assert projection.project(rtp(3, 0, 9, key), 0, 0.0)
    assert projection.project(rtp(4, 3000, 9, delta), 0, 0.03)
    assert not projection.project(rtp(2, 0, 9, delta), 0, 0.04)  # from before the switch
    assert projection.set_target(-1) is False
    assert not projection.project(rtp(5, 6000, 9, delta), 0, 0.06)
    projection.set_target(0)
    assert not projection.project(rtp(6, 9000, 9, delta), 0, 0.1)
    restarted = rtp(7, 12000, 9, key)
    assert projection.project(restarted, 0, 0.13)
    assert (restarted[2] << 8) | restarted[3] == 5  # continues after the last sent (4)
    with pytest.raises(ValueError, match="out of range"):
        projection.set_target(1)


def test_long_runs_do_not_wrap_into_the_switch_guard() -> None:
    source = VideoSource("s-v0", "s", (SimulcastLayer(0, 9),))
    projection = SimulcastProjection(source)
    projection.set_target(0)
    key = bytes(VpxPayloadDescriptor(1, 0)) + b"\x00"
    delta = bytes(VpxPayloadDescriptor(0, 0)) + b"\x01"
    assert projection.project(rtp(0, 0, 9, key), 0, 0.0)
    sent = sum(projection.project(rtp(seq & 0xFFFF, seq, 9, delta), 0, 0.0) for seq in range(1, 70_000))
    assert sent == 69_999


def test_single_layer_starts_at_once_and_accept_leaves_the_packet_alone() -> None:
    source = VideoSource("s-v0", "s", (SimulcastLayer(0, 9),))
    projection = SimulcastProjection(source)
    assert projection.set_target(0) is False  # no key frame needed
    assert projection.keyframe_wanted is None
    delta = rtp(100, 5000, 9, bytes(VpxPayloadDescriptor(1, 0, picture_id=11)) + b"\x01\x00\x00")
    before = bytes(delta)
    assert projection.accept(delta, 0, 0.0)
    assert bytes(delta) == before
    assert (projection.seq_offset, projection.ts_offset, projection.out_ssrc) == (0, 0, 9)


def test_accept_with_the_parsed_descriptor_then_rewrite_payload_continues_picture_ids() -> None:
    """The forwarder's way: the descriptor parsed once, :meth:`accept`, the header rewritten with
    the offsets, :meth:`rewrite_payload` on the copy; a retransmitted earlier packet of the
    current layer gets its own picture id shifted, not the last packet's."""
    source = VideoSource("s-v0", "s", (SimulcastLayer(0, 1), SimulcastLayer(1, 2)))
    projection = SimulcastProjection(source)

    def packet(seq: int, ssrc: int, picture_id: int, tl0: int, key: bool) -> bytearray:
        descriptor = bytes(VpxPayloadDescriptor(1, 0, picture_id=picture_id, tl0picidx=tl0, tid=(0, 1)))
        return rtp(
            seq, seq * 3000, ssrc, descriptor + (b"\x00\x00\x00\x9d\x01\x2a" if key else b"\x01\x00\x00")
        )

    def rewritten(original: bytearray) -> bytearray:
        # as a subscription forwards it: under the projection's mapping
        seq, ts = sequence_number_and_timestamp(original)
        return bytearray(projection.mapping.apply(bytes(original), seq, ts))

    def forward(original: bytearray, layer: int, now: float) -> bytearray | None:
        if not projection.accept(original, layer, now, parse_packet(original)):
            return None
        return rewritten(original)

    def ids(p: bytearray) -> tuple[int, int]:
        d = VpxPayloadDescriptor.parse(bytes(p[12:]))[0]
        return d.picture_id, d.tl0picidx

    projection.set_target(0)
    low = [
        forward(packet(10 + i, 1, (32_766 + i) & 0x7FFF, (254 + i) & 0xFF, i == 0), 0, i / 30)
        for i in range(3)
    ]
    assert [ids(p) for p in low if p] == [(32_766, 254), (32_767, 255), (0, 0)]
    assert not projection.rewrites_payload
    low_mapping = projection.mapping
    assert (low_mapping.source_ssrc, low_mapping.out_ssrc, low_mapping.rewrite) == (1, 1, False)
    projection.set_target(1)
    assert forward(packet(500, 2, 7, 90, False), 1, 0.1) is None  # waits for a key frame
    assert projection.mapping is low_mapping  # nothing switched yet
    high = [forward(packet(501 + i, 2, 8 + i, 91 + i, i == 0), 1, 0.13 + i / 30) for i in range(3)]
    assert [ids(p) for p in high if p] == [(1, 1), (2, 2), (3, 3)]
    assert projection.rewrites_payload
    # the switch made a new mapping, for layer 1's stream; the old one still says how layer 0's
    # packets went out (retransmissions of them use it)
    high_mapping = projection.mapping
    assert high_mapping is not low_mapping
    assert (high_mapping.source_ssrc, high_mapping.out_ssrc, high_mapping.rewrite) == (2, 1, True)
    assert (high_mapping.seq_delta, high_mapping.ts_delta) == (projection.seq_offset, projection.ts_offset)
    assert (low_mapping.seq_delta, low_mapping.ts_delta, low_mapping.payload_rewrite) == (0, 0, None)
    # a retransmission of the second one from the bridge's cache: no accept, its own descriptor
    assert ids(rewritten(packet(502, 2, 9, 92, False))) == (2, 2)


def test_reordered_duplicate_and_late_packets_around_the_in_order_path() -> None:
    """In-order packets take the short path; a reordered or duplicated packet of the current
    layer still goes out with its own sequence number, one from before the switch does not, and
    a later switch continues after the newest packet sent, not the last one accepted."""
    source = VideoSource("s-v0", "s", (SimulcastLayer(0, 1), SimulcastLayer(1, 2)))
    projection = SimulcastProjection(source)
    key = bytes(VpxPayloadDescriptor(1, 0, picture_id=40)) + b"\x00\x00\x00\x9d\x01\x2a"

    def delta(picture_id: int) -> bytes:
        return bytes(VpxPayloadDescriptor(1, 0, picture_id=picture_id)) + b"\x01\x00\x00"

    def out_seq(packet: bytearray) -> int:
        return (packet[2] << 8) | packet[3]

    projection.set_target(0)
    assert not projection.project(rtp(65_533, 0, 1, delta(39)), 0, 0.0)  # before the key frame
    first = rtp(65_534, 0, 1, key)
    assert projection.project(first, 0, 0.0)
    sent = [out_seq(first)]
    for seq in (65_535, 0, 2, 1, 1, 3, 4):  # 1 arrives late and twice
        packet = rtp(seq, 3000, 1, delta(41))
        assert projection.project(packet, 0, 0.03)
        sent.append(out_seq(packet))
    assert sent == [65_534, 65_535, 0, 2, 1, 1, 3, 4]
    assert not projection.project(rtp(65_533, 0, 1, delta(39)), 0, 0.04)  # from before the switch
    projection.set_target(1)
    late = rtp(3, 3000, 1, delta(41))  # the current layer keeps flowing until the key frame
    assert projection.project(late, 0, 0.05) and out_seq(late) == 3
    switched = rtp(900, 77_000, 2, key)
    assert projection.project(switched, 1, 0.1)
    assert out_seq(switched) == 5  # after 4, the newest sent
    assert int.from_bytes(switched[4:8], "big") == 3000 + round(0.07 * 90_000)  # 4 went out at 0.03
    assert VpxPayloadDescriptor.parse(bytes(switched[12:]))[0].picture_id == 42
    following = rtp(901, 80_000, 2, delta(41))
    assert projection.project(following, 1, 0.13) and out_seq(following) == 6



def _count_descriptor_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the forwarding code's VP8 descriptor reads: the returned list's one item."""
    import services.bridge.media.forwarding.simulcast as simulcast

    counter = [0]
    real_parse = simulcast.parse_descriptor

    def counting_parse(*args: object) -> object:
        counter[0] += 1
        return real_parse(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(simulcast, "parse_descriptor", counting_parse)
    return counter

def test_the_vp8_descriptor_is_read_only_when_a_receiver_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steady forwarding reads no payload descriptor; a picture-id rewrite reads it once per
    packet, whatever the number of receivers."""
    reads_of = _count_descriptor_reads(monkeypatch)
    source = VideoSource("s-v0", "s", (SimulcastLayer(0, 9),))
    projections = [SimulcastProjection(source) for _ in range(5)]
    for p in projections:
        p.set_target(0)

    def packet(seq: int) -> bytes:
        return bytes(rtp(seq, seq * 3000, 9, bytes(VpxPayloadDescriptor(1, 0, picture_id=seq)) + b"\x01"))

    for seq in range(100):
        parsed = parse_packet(packet(seq))
        assert all(p.accept(parsed.packet, 0, seq / 30, parsed) for p in projections)
    assert reads_of[0] == 0
    for p in projections:
        p.set_target(-1)
        p.set_target(0)
    reads_of[0] = 0
    for seq in range(200, 210):  # restarted: picture ids continue after 99, so they are rewritten
        parsed = parse_packet(packet(seq))
        for p in projections:
            assert p.accept(parsed.packet, 0, seq / 30, parsed)
            assert p.rewrites_payload
            copy = bytearray(parsed.packet)
            p.rewrite(copy)
            assert VpxPayloadDescriptor.parse(bytes(copy[12:]))[0].picture_id == seq - 100
    assert reads_of[0] == 10 + 1  # one per packet, and the newest packet before the restart


@pytest.mark.parametrize("jump", [0, 0x3000, 0x6F00])
def test_late_packets_after_long_runs_are_judged_against_the_newest(jump: int) -> None:
    """However long the in-order run since the switch (and across a jump ahead), a packet up to
    0x1000 behind the newest one sent still goes out and anything older does not."""
    source = VideoSource("s-v0", "s", (SimulcastLayer(0, 9),))
    projection = SimulcastProjection(source)
    projection.set_target(0)
    delta = bytes(VpxPayloadDescriptor(0, 0)) + b"\x01"

    def accept(seq: int) -> bool:
        return projection.accept(bytes(rtp(seq & 0xFFFF, seq, 9, delta)), 0, 0.0)

    assert accept(100)
    newest = 100
    for seq in range(101, 101 + 0x9000):
        assert accept(seq)
        newest = seq
    if jump:
        newest += jump
        assert accept(newest)
    for seq in range(newest + 1, newest + 0x11000):  # past a full wrap of the sequence numbers
        assert accept(seq)
        newest = seq
    assert not accept(newest - 0x1001)
    assert accept(newest - 0x1000)
    assert accept(newest - 1)
    assert accept(newest + 1)


def test_vp8_keyframe_reads_the_descriptor_only_at_frame_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 7741 4.2: S=1 and partition index 0 start a frame; RFC 6386 9.1: P=0 is a key frame.
    A packet whose first descriptor byte says it starts no frame is not read further."""
    reads_of = _count_descriptor_reads(monkeypatch)

    def descriptor(start: bool, partition: int = 0) -> bytes:
        return bytes(VpxPayloadDescriptor(partition_start=int(start), partition_id=partition, picture_id=300))

    key, inter = b"\x10\x02\x00\x9d\x01\x2a", b"\x11\x02\x00"  # VP8 payload header, P bit 0 / 1
    middle = parse_packet(rtp(1, 0, 9, descriptor(False) + key))
    assert middle.vp8_keyframe() is None and reads_of[0] == 0
    second_partition = parse_packet(rtp(1, 0, 9, descriptor(True, 1) + key))
    assert second_partition.vp8_keyframe() is None and reads_of[0] == 0
    desc = parse_packet(rtp(1, 0, 9, descriptor(True) + key)).vp8_keyframe()
    assert desc is not None and desc.start_of_frame and desc.picture_id == 300 and reads_of[0] == 1
    assert parse_packet(rtp(1, 0, 9, descriptor(True) + inter)).vp8_keyframe() is None
    assert parse_packet(rtp(1, 0, 9, descriptor(True))).vp8_keyframe() is None  # descriptor only
    assert parse_packet(rtp(1, 0, 9, descriptor(True) + key, padding=4)).vp8_keyframe() is not None
    assert parse_packet(rtp(1, 0, 9, b"\x10")).vp8_keyframe() is None  # truncated: no payload header
    assert parse_packet(rtp(1, 0, 9, b"")).vp8_keyframe() is None
    undeclared = parse_packet(rtp(1, 0, 9, descriptor(True) + key), vp8=False)
    assert undeclared.vp8_keyframe() is None
    assert undeclared.vp8_keyframe(undeclared=True) is not None


def test_the_reserved_bits_of_the_vp8_descriptor_are_ignored() -> None:
    """RFC 7741 section 4.2: the R bits "MUST be set to 0 and MUST be ignored by the receiver":
    a sender setting them still starts frames and key frames where S=1 and PID=0 say so."""
    key = b"\x10\x02\x00\x9d\x01\x2a"  # VP8 payload header, P bit 0
    for first in (0x18, 0x50, 0x58):  # S=1, PID=0, with the reserved bit 3, bit 6, or both
        parsed = parse_packet(rtp(1, 0, 9, bytes([first]) + key))
        desc = parsed.vp8_keyframe()
        assert desc is not None and desc.start_of_frame, hex(first)
    assert parse_packet(rtp(1, 0, 9, b"\x19" + key)).vp8_keyframe() is None  # PID 1: not a start

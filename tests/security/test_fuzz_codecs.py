"""Property-based fuzzing (hypothesis) of the codec payload parsers a sender's bytes reach in the
bridge: the VP9 payload descriptor (RFC 9628), H.264 NAL units (RFC 6184), RED (RFC 2198) and
the VP9 SVC projection over them. Any input gives a result or ``None``/``False``, never an
exception, never an offset past the payload; the projection keeps the receiver's sequence
numbers gapless whatever the sender's descriptors claim."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.bridge.media.forwarding.rtcp_termination import request_keyframe
from services.bridge.media.forwarding.simulcast import SimulcastLayer, VideoSource, parse_packet
from services.bridge.media.forwarding.svc import SvcProjection
from services.bridge.media.packets import h264, red, rtp, vp9

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
payloads = st.binary(max_size=80)


@FUZZ
@given(payloads, st.integers(0, 8))
def test_vp9_descriptor_never_raises_nor_overruns(data: bytes, offset: int) -> None:
    d = vp9.parse_descriptor(data, offset, len(data))
    if d is not None:
        assert offset + d.size <= len(data)
        assert len(d.resolutions) in (0, d.spatial_layers) and d.spatial_layers <= 8
        assert -1 <= d.sid <= 7 and -1 <= d.tid <= 7


@FUZZ
@given(payloads, st.integers(-2, 8))
def test_h264_keyframe_never_raises(data: bytes, offset: int) -> None:
    assert h264.is_keyframe(data, offset, len(data)) in (True, False)


@FUZZ
@given(payloads)
def test_red_never_raises_and_blocks_stay_inside(data: bytes) -> None:
    parsed = red.parse(data, 0, len(data))
    if parsed is not None:
        assert parsed.primary_start <= len(data) and len(parsed.redundant) <= red.MAX_BLOCKS
        for _, _, start, length in parsed.redundant:
            assert 0 <= start and start + length <= parsed.primary_start
    packet = bytearray(rtp.build_header(112, False, 1, 0, 5) + data)
    before = bytes(packet)
    if not red.strip_to_primary(packet, 12, len(packet)):
        assert bytes(packet) == before


@FUZZ
@given(st.lists(payloads, max_size=40), st.integers(-1, 2))
def test_svc_projection_on_hostile_descriptors_stays_gapless(bodies: list[bytes], target: int) -> None:
    source = VideoSource("a-v0", "a", tuple(SimulcastLayer(i, 9) for i in range(3)), svc=True)
    proj = SvcProjection(source)
    proj.set_target(target)
    out = []
    for seq, body in enumerate(bodies):
        pkt = rtp.build_header(101, False, seq, 0, 9) + body
        parsed = parse_packet(pkt, False)
        if proj.accept(pkt, 0, 0.0, parsed):
            sent = proj.mapping.apply(pkt, parsed.seq, parsed.timestamp)
            out.append(rtp.sequence_number(sent))
    assert out == list(range(out[0], out[0] + len(out))) if out else True


def test_a_sender_flipping_its_scalability_structure_reallocates_at_most_every_two_seconds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
    from services.bridge.media.forwarding.forwarder import ConferenceForwarder
    from services.bridge.media.model import MediaSources, PayloadType
    from services.bridge.media.tests.test_codecs import picture

    now = [100.0]
    policy = ConferenceIntelligencePolicy(lambda ep, m: None, request_keyframe=request_keyframe, clock=lambda: now[0])
    forwarder = ConferenceForwarder("conf", policy)
    forwarder.add_endpoint("a", lambda d: None)
    forwarder.set_sources("a", MediaSources(video_ssrcs=[0x1234], payload_types=[PayloadType(101, "VP9", 90000)]))
    caplog.set_level(logging.INFO, logger="parley.bridge.intelligence")
    seq = 0
    for i in range(400):  # 400 key pictures in 4 s, announcing 3 then 2 then 3… spatial layers
        now[0] += 0.01
        for pkt in picture(seq, i, key=True, layers=3 if i % 2 else 2):
            forwarder.handle_rtp(forwarder.endpoints["a"], pkt, now[0])
        seq += 6
    changes = [r for r in caplog.records if "spatial layers" in r.getMessage()]
    assert 2 <= len(changes) <= 3  # once at the start, then at most every 2 s

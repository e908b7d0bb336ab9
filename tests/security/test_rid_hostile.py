"""Hostile RID-tagged RTP against the bridge's forwarder (``services/bridge/media/packets/rid.py``): an
endpoint that negotiated the RTP stream id header extensions sends forged, oversized, malformed
and endless RIDs. The bridge learns at most a bounded number of SSRCs, ignores values that are
not short tokens, never raises on a broken extension block, keeps one layer per RID, and the
other endpoints keep receiving the honest sender."""

from __future__ import annotations

import struct

from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
from services.bridge.media.forwarding.forwarder import ConferenceForwarder
from services.bridge.media.forwarding.rtcp_termination import request_keyframe
from services.bridge.media.forwarding.simulcast import video_sources
from services.bridge.media.model import MediaSources, PayloadType, RtpHeaderExtension
from services.bridge.media.packets import rtp
from services.bridge.media.packets.rid import MAX_BOUND_SSRCS, RTP_STREAM_ID_URI
from services.bridge.media.tests.test_forwarder import srtp_pair

RID_EXT = 10
SOURCES = MediaSources(
    audio_ssrcs=[1],
    video_ssrcs=[100],
    payload_types=[PayloadType(id=100, name="VP8", clockrate=90000)],
    rtp_hdrexts=[RtpHeaderExtension(id=RID_EXT, uri=RTP_STREAM_ID_URI)],
)


def tagged(ssrc: int, value: bytes, seq: int = 1, two_byte: bool = True) -> bytes:
    if two_byte:
        body = bytes([RID_EXT, len(value)]) + value
        profile = rtp.TWO_BYTE_PROFILE
    else:
        body = bytes([(RID_EXT << 4) | (len(value) - 1)]) + value
        profile = rtp.ONE_BYTE_PROFILE
    body += b"\x00" * (-len(body) % 4)
    return (
        struct.pack("!BBHII", 0x90, 100, seq, seq * 3000, ssrc)
        + struct.pack("!HH", profile, len(body) // 4)
        + body
        + b"\x10\x00frame"
    )


def conference() -> tuple[ConferenceForwarder, list[bytes]]:
    conf = ConferenceForwarder("c", ConferenceIntelligencePolicy(request_keyframe=request_keyframe))
    conf.add_endpoint("evil", lambda data: None)
    wire: list[bytes] = []
    conf.add_endpoint("victim", wire.append)
    conf.set_sources("evil", SOURCES)
    conf.set_srtp("victim", srtp_pair()[0], 0.0)
    return conf, wire


def test_endless_new_ssrcs_with_rids_are_learnt_up_to_a_bound() -> None:
    conf, _ = conference()
    evil = conf.endpoints["evil"]
    for i in range(5000):
        conf.handle_rtp(evil, tagged(10_000 + i, b"h" if i % 2 else b"q"), 0.001 * i)
    assert evil.rid_binder is not None
    assert len(evil.rid_binder.seen) == MAX_BOUND_SSRCS
    # one SSRC per RID at most: the endpoint's video stays one two-layer source plus what it signalled
    layers = [len(s.layers) for s in video_sources("evil", evil.sources)]
    assert sum(layers) <= 3, layers
    assert len(evil.streams) <= 4


def test_oversized_binary_and_broken_rids_are_ignored_without_raising() -> None:
    conf, _ = conference()
    evil = conf.endpoints["evil"]
    hostile = [
        tagged(500, b"x" * 255),  # a legal length, far over the bridge's bound
        tagged(501, b"\xff\x00\xfe"),
        tagged(502, b"q h"),
        tagged(503, b"../../etc"),
    ]
    broken = bytearray(tagged(504, b"qqqq", two_byte=False))
    broken[17] = (RID_EXT << 4) | 15  # an element running past its block
    hostile.append(bytes(broken))
    hostile.append(tagged(505, b"q")[:15])  # truncated inside the extension block
    for packet in hostile:
        conf.handle_rtp(evil, packet, 0.0)
    assert evil.sources is SOURCES or evil.sources == SOURCES  # nothing learnt
    assert evil.unknown_ssrc_packets == len(hostile)


def test_the_signalled_stream_still_reaches_the_others() -> None:
    conf, wire = conference()
    evil = conf.endpoints["evil"]
    for i in range(200):
        conf.handle_rtp(evil, tagged(20_000 + i, b"f"), 0.001 * i)
    before = len(wire)
    for seq in range(1, 6):
        conf.handle_rtp(evil, struct.pack("!BBHII", 0x80, 100, seq, seq * 3000, 100) + b"\x10\x00frame", 1.0)
    assert len(wire) > before

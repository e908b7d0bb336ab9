"""RID simulcast: RTP stream id header extensions (RFC 8852) parsed, RIDs ordered and bound onto
the SSRC layer model (``rid.py``), and the forwarder using what it learnt."""

from __future__ import annotations

import struct

from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
from services.bridge.media.forwarding.forwarder import ConferenceForwarder
from services.bridge.media.forwarding.rtcp_termination import request_keyframe
from services.bridge.media.forwarding.simulcast import video_sources
from services.bridge.media.model import MediaSources, PayloadType, RtpHeaderExtension
from services.bridge.media.packets import rtp
from services.bridge.media.packets.rid import (
    MAX_BOUND_SSRCS,
    REPAIRED_RTP_STREAM_ID_URI,
    RTP_STREAM_ID_URI,
    RidBinder,
    bind,
    rid_rank,
    sdes_value,
)
from services.bridge.media.tests.test_forwarder import srtp_pair

RID_EXT, REPAIRED_EXT, MID_EXT = 10, 11, 9


def packet(ssrc: int, elements: list[tuple[int, bytes]], two_byte: bool = False, seq: int = 1) -> bytes:
    """An RTP packet whose header extension block holds ``elements`` (id, value)."""
    body = b""
    for eid, value in elements:
        body += (
            bytes([eid, len(value)]) + value if two_byte else bytes([(eid << 4) | (len(value) - 1)]) + value
        )
    body += b"\x00" * (-len(body) % 4)
    profile = rtp.TWO_BYTE_PROFILE if two_byte else rtp.ONE_BYTE_PROFILE
    header = struct.pack("!BBHII", 0x90, 100, seq, 1000, ssrc)
    return header + struct.pack("!HH", profile, len(body) // 4) + body + b"\x10\x00frame"


def signalled(video: list[int], groups: list[tuple[str, list[int]]], exts: bool = True) -> MediaSources:
    return MediaSources(
        audio_ssrcs=[1],
        video_ssrcs=video,
        ssrc_groups=groups,
        payload_types=[
            PayloadType(id=100, name="VP8", clockrate=90000),
            PayloadType(id=96, name="rtx", clockrate=90000, parameters={"apt": "100"}),
        ],
        rtp_hdrexts=[
            RtpHeaderExtension(id=RID_EXT, uri=RTP_STREAM_ID_URI),
            RtpHeaderExtension(id=REPAIRED_EXT, uri=REPAIRED_RTP_STREAM_ID_URI),
        ]
        if exts
        else [],
    )


# ---- header extension values -----------------------------------------------------------------


def test_rid_read_from_one_and_two_byte_extension_blocks() -> None:
    one = packet(5, [(MID_EXT, b"video"), (RID_EXT, b"h")])
    assert sdes_value(one, RID_EXT) == "h"
    assert sdes_value(one, MID_EXT) == "video"
    two = packet(5, [(RID_EXT, b"f"), (REPAIRED_EXT, b"q")], two_byte=True)
    assert sdes_value(two, RID_EXT) == "f"
    assert sdes_value(two, REPAIRED_EXT) == "q"


def test_absent_malformed_or_hostile_rid_values_are_none() -> None:
    assert sdes_value(packet(5, [(MID_EXT, b"0")]), RID_EXT) is None  # not there
    assert sdes_value(packet(5, [(RID_EXT, b"h")]), None) is None  # not negotiated
    assert sdes_value(packet(5, [(RID_EXT, b"a b")]), RID_EXT) is None  # not a token
    assert sdes_value(packet(5, [(RID_EXT, b"\xff\xfe")]), RID_EXT) is None
    assert sdes_value(packet(5, [(RID_EXT, b"x" * 17)], two_byte=True), RID_EXT) is None  # too long
    assert sdes_value(packet(5, [(RID_EXT, b"h\x00\x00")]), RID_EXT) == "h"  # NUL padded
    # an element running past the block, a truncated packet
    broken = bytearray(packet(5, [(RID_EXT, b"abc")]))
    broken[17] = (RID_EXT << 4) | 15
    assert sdes_value(bytes(broken), RID_EXT) is None
    assert sdes_value(packet(5, [(RID_EXT, b"h")])[:14], RID_EXT) is None
    assert sdes_value(b"", RID_EXT) is None


def test_rids_rank_low_to_high() -> None:
    assert sorted(["f", "q", "h"], key=rid_rank) == ["q", "h", "f"]
    assert sorted(["3", "1", "2"], key=rid_rank) == ["1", "2", "3"]  # Jitsi's
    assert sorted(["r2", "r0", "r1"], key=rid_rank) == ["r0", "r1", "r2"]  # mediasoup's
    assert sorted(["high", "low", "mid"], key=rid_rank) == ["low", "mid", "high"]


# ---- binding RIDs onto the SSRC layer model ----------------------------------------------------


def test_signalled_order_that_disagrees_with_the_rids_is_corrected() -> None:
    # the client listed Firefox's SSRCs f, q, h: the RIDs put them back low to high
    sources = signalled([101, 102, 103, 201, 202, 203], [("SIM", [103, 101, 102]),
                        ("FID", [101, 201]), ("FID", [102, 202]), ("FID", [103, 203])])  # fmt: skip
    out = bind(sources, {101: "q", 102: "h", 103: "f"}, {})
    assert ("SIM", [101, 102, 103]) in out.ssrc_groups
    [source] = video_sources("ep", out)
    assert [layer.ssrc for layer in source.layers] == [101, 102, 103]
    assert [layer.rtx_ssrc for layer in source.layers] == [201, 202, 203]
    # receivers were told 103 (the group's first): they keep getting the source on it
    assert source.primary_ssrc == 103


def test_rid_layers_nobody_signalled_become_a_source_with_rtx() -> None:
    sources = signalled([], [])
    out = bind(sources, {7: "f", 5: "q", 6: "h"}, {17: "f", 15: "q"})
    [source] = video_sources("ep", out)
    assert source.ssrcs == (5, 6, 7)
    assert [layer.rtx_ssrc for layer in source.layers] == [15, None, 17]
    assert out.rtx_pairs() == {7: 17, 5: 15}


def test_an_ssrc_already_in_order_changes_nothing() -> None:
    sources = signalled([101, 102], [("SIM", [101, 102])])
    binder = RidBinder(sources)
    assert binder.observe(101, packet(101, [(RID_EXT, b"q")])) is None
    assert binder.observe(102, packet(102, [(RID_EXT, b"h")])) is None
    assert not binder.wants(101)  # looked at once


def test_binder_is_idle_without_the_extension_and_bounded() -> None:
    assert not RidBinder(signalled([101], [], exts=False)).active
    binder = RidBinder(signalled([], []))
    for ssrc in range(1000, 1000 + MAX_BOUND_SSRCS + 10):
        binder.observe(ssrc, packet(ssrc, [(RID_EXT, b"h")]))
    assert len(binder.seen) == MAX_BOUND_SSRCS
    assert not binder.wants(99999)
    # one SSRC per RID: a sender that keeps inventing SSRCs for "h" leaves one layer
    [source] = video_sources("ep", binder.sources)
    assert len(source.layers) == 1


def test_a_restarted_sender_replaces_the_layer_of_its_rid() -> None:
    sources = signalled([101, 102], [("SIM", [101, 102])])
    out = bind(sources, {101: "q", 102: "h", 301: "h"}, {})
    [source] = video_sources("ep", out)
    assert source.ssrcs == (101, 301)
    assert 102 not in out.video_ssrcs


# ---- the forwarder learns from the first packets ---------------------------------------------


class Wire:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.sent.append(data)


def test_forwarder_forwards_unsignalled_rid_layers_as_one_plain_stream() -> None:
    policy = ConferenceIntelligencePolicy(request_keyframe=request_keyframe)
    conference = ConferenceForwarder("c", policy)
    fox_wire, chrome_wire = Wire(), Wire()
    fox = conference.add_endpoint("fox", fox_wire)
    chrome = conference.add_endpoint("chrome", chrome_wire)
    conference.set_sources("fox", signalled([], []))
    bridge_side, _ = srtp_pair()
    conference.set_srtp("chrome", bridge_side, 0.0)
    del fox
    # Firefox sends three RID-tagged layers on SSRCs it never signalled (the RIDs, not the SSRCs,
    # say which is which)
    for seq in range(1, 4):
        for ssrc, rid in ((5, b"q"), (7, b"f"), (6, b"h")):
            conference.handle_rtp(
                conference.endpoints["fox"], packet(ssrc, [(RID_EXT, rid)], seq=seq), 0.01 * seq
            )
    assert [s.ssrcs for s in video_sources("fox", conference.endpoints["fox"].sources)] == [(5, 6, 7)]
    assert conference.endpoints["fox"].unknown_ssrc_packets == 0
    # (SRTP leaves the RTP header in the clear)
    received = {rtp.header_fields(d)[4] for d in chrome_wire.sent if not rtp.is_rtcp(d)}
    assert received, "nothing forwarded"
    # the receiver sees one stream, on the source's first SSRC, whatever the layer
    assert received <= {5}, received
    del chrome

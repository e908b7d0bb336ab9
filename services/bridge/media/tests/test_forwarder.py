"""The conference forwarder with real SRTP contexts (from in-memory DTLS handshakes).

Each endpoint has a bridge-side SRTP context and a peer-side one; the test plays the peers:
it protects what a peer sends, and unprotects what the forwarder transmits to a peer.

Every test runs twice: with the Python forwarding loop (what the forwarder transmits is kept in
a list, no sockets) and with the C loop (native.py, built from the current source), which sends
on a real UDP socket to a loopback socket per peer; everything else the bridge sends goes on
the same socket, so each peer reads what it got, in order, from its socket."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
from services.bridge.media.forwarding.forwarder import ConferenceForwarder
from services.bridge.media.forwarding.mapping import ForwardingMapping
from services.bridge.media.forwarding.nack import (
    PacketCache,
    RetransmissionBudget,
    RetransmissionLimits,
    SentLog,
)
from services.bridge.media.forwarding.native import NativeFanout, build, load
from services.bridge.media.forwarding.policy import ForwardingPolicy
from services.bridge.media.forwarding.rtcp_termination import request_keyframe
from services.bridge.media.forwarding.streams import IncomingStream, Subscription
from services.bridge.media.model import MediaSources, PayloadType, RtpHeaderExtension
from services.bridge.media.packets import rtcp, rtp
from services.bridge.media.transport.aiortc_adapter import (
    DtlsCertificate,
    DtlsSession,
    SrtpContext,
    SrtpError,
)

BRIDGE_CERT = DtlsCertificate()
PEER_CERT = DtlsCertificate()


class ForwardingLoop:
    """What the running test forwards with: ``native`` is None for the Python loop."""

    native: NativeFanout | None = None
    bridge_socket: socket.socket | None = None
    sockets: list[socket.socket] = []


LOOP = ForwardingLoop()


@pytest.fixture(scope="module")
def native_library(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load(build(Path(tmp_path_factory.mktemp("native")) / "native_fanout.so"))


@pytest.fixture(autouse=True, params=["python-loop", "c-loop"])
def forwarding_loop(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "python-loop":
        LOOP.native = None
        yield request.param
        return
    bridge = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bridge.bind(("127.0.0.1", 0))
    bridge.setblocking(False)
    LOOP.bridge_socket, LOOP.sockets = bridge, [bridge]
    LOOP.native = NativeFanout(bridge.fileno(), lambda: 0, request.getfixturevalue("native_library"))
    try:
        yield request.param
    finally:
        LOOP.native = LOOP.bridge_socket = None
        for s in LOOP.sockets:
            s.close()


def new_conference(policy: ForwardingPolicy | None = None, **options: Any) -> ConferenceForwarder:
    return ConferenceForwarder("c", policy or ForwardingPolicy(), native=LOOP.native, **options)


def srtp_pair() -> tuple[SrtpContext, SrtpContext]:
    server = DtlsSession(BRIDGE_CERT, "server", [("sha-256", PEER_CERT.fingerprint())])
    client = DtlsSession(PEER_CERT, "client", [("sha-256", BRIDGE_CERT.fingerprint())])
    to_server = client.start()
    for _ in range(10):
        to_client = [d for x in to_server for d in server.feed(x)]
        to_server = [d for x in to_client for d in client.feed(x)]
    assert server.srtp is not None and client.srtp is not None
    return server.srtp, client.srtp


class Peer:
    """The far side of one endpoint."""

    def __init__(self, name: str, conference: ConferenceForwarder, sources: MediaSources) -> None:
        self.name = name
        self._wire: list[bytes] = []
        self._socket: socket.socket | None = None
        if conference.native is None:
            self.endpoint = conference.add_endpoint(name, self._wire.append)
        else:
            self._socket = peer_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            LOOP.sockets.append(peer_socket)
            peer_socket.bind(("127.0.0.1", 0))
            peer_socket.setblocking(False)
            address = peer_socket.getsockname()
            bridge = LOOP.bridge_socket
            assert bridge is not None

            def transmit(data: bytes) -> None:
                bridge.sendto(data, address)

            self.endpoint = conference.add_endpoint(name, transmit)
            self.endpoint.set_transmit(transmit, address)
        self.bridge_srtp, self.srtp = srtp_pair()
        self.conference = conference
        conference.set_sources(name, sources)

    @property
    def wire(self) -> list[bytes]:
        """Every datagram the bridge sent this peer and the test has not taken, in order."""
        if self._socket is not None:
            while True:
                try:
                    self._wire.append(self._socket.recv(2048))
                except BlockingIOError:
                    break
        return self._wire

    def connect(self, now: float = 0.0) -> None:
        self.conference.set_srtp(self.name, self.bridge_srtp, now)

    def send_rtp(self, packet: bytes, now: float = 0.0) -> None:
        wire = self.srtp.protect(packet)
        self.conference.handle_rtp(self.endpoint, self.bridge_srtp.unprotect(wire), now)

    def send_rtcp(self, packet: bytes, now: float = 0.0) -> None:
        wire = self.srtp.protect_rtcp(packet)
        self.conference.handle_rtcp(self.endpoint, self.bridge_srtp.unprotect_rtcp(wire), now)

    def take_rtp(self) -> list[bytes]:
        out = [self.srtp.unprotect(d) for d in self.wire if not rtp.is_rtcp(d)]
        self.wire[:] = [d for d in self.wire if rtp.is_rtcp(d)]
        return out

    def take_rtcp(self) -> list[tuple[int, int, bytes]]:
        out = [p for d in self.wire if rtp.is_rtcp(d) for p in rtcp.iter_packets(self.srtp.unprotect_rtcp(d))]
        self.wire[:] = [d for d in self.wire if not rtp.is_rtcp(d)]
        return out


VIDEO_PTS = [
    PayloadType(96, "VP8", 90000, rtcp_fbs=[("nack", ""), ("nack", "pli")]),
    PayloadType(97, "rtx", 90000, parameters={"apt": "96"}),
    PayloadType(111, "opus", 48000, 2),
]
LEVEL = [RtpHeaderExtension(1, rtp.AUDIO_LEVEL_URI)]


def sources(base: int, rtx: bool = True) -> MediaSources:
    return MediaSources(
        audio_ssrcs=[base + 1],
        video_ssrcs=[base + 2, base + 3] if rtx else [base + 2],
        ssrc_groups=[("FID", [base + 2, base + 3])] if rtx else [],
        payload_types=VIDEO_PTS,
        rtp_hdrexts=LEVEL,
    )


def video(seq: int, ssrc: int, payload: bytes = b"\x10\x00frame") -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc) + payload


def audio(seq: int, ssrc: int, level: int = 20) -> bytes:
    ext = struct.pack("!HH", 0xBEDE, 1) + bytes([0x10, 0x80 | level, 0, 0])
    return struct.pack("!BBHII", 0x90, 111, seq, seq * 960, ssrc) + ext + b"opus"


def meeting(
    n: int = 3, policy: ForwardingPolicy | None = None, rtx: bool = True
) -> tuple[ConferenceForwarder, list[Peer]]:
    conference = new_conference(policy)
    peers = [Peer(f"p{i}", conference, sources(1000 * (i + 1), rtx)) for i in range(n)]
    for peer in peers:
        peer.connect()
    for peer in peers:
        peer.take_rtcp()  # keyframe requests made on connect
    return conference, peers


def test_every_packet_reaches_every_other_endpoint_unchanged() -> None:
    conference, (a, b, c) = meeting()
    sent = [video(i, 1002) for i in range(5)] + [audio(i, 1001) for i in range(3)]
    for p in sent:
        a.send_rtp(p)
    assert b.take_rtp() == sent
    assert c.take_rtp() == sent
    assert a.take_rtp() == []
    assert conference.packets_forwarded == 16


def test_unsignalled_ssrc_is_dropped() -> None:
    _, (a, b, _) = meeting()
    a.send_rtp(video(1, 555))
    assert b.take_rtp() == []
    assert a.endpoint.unknown_ssrc_packets == 1


def test_force_muted_kind_reaches_nobody_whatever_the_sender_does() -> None:
    from dataclasses import replace

    conference, (a, b, c) = meeting()
    conference.set_sources("p0", replace(sources(1000), muted=frozenset({"audio"})))
    for i in range(3):
        a.send_rtp(audio(i, 1001, level=0))  # loud, muted: dropped before speaker detection
        a.send_rtp(video(i, 1002))
    assert [p for p in b.take_rtp() if p[1] & 0x7F == 111] == []
    assert len(c.take_rtp()) == 3  # video still flows
    assert a.endpoint.muted_packets == 3
    conference.set_sources("p0", sources(1000))  # unmuted by the focus
    a.send_rtp(audio(9, 1001))
    assert len(b.take_rtp()) == 1


def test_not_connected_receiver_gets_nothing_until_connected() -> None:
    conference = new_conference()
    a = Peer("a", conference, sources(1000))
    b = Peer("b", conference, sources(2000))
    a.connect()
    a.send_rtp(video(1, 1002))
    assert b.wire == []
    b.connect(now=5.0)
    # b's arrival asks a for a key frame
    assert [(t, f) for t, f, _ in a.take_rtcp()] == [(rtcp.PSFB, rtcp.FMT_PLI)]
    a.send_rtp(video(2, 1002))
    assert b.take_rtp() == [video(2, 1002)]


def test_nack_answered_from_cache_as_rtx() -> None:
    _, (a, b, _) = meeting()
    for i in range(10):
        a.send_rtp(video(100 + i, 1002, payload=bytes([0x10, 0, i])))
    b.take_rtp()
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [103, 105]))
    retransmitted = b.take_rtp()
    assert len(retransmitted) == 2
    for packet, seq in zip(retransmitted, [103, 105], strict=True):
        pt, _, _, ts, ssrc = rtp.header_fields(packet)
        assert (pt, ssrc, ts) == (97, 1003, seq * 3000)
        assert rtp.unwrap_rtx(packet, 96, 1002) == video(seq, 1002, payload=bytes([0x10, 0, seq - 100]))
    assert b.endpoint.retransmissions == 2 and b.endpoint.nacks_received == 1
    assert a.take_rtcp() == []  # nothing had to be asked upstream


def test_nack_without_rtx_resends_the_packet() -> None:
    _, (a, b, _) = meeting(rtx=False)
    a.send_rtp(video(7, 1002))
    b.wire.clear()  # lost on the way: the receiver never saw it (or SRTP replay protection drops it)
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [7]))
    assert b.take_rtp() == [video(7, 1002)]


def test_nack_for_uncached_packets_goes_upstream() -> None:
    _, (a, b, _) = meeting()
    a.send_rtp(video(10, 1002))
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [8, 9]))
    ((ptype, fmt, body),) = a.take_rtcp()
    assert (ptype, fmt) == (rtcp.RTPFB, rtcp.FMT_NACK)
    assert rtcp.feedback_ssrcs(body)[1] == 1002
    assert sorted(rtcp.parse_nack(body)) == [8, 9]
    assert a.endpoint.nacks_sent == 1


def test_sender_rtx_restores_cache_and_reaches_receivers() -> None:
    _, (a, b, c) = meeting()
    original = video(50, 1002)
    a.send_rtp(rtp.wrap_rtx(original, 97, 9, 1003, 50))
    for peer in (b, c):
        (packet,) = peer.take_rtp()
        assert rtp.unwrap_rtx(packet, 96, 1002) == original
    # and it is now in the cache: a NACK right after the relayed RTX is a duplicate, a later
    # one is answered from the cache
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [50]))
    assert b.take_rtp() == [] and b.endpoint.retransmissions_suppressed == 1
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [50]), now=0.5)
    assert len(b.take_rtp()) == 1


def test_sender_rtx_of_a_packet_the_bridge_has_is_dropped() -> None:
    """Chrome probes its uplink with RTX padding that repeats payloads it already sent: the
    receivers got those, so they are neither relayed nor shown to the policy."""
    conference, (a, b, c) = meeting()
    original = video(50, 1002)
    a.send_rtp(original)
    assert len(b.take_rtp()) == 1 and len(c.take_rtp()) == 1
    forwarded = conference.packets_forwarded
    a.send_rtp(rtp.wrap_rtx(original, 97, 9, 1003, 50))
    a.send_rtp(rtp.wrap_rtx(original, 97, 10, 1003, 50))
    assert b.take_rtp() == [] and c.take_rtp() == []
    assert conference.retransmitter.redundant_rtx_dropped == 2 and conference.packets_forwarded == forwarded
    # a receiver that lost the original still gets it, from the cache
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [50]))
    (packet,) = b.take_rtp()
    assert rtp.unwrap_rtx(packet, 96, 1002) == original


def test_pli_and_fir_reach_the_sender_rate_limited() -> None:
    _, (a, b, c) = meeting()
    b.send_rtcp(rtcp.build_pli(b.endpoint.rtcp_ssrc, 1002), now=10.0)
    c.send_rtcp(rtcp.build_fir(c.endpoint.rtcp_ssrc, 1002, 1), now=10.1)  # within the interval
    got = a.take_rtcp()
    assert [(t, f) for t, f, _ in got] == [(rtcp.PSFB, rtcp.FMT_PLI)]
    assert rtcp.feedback_ssrcs(got[0][2])[1] == 1002
    c.send_rtcp(rtcp.build_fir(c.endpoint.rtcp_ssrc, 1002, 2), now=11.0)
    assert [(t, f) for t, f, _ in a.take_rtcp()] == [(rtcp.PSFB, rtcp.FMT_PLI)]


def test_sender_report_forwarded_with_receiver_counts() -> None:
    _, (a, b, _) = meeting()
    for i in range(4):
        a.send_rtp(video(i, 1002, payload=b"x" * 100))
    a.send_rtcp(rtcp.build_sr(rtcp.SenderReport(1002, 123 << 32, 9000, 4, 400)), now=1.0)
    ((ptype, _, body),) = b.take_rtcp()
    assert ptype == rtcp.SR
    assert rtcp.parse_sr(body) == rtcp.SenderReport(1002, 123 << 32, 9000, 4, 400)


def test_periodic_reports_carry_rr_and_remb_from_receivers() -> None:
    conference, (a, b, c) = meeting()
    for i in range(10):
        if i != 4:
            a.send_rtp(video(i, 1002), now=i * 0.03)
    assert [t for t, _, _ in a.take_rtcp()] == [rtcp.RTPFB]  # the bridge asked for 4 at once
    b.send_rtcp(rtcp.build_remb(b.endpoint.rtcp_ssrc, 800_000, [1002]))
    c.send_rtcp(rtcp.build_remb(c.endpoint.rtcp_ssrc, 300_000, [1002]))
    conference.send_reports(now=1.0)
    packets = a.take_rtcp()
    assert [t for t, _, _ in packets] == [rtcp.RR, rtcp.PSFB]
    (block,) = rtcp.parse_report_blocks(packets[0][2], packets[0][1], 8)
    assert block.ssrc == 1002 and block.cumulative_lost == 1 and block.highest_seq == 9
    bitrate, ssrcs = rtcp.parse_remb(packets[1][2])  # type: ignore[misc]
    assert ssrcs == [1002] and abs(bitrate - 300_000) < 1000


def test_remb_bounded_by_configuration() -> None:
    conference = new_conference(remb_min_bps=200_000, remb_max_bps=1_000_000)
    a, b = Peer("a", conference, sources(1000)), Peer("b", conference, sources(2000))
    a.connect()
    b.connect()
    a.send_rtp(video(1, 1002))
    conference.send_reports(now=1.0)
    bitrate, _ = rtcp.parse_remb([p for t, _, p in a.take_rtcp() if t == rtcp.PSFB][-1])  # type: ignore[misc]
    assert abs(bitrate - 1_000_000) < 5000
    b.send_rtcp(rtcp.build_remb(b.endpoint.rtcp_ssrc, 10_000, [1002]))
    conference.send_reports(now=2.0)
    bitrate, _ = rtcp.parse_remb([p for t, _, p in a.take_rtcp() if t == rtcp.PSFB][-1])  # type: ignore[misc]
    assert abs(bitrate - 200_000) < 1000


def test_a_simulcast_sender_is_not_held_to_its_slowest_receiver() -> None:
    conference = new_conference(remb_max_bps=2_000_000)
    layers = MediaSources(
        video_ssrcs=[1002, 1004, 1006],
        ssrc_groups=[("SIM", [1002, 1004, 1006])],
        payload_types=VIDEO_PTS,
    )
    a, b = Peer("a", conference, layers), Peer("b", conference, sources(2000))
    a.connect()
    b.connect()
    a.send_rtp(video(1, 1002))
    b.send_rtcp(rtcp.build_remb(b.endpoint.rtcp_ssrc, 150_000, [1002]))
    conference.send_reports(now=1.0)
    bitrate, _ = rtcp.parse_remb([p for t, _, p in a.take_rtcp() if t == rtcp.PSFB][-1])  # type: ignore[misc]
    assert abs(bitrate - 2_000_000) < 10_000


class OnlyTo(ForwardingPolicy):
    """Forwards to one receiver, remapping what it sees, and records audio levels."""

    def __init__(self, receiver: str) -> None:
        super().__init__()
        self.receiver = receiver
        self.levels: list[tuple[str, int, bool]] = []

    def select(
        self, stream: IncomingStream, packet: bytes, payload_type: int, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        chosen = [s for s in subscriptions if s.receiver.id == self.receiver]
        for sub in chosen:
            if stream.kind == "video" and sub.mapping.out_ssrc != 77:
                sub.follow(ForwardingMapping(stream.ssrc, 77, 1000, 5))
        return chosen

    def observe_audio_level(self, stream: IncomingStream, level: int, voice: bool, now: float) -> None:
        self.levels.append((stream.endpoint_id, level, voice))


def test_policy_seam_filters_remaps_and_sees_audio_levels() -> None:
    policy = OnlyTo("p2")
    _, (a, b, c) = meeting(policy=policy)
    a.send_rtp(video(1, 1002))
    a.send_rtp(audio(1, 1001, level=42))
    assert b.take_rtp() == []
    v, au = c.take_rtp()
    assert rtp.header_fields(v)[2:] == (1001, 3005, 77)
    assert au == audio(1, 1001, level=42)
    assert policy.levels == [("p0", 42, True)]
    # a NACK for the remapped stream is translated back to the sender's numbering; 77 has no RTX
    # pair, so the packet itself is sent again, as the receiver numbers it
    a.send_rtp(video(2, 1002))
    c.wire.clear()  # lost
    c.send_rtcp(rtcp.build_nack(c.endpoint.rtcp_ssrc, 77, [1002]))
    (retransmission,) = c.take_rtp()
    assert rtp.header_fields(retransmission)[2:] == (1002, 6005, 77)


def test_removing_endpoints_frees_their_streams_and_subscriptions() -> None:
    conference, (_, b, c) = meeting()
    conference.remove_endpoint("p0")
    assert "p0" not in conference.endpoints
    assert all(sub.stream.sender.id != "p0" for sub in b.endpoint.subscriptions.values())
    assert all(sub.stream.sender.id != "p0" for sub in b.endpoint.subscriptions_by_out_ssrc.values())
    b.send_rtp(video(1, 2002))
    assert c.take_rtp() == [video(1, 2002)]
    conference.remove_endpoint("p0")  # idempotent


def test_changing_sources_replaces_streams() -> None:
    conference, (a, b, _) = meeting()
    conference.set_sources("p0", MediaSources(video_ssrcs=[9], payload_types=VIDEO_PTS))
    a.send_rtp(video(1, 1002))
    a.send_rtp(video(1, 9))
    assert b.take_rtp() == [video(1, 9)]
    assert 1002 not in b.endpoint.subscriptions


def test_malformed_rtcp_is_ignored() -> None:
    conference, (a, b, _) = meeting()
    conference.handle_rtcp(b.endpoint, b"\x80\xcd\x00\x09short", 0.0)
    conference.handle_rtcp(b.endpoint, b"\x81\xcd\x00\x01" + b"\x00" * 4, 0.0)  # NACK too short
    conference.handle_rtp(b.endpoint, b"\x80", 0.0)
    assert a.take_rtcp() == []


def test_packet_cache_is_a_fixed_ring() -> None:
    cache = PacketCache(100)
    assert len(cache) == 128
    for seq in range(1000):
        cache.put(seq, bytes([seq & 0xFF]))
    assert cache.get(999) == bytes([999 & 0xFF])
    assert cache.get(999 - 128) is None
    assert cache.get(999 - 127) is not None


class ShowAs(ForwardingPolicy):
    """Shows every video stream to receivers as ``shown`` (a simulcast layer switch)."""

    def __init__(self, shown: int) -> None:
        super().__init__()
        self.shown = shown

    def select(
        self, stream: IncomingStream, packet: bytes, payload_type: int, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        for sub in subscriptions:
            if stream.kind == "video" and sub.mapping.out_ssrc != self.shown:
                sub.follow(ForwardingMapping(stream.ssrc, self.shown))
        return subscriptions


def test_retransmission_of_a_remapped_layer_uses_the_rtx_pair_of_the_shown_ssrc() -> None:
    conference = new_conference(ShowAs(1004))
    layered = MediaSources(
        video_ssrcs=[1002, 1003, 1004, 1005],
        ssrc_groups=[("SIM", [1004, 1002]), ("FID", [1002, 1003]), ("FID", [1004, 1005])],
        payload_types=VIDEO_PTS,
    )
    a, b = Peer("a", conference, layered), Peer("b", conference, sources(2000))
    a.connect()
    b.connect()
    a.send_rtp(video(10, 1002))
    b.wire.clear()  # lost
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1004, [10, 11]))
    (rtx_packet,) = b.take_rtp()
    assert rtp.header_fields(rtx_packet)[4] == 1005
    assert rtp.unwrap_rtx(rtx_packet, 96, 1004) == rtp.rewrite(video(10, 1002), 10, 30000, 1004)
    # 11 was never seen: the bridge asks the sender for the layer it came from
    ((_, _, nack),) = [p for p in a.take_rtcp() if p[0] == rtcp.RTPFB]
    assert rtcp.feedback_ssrcs(nack)[1] == 1002 and rtcp.parse_nack(nack) == [11]


def test_uplink_gap_is_nacked_once_and_receiver_nacks_are_merged() -> None:
    _, (a, b, _) = meeting(rtx=False)
    for seq in (1, 2, 5):
        a.send_rtp(video(seq, 1002), now=1.0)
    ((_, _, nack),) = a.take_rtcp()
    assert rtcp.feedback_ssrcs(nack)[1] == 1002 and sorted(rtcp.parse_nack(nack)) == [3, 4]
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [3]), now=1.05)
    assert a.take_rtcp() == []  # already asked
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [3]), now=1.2)
    ((_, _, again),) = a.take_rtcp()
    assert rtcp.parse_nack(again) == [3]
    # the sender's retransmission fills the cache; later receivers' NACKs are answered from it
    a.send_rtp(video(3, 1002), now=1.25)
    b.wire.clear()
    b.send_rtcp(rtcp.build_nack(b.endpoint.rtcp_ssrc, 1002, [3]), now=1.3)
    assert b.take_rtp() == [video(3, 1002)]
    assert a.take_rtcp() == []
    assert a.endpoint.nacks_sent == 2


def test_large_jump_or_old_packet_is_not_loss() -> None:
    _, (a, _, _) = meeting()
    for seq in (100, 1000, 999):
        a.send_rtp(video(seq, 1002))
    assert a.take_rtcp() == []


# ---- retransmission storm protection ------------------------------------------------------------


def lost_then_nacked(seqs: range, rtx: bool = False, **limits: float) -> tuple[Peer, Peer]:
    """``a`` sends video ``seqs`` at t=0 (b loses them all); returns (a, b)."""
    conference = new_conference(retransmission=RetransmissionLimits(**limits))  # type: ignore[arg-type]
    a, b = Peer("a", conference, sources(1000, rtx)), Peer("b", conference, sources(2000, rtx))
    a.connect()
    b.connect()
    for seq in seqs:
        a.send_rtp(video(seq, 1002))
    b.wire.clear()
    a.wire.clear()
    return a, b


def nack(peer: Peer, seqs: list[int], now: float, ssrc: int = 1002) -> list[bytes]:
    """What the bridge sends ``peer`` for its NACK of ``seqs``. A packet resent a second time
    is the same SRTP packet again (libsrtp on the peer side would call it a replay): it is
    returned still protected."""
    peer.send_rtcp(rtcp.build_nack(peer.endpoint.rtcp_ssrc, ssrc, seqs), now=now)
    out = []
    for datagram in [d for d in peer.wire if not rtp.is_rtcp(d)]:
        try:
            out.append(peer.srtp.unprotect(datagram))
        except SrtpError:
            out.append(datagram)
    peer.wire[:] = [d for d in peer.wire if rtp.is_rtcp(d)]
    return out


def test_the_same_packet_is_not_resent_to_a_receiver_within_the_interval() -> None:
    _, b = lost_then_nacked(range(1, 6))
    assert len(nack(b, [2, 3], now=0.01)) == 2
    # aiortc repeats every missing packet in each NACK: the repeats are not answered again
    assert len(nack(b, [2, 3, 4], now=0.05)) == 1
    assert b.endpoint.retransmissions_suppressed == 2
    assert len(nack(b, [2, 3, 4], now=0.12)) == 2  # interval over for 2 and 3, not for 4
    assert b.endpoint.retransmissions == 5 and b.endpoint.retransmissions_suppressed == 3


def test_resend_interval_and_age_limit_follow_the_receivers_round_trip() -> None:
    a, b = lost_then_nacked(range(1, 6), max_age=3.0)
    # the bridge relays a's sender report to b at t=1.0; b reports on it at 1.8 having held it
    # 0.3 s: the round trip to b is 0.5 s
    ntp = 0x1234_5678_9ABC_DEF0
    a.send_rtcp(rtcp.build_sr(rtcp.SenderReport(1002, ntp, 0, 5, 100)), now=1.0)
    lsr = (ntp >> 16) & 0xFFFFFFFF
    block = struct.pack("!IBBHIIII", 1002, 0, 0, 0, 5, 0, lsr, int(0.3 * 65536))
    b.send_rtcp(struct.pack("!BBHI", 0x81, rtcp.RR, 7, b.endpoint.rtcp_ssrc) + block, now=1.8)
    assert b.endpoint.rtt is not None and abs(b.endpoint.rtt - 0.5) < 0.01
    b.take_rtcp()
    assert len(nack(b, [1], now=2.0)) == 1
    assert nack(b, [1], now=2.4) == []  # within one round trip
    assert len(nack(b, [1], now=2.6)) == 1
    # max(3 s, 3 round trips) = 3 s: packets from t=0 are too old after t=3
    assert nack(b, [2], now=3.1) == [] and b.endpoint.retransmissions_too_old == 1


def test_a_long_round_trip_delays_a_resend_by_at_most_the_cap() -> None:
    """A starved receiver reports a 5 s round trip: the same packet is still resent to it after
    ``max_interval``, not after 5 s."""
    a, b = lost_then_nacked(range(1, 6))
    ntp = 0x1234_5678_9ABC_DEF0
    a.send_rtcp(rtcp.build_sr(rtcp.SenderReport(1002, ntp, 0, 5, 100)), now=1.0)
    lsr = (ntp >> 16) & 0xFFFFFFFF
    block = struct.pack("!IBBHIIII", 1002, 0, 0, 0, 5, 0, lsr, 0)
    b.send_rtcp(struct.pack("!BBHI", 0x81, rtcp.RR, 7, b.endpoint.rtcp_ssrc) + block, now=6.0)
    assert b.endpoint.rtt is not None and abs(b.endpoint.rtt - 5.0) < 0.01
    b.take_rtcp()
    assert len(nack(b, [1], now=6.1)) == 1
    assert nack(b, [1], now=6.5) == []
    assert len(nack(b, [1], now=6.1 + RetransmissionLimits().max_interval + 0.01)) == 1


def test_old_packets_are_not_resent() -> None:
    _, b = lost_then_nacked(range(1, 4), max_age=1.0)
    assert nack(b, [1], now=1.5) == []
    assert b.endpoint.retransmissions_too_old == 1 and b.endpoint.retransmissions == 0
    assert len(nack(b, [2], now=0.9)) == 1


def test_one_nack_resends_a_bounded_number_of_packets() -> None:
    _, b = lost_then_nacked(range(1, 50), max_per_nack=32)
    assert len(nack(b, list(range(1, 50)), now=0.01)) == 32
    assert b.endpoint.retransmissions_dropped == 17
    # the rest in the next NACK; those just resent are suppressed
    assert len(nack(b, list(range(1, 50)), now=0.02)) == 17
    assert b.endpoint.retransmissions_suppressed == 32


def test_each_receiver_has_a_retransmission_budget() -> None:
    # 40 kbps at least, 0.5 s of it in the bucket: 2500 bytes, about 60 packets of 41 bytes
    _, b = lost_then_nacked(range(1, 200), budget_min_bps=40_000, budget_burst=0.5, max_per_nack=1000)
    first = nack(b, list(range(1, 200)), now=0.0)
    assert 50 <= len(first) <= 70
    assert b.endpoint.retransmissions_dropped == 199 - len(first)
    # a second later the bucket is full again (and the suppression interval is over)
    again = nack(b, list(range(1, 200)), now=1.0)
    assert 50 <= len(again) <= 70


def test_retransmission_budget_follows_the_media_rate() -> None:
    budget = RetransmissionBudget(share=0.5, min_bps=8_000, burst=1.0)
    assert budget.take(1000, 0.0, 0) and not budget.take(1, 0.0, 0)  # 1000 bytes = 1 s of 8 kbps
    # the receiver is sent 100 kB/s: after a few seconds the bucket fills at 50 kB/s
    for second in range(1, 6):
        budget.take(0, float(second), 100_000 * second)
    assert 390_000 < budget.rate_bps <= 400_000
    assert budget.take(40_000, 6.0, 600_000)
    assert not budget.take(40_000, 6.0, 600_000)


def test_sent_log_maps_outgoing_sequence_numbers_back() -> None:
    log = SentLog(16)
    for out in range(65530, 65546):
        log.record(out & 0xFFFF, (out + 100) & 0xFFFF)
    assert log.original(65535) == 99 and log.original(9) == 109
    assert log.original(65529) is None  # overwritten by a newer one in the ring
    assert log.original(20) is None  # never sent
    assert log.last_resent(3) < 0
    log.mark_resent(3, 7.0)
    assert log.last_resent(3) == 7.0
    log.record(19, 119)  # same slot as 3: a new packet there was never resent
    assert log.last_resent(19) < 0


def test_packets_sent_before_a_receiver_connected_are_not_resent() -> None:
    conference = new_conference()
    a, b = Peer("a", conference, sources(1000, False)), Peer("b", conference, sources(2000, False))
    a.connect()
    a.send_rtp(video(1, 1002))
    b.connect()
    a.send_rtp(video(2, 1002))
    a.wire.clear()
    b.wire.clear()
    assert nack(b, [1, 2], now=0.1) == [video(2, 1002)]
    assert b.endpoint.retransmissions_not_forwarded == 1
    assert a.take_rtcp() == []  # the bridge has it: not a loss upstream


def test_nack_after_a_remap_gets_the_packet_sent_under_that_sequence_number() -> None:
    """The policy shifts the receiver's sequence numbers (a pause or layer switch): a NACK for a
    number from before the shift gets the packet that was sent under it, not the one the
    current mapping would give."""
    conference, (a, b) = meeting(2, Shift(), rtx=False)
    for seq in range(10, 15):
        a.send_rtp(video(seq, 1002))
    policy = conference.policy
    assert isinstance(policy, Shift)
    policy.delta = 1000  # from now on out = seq + 1000
    for seq in range(15, 18):
        a.send_rtp(video(seq, 1002))
    b.wire.clear()
    (resent,) = nack(b, [12], now=0.1)
    assert resent == video(12, 1002)
    (resent,) = nack(b, [1016], now=0.1)
    assert rtp.header_fields(resent)[2] == 1016 and resent[12:] == video(16, 1002)[12:]
    # 1012 was never sent (16 + 1000 was; 12 + 1000 was not)
    assert nack(b, [1012], now=0.1) == [] and b.endpoint.retransmissions_not_forwarded == 1


class Shift(ForwardingPolicy):
    """Adds ``delta`` to the sequence numbers of every video stream."""

    delta = 0

    def select(
        self, stream: IncomingStream, packet: bytes, payload_type: int, subscriptions: Sequence[Subscription]
    ) -> Sequence[Subscription]:
        for sub in subscriptions:
            if stream.kind == "video" and sub.mapping.seq_delta != self.delta:
                sub.follow(ForwardingMapping(sub.stream.ssrc, seq_delta=self.delta))
        return subscriptions


def vp8(seq: int, ssrc: int, key: bool) -> bytes:
    return (
        struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc)
        + (b"\x10\x00" if key else b"\x10\x01")
        + b"vp8"
    )


def test_last_n_receiver_is_not_sent_what_it_is_not_forwarded() -> None:
    policy = ConferenceIntelligencePolicy(request_keyframe=request_keyframe)
    conference = new_conference(policy)
    a, b, c = (
        Peer(n, conference, sources(base, False)) for n, base in (("a", 1000), ("b", 2000), ("c", 3000))
    )
    for peer in (a, b, c):
        peer.connect()
    policy.set_colibri_last_n("c", 1)  # c gets a (first in speaker order), not b
    for seq in range(1, 6):
        a.send_rtp(vp8(seq, 1002, seq == 1))
        b.send_rtp(vp8(seq, 2002, seq == 1))
    assert {rtp.header_fields(p)[4] for p in c.take_rtp()} == {1002}
    assert nack(c, [2, 3], now=0.1, ssrc=2002) == []
    assert c.endpoint.retransmissions_not_forwarded == 2
    assert [p for p in b.take_rtcp() if p[0] == rtcp.RTPFB] == []  # nor asks b for them
    assert len(nack(c, [2, 3], now=0.1, ssrc=1002)) == 2


def test_simulcast_receiver_is_not_sent_a_layer_or_stretch_it_was_not_forwarded() -> None:
    """Two layers; the receiver is switched to the high one at its key frame: NACKs for the
    high layer's packets before that point (cached, never forwarded to it) get nothing."""
    policy = ConferenceIntelligencePolicy(request_keyframe=request_keyframe)
    conference = new_conference(policy)
    layered = MediaSources(
        video_ssrcs=[1002, 1004], ssrc_groups=[("SIM", [1002, 1004])], payload_types=VIDEO_PTS
    )
    a, b = Peer("a", conference, layered), Peer("b", conference, sources(2000, False))
    a.connect()
    b.connect()
    # high layer: delta frames 500..504, then a key frame at 505
    for seq in range(500, 508):
        a.send_rtp(vp8(100 + seq, 1002, seq == 500))
        a.send_rtp(vp8(seq, 1004, seq == 505))
    got = b.take_rtp()
    assert [rtp.header_fields(p)[2] for p in got] == [505, 506, 507]
    assert {rtp.header_fields(p)[4] for p in got} == {1002}  # shown as the source's first SSRC
    # 503 and 504 of the high layer are in the cache but were before the switch; 600 of the
    # low layer would map there with no offset; none of them went to b
    assert nack(b, [503, 504], now=0.1) == []
    assert b.endpoint.retransmissions_not_forwarded == 2
    (resent,) = nack(b, [506], now=0.1)
    assert rtp.header_fields(resent)[2:] == (506, 506 * 3000, 1002)


TWCC_EXT = RtpHeaderExtension(5, "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01")


def with_transport_seq(seq: int, transport_seq: int, ssrc: int) -> bytes:
    ext = struct.pack("!HH", 0xBEDE, 1) + bytes([0x51, transport_seq >> 8, transport_seq & 0xFF, 0])
    return struct.pack("!BBHII", 0x90, 96, seq, seq * 3000, ssrc) + ext + b"\x10\x00frame"


def test_transport_cc_feedback_goes_to_the_sender_and_the_numbers_go_no_further() -> None:
    from dataclasses import replace

    from services.bridge.media.packets import twcc

    conference, (a, b, c) = meeting()
    conference.set_sources("p0", replace(sources(1000), rtp_hdrexts=[*LEVEL, TWCC_EXT]))
    arrivals = {0: 1.000, 1: 1.004, 3: 1.0125, 4: 1.030}  # transport seq 2 lost
    for seq, (tseq, t) in enumerate(arrivals.items()):
        a.send_rtp(with_transport_seq(seq, tseq, 1002), now=t)
    a.send_rtp(with_transport_seq(9, 5, 555), now=1.07)  # unknown SSRC: still counted
    feedback = [twcc.parse_feedback(p) for t, f, p in a.take_rtcp() if (t, f) == (rtcp.RTPFB, 15)]
    received = [r for fb in feedback for r in fb.received]
    assert feedback[0].base_seq == 0 and sum(fb.count for fb in feedback) == 6
    assert [s for s, _ in received] == [0, 1, 3, 4, 5]
    times = dict(received)
    for tseq, t in arrivals.items():  # relative arrival times kept to the 250 µs tick
        assert abs((times[tseq] - times[0]) - (t - 1.0) * 1e6) <= 250
    assert not b.take_rtcp() and not c.take_rtcp()  # nothing about it to the receivers
    for packet in b.take_rtp():
        assert rtp.find_extension(packet, 5) is None and packet.endswith(b"\x10\x00frame")


def test_send_side_numbers_each_receivers_packets_and_reads_its_feedback() -> None:
    from dataclasses import replace

    from services.bridge.media.packets import twcc

    conference = new_conference(send_side_bwe=True)
    with_ext = replace(sources(1000), rtp_hdrexts=[*LEVEL, TWCC_EXT])
    a = Peer("a", conference, with_ext)
    b = Peer("b", conference, replace(sources(2000), rtp_hdrexts=[*LEVEL, TWCC_EXT]))
    c = Peer("c", conference, replace(sources(3000), rtp_hdrexts=[*LEVEL, TWCC_EXT]))
    for peer in (a, b, c):
        peer.connect()
        peer.take_rtcp()
    for seq in range(6):
        a.send_rtp(with_transport_seq(seq, 1000 + seq, 1002), now=1.0 + seq * 0.01)
    for peer in (b, c):
        got = peer.take_rtp()
        numbers = [twcc.find_sequence(p, 5) for p in got]
        assert [(p[v] << 8) | p[v + 1] for p, (_, v) in zip(got, numbers, strict=True)] == list(range(6))
        assert all(p.endswith(b"\x10\x00frame") for p in got)
    history = b.endpoint.send_history
    assert history is not None and history.recorded == 6
    a.take_rtcp()
    # b got 0, 1, 2, 4, 5 (3 lost), each 10 ms apart
    statuses: list[int | None] = [40, 40, 40, None, 80, 40]
    b.send_rtcp(twcc.build_feedback(b.endpoint.rtcp_ssrc, 0, 0, 20, 0, statuses), now=1.1)
    estimator = b.endpoint.send_side
    assert (
        estimator is not None and estimator.feedbacks == 1 and b.endpoint.transport_cc_feedback_received == 1
    )
    assert abs(estimator.last_loss - 1 / 6) < 1e-9
    # terminated: the sender hears only about its own numbers
    to_a = [twcc.parse_feedback(p) for t, f, p in a.take_rtcp() if (t, f) == (rtcp.RTPFB, 15)]
    assert all(fb.base_seq >= 1000 for fb in to_a)
    # the cache keeps the packets without any number: a retransmission carries none
    cached = a.endpoint.streams[1002].cache.get(2)
    assert cached is not None and twcc.find_sequence(cached, 5) == (-1, -1)

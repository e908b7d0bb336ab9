"""VP9 descriptor, H.264 key frames, RED (RFC 2198), codec lookup and the VP9 SVC projection."""

from __future__ import annotations

import struct

import pytest

from services.bridge.media.forwarding.rtcp_termination import request_keyframe
from services.bridge.media.forwarding.simulcast import (
    SimulcastLayer,
    VideoSource,
    parse_h264_packet,
    parse_packet,
    parse_vp9_packet,
)
from services.bridge.media.forwarding.svc import SvcProjection
from services.bridge.media.model import PayloadType
from services.bridge.media.packets import h264, red, rtp, vp9
from services.bridge.media.packets.codecs import CodecMap

SSRC = 0x1234


def vp9_payload(
    *, sid: int, tid: int = 0, pid: int = 1, start: bool = True, end: bool = True, inter: bool = True,
    ss: tuple[tuple[int, int], ...] = (), switching_up: bool = False, body: bytes = b"\xaa" * 20,
) -> bytes:  # fmt: skip
    """A flexible-mode descriptor (I, L; P with one reference) and optionally an SS."""
    first = 0x80 | 0x20 | 0x10  # I, L, F
    if inter:
        first |= 0x40
    if start:
        first |= 0x08
    if end:
        first |= 0x04
    if ss:
        first |= 0x02
    out = bytes([first, 0x80 | (pid >> 8), pid & 0xFF, (tid << 5) | (0x10 if switching_up else 0) | (sid << 1)])
    if inter:
        out += bytes([1 << 1])  # P_DIFF 1, N=0
    if ss:
        out += bytes([((len(ss) - 1) << 5) | 0x10])
        for w, h in ss:
            out += struct.pack("!HH", w, h)
    return out + body


def rtp_packet(seq: int, payload: bytes, marker: bool = False, pt: int = 101, ts: int = 0) -> bytes:
    return rtp.build_header(pt, marker, seq, ts, SSRC) + payload


RES = ((320, 180), (640, 360), (1280, 720))


def test_vp9_descriptor_fields_and_scalability_structure() -> None:
    pkt = rtp_packet(1, vp9_payload(sid=0, tid=0, pid=300, inter=False, ss=RES))
    d = vp9.parse_descriptor(pkt, 12, len(pkt))
    assert d is not None and d.picture_id == 300 and d.picture_id_bits == 15
    assert d.sid == 0 and d.tid == 0 and d.starts_key_picture and d.flexible
    assert d.spatial_layers == 3 and d.resolutions == RES
    assert d.size == 4 + 1 + 12
    d2 = vp9.parse_descriptor(pkt := rtp_packet(2, vp9_payload(sid=2, tid=1, switching_up=True)), 12, len(pkt))
    assert d2 is not None and d2.sid == 2 and d2.tid == 1 and d2.switching_up and d2.inter_picture
    assert not d2.starts_key_picture and d2.size == 5


def test_vp9_non_flexible_has_tl0picidx() -> None:
    payload = bytes([0x80 | 0x20 | 0x08, 5, (1 << 5) | (1 << 1), 77]) + b"x"
    d = vp9.parse_descriptor(payload, 0, len(payload))
    assert d is not None and d.tl0picidx == 77 and d.sid == 1 and d.tid == 1 and d.size == 4


def test_vp9_truncated_is_none() -> None:
    payload = vp9_payload(sid=0, inter=False, ss=RES, body=b"")
    for cut in range(len(payload)):
        assert vp9.parse_descriptor(payload[:cut], 0, cut) is None
    assert vp9.parse_descriptor(bytes([0x50, 0x03, 0x03, 0x03, 0x03]), 0, 5) is None  # 4 references


def test_h264_key_frames() -> None:
    assert h264.is_keyframe(bytes([0x65, 1, 2]), 0, 3)  # IDR
    assert h264.is_keyframe(bytes([0x67, 1]), 0, 2)  # SPS
    assert not h264.is_keyframe(bytes([0x41, 1]), 0, 2)  # non-IDR slice
    stap = bytes([0x78]) + struct.pack("!H", 2) + bytes([0x67, 0]) + struct.pack("!H", 2) + bytes([0x68, 0])
    assert h264.is_keyframe(stap, 0, len(stap))
    bad = bytes([0x78]) + struct.pack("!H", 50) + bytes([0x67, 0])  # a unit past the end
    assert not h264.is_keyframe(bad, 0, len(bad))
    assert h264.is_keyframe(bytes([0x7C, 0x85, 9]), 0, 3)  # FU-A start of an IDR
    assert not h264.is_keyframe(bytes([0x7C, 0x05, 9]), 0, 3)  # FU-A middle
    assert not h264.is_keyframe(b"", 0, 0)


def red_payload(primary: bytes, *redundant: tuple[int, bytes]) -> bytes:
    out = b""
    for ts_off, block in redundant:
        out += bytes([0x80 | 111, (ts_off >> 6) & 0xFF, ((ts_off & 0x3F) << 2) | (len(block) >> 8), len(block) & 0xFF])
    out += bytes([111])
    for _, block in redundant:
        out += block
    return out + primary


def test_red_parse_and_strip() -> None:
    payload = red_payload(b"PRIMARY", (960, b"old1"), (1920, b"older"))
    parsed = red.parse(payload, 0, len(payload))
    assert parsed is not None and parsed.primary_pt == 111
    assert [(pt, off, ln) for pt, off, _, ln in parsed.redundant] == [(111, 960, 4), (111, 1920, 5)]
    assert red.primary_payload(payload, 0, len(payload)) == b"PRIMARY"
    pkt = bytearray(rtp_packet(7, payload, pt=112, marker=True))
    assert red.strip_to_primary(pkt, 12, len(pkt))
    assert rtp.payload_type(pkt) == 111 and pkt[1] & 0x80 and bytes(pkt[12:]) == b"PRIMARY"
    assert rtp.sequence_number(pkt) == 7
    assert red.parse(payload[:3], 0, 3) is None
    assert red.parse(bytes([0x80 | 111, 0, 0, 200, 111]), 0, 5) is None  # block past the end
    assert red.parse(bytes([0xEF, 0, 0, 0]) * 20 + bytes([111]), 0, 81) is None  # too many blocks


def test_codec_map() -> None:
    codecs = CodecMap([PayloadType(100, "VP8", 90000), PayloadType(101, "VP9", 90000), PayloadType(112, "red", 48000)])
    assert codecs.codec(101) == "vp9" and codecs.payload_types_of("red") == {112} and codecs.codec(5) is None


def test_h264_parsed_packet_starts_a_simulcast_switch_at_idr() -> None:
    from services.bridge.media.forwarding.simulcast import SimulcastProjection

    source = VideoSource("a-v0", "a", (SimulcastLayer(0, 1), SimulcastLayer(1, 2)))
    proj = SimulcastProjection(source)
    proj.set_target(1)
    delta = rtp.build_header(107, False, 10, 0, 2) + bytes([0x41, 0])
    idr = rtp.build_header(107, False, 11, 0, 2) + bytes([0x65, 0])
    assert not proj.accept(delta, 1, 0.0, parse_h264_packet(delta))
    assert proj.accept(idr, 1, 0.0, parse_h264_packet(idr)) and proj.current == 1


def svc_source() -> VideoSource:
    return VideoSource("a-v0", "a", tuple(SimulcastLayer(i, SSRC) for i in range(3)), svc=True)


def picture(seq: int, pid: int, *, key: bool = False, tid: int = 0, layers: int = 3) -> list[bytes]:
    """One picture: two packets per spatial layer, the marker on the very last one."""
    out = []
    for sid in range(layers):
        for part in range(2):
            last = sid == layers - 1 and part == 1
            payload = vp9_payload(sid=sid, tid=tid, pid=pid, start=part == 0, end=part == 1,
                                  inter=not key, ss=RES[:layers] if key and sid == 0 and part == 0 else ())  # fmt: skip
            out.append(rtp_packet(seq + len(out), payload, marker=last, ts=pid * 3000))
    return out


def run(proj: SvcProjection, packets: list[bytes]) -> list[bytearray]:
    sent = []
    for pkt in packets:
        parsed = parse_packet(pkt, False)
        if proj.accept(pkt, 0, 0.0, parsed):
            sent.append(proj.mapping.apply(pkt, parsed.seq, parsed.timestamp))
    return sent


def test_svc_projection_forwards_up_to_the_target_layer_gapless_with_marker() -> None:
    proj = SvcProjection(svc_source())
    assert proj.set_target(1) and proj.keyframe_wanted == SSRC
    packets = picture(100, 1, key=False)  # no key picture yet: nothing
    assert run(proj, packets) == []
    packets = picture(106, 2, key=True) + picture(112, 3) + picture(118, 4)
    sent = run(proj, packets)
    assert proj.current == 1 and proj.keyframe_wanted is None
    assert len(sent) == 12  # layers 0 and 1 of three pictures
    seqs = [rtp.sequence_number(p) for p in sent]
    assert seqs == list(range(seqs[0], seqs[0] + 12))  # gapless
    markers = [bool(p[1] & 0x80) for p in sent]
    assert markers == [False, False, False, True] * 3  # the end of layer 1 of each picture
    sids = [vp9.parse_descriptor(p, 12, len(p)).sid for p in sent]  # type: ignore[union-attr]
    assert max(sids) == 1


def test_svc_switch_down_at_once_up_at_key_picture_only() -> None:
    proj = SvcProjection(svc_source())
    proj.set_target(2)
    assert len(run(proj, picture(1, 1, key=True))) == 6
    assert not proj.set_target(0)
    assert len(run(proj, picture(7, 2))) == 2  # down at the next picture
    assert proj.set_target(2)  # up needs a key picture
    assert len(run(proj, picture(13, 3))) == 2
    sent = run(proj, picture(19, 4, key=True))
    assert len(sent) == 6 and proj.current == 2
    seqs = [rtp.sequence_number(p) for p in sent]
    assert seqs == list(range(seqs[0], seqs[0] + 6)) and seqs[0] == 11  # after the 6+2+2 sent before


def test_svc_temporal_target_drops_upper_temporal_layers() -> None:
    proj = SvcProjection(svc_source())
    proj.set_target(0, tid=0)
    sent = run(proj, picture(1, 1, key=True) + picture(7, 2, tid=1) + picture(13, 3, tid=0))
    assert len(sent) == 4
    assert [rtp.sequence_number(p) for p in sent] == [1, 2, 3, 4]


def test_svc_stop_forwards_nothing() -> None:
    proj = SvcProjection(svc_source())
    proj.set_target(0)
    run(proj, picture(1, 1, key=True))
    proj.set_target(-1)
    assert run(proj, picture(7, 2)) == [] and proj.current == -1


# --- in the real forwarder and conference policy (no sockets: transmit appends to a list) --------

def test_forwarder_sends_each_receiver_its_vp9_layers_and_red_or_plain_opus() -> None:
    import pylibsrtp

    from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
    from services.bridge.media.forwarding.forwarder import ConferenceForwarder
    from services.bridge.media.model import MediaSources
    from services.bridge.media.transport.aiortc_adapter import SrtpContext
    from services.common.bridge_channel import ReceiverVideoConstraints, VideoConstraints

    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    now = [1000.0]
    policy = ConferenceIntelligencePolicy(lambda ep, m: None, request_keyframe=request_keyframe, clock=lambda: now[0])
    forwarder = ConferenceForwarder("conf", policy)
    opus, red_pt = PayloadType(111, "opus", 48000, 2), PayloadType(112, "red", 48000, 2, {"": "111/111"})
    vp9_pt = PayloadType(101, "VP9", 90000)
    keys = {name: (bytes([i + 1]) * 30, bytes([i + 101]) * 30) for i, name in enumerate("abc")}
    sent: dict[str, list[bytes]] = {name: [] for name in "abc"}
    for name in "abc":
        forwarder.add_endpoint(name, sent[name].append)
    forwarder.set_sources("a", MediaSources(audio_ssrcs=[77], video_ssrcs=[SSRC], payload_types=[opus, red_pt, vp9_pt]))
    forwarder.set_sources("b", MediaSources(payload_types=[opus, red_pt, vp9_pt]))  # takes RED
    forwarder.set_sources("c", MediaSources(payload_types=[opus, vp9_pt]))  # does not
    for name in "abc":
        to_bridge, from_bridge = keys[name]
        forwarder.set_srtp(name, SrtpContext("AES_CM_128_HMAC_SHA1_80", from_bridge, to_bridge, profile), now[0])
    policy.on_message("b", ReceiverVideoConstraints(default_constraints=VideoConstraints(max_height=180)))
    seq = 1
    for pid in range(1, 40):
        for pkt in picture(seq, pid, key=pid % 10 == 1):
            now[0] += 0.005
            forwarder.handle_rtp(forwarder.endpoints["a"], pkt, now[0])
        seq += 6
        audio = rtp.build_header(112, False, pid, pid * 960, 77) + red_payload(b"OPUS", (960, b"prev"))
        forwarder.handle_rtp(forwarder.endpoints["a"], audio, now[0])

    def received(name: str) -> list[bytes]:
        to_bridge, from_bridge = keys[name]
        rx = SrtpContext("AES_CM_128_HMAC_SHA1_80", to_bridge, from_bridge, profile)
        return [rx.unprotect(d) for d in sent[name] if not 192 <= d[1] <= 223]

    def video_sids(packets: list[bytes]) -> set[int]:
        return {vp9.parse_descriptor(p, 12, len(p)).sid for p in packets if p[8:12] == SSRC.to_bytes(4, "big")}  # type: ignore[union-attr]

    b, c = received("b"), received("c")
    assert video_sids(b) == {0} and video_sids(c) == {0, 1, 2}
    b_video = [rtp.sequence_number(p) for p in b if rtp.payload_type(p) == 101]
    assert b_video == list(range(b_video[0], b_video[0] + len(b_video)))  # gapless
    b_audio = [p for p in b if p[8:12] == (77).to_bytes(4, "big")]
    c_audio = [p for p in c if p[8:12] == (77).to_bytes(4, "big")]
    assert b_audio and all(rtp.payload_type(p) == 112 for p in b_audio)
    assert c_audio and all(rtp.payload_type(p) == 111 and p[12:] == b"OPUS" for p in c_audio)


def test_the_mixer_takes_the_primary_opus_block_of_red() -> None:
    from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
    from services.bridge.media.allocation.mixer import OpusEncoder
    from services.bridge.media.forwarding.forwarder import ConferenceForwarder
    from services.bridge.media.model import MediaSources, RtpHeaderExtension
    from services.bridge.media.packets.rtp import AUDIO_LEVEL_URI
    from services.bridge.media.tests.test_lastn import PROFILE, Clock, Participant
    from services.bridge.media.tests.test_mixer import decode_all, energy_at, tone_frames
    from services.bridge.media.transport.aiortc_adapter import SrtpContext

    clock = Clock()
    policy = ConferenceIntelligencePolicy(request_keyframe=request_keyframe, clock=clock)
    forwarder = ConferenceForwarder("conf", policy)
    people = {name: Participant(i, name) for i, name in enumerate("am")}
    opus, red_pt = PayloadType(111, "opus", 48000, 2), PayloadType(112, "red", 48000, 2, {"": "111/111"})
    for p in people.values():
        forwarder.add_endpoint(p.name, p.sent.append)
        forwarder.set_sources(p.name, MediaSources(
            audio_ssrcs=[p.audio_ssrc], payload_types=[opus, red_pt],
            rtp_hdrexts=[RtpHeaderExtension(1, AUDIO_LEVEL_URI)],
        ), clock.now)  # fmt: skip
        forwarder.set_srtp(
            p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )
    mixed_ssrc = policy.set_audio_mixing("m", True)
    encoder, tone = OpusEncoder(), tone_frames(440.0, 40)
    previous = b"\xff" * 30  # a redundant block that is no Opus the mixer could decode as the tone
    for i in range(40):
        clock.now += 0.02
        frame = encoder.encode(tone[i])
        payload = red_payload(frame, (960, previous))
        previous = frame
        header = struct.pack("!BBHII", 0x80, 112, i, i * 960, people["a"].audio_ssrc)
        forwarder.handle_rtp(forwarder.endpoints["a"], header + payload, clock.now)
        policy.mix_once()
    got = [people["m"].receiver_side.unprotect(d) for d in people["m"].sent if not 191 < d[1] < 224]
    assert got and {struct.unpack_from("!I", d, 8)[0] for d in got} == {mixed_ssrc}
    pcm = decode_all([d[12:] for d in got])[-20 * 960 :]
    assert energy_at(pcm, 440.0) > 50 * energy_at(pcm, 660.0)


def test_svc_layer_bitrates_are_cumulative_and_zero_for_a_layer_not_sent() -> None:
    from services.bridge.media.forwarding.simulcast import LayerMeter

    meter = LayerMeter(window=0.5)
    for i in range(11):
        meter.on_packet(LayerMeter.svc_key(SSRC, 0), 100, i * 0.1)
        meter.on_packet(LayerMeter.svc_key(SSRC, 1), 300, i * 0.1)
    meter.on_svc_structure(SSRC, [180, 360, 720])
    rates = meter.layer_bitrates(svc_source(), 1.0)
    assert rates[0] > 0 and rates[1] == rates[0] * 4 and rates[2] == 0.0
    assert meter.layer_heights(svc_source()) == [180, 360, 720]


def test_svc_switches_up_at_a_layer_frame_predicted_only_from_the_layer_below() -> None:
    proj = SvcProjection(svc_source())
    proj.set_target(0)
    run(proj, picture(1, 1, key=True))
    proj.set_target(1)
    # an ordinary picture whose layer-1 frame is inter-layer predicted only (P=0 on sid 1)
    pkts = picture(7, 2)
    for i in (2, 3):
        body = vp9_payload(sid=1, pid=2, start=i == 2, end=i == 3, inter=False)
        pkts[i] = rtp_packet(7 + i, body, ts=6000)
    sent = run(proj, pkts)
    assert proj.current == 1 and len(sent) == 4
    assert bool(sent[-1][1] & 0x80)  # the receiver's picture now ends with layer 1


def test_a_vp9_packet_is_read_once_for_all_its_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = vp9.parse_descriptor

    def counting(buf: bytes, offset: int, end: int) -> vp9.Vp9Descriptor | None:
        reads.append(offset)
        return real(buf, offset, end)

    monkeypatch.setattr(vp9, "parse_descriptor", counting)
    receivers = [SvcProjection(svc_source()) for _ in range(3)]
    for proj in receivers:
        proj.set_target(2)
    for pkt in picture(1, 1, key=True):
        parsed = parse_vp9_packet(pkt)
        assert all(proj.accept(pkt, 0, 0.0, parsed) for proj in receivers)
    assert len(reads) == 6  # one per packet, not per receiver
    assert parse_packet(pkt, False).vp9 == parse_vp9_packet(pkt).vp9 is not None  # same reading, uncached


def test_a_layer_count_change_held_back_by_the_relearn_interval_is_taken_when_it_is_over() -> None:
    """Chrome re-encodes a key picture each time its VP9 structure changes (a new sender
    constraint scales its camera: L3T3_KEY, then L1T3 at 180 lines, then L2T3_KEY at 360), often
    less than ``SVC_RELEARN_INTERVAL`` apart, and then sends no key picture for as long as nobody
    asks. The structure held back is the stream's from then on: taken once the interval is over,
    not dropped (else a receiver constrained to 180 lines gets the 360-line layer of a stream the
    bridge takes for a single layer, until the next key picture, which may never come)."""
    import pylibsrtp

    from services.bridge.media.allocation.lastn import SVC_RELEARN_INTERVAL, ConferenceIntelligencePolicy
    from services.bridge.media.forwarding.forwarder import ConferenceForwarder
    from services.bridge.media.model import MediaSources
    from services.bridge.media.transport.aiortc_adapter import SrtpContext
    from services.common.bridge_channel import ReceiverVideoConstraints, VideoConstraints

    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    now = [1000.0]
    policy = ConferenceIntelligencePolicy(lambda ep, m: None, request_keyframe=request_keyframe, clock=lambda: now[0])
    forwarder = ConferenceForwarder("conf", policy)
    vp9_pt = PayloadType(101, "VP9", 90000)
    keys = {name: (bytes([i + 1]) * 30, bytes([i + 101]) * 30) for i, name in enumerate("abc")}
    sent: dict[str, list[bytes]] = {name: [] for name in "abc"}
    for name in "abc":
        forwarder.add_endpoint(name, sent[name].append)
    forwarder.set_sources("a", MediaSources(video_ssrcs=[SSRC], payload_types=[vp9_pt]))
    for name in "bc":
        forwarder.set_sources(name, MediaSources(payload_types=[vp9_pt]))
    for name in "abc":
        to_bridge, from_bridge = keys[name]
        forwarder.set_srtp(name, SrtpContext("AES_CM_128_HMAC_SHA1_80", from_bridge, to_bridge, profile), now[0])
    policy.on_message("b", ReceiverVideoConstraints(default_constraints=VideoConstraints(max_height=180)))
    sender = forwarder.endpoints["a"]
    seq, pid, answered = 1, 1, 0

    def send(seconds: float, layers: int, key_first: bool = False) -> None:
        """``seconds`` of 30 pictures a second; a key picture first, and after each PLI."""
        nonlocal seq, pid, answered
        key = key_first
        for _ in range(round(seconds * 30)):
            now[0] += 1 / 30
            for pkt in picture(seq, pid, key=key, layers=layers):
                forwarder.handle_rtp(sender, pkt, now[0])
            seq, pid = seq + 2 * layers, pid + 1
            key = sender.plis_forwarded > answered  # the sender answers a PLI at its next picture
            answered = sender.plis_forwarded

    send(3.0, 3, key_first=True)  # L3T3_KEY
    send(SVC_RELEARN_INTERVAL - 1.0, 1, key_first=True)  # scaled to 180 lines: L1T3
    send(8.0, 2, key_first=True)  # scaled to 360 lines: L2T3_KEY, within the interval

    def video_sids(name: str) -> set[int]:
        to_bridge, from_bridge = keys[name]
        rx = SrtpContext("AES_CM_128_HMAC_SHA1_80", to_bridge, from_bridge, profile)
        packets = [rx.unprotect(d) for d in sent[name][-60:] if not 192 <= d[1] <= 223]
        return {vp9.parse_descriptor(p, 12, len(p)).sid for p in packets}  # type: ignore[union-attr]

    for name in "bc":
        sent[name].clear()
    send(1.0, 2)
    assert video_sids("b") == {0}  # 180 lines
    assert video_sids("c") == {0, 1}


def test_a_switch_up_whose_pli_is_lost_asks_again_until_the_key_picture_comes() -> None:
    """A receiver allowed more than the low spatial layer waits for a key picture (L3T3_KEY);
    the bridge asks the sender (RFC 4585 PLI) and, while the switch is pending, asks again at
    each allocation tick (at most one PLI per stream per ``KEYFRAME_REQUEST_INTERVAL``), as
    jitsi-videobridge's ``KeyframeRequester`` does: a lost PLI does not leave it waiting."""
    import pylibsrtp

    from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
    from services.bridge.media.forwarding.forwarder import ConferenceForwarder
    from services.bridge.media.model import MediaSources
    from services.bridge.media.transport.aiortc_adapter import SrtpContext
    from services.common.bridge_channel import ReceiverVideoConstraints, VideoConstraints

    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    now = [1000.0]
    policy = ConferenceIntelligencePolicy(lambda ep, m: None, request_keyframe=request_keyframe, clock=lambda: now[0])
    forwarder = ConferenceForwarder("conf", policy)
    vp9_pt = PayloadType(101, "VP9", 90000)
    keys = {name: (bytes([i + 1]) * 30, bytes([i + 101]) * 30) for i, name in enumerate("ab")}
    sent: dict[str, list[bytes]] = {name: [] for name in "ab"}
    for name in "ab":
        forwarder.add_endpoint(name, sent[name].append)
        forwarder.set_sources(name, MediaSources(video_ssrcs=[SSRC] if name == "a" else [], payload_types=[vp9_pt]))
        to_bridge, from_bridge = keys[name]
        forwarder.set_srtp(name, SrtpContext("AES_CM_128_HMAC_SHA1_80", from_bridge, to_bridge, profile), now[0])
    policy.on_message("b", ReceiverVideoConstraints(default_constraints=VideoConstraints(max_height=180)))
    sender = forwarder.endpoints["a"]
    seq, pid = 1, 1

    def send(seconds: float, key_first: bool = False) -> None:
        nonlocal seq, pid
        for i in range(round(seconds * 30)):
            now[0] += 1 / 30
            for pkt in picture(seq, pid, key=key_first and i == 0):
                forwarder.handle_rtp(sender, pkt, now[0])
            seq, pid = seq + 6, pid + 1

    def video_sids() -> set[int]:
        to_bridge, from_bridge = keys["b"]
        rx = SrtpContext("AES_CM_128_HMAC_SHA1_80", to_bridge, from_bridge, profile)
        packets = [rx.unprotect(d) for d in sent["b"] if not 192 <= d[1] <= 223]
        return {vp9.parse_descriptor(p, 12, len(p)).sid for p in packets}  # type: ignore[union-attr]

    send(3.0, key_first=True)
    sent["b"].clear()
    asked = sender.plis_forwarded
    policy.on_message("b", ReceiverVideoConstraints(default_constraints=VideoConstraints(max_height=720)))
    assert sender.plis_forwarded == asked + 1  # lost: the sender sends no key picture
    send(3.0)
    assert sender.plis_forwarded >= asked + 3  # asked again at the allocation ticks
    assert video_sids() == {0}  # still waiting
    send(1.0, key_first=True)  # one is answered
    assert video_sids() == {0, 1, 2}
    asked = sender.plis_forwarded
    send(3.0)
    assert sender.plis_forwarded == asked  # nothing pending: no more PLIs

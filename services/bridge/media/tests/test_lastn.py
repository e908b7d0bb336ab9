from __future__ import annotations

import itertools
import struct
import threading

import pylibsrtp
import pytest

from services.bridge.media.allocation.allocator import SourceLayers, allocate, sender_max_height
from services.bridge.media.allocation.lastn import AudioSubscription, ConferenceIntelligencePolicy
from services.bridge.media.allocation.mixer import OpusEncoder
from services.bridge.media.allocation.settings import UNLIMITED, ReceiverSettings
from services.bridge.media.allocation.video_policy import ConferenceVideoPolicy
from services.bridge.media.forwarding.forwarder import ConferenceForwarder
from services.bridge.media.forwarding.rtcp_termination import request_keyframe
from services.bridge.media.forwarding.simulcast import video_sources
from services.bridge.media.model import MediaSources, PayloadType, RtpHeaderExtension
from services.bridge.media.packets import rtcp
from services.bridge.media.packets.rtp import AUDIO_LEVEL_URI
from services.bridge.media.tests.test_mixer import decode_all, energy_at, tone_frames
from services.bridge.media.transport.aiortc_adapter import SrtpContext
from services.common import bridge_channel
from services.common.bridge_channel import (
    ForwardedSources,
    LastNChangedEvent,
    ReceiverAudioSubscription,
    ReceiverVideoConstraints,
    SenderSourceConstraints,
    parse,
)

HEIGHTS = (180, 360, 720)
RATES = (150_000.0, 500_000.0, 1_500_000.0)


def steer(policy: ConferenceIntelligencePolicy, endpoint: str, message: object) -> None:
    """A bridge-channel message as the bridge channel hands it to the policy: parsed once (one
    the schema refuses never reaches the policy)."""
    if isinstance(message, bridge_channel.BridgeChannelMessage):
        policy.on_message(endpoint, message)
        return
    try:
        parsed = bridge_channel.parse(message)  # type: ignore[arg-type]
    except bridge_channel.BridgeChannelError:
        return
    policy.on_message(endpoint, parsed)


def sources(*endpoints: str) -> list[SourceLayers]:
    return [SourceLayers(f"{ep}-v0", ep, HEIGHTS, RATES) for ep in endpoints]


def constraints(**fields: object) -> ReceiverVideoConstraints:
    message = parse({"colibriClass": "ReceiverVideoConstraints", **fields})
    assert isinstance(message, ReceiverVideoConstraints)
    return message


SPEAKERS = sources("d", "p1", "p2", "p3", "r")  # speaker order: d dominant, then previous ones


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (ReceiverSettings(), {"d-v0": 2, "p1-v0": 2, "p2-v0": 2, "p3-v0": 2}),
        (ReceiverSettings(colibri_last_n=2), {"d-v0": 2, "p1-v0": 2}),
        (ReceiverSettings(colibri_last_n=2, last_n=3), {"d-v0": 2, "p1-v0": 2}),  # smallest wins
        (ReceiverSettings(colibri_last_n=3, last_n=1), {"d-v0": 2}),
        (ReceiverSettings(last_n=0), {}),
        (ReceiverSettings(last_n=2, default_max_height=180), {"d-v0": 0, "p1-v0": 0}),
        (ReceiverSettings(last_n=2, default_max_height=400), {"d-v0": 1, "p1-v0": 1}),
        # on-stage and selected sources come before the speaker order
        (ReceiverSettings(last_n=2, on_stage=("p3-v0",), selected=("p2-v0",)), {"p3-v0": 2, "p2-v0": 2}),
        (ReceiverSettings(last_n=2, selected=("nobody-v0", "p2-v0")), {"p2-v0": 2, "d-v0": 2}),
        # a source constrained to 0 is neither sent nor counted
        (ReceiverSettings(last_n=2, max_heights={"d-v0": 0}), {"p1-v0": 2, "p2-v0": 2}),
        (
            ReceiverSettings(last_n=2, default_max_height=180, max_heights={"p1-v0": 720}),
            {"d-v0": 0, "p1-v0": 2},
        ),
        # bandwidth: lowest layers first, then the first in preference order goes up
        (ReceiverSettings(last_n=2, bandwidth_bps=900_000), {"d-v0": 1, "p1-v0": 0}),
        (ReceiverSettings(last_n=2, bandwidth_bps=1_000_000), {"d-v0": 1, "p1-v0": 1}),
        (ReceiverSettings(last_n=2, bandwidth_bps=2_000_000), {"d-v0": 2, "p1-v0": 1}),
        # too little for even the lowest layers: still the lowest layers (no source dropped)
        (ReceiverSettings(last_n=3, bandwidth_bps=320_000), {"d-v0": 0, "p1-v0": 0, "p2-v0": 0}),
        (ReceiverSettings(last_n=2, bandwidth_bps=100_000), {"d-v0": 0, "p1-v0": 0}),
    ],
)
def test_allocate(settings: ReceiverSettings, expected: dict[str, int]) -> None:
    allocation = allocate("r", settings, SPEAKERS)
    assert allocation.layers == expected
    assert allocation.forwarded == list(expected)


def test_unmeasured_layers_cost_nothing() -> None:
    fresh = [SourceLayers("a-v0", "a", HEIGHTS, (0.0, 0.0, 0.0))]
    assert allocate("r", ReceiverSettings(bandwidth_bps=1), fresh).layers == {"a-v0": 2}


def test_layers_the_sender_stopped_are_skipped() -> None:
    # Chrome sends only its low layer (bandwidth or CPU): a receiver that wants 720 gets 180
    low_only = [SourceLayers("a-v0", "a", HEIGHTS, (90_000.0, 0.0, 0.0))]
    assert allocate("r", ReceiverSettings(), low_only).layers == {"a-v0": 0}
    # a stopped middle layer does not keep the receiver from the top one
    gap = [SourceLayers("a-v0", "a", HEIGHTS, (90_000.0, 0.0, 900_000.0))]
    assert allocate("r", ReceiverSettings(), gap).layers == {"a-v0": 2}
    assert allocate("r", ReceiverSettings(default_max_height=360), gap).layers == {"a-v0": 0}
    assert allocate("r", ReceiverSettings(bandwidth_bps=500_000), gap).layers == {"a-v0": 0}


def test_receiver_video_constraints_are_partial_updates() -> None:
    settings = ReceiverSettings()
    settings.apply(
        constraints(
            lastN=3,
            selectedSources=["a-v0"],
            onStageSources=["b-v0"],
            defaultConstraints={"maxHeight": 180},
            constraints={"b-v0": {"maxHeight": 720}},
        )
    )
    settings.apply(constraints(defaultConstraints={"maxHeight": 360}))
    assert settings == ReceiverSettings(
        last_n=3, selected=("a-v0",), on_stage=("b-v0",), default_max_height=360, max_heights={"b-v0": 720}
    )
    settings.apply(constraints(constraints={}, onStageSources=[]))
    assert (settings.on_stage, settings.max_heights, settings.last_n) == ((), {}, 3)
    settings.apply(LastNChangedEvent(last_n=-1))
    assert settings.effective_last_n == UNLIMITED
    settings.apply(constraints(defaultConstraints={}))
    assert settings.default_max_height == UNLIMITED


@pytest.mark.parametrize(
    ("wanted", "expected"), [([], 0), ([180], 180), ([180, 720, 360], 720), ([180, -1], UNLIMITED)]
)
def test_sender_max_height(wanted: list[int], expected: int) -> None:
    assert sender_max_height(SourceLayers("a-v0", "a", HEIGHTS, RATES), wanted) == expected


def simulcast(base: int) -> MediaSources:
    return MediaSources(
        video_ssrcs=[base, base + 1, base + 2], ssrc_groups=[("SIM", [base, base + 1, base + 2])]
    )


def six_party_policy(colibri_last_n: int) -> ConferenceVideoPolicy:
    policy = ConferenceVideoPolicy()
    for i, ep in enumerate("abcdef"):
        policy.add_endpoint(ep, colibri_last_n=colibri_last_n)
        policy.set_sources(ep, video_sources(ep, simulcast(100 * (i + 1))))
    return policy


def forwarded(update_messages: list, endpoint: str) -> list[str] | None:
    found = [m for ep, m in update_messages if ep == endpoint and isinstance(m, ForwardedSources)]
    return found[-1].forwarded_sources if found else None


def test_last_n_two_follows_the_speakers_and_says_so() -> None:
    policy = six_party_policy(colibri_last_n=2)
    policy.set_speaker_order(["c", "e"])
    update = policy.recompute()
    assert forwarded(update.messages, "a") == ["c-v0", "e-v0"]
    assert forwarded(update.messages, "c") == ["e-v0", "a-v0"]  # never its own video
    assert forwarded(update.messages, "e") == ["c-v0", "a-v0"]
    # every receiver of c's video waits for a key frame of c's top layer
    assert 302 in update.keyframe_requests
    # routes: only receivers that get a stream are listed for its SSRCs
    assert set(policy.routes[302]) == {"a", "b", "d", "e", "f"}
    assert 402 not in policy.routes  # d's video goes to nobody
    assert 202 not in policy.routes  # b is neither speaker: nobody gets it
    assert set(policy.routes[102]) == {"c", "e"}

    assert policy.recompute().messages == []  # nothing changed, nothing said
    policy.set_speaker_order(["f", "c", "e"])
    update = policy.recompute()
    assert forwarded(update.messages, "a") == ["f-v0", "c-v0"]
    assert forwarded(update.messages, "f") is None  # f still gets c and e
    assert ("f", SenderSourceConstraints(source_name="f-v0", max_height=UNLIMITED)) in update.messages
    assert ("a", SenderSourceConstraints(source_name="a-v0", max_height=0)) in update.messages  # nobody now
    assert not any(ep == "e" and isinstance(m, SenderSourceConstraints) for ep, m in update.messages)
    assert 602 in update.keyframe_requests


def test_sender_constraints_follow_the_receivers() -> None:
    policy = six_party_policy(colibri_last_n=UNLIMITED)
    first = policy.recompute()
    assert ("a", SenderSourceConstraints(source_name="a-v0", max_height=UNLIMITED)) in first.messages
    for ep in "bcdef":
        steer(policy, ep, constraints(defaultConstraints={"maxHeight": 180}))
    update = policy.recompute()
    assert ("a", SenderSourceConstraints(source_name="a-v0", max_height=180)) in update.messages
    assert policy.allocation("b").layers["a-v0"] == 0
    for ep in "bcdef":
        steer(policy, ep, constraints(constraints={"a-v0": {"maxHeight": 0}}))
    update = policy.recompute()
    assert ("a", SenderSourceConstraints(source_name="a-v0", max_height=0)) in update.messages
    assert 100 not in policy.routes and 101 not in policy.routes


def test_bandwidth_and_measured_layers_drive_the_layer() -> None:
    policy = six_party_policy(colibri_last_n=1)
    policy.set_speaker_order(["a"])
    policy.set_layer_info("a-v0", (90, 180, 360), RATES)
    policy.recompute()
    assert policy.allocation("b").layers == {"a-v0": 2}
    policy.set_bandwidth("b", 600_000)
    update = policy.recompute()
    assert policy.allocation("b").layers == {"a-v0": 1}
    assert 101 in update.keyframe_requests
    assert policy.pending_keyframes() >= {101}
    projection = policy.routes[101]["b"].projection
    assert projection.target == 1
    steer(policy, "b", constraints(defaultConstraints={"maxHeight": 90}))
    policy.recompute()
    assert policy.allocation("b").layers == {"a-v0": 0}


def test_endpoints_leaving_and_changing_sources() -> None:
    policy = six_party_policy(colibri_last_n=2)
    policy.set_speaker_order(["a", "b"])
    policy.recompute()
    policy.remove_endpoint("a")
    update = policy.recompute()
    assert forwarded(update.messages, "c") == ["b-v0", "d-v0"]
    assert not any(ep == "a" for ep, _ in update.messages)
    assert all("a" not in routes for routes in policy.routes.values())
    assert 100 not in policy.routes
    policy.set_sources("b", [])
    update = policy.recompute()
    assert forwarded(update.messages, "c") == ["d-v0", "e-v0"]
    assert 200 not in policy.routes


# --- the policy in the real forwarder (no sockets: each endpoint's transmit is a list) -----------

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
OPUS = PayloadType(111, "opus", 48000, 2)
VP8 = PayloadType(100, "VP8", 90000)
LEVEL_EXT = 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Participant:
    """One endpoint of the forwarder: what it sends, and what reached it (SRTP undone)."""

    def __init__(self, index: int, name: str) -> None:
        self.name = name
        self.audio_ssrc = 1000 + index
        self.video_ssrc = 2000 + index
        self.sent: list[bytes] = []
        self.to_bridge = bytes([index + 1]) * 30
        self.from_bridge = bytes([index + 101]) * 30
        self.receiver_side = SrtpContext("AES_CM_128_HMAC_SHA1_80", self.to_bridge, self.from_bridge, PROFILE)
        self.seq = 0

    def sources(self) -> MediaSources:
        return MediaSources(
            audio_ssrcs=[self.audio_ssrc],
            video_ssrcs=[self.video_ssrc],
            payload_types=[OPUS, VP8],
            rtp_hdrexts=[RtpHeaderExtension(LEVEL_EXT, AUDIO_LEVEL_URI)],
        )

    def audio(self, level: int) -> bytes:
        self.seq += 1
        header = struct.pack("!BBHII", 0x90, 111, self.seq, self.seq * 960, self.audio_ssrc)
        return (
            header + struct.pack("!HH", 0xBEDE, 1) + bytes([(LEVEL_EXT << 4), level, 0, 0]) + b"\xfc\xff\xfe"
        )

    def video(self) -> bytes:
        return (
            struct.pack("!BBHII", 0x80, 0x80 | 100, self.seq, self.seq * 3000, self.video_ssrc)
            + b"\x90\x80\x01"
        )

    def received_ssrcs(self, since: int = 0) -> set[int]:
        ssrcs = set()
        for datagram in self.sent[since:]:
            if 192 <= datagram[1] <= 223:
                continue  # RTCP
            ssrcs.add(struct.unpack_from("!I", self.receiver_side.unprotect(datagram), 8)[0])
        return ssrcs


def test_six_participants_loudest_is_dominant_and_last_n_two_forwards_the_two_speakers() -> None:
    clock = Clock()
    messages: list[tuple[str, dict]] = []
    policy = ConferenceIntelligencePolicy(
        lambda ep, m: messages.append((ep, bridge_channel.to_dict(m))), request_keyframe=request_keyframe, clock=clock
    )
    forwarder = ConferenceForwarder("conf", policy)
    people = {name: Participant(i, name) for i, name in enumerate("abcdef")}
    for p in people.values():
        forwarder.add_endpoint(p.name, p.sent.append)
        forwarder.set_sources(p.name, p.sources(), clock.now)
        policy.set_colibri_last_n(p.name, 2)
    for p in people.values():
        forwarder.set_srtp(
            p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )

    def talk(levels: dict[str, int], seconds: float) -> None:
        for _ in range(round(seconds / 0.02)):
            clock.now += 0.02
            for p in people.values():
                forwarder.handle_rtp(forwarder.endpoints[p.name], p.audio(levels.get(p.name, 127)), clock.now)
                forwarder.handle_rtp(forwarder.endpoints[p.name], p.video(), clock.now)

    talk({"e": 40}, 3.0)  # e speaks first
    talk({"c": 10, "e": 60, "a": 70}, 4.0)  # then c, loudest, for longer; others murmur
    marks = {name: len(p.sent) for name, p in people.items()}
    talk({"c": 10, "e": 60, "a": 70}, 1.0)

    speaker_events = [
        (ep, m) for ep, m in messages if m["colibriClass"] == "DominantSpeakerEndpointChangeEvent"
    ]
    assert {ep for ep, _ in speaker_events} == set(people)  # everyone is told
    last = speaker_events[-1][1]
    assert last == {
        "colibriClass": "DominantSpeakerEndpointChangeEvent",
        "dominantSpeakerEndpoint": "c",
        "previousSpeakers": ["e"],
        "silence": False,
    }
    assert [m["dominantSpeakerEndpoint"] for ep, m in speaker_events if ep == "a"] == ["e", "c"]
    for name, p in people.items():
        forwarded_messages = [
            m for ep, m in messages if ep == name and m["colibriClass"] == "ForwardedSources"
        ]
        video = {other.video_ssrc for other in people.values() if other.name != name}
        got = p.received_ssrcs(marks[name])
        expected_speakers = {"c": ["e", "a"], "e": ["c", "a"]}.get(name, ["c", "e"])
        assert forwarded_messages[-1]["forwardedSources"] == [f"{s}-v0" for s in expected_speakers]
        assert got & video == {people[s].video_ssrc for s in expected_speakers}
        assert got - video == {other.audio_ssrc for other in people.values() if other.name != name}

    # the floor is announced on change only: a channel that (re)opens now is told who holds it
    messages.clear()
    policy.on_channel_open("f")
    assert messages == [("f", last)]


def test_bad_and_unrelated_messages_are_ignored() -> None:
    policy = ConferenceIntelligencePolicy(clock=Clock())
    policy.on_endpoint_added("a")
    steer(policy, "a", {"colibriClass": "LastNChangedEvent", "lastN": "many"})
    steer(policy, "a", {"colibriClass": "EndpointMessage", "to": "", "msgPayload": {}})
    steer(policy, "a", {"colibriClass": "LastNChangedEvent", "lastN": 1})
    assert policy.video.settings("a").last_n == 1


def test_mixer_channel_gets_one_mixed_stream_of_the_others() -> None:
    clock = Clock()
    policy = ConferenceIntelligencePolicy(request_keyframe=request_keyframe, clock=clock)
    forwarder = ConferenceForwarder("conf", policy)
    people = {name: Participant(i, name) for i, name in enumerate("abm")}
    for p in people.values():
        forwarder.add_endpoint(p.name, p.sent.append)
        forwarder.set_sources(p.name, p.sources(), clock.now)
    for p in people.values():
        forwarder.set_srtp(
            p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )
    mixed_ssrc = policy.set_audio_mixing("m", True)
    assert mixed_ssrc is not None
    encoders = {name: OpusEncoder() for name in people}
    tones = {"a": tone_frames(440.0, 40), "b": tone_frames(880.0, 40), "m": tone_frames(660.0, 40)}
    marks = {name: len(p.sent) for name, p in people.items()}
    for i in range(40):
        clock.now += 0.02
        for name, p in people.items():
            opus = encoders[name].encode(tones[name][i])
            header = struct.pack("!BBHII", 0x80, 111, i, i * 960, p.audio_ssrc)
            forwarder.handle_rtp(forwarder.endpoints[name], header + opus, clock.now)
        policy.mix_once()
    got = [
        people["m"].receiver_side.unprotect(d) for d in people["m"].sent[marks["m"] :] if not 191 < d[1] < 224
    ]
    assert {struct.unpack_from("!I", d, 8)[0] for d in got} == {mixed_ssrc}  # no individual streams
    pcm = decode_all([d[12:] for d in got])[-20 * 960 :]
    assert energy_at(pcm, 440.0) > 50 * energy_at(pcm, 660.0)
    assert energy_at(pcm, 880.0) > 50 * energy_at(pcm, 660.0)
    # translator channels still get every other endpoint's own stream, and no mix
    a_got = people["a"].received_ssrcs(marks["a"])
    assert a_got == {people["b"].audio_ssrc, people["m"].audio_ssrc}
    assert policy.set_audio_mixing("m", False) is None


@pytest.mark.parametrize(
    ("fields", "wanted"),
    [
        ({"all": True}, {"a-a0", "b-a0", "c-a0"}),
        ({}, {"a-a0", "b-a0", "c-a0"}),
        ({"include": ["b-a0"]}, {"b-a0"}),
        ({"include": []}, set()),
        ({"exclude": ["a-a0"]}, {"b-a0", "c-a0"}),
        ({"include": ["a-a0", "b-a0"], "exclude": ["a-a0"]}, {"b-a0"}),
    ],
)
def test_audio_subscription(fields: dict, wanted: set[str]) -> None:
    message = parse({"colibriClass": "ReceiverAudioSubscription", **fields})
    assert isinstance(message, ReceiverAudioSubscription)
    subscription = AudioSubscription.of(message)
    assert {s for s in ("a-a0", "b-a0", "c-a0") if subscription.wants(s)} == wanted


def test_the_policy_starts_no_thread_and_tells_its_owner_when_mixing_starts_and_stops() -> None:
    """The mixing clock belongs to the policies registry: the policy only says when it needs one."""
    threads_before = {t.ident for t in threading.enumerate()}
    policy = ConferenceIntelligencePolicy(clock=Clock())
    told: list[object] = []
    policy.on_mixing = told.append
    for ep in ("a", "b", "c"):
        policy.on_endpoint_added(ep)
    first = policy.set_audio_mixing("a", True)
    assert policy.set_audio_mixing("a", True) == first  # idempotent: one stream, one report
    policy.set_audio_mixing("b", True)
    assert told == [policy.mixer] and policy.mixer is not None
    policy.set_audio_mixing("a", False)
    assert told == [policy.mixer]  # b still mixes
    policy.on_endpoint_removed("b")
    assert told == [policy.mixer, None]
    assert {t.ident for t in threading.enumerate()} <= threads_before


def test_receiver_audio_subscription_filters_the_audio_it_gets() -> None:
    clock = Clock()
    policy = ConferenceIntelligencePolicy(request_keyframe=request_keyframe, clock=clock)
    forwarder = ConferenceForwarder("conf", policy)
    people = {name: Participant(i, name) for i, name in enumerate("abc")}
    for p in people.values():
        forwarder.add_endpoint(p.name, p.sent.append)
        forwarder.set_sources(p.name, p.sources(), clock.now)
    for p in people.values():
        forwarder.set_srtp(
            p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )
    steer(policy, "a", {"colibriClass": "ReceiverAudioSubscription", "include": ["c-a0"]})
    mark = len(people["a"].sent)
    for _ in range(5):
        clock.now += 0.02
        for p in people.values():
            forwarder.handle_rtp(forwarder.endpoints[p.name], p.audio(100), clock.now)
    assert people["a"].received_ssrcs(mark) == {people["c"].audio_ssrc}
    steer(policy, "a", {"colibriClass": "ReceiverAudioSubscription", "all": True})
    mark = len(people["a"].sent)
    clock.now += 0.02
    for p in people.values():
        forwarder.handle_rtp(forwarder.endpoints[p.name], p.audio(100), clock.now)
    assert people["a"].received_ssrcs(mark) == {people["b"].audio_ssrc, people["c"].audio_ssrc}


def vp8_packet(
    seq: int,
    ts: int,
    ssrc: int,
    picture_id: int,
    tl0picidx: int,
    key: tuple[int, int] | None,
    size: int = 0,
    start: bool = True,
    marker: bool = True,
) -> bytes:
    """A VP8 packet: descriptor with a 15-bit picture id, TL0PICIDX and TID 0, then (on the
    frame's first packet) a key-frame header of ``key`` = (width, height) or a delta-frame byte;
    zeros up to ``size`` bytes of payload."""
    first = 0x90 if start else 0x80
    descriptor = bytes([first, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0picidx, 0x00])
    if not start:
        body = b""
    elif key is None:
        body = b"\x01\x00\x00"
    else:
        body = b"\x10\x00\x00\x9d\x01\x2a" + struct.pack("<HH", *key)
    payload = descriptor + body
    payload += bytes(max(0, size - len(payload)))
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 100, seq, ts, ssrc) + payload


SIMULCAST_SSRCS = [5001, 5002, 5003]
SIMULCAST_SIZES = [(320, 180), (640, 360), (1280, 720)]


def simulcast_call(
    clock: Clock, messages: list[tuple[str, dict]]
) -> tuple[ConferenceIntelligencePolicy, ConferenceForwarder, Participant, Participant]:
    """Sender ``s`` with three VP8 layers (``SIMULCAST_SSRCS``, SIM group) and receiver ``r``,
    both connected; bridge-channel messages go to ``messages``."""
    policy = ConferenceIntelligencePolicy(
        lambda ep, m: messages.append((ep, bridge_channel.to_dict(m))), request_keyframe=request_keyframe, clock=clock
    )
    forwarder = ConferenceForwarder("conf", policy)
    sender, receiver = Participant(0, "s"), Participant(1, "r")
    ssrcs = SIMULCAST_SSRCS
    forwarder.add_endpoint("s", sender.sent.append)
    forwarder.add_endpoint("r", receiver.sent.append)
    forwarder.set_sources(
        "s", MediaSources(video_ssrcs=ssrcs, ssrc_groups=[("SIM", ssrcs)], payload_types=[VP8]), clock.now
    )
    forwarder.set_sources("r", MediaSources(payload_types=[VP8]), clock.now)
    for p in (sender, receiver):
        forwarder.set_srtp(
            p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )
    return policy, forwarder, sender, receiver


def send_simulcast_frame(
    forwarder: ConferenceForwarder, frame: int, seqs: list[int], frame_bytes: list[int], now: float
) -> None:
    """Frame ``frame`` of the three ``SIMULCAST_SSRCS`` layers from sender ``s``: ``frame_bytes``
    of each, in packets of up to 1100 bytes, a key frame every 15 frames (staggered per layer);
    ``seqs`` holds each layer's next sequence number and is advanced."""
    for layer, ssrc in enumerate(SIMULCAST_SSRCS):
        key = SIMULCAST_SIZES[layer] if (frame + 3 * layer) % 15 == 0 else None
        count = -(-frame_bytes[layer] // 1100)
        for i in range(count):
            packet = vp8_packet(
                seqs[layer],
                frame * 3000,
                ssrc,
                frame & 0x7FFF,
                frame & 0xFF,
                key,
                size=frame_bytes[layer] // count,
                start=i == 0,
                marker=i == count - 1,
            )
            forwarder.handle_rtp(forwarder.endpoints["s"], packet, now)
            seqs[layer] = (seqs[layer] + 1) & 0xFFFF


def test_vp8_picture_ids_stay_continuous_for_a_receiver_across_layer_switches() -> None:
    """Each layer numbers its own pictures; the receiver sees one run of picture ids and
    TL0PICIDX (+1 a frame) while the bridge switches it 180p -> 720p -> 360p."""
    clock = Clock()
    policy, forwarder, _, receiver = simulcast_call(clock, [])
    ssrcs = SIMULCAST_SSRCS
    sizes = SIMULCAST_SIZES
    # the layers' counters start far apart, 15-bit picture ids wrap on layer 2, TL0PICIDX on 1
    picture_ids = [100, 20_000, 32_760]
    tl0s = [7, 250, 90]
    seqs = [65_530, 1000, 30_000]
    frame = 0

    def send(frames: int) -> None:
        nonlocal frame
        for _ in range(frames):
            clock.now += 1 / 30
            for layer, ssrc in enumerate(ssrcs):
                key = sizes[layer] if (frame + 3 * layer) % 10 == 0 else None
                packet = vp8_packet(
                    seqs[layer], frame * 3000 + layer, ssrc, picture_ids[layer], tl0s[layer], key
                )
                forwarder.handle_rtp(forwarder.endpoints["s"], packet, clock.now)
                seqs[layer] = (seqs[layer] + 1) & 0xFFFF
                picture_ids[layer] = (picture_ids[layer] + 1) & 0x7FFF
                tl0s[layer] = (tl0s[layer] + 1) & 0xFF
            frame += 1

    def constrain(height: int) -> None:
        steer(
            policy,
            "r",
            {"colibriClass": "ReceiverVideoConstraints", "defaultConstraints": {"maxHeight": height}},
        )

    constrain(180)
    send(25)
    constrain(720)
    send(25)
    constrain(360)
    send(25)

    got = [receiver.receiver_side.unprotect(d) for d in receiver.sent if not 192 <= d[1] <= 223]
    assert {struct.unpack_from("!I", p, 8)[0] for p in got} == {5001}
    keyframe_widths = [struct.unpack_from("<H", p, 24)[0] for p in got if p[18] & 0x01 == 0]
    assert {320, 1280, 640} <= set(keyframe_widths), keyframe_widths
    assert keyframe_widths.index(1280) < len(keyframe_widths) - 1 - keyframe_widths[::-1].index(640)
    seq_out = [struct.unpack_from("!H", p, 2)[0] for p in got]
    pid_out = [((p[14] & 0x7F) << 8) | p[15] for p in got]
    tl0_out = [p[16] for p in got]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seq_out))
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(pid_out)), pid_out
    assert all((b - a) & 0xFF == 1 for a, b in itertools.pairwise(tl0_out)), tl0_out
    assert all(p[14] & 0x80 for p in got)  # still the 15-bit form

    # a NACK for packets forwarded since the last switch gets them exactly as forwarded
    # (rewritten sequence number, timestamp and picture ids)
    lost = seq_out[-3:]
    nack = rtcp.build_nack(12345, 5001, lost)
    forwarder.handle_rtcp(forwarder.endpoints["r"], nack, clock.now + 0.2)
    # (SRTP is deterministic for one packet index: the same bytes on the wire as the first time)
    wire = [d for d in receiver.sent if not 192 <= d[1] <= 223]
    assert wire[-3:] == wire[-6:-3] and len(wire) == len(got) + 3


def test_a_receivers_remb_lowers_its_layer_and_is_announced_as_connection_stats() -> None:
    """Layers of about 150 kbps, 500 kbps and 1.2 Mbps: a receiver without bandwidth feedback gets
    the top one; once it reports 600 kbps (REMB) it gets the middle one -- the highest that fits
    -- and is told the estimate (``ConnectionStats``)."""
    clock = Clock()
    messages: list[tuple[str, dict]] = []
    policy, forwarder, _, receiver = simulcast_call(clock, messages)
    frame_bytes = [625, 2083, 5000]  # at 30 fps
    seqs = [0, 0, 0]
    frame = 0

    def send(seconds: float) -> None:
        nonlocal frame
        for _ in range(round(seconds * 30)):
            clock.now += 1 / 30
            send_simulcast_frame(forwarder, frame, seqs, frame_bytes, clock.now)
            frame += 1

    def widths_received(since: int) -> list[int]:
        got = [receiver.receiver_side.unprotect(d) for d in receiver.sent[since:] if not 192 <= d[1] <= 223]
        return [struct.unpack_from("<H", p, 24)[0] for p in got if p[12] & 0x10 and p[18] & 0x01 == 0]

    send(3.0)
    assert policy.video.allocation("r").layers == {"s-v0": 2}
    assert widths_received(0)[-1] == 1280
    assert not [m for ep, m in messages if m["colibriClass"] == "ConnectionStats"]

    forwarder.handle_rtcp(forwarder.endpoints["r"], rtcp.build_remb(77, 600_000, [5001]), clock.now)
    mark = len(receiver.sent)
    send(3.0)
    assert policy.video.allocation("r").layers == {"s-v0": 1}
    widths = widths_received(mark)  # a 1280 key frame may come before the next allocation tick
    assert 640 in widths and set(widths[widths.index(640) :]) == {640}, widths
    stats = [m for ep, m in messages if ep == "r" and m["colibriClass"] == "ConnectionStats"]
    assert stats and abs(stats[-1]["estimatedDownlinkBandwidth"] - 600_000) < 600_000 * 0.01


def test_bandwidth_feedback_follows_the_streams_a_receiver_gets_now() -> None:
    """The REMB and loss a receiver reports are read from a subscription it is being sent now:
    when the sender it first got video from leaves, its REMB for another stream still counts."""
    clock = Clock()
    messages: list[tuple[str, dict]] = []
    policy = ConferenceIntelligencePolicy(
        lambda ep, m: messages.append((ep, bridge_channel.to_dict(m))), request_keyframe=request_keyframe, clock=clock
    )
    forwarder = ConferenceForwarder("conf", policy)
    people = {name: Participant(i, name) for i, name in enumerate("abr")}
    for p in people.values():
        forwarder.add_endpoint(p.name, p.sent.append)
        forwarder.set_sources(p.name, p.sources(), clock.now)
        forwarder.set_srtp(
            p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )

    def send(names: str, seconds: float) -> None:
        for _ in range(round(seconds / 0.05)):
            clock.now += 0.05
            for name in names:
                person, endpoint = people[name], forwarder.endpoints[name]
                forwarder.handle_rtp(endpoint, person.audio(127), clock.now)  # moves the sequence on
                forwarder.handle_rtp(endpoint, person.video(), clock.now)

    send("ab", 1.5)
    assert people["r"].received_ssrcs() >= {people["a"].video_ssrc, people["b"].video_ssrc}
    forwarder.remove_endpoint("a")
    send("b", 0.5)
    forwarder.handle_rtcp(
        forwarder.endpoints["r"], rtcp.build_remb(77, 400_000, [people["b"].video_ssrc]), clock.now
    )
    send("b", 2.0)
    stats = [m for ep, m in messages if ep == "r" and m["colibriClass"] == "ConnectionStats"]
    assert stats and stats[-1]["estimatedDownlinkBandwidth"] == 400_000


def test_receivers_that_join_leave_or_pause_mid_stream_get_video_accordingly() -> None:
    """What a stream's packets go to follows the forwarder's subscriptions and the policy's
    routes as both change while the stream flows: a receiver that joins late gets it, one that
    leaves stops, one that asks for no video (lastN 0) stops and gets it back, continuing its
    sequence numbers."""
    clock = Clock()
    policy = ConferenceIntelligencePolicy(request_keyframe=request_keyframe, clock=clock)
    forwarder = ConferenceForwarder("conf", policy)
    people = {name: Participant(i, name) for i, name in enumerate("abcd")}

    def join(name: str) -> None:
        p = people[name]
        forwarder.add_endpoint(name, p.sent.append)
        forwarder.set_sources(name, p.sources(), clock.now)
        forwarder.set_srtp(
            name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )

    def send(seconds: float) -> dict[str, int]:
        marks = {name: len(p.sent) for name, p in people.items()}
        for _ in range(round(seconds / 0.05)):
            clock.now += 0.05
            endpoint = forwarder.endpoints["a"]
            forwarder.handle_rtp(endpoint, people["a"].audio(127), clock.now)
            forwarder.handle_rtp(endpoint, people["a"].video(), clock.now)
        return marks

    # what each one got, SRTP undone once and in order (None for RTCP)
    decrypted: dict[str, list[bytes | None]] = {name: [] for name in people}

    def video_seqs(name: str, since: int) -> list[int]:
        p, plain = people[name], decrypted[name]
        plain.extend(
            None if 192 <= d[1] <= 223 else p.receiver_side.unprotect(d) for d in p.sent[len(plain) :]
        )
        video = struct.pack("!I", people["a"].video_ssrc)
        return [struct.unpack_from("!H", x, 2)[0] for x in plain[since:] if x and x[8:12] == video]

    for name in "abc":
        join(name)
    marks = send(1.0)
    assert video_seqs("b", marks["b"]) and video_seqs("c", marks["c"])
    join("d")
    marks = send(1.0)
    assert len(video_seqs("d", marks["d"])) >= 15
    forwarder.remove_endpoint("c")
    marks = send(1.0)
    assert len(video_seqs("b", marks["b"])) == len(video_seqs("d", marks["d"])) == 20
    b_before = video_seqs("b", 0)
    steer(policy, "b", {"colibriClass": "LastNChangedEvent", "lastN": 0})
    marks = send(1.0)
    assert video_seqs("b", marks["b"]) == [] and len(video_seqs("d", marks["d"])) == 20
    steer(policy, "b", {"colibriClass": "LastNChangedEvent", "lastN": -1})
    marks = send(1.0)
    resumed = video_seqs("b", marks["b"])
    assert len(resumed) == 20
    assert resumed[0] == (b_before[-1] + 1) & 0xFFFF  # no gap in what b sees
    assert all((y - x) & 0xFFFF == 1 for x, y in itertools.pairwise(resumed))


def camera_and_screen(base: int) -> MediaSources:
    """A simulcast camera (``-v0``) and a one-layer screen share with RTX (``-v1``)."""
    return MediaSources(
        video_ssrcs=[base, base + 1, base + 2, base + 50, base + 51],
        ssrc_groups=[("SIM", [base, base + 1, base + 2]), ("FID", [base + 50, base + 51])],
    )


def test_a_screen_share_is_on_stage_first_in_high_resolution_and_outside_last_n() -> None:
    policy = ConferenceVideoPolicy()
    for i, ep in enumerate("abcd"):
        policy.add_endpoint(ep, colibri_last_n=1)
        policy.set_sources(
            ep, video_sources(ep, camera_and_screen(100 * (i + 1)) if ep == "d" else simulcast(100 * (i + 1)))
        )
    policy.set_speaker_order(["a", "b", "c", "d"])
    for ep in "abc":  # a thumbnail layout: 180 lines for everything by default
        steer(policy, ep, constraints(defaultConstraints={"maxHeight": 180}))
    policy.recompute()
    assert policy.allocation("b").forwarded == ["a-v0"]  # d's second source is a camera so far
    assert not policy.set_video_type("a", "d-v1", "desktop")  # not a's source: refused
    assert not policy.set_video_type("d", "d-v1x", "desktop")
    assert policy.set_video_type("d", "d-v1", "desktop")
    assert not policy.set_video_type("d", "d-v1", "desktop")  # no change
    update = policy.recompute()
    for receiver in "abc":
        allocation = policy.allocation(receiver)
        # first, beyond last-N 1, and not held to the default 180 lines
        assert allocation.forwarded[0] == "d-v1"
        assert allocation.layers["d-v1"] == 0 and len(allocation.forwarded) == 2
    assert forwarded(update.messages, "b") == ["d-v1", "a-v0"]
    assert ("d", SenderSourceConstraints(source_name="d-v1", max_height=UNLIMITED)) in update.messages
    assert set(policy.routes[450]) == {"a", "b", "c"}
    # a receiver that names the source keeps its say; audio-only (default 0) gets no screen either
    steer(policy, "b", constraints(constraints={"d-v1": {"maxHeight": 0}}))
    steer(policy, "c", constraints(lastN=0, defaultConstraints={"maxHeight": 0}, constraints={}))
    policy.recompute()
    assert "d-v1" not in policy.allocation("b").forwarded
    assert policy.allocation("c").forwarded == []
    # pinned (on stage) sources still come before the screen share
    steer(policy, "a", constraints(onStageSources=["b-v0"]))
    policy.recompute()
    assert policy.allocation("a").forwarded == ["b-v0", "d-v1"]
    # the share stops: back to a camera source, counted by last-N again
    assert policy.set_video_type("d", "d-v1", "camera")
    steer(policy, "a", constraints(onStageSources=[]))
    policy.recompute()
    assert policy.allocation("a").forwarded == ["b-v0"]


def test_source_video_type_message_reaches_the_allocation_and_media_stops_are_announced() -> None:
    clock = Clock()
    messages: list = []
    policy = ConferenceIntelligencePolicy(
        lambda ep, m: messages.append((ep, bridge_channel.to_dict(m))), request_keyframe=request_keyframe, clock=clock
    )
    for ep in "ab":
        policy.on_endpoint_added(ep)
    steer(
        policy, "a", {"colibriClass": "SourceVideoTypeMessage", "sourceName": "a-v1", "videoType": "desktop"}
    )
    steer(
        policy, "a", {"colibriClass": "SourceVideoTypeMessage", "sourceName": "b-v1", "videoType": "desktop"}
    )
    assert policy.video.is_desktop("a-v1") and not policy.video.is_desktop("b-v1")
    policy.connectivity.on_media("a", clock())
    policy.connectivity.on_media("b", clock())
    clock.now += 4.0
    policy.connectivity.on_media("a", clock())
    policy._tick(clock())
    status = [
        (ep, m) for ep, m in messages if m.get("colibriClass") == "EndpointConnectivityStatusChangeEvent"
    ]
    assert status == [
        ("a", {"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "b", "active": "false"})
    ]
    policy.connectivity.on_media("b", clock())
    policy._tick(clock() + 1)
    status = [
        (ep, m) for ep, m in messages if m.get("colibriClass") == "EndpointConnectivityStatusChangeEvent"
    ]
    assert status[-1] == (
        "a",
        {"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "b", "active": "true"},
    )


def test_a_channel_that_opens_during_an_interruption_is_told_of_it() -> None:
    clock = Clock()
    messages: list = []
    policy = ConferenceIntelligencePolicy(
        lambda ep, m: messages.append((ep, bridge_channel.to_dict(m))), request_keyframe=request_keyframe, clock=clock
    )
    for ep in "ab":
        policy.on_endpoint_added(ep)
        policy.connectivity.on_media(ep, clock())
    clock.now += 4.0
    policy.connectivity.on_media("a", clock())
    policy._tick(clock())  # b's media stopped: a is told (a change)
    policy.on_endpoint_added("late")
    policy.connectivity.on_media("late", clock())
    messages.clear()
    policy.on_channel_open("late")
    assert messages == [
        (
            "late",
            {"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "b", "active": "false"},
        )
    ]
    messages.clear()
    policy.on_channel_open("b")  # b itself (reconnecting) is not told about itself
    assert messages == []
    policy.connectivity.on_media("b", clock())
    policy._tick(clock() + 1)
    messages.clear()
    policy.on_channel_open("late")  # flowing again: nothing to tell
    assert messages == []


def test_a_receivers_transport_cc_feedback_drives_its_layer_when_its_link_is_limited() -> None:
    """With the send-side estimate on, the bridge numbers what it forwards to the receiver; the
    test plays a 400 kbps bottleneck between them (a queue: arrival times drift further behind
    the send times while the bridge sends more) and answers with transport-cc feedback. The
    delay trend makes the estimate fall and the receiver goes down from the top layer; its
    estimate comes from transport-cc, not REMB (it sends none)."""
    from services.bridge.media.packets import twcc

    clock = Clock()
    messages: list[tuple[str, dict]] = []
    policy = ConferenceIntelligencePolicy(
        lambda ep, m: messages.append((ep, bridge_channel.to_dict(m))), request_keyframe=request_keyframe, clock=clock
    )
    forwarder = ConferenceForwarder("conf", policy, send_side_bwe=True)
    sender, receiver = Participant(0, "s"), Participant(1, "r")
    ssrcs = SIMULCAST_SSRCS
    ext = [RtpHeaderExtension(5, twcc.URI)]
    forwarder.add_endpoint("s", sender.sent.append)
    forwarder.add_endpoint("r", receiver.sent.append)
    forwarder.set_sources(
        "s",
        MediaSources(video_ssrcs=ssrcs, ssrc_groups=[("SIM", ssrcs)], payload_types=[VP8], rtp_hdrexts=ext),
        clock.now,
    )
    forwarder.set_sources("r", MediaSources(payload_types=[VP8], rtp_hdrexts=ext), clock.now)
    for p in (sender, receiver):
        forwarder.set_srtp(
            p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", p.from_bridge, p.to_bridge, PROFILE), clock.now
        )
    frame_bytes = [625, 2083, 5000]  # ~150 kbps, 500 kbps, 1.2 Mbps at 30 fps
    seqs = [0, 0, 0]
    state = {"frame": 0, "tseq": 0, "free_at": 0.0, "read": 0, "next_feedback": 0.1}
    arrivals: dict[int, float] = {}

    def send(seconds: float, capacity_bps: float) -> None:
        for _ in range(round(seconds * 30)):
            clock.now += 1 / 30
            frame = state["frame"]
            for layer, ssrc in enumerate(ssrcs):
                key = SIMULCAST_SIZES[layer] if (frame + 3 * layer) % 15 == 0 else None
                count = -(-frame_bytes[layer] // 1100)
                for i in range(count):
                    packet = vp8_packet(seqs[layer], frame * 3000, ssrc, frame & 0x7FFF, frame & 0xFF, key,
                                        size=frame_bytes[layer] // count, start=i == 0, marker=i == count - 1)  # fmt: skip
                    tseq = int(state["tseq"]) & 0xFFFF
                    state["tseq"] += 1
                    packet = bytes([packet[0] | 0x10]) + packet[1:12] + bytes([0xBE, 0xDE, 0, 1, 0x51, tseq >> 8, tseq & 0xFF, 0]) + packet[12:]  # fmt: skip
                    forwarder.handle_rtp(forwarder.endpoints["s"], packet, clock.now)
                    seqs[layer] = (seqs[layer] + 1) & 0xFFFF
            state["frame"] = frame + 1
            # the bottleneck: what the bridge sent the receiver, queued at capacity_bps
            for datagram in receiver.sent[int(state["read"]) :]:
                if 192 <= datagram[1] <= 223:
                    continue
                got = receiver.receiver_side.unprotect(datagram)
                _, value = twcc.find_sequence(got, 5)
                assert value >= 0
                start = max(clock.now, state["free_at"])
                state["free_at"] = start + len(datagram) * 8 / capacity_bps
                arrivals[(got[value] << 8) | got[value + 1]] = state["free_at"] + 0.02
            state["read"] = len(receiver.sent)
            if clock.now >= state["next_feedback"] and arrivals:
                state["next_feedback"] = clock.now + 0.1
                base = min(arrivals)
                ref = int(arrivals[base] * 1e6) // 64_000
                last = ref * 64_000
                statuses: list[int | None] = []
                for seq in range(base, max(arrivals) + 1):
                    ticks = round((arrivals[seq] * 1e6 - last) / 250)
                    last += ticks * 250
                    statuses.append(ticks)
                feedback = twcc.build_feedback(77, 0, base, ref, 0, statuses)
                forwarder.handle_rtcp(forwarder.endpoints["r"], feedback, clock.now)
                arrivals.clear()

    send(4.0, 20_000_000)  # a fast link: a higher layer and a growing estimate
    media = forwarder.endpoints["r"]
    assert media.send_side is not None and media.send_side.feedbacks > 10
    assert policy.estimators["r"].source == "transport-cc"
    assert policy.video.allocation("r").layers["s-v0"] >= 1 and media.send_side.estimate > 800_000
    send(8.0, 400_000)
    assert policy.video.allocation("r").layers["s-v0"] == 0
    assert media.send_side.estimate < 500_000
    assert media.remb_bps is None
    stats = [m for ep, m in messages if ep == "r" and m["colibriClass"] == "ConnectionStats"]
    assert stats and stats[-1]["estimatedDownlinkBandwidth"] < 500_000


def test_an_occupant_whose_transport_never_comes_up_asks_no_sender_for_video() -> None:
    """A receiver that has not sent its constraints is unlimited, so an endpoint whose transport
    never connects (a guest in the room that never answers the focus) made every sender keep its
    top layer for nobody. It counts for the senders' constraints from when its DTLS completes."""
    clock, messages = Clock(), []
    policy, forwarder, _sender, _receiver = simulcast_call(clock, messages)
    seqs = [1, 1000, 30_000]
    for frame in range(30):  # the policy learns the source from its packets
        clock.now += 1 / 30
        send_simulcast_frame(forwarder, frame, seqs, [1200, 3000, 9000], clock.now)
    steer(policy, "r", constraints(defaultConstraints={"maxHeight": 180}))

    def sender_max() -> int:
        found = [m["maxHeight"] for ep, m in messages if ep == "s" and m["colibriClass"] == "SenderSourceConstraints"]
        return int(found[-1])

    assert sender_max() == 180  # r, connected, needs the low layer only
    silent = Participant(2, "g")
    forwarder.add_endpoint("g", silent.sent.append)
    forwarder.set_sources("g", MediaSources(payload_types=[VP8]), clock.now)
    steer(policy, "r", constraints(defaultConstraints={"maxHeight": 180}))  # any recomputation
    assert sender_max() == 180  # g, not connected, asks for nothing
    forwarder.set_srtp(
        "g", SrtpContext("AES_CM_128_HMAC_SHA1_80", silent.from_bridge, silent.to_bridge, PROFILE), clock.now
    )
    assert sender_max() == UNLIMITED  # connected, no constraints sent yet: unlimited, as before
    forwarder.set_srtp("g", None, clock.now)
    assert sender_max() == 180

"""A 20-party meeting through the bridge's forwarder: last-N 5 and simulcast vs forwarding everything.

    .venv/bin/python -m bench.bridge_lastn [--parties 20] [--last-n 5] [--seconds 10]

Runs Parley's real forwarding core (``ConferenceForwarder``: header reads, packet cache, policy,
header rewrite, SRTP protect) in this process on virtual time, with no sockets: every endpoint's
``transmit`` only counts bytes. Each party sends Opus-sized audio (50 pps, RFC 6464 level) and
simulcast VP8 (pre-encoded with libvpx: 320x180, 640x360 and 1280x720 at 15 fps, a key frame
every 2 s and on every PLI). Three parties talk in turn, so the dominant speaker moves.

Scenarios, same traffic:
- ``everything``: the default policy, which forwards every stream (all three layers) to everyone;
- ``top-layer``: no simulcast (each party sends only its 720p layer), the default policy;
- ``last-n``: ``ConferenceIntelligencePolicy`` with Colibri ``last-n`` and receivers in "stage
  view": ``ReceiverVideoConstraints`` with thumbnails at 180p and the dominant speaker on stage at
  720p (re-sent when the dominant speaker changes).

Printed per scenario: incoming and forwarded RTP packets, bytes sent to receivers, CPU time per
forwarded packet and per incoming packet (process CPU spent inside ``handle_rtp``, i.e. policy,
rewrite and SRTP, but no socket calls), and the bandwidth saved against the other two.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pylibsrtp  # noqa: E402

from bench.bridge_peer import encode_vp8  # noqa: E402
from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy  # noqa: E402
from services.bridge.media.forwarding import rtcp_termination  # noqa: E402
from services.bridge.media.forwarding.forwarder import ConferenceForwarder  # noqa: E402
from services.bridge.media.forwarding.policy import ForwardingPolicy  # noqa: E402
from services.bridge.media.forwarding.streams import EndpointMedia, IncomingStream  # noqa: E402
from services.bridge.media.model import MediaSources, PayloadType, RtpHeaderExtension  # noqa: E402
from services.bridge.media.packets.rtp import AUDIO_LEVEL_URI  # noqa: E402
from services.bridge.media.transport.aiortc_adapter import SrtpContext  # noqa: E402
from services.common import bridge_channel  # noqa: E402

FPS = 15
LAYERS = ((320, 180, 150_000), (640, 360, 500_000), (1280, 720, 1_500_000))
LEVEL_EXT = 1
PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
OPUS = PayloadType(111, "opus", 48000, 2)
VP8 = PayloadType(100, "VP8", 90000)


class VirtualClock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Party:
    index: int
    name: str
    audio_ssrc: int
    layer_ssrcs: tuple[int, ...]
    seq: dict[int, int] = field(default_factory=dict)
    frame_index: dict[int, int] = field(default_factory=dict)
    bytes_in: int = 0

    def sources(self, simulcast: bool) -> MediaSources:
        video = list(self.layer_ssrcs) if simulcast else [self.layer_ssrcs[-1]]
        return MediaSources(
            audio_ssrcs=[self.audio_ssrc],
            video_ssrcs=video,
            ssrc_groups=[("SIM", video)] if simulcast else [],
            payload_types=[OPUS, VP8],
            rtp_hdrexts=[RtpHeaderExtension(LEVEL_EXT, AUDIO_LEVEL_URI)],
        )

    def next_seq(self, ssrc: int) -> int:
        seq = self.seq.get(ssrc, self.index * 1000)
        self.seq[ssrc] = (seq + 1) & 0xFFFF
        return seq


@dataclass
class Result:
    name: str
    packets_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    cpu_seconds: float = 0.0
    video_sources_per_receiver: float = 0.0


def run(
    scenario: str,
    parties: int,
    last_n: int,
    seconds: float,
    frames: list[list[list[bytes]]],
) -> Result:
    simulcast = scenario != "top-layer"
    clock = VirtualClock()
    outbox: list[tuple[str, dict]] = []
    keyframe_due: set[int] = set()

    def request_keyframe(stream: IncomingStream, now: float) -> None:
        keyframe_due.add(stream.ssrc)  # the sender answers a PLI with a key frame
        rtcp_termination.request_keyframe(stream, now)

    policy: ForwardingPolicy
    if scenario == "last-n":
        policy = ConferenceIntelligencePolicy(
            lambda ep, m: outbox.append((ep, bridge_channel.to_dict(m))), request_keyframe, clock=clock
        )
    else:
        policy = ForwardingPolicy(request_keyframe=request_keyframe)
    forwarder = ConferenceForwarder("bench", policy, cache_size=512)
    forwarder.request_keyframe = request_keyframe  # type: ignore[method-assign]
    result = Result(scenario)
    people = [
        Party(i, f"p{i:02d}", 0x10000 + i, tuple(0x20000 + 16 * i + k for k in range(len(LAYERS))))
        for i in range(parties)
    ]
    received_video: dict[str, set[int]] = {p.name: set() for p in people}

    def transmit_for(name: str) -> Callable[[bytes], None]:
        def transmit(data: bytes) -> None:
            result.bytes_out += len(data)
            if 127 < data[0] < 192 and not 191 < data[1] < 224:
                result.packets_out += 1
                ssrc = struct.unpack_from("!I", data, 8)[0]
                if ssrc >= 0x20000:
                    received_video[name].add(ssrc)

        return transmit

    endpoints: dict[str, EndpointMedia] = {}
    for p in people:
        endpoints[p.name] = forwarder.add_endpoint(p.name, transmit_for(p.name))
        forwarder.set_sources(p.name, p.sources(simulcast), clock.now)
        if isinstance(policy, ConferenceIntelligencePolicy):
            policy.set_colibri_last_n(p.name, last_n)
    for p in people:
        key = bytes([p.index + 1]) * 30
        forwarder.set_srtp(p.name, SrtpContext("AES_CM_128_HMAC_SHA1_80", key, key, PROFILE), clock.now)

    on_stage: str | None = None

    def stage_view(dominant: str) -> None:
        assert isinstance(policy, ConferenceIntelligencePolicy)
        for p in people:
            policy.on_message(
                p.name,
                bridge_channel.parse(
                    {
                        "colibriClass": "ReceiverVideoConstraints",
                        "lastN": last_n,
                        "onStageSources": [f"{dominant}-v0"],
                        "defaultConstraints": {"maxHeight": 180},
                        "constraints": {f"{dominant}-v0": {"maxHeight": 720}},
                    }
                ),
            )

    talkers = people[:3]
    video_layers = range(len(LAYERS)) if simulcast else [len(LAYERS) - 1]
    tick = 0
    ticks = int(seconds / 0.02)
    while tick < ticks:
        clock.now += 0.02
        talker = talkers[(tick * 3 // ticks) % len(talkers)]
        batch: list[tuple[EndpointMedia, bytes]] = []
        for p in people:
            level = 10 if p is talker else 100
            seq = p.next_seq(p.audio_ssrc)
            audio = (
                struct.pack("!BBHII", 0x90, 111, seq, seq * 960 & 0xFFFFFFFF, p.audio_ssrc)
                + struct.pack("!HHBBBB", 0xBEDE, 1, LEVEL_EXT << 4, level, 0, 0)
                + b"\xfc" * 80
            )
            batch.append((endpoints[p.name], audio))
            if tick % (50 // FPS) == 0:  # a video frame on every layer
                for layer in video_layers:
                    ssrc = p.layer_ssrcs[layer]
                    if ssrc in keyframe_due:
                        keyframe_due.discard(ssrc)
                        p.frame_index[ssrc] = 0
                    n = p.frame_index.get(ssrc, 0)
                    p.frame_index[ssrc] = n + 1
                    payloads = frames[layer][n % len(frames[layer])]
                    ts = (n * 90000 // FPS) & 0xFFFFFFFF
                    for i, payload in enumerate(payloads):
                        marker = 0x80 if i == len(payloads) - 1 else 0
                        header = struct.pack("!BBHII", 0x80, marker | 100, p.next_seq(ssrc), ts, ssrc)
                        batch.append((endpoints[p.name], header + payload))
        start = time.process_time()
        for endpoint, packet in batch:
            forwarder.handle_rtp(endpoint, packet, clock.now)
        result.cpu_seconds += time.process_time() - start
        result.packets_in += len(batch)
        if isinstance(policy, ConferenceIntelligencePolicy):
            dominant = policy.speakers.dominant
            if dominant is not None and dominant != on_stage:
                on_stage = dominant
                stage_view(dominant)
        tick += 1
    result.video_sources_per_receiver = sum(len(v) for v in received_video.values()) / parties
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parties", type=int, default=20)
    parser.add_argument("--last-n", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print("pre-encoding VP8 layers (320x180, 640x360, 1280x720 at 15 fps)...", flush=True)
    frames = [encode_vp8(2.0, FPS, bitrate, width, height) for width, height, bitrate in LAYERS]
    rates = [sum(len(p) for frame in layer for p in frame) * 8 / (len(layer) / FPS) / 1e3 for layer in frames]
    print("pre-encoded layer bitrates (kbps): " + ", ".join(f"{r:.0f}" for r in rates))
    results = [
        run(s, args.parties, args.last_n, args.seconds, frames) for s in ("everything", "top-layer", "last-n")
    ]
    print(
        f"\n{args.parties} parties, {args.seconds:.0f} s of media, last-N {args.last_n}, simulcast 180/360/720p"
    )
    print(
        f"{'scenario':<11} {'pkts in':>9} {'pkts out':>10} {'MB out':>8} {'Mbps out':>9} "
        f"{'video SSRCs/rcv':>15} {'us/fwd pkt':>10} {'us/in pkt':>9}"
    )
    for r in results:
        print(
            f"{r.name:<11} {r.packets_in:>9} {r.packets_out:>10} {r.bytes_out / 1e6:>8.1f} "
            f"{r.bytes_out * 8 / args.seconds / 1e6:>9.1f} {r.video_sources_per_receiver:>15.1f} "
            f"{r.cpu_seconds / max(1, r.packets_out) * 1e6:>10.2f} {r.cpu_seconds / max(1, r.packets_in) * 1e6:>9.2f}"
        )
    everything, top, lastn = results
    print(
        f"\nbandwidth saved by last-N + simulcast: {1 - lastn.bytes_out / everything.bytes_out:.1%} vs "
        f"forwarding every layer, {1 - lastn.bytes_out / top.bytes_out:.1%} vs forwarding every "
        f"720p stream"
    )
    print(
        f"CPU for the whole meeting: {lastn.cpu_seconds:.2f} s vs {everything.cpu_seconds:.2f} s "
        f"(every layer) and {top.cpu_seconds:.2f} s (every 720p stream)"
    )


if __name__ == "__main__":
    main()

"""Simulcast through the media engine with the intelligence policy: a sender with three VP8 layers
(320x180, 640x360, 1280x720; real libvpx frames, a key frame every 2 s) and a receiver that
constrains its view with ``ReceiverVideoConstraints``. The receiver decodes what it gets, and
reads the VP8 payload descriptor of every packet it receives (with aiortc's parser) to check that
picture ids and TL0PICIDX run on across the layer switch: each layer numbers its own pictures, far
apart, and the receiver must see one run.

The peers are the light WebRTC peers of the bridge benchmark (``bench/bridge_peer.py``: real ICE,
DTLS and SRTP through aiortc's DTLS/SRTP, no RTCPeerConnection), because aiortc's RTCPeerConnection
cannot send SSRC-signalled simulcast. The process under test is the one of
``test_bridge_intelligence.py`` (media engine + ``ConferenceIntelligencePolicy``).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import av
import httpx
import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor

from bench.bridge_peer import LightPeer, Remote, encode_vp8
from services.bridge.media.packets.rtp import payload_bounds
from services.bridge.media.transport.aiortc_adapter import DtlsCertificate
from tests.integration.harness import ServiceProcess
from tests.integration.test_bridge_intelligence import messages_to, start_bridge

FPS = 15
LAYERS = ((320, 180, 150_000), (640, 360, 500_000), (1280, 720, 1_200_000))
VP8_PT = 100
CONFERENCE = "simulcast"


class Endpoint:
    """A light peer joined to the bridge as ``name`` (the URL the message routes use)."""

    def __init__(self, control_url: str, name: str) -> None:
        self.name = name
        self.endpoint_url = f"{control_url}/conferences/{CONFERENCE}/endpoints/{name}"
        self.peer = LightPeer(DtlsCertificate(), "127.0.0.1")

    async def join(self, http: httpx.AsyncClient, sources: dict[str, Any]) -> None:
        await self.peer.open()
        local = (await http.post(self.endpoint_url)).raise_for_status().json()
        transport = {
            "ufrag": self.peer.ufrag,
            "pwd": self.peer.pwd,
            "fingerprints": [{"hash": "sha-256", "fingerprint": self.peer.fingerprint, "setup": "active"}],
        }
        (await http.put(f"{self.endpoint_url}/transport", json=transport)).raise_for_status()
        (await http.put(f"{self.endpoint_url}/sources", json=sources)).raise_for_status()
        candidate = local["candidates"][0]
        fingerprints = [(f["hash"], f["fingerprint"]) for f in local["fingerprints"]]
        await self.peer.connect(
            Remote(local["ufrag"], local["pwd"], fingerprints, (candidate["ip"], candidate["port"]), "client")
        )

    async def say(self, http: httpx.AsyncClient, message: dict[str, Any]) -> None:
        (await http.post(f"{self.endpoint_url}/messages", json=message)).raise_for_status()


# each layer's own picture-id and TL0PICIDX counters, far apart (and about to wrap on layer 2)
FIRST_PICTURE_IDS = (100, 20_000, 32_700)
FIRST_TL0PICIDX = (5, 128, 250)


def renumbered(payload: bytes, picture_id: int, tl0picidx: int) -> bytes:
    """``payload`` with its VP8 descriptor replaced by one carrying a 15-bit ``picture_id``,
    ``tl0picidx`` and temporal layer 0, as Chrome sends simulcast."""
    descriptor, rest = VpxPayloadDescriptor.parse(payload)
    ours = VpxPayloadDescriptor(
        descriptor.partition_start, descriptor.partition_id, picture_id, tl0picidx, (0, 0)
    )
    return bytes(ours) + rest


async def send_simulcast(peer: LightPeer, ssrcs: list[int], frames: list[list[list[bytes]]]) -> None:
    """All three layers, frame by frame, in real time, like a browser sending simulcast."""
    seqs = [secrets.randbits(16) for _ in ssrcs]
    start = time.monotonic()
    n = 0
    while True:
        for layer, ssrc in enumerate(ssrcs):
            payloads = frames[layer][n % len(frames[layer])]
            ts = (n * 90000 // FPS + 1000 * layer) & 0xFFFFFFFF
            picture_id = (FIRST_PICTURE_IDS[layer] + n) & 0x7FFF
            tl0picidx = (FIRST_TL0PICIDX[layer] + n) & 0xFF
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                payload = renumbered(payload, picture_id, tl0picidx)
                peer.send_rtp(struct.pack("!BBHII", 0x80, marker | VP8_PT, seqs[layer], ts, ssrc) + payload)
                seqs[layer] = (seqs[layer] + 1) & 0xFFFF
        n += 1
        if n % (FPS * 2) == 0:
            peer.keepalive()
        await asyncio.sleep(max(0.0, start + n / FPS - time.monotonic()))


class Decoder:
    """Reassembles the received VP8 stream frame by frame (by RTP timestamp, complete runs of
    sequence numbers ending in a marker) and decodes it with libvpx."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.sizes: list[tuple[float, int, int]] = []  # (arrival, width, height)
        self._codec = av.CodecContext.create("libvpx", "r")
        self._pending: dict[int, list[bytes]] = {}
        self.ssrcs: set[int] = set()
        self.seqs: list[int] = []
        self.pictures: list[tuple[int, int, int]] = []  # (seq, picture id, TL0PICIDX) of frame starts

    def on_rtp(self, packet: bytes, now: float) -> None:
        self.packets.append(packet)
        _, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", packet)
        self.ssrcs.add(ssrc)
        self.seqs.append(seq)
        offset, end = payload_bounds(packet)
        descriptor, _ = VpxPayloadDescriptor.parse(packet[offset:end])
        if descriptor.partition_start and descriptor.partition_id == 0:
            assert descriptor.picture_id is not None and descriptor.tl0picidx is not None
            self.pictures.append((seq, descriptor.picture_id, descriptor.tl0picidx))
        frame = self._pending.setdefault(ts, [])
        frame.append(packet)
        if b1 & 0x80:
            self._decode(self._pending.pop(ts), now)
            for old in [t for t in self._pending if (ts - t) & 0xFFFFFFFF < 0x80000000]:
                del self._pending[old]  # earlier frames that never completed

    def _decode(self, packets: list[bytes], now: float) -> None:
        packets.sort(key=lambda p: struct.unpack_from("!H", p, 2)[0])
        seqs = [struct.unpack_from("!H", p, 2)[0] for p in packets]
        if any((b - a) & 0xFFFF != 1 for a, b in itertools.pairwise(seqs)):
            return  # a packet is missing
        data = b""
        for packet in packets:
            offset, end = payload_bounds(packet)
            data += VpxPayloadDescriptor.parse(packet[offset:end])[1]
        try:
            for frame in self._codec.decode(av.Packet(data)):
                self.sizes.append((now, frame.width, frame.height))
        except av.error.FFmpegError:
            pass  # a delta frame before the first key frame


@pytest.fixture
def bridge() -> Iterator[ServiceProcess]:
    yield from start_bridge()


@pytest.fixture
async def layers() -> list[list[list[bytes]]]:
    return [encode_vp8(2.0, FPS, bitrate, width, height) for width, height, bitrate in LAYERS]


@pytest.fixture
async def call(
    bridge: ServiceProcess, layers
) -> AsyncIterator[tuple[Endpoint, Endpoint, list[int], Decoder]]:  # type: ignore[no-untyped-def]
    url = bridge.control_url  # type: ignore[attr-defined]
    sender, receiver = Endpoint(url, "snd"), Endpoint(url, "rcv")
    ssrcs = [secrets.randbits(31) | 1 for _ in LAYERS]
    decoder = Decoder()
    receiver.peer.on_rtp = decoder.on_rtp
    payload_types = [{"id": VP8_PT, "name": "VP8", "clockrate": 90000, "rtcp_fbs": [["nack", "pli"]]}]
    async with httpx.AsyncClient(timeout=10) as http:
        await sender.join(
            http, {"video_ssrcs": ssrcs, "ssrc_groups": [["SIM", ssrcs]], "payload_types": payload_types}
        )
        await receiver.join(http, {"payload_types": payload_types})
        # as a client does when its bridge channel opens, before video flows: thumbnails only
        await receiver.say(
            http, {"colibriClass": "ReceiverVideoConstraints", "defaultConstraints": {"maxHeight": 180}}
        )
    task = asyncio.ensure_future(send_simulcast(sender.peer, ssrcs, layers))
    try:
        yield sender, receiver, ssrcs, decoder
    finally:
        task.cancel()
        sender.peer.close()
        receiver.peer.close()


async def wait_for(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_receiver_gets_the_layer_its_constraint_allows_and_switches_up(call, bridge) -> None:  # type: ignore[no-untyped-def]
    sender, receiver, ssrcs, decoder = call
    async with httpx.AsyncClient(timeout=10) as http:

        async def decoded(height: int, frames: int, since: float) -> bool:
            return sum(1 for t, _, h in decoder.sizes if t >= since and h == height) >= frames

        start = time.monotonic()
        await wait_for(lambda: decoded(180, 10, start), 20, "10 decoded 320x180 frames")
        assert {(w, h) for _, w, h in decoder.sizes} == {(320, 180)}
        said = await messages_to(receiver, "ForwardedSources")  # type: ignore[arg-type]
        assert said[-1]["forwardedSources"] == ["snd-v0"]
        constraints = await messages_to(sender, "SenderSourceConstraints")  # type: ignore[arg-type]
        assert constraints[-1] == {
            "colibriClass": "SenderSourceConstraints",
            "sourceName": "snd-v0",
            "maxHeight": 180,
        }

        raised = time.monotonic()
        await receiver.say(
            http, {"colibriClass": "ReceiverVideoConstraints", "defaultConstraints": {"maxHeight": 720}}
        )
        await wait_for(lambda: decoded(720, 10, raised), 20, "10 decoded 1280x720 frames after the raise")
        constraints = await messages_to(sender, "SenderSourceConstraints")  # type: ignore[arg-type]
        assert constraints[-1]["maxHeight"] == 720

    # one stream as far as the receiver can tell: the low layer's SSRC, no sequence jumps
    assert decoder.ssrcs == {ssrcs[0]}
    gaps = [(b - a) & 0xFFFF for a, b in zip(decoder.seqs, decoder.seqs[1:], strict=False)]
    assert max(g for g in gaps if g < 0x8000) <= 20, "sequence numbers jump at the switch"
    # and the switch was clean: once 720p frames arrive, no more 180p
    first_720 = next(t for t, _, h in decoder.sizes if h == 720)
    assert all(h == 720 for t, _, h in decoder.sizes if t > first_720)

    # picture ids and TL0PICIDX run on across the switch: one frame later, one more (a few more
    # only where frames were lost on the way), never the other layer's numbering
    pictures = sorted(decoder.pictures, key=lambda p: (p[0] - decoder.seqs[0]) & 0xFFFF)
    picture_steps = [(b[1] - a[1]) & 0x7FFF for a, b in itertools.pairwise(pictures)]
    tl0_steps = [(b[2] - a[2]) & 0xFF for a, b in itertools.pairwise(pictures)]
    assert len(pictures) > 20
    assert all(1 <= step <= 5 for step in picture_steps), picture_steps
    assert tl0_steps == picture_steps, (tl0_steps, picture_steps)
    assert picture_steps.count(1) >= 0.9 * len(picture_steps)

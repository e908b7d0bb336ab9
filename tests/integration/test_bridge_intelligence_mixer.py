"""Audio mixing through the media engine with the intelligence policy: three participants send
Opus tones (440, 660 and 880 Hz, with RFC 6464 levels); the 660 Hz one has a mixer audio channel
(``rtp-level-relay-type: mixer``) and decodes what it gets: one stream, with the others' tones and
not its own.

Peers are the light WebRTC peers of the bridge benchmark (``bench/bridge_peer.py``: ICE, DTLS and
SRTP, no RTCPeerConnection), so the received RTP can be checked stream by stream. The process
under test is the one of ``test_bridge_intelligence.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from bench.bridge_peer import LightPeer
from services.bridge.media.allocation.mixer import FRAME_SAMPLES, SAMPLE_RATE, OpusDecoder, OpusEncoder
from services.bridge.media.packets.rtp import AUDIO_LEVEL_URI
from tests.integration.harness import ServiceProcess
from tests.integration.test_bridge_intelligence import start_bridge
from tests.integration.test_bridge_intelligence_simulcast import Endpoint

TONES = {"low": 440.0, "mid": 660.0, "high": 880.0}
OPUS_PT = 111
LEVEL_EXT = 1


@pytest.fixture
def bridge() -> Iterator[ServiceProcess]:
    yield from start_bridge()


async def send_tone(peer: LightPeer, ssrc: int, frequency: float) -> None:
    """Opus frames of a sine tone every 20 ms, each with its audio level (about -13 dBov)."""
    encoder = OpusEncoder(bitrate=48_000)
    seq = secrets.randbits(16)
    start = time.monotonic()
    n = 0
    while True:
        t = (np.arange(FRAME_SAMPLES) + n * FRAME_SAMPLES) / SAMPLE_RATE
        pcm = (np.sin(2 * np.pi * frequency * t) * 7000).astype(np.int16)
        header = struct.pack("!BBHII", 0x90, OPUS_PT, seq, (n * FRAME_SAMPLES) & 0xFFFFFFFF, ssrc)
        extension = struct.pack("!HHBBBB", 0xBEDE, 1, LEVEL_EXT << 4, 13, 0, 0)
        peer.send_rtp(header + extension + encoder.encode(pcm))
        seq = (seq + 1) & 0xFFFF
        n += 1
        if n % 100 == 0:
            peer.keepalive()
        await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))


@pytest.fixture
async def room(
    bridge: ServiceProcess,
) -> AsyncIterator[tuple[dict[str, Endpoint], dict[str, int], int, list[bytes]]]:
    url = bridge.control_url  # type: ignore[attr-defined]
    people = {name: Endpoint(url, name) for name in TONES}
    ssrcs = {name: secrets.randbits(31) | 1 for name in TONES}
    received: list[bytes] = []
    people["mid"].peer.on_rtp = lambda packet, now: received.append(packet)
    async with httpx.AsyncClient(timeout=10) as http:
        for name, person in people.items():
            await person.join(
                http,
                {
                    "audio_ssrcs": [ssrcs[name]],
                    "payload_types": [{"id": OPUS_PT, "name": "opus", "clockrate": 48000, "channels": 2}],
                    "rtp_hdrexts": [{"id": LEVEL_EXT, "uri": AUDIO_LEVEL_URI}],
                },
            )
        response = await http.put(f"{people['mid'].endpoint_url}/audio-mixing", json={"mixed": True})
        mixed_ssrc = response.raise_for_status().json()["ssrc"]
    tasks = [asyncio.ensure_future(send_tone(p.peer, ssrcs[n], TONES[n])) for n, p in people.items()]
    try:
        yield people, ssrcs, mixed_ssrc, received
    finally:
        for task in tasks:
            task.cancel()
        for person in people.values():
            person.peer.close()


def energy_at(pcm: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    freqs = np.fft.rfftfreq(pcm.size, 1 / SAMPLE_RATE)
    return float(spectrum[(freqs > freq - 20) & (freqs < freq + 20)].max())


async def test_mixer_channel_hears_the_others_and_not_itself(room) -> None:  # type: ignore[no-untyped-def]
    _, ssrcs, mixed_ssrc, received = room
    deadline = time.monotonic() + 20
    while sum(1 for p in received if struct.unpack_from("!I", p, 8)[0] == mixed_ssrc) < 150:
        assert time.monotonic() < deadline, f"only {len(received)} packets reached the mixer channel"
        await asyncio.sleep(0.2)

    by_ssrc = {struct.unpack_from("!I", p, 8)[0] for p in received}
    assert not by_ssrc & set(ssrcs.values()), "a mixer channel must not get the individual streams"
    assert by_ssrc == {mixed_ssrc}
    decoder = OpusDecoder()
    mixed = sorted(
        (p for p in received if struct.unpack_from("!I", p, 8)[0] == mixed_ssrc),
        key=lambda p: struct.unpack_from("!I", p, 4)[0],
    )
    pcm = np.concatenate([decoder.decode(p[12:]) for p in mixed])[-50 * FRAME_SAMPLES :]  # last second
    low, mid, high = (energy_at(pcm, TONES[n]) for n in ("low", "mid", "high"))
    assert low > 20 * mid and high > 20 * mid, (low, mid, high)
    assert min(low, high) > 0.3 * max(low, high)

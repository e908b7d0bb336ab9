"""The bridge's media plane end to end: three aiortc participants with real VP8/Opus through one
media engine process on one UDP port (loopback)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.integration.harness import ServiceProcess, free_port, free_tcp_udp_port
from tests.integration.media_client import BridgeParticipant, FirstCopyLoss, allow_loopback_ice, nearest

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 40, 230)}
TONES = {"red": 440.0, "green": 700.0, "blue": 1100.0}


@pytest.fixture
def bridge() -> Iterator[ServiceProcess]:
    http_port = free_port()
    media_port = free_tcp_udp_port()
    proc = ServiceProcess.python_module(
        "bridge-media",
        "tests.integration.media_devserver",
        {
            "MEDIA_HTTP_PORT": str(http_port),
            "JVB_PORT": str(media_port),
            "JVB_BIND_ADDRESS": "127.0.0.1",
            "JVB_ADVERTISE_IPS": "127.0.0.1",
            "MEDIA_CONSENT_TIMEOUT": "4",
            "LOG_LEVEL": "INFO",
        },
        health_url=f"http://127.0.0.1:{http_port}/health",
    )
    proc.start()
    proc.control_url = f"http://127.0.0.1:{http_port}"  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.stop()


class LossyRelay(asyncio.DatagramProtocol):
    """A UDP relay between one participant and the bridge. It drops every ``drop_every``-th SRTP
    RTP packet towards the participant and every ``uplink_drop_every``-th one from it (STUN, DTLS
    and RTCP pass), and can go silent (``blackhole``)."""

    def __init__(self, bridge_addr: tuple[str, int], drop_every: int = 0, uplink_drop_every: int = 0) -> None:
        self.bridge_addr = bridge_addr
        self.drop_every = drop_every
        self.uplink_drop_every = uplink_drop_every
        self.uplink_count = 0
        self.uplink_dropped = 0
        self.client_addr: tuple[str, int] | None = None
        self.blackhole = False
        self.count = 0
        self.dropped = 0
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.front, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        relay = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                relay.from_bridge(data)

        self.back, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.1", 0))
        return self.front.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.blackhole or self.back is None:
            return
        self.client_addr = addr
        if self.uplink_drop_every and 127 < data[0] < 192 and not 191 < data[1] < 224:
            self.uplink_count += 1
            if self.uplink_count % self.uplink_drop_every == 0:
                self.uplink_dropped += 1
                return
        self.back.sendto(data, self.bridge_addr)

    def from_bridge(self, data: bytes) -> None:
        if self.blackhole or self.front is None or self.client_addr is None:
            return
        if 127 < data[0] < 192 and not 191 < data[1] < 224 and self.drop_every:
            self.count += 1
            if self.count % self.drop_every == 0:
                self.dropped += 1
                return
        self.front.sendto(data, self.client_addr)

    def close(self) -> None:
        for t in (self.front, self.back):
            if t is not None:
                t.close()


async def stats(bridge: ServiceProcess) -> dict:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{bridge.control_url}/stats")  # type: ignore[attr-defined]
        response.raise_for_status()
        return response.json()


async def wait_for(predicate, within: float, what) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def meeting(
    bridge: ServiceProcess,
) -> AsyncIterator[tuple[list[BridgeParticipant], dict[str, LossyRelay]]]:
    """Three participants; ``blue`` reaches the bridge through a relay dropping 1 in 20 packets
    towards it, ``green`` through one dropping 1 in 25 of the packets it sends (and the test cuts
    green off later)."""
    allow_loopback_ice()
    names = list(COLOURS)
    people = [BridgeParticipant(n, COLOURS[n], TONES[n], bridge.control_url) for n in names]  # type: ignore[attr-defined]
    for p in people:
        await p.prepare(slots=len(people) - 1)
    for p in people:
        await p.register()
    bridge_addr = ("127.0.0.1", people[0].local_transport["candidates"][0]["port"])  # type: ignore[index]
    relays = {
        "blue": LossyRelay(bridge_addr, drop_every=20),
        "green": LossyRelay(bridge_addr, uplink_drop_every=25),
    }
    for p in people:
        others = [o for o in people if o is not p]
        via = await relays[p.name].start() if p.name in relays else None
        await p.connect(others, via=via)
    try:
        yield people, relays
    finally:
        for p in people:
            await p.close()
        for r in relays.values():
            r.close()


def check_identities(person: BridgeParticipant, expected: list[str]) -> None:
    """Every receive slot decodes the video colour and audio tone of the participant in it."""
    for slot, owner in person.slot_owner.items():
        if owner not in expected:
            continue
        media = person.received[slot]
        assert media.recent_rgb, f"{person.name} decoded no video from {owner}"
        # most recent frames show the sender's colour (a frame decoded around a loss may not)
        seen = [nearest(rgb, COLOURS) for rgb in media.recent_rgb]
        assert seen.count(owner) >= 0.8 * len(seen), (person.name, owner, seen, media.recent_rgb[-3:])
        freq = media.dominant_frequency()
        assert freq is not None, f"{person.name} decoded no audio from {owner}"
        assert nearest([freq], {k: [v] for k, v in TONES.items()}) == owner, (person.name, owner, freq)
        assert abs(freq - TONES[owner]) < 30, (person.name, owner, freq)


async def test_three_participants_loss_recovery_and_expiry(bridge: ServiceProcess, meeting) -> None:  # type: ignore[no-untyped-def]
    people, relays = meeting
    red, _, blue = people

    def everyone_receiving(count: int) -> bool:
        return all(
            len(p.received) == 2
            and all(m.video_frames >= count and m.audio_frames >= count for m in p.received.values())
            for p in people
        )

    # 1. everyone decodes the other two, and knows who is who
    await wait_for(
        lambda: everyone_receiving(30),
        40,
        lambda: f"all six streams decoded; (video, audio) frames per slot: {[p.snapshot() for p in people]}",
    )
    for p in people:
        check_identities(p, [o.name for o in people if o is not p])
    s = await stats(bridge)
    assert s["endpoints"] == 3 and s["total_ice_succeeded"] == 3
    assert s["packets_forwarded"] > 0
    # the bridge as deployed forwards with the C loop; this meeting is its end-to-end test
    assert s["forwarding_loop"] == "native", "native_fanout.so not built: python -m services.bridge.media.forwarding.native"

    # 2. blue's downlink loses 1 packet in 20: NACKs are answered from the cache, and blue's
    # video keeps flowing at close to the rate the others see. green's uplink loses 1 in 25:
    # the receivers' NACKs miss the cache and the bridge asks green, so green's video reaches
    # red at close to the rate of blue's (lossless uplink) video.
    def frames(person: BridgeParticipant, owner: str) -> int:
        slot = next(slot for slot, o in person.slot_owner.items() if o == owner)
        return person.received[slot].video_frames

    pairs = [(blue, "red"), (blue, "green"), (red, "blue"), (red, "green")]
    before = {(p.name, o): frames(p, o) for p, o in pairs}
    await asyncio.sleep(8)
    gain = {(p.name, o): frames(p, o) - before[(p.name, o)] for p, o in pairs}
    assert relays["blue"].dropped > 20 and relays["green"].uplink_dropped > 10
    s = await stats(bridge)
    details = {e["endpoint_id"]: e for e in s["endpoint_details"]}
    assert details["blue"]["nacks_received"] > 0 and details["blue"]["retransmissions"] > 0, details["blue"]
    assert details["green"]["nacks_sent"] > 0, details["green"]
    # without repair aiortc's jitter buffer stalls on the first gap and these ratios fall far
    # below a half; the margin absorbs a loaded machine (both loss legs compound on blue <- green)
    assert min(gain[("blue", "red")], gain[("blue", "green")]) >= 0.5 * gain[("red", "blue")], gain
    assert gain[("red", "green")] >= 0.5 * gain[("red", "blue")], gain
    check_identities(blue, ["red", "green"])
    check_identities(red, ["blue", "green"])

    # 3. green vanishes without a word: the bridge expires it on silence, the others go on
    relays["green"].blackhole = True

    async def green_gone() -> bool:
        s = await stats(bridge)
        return all(e["endpoint_id"] != "green" for e in s["endpoint_details"])

    deadline = time.monotonic() + 20
    while not await green_gone():
        assert time.monotonic() < deadline, "green was not expired"
        await asyncio.sleep(0.5)
    red_slot_blue = next(slot for slot, o in red.slot_owner.items() if o == "blue")
    blue_slot_red = next(slot for slot, o in blue.slot_owner.items() if o == "red")
    r0 = red.received[red_slot_blue].video_frames
    b0 = blue.received[blue_slot_red].video_frames
    await asyncio.sleep(3)
    assert red.received[red_slot_blue].video_frames > r0 + 10
    assert blue.received[blue_slot_red].video_frames > b0 + 10
    check_identities(red, ["blue"])
    check_identities(blue, ["red"])
    s = await stats(bridge)
    assert s["endpoints"] == 2 and s["conferences"] == 1


def test_bad_control_input_is_rejected(bridge: ServiceProcess) -> None:
    url = bridge.control_url  # type: ignore[attr-defined]
    assert httpx.post(f"{url}/conferences/c/endpoints/e").status_code == 200
    bad = httpx.put(
        f"{url}/conferences/c/endpoints/e/transport", json={"ufrag": "x", "pwd": "y", "fingerprints": []}
    )
    assert bad.status_code == 400
    assert httpx.put(f"{url}/conferences/c/endpoints/nope/sources", json={}).status_code == 404
    # garbage on the media port is dropped and the engine keeps serving
    port = httpx.get(f"{url}/health").json()["port"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in (b"\x00\x01\x00\x00garbage", b"\x80" * 40, b"\x16\xfe\xfd" + b"x" * 30, b""):
            s.sendto(payload, ("127.0.0.1", port))
    assert httpx.get(f"{url}/stats").status_code == 200
    assert httpx.delete(f"{url}/conferences/c").status_code == 200
    assert httpx.get(f"{url}/stats").json()["conferences"] == 0


async def test_rtx_repairs_loss_for_an_aiortc_receiver(bridge: ServiceProcess) -> None:
    """RTX end to end: red sends with RTX negotiated (``FID`` group, ``rtx`` payload type), green
    receives through one video slot (aiortc routes RTX by payload type, so it can with one) and
    loses the first copy of every tenth packet of red's video. The bridge answers green's NACKs
    with RTX on red's RTX SSRC, green unwraps them, and its video keeps decoding: aiortc's jitter
    buffer waits for every lost packet, so without the repairs it would stall."""
    allow_loopback_ice()
    red, green = (
        BridgeParticipant(n, COLOURS[n], TONES[n], bridge.control_url, rtx=True)  # type: ignore[attr-defined]
        for n in ("red", "green")
    )
    try:
        for p in (red, green):
            await p.prepare(slots=1)
            await p.register()
        assert red.sources is not None and len(red.sources["video_ssrcs"]) == 2
        media_ssrc, rtx_ssrc = red.sources["video_ssrcs"]
        with FirstCopyLoss({media_ssrc}, every=10) as loss:
            await red.connect([green])
            await green.connect([red])
            # 150 frames (10 s of video, about 15 losses), never stalled for 5 s on the way
            deadline = time.monotonic() + 60
            longest_stall, last_count, last_change = 0.0, 0, None
            while not (0 in green.received and green.received[0].video_frames >= 150):
                assert time.monotonic() < deadline, f"green got {green.snapshot()}, dropped {loss.dropped}"
                await asyncio.sleep(0.1)
                count = green.received[0].video_frames if 0 in green.received else 0
                now = time.monotonic()
                if count != last_count:
                    last_count, last_change = count, now
                elif last_change is not None:
                    longest_stall = max(longest_stall, now - last_change)
        assert longest_stall < 5.0, f"red's video stalled {longest_stall:.1f} s at green"
        assert loss.dropped.get(media_ssrc, 0) >= 10, loss.dropped
        assert loss.arrived.get(rtx_ssrc, 0) >= loss.dropped[media_ssrc] // 2, (loss.arrived, loss.dropped)
        seen = [nearest(rgb, COLOURS) for rgb in green.received[0].recent_rgb]
        assert seen.count("red") >= 0.8 * len(seen), seen
        details = {d["endpoint_id"]: d for d in (await stats(bridge))["endpoint_details"]}
        assert details["green"]["retransmissions"] >= 10 and details["green"]["nacks_received"] > 0
    finally:
        for p in (red, green):
            await p.close()

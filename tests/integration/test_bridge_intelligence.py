"""Conference intelligence end to end: six aiortc participants (real VP8 and Opus, distinct tone
loudness) through one media engine process running :class:`ConferenceIntelligencePolicy`, with
NACK negotiated and loss that only NACK recovery repairs.

The bridge's Colibri/WebSocket control plane is not part of this test; the process under test is
the media engine's dev server (``tests.integration.media_devserver``) with the intelligence policy
and three more routes, started from this module (``python -m tests.integration.test_bridge_intelligence``):

* ``GET  /conferences/{c}/endpoints/{e}/messages``  -- bridge-channel messages sent to ``e``;
* ``POST /conferences/{c}/endpoints/{e}/messages``  -- a bridge-channel message from ``e``;
* ``PUT  /conferences/{c}/endpoints/{e}/last-n``    -- the Colibri video channel's ``last-n``;
* ``PUT  /conferences/{c}/endpoints/{e}/audio-mixing`` -- ``{"mixed": true}`` makes the audio
  channel a mixer channel (``rtp-level-relay-type: mixer``); answers the mixed stream's SSRC.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.harness import PYTHON, ServiceProcess, free_port, free_tcp_udp_port
from tests.integration.media_client import (
    BridgeParticipant,
    ColourTrack,
    FirstCopyLoss,
    ToneTrack,
    allow_loopback_ice,
    nearest,
)

NAMES = ["ann", "bob", "cid", "dee", "eve", "fay"]
COLOURS = {n: ((37 * i) % 256, (91 * i + 60) % 256, (53 * i + 120) % 256) for i, n in enumerate(NAMES)}
TONES = {n: 300.0 + 150 * i for i, n in enumerate(NAMES)}
LOUD = 0.3  # about -13 dBov
QUIET = 0.0002  # about -77 dBov: background noise, below the detector's voice level (-70 dBov)


# --- the process under test ---------------------------------------------------------------------


async def serve() -> None:  # pragma: no cover - runs in the child process
    from fastapi import HTTPException

    from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
    from services.bridge.media.engine import MediaEngine
    from services.bridge.policies import ConferencePolicies
    from services.common import bridge_channel
    from services.common.runtime import serve_http, stop_http
    from tests.integration.media_devserver import build_app, config_from_env

    config, http_port = config_from_env(os.environ)
    # the bridge's own registry: it creates each conference's policy and owns its mixer thread
    policies = ConferencePolicies()
    engine = MediaEngine(config, policy_factory=policies.create)
    outbox: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    engine.send_to_endpoint = lambda c, e, m: outbox[(c, e)].append(bridge_channel.to_dict(m))
    app = build_app(engine)

    @app.get("/conferences/{conference_id}/endpoints/{endpoint_id}/messages")
    def messages(conference_id: str, endpoint_id: str) -> list[dict[str, Any]]:
        return outbox[(conference_id, endpoint_id)]

    # async routes: they run on the event loop, like the packet path they steer
    @app.post("/conferences/{conference_id}/endpoints/{endpoint_id}/messages")
    async def message(conference_id: str, endpoint_id: str, body: dict[str, Any]) -> dict[str, Any]:
        engine.on_bridge_channel_message(conference_id, endpoint_id, bridge_channel.parse(body))
        return {}

    def policy_of(conference_id: str) -> ConferenceIntelligencePolicy:
        policy = policies.get(conference_id)
        if policy is None:
            raise HTTPException(404, f"no conference {conference_id!r}")
        return policy

    @app.put("/conferences/{conference_id}/endpoints/{endpoint_id}/last-n")
    async def last_n(conference_id: str, endpoint_id: str, body: dict[str, int]) -> dict[str, Any]:
        policy_of(conference_id).set_colibri_last_n(endpoint_id, body["lastN"])
        return {}

    @app.put("/conferences/{conference_id}/endpoints/{endpoint_id}/audio-mixing")
    async def audio_mixing(conference_id: str, endpoint_id: str, body: dict[str, bool]) -> dict[str, Any]:
        return {"ssrc": policy_of(conference_id).set_audio_mixing(endpoint_id, body["mixed"])}

    await engine.start()
    server = await serve_http(app, "127.0.0.1", http_port)
    try:
        await server._parley_task  # type: ignore[attr-defined]
    finally:
        await stop_http(server)
        await engine.stop()
        policies.forget_all()


# --- the test -----------------------------------------------------------------------------------


def start_bridge() -> Iterator[ServiceProcess]:
    """The process under test on free ports (``control_url`` set on it); stopped on exit."""
    http_port = free_port()
    media_port = free_tcp_udp_port()
    proc = ServiceProcess(
        "bridge-intelligence",
        [PYTHON, "-m", "tests.integration.test_bridge_intelligence"],
        {
            "MEDIA_HTTP_PORT": str(http_port),
            "JVB_PORT": str(media_port),
            "JVB_BIND_ADDRESS": "127.0.0.1",
            "JVB_ADVERTISE_IPS": "127.0.0.1",
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


@pytest.fixture
def bridge() -> Iterator[ServiceProcess]:
    yield from start_bridge()


LOSS_EVERY = 20  # each receiver loses the first copy of every 20th packet of each video it gets


async def set_loudness(person: BridgeParticipant, amplitude: float) -> None:
    person.pc.getTransceivers()[0].sender.replaceTrack(ToneTrack(person.tone, amplitude))


@pytest.fixture
async def meeting(bridge: ServiceProcess) -> AsyncIterator[list[BridgeParticipant]]:
    """Six participants in this process, all quiet, Colibri last-n 2 on every video channel,
    NACK negotiated. Their video is small (96x72 at 10 fps) so six aiortc peers fit on a shared
    2-core machine. Every receiver loses the first copy of every ``LOSS_EVERY``-th video packet
    (:class:`FirstCopyLoss`, kept on the list as ``loss``): only retransmissions repair it."""
    allow_loopback_ice()
    url = bridge.control_url  # type: ignore[attr-defined]
    people: list[BridgeParticipant] = [BridgeParticipant(n, COLOURS[n], TONES[n], url) for n in NAMES]
    for p in people:
        await p.prepare(slots=len(people) - 1)
        await set_loudness(p, QUIET)
        p.pc.getTransceivers()[1].sender.replaceTrack(ColourTrack(p.rgb, width=96, height=72, fps=10))
    async with httpx.AsyncClient() as http:
        for p in people:
            await p.register()
            (await http.put(f"{p.endpoint_url}/last-n", json={"lastN": 2})).raise_for_status()
    for p in people:
        await p.connect([o for o in people if o is not p])
    # nobody here listens to the others' audio: everyone subscribes to none
    # (ReceiverAudioSubscription), so the bridge sends none. Five Opus streams at 50 packets/s to
    # each of six peers in this one process would be 1,500 packets/s it can read only one per
    # socket per loop turn: they back up for seconds, overflow the sockets (loss) and delay the
    # peers' STUN consent checks past aioice's 0.5 s, which closes their connections.
    deadline = time.monotonic() + 30
    while not all(p.pc.connectionState == "connected" for p in people):
        assert time.monotonic() < deadline, "participants did not connect"
        await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as http:
        for p in people:
            no_audio = {"colibriClass": "ReceiverAudioSubscription", "include": []}
            (await http.post(f"{p.endpoint_url}/messages", json=no_audio)).raise_for_status()
    video_ssrcs = {ssrc for p in people for ssrc in (p.sources or {})["video_ssrcs"]}
    try:
        with FirstCopyLoss(video_ssrcs, LOSS_EVERY) as loss:
            yield Meeting(people, loss)
    finally:
        for p in people:
            await p.close()


class Meeting(list[BridgeParticipant]):
    def __init__(self, people: list[BridgeParticipant], loss: FirstCopyLoss) -> None:
        super().__init__(people)
        self.loss = loss


async def messages_to(person: BridgeParticipant, colibri_class: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{person.endpoint_url}/messages")
        response.raise_for_status()
    return [m for m in response.json() if m["colibriClass"] == colibri_class]


async def wait_until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def video_packets_by_owner(person: BridgeParticipant) -> dict[str, int]:
    """RTP packets received per remote participant's video slot (aiortc's inbound-rtp stats)."""
    transceivers = person.pc.getTransceivers()
    counts = {}
    for slot, owner in person.slot_owner.items():
        report = await transceivers[3 + 2 * slot].receiver.getStats()
        counts[owner] = sum(s.packetsReceived for s in report.values() if s.type == "inbound-rtp")
    return counts


async def test_loudest_is_dominant_and_last_n_two_forwards_the_two_latest_speakers(meeting) -> None:  # type: ignore[no-untyped-def]
    people = meeting
    by_name = {p.name: p for p in people}

    async def dominant_everywhere(name: str, previous: list[str]) -> bool:
        for p in people:
            events = await messages_to(p, "DominantSpeakerEndpointChangeEvent")
            if not events or events[-1]["dominantSpeakerEndpoint"] != name:
                return False
            if events[-1]["previousSpeakers"][: len(previous)] != previous:
                return False
        return True

    # bob talks, then eve takes over: last-N 2 must then be {eve, bob} for everyone else
    await set_loudness(by_name["bob"], LOUD)
    await wait_until(lambda: dominant_everywhere("bob", []), 60, "bob dominant for everyone")
    await set_loudness(by_name["bob"], QUIET)
    await set_loudness(by_name["eve"], LOUD)
    await wait_until(lambda: dominant_everywhere("eve", ["bob"]), 60, "eve dominant after bob")

    expected = {p.name: ["eve", "bob"] for p in people}
    expected["eve"] = ["bob", "ann"]  # never its own video; the next in order fills the slot
    expected["bob"] = ["eve", "ann"]

    async def forwarded_as_expected() -> bool:
        for p in people:
            said = await messages_to(p, "ForwardedSources")
            if not said or said[-1]["forwardedSources"] != [f"{n}-v0" for n in expected[p.name]]:
                return False
        return True

    await wait_until(forwarded_as_expected, 30, "ForwardedSources naming the two speakers")

    # what arrives is what ForwardedSources says: packets from those two, none from the others.
    # Judged over a 3 s window once the receivers have caught up (on a loaded machine this
    # process can lag seconds behind its sockets); every window is kept for the failure message.
    windows = []
    deadline = time.monotonic() + 30
    while True:
        before = {p.name: await video_packets_by_owner(p) for p in people}
        await asyncio.sleep(3.0)
        growth = {}
        for p in people:
            after = await video_packets_by_owner(p)
            growth[p.name] = {owner: after[owner] - before[p.name][owner] for owner in after}
        windows.append(growth)
        exact = all(
            (growth[p.name][owner] > 0) == (owner in expected[p.name])
            for p in people
            for owner in growth[p.name]
        )
        if exact:
            break
        assert time.monotonic() < deadline, f"never exactly the forwarded sources: {windows}"

    # and every receiver keeps decoding both forwarded videos, in their colours, through the
    # injected loss. A stream whose losses the bridge does not repair stalls (aiortc's jitter
    # buffer waits for the missing packet) or decodes into the wrong picture. Forty frames from
    # each (four seconds of video, two losses) within a generous deadline.
    def frames(p: BridgeParticipant) -> dict[str, int]:
        return {
            owner: p.received[slot].video_frames for slot, owner in p.slot_owner.items() if slot in p.received
        }

    mark = {p.name: frames(p) for p in people}

    async def decoded() -> bool:
        return all(
            frames(p).get(owner, 0) - mark[p.name].get(owner, 0) >= 40
            for p in people
            for owner in expected[p.name]
        )

    try:
        await wait_until(decoded, 60, "every receiver decoding 40 more frames of both forwarded videos")
    except AssertionError:
        growth = {
            p.name: {o: frames(p).get(o, 0) - mark[p.name].get(o, 0) for o in expected[p.name]}
            for p in people
        }
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{people[0].control_url}/stats")).json()["endpoint_details"]
        raise AssertionError(
            f"frames decoded since the forwarding settled: {growth}; dropped: {meeting.loss.dropped}; "
            f"bridge: {stats}"
        ) from None
    for p in people:
        for slot, owner in p.slot_owner.items():
            if owner not in expected[p.name]:
                continue
            seen = [nearest(rgb, COLOURS) for rgb in p.received[slot].recent_rgb]
            assert seen.count(owner) >= 0.8 * len(seen), f"{p.name} decoded {seen} from {owner}"

    # the loss happened and was repaired by retransmissions, not by key frames alone
    ssrc_of = {p.name: (p.sources or {})["video_ssrcs"][0] for p in people}
    assert all(meeting.loss.dropped.get(ssrc_of[n], 0) >= 3 for n in ("ann", "bob", "eve")), (
        meeting.loss.dropped
    )
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"{people[0].control_url}/stats")).json()["endpoint_details"]
    assert all(d["retransmissions"] > 0 for d in stats), stats


if __name__ == "__main__":  # the process under test
    from services.common.logging import setup_logging
    from services.common.runtime import run

    setup_logging("bridge-intelligence")
    run(serve)

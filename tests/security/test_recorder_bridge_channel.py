"""The recorder's bridge channel against a hostile peer on the other end of the WebSocket.

The recorder opens the Colibri WebSocket URL the Jingle offer names (services/recorder/bridge_link.py).
Whatever answers there may send malformed JSON, unknown classes, messages nested thousands deep
or megabytes long, or drop the connection: the link skips what does not parse, refuses what is too
large (and reconnects), keeps asking for its video constraints, and still follows the speaker
events that are well formed. Only ws/wss URLs of the Colibri WebSocket path are opened at all.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.server import ServerConnection, serve

from services.common import bridge_channel as bc
from services.recorder.bridge_link import BridgeLink, channel_url
from tests.integration.participant import wait_until

SPEAKER = {"colibriClass": "DominantSpeakerEndpointChangeEvent", "dominantSpeakerEndpoint": "carol"}


def test_only_colibri_websocket_urls_are_opened() -> None:
    good = "wss://meet.example/colibri-ws/jvb1/c1/ep1?pwd=x"
    assert channel_url(good) == good
    assert channel_url(good, "ws://nginx:80") == "ws://nginx:80/colibri-ws/jvb1/c1/ep1?pwd=x"
    assert channel_url(good, "https://front.example") == "wss://front.example/colibri-ws/jvb1/c1/ep1?pwd=x"
    per_bridge = "jvb1=ws://127.0.0.1:9090, jvb2=ws://127.0.0.1:9091"
    assert channel_url(good, per_bridge) == "ws://127.0.0.1:9090/colibri-ws/jvb1/c1/ep1?pwd=x"
    assert channel_url(good, "jvb7=ws://127.0.0.1:9096") == good  # no pair: as offered
    for bad in (
        "http://meet.example/colibri-ws/jvb1/c1/ep1",  # not a WebSocket
        "file:///etc/passwd",
        "ws://meet.example/admin",  # not the Colibri WebSocket path
        "ws://meet.example/x/colibri-ws/jvb1/c1/ep1",
        "ws:///colibri-ws/jvb1/c1/ep1",  # no host
        "",
    ):
        with pytest.raises(ValueError):
            channel_url(bad)
    with pytest.raises(ValueError):
        channel_url(good, "ftp://nginx")


async def test_hostile_messages_are_skipped_and_the_link_keeps_working() -> None:
    received: list[str] = []
    connections = 0

    async def hostile(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:
            await ws.send("{not json")
            await ws.send(json.dumps({"colibriClass": "NoSuchClass"}))
            await ws.send("[" * 5000 + "]" * 5000)  # deeper than any message class needs
            await ws.send(json.dumps({"colibriClass": "DominantSpeakerEndpointChangeEvent"}))  # no field
            await ws.send(b"\xff\xfe")  # not UTF-8
            await ws.send("x" * (bc.MAX_MESSAGE_BYTES + 10))  # too large: the client drops the socket
            await asyncio.sleep(5)
            return
        async for text in ws:  # the second connection: constraints asked again, then a good event
            received.append(str(text))
            await ws.send(json.dumps(SPEAKER))

    speakers: list[str] = []
    async with serve(hostile, "127.0.0.1", 0, max_size=2**20) as server:
        port = server.sockets[0].getsockname()[1]
        link = BridgeLink(
            f"ws://127.0.0.1:{port}/colibri-ws/jvb1/c1/rec?pwd=p",
            lambda e: speakers.append(e.dominant_speaker_endpoint),
        )
        link.send_constraints(bc.ReceiverVideoConstraints(last_n=-1))
        link.start()
        try:
            assert await wait_until(lambda: speakers == ["carol"], 20), (connections, received, speakers)
        finally:
            await link.close()
    assert connections == 2
    assert [json.loads(t)["colibriClass"] for t in received] == ["ReceiverVideoConstraints"]


async def test_a_peer_that_never_answers_does_not_hold_the_recording() -> None:
    """A listener that accepts TCP and says nothing: the opening handshake times out, the link
    retries with back-off, and closing it returns at once."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = BridgeLink(f"ws://127.0.0.1:{port}/colibri-ws/jvb1/c1/rec?pwd=p", lambda e: None)
    link.start()
    await asyncio.sleep(0.5)
    assert not link.connected.is_set()
    await asyncio.wait_for(link.close(), 5)
    server.close()

"""A guest flooding its bridge channel with messages the bridge relays to everyone (EndpointMessage:
chat, reactions, polls), against a running bridge over the Colibri WebSocket.

The bridge sends each broadcast to every other endpoint and disconnects an endpoint whose queue
holds more than ``max-queued-bytes`` (it does not read fast enough). Before each endpoint had a
relay budget, one guest sending 64 KB broadcasts as fast as its connection allowed filled the
others' queues and got them cut off — every participant on a slower link lost its bridge channel
(chat, speaker events, constraints). Now what is over the sender's budget
(``videobridge.bridge-channel.relay-bytes-per-second``, ``relay-burst-bytes``) is dropped, the sender
gets an ``Error``, and the others keep their channel. docs/security.md, "The bridge's inputs".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.test_bridge_control_support import RunningBridge, start_bridge
from tests.integration.test_bridge_control_ws import conference, opened, recv_json

FLOOD_MESSAGES = 200
PAYLOAD = "x" * 60_000


@pytest.fixture(scope="module")
def bridge() -> Iterator[RunningBridge]:
    # a quarter of the default queue: loopback's large socket buffers stand for a slow link less well
    b = start_bridge("bridge-flood", "videobridge.websockets.max-queued-bytes = 262144\n", server_id="jvbflood")
    try:
        yield b
    finally:
        b.process.stop()


async def test_a_broadcast_flood_does_not_cut_the_others_off(http: httpx.AsyncClient) -> None:
    _, urls = await conference(http, "mallory", "alice")
    mallory = await opened(urls["mallory"])
    # alice reads nothing while the flood lasts (a slow link): her client holds one message
    alice = await connect(urls["alice"], compression=None, max_queue=1, max_size=None)
    assert (await recv_json(alice))["colibriClass"] == "ServerHello"
    message = json.dumps({"colibriClass": "EndpointMessage", "to": "", "msgPayload": {"t": PAYLOAD}})
    for _ in range(FLOOD_MESSAGES):  # 12 MB
        await mallory.send(message)
    await asyncio.sleep(2.0)

    # alice's channel is still there: she reads what was relayed, then her own hello's answer
    try:
        await alice.send(json.dumps({"colibriClass": "ClientHello"}))
        relayed = 0
        while True:
            m = await recv_json(alice, 10)
            if m["colibriClass"] == "ServerHello":
                break
            assert m["colibriClass"] == "EndpointMessage" and m["from"] == "mallory"
            relayed += 1
    except ConnectionClosed as exc:
        raise AssertionError(f"the bridge cut alice off during mallory's flood: {exc}") from None
    # the default budget: 128 KB at once and 32 KB/s: a handful of 60 KB messages, not 200
    assert relayed <= 8, relayed
    # mallory was told, and her own channel stays open
    error = None
    for _ in range(FLOOD_MESSAGES):
        m = await recv_json(mallory, 5)
        if m["colibriClass"] == "Error":
            error = m
            break
    assert error is not None and "rate" in error["reason"], error
    stats = (await http.get("/colibri/stats")).json()
    assert stats["bridge_channel_relay_dropped"] >= FLOOD_MESSAGES - 8, stats
    await mallory.send(json.dumps({"colibriClass": "ClientHello"}))
    while (await recv_json(mallory, 5))["colibriClass"] != "ServerHello":
        pass
    await mallory.close()
    await alice.close()

"""The bridge channel over an SCTP data channel, against a running bridge.

Two aiortc participants join the way the focus would have them join: a Colibri allocation with
the ``data`` content (an ``sctpconnection``), the focus's Jingle offer rendered as SDP (audio,
video and ``m=application ... webrtc-datachannel``, all BUNDLEd on the one transport), their SDP
answer PATCHed back. The bridge opens the data channel on each endpoint's DTLS association;
bridge-channel messages then round-trip over it and mix with a WebSocket-only endpoint.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.integration.datachannel_client import EXPIRE, DataChannelParticipant
from tests.integration.media_client import allow_loopback_ice
from tests.integration.participant import wait_until
from tests.integration.test_bridge_control_support import RunningBridge, dumps, start_bridge


@pytest.fixture(scope="module")
def bridge() -> Iterator[RunningBridge]:
    b = start_bridge("bridge-sctp", server_id="jvbsctp")
    try:
        yield b
    finally:
        b.process.stop()


async def web_socket_endpoint(http: httpx.AsyncClient, conference_id: str, name: str) -> ClientConnection:
    """An endpoint with an audio channel only and no media: it talks over the Colibri WebSocket."""
    body = {
        "contents": [{"name": "audio", "channels": [{"endpoint": name, "expire": EXPIRE}]}],
        "channel-bundles": [{"id": name, "transport": {"rtcp-mux": True}}],
    }
    r = await http.patch(f"/colibri/conferences/{conference_id}", content=dumps(body))
    assert r.status_code == 200, r.text
    url = next(b["transport"]["web-socket"] for b in r.json()["channel-bundles"] if b["id"] == name)
    ws = await connect(url)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["colibriClass"] == "ServerHello"
    return ws


async def ws_next(ws: ClientConnection, colibri_class: str, within: float = 10.0) -> dict[str, Any]:
    async def loop() -> dict[str, Any]:
        while True:
            m = json.loads(await ws.recv())
            if m.get("colibriClass") == colibri_class:
                return m  # type: ignore[no-any-return]

    return await asyncio.wait_for(loop(), within)


async def test_bridge_channel_messages_round_trip_over_the_data_channel(
    bridge: RunningBridge, http: httpx.AsyncClient
) -> None:
    allow_loopback_ice()
    a = DataChannelParticipant("a", (220, 30, 30), 330.0)
    b = DataChannelParticipant("b", (30, 220, 30), 550.0)
    ws_c: ClientConnection | None = None
    try:
        cid = await a.join(http, None)
        await b.join(http, cid)
        # the data section is offered and answered on the one BUNDLEd transport
        for p in (a, b):
            assert "m=application 9 UDP/DTLS/SCTP webrtc-datachannel" in p.offer_sdp
            assert "a=group:BUNDLE audio video data" in p.offer_sdp
            assert "m=application" in p.answer_sdp and "a=sctp-port:5000" in p.answer_sdp
        # the bridge opens the channel (label "default", as jitsi-videobridge) and says hello on it
        for p in (a, b):
            hello = await p.next("ServerHello", within=30)
            assert p.channel is not None and p.channel.label == "default"
            assert "version" in hello
        # EndpointMessage: A -> B over both data channels, with from = A
        a.send({"colibriClass": "EndpointMessage", "to": "b", "msgPayload": {"text": "hi b"}})
        got = await b.next("EndpointMessage")
        assert got == {
            "colibriClass": "EndpointMessage",
            "to": "b",
            "msgPayload": {"text": "hi b"},
            "from": "a",
        }
        # ClientHello is answered on the channel it came in on
        b.send({"colibriClass": "ClientHello"})
        await b.next("ServerHello")
        # media steering over the data channel takes effect: ForwardedSources comes back on it
        a.send({"colibriClass": "ReceiverVideoConstraints", "lastN": 0})
        assert (await a.next("ForwardedSources", forwardedSources=[]))["forwardedSources"] == []
        a.send({"colibriClass": "LastNChangedEvent", "lastN": 1})
        forwarded = await a.next("ForwardedSources", forwardedSources=["b-v0"])
        assert forwarded["forwardedSources"] == ["b-v0"]
        # a WebSocket-only endpoint and data-channel endpoints reach each other
        ws_c = await web_socket_endpoint(http, cid, "c")
        await ws_c.send(json.dumps({"colibriClass": "EndpointMessage", "to": "a", "msgPayload": "from c"}))
        got = await a.next("EndpointMessage", msgPayload="from c")
        assert got["from"] == "c"
        await ws_c.send(json.dumps({"colibriClass": "EndpointMessage", "to": "", "msgPayload": "all"}))
        assert (await a.next("EndpointMessage", msgPayload="all"))["from"] == "c"
        assert (await b.next("EndpointMessage", msgPayload="all"))["from"] == "c"
        b.send({"colibriClass": "EndpointStats", "bitrate": {"upload": 5}})
        stats = await ws_next(ws_c, "EndpointStats")
        assert stats == {"colibriClass": "EndpointStats", "bitrate": {"upload": 5}, "from": "b"}
        assert (await a.next("EndpointStats"))["from"] == "b"
        debug = (await http.get("/debug")).json()
        endpoints = {e["id"]: e for c in debug["conferences"] if c["id"] == cid for e in c["endpoints"]}
        assert endpoints["a"]["data_channel"] and endpoints["b"]["data_channel"]
        assert endpoints["a"]["bridge_channel"] == "datachannel"
        assert endpoints["c"]["bridge_channel"] == "websocket" and not endpoints["c"]["data_channel"]
        assert endpoints["a"]["state"] == "connected"
    finally:
        if ws_c is not None:
            await ws_c.close()
        await a.close()
        await b.close()
    # the participants hung up (DTLS closed under live SCTP associations): cleaned up quietly
    assert await wait_until(
        lambda: "endpoint failed conference=" + cid + " endpoint=b" in bridge.process.log(), 10
    )
    await asyncio.sleep(0.5)
    assert "Traceback" not in bridge.process.log(), bridge.process.log()

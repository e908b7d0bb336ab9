"""Bridge-channel relay over SCTP data channels against the Colibri WebSocket, on one running bridge.

Run: .venv/bin/python -m bench.bridge_datachannel (from the repository root). Two aiortc endpoints
whose bridge channel is the data channel the bridge opens, and two WebSocket-only endpoints, in one
conference. For each transport: ``EndpointMessage`` A->B one at a time (send, wait for it at B:
p50/p95), then a burst of messages (deliveries/s) with the bridge process's CPU time per relayed
message. Prints figures; never fails on timing.
"""

import asyncio
import json
import os
import time

import httpx
from websockets.asyncio.client import connect

from tests.integration.datachannel_client import EXPIRE, DataChannelParticipant
from tests.integration.media_client import allow_loopback_ice
from tests.integration.test_bridge_control_support import UNBUDGETED, dumps, start_bridge

ROUND_TRIPS = 500
BURST = 2000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def web_socket(http, cid, name):
    body = {
        "contents": [{"name": "audio", "channels": [{"endpoint": name, "expire": EXPIRE}]}],
        "channel-bundles": [{"id": name, "transport": {"rtcp-mux": True}}],
    }
    r = await http.patch(f"/colibri/conferences/{cid}", content=dumps(body))
    url = next(b["transport"]["web-socket"] for b in r.json()["channel-bundles"] if b["id"] == name)
    ws = await connect(url)
    await ws.recv()  # ServerHello
    return ws


async def measure(name, send, receive, pid):
    rtts = []
    for i in range(ROUND_TRIPS):
        t = time.perf_counter()
        await send(
            {
                "colibriClass": "EndpointMessage",
                "to": "b" if name == "data channel" else "w2",
                "msgPayload": i,
            }
        )
        await receive()
        rtts.append(time.perf_counter() - t)
    cpu0, t = cpu_seconds(pid), time.perf_counter()
    for i in range(BURST):
        await send(
            {
                "colibriClass": "EndpointMessage",
                "to": "b" if name == "data channel" else "w2",
                "msgPayload": i,
            }
        )
    for _ in range(BURST):
        await receive()
    dt, cpu = time.perf_counter() - t, cpu_seconds(pid) - cpu0
    print(
        f"{name:13s} EndpointMessage A->B p50={pct(rtts, 50) * 1e3:6.2f} ms p95={pct(rtts, 95) * 1e3:6.2f} ms | "
        f"burst {BURST}: {BURST / dt:7,.0f} msg/s, bridge CPU {cpu / BURST * 1e6:6.1f} µs/msg"
    )


async def main():
    allow_loopback_ice()
    # relay throughput is measured here, not the per-endpoint relay budget (docs/security.md)
    b = start_bridge("bench-datachannel", UNBUDGETED)
    pid = b.process.proc.pid
    a, bb = DataChannelParticipant("a", media=False), DataChannelParticipant("b", media=False)
    try:
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as http:
            cid = await a.join(http, None)
            await bb.join(http, cid)
            for p in (a, bb):
                hello = await asyncio.wait_for(p.inbox.get(), 30)
                assert hello["colibriClass"] == "ServerHello", hello
            w1, w2 = await web_socket(http, cid, "w1"), await web_socket(http, cid, "w2")

        async def dc_send(m):
            a.send(m)
            await asyncio.sleep(0)

        await measure("data channel", dc_send, bb.inbox.get, pid)
        await measure("WebSocket", lambda m: w1.send(json.dumps(m)), w2.recv, pid)
        await w1.close()
        await w2.close()
    finally:
        await a.close()
        await bb.close()
        b.process.stop()


asyncio.run(main())

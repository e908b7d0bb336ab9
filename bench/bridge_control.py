"""Colibri REST request latency and bridge-channel relay latency against a running bridge.

Run: .venv/bin/python -m bench.bridge_control (from the repository root). Prints p50/p95 per request kind
and WebSocket relay figures; never fails on timing.
"""

import asyncio
import json
import time

import httpx
from websockets.asyncio.client import connect

from tests.integration.test_bridge_control_support import UNBUDGETED, example, start_bridge


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def main():
    # relay throughput is measured here, not the per-endpoint relay budget (docs/security.md)
    b = start_bridge("bench", UNBUDGETED)
    try:
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as http:
            create, alloc, answer = [], [], []
            for _conference in range(10):
                t = time.perf_counter()
                cid = (await http.post("/colibri/conferences", content=b"[]")).json()["id"]
                create.append(time.perf_counter() - t)
                for e in range(10):
                    body = (
                        example("rest_colibri_allocate_patch.json")
                        .replace(b"a439deb315b4128c", cid.encode())
                        .replace(b"9f537ebb-1c2a-4ee9-9940-373304f9b260", f"ep{e}".encode())
                    )
                    t = time.perf_counter()
                    out = (await http.patch(f"/colibri/conferences/{cid}", content=body)).json()
                    alloc.append(time.perf_counter() - t)
                    a, v, d = out["contents"]
                    ans = (
                        example("rest_colibri_answer_patch.json")
                        .replace(b"a439deb315b4128c", cid.encode())
                        .replace(b"9f537ebb-1c2a-4ee9-9940-373304f9b260", f"ep{e}".encode())
                    )
                    ans = (
                        ans.replace(b"e4023f2a35c47d57", a["channels"][0]["id"].encode())
                        .replace(b"f52e248a094d3334", v["channels"][0]["id"].encode())
                        .replace(b"5c258c1a66d1c021", d["sctpconnections"][0]["id"].encode())
                    )
                    t = time.perf_counter()
                    r = await http.patch(f"/colibri/conferences/{cid}", content=ans)
                    answer.append(time.perf_counter() - t)
                    assert r.status_code == 200
            for name, xs in (
                ("POST conference", create),
                ("PATCH allocate endpoint", alloc),
                ("PATCH answer", answer),
            ):
                print(
                    f"{name:26s} n={len(xs):4d} p50={pct(xs, 50) * 1e3:6.2f} ms p95={pct(xs, 95) * 1e3:6.2f} ms"
                )
            urls = {x["id"]: x["transport"]["web-socket"] for x in out["channel-bundles"]}
            conf = (await http.get(f"/colibri/conferences/{cid}")).json()
            urls = {x["id"]: x["transport"]["web-socket"] for x in conf["channel-bundles"]}
        socks = {e: await connect(u) for e, u in urls.items()}
        for s in socks.values():
            await s.recv()
        a, bb = socks["ep0"], socks["ep1"]
        rtts = []
        for i in range(500):
            t = time.perf_counter()
            await a.send(json.dumps({"colibriClass": "EndpointMessage", "to": "ep1", "msgPayload": i}))
            await bb.recv()
            rtts.append(time.perf_counter() - t)
        print(
            f"{'EndpointMessage A->B':26s} n={len(rtts):4d} p50={pct(rtts, 50) * 1e3:6.2f} ms p95={pct(rtts, 95) * 1e3:6.2f} ms"
        )
        n = 300
        t = time.perf_counter()
        for i in range(n):
            await a.send(json.dumps({"colibriClass": "EndpointMessage", "to": "", "msgPayload": i}))
        others = [s for e, s in socks.items() if e != "ep0"]
        for s in others:
            for _ in range(n):
                await s.recv()
        dt = time.perf_counter() - t
        print(f"broadcast to 9 endpoints: {n * 9 / dt:,.0f} deliveries/s ({n} messages)")
        for s in socks.values():
            await s.close()
    finally:
        b.process.stop()


asyncio.run(main())

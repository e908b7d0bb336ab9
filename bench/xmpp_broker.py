"""Benchmark: the Parley XMPP broker vs Debian's Prosody, side by side in one run.

For each server and transport (TCP c2s, WebSocket): a focus account creates a room; N clients join
it one after another (serial join latency: presence sent -> room subject received, the end of a
join); the focus
leaves; every client then sends its share of a groupchat burst as fast as it can, and the script
counts deliveries until every client has every message. It reports deliveries/s, join p50/p95,
and the server's CPU seconds and RSS. Finally it opens many idle authenticated connections and
reports the server's RSS.

The load clients are lean: raw asyncio sockets (and websockets' sans-I/O framing for WebSocket),
counting ``</body>`` occurrences instead of parsing XML.

Each run also reports the server's CPU time per delivery and how long the server was runnable but
waited for a CPU (the machine's other load): on a busy machine deliveries/s mostly measures that
wait, while CPU per delivery stays comparable. Rounds alternate the servers.

Usage: .venv/bin/python bench/xmpp_broker.py [--clients 50] [--messages 1000] [--idle 1000]
       [--rounds 3] [--servers parley,prosody,prosody-gengc] [--transports tcp,websocket]
       [--prosody-config 'lua settings']
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scramp import ScramClient  # noqa: E402
from websockets.client import ClientProtocol  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

from tests.integration.xmpp_interop.servers import (  # noqa: E402
    FOCUS_PASSWORD,
    prosody_server,
    start_parley,
)

HEADER = (
    "<?xml version='1.0'?><stream:stream to='{host}' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{host}' version='1.0'/>"
MUC = "muc.meet.jitsi"
# On top of the production configuration of tests/integration/prosody.py: Nagle off, as asyncio
# (Parley's broker) sets TCP_NODELAY on every connection.
PROSODY_BENCH_CONFIG = "network_settings = { tcp_backlog = 511; nagle = false }\n"
# Prosody as deployed (Lua's incremental collector at Prosody's aggressive default settings), and
# with the generational collector of Lua 5.4 (Prosody's `gc` option): the same groupchat burst
# costs Prosody about 45 % less CPU with it.
PROSODY_VARIANTS = {"prosody": "", "prosody-gengc": 'gc = { mode = "generational" }\n'}


class LeanClient(asyncio.Protocol):
    """Raw XMPP client: waits for substrings, counts groupchat bodies."""

    def __init__(self, ws_url: str | None = None) -> None:
        self.buf = bytearray()
        self.waiter: tuple[bytes, asyncio.Future[bytes]] | None = None
        self.counting = False
        self.bodies = 0
        self.bytes_counted = 0
        self.tail = b""
        self.target = 0
        self.done: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.ws: ClientProtocol | None = None
        self.ws_url = ws_url
        self.handshake: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:  # no Nagle delay on request/response (joins)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ws_url is not None:
            self.ws = ClientProtocol(parse_uri(self.ws_url), subprotocols=["xmpp"], max_size=None)  # type: ignore[list-item]
            self.ws.send_request(self.ws.connect())
            transport.writelines(self.ws.data_to_send())  # type: ignore[attr-defined]
            self.handshake = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.receive_data(data)
            out = self.ws.data_to_send()
            if out:
                self.transport.writelines(out)  # type: ignore[union-attr]
            if (
                self.handshake is not None
                and not self.handshake.done()
                and self.ws.handshake_exc is None
                and self.ws.state.name == "OPEN"
            ):
                self.handshake.set_result(None)
            for ev in self.ws.events_received():
                if isinstance(ev, Frame) and ev.opcode is Opcode.TEXT:
                    self._xmpp(bytes(ev.data))
            return
        self._xmpp(data)

    def _xmpp(self, data: bytes) -> None:
        if self.counting:
            self.bytes_counted += len(data)
            joined = self.tail + data
            self.bodies += joined.count(b"</body>")
            self.tail = joined[-6:]
            if self.bodies >= self.target and self.done is not None and not self.done.done():
                self.done.set_result(None)
            return
        self.buf += data
        if self.waiter is not None and self.waiter[0] in self.buf:
            _needle, fut = self.waiter
            self.waiter = None
            out = bytes(self.buf)
            self.buf.clear()
            if not fut.done():  # a waiter that timed out is already cancelled
                fut.set_result(out)

    def send(self, text: str) -> None:
        data = text.encode()
        if self.ws is not None:
            self.ws.send_text(data)
            self.transport.writelines(self.ws.data_to_send())  # type: ignore[union-attr]
        else:
            self.transport.write(data)  # type: ignore[union-attr]

    async def expect(self, needle: str, wait: float = 20.0) -> bytes:
        key = needle.encode()
        if key in self.buf:
            out = bytes(self.buf)
            self.buf.clear()
            return out
        fut = asyncio.get_running_loop().create_future()
        self.waiter = (key, fut)
        return await asyncio.wait_for(fut, wait)


async def connect(
    port: int, http_port: int, transport: str, host: str, user: str | None = None, password: str = ""
) -> LeanClient:
    loop = asyncio.get_running_loop()
    url = f"ws://127.0.0.1:{http_port}/xmpp-websocket" if transport == "websocket" else None
    _, client = await loop.create_connection(lambda: LeanClient(url), "127.0.0.1", http_port if url else port)
    if client.handshake is not None:
        await asyncio.wait_for(client.handshake, 10)
    header = OPEN if url else HEADER
    client.send(header.format(host=host))
    await client.expect("features>")
    if user is None:
        client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    else:  # SCRAM-SHA-1: the broker offers PLAIN only over TLS
        scram = ScramClient(["SCRAM-SHA-1"], user, password)
        first = base64.b64encode(scram.get_client_first().encode()).decode()
        client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{first}</auth>")
        challenge = (await client.expect("</challenge>")).decode()
        text = challenge.split("</challenge>")[0].rsplit(">", 1)[1]
        scram.set_server_first(base64.b64decode(text).decode())
        final = base64.b64encode(scram.get_client_final().encode()).decode()
        client.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>")
    await client.expect("success")
    client.send(header.format(host=host))
    await client.expect("features>")
    client.send(
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
    )
    await client.expect("</iq>")
    return client


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def sched_times(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of a process's threads, from
    schedstat (nanosecond resolution). The wait is how much of a run's wall time the machine's
    other load took away from the server."""
    on_cpu = waiting = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                fields = f.read().split()
        except OSError:
            continue
        on_cpu += int(fields[0])
        waiting += int(fields[1])
    return on_cpu / 1e9, waiting / 1e9


async def run_burst(
    pid: int, port: int, http_port: int, transport: str, n: int, messages: int, room: str
) -> dict:
    focus = await connect(port, http_port, transport, "auth.meet.jitsi", "focus", FOCUS_PASSWORD)
    focus.send(
        f"<presence xmlns='jabber:client' to='{room}/focus'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    await focus.expect("code='110'")
    clients = [await connect(port, http_port, transport, "meet.jitsi") for _ in range(n)]
    joins = []
    for i, c in enumerate(clients):
        t0 = time.perf_counter()
        c.send(
            f"<presence xmlns='jabber:client' to='{room}/u{i}'><x xmlns='http://jabber.org/protocol/muc'/>"
            f"<nick xmlns='http://jabber.org/protocol/nick'>user {i}</nick></presence>"
        )
        await c.expect("subject")
        joins.append((time.perf_counter() - t0) * 1000)
    focus.send(f"<presence xmlns='jabber:client' to='{room}/focus' type='unavailable'/>")
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[None]] = []
    for c in clients:
        c.buf.clear()
        c.counting = True
        c.target = messages
        c.done = loop.create_future()
        done.append(c.done)
    per_client = messages // n
    cpu0, wait0 = sched_times(pid)
    t0 = time.perf_counter()
    for k in range(per_client):
        for i, c in enumerate(clients):
            c.send(
                f"<message xmlns='jabber:client' to='{room}' type='groupchat' id='m{i}-{k}'>"
                f"<body>burst message {k} from {i}</body></message>"
            )
        if k % 5 == 4:
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*done), 120)
    elapsed = time.perf_counter() - t0
    cpu1, wait1 = sched_times(pid)
    rss = rss_bytes(pid)
    deliveries = per_client * n * n
    received = sum(c.bytes_counted for c in clients)
    for c in [*clients, focus]:
        c.transport.close()  # type: ignore[union-attr]
    joins.sort()
    return {
        "deliveries_per_s": deliveries / elapsed,
        "deliveries": deliveries,
        "seconds": elapsed,
        "join_p50_ms": statistics.median(joins),
        "join_p95_ms": joins[int(len(joins) * 0.95) - 1],
        "server_cpu_s": cpu1 - cpu0,
        "server_cpu_us_per_delivery": (cpu1 - cpu0) / deliveries * 1e6,
        "server_runqueue_wait_s": wait1 - wait0,
        "server_rss_mb": rss / 2**20,
        "bytes_per_delivery": received / deliveries,
    }


async def run_idle(pid: int, port: int, count: int) -> dict:
    rss0 = rss_bytes(pid)
    clients = []
    for _ in range(count):
        clients.append(await connect(port, 0, "tcp", "meet.jitsi"))
    await asyncio.sleep(1)
    rss = rss_bytes(pid)
    for c in clients:
        c.transport.close()  # type: ignore[union-attr]
    return {"idle_connections": count, "server_rss_mb": rss / 2**20, "rss_before_mb": rss0 / 2**20}


def report(server: str, transport: str, r: dict) -> None:
    print(
        f"{server:8s} {transport:9s} deliveries/s={r['deliveries_per_s']:8.0f} "
        f"({r['deliveries']} in {r['seconds']:.2f}s, {r['bytes_per_delivery']:.0f} B each)  "
        f"join p50={r['join_p50_ms']:.1f}ms p95={r['join_p95_ms']:.1f}ms  "
        f"server cpu={r['server_cpu_s']:.2f}s ({r['server_cpu_us_per_delivery']:.1f}us/delivery) "
        f"waited for a cpu={r['server_runqueue_wait_s']:.2f}s  rss={r['server_rss_mb']:.0f}MB  "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )


def summarize(results: dict[tuple[str, str], list[dict]]) -> None:
    """Medians over the rounds. CPU per delivery is the figure the machine's other load disturbs
    least; deliveries/s also counts the time the server waited for a CPU."""
    print("\nmedians over rounds:", flush=True)
    for (server, transport), runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"{server:8s} {transport:9s} deliveries/s={med['deliveries_per_s']:8.0f}  "
            f"server cpu {med['server_cpu_us_per_delivery']:.1f}us/delivery "
            f"(= {1e6 / med['server_cpu_us_per_delivery']:.0f} deliveries per cpu-second)  "
            f"join p50={med['join_p50_ms']:.1f}ms  waited for a cpu={med['server_runqueue_wait_s']:.2f}s "
            f"of {med['seconds']:.2f}s",
            flush=True,
        )


async def bench(servers: dict[str, tuple[int, int, int]], args: argparse.Namespace) -> None:
    """Rounds alternate the servers, so a change in the machine's load hits both alike."""
    results: dict[tuple[str, str], list[dict]] = {}
    run = 0
    for _ in range(args.rounds):
        for transport in args.transports.split(","):
            for name, (pid, port, http_port) in servers.items():
                run += 1
                room = f"bench{run}@{MUC}"
                r = await run_burst(pid, port, http_port, transport, args.clients, args.messages, room)
                report(name, transport, r)
                results.setdefault((name, transport), []).append(r)
                await asyncio.sleep(1)
    summarize(results)
    if args.idle:
        for name, (pid, port, _http) in servers.items():
            r = await run_idle(pid, port, args.idle)
            print(
                f"{name:8s} idle      {r['idle_connections']} authenticated idle connections: "
                f"rss={r['server_rss_mb']:.0f}MB (before {r['rss_before_mb']:.0f}MB)",
                flush=True,
            )
            await asyncio.sleep(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="parley,prosody,prosody-gengc")
    ap.add_argument("--transports", default="tcp,websocket")
    ap.add_argument(
        "--prosody-config",
        default="",
        help="more global Prosody settings (Lua), e.g. to try a network or GC setting",
    )
    args = ap.parse_args()
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print(
        f"{args.clients} clients in one room, {args.messages} groupchat messages "
        f"({args.messages // args.clients * args.clients * args.clients} deliveries), {args.rounds} rounds; "
        f"load: {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[int, int, int]] = {}
        for server in args.servers.split(","):
            if server == "parley":
                proc, ep = start_parley(
                    "xmpp-bench", XMPP_IDLE_TIMEOUT="0", LOG_LEVEL="WARNING", XMPP_WS_KEEPALIVE_INTERVAL="0"
                )
                stack.callback(proc.stop)
                assert proc.proc is not None
                servers["parley"] = (proc.proc.pid, ep.c2s_port, ep.http_port)
            elif server in PROSODY_VARIANTS:
                settings = PROSODY_BENCH_CONFIG + PROSODY_VARIANTS[server] + args.prosody_config
                prosody, ep = stack.enter_context(prosody_server(log_level="warn", extra_config=settings))
                servers[server] = (prosody.pid, ep.c2s_port, ep.http_port)
            else:
                ap.error(f"unknown server {server!r}")
        asyncio.run(bench(servers, args))


if __name__ == "__main__":
    main()

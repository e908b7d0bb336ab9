"""Benchmark: what each attack on the XMPP broker costs the well-behaved clients.

50 clients (``--clients``) log in to a real Parley broker over TCP and ping it every 100 ms.
After a quiet window, each attack runs for 10 s (``--attack-seconds``) from another process,
then the broker gets 30 s (``--after``) to give memory back. The script prints the clients'
ping p50/p99 during each attack against the quiet figures, the broker's RSS before, at most
during and after, and the broker's CPU seconds during the attack.

Targets (docs/security.md): p99 within 2x of the quiet p99; RSS back within 5 MB.

Attacks: ``tag`` (an unterminated start tag of 20 MB), ``header`` (a stream header of 20 MB),
``deep`` (IQs nested 2,000 deep to the focus address), ``wsdeep`` (WebSocket frames nested 2,000
deep without xmlns), ``partial`` (20 connections holding a partial stanza of 9,000 elements),
``noread`` (a client that never reads while it is flooded), ``noack`` (a client that never
acknowledges XEP-0198 while it is flooded), ``guess`` (service-account password guessing).

Usage: .venv/bin/python bench/abuse.py [--clients 50] [--attack-seconds 10] [--after 30]
       [--attacks tag,header,...]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scramp import ScramClient  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402
from xmpp_broker import HEADER, connect, rss_bytes, sched_times  # noqa: E402

from tests.integration.xmpp_interop.servers import start_parley  # noqa: E402

DOMAIN = "meet.jitsi"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
LOADAVG = Path("/proc/loadavg")


# -- the attacker's side: blocking sockets, in its own process ------------------------------------
def recv_until(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while needle not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def login(port: int, rcvbuf: int = 0) -> tuple[socket.socket, str]:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(HEADER.format(host=DOMAIN).encode())
    recv_until(sock, b"</stream:features>")
    sock.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    recv_until(sock, b"<success")
    sock.sendall(HEADER.format(host=DOMAIN).encode())
    recv_until(sock, b"</stream:features>")
    sock.sendall(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    out = recv_until(sock, b"</iq>").decode()
    return sock, out.split("<jid>")[1].split("</jid>")[0]


def push(sock: socket.socket, total: int) -> None:
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    sock.close()


def attack_tag(port: int, http_port: int, until: float) -> None:
    while time.monotonic() < until:
        sock, _ = login(port)
        sock.sendall(b"<message to='x@meet.jitsi' a='")
        push(sock, 20 << 20)


def attack_header(port: int, http_port: int, until: float) -> None:
    while time.monotonic() < until:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"<?xml version='1.0'?><stream:stream to='meet.jitsi' a='")
        push(sock, 20 << 20)


def attack_deep(port: int, http_port: int, until: float) -> None:
    deep = ("<iq type='get' id='d' to='focus.meet.jitsi'>" + "<a>" * 2000 + "</a>" * 2000 + "</iq>").encode()
    while time.monotonic() < until:
        sock, _ = login(port)
        sock.sendall(deep)
        recv_until(sock, b"</stream:stream>")
        sock.close()


def attack_wsdeep(port: int, http_port: int, until: float) -> None:
    deep = "<iq type='get' id='d' to='focus.meet.jitsi'>" + "<a>" * 2000 + "</a>" * 2000 + "</iq>"
    while time.monotonic() < until:
        try:
            with ws_connect(f"ws://127.0.0.1:{http_port}/xmpp-websocket", subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
                ws.send(f"<open xmlns='{FRAMING}' to='{DOMAIN}' version='1.0'/>")
                ws.send(deep)
                while True:
                    ws.recv(timeout=5)
        except (WebSocketException, TimeoutError, OSError):
            pass


def attack_partial(port: int, http_port: int, until: float) -> None:
    held = []
    for _ in range(20):
        sock, _ = login(port)
        sock.sendall(b"<message to='x@meet.jitsi'>" + b"<a/>" * 9000)
        held.append(sock)
    while time.monotonic() < until:
        time.sleep(0.2)
    for sock in held:
        sock.close()


def flood(port: int, until: float, victim_setup: Callable[[socket.socket], None], rcvbuf: int) -> None:
    sender, _ = login(port)
    body = "y" * 8192
    while time.monotonic() < until:
        victim, jid = login(port, rcvbuf)
        victim_setup(victim)
        msg = f"<message to='{jid}' type='chat'><body>{body}</body></message>".encode()
        for i in range(4000):
            if time.monotonic() > until:
                break
            sender.sendall(msg)
            if i % 200 == 199:  # stay in step with the broker, and notice when the victim is gone
                sender.sendall(
                    f"<iq type='get' id='s{i}' to='meet.jitsi'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
                )
                if b"service-unavailable" in recv_until(sender, f"id='s{i}'".encode()):
                    break
        victim.close()
    sender.close()


def attack_noread(port: int, http_port: int, until: float) -> None:
    flood(port, until, lambda v: None, 4096)


def attack_noack(port: int, http_port: int, until: float) -> None:
    def enable(victim: socket.socket) -> None:
        victim.sendall(b"<enable xmlns='urn:xmpp:sm:3'/>")
        recv_until(victim, b"enabled")
        victim.setblocking(False)

    sender, _ = login(port)
    body = "y" * 1024
    while time.monotonic() < until:
        victim, jid = login(port)
        enable(victim)
        msg = f"<message to='{jid}' type='chat'><body>{body}</body></message>".encode()
        closed = False
        while not closed and time.monotonic() < until:
            for _ in range(50):
                sender.sendall(msg)
            try:  # read everything, acknowledge nothing
                while True:
                    data = victim.recv(1 << 20)
                    if not data or b"policy-violation" in data:
                        closed = True
                        break
            except BlockingIOError:
                pass
            except OSError:  # the broker cut it off (and reset the socket)
                closed = True
            time.sleep(0.01)
        victim.close()
    sender.close()


def attack_guess(port: int, http_port: int, until: float) -> None:
    while time.monotonic() < until:
        sock = socket.create_connection(("127.0.0.1", port))
        try:
            sock.sendall(HEADER.format(host="auth.meet.jitsi").encode())
            recv_until(sock, b"</stream:features>")
            for _ in range(3):
                scram = ScramClient(["SCRAM-SHA-1"], "focus", "guess")
                first = base64.b64encode(scram.get_client_first().encode()).decode()
                sock.sendall(
                    f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>{first}</auth>".encode()
                )
                out = recv_until(sock, b">", 5)
                if b"<challenge" in out:
                    out += recv_until(sock, b"</challenge>", 5) if b"</challenge>" not in out else b""
                    text = out.split(b"</challenge>")[0].rsplit(b">", 1)[1]
                    scram.set_server_first(base64.b64decode(text).decode())
                    final = base64.b64encode(scram.get_client_final().encode()).decode()
                    sock.sendall(
                        f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{final}</response>".encode()
                    )
                recv_until(sock, b"</failure>", 5)
        except OSError:
            pass
        finally:
            sock.close()


ATTACKS: dict[str, Callable[[int, int, float], None]] = {
    "tag": attack_tag,
    "header": attack_header,
    "deep": attack_deep,
    "wsdeep": attack_wsdeep,
    "partial": attack_partial,
    "noread": attack_noread,
    "noack": attack_noack,
    "guess": attack_guess,
}


def run_attack(name: str, port: int, http_port: int, seconds: float) -> None:
    until = time.monotonic() + seconds
    try:
        ATTACKS[name](port, http_port, until)
    except Exception as exc:
        print(f"attacker {name}: {exc!r}", file=sys.stderr)


# -- the well-behaved side -------------------------------------------------------------------------
class Pingers:
    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.stop = False

    async def one(self, port: int, http_port: int, idx: int) -> None:
        client = await connect(port, http_port, "tcp", DOMAIN)
        n = 0
        while not self.stop:
            n += 1
            ident = f"p{idx}-{n}"
            t0 = time.monotonic()
            client.send(f"<iq type='get' id='{ident}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")
            try:
                await client.expect(f"id='{ident}'", wait=10)
                rtt = time.monotonic() - t0
            except TimeoutError:
                rtt = 10.0
            self.samples.append((t0, rtt))
            await asyncio.sleep(0.1)

    def window(self, start: float, end: float) -> list[float]:
        return sorted(rtt for t, rtt in self.samples if start <= t < end)


def load_average() -> str:
    return LOADAVG.read_text().split()[0]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def sample_rss(pid: int, seconds: float) -> list[int]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(rss_bytes(pid))
        await asyncio.sleep(0.5)
    return out


async def bench(args: argparse.Namespace) -> None:
    proc, endpoint = start_parley("abuse")
    assert proc.proc is not None
    pid = proc.proc.pid
    port, http_port = endpoint.c2s_port, endpoint.http_port
    pingers = Pingers()
    tasks = [asyncio.ensure_future(pingers.one(port, http_port, i)) for i in range(args.clients)]
    try:
        await asyncio.sleep(3)  # everyone logged in and pinging
        t0 = time.monotonic()
        rss_quiet = await sample_rss(pid, args.attack_seconds)
        quiet = pingers.window(t0, time.monotonic())
        q50, q99 = pct(quiet, 0.5), pct(quiet, 0.99)
        print(f"{args.clients} clients pinging every 100 ms; load {load_average()}")
        print(
            f"quiet: ping p50={q50:.1f}ms p99={q99:.1f}ms ({len(quiet)} pings)  rss={max(rss_quiet) / 2**20:.1f}MB"
        )
        print(f"{'attack':8} {'p50 ms':>8} {'p99 ms':>8} {'p99/quiet':>9} {'rss before':>10} {'max during':>10} "
              f"{'after':>8} {'back?':>5} {'cpu s':>6}")  # fmt: skip
        ctx = multiprocessing.get_context("spawn")
        for name in args.attacks.split(","):
            before = rss_bytes(pid)
            cpu0, _ = sched_times(pid)
            start = time.monotonic()
            attacker = ctx.Process(target=run_attack, args=(name, port, http_port, args.attack_seconds))
            attacker.start()
            during = await sample_rss(pid, args.attack_seconds)
            while attacker.is_alive():
                during.append(rss_bytes(pid))
                await asyncio.sleep(0.5)
            end = time.monotonic()
            cpu1, _ = sched_times(pid)
            pings = pingers.window(start, end)
            after_samples = await sample_rss(pid, args.after)
            after = after_samples[-1]
            p50, p99 = pct(pings, 0.5), pct(pings, 0.99)
            if args.verbose:
                slow = [
                    (round(t - start, 2), round(rtt * 1000))
                    for t, rtt in pingers.samples
                    if start <= t < end and rtt > 0.3
                ]
                print(f"  slow pings (s after start, ms): {slow[:40]}")
            back = after - before <= 5 * 2**20
            print(f"{name:8} {p50:8.1f} {p99:8.1f} {p99 / q99:9.2f} {before / 2**20:10.1f} {max(during) / 2**20:10.1f} "
                  f"{after / 2**20:8.1f} {'yes' if back else 'NO':>5} {cpu1 - cpu0:6.2f}")  # fmt: skip
    finally:
        pingers.stop = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--attack-seconds", type=float, default=10.0)
    parser.add_argument("--after", type=float, default=30.0)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--verbose", action="store_true", help="list the pings slower than 300 ms")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()

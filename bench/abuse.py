"""Benchmark: what each attack on the XMPP broker costs the well-behaved clients and a meeting.

The whole stack runs as ``./parley up`` starts it (nginx, broker, focus, a bridge, web) on free
ports; a three-party meeting runs in real Chromium (fake camera) through nginx, and 50 clients
(``--clients``) log in to the broker over TCP and ping it every 100 ms. After a quiet window,
each attack runs for 10 s (``--attack-seconds``) from another process, in rounds (below), and after
its last round the stack gets 30 s (``--after``) to give memory back. The script prints, for each attack against the quiet figures:
the clients' ping p50/p99, the meeting's received frame rate (frames decoded per second from the
pages' getStats, mean and lowest over the six remote videos), and each service's RSS before, at
most during and 30 s after (plus the broker's CPU seconds). ``--no-meeting`` runs the broker alone.

Targets (docs/security.md): p99 within 2x of the quiet p99; no frame-rate drop; RSS back within 5 MB.

What the ping ratio measures: the broker's cost to the others, not the attacker's. With the meeting
keeping the 2 cores of the reference machine about 130 % busy, one 10 s window's p99 (its ~47th
slowest ping of ~5,000) moves by several times from one quiet window to the next, so a single
attack window against a single quiet window cannot tell a real slowdown from noise. Each attack
therefore runs ``--rounds`` (3) rounds, each a quiet window of ``--attack-seconds`` immediately
followed by the attack for as long (``--gap`` seconds, 5, between a round's end and the next
round's quiet window), so quiet and attack windows interleave and share the machine's drift. The
summary compares the median of the attack windows' p99 with the median of the quiet windows' p99
(one bad window cannot decide it either way), and also pools the pings: the p99 of all the attack
windows' pings against that of all the quiet windows' (a slowdown that shows in every attack
window but stays under each window's p99 still shows there). Every window's own figures are
printed too, with the old single-window ratios: ``p99/q`` against the quiet window at the start,
``p99/pre`` against the quiet window just before (for ``presence``, with the flooder already in the
room). An attack window lasts until the attacker process has ended (an attack blocked in a send
ends after its 10 s are up), and the broker's CPU is given as % of one core over each window. For
every attack the script prints the CPU each process on the machine used in the quiet and the attack
windows summed over the rounds (the services, the benchmark's own process with the ping clients,
each Chromium process, the attacker, anything else), and the run-queue wait of the broker and of
the benchmark's process (``/proc/<pid>/schedstat``: time runnable but waiting for a core).

The attacker stands for a machine elsewhere: on this one it must not take the CPU the stack and the
clients need, or its own work would be charged to the broker. It runs under ``SCHED_IDLE`` (Linux
sched(7); ``--attacker-policy``): it gets a core only when nothing else wants one, and any normal
task that wakes up preempts it at once, where nice 19 still gets a share of a busy core and delays
others' wake-ups (``--attacker-policy nice`` with ``--attacker-nice``, or ``none``). Its own CPU in
each attack window is printed (``attacker %``, % of one core). ``--profile DIR`` has py-spy record
the broker in every window (raw collapsed stacks, one file per window); it costs CPU itself, so
figures taken with it are not comparable.

Attacks: ``tag`` (an unterminated start tag of 20 MB), ``header`` (a stream header of 20 MB),
``deep`` (IQs nested 2,000 deep to the focus address), ``wsdeep`` (WebSocket frames nested 2,000
deep without xmlns), ``partial`` (20 connections holding a partial stanza of 9,000 elements),
``noread`` (a client that never reads while it is flooded), ``noack`` (a client that never
acknowledges XEP-0198 while it is flooded), ``guess`` (service-account password guessing),
``presence`` (a guest in the meeting's room sending presence updates as fast as it can),
``bosh`` (BOSH sessions opened from one address as fast as they are answered, and held).
Every attack connects to the broker's own ports (c2s TCP, or its HTTP port for ``wsdeep`` and
``bosh``), not through nginx, whose per-address limits (docs/security.md) would stop most of them
first; only the meeting goes through nginx. They come from 127.0.0.2 (``--attacker-address``), not
from the host's own 127.0.0.1, which the broker never limits (``limits.connection-exempt-networks``:
the focus, the bridges and nginx connect from there). ``presence`` joins the room first and its
quiet window starts 6 s later, once the pages have taken the new occupant in.

Usage: .venv/bin/python bench/abuse.py [--clients 50] [--attack-seconds 10] [--after 30]
       [--rounds 3] [--gap 5] [--attacks tag,header,...] [--attacker-policy idle|nice|none]
       [--profile DIR] [--no-meeting]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scramp import ScramClient  # noqa: E402
from websockets.exceptions import WebSocketException  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402
from xmpp_broker import HEADER, connect, rss_bytes, sched_times  # noqa: E402

from tests.integration.xmpp_interop.servers import start_parley  # noqa: E402

DOMAIN = "meet.jitsi"
MUC = "muc.meet.jitsi"
ROOM = ""  # the meeting's room, for the attacks that go into it
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


SOURCE = "127.0.0.2"  # the attacker's address (--attacker-address): another machine's, not the host's


def tcp(port: int, timeout: float | None = None) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(SOURCE, 0))


def login(port: int, rcvbuf: int = 0) -> tuple[socket.socket, str]:
    sock = socket.socket()
    sock.bind((SOURCE, 0))
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
        sock = tcp(port)
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
            url = f"ws://127.0.0.1:{http_port}/xmpp-websocket"
            with ws_connect(url, sock=tcp(http_port, 5), subprotocols=["xmpp"], proxy=None) as ws:  # type: ignore[list-item]
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
        try:
            sock = tcp(port)
        except OSError:
            continue
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


def attack_presence(port: int, http_port: int, until: float) -> None:
    sock, _ = login(port)
    room = ROOM or "abuse-room"
    sock.sendall(
        f"<presence to='{room}@{MUC}/flooder'><x xmlns='http://jabber.org/protocol/muc'/></presence>".encode()
    )
    recv_until(sock, b"code='110'", 10)
    deadline = time.monotonic() + JOIN_SETTLE
    with contextlib.suppress(OSError):
        sock.settimeout(0.5)
        while time.monotonic() < deadline:  # read what the room sends meanwhile
            with contextlib.suppress(TimeoutError):
                sock.recv(1 << 20)
    until = begin()
    sock.setblocking(False)
    n = 0
    while time.monotonic() < until:
        n += 1
        update = f"<presence to='{room}@{MUC}/flooder'><status>{n}</status><audiomuted>{n % 2}</audiomuted></presence>"
        try:
            sock.sendall(update.encode() * 20)
            while sock.recv(1 << 20):
                pass
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            break
    sock.close()


def attack_bosh(port: int, http_port: int, until: float) -> None:
    body = (
        b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='meet.jitsi' wait='60' hold='1' "
        b"ver='1.6' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
    )
    request = (
        f"POST /http-bind HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    held = []
    while time.monotonic() < until:
        try:
            sock = tcp(http_port, 5)
            sock.sendall(request)
            sock.recv(65536)
            held.append(sock)
        except OSError:
            time.sleep(0.01)
    for sock in held:
        sock.close()


JOINING = {"presence"}
ATTACKS: dict[str, Callable[[int, int, float], None]] = {
    "tag": attack_tag,
    "header": attack_header,
    "deep": attack_deep,
    "wsdeep": attack_wsdeep,
    "partial": attack_partial,
    "noread": attack_noread,
    "noack": attack_noack,
    "guess": attack_guess,
    "presence": attack_presence,
    "bosh": attack_bosh,
}


# attacks that first join the meeting's room start their measured window only once the meeting has
# taken the new occupant in (a joiner changes every page's layout, which is not the attack's doing)
JOIN_SETTLE = 6.0
READY: Any = None  # the parent's multiprocessing Events: the attacker is ready (joined, settled),
GO: Any = None  # and the parent has measured its quiet window just before the attack: go
CPU: Any = None  # the parent's shared double: the attacker's CPU seconds during its attack
SECONDS = 0.0
CPU_AT_GO = 0.0


def begin() -> float:
    """Ready: wait for the parent's quiet window, then start; returns when the attack ends."""
    global CPU_AT_GO
    READY.set()
    GO.wait(120)
    CPU_AT_GO = time.process_time()
    return time.monotonic() + SECONDS


def deprioritize(policy: str, nice: int) -> None:
    """Make this process stand for a machine elsewhere: it must not take the CPU the stack and the
    well-behaved clients need, or its own work would be charged to the server. ``idle``
    (``SCHED_IDLE``, Linux sched(7)): it runs only when a core has nothing else to run, and any
    normal task waking up preempts it at once; ``nice``: ``nice`` (19 still gets a share of a
    busy core, about 1.5 % of a nice-0 task's weight, and delays others' wake-ups); ``none``:
    it competes for the cores as a normal process."""
    if policy == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif policy == "nice":
        os.nice(nice)


def run_attack(
    name: str,
    port: int,
    http_port: int,
    seconds: float,
    room: str = "",
    policy: str = "idle",
    nice: int = 19,
    ready: Any = None,
    go: Any = None,
    source: str = SOURCE,
    cpu: Any = None,
) -> None:
    global ROOM, READY, GO, SECONDS, SOURCE, CPU
    ROOM, READY, GO, SECONDS, SOURCE, CPU = room, ready, go, seconds, source, cpu
    deprioritize(policy, nice)
    until = time.monotonic() + seconds
    if name not in JOINING:
        until = begin()
    try:
        ATTACKS[name](port, http_port, until)
    except Exception as exc:
        print(f"attacker {name}: {exc!r}", file=sys.stderr)
    if CPU is not None:
        CPU.value = time.process_time() - CPU_AT_GO


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


TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> tuple[str, int, float]:
    """(command name, parent pid, CPU seconds user+system of every thread) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK, steal / TICK


class CpuTable:
    """CPU seconds of every process on the machine over a window (``/proc/<pid>/stat``), labelled:
    the stack's services, the benchmark's own process (the ping clients and the meeting's driver),
    its Chromium processes by ``--type``, the attacker, and anything else by name; plus the
    run-queue wait (``/proc/<pid>/task/*/schedstat``: time runnable but waiting for a CPU) of the
    broker and of the benchmark's process."""

    def __init__(self, labels: dict[int, str]) -> None:
        self.labels = labels
        self.bench = os.getpid()

    def label(self, pid: int, comm: str, parents: dict[int, int]) -> str:
        if pid in self.labels:
            return self.labels[pid]
        if pid == self.bench:
            return "bench (pings, meeting driver)"
        up, seen = parents.get(pid), 0
        while up and seen < 20:
            if up in self.labels and self.labels[up] != "attacker":
                return f"{self.labels[up]} (child {comm})"
            if up == self.bench:
                if comm.startswith("chrom"):
                    with contextlib.suppress(OSError):
                        # Chromium rewrites its command line, separated by spaces
                        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
                        kind = next((a[7:].decode() for a in args if a.startswith(b"--type=")), "browser")
                        return f"chromium {kind} {pid}"
                with contextlib.suppress(OSError):  # the launcher's other services (-m services.<name>)
                    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    module = next((a.decode() for a in args if a.startswith(b"services.")), "")
                    if module:
                        return module.removeprefix("services.")
                return f"bench child {comm} {pid}"
            up, seen = parents.get(up), seen + 1
        return f"other: {comm}"

    def snapshot(self) -> dict[str, Any]:
        cpu: dict[int, tuple[str, float]] = {}
        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    comm, ppid, seconds = proc_stat(int(entry))
                    cpu[int(entry)] = (comm, seconds)
                    parents[int(entry)] = ppid
        waits = {}
        for name, pid in (("xmpp", self.broker), ("bench", self.bench)):
            with contextlib.suppress(OSError):
                waits[name] = sched_times(pid)
        return {
            "t": time.monotonic(),
            "cpu": cpu,
            "parents": parents,
            "waits": waits,
            "machine": machine_cpu(),
        }

    @property
    def broker(self) -> int:
        return next((pid for pid, name in self.labels.items() if name == "xmpp"), -1)

    def usage(self, first: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
        """CPU seconds per label between two snapshots (processes that ended in between are left out)."""
        out: dict[str, float] = {}
        for pid, (comm, seconds) in last["cpu"].items():
            before = first["cpu"].get(pid, (comm, 0.0))[1] if pid in first["cpu"] else 0.0
            name = self.label(pid, comm, last["parents"])
            out[name] = out.get(name, 0.0) + seconds - before
        return out


Snaps = tuple[dict[str, Any], dict[str, Any]]


def report_cpu(rounds: list[tuple[CpuTable, Snaps, Snaps]]) -> None:
    """The CPU per process over the quiet and the attack windows of every round, summed."""
    q: dict[str, float] = {}
    a: dict[str, float] = {}
    qt = at = 0.0
    for table, quiet, attack in rounds:
        for total, pair in ((q, quiet), (a, attack)):
            for n, v in table.usage(*pair).items():
                total[n] = total.get(n, 0.0) + v
        qt += quiet[1]["t"] - quiet[0]["t"]
        at += attack[1]["t"] - attack[0]["t"]
    rows = sorted(set(q) | set(a), key=lambda n: -max(q.get(n, 0.0) / qt, a.get(n, 0.0) / at))
    print(f"  {'process':40} {'quiet %':>8} {'attack %':>8}   (% of one core)")
    rest_q = rest_a = 0.0
    for n in rows:
        pq, pa = 100 * q.get(n, 0.0) / qt, 100 * a.get(n, 0.0) / at
        if max(pq, pa) >= 0.5:
            print(f"  {n:40} {pq:8.1f} {pa:8.1f}")
        else:
            rest_q, rest_a = rest_q + pq, rest_a + pa
    print(f"  {'(everything else)':40} {rest_q:8.1f} {rest_a:8.1f}")
    for label, index, t in (("quiet", 1, qt), ("attack", 2, at)):
        busy = steal = 0.0
        waits: dict[str, list[float]] = {}
        for entry in rounds:
            s0, s1 = entry[index]  # type: ignore[misc]
            busy += s1["machine"][0] - s0["machine"][0]
            steal += s1["machine"][1] - s0["machine"][1]
            for n in s0["waits"]:
                if n in s1["waits"]:
                    w = waits.setdefault(n, [0.0, 0.0])
                    w[0] += s1["waits"][n][0] - s0["waits"][n][0]
                    w[1] += s1["waits"][n][1] - s0["waits"][n][1]
        text = " ".join(
            f"{n} on-cpu {100 * cpu / t:.1f}% run-queue wait {1000 * wait / t:.1f} ms/s"
            for n, (cpu, wait) in waits.items()
        )
        print(
            f"  {label}: machine busy {100 * busy / t:.0f}% of one core (steal {100 * steal / t:.1f}%); {text}"
        )


def load_average() -> str:
    return LOADAVG.read_text().split()[0]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


class Services:
    """The processes whose memory is sampled: the broker alone, or every service of the stack."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: dict[str, list[int]] = {name: [] for name in pids}

    def sample(self) -> dict[str, int]:
        now = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError, StopIteration):
                now[name] = rss_bytes(pid)
        return now

    async def during(self, seconds: float) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {name: [] for name in self.pids}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for name, value in self.sample().items():
                out[name].append(value)
            await asyncio.sleep(0.5)
        return out


class Meeting(threading.Thread):
    """A three-party meeting in Chromium through nginx; samples every page's frames decoded per
    remote video (Playwright's sync API, all from this thread)."""

    def __init__(self, front: str, room: str, parties: int = 3) -> None:
        super().__init__(daemon=True)
        self.front, self.room, self.parties = front, room, parties
        self.samples: list[tuple[float, list[dict[str, int]]]] = []
        self.heights: list[tuple[float, list[int]]] = []  # every remote video's decoded frame height
        self.ready = threading.Event()
        self.failed: str | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        from tests.integration.browser import browsers

        try:
            with browsers() as pool:
                pages = []
                for i in range(self.parties):
                    page = pool.open()
                    page.goto(f"{self.front}/{self.room}?name=p{i}")
                    pages.append(page)
                deadline = time.monotonic() + 180
                while not self.stop.is_set():
                    stats = [self._stats(p) for p in pages]
                    counts = [{ep: int(s.get("framesDecoded", 0)) for ep, s in st.items()} for st in stats]
                    now = time.monotonic()
                    self.samples.append((now, counts))
                    self.heights.append(
                        (now, [int(s.get("frameHeight", 0)) for st in stats for s in st.values()])
                    )
                    if not self.ready.is_set():
                        flowing = len(self.samples) > 2 and all(
                            len(c) >= self.parties - 1 and all(v > 0 for v in c.values()) for c in counts
                        )
                        if flowing:
                            self.ready.set()
                        elif time.monotonic() > deadline:
                            self.failed = "the meeting never had every video decoding"
                            self.ready.set()
                    time.sleep(0.5)
        except Exception as exc:  # reported by the bench, which carries on without frame rates
            self.failed = repr(exc)
            self.ready.set()

    @staticmethod
    def _stats(page) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
        return page.evaluate("window.parley ? window.parley.videoStats() : {}")  # type: ignore[no-any-return]

    def height(self, start: float, end: float) -> float:
        """Mean decoded frame height of the remote videos in the window (the layer the bridge sends)."""
        values = [h for t, hs in self.heights if start <= t <= end for h in hs]
        return statistics.mean(values) if values else float("nan")

    def fps(self, start: float, end: float) -> tuple[float, float]:
        """(mean, lowest) frames decoded per second over every page's remote videos in the window."""
        inside = [(t, c) for t, c in self.samples if start <= t <= end]
        if len(inside) < 2:
            return float("nan"), float("nan")
        (t0, first), (t1, last) = inside[0], inside[-1]
        rates = []
        for before, after in zip(first, last, strict=True):
            for ep, n in after.items():
                rates.append((n - before.get(ep, 0)) / (t1 - t0))
        if not rates:
            return float("nan"), float("nan")
        return statistics.mean(rates), min(rates)


def start_stack(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The stack (or the broker alone) and what to sample: (stop, c2s port, http port, Services, front)."""
    if not args.meeting:
        proc, endpoint = start_parley("abuse")
        assert proc.proc is not None
        return proc.stop, endpoint.c2s_port, endpoint.http_port, Services({"xmpp": proc.proc.pid}), ""
    from tests.integration.browser import LauncherStack
    from tests.security.conftest import Stack

    launcher = LauncherStack(Path(tempfile.mkdtemp(prefix="parley-abuse-")) / "run", bridges=1).start()
    stack = Stack(launcher)
    off = stack.offset
    ports = {"xmpp": 5222, "focus": 8888, "bridge": 8080, "web": 8100, "nginx": 8000}
    pids = {}
    for name, port in ports.items():
        with contextlib.suppress(LookupError):
            pids[name] = stack.pid_listening(port + off)
    return launcher.stop, 5222 + off, 5280 + off, Services(pids), launcher.front


def mb(value: float) -> str:
    return f"{value / 2**20:.0f}"


def profile(args: argparse.Namespace, pid: int, label: str) -> subprocess.Popen[bytes] | None:
    """With ``--profile DIR``: py-spy samples the broker for one window (raw collapsed stacks)."""
    if not args.profile:
        return None
    out = Path(args.profile) / f"{label}.txt"
    spy = REPO / ".venv" / "bin" / "py-spy"
    cmd = [str(spy), "record", "-p", str(pid), "-d", f"{args.attack_seconds:.0f}", "-r", "200", "-f", "raw",
           "-o", str(out), "--nonblocking"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def one_round(  # type: ignore[no-untyped-def]
    args: argparse.Namespace,
    name: str,
    index: int,
    ctx,
    services: Services,
    pingers: Pingers,
    meeting: Meeting | None,
    port: int,
    http_port: int,
    room: str,
    during: dict[str, list[int]],
    q99: float,
) -> dict[str, Any]:
    """One quiet window, then the attack from a new attacker process; prints the round's line."""
    ready, go, cpu = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
    attacker = ctx.Process(
        target=run_attack,
        args=(name, port, http_port, args.attack_seconds, room, args.attacker_policy, args.attacker_nice,
              ready, go, args.attacker_address, cpu),
    )  # fmt: skip
    attacker.start()
    await asyncio.get_running_loop().run_in_executor(None, ready.wait, 60)
    broker_pid = services.pids["xmpp"]
    cpus = CpuTable({**{pid: n for n, pid in services.pids.items()}, attacker.pid or -1: "attacker"})
    spy = profile(args, broker_pid, f"{name}-{index + 1}-quiet")
    pre0, pre_start, b0 = cpus.snapshot(), time.monotonic(), sched_times(broker_pid)[0]
    await asyncio.sleep(args.attack_seconds)
    pre1, pre_end, b1 = cpus.snapshot(), time.monotonic(), sched_times(broker_pid)[0]
    pre = pingers.window(pre_start, pre_end)
    if spy is not None:
        await asyncio.get_running_loop().run_in_executor(None, spy.wait)
    spy = profile(args, broker_pid, f"{name}-{index + 1}-attack")
    go.set()
    start = time.monotonic()
    snap0 = cpus.snapshot()
    for n, values in (await services.during(args.attack_seconds)).items():
        during[n].extend(values)
    snap1 = cpus.snapshot()
    window_end = time.monotonic()
    while attacker.is_alive():
        for n, v in services.sample().items():
            during[n].append(v)
        await asyncio.sleep(0.5)
    end = time.monotonic()
    load = load_average()
    b2 = sched_times(broker_pid)[0]
    if spy is not None:
        await asyncio.get_running_loop().run_in_executor(None, spy.wait)
    pings = pingers.window(start, end)
    fps = meeting.fps(start, end) if meeting else (float("nan"), float("nan"))
    if args.verbose:
        slow = [
            (round(t - start, 2), round(rtt * 1000))
            for t, rtt in pingers.samples
            if start <= t < end and rtt > 0.3
        ]
        print(f"  slow pings (s after start, ms): {slow[:40]}")
    p50, p99 = pct(pings, 0.5), pct(pings, 0.99)
    r50, r99 = pct(pre, 0.5), pct(pre, 0.99)
    attacker_cpu = float(cpu.value)
    print(f"{name:8} {index + 1:5d} {r50:7.1f} {r99:7.1f} {p50:7.1f} {p99:7.1f} {p99 / q99:6.2f} {p99 / r99:7.2f} "
          f"{fps[0]:5.1f} {fps[1]:5.1f} {load:>5} {b2 - b1:6.2f} {b1 - b0:6.2f} "
          f"{100 * attacker_cpu / args.attack_seconds:10.1f}", flush=True)  # fmt: skip
    return {
        "pre": pre, "pings": pings, "fps": fps, "seconds": end - start, "broker": b2 - b1, "broker_pre": b1 - b0,
        "attacker": attacker_cpu, "table": cpus, "quiet_snaps": (pre0, pre1), "attack_snaps": (snap0, snap1),
        "windows": ((pre_start, pre_end), (start, window_end)),
    }  # fmt: skip


async def bench(args: argparse.Namespace) -> None:
    stop_stack, port, http_port, services, front = start_stack(args)
    room = f"abuse-{uuid.uuid4().hex[:8]}"
    meeting: Meeting | None = None
    pingers = Pingers()
    tasks: list[asyncio.Future[None]] = []
    try:
        if front:
            meeting = Meeting(front, room)
            meeting.start()
            await asyncio.get_running_loop().run_in_executor(None, meeting.ready.wait)
            if meeting.failed:
                print(f"meeting: {meeting.failed}; frame rates left out")
        tasks = [asyncio.ensure_future(pingers.one(port, http_port, i)) for i in range(args.clients)]
        await asyncio.sleep(3)  # everyone logged in and pinging
        t0 = time.monotonic()
        rss_quiet = await services.during(args.attack_seconds)
        t1 = time.monotonic()
        quiet = pingers.window(t0, t1)
        q50, q99 = pct(quiet, 0.5), pct(quiet, 0.99)
        qfps = meeting.fps(t0, t1) if meeting else (float("nan"), float("nan"))
        print(
            f"{args.clients} clients pinging every 100 ms; meeting: {3 if meeting else 0} Chromium; load {load_average()}"
        )
        print(
            f"quiet: ping p50={q50:.1f}ms p99={q99:.1f}ms ({len(quiet)} pings)  fps mean={qfps[0]:.1f} "
            f"lowest={qfps[1]:.1f}  rss MB "
            + " ".join(f"{n}={mb(max(v))}" for n, v in rss_quiet.items() if v)
        )
        names = list(services.pids)
        rss_head = " ".join(f"{n + ' MB':>18}" for n in names)
        ctx = multiprocessing.get_context("spawn")
        print(f"attacker: {args.attacker_policy}"
              + (f" {args.attacker_nice}" if args.attacker_policy == "nice" else "")
              + f" from {args.attacker_address}; {args.rounds} round(s) per attack, each a quiet window of "
              f"{args.attack_seconds:.0f} s and then the attack for {args.attack_seconds:.0f} s")  # fmt: skip
        print("Every window (p99/q: against the quiet window at the start; p99/pre: against the quiet "
              "window just before it; attacker %: its CPU in its attack, % of one core):")  # fmt: skip
        print(f"{'attack':8} {'round':>5} {'pre p50':>7} {'pre p99':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99/q':>6} "
              f"{'p99/pre':>7} {'fps':>5} {'low':>5} {'load':>5} {'xmpp s':>6} {'pre s':>6} {'attacker %':>10}")  # fmt: skip
        results = []
        for name in args.attacks.split(","):
            before = services.sample()
            during: dict[str, list[int]] = {n: [] for n in names}
            rounds = []
            for r in range(args.rounds):
                if r:
                    await asyncio.sleep(args.gap)
                rounds.append(
                    await one_round(
                        args, name, r, ctx, services, pingers, meeting, port, http_port, room, during, q99
                    )
                )
            await services.during(args.after)
            after = services.sample()
            results.append((name, rounds, before, during, after))
        print()
        print("Each attack over its rounds: the median of the windows' p99 (quiet windows just before each "
              "attack window, attack windows) and the p99 of all their pings pooled:")  # fmt: skip
        print(f"{'attack':8} {'quiet p99 per window':>22} {'attack p99 per window':>22} {'median q':>8} "
              f"{'median a':>8} {'ratio':>5} {'pool q':>7} {'pool a':>7} {'ratio':>5} {'fps':>5} {'low':>5} "
              f"{'xmpp %':>11} {'attacker %':>10} {rss_head}   (xmpp %: broker CPU quiet/attack; "
              "RSS: before/max during/after --after s)")  # fmt: skip
        for name, rounds, before, during, after in results:
            quiet_p99 = [pct(r["pre"], 0.99) for r in rounds]
            attack_p99 = [pct(r["pings"], 0.99) for r in rounds]
            mq, ma = statistics.median(quiet_p99), statistics.median(attack_p99)
            pool_q = pct(sorted(x for r in rounds for x in r["pre"]), 0.99)
            pool_a = pct(sorted(x for r in rounds for x in r["pings"]), 0.99)
            fps = statistics.mean(r["fps"][0] for r in rounds)
            low = min(r["fps"][1] for r in rounds)
            span = sum(r["seconds"] for r in rounds)
            xq = 100 * sum(r["broker_pre"] for r in rounds) / (args.attack_seconds * len(rounds))
            xa = 100 * sum(r["broker"] for r in rounds) / span
            atk = 100 * sum(r["attacker"] for r in rounds) / (args.attack_seconds * len(rounds))
            cells = []
            for n in names:
                if n in before and n in after and during[n]:
                    back = "" if after[n] - before[n] <= 5 * 2**20 else "!"
                    cells.append(
                        f"{mb(before[n]) + '/' + mb(max(during[n])) + '/' + mb(after[n]) + back:>18}"
                    )
                else:
                    cells.append(f"{'-':>18}")
            print(f"{name:8} {' '.join(f'{v:.1f}' for v in quiet_p99):>22} {' '.join(f'{v:.1f}' for v in attack_p99):>22} "
                  f"{mq:8.1f} {ma:8.1f} {ma / mq:5.2f} {pool_q:7.1f} {pool_a:7.1f} {pool_a / pool_q:5.2f} "
                  f"{fps:5.1f} {low:5.1f} {xq:5.1f}/{xa:5.1f} {atk:10.1f} {' '.join(cells)}")  # fmt: skip
        print("('!': RSS not back within 5 MB of before, --after seconds after the attack's last round)")
        for name, rounds, *_ in results:
            print(f"CPU per process, {name}: the {args.attack_seconds:.0f} s before each round's attack and its "
                  f"first {args.attack_seconds:.0f} s, over {len(rounds)} round(s)")  # fmt: skip
            report_cpu([(r["table"], r["quiet_snaps"], r["attack_snaps"]) for r in rounds])
            if meeting is not None:
                heights = " ".join(
                    f"{meeting.height(*r['windows'][0]):.0f}/{meeting.height(*r['windows'][1]):.0f}"
                    for r in rounds
                )
                print(f"  remote video frame height (mean) before/during each round: {heights}; "
                      f"at the start {meeting.height(t0, t1):.0f}")  # fmt: skip
    finally:
        pingers.stop = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if meeting is not None:
            meeting.stop.set()
            meeting.join(60)
        stop_stack()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--attack-seconds", type=float, default=10.0)
    parser.add_argument("--after", type=float, default=30.0)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument(
        "--profile", default="", help="a directory: py-spy records the broker in every window (raw stacks)"
    )
    parser.add_argument("--verbose", action="store_true", help="list the pings slower than 300 ms")
    parser.add_argument("--rounds", type=int, default=3, help="quiet/attack window pairs per attack")
    parser.add_argument(
        "--gap", type=float, default=5.0, help="seconds between an attack's end and the next round"
    )
    parser.add_argument(
        "--attacker-policy",
        choices=("idle", "nice", "none"),
        default="idle",
        help="how the attacker process stays off the stack's cores: SCHED_IDLE (default), nice, or not at all",
    )
    parser.add_argument(
        "--attacker-nice",
        type=int,
        default=19,
        help="the attacker's nice value with --attacker-policy nice",
    )
    parser.add_argument(
        "--attacker-address",
        default=SOURCE,
        help="the loopback address the attacks come from (not 127.0.0.1: the broker never limits the host itself)",
    )
    parser.add_argument(
        "--no-meeting", dest="meeting", action="store_false", help="the broker alone, no stack or browsers"
    )
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()

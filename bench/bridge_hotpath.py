"""CPU cost of the forwarder's hot path in one process, without the event loop:

    .venv/bin/python -m bench.bridge_hotpath [--subscribers 10] [--packets 20000] [--profile]
        [--policy default|intelligence] [--opcodes] [--burst 3 --gap-ms 25] [--loop c|python]
        [--transport-cc [--send-side]] [--audio] [--simulcast] [--instructions]

One sender, N receivers, real SRTP (AES-GCM from an in-memory DTLS handshake) and a real
``sendto`` on a UDP socket to a loopback sink read by another process (as a live bridge's
receivers are), so the figure is unprotect + routing + per
receiver (rewrite if any, protect, send). Prints µs per forwarded packet. ``--policy
intelligence`` runs the bridge's own policy (``ConferenceIntelligencePolicy``: last-N, layer
projection per receiver) instead of forwarding everything; the packets carry a VP8 payload
descriptor so the projection parses what it would in a call. ``--opcodes`` counts the Python
bytecodes and calls per incoming packet instead: deterministic, so it compares code changes on a
loaded machine where CPU times do not.

``--gap-ms`` sleeps that long after every ``--burst`` incoming packets, in the measured loop and
in the floor alike (the CPU time of the sleeps alone is measured and subtracted): the pattern of a
live bridge at a small fan-out, which sleeps between a publisher's packet bursts (one 1 Mbps
video at 30 fps: ~3-4 packets every 33 ms). What each wake-up costs on top of the work (cold caches
and TLB, the timer) then shows in both figures.

``--loop c`` forwards with the bridge's C per-receiver loop (``services/bridge/media/forwarding/native.py``,
built with ``python -m services.bridge.media.forwarding.native``) as deployed; ``python`` (the default)
with the Python loop.

``--transport-cc``: the sender negotiated transport-wide sequence numbers
(draft-holmer-rmcat-transport-wide-cc-extensions-01) and every packet carries one: the bridge
records its arrival, sends feedback every 50 ms and strips the number from what it forwards.
``--send-side`` as well: every receiver negotiated them too and the bridge numbers what it sends
each (``videobridge.forwarding.send-side-bwe``).

``--instructions``: the machine instructions (user space: the interpreter, libsrtp, OpenSSL,
cffi, the C loop; not the kernel's share of ``sendto``) executed per incoming and per forwarded
packet, counted by valgrind's callgrind over the measured packets only (the script re-runs itself
under ``valgrind --tool=callgrind --instr-atstart=no`` and switches instrumentation on around the
loop with callgrind's client requests, from a few lines of C compiled here). Like ``--opcodes``
it does not move with the machine's load, and it counts the C parts too; valgrind runs the loop
~50 times slower, so keep ``--packets`` at a few thousand. Needs ``valgrind`` and ``gcc``
(Debian packages). Used where ``perf stat -e instructions`` cannot count (a VM without a virtual
PMU).

``--simulcast``: the sender sends VP8 in three layers signalled as one ``SIM`` group (RFC 8853's
SSRC-signalled form), their packets in turn; with ``--policy intelligence`` each receiver gets one
layer through the simulcast projection, the path of a real meeting's video.

``--audio``: the sender sends Opus (20 ms packets of ~100 bytes) with its RFC 6464 audio level in
every packet instead of VP8, so the figures are those of the audio path: the level, the dominant
speaker detector, the policy's audio selection (RED, mixer, audio subscriptions).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import os
import pstats
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

# PARLEY_BENCH_TREE: count another checkout of the project with this script (kept outside it)
sys.path.insert(0, os.environ.get("PARLEY_BENCH_TREE") or str(Path(__file__).resolve().parents[1]))

try:
    from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
    from services.bridge.media.forwarding.forwarder import ConferenceForwarder
    from services.bridge.media.forwarding.native import NativeFanout
    from services.bridge.media.forwarding.policy import ForwardingPolicy
    from services.bridge.media.model import MediaSources, PayloadType, RtpHeaderExtension
    from services.bridge.media.packets import twcc
    from services.bridge.media.packets.rtp import AUDIO_LEVEL_URI
    from services.bridge.media.transport.aiortc_adapter import DtlsCertificate, DtlsSession, SrtpContext
except ImportError:  # a tree from before the media package was regrouped (no transport-cc, no --audio)
    from services.bridge.media.aiortc_adapter import (  # type: ignore[no-redef]
        DtlsCertificate,
        DtlsSession,
        SrtpContext,
    )
    from services.bridge.media.forwarder import ConferenceForwarder  # type: ignore[no-redef]
    from services.bridge.media.lastn import ConferenceIntelligencePolicy  # type: ignore[no-redef]
    from services.bridge.media.native import NativeFanout  # type: ignore[no-redef]
    from services.bridge.media.policy import ForwardingPolicy  # type: ignore[no-redef]
    from services.bridge.media.rtp import AUDIO_LEVEL_URI  # type: ignore[no-redef]

    from services.bridge.media.model import MediaSources, PayloadType  # type: ignore[no-redef]
try:  # the policy's key-frame requests, given at its construction
    from services.bridge.media.forwarding.rtcp_termination import request_keyframe
except ImportError:  # a tree whose forwarder set them on its policy
    request_keyframe = None  # type: ignore[assignment]

BRIDGE, PEER = DtlsCertificate(), DtlsCertificate()
# VP8 payload descriptor (RFC 7741) with a 15-bit picture id: (middle of a frame, start of a frame)
VP8_DESCRIPTOR = {False: bytes([0x80, 0x80, 0x80, 0x01]), True: bytes([0x90, 0x80, 0x80, 0x01])}


def srtp_pair() -> tuple[SrtpContext, SrtpContext]:
    server = DtlsSession(BRIDGE, "server", [("sha-256", PEER.fingerprint())])
    client = DtlsSession(PEER, "client", [("sha-256", BRIDGE.fingerprint())])
    to_server = client.start()
    for _ in range(10):
        to_client = [d for x in to_server for d in server.feed(x)]
        to_server = [d for x in to_client for d in client.feed(x)]
    assert server.srtp is not None and client.srtp is not None
    return server.srtp, client.srtp


SINK_READER = """
import socket, sys
sink = socket.socket(fileno=int(sys.argv[1]))
while True:
    sink.recv(4096)
"""


def count_opcodes(step: Callable[[bytes], None], datagrams: list[bytes]) -> tuple[float, float]:
    """Python bytecodes and Python-level calls executed per datagram by ``step``: a figure that,
    unlike CPU time, does not move with the machine's load (C code, SRTP and syscalls excluded)."""
    counts = {"opcode": 0, "call": 0}

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event in counts:
            counts[event] += 1
        return tracer

    sys.settrace(tracer)
    try:
        for datagram in datagrams:
            step(datagram)
    finally:
        sys.settrace(None)
    return counts["opcode"] / len(datagrams), counts["call"] / len(datagrams)


UNDER_CALLGRIND = "PARLEY_HOTPATH_UNDER_CALLGRIND"
CALLGRIND_CONTROL = """
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
"""


def callgrind_control() -> Any:
    """``start()``/``stop()`` around the measured code: callgrind's client requests (macros in
    valgrind's callgrind.h, so compiled here; a no-op outside valgrind)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        raise SystemExit("--instructions needs gcc and valgrind (apt-get install gcc valgrind)")
    build = Path(tempfile.mkdtemp(prefix="parley-callgrind-"))
    (build / "control.c").write_text(CALLGRIND_CONTROL)
    subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", "-o", build / "control.so", build / "control.c"], check=True
    )
    library = ctypes.CDLL(str(build / "control.so"))
    shutil.rmtree(build)
    return library


def count_instructions(argv: list[str]) -> None:
    """Re-run this script with ``argv`` under callgrind (instrumenting only what ``start()`` /
    ``stop()`` enclose) and print the instructions it counted per packet."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    out = Path(tempfile.mkdtemp(prefix="parley-callgrind-"))
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}/callgrind.out",
            sys.executable,
            str(Path(__file__).resolve()),
            *argv,
        ],
        env={**os.environ, UNDER_CALLGRIND: "1", "PARLEY_BENCH_TREE": sys.path[0]},
        capture_output=True,
        text=True,
    )
    counted = re.search(r"measured (\d+) incoming packets, (\d+) forwarded", proc.stdout)
    totals = []  # from the dump stop() asked for (the one at exit counted nothing)
    for dump in out.iterdir():
        text = dump.read_text(errors="replace")
        found = re.search(r"^totals: (\d+)", text, re.M)
        if found and "Client Request: measured" in text:
            totals.append(int(found.group(1)))
    shutil.rmtree(out)
    if proc.returncode != 0 or counted is None or not totals:
        raise SystemExit(f"callgrind run failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    incoming, forwarded = int(counted.group(1)), int(counted.group(2))
    print(proc.stdout.strip().splitlines()[0])
    print(
        f"{totals[0] / incoming:.0f} instructions per incoming packet, "
        f"{totals[0] / max(forwarded, 1):.0f} per forwarded packet ({incoming} incoming, {forwarded} forwarded)"
    )


def run(
    subscribers: int,
    packets: int,
    profile: bool,
    policy_name: str = "default",
    opcodes: bool = False,
    burst: int = 3,
    gap: float = 0.0,
    loop: str = "python",
    transport_cc: bool = False,
    send_side: bool = False,
    audio: bool = False,
    simulcast: bool = False,
) -> None:
    with udp_sink() as address:
        measure(
            address,
            subscribers,
            packets,
            profile,
            policy_name,
            opcodes,
            burst,
            gap,
            loop,
            transport_cc,
            send_side,
            audio,
            simulcast,
        )


PACKET_INTERVAL = 1 / 120  # s between incoming packets on the packet clock: ~1 Mbps of video
SO_RCVBUFFORCE = 33  # Linux socket(7) (asm-generic/socket.h); Python's socket module lacks it


@contextlib.contextmanager
def udp_sink() -> Iterator[tuple[str, int]]:
    """A loopback UDP address whose datagrams another process reads and discards: the
    receivers' CPU is not the measuring process's, as in a call."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        try:  # root: room for a whole run, so a reader starved by the machine's load never makes
            # a send block (which takes another, costlier path and would move --instructions)
            sink.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 27)
        except PermissionError:
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        reader = subprocess.Popen(
            [sys.executable, "-c", SINK_READER, str(sink.fileno())], pass_fds=[sink.fileno()]
        )
        try:
            yield sink.getsockname()
        finally:
            reader.kill()
            reader.wait()


def measure(
    address: tuple[str, int],
    subscribers: int,
    packets: int,
    profile: bool,
    policy_name: str,
    opcodes: bool,
    burst: int,
    gap: float,
    loop_name: str,
    transport_cc: bool = False,
    send_side: bool = False,
    audio: bool = False,
    simulcast: bool = False,
) -> None:
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(False)

    def transmit(data: bytes) -> None:
        try:
            out.sendto(data, address)
        except BlockingIOError:
            pass

    # --opcodes and --instructions run on a packet clock (PACKET_INTERVAL per incoming packet), so
    # the policy's periodic work (speaker, allocation) comes as often per packet as in a call
    # however slowly the counting runs, and every run counts the same thing
    virtual_now = [time.monotonic()]
    counting = opcodes or os.environ.get(UNDER_CALLGRIND) == "1"
    clock: Callable[[], float] = (lambda: virtual_now[0]) if counting else time.monotonic

    def tick() -> float:
        virtual_now[0] += PACKET_INTERVAL
        return virtual_now[0]

    policy: ForwardingPolicy = ForwardingPolicy()
    if policy_name == "intelligence":
        keyframes: dict[str, Any] = {"request_keyframe": request_keyframe} if request_keyframe is not None else {}
        try:  # an older tree ran the audio mixer on a thread of its own unless told not to
            policy = ConferenceIntelligencePolicy(mixer_thread=False, clock=clock, **keyframes)  # type: ignore[call-arg]
        except TypeError:
            policy = ConferenceIntelligencePolicy(clock=clock, **keyframes)
    native = NativeFanout(out.fileno(), lambda: 0) if loop_name == "c" else None
    if send_side:
        conference = ConferenceForwarder("bench", policy, native=native, send_side_bwe=True)
    else:
        conference = ConferenceForwarder("bench", policy, native=native)
    sender = conference.add_endpoint("sender", transmit)
    bridge_rx, peer_tx = srtp_pair()
    exts = [RtpHeaderExtension(5, twcc.URI)] if transport_cc else []
    layers = 3 if simulcast else 1
    pt = 111 if audio else 96
    if audio:
        sources = MediaSources(
            audio_ssrcs=[1],
            payload_types=[PayloadType(pt, "opus", 48000, 2)],
            rtp_hdrexts=[*exts, RtpHeaderExtension(1, AUDIO_LEVEL_URI)],
        )
    else:
        sources = MediaSources(
            video_ssrcs=list(range(1, layers + 1)),
            ssrc_groups=[("SIM", list(range(1, layers + 1)))] if simulcast else [],
            payload_types=[PayloadType(pt, "VP8", 90000)],
            rtp_hdrexts=exts,
        )
    conference.set_sources("sender", sources)
    conference.set_srtp("sender", bridge_rx, 0.0)
    for i in range(subscribers):
        conference.add_endpoint(f"r{i}", transmit).set_transmit(transmit, address)
        if send_side:
            conference.set_sources(f"r{i}", MediaSources(rtp_hdrexts=exts))
        conference.set_srtp(f"r{i}", srtp_pair()[0], 0.0)

    def header(i: int) -> bytes:
        seq, ssrc = i // layers, 1 + i % layers  # simulcast: the layers take turns, packet by packet
        ts = seq * 960 if audio else (seq // 4) * 3000
        elements = struct.pack("!BHB", 0x51, i & 0xFFFF, 0) if transport_cc else b""
        if audio:  # RFC 6464: voice, -(30 + seq % 40) dBov, so the speaker detector has work
            elements += bytes([0x10, 0x80 | (30 + seq % 40), 0, 0])
        if not elements:
            return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts, ssrc)
        ext = struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements
        return struct.pack("!BBHII", 0x90, pt, seq & 0xFFFF, ts, ssrc) + ext

    def payload(i: int) -> bytes:
        # every 4th packet of a layer starts a frame; its VP8 payload header's P bit is 0: a key frame
        return bytes(100) if audio else VP8_DESCRIPTOR[(i // layers) % 4 == 0] + bytes(1100)

    wire = [peer_tx.protect(header(i) + payload(i)) for i in range(packets)]

    if os.environ.get(UNDER_CALLGRIND) == "1":
        control = callgrind_control()
        for datagram in wire[:100]:  # warm up: the policy learns the sources and allocates
            conference.handle_rtp(sender, bridge_rx.unprotect(datagram), tick())
        forwarded_before = conference.packets_forwarded
        handle, unprotect = conference.handle_rtp, bridge_rx.unprotect
        control.start()
        for datagram in wire[100:]:
            handle(sender, unprotect(datagram), tick())
        control.stop()
        print(
            f"{loop_name} loop, {subscribers} subscribers, {policy_name} policy{', audio' if audio else ''}"
            f"{', simulcast' if simulcast else ''}: "
            f"measured {len(wire) - 100} incoming packets, "
            f"{conference.packets_forwarded - forwarded_before} forwarded"
        )
        return

    if opcodes:
        for datagram in wire[:100]:  # warm up: the policy learns the sources and allocates
            conference.handle_rtp(sender, bridge_rx.unprotect(datagram), tick())
        forwarded_before = conference.packets_forwarded
        per_packet, calls = count_opcodes(
            lambda d: conference.handle_rtp(sender, bridge_rx.unprotect(d), tick()), wire[100:600]
        )
        fan_out = (conference.packets_forwarded - forwarded_before) / 500  # forwarded per incoming
        print(
            f"{subscribers} subscribers, {policy_name} policy{', audio' if audio else ''}"
            f"{', simulcast' if simulcast else ''}: {per_packet:.0f} Python opcodes and "
            f"{calls:.1f} Python calls per incoming packet ({per_packet / max(fan_out, 1e-9):.0f} opcodes "
            f"per forwarded packet, {fan_out:.2f} forwarded per incoming)"
        )
        return

    def pause(i: int) -> None:
        if gap and i % burst == 0:
            time.sleep(gap)

    sleeps_start = time.process_time()
    for i in range(packets):
        pause(i)
    sleeps = time.process_time() - sleeps_start  # what the pauses alone cost, taken off below

    def loop() -> None:
        unprotect = bridge_rx.unprotect
        handle = conference.handle_rtp
        now = time.monotonic()
        for i, datagram in enumerate(wire):
            pause(i)
            handle(sender, unprotect(datagram), now)

    start = time.process_time()
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(loop)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    else:
        loop()
    spent = time.process_time() - start - sleeps
    forwarded = conference.packets_forwarded
    if forwarded < packets // layers * subscribers * 0.99:
        raise SystemExit(f"only {forwarded} of {packets * subscribers} packets forwarded")

    # the floor on this machine right now: protect + sendto alone, same count
    protect = srtp_pair()[0].protect
    plain = struct.pack("!BBHII", 0x80, 96, 1, 3000, 1) + bytes(100 if audio else 1100)
    floor_start = time.process_time()
    for i in range(forwarded // subscribers):
        pause(i)
        for _ in range(subscribers):
            transmit(protect(plain))
    floor = time.process_time() - floor_start - sleeps
    if gap:
        print(
            f"pauses of {gap * 1000:g} ms every {burst} packets: {sleeps / packets * 1e6:.1f} µs per packet"
        )
    print(
        f"{loop_name} loop, {subscribers} subscribers: {spent / forwarded * 1e6:.2f} µs per forwarded packet "
        f"(protect+sendto floor {floor / forwarded * 1e6:.2f} µs), "
        f"{spent / packets * 1e6:.1f} µs per incoming packet"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--policy", choices=("default", "intelligence"), default="default")
    parser.add_argument(
        "--opcodes", action="store_true", help="count Python opcodes per packet instead of timing"
    )
    parser.add_argument("--burst", type=int, default=3, help="incoming packets between pauses")
    parser.add_argument(
        "--gap-ms", type=float, default=0.0, help="sleep this long every --burst packets (default: none)"
    )
    parser.add_argument("--loop", choices=("c", "python"), default="python", help="per-receiver loop")
    parser.add_argument("--transport-cc", action="store_true", help="packets carry transport-wide numbers")
    parser.add_argument("--send-side", action="store_true", help="and the bridge numbers what it sends")
    parser.add_argument("--audio", action="store_true", help="Opus with its audio level instead of VP8")
    parser.add_argument(
        "--simulcast",
        action="store_true",
        help="VP8 in three layers (a SIM group) instead of one stream: the projection picks one per receiver",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count machine instructions per packet under valgrind's callgrind instead of timing",
    )
    args = parser.parse_args()
    if args.instructions and os.environ.get(UNDER_CALLGRIND) != "1":
        count_instructions([a for a in sys.argv[1:] if a != "--instructions"])
        sys.exit(0)
    run(
        args.subscribers,
        args.packets,
        args.profile,
        args.policy,
        args.opcodes,
        args.burst,
        args.gap_ms / 1000,
        args.loop,
        args.transport_cc,
        args.send_side or False,
        args.audio,
        args.simulcast,
    )

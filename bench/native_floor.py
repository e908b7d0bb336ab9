"""What the per-receiver loop of forwarding (SRTP protect, send) costs in Python and in C, here:

    .venv/bin/python -m bench.native_floor [--subscribers 5] [--packets 3000] [--burst 3 --gap-ms 25]

Both loops protect one 1,100-byte RTP packet once per receiver with that receiver's own libsrtp
session (AES-128-GCM, as the bridge negotiates) and send it with ``sendto`` to a UDP sink read by
another process. The Python loop is the bridge's (the adapter's SRTP closure, a ``sendto`` per
receiver); the C loop is a dozen lines compiled here with ``gcc`` and called once per packet
through cffi, calling the same libsrtp (pylibsrtp's) through a function pointer. Nothing routes
or rewrites: this is the floor under any forwarder on this machine, in each language.
``--gap-ms`` sleeps every ``--burst`` packets as ``bench.bridge_hotpath`` does (the live pattern
at a small fan-out; the sleeps' own CPU is measured and subtracted).

Not part of the bridge (whose own C loop, native_fanout.c, also rewrites, logs and counts): it
measures the floor under any per-receiver loop on this machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import cffi
import pylibsrtp
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from bench.bridge_hotpath import udp_sink
from services.bridge.media.forwarding.native import socket_address
from services.bridge.media.transport.aiortc_adapter import SrtpContext

C_SOURCE = r"""
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

typedef int (*protect_fn)(void *, void *, int *);

int fanout(protect_fn protect, void **sessions, int n, int fd, const struct sockaddr_in *address,
           const unsigned char *packet, int length) {
    unsigned char buffer[1600];
    int sent = 0;
    if (length > 1500) return -1;
    for (int i = 0; i < n; i++) {
        int size = length;
        memcpy(buffer, packet, length);
        if (protect(sessions[i], buffer, &size) != 0) continue;
        if (sendto(fd, buffer, size, MSG_DONTWAIT, (const struct sockaddr *)address,
                   sizeof *address) >= 0) sent++;
    }
    return sent;
}
"""

C_DECLARATIONS = """
int fanout(void *protect, void **sessions, int n, int fd, const void *address,
           const unsigned char *packet, int length);
"""

PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM


def build_native() -> tuple[cffi.FFI, Any]:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise SystemExit("needs a C compiler (apt-get install gcc)")
    directory = tempfile.mkdtemp(prefix="parley-native-floor-")
    source, library = os.path.join(directory, "fanout.c"), os.path.join(directory, "fanout.so")
    with open(source, "w") as f:
        f.write(C_SOURCE)
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", library, source], check=True)
    ffi = cffi.FFI()
    ffi.cdef(C_DECLARATIONS)
    return ffi, ffi.dlopen(library)


def main(subscribers: int, packets: int, burst: int, gap: float) -> None:
    with udp_sink() as address:
        measure(address, subscribers, packets, burst, gap)


def measure(address: tuple[str, int], subscribers: int, packets: int, burst: int, gap: float) -> None:
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(False)
    plain = struct.pack("!BBHII", 0x80, 96, 1, 3000, 1) + bytes(1100)

    def key() -> bytes:
        return os.urandom(28)  # AES-128 key + 12-byte salt

    # the Python loop: the bridge's own SRTP contexts (the adapter's closures) and sendto
    contexts = [SrtpContext("SRTP_AEAD_AES_128_GCM", key(), key(), PROFILE) for _ in range(subscribers)]
    protects = [c.protect for c in contexts]
    sendto = out.sendto

    def python_loop(packet: bytes) -> None:
        for protect in protects:
            try:
                sendto(protect(packet), address)
            except BlockingIOError:
                pass

    # the C loop over sessions of the same library
    native_ffi, native = build_native()
    sessions = []
    for _ in range(subscribers):
        policy = pylibsrtp.Policy(
            key=key(), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILE
        )
        policy.allow_repeat_tx = True  # the same packet every time
        sessions.append(pylibsrtp.Session(policy))
    session_array = native_ffi.new(
        "void *[]", [native_ffi.cast("void *", int(srtp_ffi.cast("uintptr_t", s._srtp[0]))) for s in sessions]
    )
    protect_pointer = native_ffi.cast(
        "void *", int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, "srtp_protect")))
    )
    sockaddr = native_ffi.new("char[]", socket_address(address))
    fd = out.fileno()

    sent = native.fanout(protect_pointer, session_array, subscribers, fd, sockaddr, plain, len(plain))
    if sent != subscribers:
        raise SystemExit(f"the C loop sent {sent} of {subscribers}")

    def native_loop(packet: bytes) -> None:
        native.fanout(protect_pointer, session_array, subscribers, fd, sockaddr, packet, len(packet))

    def run(step: Callable[[bytes], None]) -> float:
        start = time.process_time()
        for i in range(packets):
            if gap and i % burst == 0:
                time.sleep(gap)
            step(plain)
        return time.process_time() - start

    sleeps = run(lambda packet: None)
    results: dict[str, list[float]] = {"python": [], "c": []}
    for _ in range(2):  # alternating
        results["python"].append((run(python_loop) - sleeps) / (packets * subscribers) * 1e6)
        results["c"].append((run(native_loop) - sleeps) / (packets * subscribers) * 1e6)
    pattern = f"pauses of {gap * 1000:g} ms every {burst} packets" if gap else "no pauses"
    print(f"{subscribers} subscribers, {pattern}; µs per forwarded packet (SRTP protect + sendto):")
    for name, figures in results.items():
        print(f"  {name:6s} " + " ".join(f"{f:.2f}" for f in figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=5)
    parser.add_argument("--packets", type=int, default=3000)
    parser.add_argument("--burst", type=int, default=3, help="packets between pauses")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="sleep this long every --burst packets")
    args = parser.parse_args()
    main(args.subscribers, args.packets, args.burst, args.gap_ms / 1000)

"""SIP gateway benchmark: what one source flooding it with requests over UDP costs, with the
per-source limit (``sip.limits.requests-*``, docs/security.md) and without it.

``.venv/bin/python bench/sip_flood.py [--count 5000] [--method OPTIONS|REGISTER]``

Starts the SIP gateway alone as a process (the integration tests' settings, default limits), then
sends ``--count`` requests from 127.0.0.2 (the host's own 127.0.0.1 is never limited) in bursts of
100 every 20 ms, waits until no answer has come for a second, and prints how many were answered
and the gateway's CPU time (user + system, from ``/proc``) over that window; then the same with
``SIP_REQUESTS_PER_SECOND=0``. REGISTER without credentials costs a digest challenge each.

It prints figures and never fails on timing.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.sip_client import DOMAIN, gateway_process, request  # noqa: E402

SOURCE = "127.0.0.2"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(label: str, env: dict[str, str], count: int, method: str) -> None:
    proc, ports = gateway_process(env)
    with proc:
        assert proc.proc is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((SOURCE, 0))
        host = f"{SOURCE}:{sock.getsockname()[1]}"
        extra = [("Contact", f"<sip:alice@{host}>"), ("Expires", "300")] if method == "REGISTER" else []
        messages = [request(method, f"sip:{DOMAIN}", host=host, extra=extra).to_bytes() for _ in range(count)]
        time.sleep(1.0)
        before, start = cpu_seconds(proc.proc.pid), time.monotonic()
        for i, data in enumerate(messages):
            sock.sendto(data, ("127.0.0.1", ports["sip"]))
            if i % 100 == 99:
                time.sleep(0.02)
        sent = time.monotonic() - start
        answered = 0
        sock.settimeout(1.0)
        try:
            while True:
                sock.recvfrom(65536)
                answered += 1
        except TimeoutError:
            pass
        used = cpu_seconds(proc.proc.pid) - before
        sock.close()
    print(f"{label}: {count} {method} sent in {sent:.2f} s, {answered} answered, gateway CPU {used:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--method", choices=["OPTIONS", "REGISTER"], default="OPTIONS")
    args = parser.parse_args()
    flood("limit on (defaults: 50/s, burst 200)", {}, args.count, args.method)
    flood("limit off", {"SIP_REQUESTS_PER_SECOND": "0"}, args.count, args.method)


if __name__ == "__main__":
    main()

"""SIP gateway benchmark: concurrent G.711 calls into meetings, CPU per call and audio loss.

``.venv/bin/python bench/sip_gateway.py [--calls 50] [--rooms 10] [--rate 2] [--hold 40]``

Starts the broker, one bridge, the focus and the SIP gateway as processes (the integration
tests' stack), then SIPp (Debian's sip-tester) places ``--calls`` calls at ``--rate`` per second
into ``--rooms`` rooms, each held ``--hold`` seconds, with SIPp echoing the RTP it receives
(``-rtp_echo``): the gateway sends each caller the room's mix and gets it back, so the
gateway's own receive counters give the loss of the plain-RTP path on loopback. While every
call is up the gateway's process is sampled from ``/proc``:

* CPU per call: the gateway's CPU time (user + system, all threads) over the window in which all
  calls were up, divided by the window and the number of calls (% of one core per call); the
  bridge's the same way (it forwards each call's voice to the room and, for the gateway's
  endpoints, runs the mix-minus mixer: one Opus stream per call instead of one per other caller);
* audio loss: packets the gateway counted missing (RTP sequence gaps) over those expected, summed
  over the calls (``/calls``: ``rtp_in``, ``rtp_lost``);
* SIPp's successful / failed calls and its response-time repartition.

``.venv/bin/python bench/sip_gateway.py --registrations [--connections 10] [--seconds 15]``

measures REGISTER over WebSocket (RFC 7118) instead: ``--connections`` WebSocket clients each
register their own address of record over and over for ``--seconds``, against Debian's Kamailio
with its websocket module and registrar (``tests/integration/kamailio/kamailio.cfg``: no
authentication), the gateway alone with ``SIP_REGISTER_AUTH=false`` (the same work), and the
gateway with digest (a 401 challenge and a second REGISTER for each registration). The client is
the same Python code for all three; on a loaded machine it bounds the figures as much as the
servers do, so compare them with each other, not with other machines.

It prints figures and never fails on timing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.kamailio import Kamailio
from tests.integration.sip_client import SipClient, gateway_process
from tests.integration.test_sip_gateway import SipStack, run_sipp

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def register_rate(port: int, connections: int, seconds: float, *, auth: bool,
                  headers: dict[str, str] | None = None) -> tuple[float, int]:
    """Registrations per second by ``connections`` WebSocket clients over ``seconds``, and failures."""
    done = [0] * connections
    failed = [0] * connections
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        c = SipClient("ws", "127.0.0.1", port, ws_headers=headers)
        try:
            while time.monotonic() < deadline:
                resp = c.register(f"bench{i}", "bench-secret" if auth else "x")
                if resp is not None and resp.status == 200:
                    done[i] += 1
                else:
                    failed[i] += 1
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started), sum(failed)


def registrations(connections: int, seconds: float) -> int:
    accounts = ",".join(f"bench{i}:bench-secret" for i in range(connections))
    rows: list[tuple[str, float, int, float]] = []
    with Kamailio(origin="http://127.0.0.1") as kam:
        pid = kam.process.proc.pid if kam.process.proc else 0
        before = cpu_tree(pid)
        rate, failed = register_rate(kam.port, connections, seconds, auth=False,
                                     headers={"Origin": "http://127.0.0.1"})
        rows.append(("Kamailio 5.6 (websocket + registrar, no auth)", rate, failed, cpu_tree(pid) - before))
    for label, auth in (("Parley gateway (no auth)", False), ("Parley gateway (digest)", True)):
        proc, ports = gateway_process({"SIP_ACCOUNTS": accounts, "SIP_REGISTER_AUTH": "true" if auth else "false",
                                       "LOG_LEVEL": "WARNING"})
        with proc:
            pid = proc.proc.pid if proc.proc else 0
            before = cpu_tree(pid)
            rate, failed = register_rate(ports["ws"], connections, seconds, auth=auth)
            rows.append((label, rate, failed, cpu_tree(pid) - before))
    print(f"REGISTER over WebSocket, {connections} connections, {seconds:.0f} s each:")
    for label, rate, failed, cpu in rows:
        print(f"  {label:46s} {rate:8.0f} registrations/s  ({failed} failed, server CPU {cpu:.1f} s = "
              f"{1000 * cpu / max(1, rate * seconds):.2f} ms per registration)")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


def cpu_tree(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (Kamailio forks its workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--hold", type=float, default=40.0)
    parser.add_argument("--registrations", action="store_true", help="REGISTER over WebSocket beside Kamailio")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    if args.registrations:
        return registrations(args.connections, args.seconds)
    work = Path(tempfile.mkdtemp(prefix="parley-sip-bench-"))
    with SipStack() as stack:
        assert stack.sip is not None and stack.sip.proc is not None
        pid = stack.sip.proc.pid
        bridge = next(iter(stack.bridges.values())).proc
        assert bridge is not None
        bridge_pid = bridge.pid
        bridge_cpu: list[float] = []  # beside each sample
        api = f"http://127.0.0.1:{stack.sip_ports['http']}"
        samples: list[tuple[float, float, int, list[dict[str, object]]]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    calls = httpx.get(api + "/calls", timeout=5).json()
                    samples.append((time.monotonic(), cpu_seconds(pid), len(calls), calls))
                    bridge_cpu.append(cpu_seconds(bridge_pid))
                except (httpx.HTTPError, OSError):
                    pass
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        result = run_sipp(stack.sip_ports["sip"], args.calls, args.rooms, args.rate, work, args.hold,
                          timeout=args.calls / args.rate + args.hold + 240, echo=True)
        stop.set()
        sampler.join()
        elapsed = time.monotonic() - started
        full_at = [i for i, s in enumerate(samples) if s[2] >= args.calls]
        full = [samples[i] for i in full_at]
        print(f"SIPp: rc={result.returncode} after {elapsed:.0f} s")
        stat = (work / "stat.csv").read_text().splitlines() if (work / "stat.csv").exists() else []
        if len(stat) >= 2:
            row = dict(zip(stat[0].split(";"), stat[-1].split(";"), strict=False))
            print(f"calls: {row.get('SuccessfulCall(C)')} successful, {row.get('FailedCall(C)')} failed; "
                  f"answer time (ms): {row.get('ResponseTime1(C)')}")
        peak = max((s[2] for s in samples), default=0)
        print(f"calls up at once: at most {peak} of {args.calls}")
        if len(full) >= 2:
            window = full[-1][0] - full[0][0]
            cpu = full[-1][1] - full[0][1]
            print(f"gateway CPU with all {args.calls} calls up: {100 * cpu / window:.1f} % of a core over "
                  f"{window:.0f} s = {100 * cpu / window / args.calls:.2f} % of a core per call")
            b_cpu = bridge_cpu[full_at[-1]] - bridge_cpu[full_at[0]]
            print(f"bridge CPU with all {args.calls} calls up: {100 * b_cpu / window:.1f} % of a core = "
                  f"{100 * b_cpu / window / args.calls:.2f} % of a core per call")
        # over every second with calls up, weighted by how many were: CPU seconds per call-second
        cpu_used = call_seconds = 0.0
        for a, b in itertools.pairwise(samples):
            if a[2] and b[2]:
                cpu_used += b[1] - a[1]
                call_seconds += (b[0] - a[0]) * (a[2] + b[2]) / 2
        if call_seconds:
            print(f"gateway CPU per call (all samples with calls up, {call_seconds:.0f} call-seconds): "
                  f"{100 * cpu_used / call_seconds:.2f} % of a core per call")
        # audio loss: the last view of each call (RTP echoed back by SIPp, counted by the gateway)
        last_seen: dict[str, dict[str, object]] = {}
        for s_ in samples:
            for c in s_[3]:
                last_seen[str(c.get("call_id"))] = c
        got = sum(int(c.get("rtp_in", 0)) for c in last_seen.values())  # type: ignore[call-overload]
        lost = sum(int(c.get("rtp_lost", 0)) for c in last_seen.values())  # type: ignore[call-overload]
        if got + lost:
            print(f"audio loss (RTP echoed back to the gateway, {len(last_seen)} calls): {lost} of {got + lost} "
                  f"packets = {100 * lost / (got + lost):.2f} %")
        if len(full) < 2:
            print("never had every call up at once (see SIPp's errors in "
                  f"{work / 'errors.log'})")
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

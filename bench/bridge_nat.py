"""The cost of reaching the bridge the NAT-friendly ways (docs/nat.md), measured like
``bench/bridge_forwarding.py`` measures forwarding (its clients, its bridge process, its figures):

    sudo .venv/bin/python -m bench.bridge_nat [--window 8] [--rounds 2] [--only tcp,turn]

- ``tcp``: CPU µs per forwarded packet when the subscribers reach the bridge over ICE-TCP
  (RFC 6544/4571, ``JVB_TCP_PORT``) against UDP, one publisher to 10 subscribers (``fanout10``),
  the two alternating on one bridge. TCP receivers are sent to by the Python forwarding loop (the C
  loop sends UDP datagrams only), so the UDP figure is given for both loops.
- ``turn``: the latency TURN relaying adds for one receiver: one publisher to one subscriber,
  the subscriber straight to the bridge over UDP, then through coturn (``services/turn``, TURN
  over UDP, channel data), send-to-receive p50/p95 in the same process and clock.

Runs in a private network namespace (``unshare -n``, like ``bridge_forwarding``); no packet leaves
the machine. Needs root and Debian's coturn for ``turn``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aioice.turn import TurnClientUdpProtocol  # noqa: E402

from bench import bridge_forwarding as bf  # noqa: E402
from bench.bridge_peer import LightPeer, Remote, encode_vp8  # noqa: E402
from services.bridge.media.transport.aiortc_adapter import DtlsCertificate  # noqa: E402
from services.bridge.media.transport.ice_tcp import Rfc4571Framer, frame  # noqa: E402
from services.common.turn import turn_credential  # noqa: E402
from tests.integration.harness import ServiceProcess, free_port, free_tcp_udp_port  # noqa: E402

NETNS_ENV = "PARLEY_BENCH_NETNS"
TURN_SECRET = "bench-secret"


class TcpPeer(LightPeer):
    """A LightPeer whose packets go over one ICE-TCP connection to the bridge (RFC 4571 framing),
    an active TCP candidate as browsers use against the bridge's passive one."""

    def __init__(self, certificate: DtlsCertificate, local_ip: str, bridge_tcp: tuple[str, int]) -> None:
        super().__init__(certificate, local_ip)
        self.bridge_tcp = bridge_tcp
        self.writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def open(self) -> tuple[str, int]:
        reader, self.writer = await asyncio.open_connection(*self.bridge_tcp, local_addr=(self.local_ip, 0))
        self.writer.transport.set_write_buffer_limits(high=1 << 20)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader_task = asyncio.ensure_future(self._read(reader))
        return self.writer.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = Rfc4571Framer()
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return
            for packet in framer.feed(data):
                self.datagram_received(packet, self.bridge_tcp)

    async def connect(self, remote: Remote, within: float = 15.0) -> None:
        await super().connect(
            Remote(remote.ufrag, remote.pwd, remote.fingerprints, self.bridge_tcp, remote.dtls_role), within
        )

    def _send(self, data: bytes) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(frame(data))

    def close(self) -> None:
        super().close()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self.writer is not None:
            self.writer.close()


class TurnPeer(LightPeer):
    """A LightPeer whose packets go through a TURN allocation (UDP, channel data)."""

    def __init__(self, certificate: DtlsCertificate, local_ip: str, turn: tuple[str, int]) -> None:
        super().__init__(certificate, local_ip)
        self.turn = turn
        self.proto: TurnClientUdpProtocol | None = None
        self.channel_header: bytes | None = None

    async def open(self) -> tuple[str, int]:
        cred = turn_credential(TURN_SECRET, "bench", 600, __import__("time").time())
        loop = asyncio.get_running_loop()
        _, self.proto = await loop.create_datagram_endpoint(
            lambda: TurnClientUdpProtocol(
                self.turn,
                username=cred.username,
                password=cred.password,
                lifetime=600,
                channel_refresh_time=500,
            ),
            local_addr=(self.local_ip, 0),
            remote_addr=self.turn,
        )
        transport = self.proto.transport
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        relayed = await self.proto.connect()
        self.proto.receiver = self  # relayed packets come back here
        return relayed

    async def connect(self, remote: Remote, within: float = 15.0) -> None:
        assert self.proto is not None
        await self.proto.send_data(b"", remote.address)  # binds a channel to the bridge
        channel = self.proto.peer_to_channel[remote.address]
        self.channel_header = struct.pack("!H", channel)
        await super().connect(remote, within)

    def _send(self, data: bytes) -> None:
        if self.proto is not None and self.channel_header is not None:
            self.proto._send(self.channel_header + struct.pack("!H", len(data)) + data)

    def close(self) -> None:
        super().close()
        if self.proto is not None:
            if self.proto.refresh_task is not None:
                self.proto.refresh_task.cancel()
            self.proto.transport.close()


def tcp_bridge(loop: str) -> tuple[bf.BridgeSfu, int]:
    sfu = bf.BridgeSfu(loop)
    tcp_port = free_port()
    sfu.proc.env.update({"JVB_TCP_HARVESTER_DISABLED": "false", "JVB_TCP_PORT": str(tcp_port)})
    return sfu, tcp_port


def start_coturn() -> tuple[ServiceProcess, int]:
    port = free_tcp_udp_port()
    proc = ServiceProcess.python_module(
        "bench-turn",
        "services.turn",
        {
            "TURN_CREDENTIALS": TURN_SECRET,
            "TURN_PORT": str(port),
            "TURN_LISTEN_IPS": bf.MEDIA_IP,
            "TURN_RELAY_IP": bf.MEDIA_IP,
            "TURN_ALLOWED_PEER_IPS": bf.MEDIA_IP,
            "TURN_RELAY_PORTS": "49152-65535",
            "TURN_RUN_DIR": tempfile.mkdtemp(prefix="parley-bench-turn-"),
        },
    )
    proc.start()
    return proc, port


def show(label: str, row: dict[str, Any]) -> None:
    print(json.dumps({"variant": label, **row}), flush=True)


async def main(args: argparse.Namespace) -> None:
    only = set(args.only.split(","))
    certificate = DtlsCertificate()
    frames = await asyncio.to_thread(encode_vp8, 4, bf.FANOUT_FPS, 1_000_000)
    rows: dict[str, list[dict[str, Any]]] = {}

    async def scenario(sfu: bf.BridgeSfu, label: str, subscribers: int, **peers: Any) -> None:
        drops = bf.udp_drops()
        result = await bf.run_scenario(
            sfu,
            f"fanout{subscribers}",
            1,
            subscribers,
            frames,
            bf.FANOUT_FPS,
            False,
            args.window,
            certificate,
            **peers,
        )
        row = result.row()
        # datagrams the kernel dropped at full receive buffers here (bridge, coturn, clients)
        row["udp_socket_drops"] = bf.udp_drops() - drops
        rows.setdefault(label, []).append(row)
        show(label, row)

    if "tcp" in only:
        for loop in ("c", "python"):
            sfu, tcp_port = tcp_bridge(loop)
            await sfu.start()
            try:
                for _ in range(args.rounds):
                    await scenario(sfu, f"udp, {loop} loop", 10)
                    if loop == "c":  # the C loop leaves TCP receivers to Python anyway
                        await scenario(
                            sfu,
                            "ice-tcp",
                            10,
                            subscriber_peer=lambda port=tcp_port: TcpPeer(
                                certificate, bf.MEDIA_IP, (bf.MEDIA_IP, port)
                            ),
                        )
            finally:
                await sfu.stop()
    if "turn" in only:
        turn, turn_port = await asyncio.to_thread(start_coturn)
        sfu = bf.BridgeSfu("c")
        await sfu.start()
        try:
            for _ in range(args.rounds):
                await scenario(sfu, "direct udp", 1)
                await scenario(
                    sfu,
                    "via turn udp",
                    1,
                    subscriber_peer=lambda: TurnPeer(certificate, bf.MEDIA_IP, (bf.MEDIA_IP, turn_port)),
                )
        finally:
            await sfu.stop()
            turn.stop()
            shutil.rmtree(turn.env["TURN_RUN_DIR"], ignore_errors=True)
    print("\nsummary (per round):")
    for label, found in rows.items():
        cpu = [r["cpu_us_per_packet"] for r in found]
        p50 = [r["latency_p50_ms"] for r in found]
        p95 = [r["latency_p95_ms"] for r in found]
        loss = [r["loss_percent"] for r in found]
        drops = [r["udp_socket_drops"] for r in found]
        print(
            f"  {label:18} µs/packet {cpu}  latency p50 {p50} ms  p95 {p95} ms  loss {loss} %"
            f"  socket drops {drops}"
        )


def enter_namespace() -> None:
    if os.environ.get(NETNS_ENV) == "1":
        bf.enter_namespace()
        return
    env = {**os.environ, NETNS_ENV: "1"}
    os.execvpe("unshare", ["unshare", "-n", sys.executable, "-m", "bench.bridge_nat", *sys.argv[1:]], env)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", type=float, default=8.0, help="measurement window per run, seconds")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per comparison")
    parser.add_argument("--only", default="tcp,turn", help="tcp, turn or both (default)")
    args = parser.parse_args()
    enter_namespace()
    asyncio.run(main(args))

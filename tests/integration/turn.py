"""coturn for integration tests, started the way the launcher and compose start it
(``python -m services.turn``: a generated config and Debian's ``/usr/bin/turnserver``), and a
minimal TURN client (aioice's) for tests that talk to it directly."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
import time
from pathlib import Path

from aioice import stun
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol

from services.common.stun import StunError, binding_request
from services.common.turn import turn_credential
from tests.integration.harness import ServiceProcess, free_tcp_udp_port

TURNSERVER = "/usr/bin/turnserver"


def coturn_available() -> bool:
    return Path(TURNSERVER).exists()


def start_coturn(
    secret: str,
    listen_ips: tuple[str, ...] = ("127.0.0.1",),
    allowed_peer_ips: tuple[str, ...] = ("127.0.0.1",),
    relay_ip: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[ServiceProcess, int]:
    """A running coturn on a free port (UDP and TCP); returns the process and the port."""
    port = free_tcp_udp_port()
    run_dir = Path(tempfile.mkdtemp(prefix="parley-turn-"))
    env = {
        "TURN_CREDENTIALS": secret,
        "TURN_PORT": str(port),
        "TURN_LISTEN_IPS": ",".join(listen_ips),
        "TURN_ALLOWED_PEER_IPS": ",".join(allowed_peer_ips),
        "TURN_RUN_DIR": str(run_dir),
        **({"TURN_RELAY_IP": relay_ip} if relay_ip else {}),
        **(extra_env or {}),
    }
    proc = ServiceProcess.python_module("turn", "services.turn", env).start()
    deadline = time.monotonic() + 20
    while not _answers((listen_ips[0], port)):  # ready: it answers a STUN Binding request
        if not proc.alive or time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"coturn did not start:\n{proc.log()}")
        time.sleep(0.2)
    proc.run_dir = run_dir  # type: ignore[attr-defined]
    return proc, port


def _answers(server: tuple[str, int]) -> bool:
    try:
        asyncio.run(binding_request(server, wait=0.5, attempts=1))
    except (StunError, OSError):
        return False
    return True


def stop_coturn(proc: ServiceProcess) -> None:
    proc.stop()
    shutil.rmtree(getattr(proc, "run_dir", ""), ignore_errors=True)


class TurnClient:
    """One TURN allocation over UDP or TCP (RFC 8656), through aioice's client protocol."""

    def __init__(
        self, proto: TurnClientUdpProtocol | TurnClientTcpProtocol, transport: asyncio.BaseTransport
    ):
        self.proto = proto
        self.transport = transport
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        outer = self

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
                outer.received.put_nowait((data, addr))

        proto.receiver = Receiver()

    @classmethod
    async def open(
        cls,
        server: tuple[str, int],
        username: str,
        password: str,
        transport: str = "udp",
        tls: ssl.SSLContext | None = None,
    ) -> TurnClient:
        loop = asyncio.get_running_loop()
        kw = {"username": username, "password": password, "lifetime": 600, "channel_refresh_time": 500}
        if transport == "tcp":
            t, p = await loop.create_connection(
                lambda: TurnClientTcpProtocol(server, **kw), host=server[0], port=server[1], ssl=tls
            )
        else:
            t, p = await loop.create_datagram_endpoint(
                lambda: TurnClientUdpProtocol(server, **kw), remote_addr=server
            )
        return cls(p, t)

    async def allocate(self, requested_transport: int | None = None) -> tuple[str, int]:
        if requested_transport is None:
            return await self.proto.connect()
        request = stun.Message(message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST)
        request.attributes["LIFETIME"] = 600
        request.attributes["REQUESTED-TRANSPORT"] = requested_transport
        response, _ = await self.proto.request_with_retry(request)
        return response.attributes["XOR-RELAYED-ADDRESS"]

    async def create_permission(self, peer: tuple[str, int]) -> None:
        request = stun.Message(message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST)
        request.attributes["XOR-PEER-ADDRESS"] = peer
        await self.proto.request_with_retry(request)

    async def send(self, data: bytes, peer: tuple[str, int]) -> None:
        await self.proto.send_data(data, peer)

    def close(self) -> None:
        if self.proto.refresh_task is not None:
            self.proto.refresh_task.cancel()
        self.transport.close()


def credential(secret: str, lifetime: int = 600, now: float | None = None) -> tuple[str, str]:
    cred = turn_credential(secret, "tester@meet.jitsi", lifetime, time.time() if now is None else now)
    return cred.username, cred.password

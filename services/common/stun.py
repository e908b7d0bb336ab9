"""A STUN Binding client (RFC 8489 section 3): ask a STUN server which address it sees us at.

Used by the bridge to discover its public address (``services/bridge/media/transport/stun_discovery.py``,
like jitsi-videobridge's STUN mapping harvester) and by the launcher to check that coturn answers.
Messages are aioice's STUN codec; only the request/response exchange lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from aioice import stun


class StunError(Exception):
    """No usable Binding response (timeout, error response, or no mapped address)."""


def parse_server(spec: str, default_port: int = 3478) -> tuple[str, int]:
    """``host``, ``host:port``, ``stun:host:port`` or ``[v6]:port`` -> ``(host, port)``."""
    spec = spec.strip().removeprefix("stun:").removeprefix("//")
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = int(rest.removeprefix(":") or default_port)
    elif spec.count(":") == 1:
        host, _, p = spec.partition(":")
        port = int(p)
    else:
        host, port = spec, default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"bad STUN server {spec!r}")
    return host, port


class _Client(asyncio.DatagramProtocol):
    def __init__(self, transaction_id: bytes) -> None:
        self.transaction_id = transaction_id
        self.answer: asyncio.Future[stun.Message] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if message.transaction_id == self.transaction_id and not self.answer.done():
            self.answer.set_result(message)


@dataclass(frozen=True)
class StunMapping:
    """What one Binding exchange showed: ``mapped``, the address the server saw us at, and
    ``local``, the address the kernel sent from (the interface facing the server)."""

    mapped: tuple[str, int]
    local: tuple[str, int]


async def binding_request(server: tuple[str, int], wait: float = 3.0, attempts: int = 3) -> StunMapping:
    """Ask ``server`` from a fresh UDP socket, sending up to ``attempts`` times within ``wait``
    seconds."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(server[0], server[1], type=socket.SOCK_DGRAM)
    if not infos:
        raise StunError(f"cannot resolve {server[0]}")
    family, _, _, _, address = infos[0]
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _Client(request.transaction_id), remote_addr=(str(address[0]), int(address[1])), family=family
    )
    answer: stun.Message | None = None
    try:
        local = transport.get_extra_info("sockname")
        data = bytes(request)
        for _ in range(attempts):
            transport.sendto(data)
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(asyncio.shield(proto.answer), wait / attempts)
                break
    finally:
        transport.close()
    if answer is None:
        raise StunError(f"no STUN answer from {server[0]}:{server[1]} within {wait:.0f}s")
    if answer.message_class != stun.Class.RESPONSE:
        raise StunError(f"STUN error from {server[0]}:{server[1]}: {answer.attributes.get('ERROR-CODE')}")
    mapped = answer.attributes.get("XOR-MAPPED-ADDRESS") or answer.attributes.get("MAPPED-ADDRESS")
    if not mapped:
        raise StunError(f"no mapped address in the answer of {server[0]}:{server[1]}")
    return StunMapping((str(mapped[0]), int(mapped[1])), (str(local[0]), int(local[1])))

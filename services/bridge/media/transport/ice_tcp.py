"""ICE over TCP for the bridge: passive candidates (RFC 6544) with RFC 4571 framing.

Browsers behind firewalls that let no UDP out can still reach the bridge over TCP: the bridge
advertises a ``tcptype passive`` host candidate on one TCP port (``JVB_TCP_PORT``), after its UDP
candidates and at a lower priority, and accepts connections there. Each connection carries the same
STUN, DTLS and SRTP packets as the UDP port, each prefixed with its 16-bit length (RFC 4571
section 2), and every frame goes into the engine's one per-packet path
(``MediaEngine.datagram_received``) with the connection as its source address. What the bridge
sends back goes out framed on the same connection.

Every guest is hostile here:

- a connection must start with a STUN Binding request (RFC 6544 section 7.2: ICE checks come
  first); anything else closes it;
- a connection that has not completed ICE (the engine has not selected it for an endpoint) within
  ``handshake_timeout`` seconds is closed, as is one idle for ``idle_timeout``;
- connections are limited in total and per source address;
- a frame is at most 65,535 bytes by construction; a receiver that does not read is not buffered
  for without bound: past ``max_write_buffer`` bytes queued, packets to it are dropped, as a full
  UDP socket would drop them.

:class:`Rfc4571Framer` does no I/O and is tested directly; :class:`IceTcpServer` is the asyncio
adapter.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

log = logging.getLogger("bridge.ice_tcp")

_LENGTH = struct.Struct("!H")
MAX_FRAME = 0xFFFF


class TcpPeer(tuple[str, int]):
    """The ``(ip, port)`` of an ICE-TCP connection. Never equal to a UDP address, so an endpoint's
    address says which transport to send on."""

    __slots__ = ()

    def __new__(cls, ip: str, port: int) -> TcpPeer:
        return super().__new__(cls, (ip, port))

    def __hash__(self) -> int:
        return hash(("tcp", self[0], self[1]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TcpPeer) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)


class Rfc4571Framer:
    """Splits an RFC 4571 byte stream into packets. A zero-length frame is skipped."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if end - pos - 2 < length:
                break
            if length:
                out.append(bytes(buf[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def frame(packet: bytes) -> bytes:
    if len(packet) > MAX_FRAME:
        raise ValueError("packet too large for RFC 4571 framing")
    return _LENGTH.pack(len(packet)) + packet


@dataclass(frozen=True)
class IceTcpLimits:
    handshake_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 2000
    max_per_address: int = 32
    max_write_buffer: int = 2 * 1024 * 1024


class _Connection(asyncio.Protocol):
    def __init__(self, server: IceTcpServer) -> None:
        self.server = server
        self.framer = Rfc4571Framer()
        self.transport: asyncio.Transport | None = None
        self.peer: TcpPeer | None = None
        self.opened = time.monotonic()
        self.last_rx = self.opened
        self.frames = 0
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)
        peername = tcp.get_extra_info("peername")
        if not peername or not self.server._admit(peername[0]):
            tcp.abort()
            return
        self.peer = TcpPeer(peername[0], peername[1])
        self.server._opened(self)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            return
        self.last_rx = time.monotonic()
        receive = self.server.receive
        for packet in self.framer.feed(data):
            if self.frames == 0 and packet[0] > 3:
                # RFC 6544: connectivity checks come first; this is not ICE
                self.server._refused("did not start with STUN", peer)
                self.close()
                return
            self.frames += 1
            receive(packet, peer)

    def send(self, packet: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.server.limits.max_write_buffer:
            self.dropped += 1
            return
        transport.write(_LENGTH.pack(len(packet)) + packet)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._closed(self)
        self.transport = None


class IceTcpServer:
    """The bridge's ICE-TCP port. ``receive(packet, peer)`` is the engine's per-packet entry;
    ``selected(peer)`` says whether ICE selected that connection for an endpoint."""

    def __init__(
        self,
        receive: Callable[[bytes, tuple[str, int]], None],
        selected: Callable[[TcpPeer], bool],
        limits: IceTcpLimits | None = None,
    ) -> None:
        self.receive = receive
        self.selected = selected
        self.limits = limits or IceTcpLimits()
        self.connections: dict[TcpPeer, _Connection] = {}
        self._per_address: dict[str, int] = {}
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.port = 0
        self.refused = 0
        self.timed_out = 0
        self._last_log = 0.0

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), host, port, reuse_address=True, backlog=512
            )
        except OSError as exc:
            raise OSError(f"cannot bind ICE-TCP port {host}:{port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self._schedule_sweep()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def transmitter(self, peer: TcpPeer) -> Callable[[bytes], None]:
        conn = self.connections.get(peer)
        if conn is None:
            return _discard
        return conn.send

    def send(self, packet: bytes, peer: TcpPeer) -> None:
        conn = self.connections.get(peer)
        if conn is not None:
            conn.send(packet)

    def stats(self) -> dict[str, Any]:
        return {"connections": len(self.connections), "refused": self.refused, "timed_out": self.timed_out}

    # -- connection bookkeeping -------------------------------------------------------------
    def _admit(self, ip: str) -> bool:
        lim = self.limits
        if (
            len(self.connections) >= lim.max_connections
            or self._per_address.get(ip, 0) >= lim.max_per_address
        ):
            self._refused("too many connections", (ip, 0))
            return False
        return True

    def _opened(self, conn: _Connection) -> None:
        assert conn.peer is not None
        self.connections[conn.peer] = conn
        self._per_address[conn.peer[0]] = self._per_address.get(conn.peer[0], 0) + 1

    def _closed(self, conn: _Connection) -> None:
        peer = conn.peer
        if peer is None or self.connections.get(peer) is not conn:
            return
        del self.connections[peer]
        left = self._per_address.get(peer[0], 1) - 1
        if left:
            self._per_address[peer[0]] = left
        else:
            self._per_address.pop(peer[0], None)

    def _refused(self, why: str, peer: tuple[str, int]) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_log > 10:  # one line per 10 s at most, whatever a guest sends
            self._last_log = now
            log.info("ICE-TCP connection from %s refused: %s (%d so far)", peer[0], why, self.refused)

    def _schedule_sweep(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(1.0, self._sweep)

    def _sweep(self) -> None:
        self.sweep(time.monotonic())
        self._schedule_sweep()

    def sweep(self, now: float) -> None:
        """Close connections that never completed ICE in time, or went silent."""
        lim = self.limits
        for peer, conn in list(self.connections.items()):
            if now - conn.last_rx > lim.idle_timeout:
                self.timed_out += 1
                conn.close()
            elif now - conn.opened > lim.handshake_timeout and not self.selected(peer):
                self.timed_out += 1
                conn.close()


def _discard(packet: bytes) -> None:
    """Transmit for a connection that is gone."""

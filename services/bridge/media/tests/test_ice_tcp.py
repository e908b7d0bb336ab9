"""ICE-TCP framing and connection policing, without sockets (a recording transport)."""

from __future__ import annotations

from typing import Any

import pytest

from services.bridge.media.transport import aiortc_adapter as adapter
from services.bridge.media.transport.ice_tcp import (
    IceTcpLimits,
    IceTcpServer,
    Rfc4571Framer,
    TcpPeer,
    _Connection,
    frame,
)


def test_framer_reassembles_across_reads() -> None:
    framer = Rfc4571Framer()
    stream = frame(b"one") + frame(b"") + frame(b"two" * 100) + frame(b"x")
    got: list[bytes] = []
    for i in range(0, len(stream), 3):  # three bytes at a time, splitting headers too
        got += framer.feed(stream[i : i + 3])
    assert got == [b"one", b"two" * 100, b"x"]
    assert framer.buffered == 0
    assert framer.feed(b"\x00") == [] and framer.buffered == 1


def test_frames_are_bounded() -> None:
    framer = Rfc4571Framer()
    assert framer.feed(b"\xff\xff" + b"a" * 100) == []
    assert framer.buffered == 102  # waits for at most 65,535 more bytes, never more
    with pytest.raises(ValueError):
        frame(b"a" * 70_000)


def test_tcp_peer_never_equals_a_udp_address() -> None:
    tcp, udp = TcpPeer("10.0.0.1", 5000), ("10.0.0.1", 5000)
    assert tcp != udp and udp != tcp and tcp == TcpPeer("10.0.0.1", 5000)
    table: dict[tuple[str, int], str] = {udp: "udp", tcp: "tcp"}
    assert table[udp] == "udp" and table[TcpPeer("10.0.0.1", 5000)] == "tcp"
    assert (tcp[0], tcp[1]) == udp  # still usable where an (ip, port) is read


class FakeTransport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = bytearray()
        self.closed = False
        self.buffered = 0

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True


class Harness:
    def __init__(self, limits: IceTcpLimits) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.selected: set[TcpPeer] = set()
        self.server = IceTcpServer(
            lambda d, a: self.received.append((d, a)), self.selected.__contains__, limits
        )

    def connect(self, ip: str, port: int) -> tuple[_Connection, FakeTransport]:
        conn = _Connection(self.server)
        transport = FakeTransport((ip, port))
        conn.connection_made(transport)  # type: ignore[arg-type]
        return conn, transport


def stun() -> bytes:
    return adapter.binding_request("remote", "local", "p" * 24)


def test_stun_then_media_reach_the_engine_and_replies_are_framed() -> None:
    h = Harness(IceTcpLimits())
    conn, transport = h.connect("192.0.2.7", 40000)
    conn.data_received(frame(stun()) + frame(b"\x80\x60media"))
    peer = TcpPeer("192.0.2.7", 40000)
    assert h.received == [(stun_bytes := h.received[0][0], peer), (b"\x80\x60media", peer)]
    assert stun_bytes[0] < 4 and type(h.received[0][1]) is TcpPeer
    h.server.send(b"reply", peer)
    h.server.transmitter(peer)(b"media out")
    assert bytes(transport.written) == frame(b"reply") + frame(b"media out")


def test_a_connection_that_does_not_start_with_stun_is_closed() -> None:
    h = Harness(IceTcpLimits())
    conn, transport = h.connect("192.0.2.7", 40000)
    conn.data_received(frame(b"GET / HTTP/1.1\r\n\r\n"))
    assert transport.closed and h.received == [] and h.server.refused == 1


def test_unselected_connections_time_out_and_selected_ones_stay() -> None:
    h = Harness(IceTcpLimits(handshake_timeout=5, idle_timeout=30))
    idle, idle_t = h.connect("192.0.2.7", 40000)
    used, used_t = h.connect("192.0.2.8", 40001)
    h.selected.add(TcpPeer("192.0.2.8", 40001))
    h.server.sweep(idle.opened + 4)
    assert not idle_t.closed
    h.server.sweep(idle.opened + 6)
    assert idle_t.closed and not used_t.closed and h.server.timed_out == 1
    used.last_rx = used.opened
    h.server.sweep(used.opened + 31)  # silent for too long, even when selected
    assert used_t.closed


def test_connection_limits_per_address_and_in_total() -> None:
    h = Harness(IceTcpLimits(max_per_address=2, max_connections=3))
    conns = [h.connect("192.0.2.7", 40000 + i) for i in range(3)]
    assert [t.closed for _, t in conns] == [False, False, True]
    _, other = h.connect("192.0.2.9", 1)
    assert not other.closed
    _, fourth = h.connect("192.0.2.10", 1)
    assert fourth.closed
    conns[0][0].connection_lost(None)  # a slot is free again
    _, again = h.connect("192.0.2.7", 40010)
    assert not again.closed


def test_a_receiver_that_does_not_read_loses_packets_not_memory() -> None:
    h = Harness(IceTcpLimits(max_write_buffer=1000))
    conn, transport = h.connect("192.0.2.7", 40000)
    transport.buffered = 2000
    conn.send(b"x" * 100)
    assert transport.written == b"" and conn.dropped == 1
    transport.buffered = 0
    conn.send(b"y")
    assert bytes(transport.written) == frame(b"y")

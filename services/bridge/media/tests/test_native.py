"""The C forwarding loop (native.py) against the Python loop it replaces, byte for byte.

Two forwarders get the same packets: one forwards in Python into lists, the other in C on a real
UDP socket to one loopback socket per receiver. Their SRTP sessions are made from the same keys,
so the protected datagrams, the sent logs and the counters must be identical. (test_forwarder.py
runs its whole suite under both loops as well.)"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pylibsrtp
import pytest

from services.bridge.media.forwarding.forwarder import ConferenceForwarder
from services.bridge.media.forwarding.mapping import ForwardingMapping
from services.bridge.media.forwarding.native import (
    NativeFanout,
    NativeUnavailable,
    build,
    load,
    socket_address,
)
from services.bridge.media.forwarding.policy import ForwardingPolicy
from services.bridge.media.forwarding.streams import EndpointMedia, Subscription
from services.bridge.media.model import MediaSources, PayloadType
from services.bridge.media.transport.aiortc_adapter import SrtpContext

GCM = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
SENDER_SSRC = 1002
SOURCES = MediaSources(video_ssrcs=[SENDER_SSRC], payload_types=[PayloadType(96, "VP8", 90000)])


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load(build(Path(tmp_path_factory.mktemp("native")) / "native_fanout.so"))


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def udp(opened: list[socket.socket], family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    opened.append(s)
    s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    s.setblocking(False)
    return s


def drain(s: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(s.recv(2048))
        except BlockingIOError:
            return out


class Twins:
    """The same conference twice: ``python`` forwards into lists, ``native`` in C to sockets.
    Receiver ``i`` has the same SRTP keys in both."""

    def __init__(
        self,
        library: Any,
        opened: list[socket.socket],
        receivers: int,
        family: int = socket.AF_INET,
        queued: Callable[[], int] = lambda: 0,
    ) -> None:
        bridge = udp(opened, family)
        self.fanout = NativeFanout(bridge.fileno(), queued, library)
        self.python = ConferenceForwarder("c", ForwardingPolicy())
        self.native = ConferenceForwarder("c", ForwardingPolicy(), native=self.fanout)
        self.lists: list[list[bytes]] = []
        self.sockets: list[socket.socket] = []
        for conference in (self.python, self.native):
            conference.add_endpoint("sender", lambda data: None)
            conference.set_sources("sender", SOURCES)
        for i in range(receivers):
            name = f"r{i}"
            keys = os.urandom(28), os.urandom(28)
            wire: list[bytes] = []
            self.lists.append(wire)
            self.python.add_endpoint(name, wire.append)
            self.python.set_srtp(name, SrtpContext("SRTP_AEAD_AES_128_GCM", *keys, GCM), 0.0)
            peer = udp(opened, family)
            self.sockets.append(peer)
            address = peer.getsockname()

            def transmit(data: bytes, address: tuple[Any, ...] = address) -> None:
                bridge.sendto(data, address)

            endpoint = self.native.add_endpoint(name, transmit)
            endpoint.set_transmit(transmit, address)
            self.native.set_srtp(name, SrtpContext("SRTP_AEAD_AES_128_GCM", *keys, GCM), 0.0)

    def send(self, packet: bytes) -> None:
        for conference in (self.python, self.native):
            conference.handle_rtp(conference.endpoints["sender"], packet, 0.0)

    def subscriptions(self, i: int) -> tuple[Subscription, Subscription]:
        def sub(conference: ConferenceForwarder) -> Subscription:
            return conference.endpoints[f"r{i}"].subscriptions[SENDER_SSRC]

        return sub(self.python), sub(self.native)

    def wires(self, i: int) -> tuple[list[bytes], list[bytes]]:
        python = self.lists[i][:]
        self.lists[i].clear()
        return python, drain(self.sockets[i])


def rtp_packet(seq: int, ts: int, payload: bytes = b"\x10\x00" + bytes(900)) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, ts, SENDER_SSRC) + payload


def test_the_c_loop_sends_what_the_python_loop_sends(library: Any, sockets: list[socket.socket]) -> None:
    twins = Twins(library, sockets, receivers=3)
    # receiver 1 sees the stream remapped, across both wraps; receiver 2 with a payload rewrite
    for conference in (twins.python, twins.native):
        r1 = conference.endpoints["r1"].subscriptions[SENDER_SSRC]
        r1.follow(ForwardingMapping(SENDER_SSRC, 0xDEADBEEF, -3, 2**32 - 5))
        r2 = conference.endpoints["r2"].subscriptions[SENDER_SSRC]
        r2.follow(ForwardingMapping(SENDER_SSRC, seq_delta=7, payload_rewrite=lambda p: p.__setitem__(12, 0x90)))
    packets = [rtp_packet((0xFFFE + i) & 0xFFFF, (0xFFFFFFF0 + 3000 * i) & 0xFFFFFFFF) for i in range(6)]
    for packet in packets:
        twins.send(packet)
    for i in range(3):
        python_wire, native_wire = twins.wires(i)
        assert len(python_wire) == len(packets)
        assert native_wire == python_wire, f"receiver {i}"
        python_sub, native_sub = twins.subscriptions(i)
        assert native_sub.sent.entries == python_sub.sent.entries
        assert (
            (native_sub.packets, native_sub.octets) == (python_sub.packets, python_sub.octets) == (6, 6 * 902)
        )
    # which loop sent what: the payload rewrite is the Python loop's
    _, r0 = twins.subscriptions(0)
    _, r2 = twins.subscriptions(2)
    assert (r0.packets_by_python, r0.native.packets) == (0, 6)
    assert (r2.packets_by_python, r2.native.packets) == (6, 0)
    assert twins.fanout.packets_to_python == 6
    assert twins.native.packets_forwarded == twins.python.packets_forwarded == 18


def test_a_receiver_without_srtp_or_address_gets_nothing_and_nothing_is_counted(
    library: Any, sockets: list[socket.socket]
) -> None:
    twins = Twins(library, sockets, receivers=2)
    receiver: EndpointMedia = twins.native.endpoints["r1"]
    receiver.set_transmit(lambda data: None, None)  # no address: the Python loop sends (nowhere)
    twins.send(rtp_packet(1, 0))
    _, sub = twins.subscriptions(1)
    assert (sub.packets_by_python, sub.native.packets) == (1, 0)
    assert twins.wires(1)[1] == []
    assert receiver.native is not None and not receiver.native.ready
    receiver.set_transmit(receiver.transmit, twins.sockets[1].getsockname())
    assert receiver.native.ready
    twins.native.set_srtp("r1", None, 0.0)  # gone: the session pointer goes before the session
    assert not receiver.native.ready


def test_datagrams_the_event_loop_holds_are_not_overtaken(library: Any, sockets: list[socket.socket]) -> None:
    """While the transport has datagrams queued (its socket buffer was full), the C loop steps
    aside and everything goes through the transport, behind them."""
    held = [1]
    twins = Twins(library, sockets, receivers=2, queued=lambda: held[0])
    twins.send(rtp_packet(1, 0))
    held[0] = 0
    twins.send(rtp_packet(2, 3000))
    for i in range(2):
        python_wire, native_wire = twins.wires(i)
        assert native_wire == python_wire and len(native_wire) == 2
        _, sub = twins.subscriptions(i)
        assert (sub.packets_by_python, sub.native.packets) == (1, 1)


def test_ipv6_receivers(library: Any, sockets: list[socket.socket]) -> None:
    try:
        udp(sockets, socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    twins = Twins(library, sockets, receivers=2, family=socket.AF_INET6)
    twins.send(rtp_packet(1, 0))
    for i in range(2):
        python_wire, native_wire = twins.wires(i)
        assert native_wire == python_wire and len(native_wire) == 1


def test_socket_addresses_are_what_the_kernel_reports() -> None:
    assert socket_address(("127.0.0.1", 0x1234)) == struct.pack("=H", socket.AF_INET) + bytes(
        [0x12, 0x34, 127, 0, 0, 1]
    ) + bytes(8)
    encoded = socket_address(("::1", 5004, 0, 0))
    assert len(encoded) == 28 and encoded[2:4] == struct.pack("!H", 5004) and encoded[23] == 1


def test_a_missing_or_failed_build_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NativeUnavailable, match=r"not built.*services\.bridge\.media\.forwarding\.native"):
        load(tmp_path / "absent.so")
    monkeypatch.setenv("CC", "false")
    with pytest.raises(NativeUnavailable, match="failed"):
        build(tmp_path / "native_fanout.so")
    assert not (tmp_path / "native_fanout.so").exists()


def test_the_kept_array_of_a_stream_follows_its_receivers(library: Any, sockets: list[socket.socket]) -> None:
    """A stream everyone gets keeps the C loop's array of its subscriptions between packets; a
    receiver joining or leaving replaces the subscription list, and the next packet goes by the
    new one."""
    twins = Twins(library, sockets, receivers=3)
    stream = twins.native.endpoints["sender"].streams[SENDER_SSRC]
    twins.send(rtp_packet(1, 0))
    kept = stream.native_targets
    assert kept is not None and kept[0] is stream.subscriptions
    twins.send(rtp_packet(2, 3000))
    assert stream.native_targets is kept  # not built again
    twins.python.remove_endpoint("r1")
    twins.native.remove_endpoint("r1")
    twins.send(rtp_packet(3, 6000))
    assert stream.native_targets is not kept and stream.native_targets[0] is stream.subscriptions
    for i, expected in ((0, 3), (1, 2), (2, 3)):
        python_wire, native_wire = twins.wires(i)
        assert len(native_wire) == expected and native_wire == python_wire[: len(native_wire)]
        assert len(python_wire) == expected
    for i in (0, 2):
        _, sub = twins.subscriptions(i)
        assert (sub.packets_by_python, sub.native.packets) == (0, 3)

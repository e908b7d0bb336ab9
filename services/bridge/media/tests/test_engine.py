"""MediaEngine without a socket: datagrams go in through ``datagram_received`` and come out of a
recording transport; the peers are real ICE/DTLS/SRTP state from the aiortc adapter."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from services.bridge.media.engine import MediaConfig, MediaEngine, UnknownEndpoint
from services.bridge.media.model import DtlsFingerprint, MediaSources, PayloadType, RemoteTransport
from services.bridge.media.transport import aiortc_adapter as adapter
from services.bridge.media.transport.aiortc_adapter import DtlsCertificate, DtlsSession, DtlsState

PEER_CERT = DtlsCertificate()


class RecordingTransport:
    """The UDP socket's place: keeps what the engine sends, per destination."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        assert addr is not None
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 10000) if name == "sockname" else None

    def take(self, addr: tuple[str, int]) -> list[bytes]:
        mine = [d for d, a in self.sent if a == addr]
        self.sent = [(d, a) for d, a in self.sent if a != addr]
        return mine


class Peer:
    def __init__(self, engine: MediaEngine, wire: RecordingTransport, name: str, port: int) -> None:
        self.engine, self.wire, self.name = engine, wire, name
        self.addr = ("127.0.0.1", port)
        self.local = engine.create_endpoint("conf", name)
        self.ufrag, self.pwd = f"u{name}", f"p{name}" * 8
        self.dtls = DtlsSession(PEER_CERT, "client", [("sha-256", self.local.fingerprints[0].fingerprint)])
        engine.set_remote_transport(
            "conf",
            name,
            RemoteTransport(
                self.ufrag, self.pwd, [DtlsFingerprint("sha-256", PEER_CERT.fingerprint(), "active")]
            ),
        )

    def check(self, use_candidate: bool = True) -> list[bytes]:
        request = adapter.binding_request(
            self.ufrag, self.local.ufrag, self.local.pwd, use_candidate=use_candidate
        )
        self.engine.datagram_received(request, self.addr)
        return self.wire.take(self.addr)

    def handshake(self) -> None:
        to_bridge = self.dtls.start()
        for _ in range(10):
            for datagram in to_bridge:
                self.engine.datagram_received(datagram, self.addr)
            to_bridge = [d for x in self.wire.take(self.addr) for d in self.dtls.feed(x)]
        assert self.dtls.state is DtlsState.CONNECTED

    def send_rtp(self, packet: bytes) -> None:
        assert self.dtls.srtp is not None
        self.engine.datagram_received(self.dtls.srtp.protect(packet), self.addr)

    def received_rtp(self) -> list[bytes]:
        assert self.dtls.srtp is not None
        return [self.dtls.srtp.unprotect(d) for d in self.wire.take(self.addr) if not 191 < d[1] < 224]


@pytest.fixture
def engine() -> tuple[MediaEngine, RecordingTransport, list[tuple[str, str, str]]]:
    engine = MediaEngine(MediaConfig(port=0, advertise_ips=("192.0.2.10",), consent_timeout=5))
    wire = RecordingTransport()
    engine.connection_made(wire)  # type: ignore[arg-type]
    states: list[tuple[str, str, str]] = []
    engine.on_endpoint_state = lambda c, e, s: states.append((c, e, s))
    return engine, wire, states


def test_local_transport(engine) -> None:  # type: ignore[no-untyped-def]
    e, _, _ = engine
    local = e.create_endpoint("conf", "a")
    assert local.ice_lite and local.rtcp_mux
    assert [(c.ip, c.port, c.type, c.protocol) for c in local.candidates] == [
        ("192.0.2.10", 10000, "host", "udp")
    ]
    assert local.fingerprints[0].hash == "sha-256" and local.fingerprints[0].setup == "actpass"
    assert e.create_endpoint("conf", "a") == local  # idempotent
    assert e.create_endpoint("conf", "b").ufrag != local.ufrag


async def test_ice_dtls_and_forwarding(engine) -> None:  # type: ignore[no-untyped-def]
    e, wire, states = engine
    a, b = Peer(e, wire, "a", 5001), Peer(e, wire, "b", 5002)
    pts = [PayloadType(96, "VP8", 90000)]
    e.set_sources("conf", "a", MediaSources(video_ssrcs=[11], payload_types=pts))
    (response,) = a.check()
    assert adapter.is_binding_success(response)
    a.handshake()
    b.check()
    b.handshake()
    assert ("conf", "a", "connected") in states and ("conf", "b", "connected") in states
    packet = struct.pack("!BBHII", 0x80, 96, 1, 3000, 11) + b"\x10\x00vp8"
    a.send_rtp(packet)
    assert b.received_rtp() == [packet]
    stats = e.stats()
    assert stats.endpoints == 2 and stats.total_ice_succeeded == 2 and stats.packets_forwarded == 1
    assert e.endpoint_last_activity("conf", "a") is not None


async def test_unknown_ufrag_bad_password_and_strangers(engine) -> None:  # type: ignore[no-untyped-def]
    e, wire, _ = engine
    a = Peer(e, wire, "a", 5001)
    bad = adapter.binding_request("x", a.local.ufrag, "wrong-password-wrong-pass")
    e.datagram_received(bad, a.addr)
    (reply,) = wire.take(a.addr)
    assert not adapter.is_binding_success(reply)
    e.datagram_received(adapter.binding_request("x", "nobody", "pw"), ("10.0.0.9", 1))
    assert not adapter.is_binding_success(wire.take(("10.0.0.9", 1))[0])
    # DTLS or SRTP from an address that never passed ICE is dropped
    e.datagram_received(b"\x16\xfe\xfd" + b"\x00" * 40, ("10.0.0.9", 2))
    e.datagram_received(b"\x80\x60" + b"\x00" * 40, ("10.0.0.9", 2))
    e.datagram_received(b"", ("10.0.0.9", 2))
    assert wire.sent == []
    assert e.endpoint_last_activity("conf", "a") is None


async def test_silence_expires_endpoint_and_empty_conference(engine) -> None:  # type: ignore[no-untyped-def]
    e, wire, states = engine
    a = Peer(e, wire, "a", 5001)
    a.check()
    a.handshake()
    last = e.endpoint_last_activity("conf", "a")
    assert last is not None
    e._check_timeouts(last + 4)
    assert e.has_endpoint("conf", "a")
    e._check_timeouts(last + 6)
    assert not e.has_endpoint("conf", "a")
    assert [s for _, n, s in states if n == "a"] == ["connected", "failed", "expired"]
    assert e.conference_ids() == []
    e.expire_endpoint("conf", "a")  # idempotent


def test_control_errors(engine) -> None:  # type: ignore[no-untyped-def]
    e, _, _ = engine
    with pytest.raises(UnknownEndpoint):
        e.set_sources("nope", "x", MediaSources())
    e.create_endpoint("conf", "a")
    with pytest.raises(ValueError, match="fingerprint"):
        e.set_remote_transport("conf", "a", RemoteTransport("u", "p", []))
    with pytest.raises(ValueError, match="supported hash"):
        e.set_remote_transport("conf", "a", RemoteTransport("u", "p", [DtlsFingerprint("md5", "00")]))
    e.expire_conference("conf")
    assert e.conference_ids() == [] and not e.has_endpoint("conf", "a")


async def test_new_fingerprint_starts_a_new_dtls_association(engine) -> None:  # type: ignore[no-untyped-def]
    e, wire, states = engine
    a, b = Peer(e, wire, "a", 5001), Peer(e, wire, "b", 5002)
    e.set_sources("conf", "a", MediaSources(video_ssrcs=[11], payload_types=[PayloadType(96, "VP8", 90000)]))
    for peer in (a, b):
        peer.check()
        peer.handshake()
    new_cert = DtlsCertificate()
    b.dtls = DtlsSession(new_cert, "client", [("sha-256", b.local.fingerprints[0].fingerprint)])
    e.set_remote_transport(
        "conf",
        "b",
        RemoteTransport(b.ufrag, b.pwd, [DtlsFingerprint("sha-256", new_cert.fingerprint(), "active")]),
    )
    packet = struct.pack("!BBHII", 0x80, 96, 1, 3000, 11) + b"\x10\x00vp8"
    a.send_rtp(packet)
    assert wire.take(b.addr) == []  # nothing until the new association is up
    b.handshake()
    second = struct.pack("!BBHII", 0x80, 96, 2, 6000, 11) + b"\x10\x00vp8"
    a.send_rtp(second)
    assert b.received_rtp() == [second]
    assert [s for _, n, s in states if n == "b"] == ["connected", "connected"]


async def test_dtls_application_data_in_and_out(engine) -> None:  # type: ignore[no-untyped-def]
    e, wire, _ = engine
    a = Peer(e, wire, "a", 5001)
    got: list[tuple[str, str, bytes]] = []
    e.on_dtls_data = lambda c, ep, data: got.append((c, ep, data))
    assert e.dtls_role("conf", "a") is None
    with pytest.raises(ConnectionError):
        e.send_dtls_data("conf", "a", b"before ICE")
    a.check()
    a.handshake()
    assert e.dtls_role("conf", "a") == "server"  # the peer said setup:active
    for datagram in a.dtls.send_application_data(b"an SCTP packet"):
        e.datagram_received(datagram, a.addr)
    assert got == [("conf", "a", b"an SCTP packet")]
    e.send_dtls_data("conf", "a", b"answer")
    for datagram in wire.take(a.addr):
        a.dtls.feed(datagram)
    assert a.dtls.take_application_data() == [b"answer"]
    e.on_dtls_data = lambda c, ep, data: 1 / 0  # a failing consumer does not break the packet path
    for datagram in a.dtls.send_application_data(b"again"):
        e.datagram_received(datagram, a.addr)
    e.expire_endpoint("conf", "a")
    with pytest.raises(ConnectionError):
        e.send_dtls_data("conf", "a", b"after expiry")


def test_receive_time_is_the_kernels_not_when_the_loop_got_to_it() -> None:
    import socket as socket_module
    import time as time_module

    from services.bridge.media.engine import receive_time

    with (
        socket_module.socket(socket_module.AF_INET, socket_module.SOCK_DGRAM) as rx,
        socket_module.socket(socket_module.AF_INET, socket_module.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        for _ in range(3):  # the first read turns the kernel's timestamps on
            tx.sendto(b"x", rx.getsockname())
            time_module.sleep(0.05)  # the event loop busy elsewhere
            rx.recv(16)
            now = time_module.monotonic()
            arrival = receive_time(rx.fileno(), now)
        assert 0.04 < now - arrival < 0.5
    assert receive_time(-1, 12.5) == 12.5

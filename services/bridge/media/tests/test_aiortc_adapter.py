"""The aiortc/aioice hooks the bridge relies on: DTLS-SRTP handshake in memory, SRTP round trips,
STUN binding requests and responses. If an aiortc/aioice upgrade breaks a private hook, these fail."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from aioice import stun

from services.bridge.media.transport import aiortc_adapter as adapter
from services.bridge.media.transport.aiortc_adapter import DtlsCertificate, DtlsSession, DtlsState


def handshake(server: DtlsSession, client: DtlsSession) -> None:
    """Shuttle datagrams between two sessions until both settle."""
    to_server = client.start()
    for _ in range(20):
        to_client = [d for datagram in to_server for d in server.feed(datagram)]
        to_server = [d for datagram in to_client for d in client.feed(datagram)]
        if not to_server and not to_client:
            break


def dtls_pair() -> tuple[DtlsSession, DtlsSession]:
    bridge_cert, peer_cert = DtlsCertificate(), DtlsCertificate()
    server = DtlsSession(bridge_cert, "server", [("sha-256", peer_cert.fingerprint())])
    client = DtlsSession(peer_cert, "client", [("sha-256", bridge_cert.fingerprint())])
    handshake(server, client)
    return server, client


def rtp_packet(seq: int, ssrc: int = 1234, payload: bytes = b"hello") -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, ssrc) + payload


def test_fingerprint_format() -> None:
    fp = DtlsCertificate().fingerprint()
    parts = fp.split(":")
    assert len(parts) == 32 and all(len(p) == 2 and p == p.upper() for p in parts)


def test_dtls_srtp_handshake_and_round_trip() -> None:
    server, client = dtls_pair()
    assert server.state is DtlsState.CONNECTED and client.state is DtlsState.CONNECTED
    assert server.srtp is not None and client.srtp is not None
    packet = rtp_packet(1)
    protected = client.srtp.protect(packet)
    assert protected != packet
    assert server.srtp.unprotect(protected) == packet
    back = server.srtp.protect(rtp_packet(7, ssrc=99))
    assert client.srtp.unprotect(back) == rtp_packet(7, ssrc=99)
    rtcp = struct.pack("!BBHI", 0x80, 201, 1, 55)
    assert server.srtp.unprotect_rtcp(client.srtp.protect_rtcp(rtcp)) == rtcp


def test_tampered_srtp_is_rejected() -> None:
    server, client = dtls_pair()
    assert client.srtp is not None and server.srtp is not None
    protected = bytearray(client.srtp.protect(rtp_packet(1)))
    protected[-1] ^= 0xFF
    with pytest.raises(adapter.SrtpError):
        server.srtp.unprotect(bytes(protected))


def test_fingerprint_mismatch_fails_the_session() -> None:
    bridge_cert, peer_cert, other = DtlsCertificate(), DtlsCertificate(), DtlsCertificate()
    server = DtlsSession(bridge_cert, "server", [("sha-256", other.fingerprint())])
    client = DtlsSession(peer_cert, "client", [("sha-256", bridge_cert.fingerprint())])
    handshake(server, client)
    assert server.state is DtlsState.FAILED
    assert server.failure == "fingerprint mismatch"
    assert server.srtp is None


def test_session_needs_a_supported_fingerprint() -> None:
    with pytest.raises(ValueError, match="supported hash"):
        DtlsSession(DtlsCertificate(), "server", [("md5", "00:11")])
    with pytest.raises(ValueError, match="role"):
        DtlsSession(DtlsCertificate(), "both", [("sha-256", "00")])


def test_retransmission_timer_is_offered_while_connecting() -> None:
    bridge_cert, peer_cert = DtlsCertificate(), DtlsCertificate()
    client = DtlsSession(peer_cert, "client", [("sha-256", bridge_cert.fingerprint())])
    first = client.start()
    assert first and first[0][0] == 22  # a DTLS handshake record
    timeout = client.timeout()
    assert timeout is not None and timeout > 0
    client.feed(b"\x16garbage")
    assert client.state is DtlsState.CONNECTING


def test_stun_binding_round_trip() -> None:
    request_bytes = adapter.binding_request("peer", "bridge", "bridgepassword", use_candidate=True)
    request = adapter.parse_binding_request(request_bytes)
    assert (request.local_ufrag, request.remote_ufrag) == ("bridge", "peer")
    assert request.use_candidate and request.controlling
    assert adapter.verify_integrity(request, "bridgepassword")
    assert not adapter.verify_integrity(request, "wrong")
    response = adapter.binding_success(request, ("127.0.0.1", 5000), "bridgepassword")
    assert adapter.is_binding_success(response)


@pytest.mark.parametrize(
    "address",
    [("127.0.0.1", 5000), ("203.0.113.250", 65535), ("::1", 10000, 0, 0), ("2001:db8::7", 1, 0, 0)],
)
def test_binding_success_is_what_aioice_encodes(address: tuple[Any, ...]) -> None:
    """The response is encoded by hand for speed: byte for byte aioice's own encoding, and it
    passes aioice's integrity and fingerprint checks."""
    request = adapter.parse_binding_request(adapter.binding_request("peer", "bridge", "pw" * 12))
    response = adapter.binding_success(request, address, "pw" * 12)
    reference = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    reference.attributes["XOR-MAPPED-ADDRESS"] = (address[0], address[1])
    reference.add_message_integrity(b"pw" * 12)
    assert response == bytes(reference)
    parsed = stun.parse_message(response)  # checks the FINGERPRINT
    assert parsed.attributes["XOR-MAPPED-ADDRESS"] == (address[0], address[1])
    assert parsed.check_message_integrity(b"pw" * 12)
    assert not parsed.check_message_integrity(b"wrong")


@pytest.mark.parametrize("datagram", [b"", b"\x00\x01", b"\x00\x01\x00\x00" + b"\x00" * 16, b"\x01" * 30])
def test_malformed_stun_raises_stun_error(datagram: bytes) -> None:
    with pytest.raises(adapter.StunError):
        adapter.parse_binding_request(datagram)


# --- DTLS application data and SCTP data channels ---------------------------------------------


def test_application_data_round_trip_and_not_before_the_handshake() -> None:
    bridge_cert, peer_cert = DtlsCertificate(), DtlsCertificate()
    early = DtlsSession(bridge_cert, "client", [("sha-256", peer_cert.fingerprint())])
    with pytest.raises(ConnectionError):
        early.send_application_data(b"too early")
    server, client = dtls_pair()
    for datagram in client.send_application_data(b"sctp packet 1") + client.send_application_data(b"2"):
        assert server.feed(datagram) == []
    assert server.take_application_data() == [b"sctp packet 1", b"2"]
    assert server.take_application_data() == []
    for datagram in server.send_application_data(b"back"):
        client.feed(datagram)
    assert client.take_application_data() == [b"back"]
    # SRTP still works beside it
    assert server.srtp is not None and client.srtp is not None
    assert server.srtp.unprotect(client.srtp.protect(rtp_packet(3))) == rtp_packet(3)


class _Wire:
    """Two SCTP associations over a real in-memory DTLS pair; ``cut`` drops everything."""

    def __init__(self) -> None:
        self.server, self.client = dtls_pair()
        self.cut = False
        self.bridge_channels: list[adapter.DataChannel] = []
        self.peer_channels: list[adapter.DataChannel] = []
        self.bridge = adapter.SctpAssociation(
            "server", lambda data: self._carry(self.server, self.client, self.peer, data),
            on_channel=self.bridge_channels.append,
        )  # fmt: skip
        self.peer = adapter.SctpAssociation(
            "client", lambda data: self._carry(self.client, self.server, self.bridge, data),
            on_channel=self.peer_channels.append,
        )  # fmt: skip

    def _carry(
        self, sender: DtlsSession, receiver: DtlsSession, to: adapter.SctpAssociation, data: bytes
    ) -> None:
        datagrams = sender.send_application_data(data)
        if self.cut:
            return
        for datagram in datagrams:
            receiver.feed(datagram)
        for packet in receiver.take_application_data():
            to.feed(packet)


async def _until(predicate, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_sctp_data_channel_opened_by_the_bridge_carries_text_both_ways() -> None:
    wire = _Wire()
    await wire.bridge.start()
    await wire.peer.start()
    channel = wire.bridge.open_channel("default")
    opened: list[bool] = []
    channel.on_open = lambda: opened.append(True)
    from_peer: list[str] = []
    channel.on_message = from_peer.append
    await _until(lambda: wire.peer_channels and opened)
    assert wire.bridge.state == "connected" and wire.peer.state == "connected"
    remote = wire.peer_channels[0]
    assert remote.label == "default" and remote.is_open
    assert channel.stream_id is not None and channel.stream_id % 2 == 1  # DTLS server: odd ids
    to_peer: list[str] = []
    remote.on_message = to_peer.append
    channel.send_text('{"colibriClass":"ServerHello"}')
    remote.send_text('{"colibriClass":"ClientHello"}')
    remote.send_text("x" * 5000)  # fragmented over several DATA chunks
    await _until(lambda: to_peer and len(from_peer) == 2)
    assert to_peer == ['{"colibriClass":"ServerHello"}']
    assert from_peer == ['{"colibriClass":"ClientHello"}', "x" * 5000]
    await wire.peer.close()
    await wire.bridge.close()
    assert wire.bridge.state == "closed"


async def test_sctp_channel_opened_by_the_peer_and_a_lost_association() -> None:
    wire = _Wire()
    await wire.bridge.start()
    await wire.peer.start()
    channel = wire.peer.open_channel("bridge", protocol="http://jitsi.org/protocols/colibri")
    await _until(lambda: wire.bridge_channels and channel.is_open)
    assert wire.bridge_channels[0].label == "bridge" and channel.stream_id == 0  # DTLS client: even
    closed: list[bool] = []
    wire.bridge_channels[0].on_close = lambda: closed.append(True)
    await wire.peer.close()  # ABORT reaches the bridge: its channels close
    await _until(lambda: closed)
    assert wire.bridge.state == "closed"
    with pytest.raises(ConnectionError):
        wire.bridge_channels[0].send_text("late")
    await wire.bridge.close(transport_gone=True)


async def test_sctp_garbage_and_a_dead_transport_are_contained() -> None:
    wire = _Wire()
    wire.cut = True
    await wire.bridge.start()
    wire.bridge.feed(b"\x00" * 3)  # not an SCTP packet
    wire.bridge.feed(b"\x13\x88\x13\x88" + b"\xff" * 40)  # bad checksum
    await wire.bridge.close(transport_gone=True)
    assert wire.bridge.state == "closed"
    with pytest.raises(ValueError, match="role"):
        adapter.SctpAssociation("both", lambda data: None)


async def test_sctp_send_after_the_dtls_association_went_is_a_loss_not_an_error() -> None:
    wire = _Wire()
    await wire.bridge.start()
    await wire.peer.start()
    channel = wire.bridge.open_channel("default")
    await _until(lambda: channel.is_open)

    def gone(data: bytes) -> None:
        raise ConnectionError("no DTLS association")

    import asyncio
    import gc

    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    wire.bridge._dtls._send = gone  # the engine expired the endpoint meanwhile
    channel.send_text("lost")  # aiortc flushes this in a task of its own
    await asyncio.sleep(0.05)
    gc.collect()  # an unretrieved task exception is reported when the task is collected
    assert errors == []
    assert wire.bridge._dtls.state == "closed"
    await wire.bridge.close(transport_gone=True)
    await wire.peer.close()

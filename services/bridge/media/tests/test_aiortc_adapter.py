"""The aiortc/aioice hooks the bridge relies on: DTLS-SRTP handshake in memory, SRTP round trips,
STUN binding requests and responses. If an aiortc/aioice upgrade breaks a private hook, these fail."""

from __future__ import annotations

import struct

import pytest

from services.bridge.media import aiortc_adapter as adapter
from services.bridge.media.aiortc_adapter import DtlsCertificate, DtlsSession, DtlsState


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


@pytest.mark.parametrize("datagram", [b"", b"\x00\x01", b"\x00\x01\x00\x00" + b"\x00" * 16, b"\x01" * 30])
def test_malformed_stun_raises_stun_error(datagram: bytes) -> None:
    with pytest.raises(adapter.StunError):
        adapter.parse_binding_request(datagram)

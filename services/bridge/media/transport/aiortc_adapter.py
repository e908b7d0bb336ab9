"""Every use of aiortc/aioice internals in Parley, in one place.

The bridge does not run aiortc's RTCPeerConnection (it would decode everything it receives); it
uses the pieces underneath, some of which are private:

- ``aiortc.rtcdtlstransport``: ``RTCCertificate`` (public) and its private ``_create_ssl_context``
  (the DTLS context with the SRTP profiles aiortc negotiates), the private ``SRTP_PROFILES`` list
  and ``SRTPProtectionProfile.get_key_and_salt`` (how DTLS keying material is split into SRTP
  keys), ``certificate_digest``.
- ``aioice.stun``: STUN message parsing, MESSAGE-INTEGRITY and FINGERPRINT (public module of aioice,
  but not documented as an API).
- ``aiortc.rtcsctptransport.RTCSctpTransport`` (SCTP association, DCEP and data channels, RFC
  8831/8832) driven over the bridge's own DTLS session: it expects an ``RTCDtlsTransport`` and
  uses that object's private ``state``, ``_role``, ``_register_data_receiver``,
  ``_unregister_data_receiver`` and ``_send_data``, and is fed with its private ``_handle_data``;
  :class:`SctpAssociation` gives it a stand-in with exactly those.
- ``pylibsrtp`` (aiortc's SRTP binding): ``Session``/``Policy``, and its private cffi binding
  (``pylibsrtp._binding``: ``srtp_protect``/``srtp_unprotect`` called with a reused buffer, the
  session handle ``Session._srtp``) for the per-packet path; the addresses of that
  ``srtp_protect`` and of each outbound session go to the C forwarding loop (``forwarding/native.py``).

aiortc, aioice and pylibsrtp are pinned exactly in ``pyproject.toml``; ``tests/test_aiortc_adapter.py`` checks
the hooks still exist and behave. Everything here but :class:`SctpAssociation` is sans-I/O:
datagrams in, datagrams out (the SCTP association runs its own timers on the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import logging
import secrets
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pylibsrtp
from aioice import stun
from aiortc import rtcdtlstransport as _dtls
from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters
from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport
from OpenSSL import SSL
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

log = logging.getLogger("parley.bridge.media.sctp")

SUPPORTED_HASHES = tuple(_dtls.X509_DIGEST_ALGORITHMS)


# --------------------------------------------------------------------------------------------
# DTLS certificate


class DtlsCertificate:
    """The bridge's DTLS certificate (one per process, shared by every endpoint)."""

    def __init__(self) -> None:
        self._certificate = _dtls.RTCCertificate.generateCertificate()
        self._context: SSL.Context | None = None

    def fingerprint(self, algorithm: str = "sha-256") -> str:
        """Upper-case hex with colons, as SDP/Jingle carry it."""
        return str(_dtls.certificate_digest(self._certificate._cert, algorithm))

    def ssl_context(self) -> SSL.Context:
        if self._context is None:
            self._context = self._certificate._create_ssl_context(srtp_profiles=_dtls.SRTP_PROFILES)
        return self._context


# --------------------------------------------------------------------------------------------
# SRTP


class SrtpError(Exception):
    """A packet failed SRTP/SRTCP authentication or replay checks, or is too long."""


_SRTP_BUFFER = 1500 + 148  # a full-size datagram plus the largest SRTCP trailer


class _SrtpDirection:
    """One libsrtp session driven directly through pylibsrtp's cffi binding.

    ``pylibsrtp.Session.protect`` allocates an ``int *`` and goes through two Python frames per
    packet; on the forwarding path (one protect per receiver per packet) that is a measurable
    share, so this keeps one buffer and length cell per session and calls libsrtp itself, from
    one closure per operation (one Python frame per packet, its state in closure cells rather
    than attributes). The session object is still created (and freed) by pylibsrtp.
    """

    __slots__ = ("_session", "protect", "protect_rtcp", "session_address", "unprotect", "unprotect_rtcp")

    def __init__(self, policy: pylibsrtp.Policy) -> None:
        self._session = session = pylibsrtp.Session(policy)  # owns the srtp_t and deallocates it
        srtp = session._srtp[0]
        self.session_address = int(_srtp_ffi.cast("uintptr_t", srtp))
        cdata = _srtp_ffi.new("char[]", _SRTP_BUFFER)
        buffer = _srtp_ffi.buffer(cdata)
        length = _srtp_ffi.new("int *")
        args = (session, srtp, cdata, buffer, length)
        self.protect = _srtp_call(_srtp_lib.srtp_protect, *args, trailer=16)
        self.protect_rtcp = _srtp_call(_srtp_lib.srtp_protect_rtcp, *args, trailer=148)
        self.unprotect = _srtp_call(_srtp_lib.srtp_unprotect, *args, trailer=0)
        self.unprotect_rtcp = _srtp_call(_srtp_lib.srtp_unprotect_rtcp, *args, trailer=0)


def _srtp_call(
    func: Any, session: pylibsrtp.Session, srtp: Any, cdata: Any, buffer: Any, length: Any, *, trailer: int
) -> Callable[[bytes | bytearray], bytes]:
    """``packet -> func(packet)`` through the session's buffer; ``trailer``: the most bytes
    ``func`` adds (auth tag, SRTCP index). The closure keeps ``session`` (which frees the
    ``srtp_t`` when collected) alive as long as it can be called."""
    limit = _SRTP_BUFFER - trailer

    def call(packet: bytes | bytearray, _session: pylibsrtp.Session = session) -> bytes:
        n = len(packet)
        if n > limit:
            raise SrtpError("packet too long")
        buffer[0:n] = packet
        length[0] = n
        status = func(srtp, cdata, length)
        if status:
            raise SrtpError(f"libsrtp error {status}")
        return buffer[0 : length[0]]  # type: ignore[no-any-return]

    return call


class SrtpContext:
    """The two SRTP sessions of one endpoint: ``unprotect*`` for what it sends us, ``protect*``
    for what we send it. Each method raises :class:`SrtpError` on a bad packet."""

    __slots__ = ("profile", "protect", "protect_rtcp", "tx_session", "unprotect", "unprotect_rtcp")

    def __init__(self, profile: str, tx_key: bytes, rx_key: bytes, libsrtp_profile: int) -> None:
        self.profile = profile
        rx_policy = pylibsrtp.Policy(
            key=rx_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=libsrtp_profile
        )
        rx_policy.allow_repeat_tx = True
        rx_policy.window_size = 1024
        tx_policy = pylibsrtp.Policy(
            key=tx_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=libsrtp_profile
        )
        # retransmissions from the packet cache re-send an index already sent
        tx_policy.allow_repeat_tx = True
        tx_policy.window_size = 1024
        rx, tx = _SrtpDirection(rx_policy), _SrtpDirection(tx_policy)
        # the closures stored on the instance: one attribute lookup and one frame per packet
        self.protect: Callable[[bytes | bytearray], bytes] = tx.protect
        self.protect_rtcp: Callable[[bytes], bytes] = tx.protect_rtcp
        self.unprotect: Callable[[bytes], bytes] = rx.unprotect
        self.unprotect_rtcp: Callable[[bytes], bytes] = rx.unprotect_rtcp
        # the address of the outbound srtp_t, for the C forwarding loop (native.py); the
        # closures above keep the session alive as long as this context
        self.tx_session: int = tx.session_address


# --------------------------------------------------------------------------------------------
# DTLS session (sans-I/O)


class DtlsState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


_MAX_RECORD = 16384  # the largest DTLS plaintext record
_MAX_PENDING_RECORDS = 64  # application data kept between two take_application_data calls


class DtlsSession:
    """One DTLS-SRTP handshake, fed datagrams and returning datagrams to send.

    ``role`` is ``"server"`` (the remote said ``setup:active``) or ``"client"``. After the
    handshake the peer certificate is checked against ``remote_fingerprints`` (``(hash, value)``
    pairs; every supported one must match) and :attr:`srtp` holds the SRTP context. Once
    connected the association also carries application data (SCTP for data channels):
    :meth:`take_application_data` returns what arrived, :meth:`send_application_data` encrypts.
    """

    def __init__(
        self, certificate: DtlsCertificate, role: str, remote_fingerprints: list[tuple[str, str]]
    ) -> None:
        if role not in ("server", "client"):
            raise ValueError(f"DTLS role must be 'server' or 'client', not {role!r}")
        if not any(alg.lower() in SUPPORTED_HASHES for alg, _ in remote_fingerprints):
            raise ValueError("no remote DTLS fingerprint with a supported hash (sha-256/384/512)")
        self.role = role
        self.state = DtlsState.NEW
        self.failure: str | None = None
        self.srtp: SrtpContext | None = None
        self._remote_fingerprints = remote_fingerprints
        self._received: list[bytes] = []
        self._ssl = SSL.Connection(certificate.ssl_context())
        if role == "server":
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()

    def start(self) -> list[bytes]:
        """Begin the handshake; the client's first flight (ClientHello) is returned."""
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
            return self._step()
        return []

    def feed(self, datagram: bytes) -> list[bytes]:
        """A DTLS datagram from the peer; returns the datagrams to send back."""
        if self.state is DtlsState.NEW:
            self.state = DtlsState.CONNECTING
        if self.state in (DtlsState.FAILED, DtlsState.CLOSED):
            return []
        try:
            self._ssl.bio_write(datagram)
        except SSL.Error:
            return []
        if self.state is DtlsState.CONNECTING:
            out = self._step()
            if self.state is DtlsState.CONNECTED:
                self._read_application_data()  # records that came with the last flight
            return out
        # connected: application data (SCTP packets, RFC 8261) or an alert
        self._read_application_data()
        return self._drain()

    def take_application_data(self) -> list[bytes]:
        """The application data (one SCTP packet per DTLS record) received since the last call."""
        received, self._received = self._received, []
        return received

    def send_application_data(self, data: bytes) -> list[bytes]:
        """Encrypt ``data`` as one DTLS record; returns the datagrams to send. Raises
        ``ConnectionError`` unless the handshake completed."""
        if self.state is not DtlsState.CONNECTED:
            raise ConnectionError(f"DTLS is {self.state.value}, not connected")
        try:
            self._ssl.send(data)
        except SSL.Error as exc:
            raise ConnectionError(f"DTLS send failed: {exc}") from exc
        return self._drain()

    def _read_application_data(self) -> None:
        while True:
            try:
                data = self._ssl.recv(_MAX_RECORD)
            except SSL.ZeroReturnError:
                self.state = DtlsState.CLOSED
                return
            except SSL.Error:  # WantRead: nothing (more) buffered; or a bad record, dropped
                return
            if not data:
                return
            if len(self._received) < _MAX_PENDING_RECORDS:
                self._received.append(bytes(data))

    def timeout(self) -> float | None:
        """Seconds until :meth:`handle_timeout` should be called (handshake retransmission)."""
        if self.state is not DtlsState.CONNECTING:
            return None
        return self._ssl.DTLSv1_get_timeout()

    def handle_timeout(self) -> list[bytes]:
        if self.state is not DtlsState.CONNECTING:
            return []
        self._ssl.DTLSv1_handle_timeout()
        return self._drain()

    def _step(self) -> list[bytes]:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return self._drain()
        except SSL.Error as exc:
            self._fail(f"handshake failed: {exc}")
            return self._drain()
        out = self._drain()
        self._finish()
        return out

    def _finish(self) -> None:
        certificate = self._ssl.get_peer_certificate(as_cryptography=True)
        if certificate is None:
            self._fail("peer sent no certificate")
            return
        for algorithm, value in self._remote_fingerprints:
            algorithm = algorithm.lower()
            if algorithm in SUPPORTED_HASHES:
                actual = _dtls.certificate_digest(certificate, algorithm)
                if not hmac.compare_digest(actual, value.upper()):
                    self._fail("fingerprint mismatch")
                    return
        selected = self._ssl.get_selected_srtp_profile()
        for profile in _dtls.SRTP_PROFILES:
            if profile.openssl_profile == selected:
                break
        else:
            self._fail("no SRTP profile negotiated")
            return
        material = self._ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
        )
        client_key = profile.get_key_and_salt(material, 0)
        server_key = profile.get_key_and_salt(material, 1)
        if self.role == "server":
            tx_key, rx_key = server_key, client_key
        else:
            tx_key, rx_key = client_key, server_key
        self.srtp = SrtpContext(profile.openssl_profile.decode(), tx_key, rx_key, profile.libsrtp_profile)
        self.state = DtlsState.CONNECTED

    def _fail(self, reason: str) -> None:
        self.state = DtlsState.FAILED
        self.failure = reason

    def _drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                data = self._ssl.bio_read(1500)
            except SSL.Error:
                break
            if not data:
                break
            out.append(bytes(data))
        return out


# --------------------------------------------------------------------------------------------
# STUN (ICE connectivity checks)


STUN_USE_CANDIDATE = "USE-CANDIDATE"


@dataclass(frozen=True)
class StunBindingRequest:
    """A parsed, not yet authenticated, STUN binding request."""

    local_ufrag: str
    remote_ufrag: str
    transaction_id: bytes
    use_candidate: bool
    priority: int | None
    controlling: bool
    message: stun.Message


class StunError(ValueError):
    """Not a well-formed STUN binding request for us."""


def parse_binding_request(datagram: bytes) -> StunBindingRequest:
    """Parse a STUN binding request and split its USERNAME (``local:remote`` from our side)."""
    try:
        message = stun.parse_message(datagram)
    except (ValueError, struct.error, IndexError, KeyError, TypeError) as exc:
        # aioice decodes each attribute with struct/ipaddress/codecs: a short or garbled one
        # raises whichever of these its decoder hits (struct.error is not a ValueError)
        raise StunError(f"malformed STUN message: {type(exc).__name__}: {exc}") from exc
    if message.message_method != stun.Method.BINDING or message.message_class != stun.Class.REQUEST:
        raise StunError("not a binding request")
    username = message.attributes.get("USERNAME")
    if not isinstance(username, str) or ":" not in username:
        raise StunError("binding request without a USERNAME local:remote")
    local, remote = username.split(":", 1)
    priority = message.attributes.get("PRIORITY")
    return StunBindingRequest(
        local_ufrag=local,
        remote_ufrag=remote,
        transaction_id=message.transaction_id,
        use_candidate=STUN_USE_CANDIDATE in message.attributes,
        priority=priority if isinstance(priority, int) else None,
        controlling="ICE-CONTROLLING" in message.attributes,
        message=message,
    )


def verify_integrity(request: StunBindingRequest, local_pwd: str) -> bool:
    """MESSAGE-INTEGRITY with our password (short-term credentials, RFC 8489 section 9.1); a
    malformed MESSAGE-INTEGRITY attribute fails the check."""
    try:
        return bool(request.message.check_message_integrity(local_pwd.encode()))
    except (ValueError, struct.error, IndexError, KeyError, TypeError):
        return False


def binding_success(request: StunBindingRequest, address: tuple[str, int], local_pwd: str) -> bytes:
    """The signed success response carrying the request's source as XOR-MAPPED-ADDRESS, with
    MESSAGE-INTEGRITY and FINGERPRINT (RFC 8489 sections 14.2, 14.5, 14.7).

    Encoded here rather than through ``aioice.stun.Message``, which serialises the message three
    times and parses the address with ``ipaddress``: every endpoint's consent checks are answered
    with one of these, and at ~80 µs each they were a large share of an idle bridge's CPU. The tests
    check it byte for byte against aioice's encoding."""
    transaction_id = request.transaction_id
    header = _STUN_SUCCESS_HEADER + transaction_id
    xor_address = _xor_mapped_address(address, transaction_id)
    # MESSAGE-INTEGRITY covers the message up to itself, the length counting it (not FINGERPRINT)
    signed = _STUN_SUCCESS_TYPE + _STUN_LENGTH.pack(len(xor_address) + 24) + header + xor_address
    integrity = _STUN_INTEGRITY + hmac.digest(local_pwd.encode(), signed, "sha1")
    # FINGERPRINT: CRC-32 of everything before it, the length counting it, XOR 0x5354554e
    unfingerprinted = (
        _STUN_SUCCESS_TYPE + _STUN_LENGTH.pack(len(xor_address) + 32) + header + xor_address + integrity
    )
    return unfingerprinted + _STUN_FINGERPRINT.pack(0x8028, 4, zlib.crc32(unfingerprinted) ^ 0x5354554E)


_STUN_SUCCESS_TYPE = b"\x01\x01"  # binding success response
_STUN_SUCCESS_HEADER = stun.COOKIE.to_bytes(4, "big")  # after the type and length
_STUN_LENGTH = struct.Struct("!H")
_STUN_INTEGRITY = struct.pack("!HH", 0x0008, 20)
_STUN_FINGERPRINT = struct.Struct("!HHI")


def _xor_mapped_address(address: tuple[str, int], transaction_id: bytes) -> bytes:
    host, port = address[0], address[1]
    xport = port ^ (stun.COOKIE >> 16)
    if ":" in host:
        raw = socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0])
        mask = stun.COOKIE.to_bytes(4, "big") + transaction_id
        value = struct.pack("!BBH", 0, 0x02, xport) + bytes(a ^ b for a, b in zip(raw, mask, strict=True))
    else:
        xip = int.from_bytes(socket.inet_aton(host), "big") ^ stun.COOKIE
        value = struct.pack("!BBHI", 0, 0x01, xport, xip)
    return struct.pack("!HH", 0x0020, len(value)) + value


def binding_error(request: StunBindingRequest, code: int, reason: str, local_pwd: str | None = None) -> bytes:
    """An error response; signed with ``local_pwd`` when the request was authenticated (a 487
    Role Conflict must be: ICE agents ignore unsigned answers to their checks)."""
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.ERROR,
        transaction_id=request.transaction_id,
    )
    response.attributes["ERROR-CODE"] = (code, reason)
    if local_pwd is not None:
        response.add_message_integrity(local_pwd.encode())
    response.add_fingerprint()
    return bytes(response)


def binding_request(
    local_ufrag: str,
    remote_ufrag: str,
    remote_pwd: str,
    *,
    use_candidate: bool = True,
    priority: int = 1853817087,
    tie_breaker: int = (1 << 64) - 1,
    controlling: bool = True,
    transaction_id: bytes | None = None,
) -> bytes:
    """A signed binding request (RFC 8445 section 7.2.2). ``local_ufrag`` is the *sender's* ufrag.

    The defaults are those of the test clients and the benchmark's light clients: controlling,
    nominating, with the largest tie-breaker, so the bridge (whose tie-breaker is always smaller)
    yields the controlling role to them (RFC 8445 section 7.3.1.1) and follows their nomination.
    The bridge's own checks pass its role, tie-breaker and transaction id."""
    message = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
        transaction_id=transaction_id or secrets.token_bytes(12),
    )
    message.attributes["USERNAME"] = f"{remote_ufrag}:{local_ufrag}"
    message.attributes["PRIORITY"] = priority
    message.attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = tie_breaker
    if use_candidate:
        message.attributes[STUN_USE_CANDIDATE] = None
    message.add_message_integrity(remote_pwd.encode())
    message.add_fingerprint()
    return bytes(message)


def is_binding_success(datagram: bytes) -> bool:
    try:
        message = stun.parse_message(datagram)
    except ValueError:
        return False
    return message.message_method == stun.Method.BINDING and message.message_class == stun.Class.RESPONSE


# --------------------------------------------------------------------------------------------
# SCTP data channels over the bridge's DTLS session (RFC 8261, 8831, 8832)


class _DtlsTransportStandIn:
    """What ``RTCSctpTransport`` uses of an ``RTCDtlsTransport``, backed by a send function.

    ``send`` encrypts one SCTP packet as DTLS application data and sends it (the engine's
    ``send_dtls_data``); it raises ``ConnectionError`` once the DTLS association is gone, after
    which this stand-in is closed.
    """

    def __init__(self, role: str, send: Callable[[bytes], None]) -> None:
        self.state = "connected"
        self._role = role
        self._send = send
        self._data_receiver: Any = None

    def _register_data_receiver(self, receiver: Any) -> None:
        self._data_receiver = receiver

    def _unregister_data_receiver(self, receiver: Any) -> None:
        if self._data_receiver is receiver:
            self._data_receiver = None

    async def _send_data(self, data: bytes) -> None:
        if self.state != "connected":
            raise ConnectionError("the DTLS association is closed")
        try:
            self._send(data)
        except ConnectionError as exc:
            # The DTLS association went away under a send aiortc scheduled on its own (a flush,
            # a retransmission): the packet is lost as on a dead network path. Raising would
            # end up as an unretrieved task exception; the owner closes the association.
            log.debug("SCTP packet dropped: %s", exc)
            self.state = "closed"


class DataChannel:
    """One WebRTC data channel of an :class:`SctpAssociation` (text messages only are used).

    ``on_open()``, ``on_message(text)`` and ``on_close()`` are set by the owner.
    """

    def __init__(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        self.on_open: Callable[[], None] = lambda: None
        self.on_message: Callable[[str], None] = lambda text: None
        self.on_close: Callable[[], None] = lambda: None
        channel.on("open", lambda: self.on_open())
        channel.on("message", self._message)
        channel.on("close", lambda: self.on_close())

    @property
    def label(self) -> str:
        return str(self._channel.label)

    @property
    def stream_id(self) -> int | None:
        return self._channel.id

    @property
    def is_open(self) -> bool:
        return bool(self._channel.readyState == "open")

    def send_text(self, text: str) -> None:
        """Queue a text message (PPID 51); raises ``ConnectionError`` unless the channel is open."""
        if not self.is_open:
            raise ConnectionError(f"data channel {self.label!r} is {self._channel.readyState}")
        self._channel.send(text)

    def close(self) -> None:
        """Close the channel (its stream is reset, RFC 8831 section 6.7)."""
        self._channel.close()

    def _message(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                return
        self.on_message(data)


class SctpAssociation:
    """An SCTP association with WebRTC data channels over a DTLS association owned by the caller.

    ``dtls_role`` is the bridge's DTLS role (``"server"``/``"client"``; RFC 8832: the DTLS client
    uses even stream ids, the server odd ones). ``send`` transmits one SCTP packet as DTLS
    application data. SCTP packets from the peer go to :meth:`feed`, in arrival order. Channels
    the peer opens are announced through ``on_channel``; :meth:`open_channel` opens one from this
    side (DATA_CHANNEL_OPEN, sent once the association is established). Must be created and used
    on the running event loop.
    """

    def __init__(
        self,
        dtls_role: str,
        send: Callable[[bytes], None],
        *,
        port: int = 5000,
        on_channel: Callable[[DataChannel], None] = lambda channel: None,
    ) -> None:
        if dtls_role not in ("server", "client"):
            raise ValueError(f"DTLS role must be 'server' or 'client', not {dtls_role!r}")
        self._dtls = _DtlsTransportStandIn(dtls_role, send)
        self._sctp = RTCSctpTransport(self._dtls, port=port)  # type: ignore[arg-type]
        self._sctp.on("datachannel", lambda channel: on_channel(DataChannel(channel)))
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def state(self) -> str:
        """``new``, ``connecting``, ``connected`` or ``closed`` (aborted, shut down or failed)."""
        return str(self._sctp.state)

    async def start(self, remote_port: int = 5000) -> None:
        """Send INIT (both sides initiate, RFC 8841 section 9.3) and start reading."""
        if self._reader is None and not self._closed:
            self._reader = asyncio.ensure_future(self._read())
            await self._sctp.start(RTCSctpCapabilities(maxMessageSize=65536), remote_port)

    def feed(self, packet: bytes) -> None:
        """One SCTP packet from the peer (decrypted DTLS application data)."""
        if not self._closed:
            self._inbox.put_nowait(packet)

    def open_channel(self, label: str, protocol: str = "") -> DataChannel:
        """A reliable, ordered channel opened from this side (DCEP, RFC 8832)."""
        channel = RTCDataChannel(self._sctp, RTCDataChannelParameters(label=label, protocol=protocol))
        return DataChannel(channel)

    async def close(self, *, transport_gone: bool = False) -> None:
        """ABORT the association (not sent when ``transport_gone``: the DTLS association is
        already closed) and stop reading."""
        if self._closed:
            return
        self._closed = True
        if transport_gone:
            self._dtls.state = "closed"
        with contextlib.suppress(Exception):
            await self._sctp.stop()
        self._dtls.state = "closed"
        self._inbox.put_nowait(None)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        while True:
            packet = await self._inbox.get()
            if packet is None:
                return
            try:
                await self._sctp._handle_data(packet)
            except ConnectionError:
                pass  # the DTLS association went away while answering
            except Exception:  # a malformed packet must not stop the association
                log.exception("SCTP packet handling failed")

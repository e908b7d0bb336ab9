"""The media engine: the bridge's packet path behind one UDP port.

The control plane (Colibri REST, bridge channel) drives it through this API::

    engine = MediaEngine(MediaConfig(port=10000, advertise_ips=["192.0.2.1"]))
    await engine.start()
    local = engine.create_endpoint("conf", "ep1")       # -> ufrag/pwd/fingerprint/candidates
    engine.set_remote_transport("conf", "ep1", remote)  # the endpoint's answer
    engine.set_sources("conf", "ep1", sources)          # what ep1 sends; the others receive it
    ...
    engine.expire_endpoint("conf", "ep1")
    await engine.stop()

Everything about packets lives below. This module is the UDP mux: one socket per advertised
address (so every reply leaves from the address the endpoint sent to; one wildcard socket when an
advertised address is not local, behind NAT), all on the same port, demultiplexing by first byte
(RFC 7983), routing STUN requests by the ICE username fragment, STUN responses by their
transaction id and everything else by the remote addresses ICE validated. A full ICE agent per
endpoint, controlling as jitsi-videobridge is (``transport/ice.py``), checks and nominates the candidate
pairs; DTLS-SRTP comes from the aiortc adapter (``transport/aiortc_adapter.py``), the per-conference
forwarder fans RTP out and terminates RTCP (``forwarding/forwarder.py``, ``packets/rtp.py``, ``packets/rtcp.py``), and each
conference's ``forwarding/policy.py`` object decides who receives what.

Optionally (``tcp_port``) the bridge also accepts ICE over TCP (RFC 6544, ``transport/ice_tcp.py``): the TCP
port is one more local candidate of every agent, each connection a remote address (a ``TcpPeer``)
whose frames take the same per-packet path; a receiver whose media pair is a TCP connection is
served by the Python loop (the C loop only sends UDP). Without ``advertise_ips`` the bridge can ask
STUN servers for its public address at start (``transport/stun_discovery.py``) and advertise it as a
server-reflexive candidate whose base is the local socket the NAT forwards to.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.common.bridge_channel import BridgeChannelMessage
from services.common.logging import RateLimitedLogger

from .forwarding.forwarder import ConferenceForwarder
from .forwarding.native import NativeFanout, NativeUnavailable
from .forwarding.policy import PolicyFactory, default_policy_factory
from .forwarding.rtcp_termination import request_keyframe
from .forwarding.streams import EndpointMedia
from .model import (
    DtlsFingerprint,
    EndpointState,
    EndpointStats,
    IceCandidate,
    LocalTransport,
    MediaSources,
    MediaStats,
    PayloadType,
    RemoteTransport,
    RtpHeaderExtension,
)
from .transport import aiortc_adapter as adapter
from .transport import stun_discovery
from .transport.aiortc_adapter import DtlsCertificate, DtlsSession, DtlsState, SrtpError
from .transport.ice import IceAgent, tcp_host_priority
from .transport.ice_tcp import IceTcpServer, TcpPeer

log = logging.getLogger("parley.bridge.media")

__all__ = [
    "DtlsFingerprint",
    "EndpointState",
    "EndpointStats",
    "IceCandidate",
    "LocalTransport",
    "MediaConfig",
    "MediaEngine",
    "MediaSources",
    "MediaStats",
    "PayloadType",
    "RemoteTransport",
    "RtpHeaderExtension",
    "UnknownEndpoint",
]


class UnknownEndpoint(KeyError):
    """The conference or endpoint does not exist (never created, or already expired)."""


@dataclass(frozen=True)
class MediaConfig:
    """Settings of the media plane; the bridge's config section maps onto these.

    ``port``: the one UDP port (``JVB_PORT``, 0 = pick a free one, see :attr:`MediaEngine.port`).
    ``bind_address``: where the UDP socket binds. ``advertise_ips``: addresses put in the host
    candidates (``JVB_ADVERTISE_IPS``); empty means the bind address, or 127.0.0.1 when binding
    to 0.0.0.0. With the wildcard bind address and advertised addresses that are all local, the
    engine binds one socket per advertised address instead (replies leave from the address the
    endpoint sent to). ``consent_timeout``: an endpoint that sent nothing (no STUN consent, no media)
    for this long is failed and expired. ``connect_timeout``: an endpoint whose ICE/DTLS has not
    completed this long after it got its remote transport is failed and expired.
    ``packet_cache_size``: packets kept per incoming stream to answer NACKs.
    ``remb_max_bps``/``remb_min_bps``: bounds of the estimate sent to senders.
    ``native_forwarding``: forward with the C per-receiver loop (native.py) when it is built;
    off, or when it is not, the Python loop does it all. ``stun_servers``: when ``advertise_ips``
    is empty, where to learn the bridge's public address at start (``transport/stun_discovery.py``).
    ``tcp_port``: ICE over TCP (``transport/ice_tcp.py``) on this port (0 = any free one), None = off;
    ``tcp_advertise_port``: the port put in the TCP candidates when a NAT or firewall forwards
    another one to it (e.g. 443 to 4443); None = ``tcp_port``.
    """

    port: int = 10000
    bind_address: str = "0.0.0.0"
    advertise_ips: tuple[str, ...] = ()
    consent_timeout: float = 30.0
    connect_timeout: float = 30.0
    packet_cache_size: int = 512
    remb_max_bps: int = 2_500_000
    remb_min_bps: int = 100_000
    rtcp_interval: float = 1.0
    expire_failed_endpoints: bool = True
    native_forwarding: bool = True
    send_side_bwe: bool = True
    stun_servers: tuple[str, ...] = ()
    tcp_port: int | None = None
    tcp_advertise_port: int | None = None


StateCallback = Callable[[str, str, EndpointState], None]
MessageCallback = Callable[[str, str, BridgeChannelMessage], None]
DtlsDataCallback = Callable[[str, str, bytes], None]


class EngineEvents(Protocol):
    """What the engine tells the rest of the bridge (see :class:`MediaEngine`)."""

    def endpoint_state(self, conference_id: str, endpoint_id: str, state: EndpointState) -> None: ...
    def send_to_endpoint(self, conference_id: str, endpoint_id: str, message: BridgeChannelMessage) -> None: ...
    def dtls_data(self, conference_id: str, endpoint_id: str, data: bytes) -> None: ...


_HOST_PRIORITY = (126 << 24) | (65535 << 8) | 255  # RFC 8445 5.1.2.1, host, component 1
_SRFLX_PRIORITY = (100 << 24) | (65535 << 8) | 255  # server reflexive
# RFC 6544 section 4.2: TCP candidates rank below UDP ones (jvb advertises them the same way)
_TCP_PRIORITY = tcp_host_priority()
_MAX_EARLY_DTLS = 8
_MAX_ADDRESSES = 8  # remote addresses routed to one endpoint (its validated candidates)


class _Endpoint:
    """Engine-side state of one endpoint: ICE, DTLS, address, timers, and its forwarding state."""

    def __init__(
        self, conference: ConferenceForwarder, endpoint_id: str, media: EndpointMedia, now: float
    ) -> None:
        self.conference = conference
        self.conference_id = conference.id
        self.id = endpoint_id
        self.ice = IceAgent()
        self.media = media
        self.remote: RemoteTransport | None = None
        self.dtls: DtlsSession | None = None
        self.early_dtls: list[bytes] = []
        self.address: tuple[str, int] | None = None
        self.local = 0  # the socket (local candidate) of the media pair
        self.addresses: set[tuple[str, int]] = set()  # remote addresses routed to it
        self.ice_timer: asyncio.Handle | None = None
        self.ice_due = 0.0  # time.monotonic() the ICE timer fires at
        self.created = now
        self.remote_set_at: float | None = None
        self.last_activity: float | None = None
        self.state = "new"
        self.dtls_timer: asyncio.TimerHandle | None = None


_SIOCGSTAMP = 0x8906  # Linux sockios.h: the kernel's receive time of the last datagram read
_TIMEVAL = struct.Struct("@qq")
_TIMEVAL_BUFFER = bytes(_TIMEVAL.size)


def receive_time(fd: int, now: float) -> float:
    """When the datagram just read from ``fd`` reached the host, on the ``time.monotonic()``
    clock ``now`` is on: the kernel's receive timestamp (``SIOCGSTAMP``, socket(7)), so the time
    it waited in the socket buffer while the event loop was busy is not taken for network delay
    (transport-cc feedback reports it to the sender's delay-based estimate). ``now`` when the
    kernel has none (the first datagram on a socket, no ``fd``) or it is off by a second or more
    (the wall clock stepped)."""
    if fd < 0:
        return now
    try:
        sec, usec = _TIMEVAL.unpack(fcntl.ioctl(fd, _SIOCGSTAMP, _TIMEVAL_BUFFER))
    except OSError:
        return now
    lag = time.time() - sec - usec / 1e6
    return now - lag if 0.0 <= lag < 1.0 else now


class _Socket(asyncio.DatagramProtocol):
    """One UDP socket of the engine (index ``index`` = the ICE local candidate it carries)."""

    def __init__(self, engine: MediaEngine, index: int) -> None:
        self.engine = engine
        self.index = index
        self.transport: asyncio.DatagramTransport | None = None
        self._by_address = engine._by_address
        self.fd = -1  # the UDP socket's descriptor (receive_time), -1: not a UDP socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and getattr(sock, "type", None) == socket.SOCK_DGRAM:
            self.fd = sock.fileno()

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram: STUN, DTLS or SRTP/SRTCP (RFC 7983 first-byte demux)."""
        if not data:
            return
        first = data[0]
        if first < 4:
            self.engine._on_stun(data, addr, self.index)
            return
        endpoint = self._by_address.get(addr)
        if endpoint is None:
            self.engine._dropped += 1
            return
        now = time.monotonic()
        endpoint.last_activity = now
        media = endpoint.media
        media.packets_received += 1
        media.bytes_received += len(data)
        if 127 < first < 192:
            srtp = media.srtp
            if srtp is None:
                return
            try:
                if 191 < data[1] < 224:
                    endpoint.conference.handle_rtcp(media, srtp.unprotect_rtcp(data), now)
                elif media.transport_cc is not None:  # its arrival time is reported back
                    endpoint.conference.handle_rtp(media, srtp.unprotect(data), receive_time(self.fd, now))
                else:
                    endpoint.conference.handle_rtp(media, srtp.unprotect(data), now)
            except SrtpError:
                media.srtp_errors += 1
        elif 19 < first < 64:
            self.engine._on_dtls(endpoint, data, self.index, addr)


class MediaEngine:
    """All endpoints of all conferences of this bridge, on one UDP port.

    Callbacks the control plane sets:

    ``on_endpoint_state(conference_id, endpoint_id, state)`` with state ``"connected"`` (ICE and
    DTLS done, media can flow), ``"failed"`` (ICE/DTLS failed or consent lost; the engine then
    expires the endpoint itself when ``expire_failed_endpoints``), ``"expired"`` (resources freed).

    ``send_to_endpoint(conference_id, endpoint_id, message)``: a typed bridge-channel message
    the media side wants delivered to that endpoint.

    ``on_dtls_data(conference_id, endpoint_id, data)``: application data (an SCTP packet) the
    endpoint sent on its DTLS association; :meth:`send_dtls_data` sends some back.

    ``policy_factory(conference_id, send_message, request_keyframe)`` builds each conference's
    forwarding policy (default: forward everything); the conference-intelligence code plugs in
    here. ``request_keyframe`` is ``forwarding/rtcp_termination.py``'s (PLI, rate-limited).

    The bridge passes all three callbacks at construction as one :class:`EngineEvents` object.
    """

    def __init__(
        self,
        config: MediaConfig,
        policy_factory: PolicyFactory = default_policy_factory,
        events: EngineEvents | None = None,
    ) -> None:
        self.config = config
        self.policy_factory = policy_factory
        self.on_endpoint_state: StateCallback | None = events.endpoint_state if events else None
        self.send_to_endpoint: MessageCallback | None = events.send_to_endpoint if events else None
        self.on_dtls_data: DtlsDataCallback | None = events.dtls_data if events else None
        self._certificate = DtlsCertificate()
        self._conferences: dict[str, ConferenceForwarder] = {}
        self._endpoints: dict[tuple[str, str], _Endpoint] = {}
        self._by_ufrag: dict[str, _Endpoint] = {}
        self._by_address: dict[tuple[str, int], _Endpoint] = {}
        self._by_prefix: dict[bytes, _Endpoint] = {}  # STUN transaction id prefix of its checks
        self._sockets: list[_Socket] = []
        self._local_addresses: list[tuple[str, int]] = []
        self._native: NativeFanout | None = None
        self._port = config.port
        self._addresses = stun_discovery.plan_candidates(config.advertise_ips, config.bind_address, [])
        self._tcp: IceTcpServer | None = None
        self._tcp_socket: _Socket | None = None  # the ICE-TCP local candidate (ice_tcp.py)
        self._timer: asyncio.Task[None] | None = None
        self._ice_succeeded = 0
        self._ice_failed = 0
        self._rx_packets = 0
        self._rx_bytes = 0
        self._dropped = 0
        self._stun_errors = 0
        self._bad_input_log = RateLimitedLogger(log)  # what peers send: a line now and then
        self._forwarded_expired = 0
        self._rates = (0.0, 0.0, 0.0, 0.0)  # pkt/s down, pkt/s up, kbps down, kbps up
        self._rate_mark: tuple[float, int, int, int, int] | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful with ``port=0``)."""
        return self._port

    @property
    def fingerprint(self) -> str:
        return self._certificate.fingerprint("sha-256")

    async def start(self) -> None:
        """Bind the UDP port (one socket per advertised address when they are all local and the
        bind address is the wildcard, else one on the bind address) and start the periodic work
        (RTCP, consent, rates). Raises ``OSError`` naming the port when it cannot bind."""
        loop = asyncio.get_running_loop()
        if self.config.stun_servers and not self.config.advertise_ips:
            # the public address, asked from a fresh socket before the media sockets are bound
            mappings = await stun_discovery.discover(self.config.stun_servers)
            self._addresses = stun_discovery.plan_candidates(
                self.config.advertise_ips, self.config.bind_address, mappings
            )
        bind = self.config.bind_address
        addresses = [bind]
        advertised = list(dict.fromkeys(self._advertised_ips()))
        if bind in ("0.0.0.0", "::", "") and advertised and all(map(_is_local, advertised)):
            addresses = advertised
        port = self.config.port
        for address in addresses:
            index = len(self._sockets)
            try:
                _, sock = await loop.create_datagram_endpoint(
                    lambda index=index: _Socket(self, index),  # type: ignore[misc]
                    local_addr=(address, port),
                )
            except OSError as exc:
                for sock in self._sockets:
                    if sock.transport is not None:
                        sock.transport.close()
                self._sockets.clear()
                raise OSError(f"cannot bind media UDP port {address}:{port}: {exc}") from exc
            self._add_socket(sock)
            port = self._port
        transports = [s.transport for s in self._sockets if s.transport is not None]
        for transport in transports:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        first = transports[0].get_extra_info("socket")
        # uvloop's and asyncio's datagram transports both have it, but not the abstract class
        queued = getattr(transports[0], "get_write_buffer_size", None)
        if len(transports) > 1 and queued is not None:
            sizes = [t.get_write_buffer_size for t in transports]  # type: ignore[attr-defined]

            def queued_anywhere() -> int:
                return sum(size() for size in sizes)

            queued = queued_anywhere
        if self.config.native_forwarding and queued is not None and first is not None:
            try:
                self._native = NativeFanout(first.fileno(), queued)
            except NativeUnavailable as exc:
                log.warning("forwarding loop in Python: %s", exc)
        log.info("forwarding loop: %s", "C (native_fanout.so)" if self._native is not None else "Python")
        if self.config.tcp_port is not None:
            # ICE-TCP: one more local candidate of every endpoint's ICE agent (after the UDP
            # sockets); its frames enter the same per-packet path as UDP datagrams
            self._tcp_socket = _Socket(self, len(self._sockets))
            self._tcp = IceTcpServer(self._tcp_socket.datagram_received, self._tcp_selected)
            try:
                await self._tcp.start(self.config.bind_address, self.config.tcp_port)
            except OSError:
                await self.stop()
                raise
            # the agents' one TCP local candidate (index len(self._sockets)): any connection
            self._local_addresses.append((self._advertised_ips()[0], self._tcp.port))
            log.info("ICE-TCP port tcp %s:%d", self.config.bind_address, self._tcp.port)
        self._timer = asyncio.ensure_future(self._periodic())
        log.info(
            "media port udp %s:%d, advertising %s",
            ",".join(addresses),
            self._port,
            ",".join(self._advertised_ips() + [m for m, _ in self._addresses.srflx]),
        )

    async def stop(self) -> None:
        """Expire every conference and close the sockets."""
        for conference_id in list(self._conferences):
            self.expire_conference(conference_id)
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for sock in self._sockets:
            if sock.transport is not None:
                sock.transport.close()
        self._sockets.clear()
        self._local_addresses.clear()
        if self._tcp is not None:
            await self._tcp.stop()
            self._tcp = None
        self._tcp_socket = None
        self._native = None

    # ---- control API -----------------------------------------------------------------------

    def create_endpoint(self, conference_id: str, endpoint_id: str) -> LocalTransport:
        """Create (or return the existing) endpoint: a fresh ICE ufrag/pwd per endpoint, the
        bridge's shared DTLS certificate fingerprint (setup ``actpass``) and host candidates on
        the one UDP port. Creates the conference on first use."""
        key = (conference_id, endpoint_id)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            conference = self._conferences.get(conference_id)
            if conference is None:
                conference = ConferenceForwarder(
                    conference_id,
                    self.policy_factory(conference_id, self._message_sender(conference_id), request_keyframe),
                    cache_size=self.config.packet_cache_size,
                    remb_min_bps=self.config.remb_min_bps,
                    remb_max_bps=self.config.remb_max_bps,
                    send_side_bwe=self.config.send_side_bwe,
                    native=self._native,
                )
                self._conferences[conference_id] = conference
            endpoint = _Endpoint(
                conference, endpoint_id, conference.add_endpoint(endpoint_id, _discard), time.monotonic()
            )
            while endpoint.ice.local_ufrag in self._by_ufrag or endpoint.ice.transaction_prefix in self._by_prefix:
                endpoint.ice = IceAgent()
            udp = self._local_addresses[: len(self._sockets)]
            endpoint.ice.set_local_candidates(udp, self._local_addresses[len(self._sockets) :])
            self._endpoints[key] = endpoint
            self._by_ufrag[endpoint.ice.local_ufrag] = endpoint
            self._by_prefix[endpoint.ice.transaction_prefix] = endpoint
        return self._local_transport(endpoint)

    def set_remote_transport(self, conference_id: str, endpoint_id: str, remote: RemoteTransport) -> None:
        """The endpoint's ICE credentials and DTLS fingerprint. The DTLS role follows the remote
        setup: ``active`` -> the bridge is the DTLS server, ``passive``/``actpass`` -> client.
        Raises :class:`UnknownEndpoint`, ``ValueError`` for a transport without a usable
        fingerprint. Setting the same transport again is a no-op; new ICE credentials with the same
        fingerprint keep the DTLS association; a new fingerprint starts a new one. The transport's
        candidates (UDP, component 1) are added to the endpoint's ICE agent, which checks them."""
        endpoint = self._get(conference_id, endpoint_id)
        if endpoint.remote == remote:
            return
        if not remote.fingerprints:
            raise ValueError("remote transport has no DTLS fingerprint")
        if (
            endpoint.dtls is not None
            and endpoint.remote is not None
            and endpoint.remote.fingerprints == remote.fingerprints
        ):
            endpoint.remote = remote  # an ICE restart or candidate update; DTLS stays
            endpoint.ice.set_remote(remote.ufrag, remote.pwd)
            self._add_candidates(endpoint, remote)
            return
        role = "server" if remote.fingerprints[0].setup == "active" else "client"
        session = DtlsSession(self._certificate, role, [(f.hash, f.fingerprint) for f in remote.fingerprints])
        if endpoint.dtls_timer is not None:
            endpoint.dtls_timer.cancel()
            endpoint.dtls_timer = None
        if endpoint.state == "connected":
            # a new DTLS association (the endpoint renegotiated its certificate): stop sending
            # until it completes; the endpoint reports "connected" again then
            endpoint.conference.set_srtp(endpoint.id, None, time.monotonic())
            endpoint.state = "new"
        endpoint.remote = remote
        endpoint.remote_set_at = time.monotonic()
        endpoint.ice.set_remote(remote.ufrag, remote.pwd)
        self._add_candidates(endpoint, remote)
        endpoint.dtls = session
        if role == "client" and endpoint.address is not None:
            self._send_dtls(endpoint, session.start())
        for datagram in endpoint.early_dtls:
            self._on_dtls(endpoint, datagram)
        endpoint.early_dtls.clear()

    def set_sources(self, conference_id: str, endpoint_id: str, sources: MediaSources) -> None:
        """What the endpoint sends. Replaces the previous set; the other endpoints of the
        conference receive these streams from now on."""
        self._get(conference_id, endpoint_id)
        self._conferences[conference_id].set_sources(endpoint_id, sources, time.monotonic())

    def expire_endpoint(self, conference_id: str, endpoint_id: str) -> None:
        """Free the endpoint (idempotent); a conference left empty is expired too."""
        endpoint = self._endpoints.pop((conference_id, endpoint_id), None)
        if endpoint is None:
            return
        endpoint.state = "expired"
        if self._by_ufrag.get(endpoint.ice.local_ufrag) is endpoint:
            del self._by_ufrag[endpoint.ice.local_ufrag]
        if self._by_prefix.get(endpoint.ice.transaction_prefix) is endpoint:
            del self._by_prefix[endpoint.ice.transaction_prefix]
        for address in endpoint.addresses:
            if self._by_address.get(address) is endpoint:
                del self._by_address[address]
        endpoint.addresses.clear()
        if endpoint.ice_timer is not None:
            endpoint.ice_timer.cancel()
            endpoint.ice_timer = None
        if endpoint.dtls_timer is not None:
            endpoint.dtls_timer.cancel()
        endpoint.dtls = None
        endpoint.early_dtls.clear()
        conference = self._conferences.get(conference_id)
        if conference is not None:
            conference.remove_endpoint(endpoint_id)
            if not conference.endpoints:
                self._forwarded_expired += conference.packets_forwarded
                del self._conferences[conference_id]
        log.info("endpoint expired conference=%s endpoint=%s", conference_id, endpoint_id)
        self._notify(endpoint, "expired")

    def expire_conference(self, conference_id: str) -> None:
        """Expire every endpoint of the conference and the conference itself (idempotent)."""
        for conf, endpoint_id in [k for k in self._endpoints if k[0] == conference_id]:
            self.expire_endpoint(conf, endpoint_id)
        self._conferences.pop(conference_id, None)

    def on_bridge_channel_message(
        self, conference_id: str, endpoint_id: str, message: BridgeChannelMessage
    ) -> None:
        """A bridge-channel message from the endpoint that steers media (``LastNChangedEvent``,
        ``ReceiverVideoConstraints``, ``ReceiverAudioSubscription``…), handed to the conference's
        forwarding policy. Messages for unknown conferences are ignored."""
        conference = self._conferences.get(conference_id)
        if conference is not None:
            conference.policy.on_message(endpoint_id, message)

    def dtls_role(self, conference_id: str, endpoint_id: str) -> str | None:
        """The bridge's DTLS role (``"server"``/``"client"``) towards a connected endpoint, or
        ``None`` while its DTLS association is not up."""
        endpoint = self._endpoints.get((conference_id, endpoint_id))
        if endpoint is None or endpoint.dtls is None or endpoint.dtls.state is not DtlsState.CONNECTED:
            return None
        return endpoint.dtls.role

    def send_dtls_data(self, conference_id: str, endpoint_id: str, data: bytes) -> None:
        """Send ``data`` (an SCTP packet) to the endpoint as DTLS application data. Raises
        ``ConnectionError`` when the endpoint is unknown or its DTLS association is not up."""
        endpoint = self._endpoints.get((conference_id, endpoint_id))
        if endpoint is None or endpoint.dtls is None or endpoint.address is None:
            raise ConnectionError(f"no DTLS association with {endpoint_id!r} in {conference_id!r}")
        for datagram in endpoint.dtls.send_application_data(data):
            self._sendto(datagram, endpoint.address, endpoint.local)

    def endpoint_last_activity(self, conference_id: str, endpoint_id: str) -> float | None:
        """``time.monotonic()`` of the last packet (STUN, DTLS, RTP, RTCP) from the endpoint, or
        ``None`` if nothing arrived yet or the endpoint is unknown."""
        endpoint = self._endpoints.get((conference_id, endpoint_id))
        return endpoint.last_activity if endpoint is not None else None

    def packets_forwarded(self) -> int:
        """RTP packets sent to receivers by the fan-out since start (retransmissions excluded)."""
        return self._forwarded_expired + sum(c.packets_forwarded for c in self._conferences.values())

    def has_endpoint(self, conference_id: str, endpoint_id: str) -> bool:
        return (conference_id, endpoint_id) in self._endpoints

    def conference_ids(self) -> list[str]:
        return sorted(self._conferences)

    def stats(self) -> MediaStats:
        """Packet and bit rates up/down (over the last second), ICE totals, per-endpoint details."""
        details = [
            EndpointStats(
                conference_id=e.conference_id,
                endpoint_id=e.id,
                state=e.state,
                remote_address=(
                    f"tcp:{e.address[0]}:{e.address[1]}"
                    if type(e.address) is TcpPeer
                    else f"{e.address[0]}:{e.address[1]}"
                )
                if e.address
                else None,
                packets_received=e.media.packets_received,
                bytes_received=e.media.bytes_received,
                packets_sent=e.media.packets_sent,
                bytes_sent=e.media.bytes_sent,
                nacks_received=e.media.nacks_received,
                nacks_sent=e.media.nacks_sent,
                retransmissions=e.media.retransmissions,
                plis_forwarded=e.media.plis_forwarded,
                last_activity=e.last_activity,
                retransmissions_suppressed=e.media.retransmissions_suppressed,
                retransmissions_too_old=e.media.retransmissions_too_old,
                retransmissions_dropped=e.media.retransmissions_dropped,
                retransmissions_not_forwarded=e.media.retransmissions_not_forwarded,
                rtt_ms=None if e.media.rtt is None else round(e.media.rtt * 1000, 1),
                local_address=self._local_address(e),
                ice_controlling=e.ice.controlling,
                ice_nominated=e.ice.nominated,
                transport_cc_feedback_sent=0 if e.media.transport_cc is None else e.media.transport_cc.packets_sent,
                transport_cc_feedback_received=e.media.transport_cc_feedback_received,
                send_side_estimate_bps=None
                if e.media.send_side is None or not e.media.send_side.feedbacks
                else e.media.send_side.estimate,
                downlink_estimate_source="transport-cc"
                if e.media.send_side is not None and e.media.send_side.feedbacks
                else ("remb" if e.media.remb_bps else None),
            )
            for e in self._endpoints.values()
        ]
        down, up, kdown, kup = self._rates
        return MediaStats(
            conferences=len(self._conferences),
            endpoints=len(self._endpoints),
            packet_rate_download=down,
            packet_rate_upload=up,
            bit_rate_download_kbps=kdown,
            bit_rate_upload_kbps=kup,
            packets_received=sum(d.packets_received for d in details),
            packets_sent=sum(d.packets_sent for d in details),
            packets_forwarded=self.packets_forwarded(),
            total_ice_succeeded=self._ice_succeeded,
            total_ice_failed=self._ice_failed,
            forwarding_loop="python" if self._native is None else "native",
            stun_errors=self._stun_errors,
            packets_left_to_python_loop=0 if self._native is None else self._native.packets_to_python,
            ice_tcp_connections=0 if self._tcp is None else len(self._tcp.connections),
            ice_tcp_refused=0 if self._tcp is None else self._tcp.refused,
            ice_tcp_timed_out=0 if self._tcp is None else self._tcp.timed_out,
            endpoint_details=details,
        )

    # ---- packet path -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.DatagramTransport) -> _Socket:
        """Use ``transport`` (anything with ``sendto(data, addr)``) as the next socket (the next
        ICE local candidate, its address the next advertised one); :meth:`start` passes each UDP
        socket's transport, tests a recording one."""
        sock = _Socket(self, len(self._sockets))
        sock.transport = transport
        self._add_socket(sock)
        return sock

    def _add_socket(self, sock: _Socket) -> None:
        index = len(self._sockets)
        self._sockets.append(sock)
        assert sock.transport is not None and sock.index == index
        sockname = sock.transport.get_extra_info("sockname")
        if sockname:
            self._port = sockname[1]
        advertised = self._advertised_ips()
        ip = advertised[index] if index < len(advertised) else str(sockname[0] if sockname else "0.0.0.0")
        self._local_addresses.append((ip, self._port))

    def datagram_received(self, data: bytes, addr: tuple[str, int], local: int = 0) -> None:
        """One datagram from socket ``local`` (the first by default)."""
        self._sockets[local].datagram_received(data, addr)

    def _on_stun(self, data: bytes, addr: tuple[str, int], local: int) -> None:
        if len(data) >= 20 and data[0] == 0x01 and data[1] in (0x01, 0x11):  # binding response
            endpoint = self._by_prefix.get(data[8:12])
            if endpoint is None:
                self._dropped += 1
                return
            now = time.monotonic()
            if endpoint.ice.handle_response(data, local, addr, now):
                self._select(endpoint)
            if endpoint.ice.owns(local, addr):
                endpoint.last_activity = now
                self._route(endpoint, addr)
            self._schedule_ice(endpoint)
            return
        try:
            request = adapter.parse_binding_request(data)
        except adapter.StunError as exc:
            self._dropped += 1
            self._stun_errors += 1
            self._bad_input_log.info(("stun", addr[0]), "dropped a STUN datagram from %s: %s", addr[0], exc)
            return
        endpoint = self._by_ufrag.get(request.local_ufrag)
        if endpoint is None:
            self._sendto(adapter.binding_error(request, 401, "Unauthorized"), addr, local)
            return
        now = time.monotonic()
        try:
            outcome = endpoint.ice.handle_request(request, local, addr, now)
        except Exception as exc:  # a request the checks above let through but ICE cannot use
            self._dropped += 1
            self._stun_errors += 1
            self._bad_input_log.warning(
                ("stun-handle", type(exc).__name__), "STUN request from %s not handled: %s: %s",
                addr[0], type(exc).__name__, exc,
            )  # fmt: skip
            return
        if outcome.response is not None:
            self._sendto(outcome.response, addr, local)
        if not outcome.authenticated:
            return
        endpoint.last_activity = now
        self._route(endpoint, addr)
        if outcome.address_selected:
            self._select(endpoint)
        self._schedule_ice(endpoint)

    def _route(self, endpoint: _Endpoint, addr: tuple[str, int]) -> None:
        """Datagrams from ``addr`` (which the endpoint proved it owns) go to the endpoint, unless
        it is another endpoint's media address."""
        if addr in endpoint.addresses:
            return
        owner = self._by_address.get(addr)
        if owner is not None and owner is not endpoint and owner.address == addr:
            return
        if len(endpoint.addresses) >= _MAX_ADDRESSES:
            return
        if owner is not None:
            owner.addresses.discard(addr)
        endpoint.addresses.add(addr)
        self._by_address[addr] = endpoint

    def _select(self, endpoint: _Endpoint) -> None:
        """The endpoint's ICE agent picked a (new) media pair: send everything there."""
        selected = endpoint.ice.selected
        if selected is None or selected == (endpoint.local, endpoint.address):
            return
        local, addr = selected
        first = endpoint.address is None
        endpoint.local, endpoint.address = local, addr
        self._route(endpoint, addr)
        if self._by_address.get(addr) is not endpoint:
            self._by_address[addr] = endpoint  # its media address: taken from a stale owner
            endpoint.addresses.add(addr)
        tcp = type(addr) is TcpPeer
        sock = self._sockets[local] if local < len(self._sockets) and not tcp else None
        fd = None
        if sock is not None and sock.transport is not None:
            raw = sock.transport.get_extra_info("socket")
            fd = raw.fileno() if raw is not None else None
        # the C loop sends with sendto on a UDP socket: receivers over ICE-TCP stay with Python
        endpoint.media.set_transmit(self._transmitter(addr, local), None if tcp else addr, fd)
        if not first:
            log.info(
                "endpoint media pair moved conference=%s endpoint=%s local=%s remote=%s nominated=%s",
                endpoint.conference_id,
                endpoint.id,
                self._local_addresses[local] if local < len(self._local_addresses) else local,
                addr,
                endpoint.ice.nominated,
            )
        dtls = endpoint.dtls
        if dtls is not None and dtls.role == "client" and dtls.state is DtlsState.NEW:
            self._send_dtls(endpoint, dtls.start())

    def _add_candidates(self, endpoint: _Endpoint, remote: RemoteTransport) -> None:
        endpoint.ice.add_remote_candidates(
            (c.ip, c.port, c.priority)
            for c in remote.candidates
            if c.component == 1 and c.protocol.lower() == "udp"
        )
        self._schedule_ice(endpoint)

    def _schedule_ice(self, endpoint: _Endpoint) -> None:
        """Arm the endpoint's ICE timer for the agent's next check (none outside an event loop)."""
        if endpoint.state == "expired":
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        now = time.monotonic()
        due = endpoint.ice.next_time(now)
        timer = endpoint.ice_timer
        if timer is not None:
            # (uvloop's call_later with no delay returns a plain Handle, which has no when())
            if due is not None and endpoint.ice_due <= due:
                return  # armed early enough
            timer.cancel()
            endpoint.ice_timer = None
        if due is not None:
            endpoint.ice_due = max(due, now)
            endpoint.ice_timer = loop.call_later(max(due - now, 0.0), self._on_ice_timer, endpoint)

    def _on_ice_timer(self, endpoint: _Endpoint) -> None:
        endpoint.ice_timer = None
        if endpoint.state == "expired":
            return
        for local, addr, datagram in endpoint.ice.poll(time.monotonic()):
            self._sendto(datagram, addr, local)
        self._schedule_ice(endpoint)

    def _on_dtls(self, endpoint: _Endpoint, data: bytes, local: int = 0, addr: tuple[str, int] | None = None) -> None:
        if addr is not None and (addr != endpoint.address or local != endpoint.local):
            # DTLS on another validated pair: the endpoint selected that one (RFC 8445 12.1)
            if endpoint.ice.dtls_from(local, addr):
                self._select(endpoint)
        dtls = endpoint.dtls
        if dtls is None:
            if len(endpoint.early_dtls) < _MAX_EARLY_DTLS:
                endpoint.early_dtls.append(data)
            return
        self._send_dtls(endpoint, dtls.feed(data))
        received = dtls.take_application_data()
        if received and self.on_dtls_data is not None and endpoint.dtls is dtls:
            for payload in received:
                try:
                    self.on_dtls_data(endpoint.conference_id, endpoint.id, payload)
                except Exception:
                    log.exception("on_dtls_data callback failed")

    def _send_dtls(self, endpoint: _Endpoint, datagrams: list[bytes]) -> None:
        if endpoint.address is not None:
            for datagram in datagrams:
                self._sendto(datagram, endpoint.address, endpoint.local)
        dtls = endpoint.dtls
        if dtls is None:
            return
        if endpoint.dtls_timer is not None:
            endpoint.dtls_timer.cancel()
            endpoint.dtls_timer = None
        if dtls.state is DtlsState.CONNECTED and endpoint.state == "new":
            endpoint.state = "connected"
            self._ice_succeeded += 1
            self._conferences[endpoint.conference_id].set_srtp(endpoint.id, dtls.srtp, time.monotonic())
            log.info(
                "endpoint connected conference=%s endpoint=%s address=%s local=%s nominated=%s srtp=%s",
                endpoint.conference_id,
                endpoint.id,
                endpoint.address,
                self._local_addresses[endpoint.local] if endpoint.local < len(self._local_addresses) else None,
                endpoint.ice.nominated,
                dtls.srtp.profile if dtls.srtp else None,
            )
            self._notify(endpoint, "connected")
        elif dtls.state is DtlsState.FAILED:
            log.info(
                "endpoint DTLS failed conference=%s endpoint=%s: %s",
                endpoint.conference_id,
                endpoint.id,
                dtls.failure,
            )
            self._fail(endpoint)
        elif dtls.state is DtlsState.CLOSED:
            self._fail(endpoint)
        else:
            timeout = dtls.timeout()
            if timeout is not None:
                endpoint.dtls_timer = asyncio.get_running_loop().call_later(
                    max(timeout, 0.01), self._on_dtls_timeout, endpoint
                )

    def _on_dtls_timeout(self, endpoint: _Endpoint) -> None:
        endpoint.dtls_timer = None
        if endpoint.dtls is not None and endpoint.state == "new":
            self._send_dtls(endpoint, endpoint.dtls.handle_timeout())

    def _transmitter(self, addr: tuple[str, int], local: int = 0) -> Callable[[bytes], None]:
        if type(addr) is TcpPeer:
            return self._tcp.transmitter(addr) if self._tcp is not None else _discard
        transport = self._sockets[local].transport if local < len(self._sockets) else None
        if transport is None:
            return _discard
        sendto = transport.sendto

        # a closure rather than functools.partial(sendto, addr=addr): a partial holding a keyword
        # copies its keyword dict on every call, which costs more than this one frame
        def transmit(data: bytes) -> None:
            sendto(data, addr)

        return transmit

    def _sendto(self, data: bytes, addr: tuple[str, int], local: int = 0) -> None:
        if type(addr) is TcpPeer:
            if self._tcp is not None:
                self._tcp.send(data, addr)
        elif local < len(self._sockets):
            transport = self._sockets[local].transport
            if transport is not None:
                transport.sendto(data, addr)

    # ---- timers ----------------------------------------------------------------------------

    async def _periodic(self) -> None:
        interval = self.config.rtcp_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            try:
                for conference in list(self._conferences.values()):
                    conference.send_reports(now)
                self._check_timeouts(now)
                self._update_rates(now)
            except Exception:  # keep the media plane alive; the failure is logged
                log.exception("periodic media work failed")

    def _check_timeouts(self, now: float) -> None:
        for endpoint in list(self._endpoints.values()):
            if endpoint.state == "connected":
                last = endpoint.last_activity or endpoint.created
                if now - last > self.config.consent_timeout:
                    log.info(
                        "endpoint silent for %.1fs conference=%s endpoint=%s",
                        now - last,
                        endpoint.conference_id,
                        endpoint.id,
                    )
                    self._fail(endpoint)
            elif endpoint.state == "new" and endpoint.remote_set_at is not None:
                if now - endpoint.remote_set_at > self.config.connect_timeout:
                    log.info(
                        "endpoint did not connect conference=%s endpoint=%s",
                        endpoint.conference_id,
                        endpoint.id,
                    )
                    self._fail(endpoint)

    def _update_rates(self, now: float) -> None:
        rx_p = rx_b = tx_p = tx_b = 0
        for endpoint in self._endpoints.values():
            rx_p += endpoint.media.packets_received
            rx_b += endpoint.media.bytes_received
            tx_p += endpoint.media.packets_sent
            tx_b += endpoint.media.bytes_sent
        if self._rate_mark is not None:
            then, p0, b0, p1, b1 = self._rate_mark
            dt = max(now - then, 1e-6)
            self._rates = (
                max(0, rx_p - p0) / dt,
                max(0, tx_p - p1) / dt,
                max(0, rx_b - b0) * 8 / 1000 / dt,
                max(0, tx_b - b1) * 8 / 1000 / dt,
            )
        self._rate_mark = (now, rx_p, rx_b, tx_p, tx_b)

    def _fail(self, endpoint: _Endpoint) -> None:
        if endpoint.state in ("failed", "expired"):
            return
        if endpoint.state == "new":
            self._ice_failed += 1
        endpoint.state = "failed"
        conference = self._conferences.get(endpoint.conference_id)
        if conference is not None and endpoint.id in conference.endpoints:
            conference.set_srtp(endpoint.id, None, time.monotonic())
        self._notify(endpoint, "failed")
        if self.config.expire_failed_endpoints:
            self.expire_endpoint(endpoint.conference_id, endpoint.id)

    # ---- helpers ---------------------------------------------------------------------------

    def _get(self, conference_id: str, endpoint_id: str) -> _Endpoint:
        endpoint = self._endpoints.get((conference_id, endpoint_id))
        if endpoint is None:
            raise UnknownEndpoint(f"no endpoint {endpoint_id!r} in conference {conference_id!r}")
        return endpoint

    def _notify(self, endpoint: _Endpoint, state: EndpointState) -> None:
        if self.on_endpoint_state is not None:
            try:
                self.on_endpoint_state(endpoint.conference_id, endpoint.id, state)
            except Exception:
                log.exception("on_endpoint_state callback failed")

    def _message_sender(self, conference_id: str) -> Callable[[str, BridgeChannelMessage], None]:
        def send(endpoint_id: str, message: BridgeChannelMessage) -> None:
            if self.send_to_endpoint is not None:
                self.send_to_endpoint(conference_id, endpoint_id, message)

        return send

    def _tcp_selected(self, peer: TcpPeer) -> bool:
        """Whether ICE made this ICE-TCP connection an endpoint's media pair (``transport/ice_tcp.py``
        closes connections that are not within their handshake timeout)."""
        endpoint = self._by_address.get(peer)
        return endpoint is not None and endpoint.address == peer

    def _local_address(self, endpoint: _Endpoint) -> str | None:
        if endpoint.address is None or endpoint.local >= len(self._local_addresses):
            return None
        ip, port = self._local_addresses[endpoint.local]
        return f"{ip}:{port}"

    def _advertised_ips(self) -> list[str]:
        return list(self._addresses.host)

    def _local_transport(self, endpoint: _Endpoint) -> LocalTransport:
        candidates = [
            IceCandidate(
                foundation=str(i + 1),
                component=1,
                protocol="udp",
                priority=_HOST_PRIORITY - i,
                ip=ip,
                port=self._port,
                type="host",
                id=f"{endpoint.ice.local_ufrag}{i}",
            )
            for i, ip in enumerate(self._advertised_ips())
        ]
        hosts = len(candidates)
        candidates += [  # STUN-mapped public addresses, with the local one as related address
            IceCandidate(
                foundation=str(hosts + i + 1),
                component=1,
                protocol="udp",
                priority=_SRFLX_PRIORITY - i,
                ip=mapped,
                port=self._port,
                type="srflx",
                id=f"{endpoint.ice.local_ufrag}{hosts + i}",
                rel_addr=local,
                rel_port=self._port,
            )
            for i, (mapped, local) in enumerate(self._addresses.srflx)
        ]
        if self._tcp is not None:  # RFC 6544 passive candidates, after (below) every UDP one
            udp = len(candidates)
            candidates += [
                IceCandidate(
                    foundation=str(udp + i + 1),
                    component=1,
                    protocol="tcp",
                    priority=_TCP_PRIORITY - i,
                    ip=ip,
                    port=self.config.tcp_advertise_port or self._tcp.port,
                    type="host",
                    id=f"{endpoint.ice.local_ufrag}{udp + i}",
                    tcptype="passive",
                )
                for i, ip in enumerate(self._advertised_ips())
            ]
        return LocalTransport(
            ufrag=endpoint.ice.local_ufrag,
            pwd=endpoint.ice.local_pwd,
            fingerprints=[DtlsFingerprint("sha-256", self.fingerprint, "actpass")],
            candidates=candidates,
        )


def _is_local(ip: str) -> bool:
    """Whether ``ip`` is an address of this host (a socket can bind it)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


def _discard(data: bytes) -> None:
    """Transmit for an endpoint whose address is not known yet."""

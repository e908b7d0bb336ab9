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

Everything about packets lives below: the UDP mux routes STUN by ICE username fragment and then
everything else by remote address (``udp.py``), ICE-lite answers binding requests (``ice.py``),
DTLS-SRTP comes from the aiortc adapter (``aiortc_adapter.py``), and the forwarder rewrites and
fans RTP out (``forwarder.py``), with RTCP handled in ``rtcp.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    to 0.0.0.0. ``consent_timeout``: an endpoint that sent nothing (no STUN consent, no media)
    for this long is failed and expired. ``connect_timeout``: an endpoint whose ICE/DTLS has not
    completed this long after it got its remote transport is failed and expired.
    ``packet_cache_size``: packets kept per incoming stream to answer NACKs.
    ``remb_max_bps``/``remb_min_bps``: bounds of the estimate sent to senders.
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
    extra: dict[str, Any] = field(default_factory=dict)


StateCallback = Callable[[str, str, EndpointState], None]
MessageCallback = Callable[[str, str, dict[str, Any]], None]


class MediaEngine:
    """All endpoints of all conferences of this bridge, on one UDP port.

    Callbacks the control plane sets:

    ``on_endpoint_state(conference_id, endpoint_id, state)`` with state ``"connected"`` (ICE and
    DTLS done, media can flow), ``"failed"`` (ICE/DTLS failed or consent lost; the engine then
    expires the endpoint itself when ``expire_failed_endpoints``), ``"expired"`` (resources freed).

    ``send_to_endpoint(conference_id, endpoint_id, message)``: a bridge-channel message (a dict
    with ``colibriClass``) the media side wants delivered to that endpoint.
    """

    on_endpoint_state: StateCallback | None
    send_to_endpoint: MessageCallback | None

    def __init__(self, config: MediaConfig) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful with ``port=0``)."""
        raise NotImplementedError

    async def start(self) -> None:
        """Bind the UDP port and start the timers (RTCP, consent, stats). Raises ``OSError``
        naming the port when it cannot bind."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Expire every conference and close the socket."""
        raise NotImplementedError

    def create_endpoint(self, conference_id: str, endpoint_id: str) -> LocalTransport:
        """Create (or return the existing) endpoint: a fresh ICE ufrag/pwd per endpoint, the
        bridge's shared DTLS certificate fingerprint (setup ``actpass``) and host candidates on
        the one UDP port. Creates the conference on first use."""
        raise NotImplementedError

    def set_remote_transport(self, conference_id: str, endpoint_id: str, remote: RemoteTransport) -> None:
        """The endpoint's ICE credentials and DTLS fingerprint. The DTLS role follows the remote
        setup: ``active`` -> the bridge is the DTLS server, ``passive``/``actpass`` -> client.
        Raises :class:`UnknownEndpoint`, ``ValueError`` for a transport without fingerprint."""
        raise NotImplementedError

    def set_sources(self, conference_id: str, endpoint_id: str, sources: MediaSources) -> None:
        """What the endpoint sends. Replaces the previous set; the other endpoints of the
        conference receive these streams from now on (and video senders get a PLI)."""
        raise NotImplementedError

    def expire_endpoint(self, conference_id: str, endpoint_id: str) -> None:
        """Free the endpoint (idempotent); a conference left empty is expired too."""
        raise NotImplementedError

    def expire_conference(self, conference_id: str) -> None:
        """Expire every endpoint of the conference and the conference itself (idempotent)."""
        raise NotImplementedError

    def on_bridge_channel_message(self, conference_id: str, endpoint_id: str, message: dict[str, Any]) -> None:
        """A bridge-channel message from the endpoint that steers media (``LastNChangedEvent``,
        ``ReceiverVideoConstraints``, ``ReceiverAudioSubscription``…), handed to the conference's
        forwarding policy. Unknown classes are ignored."""
        raise NotImplementedError

    def endpoint_last_activity(self, conference_id: str, endpoint_id: str) -> float | None:
        """``time.monotonic()`` of the last packet (STUN, DTLS, RTP, RTCP) from the endpoint, or
        ``None`` if nothing arrived yet or the endpoint is unknown."""
        raise NotImplementedError

    def stats(self) -> MediaStats:
        """Packet and bit rates up/down, ICE totals and per-endpoint details."""
        raise NotImplementedError

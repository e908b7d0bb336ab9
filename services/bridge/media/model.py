"""Value types the media plane exchanges with the control plane (no I/O, no behaviour).

They mirror the Colibri/Jingle transport and source descriptions (Colibri REST v1, docs/protocols.md#colibri-rest) in the shape the
media engine needs; the control plane converts its Colibri models into these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EndpointState = Literal["connected", "failed", "expired"]
DtlsSetup = Literal["actpass", "active", "passive"]


@dataclass(frozen=True)
class IceCandidate:
    """One ICE candidate (RFC 8445), as in a Colibri ``candidate`` or a Jingle ``<candidate/>``."""

    foundation: str
    component: int
    protocol: str  # "udp"
    priority: int
    ip: str
    port: int
    type: str  # "host", "srflx", "relay"
    id: str = ""
    generation: int = 0
    network: int = 0
    tcptype: str | None = None
    rel_addr: str | None = None
    rel_port: int | None = None


@dataclass(frozen=True)
class DtlsFingerprint:
    """A certificate fingerprint: ``hash`` like ``sha-256``, ``fingerprint`` upper-case hex with colons."""

    hash: str
    fingerprint: str
    setup: DtlsSetup = "actpass"


@dataclass(frozen=True)
class LocalTransport:
    """What the bridge advertises for one endpoint (its channel-bundle transport)."""

    ufrag: str
    pwd: str
    fingerprints: list[DtlsFingerprint]
    candidates: list[IceCandidate]
    rtcp_mux: bool = True
    ice_lite: bool = True


@dataclass(frozen=True)
class RemoteTransport:
    """What the endpoint answered. ``candidates`` may be empty: the ICE-lite bridge learns the
    endpoint's address from its first authenticated STUN binding request."""

    ufrag: str
    pwd: str
    fingerprints: list[DtlsFingerprint]
    candidates: list[IceCandidate] = field(default_factory=list)


@dataclass(frozen=True)
class PayloadType:
    """An RTP payload type the endpoint uses (``rtcp_fbs`` as ``(type, subtype)`` pairs)."""

    id: int
    name: str
    clockrate: int
    channels: int = 1
    parameters: dict[str, str] = field(default_factory=dict)
    rtcp_fbs: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RtpHeaderExtension:
    id: int
    uri: str


@dataclass(frozen=True)
class MediaSources:
    """What an endpoint SENDS: its SSRCs, SSRC groups (``FID`` for RTX, ``SIM`` for simulcast),
    the payload types and header extensions negotiated for it."""

    audio_ssrcs: list[int] = field(default_factory=list)
    video_ssrcs: list[int] = field(default_factory=list)
    ssrc_groups: list[tuple[str, list[int]]] = field(default_factory=list)
    payload_types: list[PayloadType] = field(default_factory=list)
    rtp_hdrexts: list[RtpHeaderExtension] = field(default_factory=list)
    # kinds ("audio", "video") the focus force-muted (its channel's direction is recvonly or
    # inactive, as Jicofo mutes over Colibri): nothing of that kind is forwarded, whatever it sends
    muted: frozenset[str] = frozenset()
    forward_ssrcs: dict[int, int] = field(default_factory=dict)
    """``{lowest layer's SSRC: the SSRC receivers know the source by}`` where they differ: set when
    the bridge reorders a ``SIM`` group from the RIDs it sees (``packets/rid.py``), so receivers keep
    getting the source on the SSRC they were told."""

    def rtx_pairs(self) -> dict[int, int]:
        """``{media_ssrc: rtx_ssrc}`` from the ``FID`` groups."""
        return {
            ssrcs[0]: ssrcs[1]
            for semantics, ssrcs in self.ssrc_groups
            if semantics == "FID" and len(ssrcs) == 2
        }

    def rtx_payload_types(self) -> dict[int, int]:
        """``{rtx_pt: media_pt}`` from ``rtx`` payload types with an ``apt`` parameter."""
        out: dict[int, int] = {}
        for pt in self.payload_types:
            if pt.name.lower() == "rtx" and "apt" in pt.parameters:
                out[pt.id] = int(pt.parameters["apt"])
        return out

    def header_extension_id(self, uri: str) -> int | None:
        for ext in self.rtp_hdrexts:
            if ext.uri == uri:
                return ext.id
        return None


@dataclass
class EndpointStats:
    """Counters of one endpoint, for ``/debug`` and the bridge's stats."""

    conference_id: str
    endpoint_id: str
    state: str
    remote_address: str | None
    packets_received: int
    bytes_received: int
    packets_sent: int
    bytes_sent: int
    nacks_received: int
    nacks_sent: int
    retransmissions: int
    plis_forwarded: int
    last_activity: float | None
    # retransmission requests (per packet) the bridge did not answer: the packet was resent to
    # the endpoint within about a round trip, was too old, was over the endpoint's budget or
    # the per-NACK cap, or was never forwarded to it (the forwarding policy held it back)
    retransmissions_suppressed: int = 0
    retransmissions_too_old: int = 0
    retransmissions_dropped: int = 0
    retransmissions_not_forwarded: int = 0
    rtt_ms: float | None = None  # round trip to the endpoint, from its reports on relayed SRs
    # ICE: the bridge's side of the media pair (the advertised address its socket is bound to),
    # the bridge's role and whether the pair was nominated
    local_address: str | None = None
    ice_controlling: bool = True
    ice_nominated: bool = False
    # transport-cc: feedback the bridge sent it on what it sends, feedback it sent on what the
    # bridge numbered for it, and what its downlink estimate comes from ("transport-cc", "remb")
    transport_cc_feedback_sent: int = 0
    transport_cc_feedback_received: int = 0
    send_side_estimate_bps: int | None = None
    downlink_estimate_source: str | None = None


@dataclass
class MediaStats:
    """Bridge-wide media figures (rates over the last stats interval) plus per-endpoint detail."""

    conferences: int = 0
    endpoints: int = 0
    packet_rate_download: float = 0.0
    packet_rate_upload: float = 0.0
    bit_rate_download_kbps: float = 0.0
    bit_rate_upload_kbps: float = 0.0
    packets_received: int = 0
    packets_sent: int = 0
    packets_forwarded: int = 0
    total_ice_succeeded: int = 0
    total_ice_failed: int = 0
    forwarding_loop: str = "python"
    """Which per-receiver forwarding loop runs: "native" (C, native.py) or "python"."""
    packets_left_to_python_loop: int = 0
    """Packets (one per receiver) the C loop handed to the Python loop: payload rewrites (VP8
    picture ids after a simulcast switch), a full socket buffer."""
    stun_errors: int = 0
    """STUN datagrams dropped as malformed (or unusable by ICE)."""
    ice_tcp_connections: int = 0
    """Open ICE-TCP connections (``transport/ice_tcp.py``), and those refused or closed for not completing
    ICE in time or going silent since start."""
    ice_tcp_refused: int = 0
    ice_tcp_timed_out: int = 0
    endpoint_details: list[EndpointStats] = field(default_factory=list)

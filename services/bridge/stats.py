"""The bridge's statistics report (``GET /colibri/stats``, brewery presence), computed without I/O.

Keys follow the Colibri REST document (``bit_rate_download``, ``bit_rate_upload``, ``conferences``, ``participants``,
``current_timestamp``, ``threads``) plus the load and state keys of docs/protocols.md#brewery that the
focus reads from presence (``stress_level``, ``drain``, ``graceful_shutdown``...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from services.bridge.media.model import MediaStats
from services.common import brewery


@dataclass
class BridgeStatus:
    """Operational state the operator and the focus care about."""

    drain: bool = False
    graceful_shutdown: bool = False
    shutting_down: bool = False
    healthy: bool = True
    unhealthy_reason: str = ""
    started: bool = False

    def problem(self) -> str | None:
        """Why the bridge is not healthy (``/about/health``, brewery presence), or None."""
        if not self.started:
            return "starting"
        if self.shutting_down:
            return "shutting down"
        if not self.healthy:
            return self.unhealthy_reason or "unhealthy"
        return None

    def refusal(self) -> str | None:
        """Why new conferences are refused (Colibri POST answers 503), or None."""
        if self.shutting_down:
            return "bridge is shutting down"
        if self.graceful_shutdown:
            return "bridge is in graceful shutdown"
        return None


def stress_level(media: MediaStats, max_packet_rate: int) -> float:
    """Load as a fraction of what this bridge is configured to carry (packets/s in + out)."""
    return round((media.packet_rate_download + media.packet_rate_upload) / max_packet_rate, 4)


def timestamp(wall: float) -> str:
    """``2014-08-14 23:26:14.782`` (UTC), the ``current_timestamp`` format of the Colibri REST document."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}"


def colibri_stats(
    *,
    media: MediaStats,
    conference_sizes: list[int],
    status: BridgeStatus,
    max_packet_rate: int,
    version: str,
    region: str | None,
    relay_id: str | None,
    threads: int,
    wall_time: float,
    websockets: int = 0,
    colibri_url: str | None = None,
) -> dict[str, Any]:
    endpoints = sum(conference_sizes)
    stress = stress_level(media, max_packet_rate)
    return {
        "bit_rate_download": str(round(media.bit_rate_download_kbps)),
        "bit_rate_upload": str(round(media.bit_rate_upload_kbps)),
        "conferences": len(conference_sizes),
        "participants": endpoints,
        "current_timestamp": timestamp(wall_time),
        "threads": threads,
        brewery.STRESS_LEVEL: stress,
        brewery.AVERAGE_PARTICIPANT_STRESS: round(stress / endpoints, 4) if endpoints else 0.01,
        brewery.ENDPOINTS: endpoints,
        brewery.LARGEST_CONFERENCE: max(conference_sizes, default=0),
        "packet_rate_download": round(media.packet_rate_download, 1),
        "packet_rate_upload": round(media.packet_rate_upload, 1),
        "total_ice_succeeded": media.total_ice_succeeded,
        "total_ice_failed": media.total_ice_failed,
        "packets_forwarded": media.packets_forwarded,
        "forwarding_loop": media.forwarding_loop,
        "packets_left_to_python_loop": media.packets_left_to_python_loop,
        "stun_errors": media.stun_errors,
        "ice_tcp_connections": media.ice_tcp_connections,
        "ice_tcp_refused": media.ice_tcp_refused,
        "ice_tcp_timed_out": media.ice_tcp_timed_out,
        "colibri_web_socket_connections": websockets,
        brewery.GRACEFUL_SHUTDOWN: status.graceful_shutdown,
        brewery.SHUTTING_DOWN: status.shutting_down,
        brewery.DRAIN: status.drain,
        brewery.HEALTHY: status.healthy,
        brewery.VERSION: version,
        brewery.REGION: region,
        brewery.RELAY_ID: relay_id,
        brewery.COLIBRI_URL: colibri_url,
    }


def presence_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """The subset of the report carried in brewery presence."""
    return {k: stats.get(k) for k in brewery.PRESENCE_KEYS if stats.get(k) is not None}

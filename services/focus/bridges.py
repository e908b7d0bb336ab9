"""The bridges the focus knows: brewery presence, health-check results, recent allocations (pure).

Fed by the XMPP adapter (brewery presence in, departure out) and the health checker; read by
conference placement through :meth:`BridgeRegistry.views`. Time is passed in (``now``), so the
ramp-up window and the health state machine are tested without clocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from services.common import brewery
from services.common.brewery import BridgeStats

from .selector import BridgeState, BridgeView, select_bridge

COLIBRI_URL_STAT = brewery.COLIBRI_URL
"""Brewery stat with the bridge's Colibri REST base URL (``http://10.0.0.5:8080``)."""


class HealthOutcome(Enum):
    OK = "ok"
    REFUSED = "refused"  # nothing listening: the process is gone
    BAD = "bad"  # timeout, 5xx, unhealthy answer


@dataclass
class KnownBridge:
    id: str
    stats: BridgeStats
    failed: bool = False
    failure_reason: str | None = None
    consecutive_failures: int = 0
    added_at: deque[float] = field(default_factory=deque)
    last_presence: float = 0.0


class BridgeRegistry:
    def __init__(
        self,
        colibri_urls: dict[str, str] | None = None,
        *,
        ramp_up_window: float = 10.0,
        health_failures: int = 2,
        overloaded_stress: float = 0.8,
        min_participant_stress: float = 0.01,
    ) -> None:
        self._bridges: dict[str, KnownBridge] = {}
        self._configured_urls = dict(colibri_urls or {})
        self.ramp_up_window = ramp_up_window
        self.health_failures = health_failures
        self.overloaded_stress = overloaded_stress
        self.min_participant_stress = min_participant_stress

    # --- brewery
    def presence(self, bridge_id: str, stats: BridgeStats, now: float) -> bool:
        """A bridge's presence (join or refresh). True when the bridge is new."""
        bridge = self._bridges.get(bridge_id)
        if bridge is None:
            self._bridges[bridge_id] = KnownBridge(bridge_id, stats, last_presence=now)
            return True
        bridge.stats = stats
        bridge.last_presence = now
        return False

    def departed(self, bridge_id: str) -> bool:
        """The bridge left the brewery: it is gone. True if it was known."""
        return self._bridges.pop(bridge_id, None) is not None

    # --- health
    def health_result(self, bridge_id: str, outcome: HealthOutcome, reason: str = "") -> bool:
        """Record one health check. True exactly when this check made the bridge failed."""
        bridge = self._bridges.get(bridge_id)
        if bridge is None:
            return False
        if outcome is HealthOutcome.OK:
            bridge.consecutive_failures = 0
            bridge.failed = False
            bridge.failure_reason = None
            return False
        bridge.consecutive_failures += 1
        if bridge.failed:
            return False
        if outcome is HealthOutcome.REFUSED or bridge.consecutive_failures >= self.health_failures:
            bridge.failed = True
            bridge.failure_reason = reason or outcome.value
            return True
        return False

    def mark_failed(self, bridge_id: str, reason: str) -> bool:
        """A Colibri request could not reach the bridge. True if this newly failed it."""
        bridge = self._bridges.get(bridge_id)
        if bridge is None or bridge.failed:
            return False
        bridge.failed = True
        bridge.failure_reason = reason
        return True

    # --- placement
    def endpoint_added(self, bridge_id: str, now: float) -> None:
        bridge = self._bridges.get(bridge_id)
        if bridge is not None:
            bridge.added_at.append(now)

    def _recent(self, bridge: KnownBridge, now: float) -> int:
        while bridge.added_at and bridge.added_at[0] < now - self.ramp_up_window:
            bridge.added_at.popleft()
        return len(bridge.added_at)

    def views(self, now: float) -> list[BridgeView]:
        return [
            BridgeView(
                b.id,
                b.stats,
                failed=b.failed,
                recently_added_endpoints=self._recent(b, now),
                min_participant_stress=self.min_participant_stress,
            )
            for b in self._bridges.values()
        ]

    def select(self, now: float, *, region: str | None = None, exclude: tuple[str, ...] = ()) -> str | None:
        chosen = select_bridge(
            (v for v in self.views(now) if self.colibri_url(v.id)),
            region=region,
            exclude=exclude,
            overloaded_stress=self.overloaded_stress,
        )
        return chosen.id if chosen else None

    # --- lookups
    def __contains__(self, bridge_id: object) -> bool:
        return bridge_id in self._bridges

    def ids(self) -> list[str]:
        return list(self._bridges)

    def get(self, bridge_id: str) -> KnownBridge | None:
        return self._bridges.get(bridge_id)

    def is_usable(self, bridge_id: str) -> bool:
        """Present and not failed (a bridge in graceful shutdown still serves what it has)."""
        bridge = self._bridges.get(bridge_id)
        if bridge is None:
            return False
        view = BridgeView(bridge.id, bridge.stats, failed=bridge.failed)
        return view.state is not BridgeState.FAILED

    def colibri_url(self, bridge_id: str) -> str | None:
        """The bridge's Colibri REST base: its ``colibri_url`` stat, else the configured map."""
        bridge = self._bridges.get(bridge_id)
        if bridge is not None:
            url = bridge.stats.other.get(COLIBRI_URL_STAT)
            if url:
                return url.rstrip("/")
        return self._configured_urls.get(bridge_id)

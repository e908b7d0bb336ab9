"""Bridge selection: which bridge hosts a new conference (pure; docs/protocols.md#brewery).

A bridge is described by :class:`BridgeView` (its brewery stats, whether health checks failed it,
how many endpoints the focus put on it recently). :func:`select_bridge` picks:

1. only *operational* bridges (not failed, not in graceful shutdown, not shutting down, healthy);
   a bridge in graceful shutdown gets no new conferences, a failed one nothing at all;
2. non-draining before draining (a draining bridge only when nothing else is left);
3. not overloaded (stress below the threshold) before overloaded;
4. in the preferred region before elsewhere (when a region is asked for);
5. the least loaded: ``stress_level + recently_added_endpoints * average_participant_stress`` -
   the ramp-up term accounts for endpoints the bridge has not reported in its stress yet (the
   per-endpoint stress has a floor, ``min_participant_stress``: silent endpoints report 0);
6. the bridge id, so equal bridges are chosen deterministically.

:func:`order_bridges` sorts any list operational, graceful-shutdown, failed (for listings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from services.common.brewery import BridgeStats


class BridgeState(IntEnum):
    """Best first."""

    OPERATIONAL = 0
    GRACEFUL_SHUTDOWN = 1
    FAILED = 2


@dataclass(frozen=True)
class BridgeView:
    id: str
    stats: BridgeStats
    failed: bool = False
    recently_added_endpoints: int = 0
    # floor of the per-endpoint stress: a bridge whose endpoints send nothing yet reports 0
    min_participant_stress: float = 0.01

    @property
    def state(self) -> BridgeState:
        if self.failed or self.stats.shutting_down or not self.stats.healthy:
            return BridgeState.FAILED
        if self.stats.graceful_shutdown:
            return BridgeState.GRACEFUL_SHUTDOWN
        return BridgeState.OPERATIONAL

    @property
    def load(self) -> float:
        """Stress now plus the expected stress of endpoints added but not yet reported."""
        per_endpoint = max(self.stats.average_participant_stress, self.min_participant_stress)
        return self.stats.stress_level + self.recently_added_endpoints * per_endpoint

    def overloaded(self, threshold: float) -> bool:
        return self.load >= threshold


def selection_key(bridge: BridgeView, *, region: str | None, overloaded_stress: float) -> tuple:
    return (
        bridge.stats.drain,
        bridge.overloaded(overloaded_stress),
        bool(region) and bridge.stats.region != region,
        bridge.load,
        bridge.id,
    )


def select_bridge(
    bridges: Iterable[BridgeView],
    *,
    region: str | None = None,
    exclude: Iterable[str] = (),
    overloaded_stress: float = 0.8,
) -> BridgeView | None:
    """The bridge for a new conference, or ``None`` when no bridge may take one."""
    excluded = set(exclude)
    candidates = [b for b in bridges if b.id not in excluded and b.state is BridgeState.OPERATIONAL]
    if not candidates:
        return None
    return min(candidates, key=lambda b: selection_key(b, region=region, overloaded_stress=overloaded_stress))


def order_bridges(bridges: Iterable[BridgeView], overloaded_stress: float = 0.8) -> list[BridgeView]:
    """Operational, then graceful-shutdown, then failed; within each, the selection order."""
    return sorted(
        bridges,
        key=lambda b: (b.state, *selection_key(b, region=None, overloaded_stress=overloaded_stress)),
    )

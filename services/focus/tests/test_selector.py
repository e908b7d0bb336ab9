"""Bridge selection, table-driven: each row is (bridges, request, expected choice)."""

from __future__ import annotations

import pytest

from services.common.brewery import BridgeStats
from services.focus.selector import BridgeState, BridgeView, order_bridges, select_bridge


def bridge(
    id: str,
    stress: float = 0.0,
    *,
    avg: float = 0.01,
    recent: int = 0,
    failed: bool = False,
    graceful: bool = False,
    shutting: bool = False,
    drain: bool = False,
    healthy: bool = True,
    region: str | None = None,
) -> BridgeView:
    stats = BridgeStats(
        stress_level=stress,
        average_participant_stress=avg,
        graceful_shutdown=graceful,
        shutting_down=shutting,
        drain=drain,
        healthy=healthy,
        region=region,
    )
    return BridgeView(id, stats, failed=failed, recently_added_endpoints=recent)


CASES = [
    # (name, bridges, kwargs, expected)
    ("least stressed wins", [bridge("a", 0.5), bridge("b", 0.2)], {}, "b"),
    ("ties broken by id", [bridge("b", 0.1), bridge("a", 0.1)], {}, "a"),
    ("ramp-up term counts recent endpoints", [bridge("a", 0.1, avg=0.05, recent=3), bridge("b", 0.2)], {}, "b"),
    ("ramp-up small enough still wins", [bridge("a", 0.1, avg=0.01, recent=3), bridge("b", 0.2)], {}, "a"),
    ("silent endpoints still count (floor)", [bridge("a", 0.0, avg=0.0, recent=1), bridge("b", 0.0)], {}, "b"),
    ("failed is never chosen", [bridge("a", 0.0, failed=True), bridge("b", 0.9)], {}, "b"),
    ("graceful shutdown gets no new conference", [bridge("a", 0.0, graceful=True), bridge("b", 0.7)], {}, "b"),
    ("graceful shutdown only: nothing", [bridge("a", 0.0, graceful=True)], {}, None),
    ("shutting down is failed", [bridge("a", 0.0, shutting=True)], {}, None),
    ("unhealthy stat is failed", [bridge("a", 0.0, healthy=False), bridge("b", 0.3)], {}, "b"),
    ("draining only when nothing else", [bridge("a", 0.0, drain=True), bridge("b", 0.6)], {}, "b"),
    ("draining when alone", [bridge("a", 0.0, drain=True)], {}, "a"),
    ("overloaded avoided", [bridge("a", 0.85), bridge("b", 0.79)], {}, "b"),
    ("all overloaded: least loaded", [bridge("a", 0.95), bridge("b", 0.85)], {}, "b"),
    ("region preferred", [bridge("a", 0.1, region="us"), bridge("b", 0.5, region="eu")], {"region": "eu"}, "b"),
    ("region not overloaded first", [bridge("a", 0.1, region="us"), bridge("b", 0.9, region="eu")],
     {"region": "eu"}, "a"),
    ("no region asked: load only", [bridge("a", 0.1, region="us"), bridge("b", 0.5, region="eu")], {}, "a"),
    ("excluded skipped", [bridge("a", 0.1), bridge("b", 0.5)], {"exclude": ["a"]}, "b"),
    ("empty", [], {}, None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "bridges", "kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_select_bridge(name: str, bridges: list[BridgeView], kwargs: dict, expected: str | None) -> None:
    chosen = select_bridge(bridges, **kwargs)
    assert (chosen.id if chosen else None) == expected


def test_states_and_listing_order() -> None:
    views = [bridge("f", failed=True), bridge("g", graceful=True), bridge("o2", 0.5), bridge("o1", 0.1)]
    assert [v.state for v in views] == [
        BridgeState.FAILED,
        BridgeState.GRACEFUL_SHUTDOWN,
        BridgeState.OPERATIONAL,
        BridgeState.OPERATIONAL,
    ]
    assert [v.id for v in order_bridges(views)] == ["o1", "o2", "g", "f"]


def test_load_is_stress_plus_ramp_up() -> None:
    assert bridge("a", 0.2, avg=0.05, recent=4).load == pytest.approx(0.4)

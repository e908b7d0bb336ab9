from __future__ import annotations

from services.common.brewery import BridgeStats
from services.focus.bridges import COLIBRI_URL_STAT, BridgeRegistry, HealthOutcome


def registry(**kw: object) -> BridgeRegistry:
    return BridgeRegistry({"jvb1": "http://127.0.0.1:8080"}, **kw)  # type: ignore[arg-type]


def test_presence_adds_then_refreshes_and_departure_removes() -> None:
    reg = registry()
    assert reg.presence("jvb1", BridgeStats(stress_level=0.1), now=0) is True
    assert reg.presence("jvb1", BridgeStats(stress_level=0.3), now=1) is False
    assert reg.views(1)[0].stats.stress_level == 0.3
    assert reg.departed("jvb1") is True
    assert "jvb1" not in reg and reg.departed("jvb1") is False
    assert reg.select(2) is None


def test_colibri_url_from_stat_beats_config() -> None:
    reg = registry()
    reg.presence("jvb1", BridgeStats(), now=0)
    assert reg.colibri_url("jvb1") == "http://127.0.0.1:8080"
    reg.presence("jvb1", BridgeStats(other={COLIBRI_URL_STAT: "http://10.0.0.5:8080/"}), now=1)
    assert reg.colibri_url("jvb1") == "http://10.0.0.5:8080"


def test_bridge_without_url_is_not_selected() -> None:
    reg = registry()
    reg.presence("jvb9", BridgeStats(), now=0)
    assert reg.select(0) is None
    reg.presence("jvb1", BridgeStats(stress_level=0.5), now=0)
    assert reg.select(0) == "jvb1"


def test_refused_fails_at_once_timeouts_after_threshold_ok_recovers() -> None:
    reg = registry(health_failures=2)
    reg.presence("jvb1", BridgeStats(), now=0)
    assert reg.health_result("jvb1", HealthOutcome.BAD, "timeout") is False
    assert reg.is_usable("jvb1")
    assert reg.health_result("jvb1", HealthOutcome.BAD, "timeout") is True
    assert not reg.is_usable("jvb1") and reg.get("jvb1").failure_reason == "timeout"  # type: ignore[union-attr]
    assert reg.health_result("jvb1", HealthOutcome.BAD) is False  # already failed: reported once
    assert reg.health_result("jvb1", HealthOutcome.OK) is False
    assert reg.is_usable("jvb1")
    assert reg.health_result("jvb1", HealthOutcome.REFUSED, "refused") is True


def test_ramp_up_window_expires_recent_endpoints() -> None:
    reg = BridgeRegistry({"a": "http://a", "b": "http://b"}, ramp_up_window=10)
    reg.presence("a", BridgeStats(stress_level=0.10, average_participant_stress=0.05), now=0)
    reg.presence("b", BridgeStats(stress_level=0.15, average_participant_stress=0.05), now=0)
    assert reg.select(0) == "a"
    reg.endpoint_added("a", now=1)
    reg.endpoint_added("a", now=2)
    assert reg.select(3) == "b"  # a: 0.10 + 2 * 0.05 = 0.20 > 0.15
    assert reg.select(12.5) == "a"  # both additions are older than the window


def test_mark_failed_once() -> None:
    reg = registry()
    reg.presence("jvb1", BridgeStats(), now=0)
    assert reg.mark_failed("jvb1", "connect refused") is True
    assert reg.mark_failed("jvb1", "again") is False
    assert reg.select(0) is None

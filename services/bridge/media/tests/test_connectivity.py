from __future__ import annotations

from services.bridge.media.connectivity import ConnectivityMonitor


def test_media_that_stops_and_resumes_is_reported_once_each_way() -> None:
    monitor = ConnectivityMonitor(max_inactivity=3.0, first_transfer_timeout=15.0)
    monitor.add("a", 0.0)
    monitor.add("b", 0.0)
    for t in (1.0, 2.0, 3.0):
        monitor.on_media("a", t)
        monitor.on_media("b", t)
        assert monitor.check(t) == []
    monitor.on_media("a", 5.0)
    assert monitor.check(5.9) == []  # b: 2.9 s without media
    assert monitor.check(6.0) == [("b", False)]
    assert monitor.check(7.0) == []  # said once
    assert monitor.inactive() == ["b"] and not monitor.is_active("b")
    monitor.on_media("b", 7.5)
    assert monitor.check(7.5) == [("b", True)]
    assert monitor.is_active("b")


def test_an_endpoint_that_never_sends_is_inactive_after_the_first_transfer_timeout() -> None:
    monitor = ConnectivityMonitor(max_inactivity=3.0, first_transfer_timeout=15.0)
    monitor.add("late", 100.0)
    assert monitor.check(114.0) == []
    assert monitor.check(115.0) == [("late", False)]
    monitor.remove("late")
    assert monitor.check(200.0) == [] and monitor.is_active("late")


def test_packets_from_unknown_endpoints_change_nothing() -> None:
    monitor = ConnectivityMonitor()
    monitor.on_media("stranger", 1.0)
    assert monitor.check(100.0) == [] and monitor.inactive() == []


def test_a_new_channel_is_told_who_is_interrupted_now_but_not_about_itself() -> None:
    monitor = ConnectivityMonitor(max_inactivity=3.0, first_transfer_timeout=15.0)
    for ep in ("a", "b", "c"):
        monitor.add(ep, 0.0)
        monitor.on_media(ep, 1.0)
    assert monitor.status_for_new_channel("late") == []  # everyone flows: nothing to say
    monitor.on_media("a", 4.5)
    monitor.on_media("late", 4.5)
    assert monitor.check(4.5) == [("b", False), ("c", False)]
    assert monitor.status_for_new_channel("late") == [("b", False), ("c", False)]
    assert monitor.status_for_new_channel("b") == [("c", False)]  # a reconnecting b: c only
    monitor.on_media("c", 5.0)
    monitor.check(5.0)
    assert monitor.status_for_new_channel("late") == [("b", False)]  # c came back

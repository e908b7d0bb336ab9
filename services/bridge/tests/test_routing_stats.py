"""Bridge-channel routing decisions and the stats report."""

from __future__ import annotations

from services.bridge.channel.routing import route
from services.bridge.media.model import MediaStats
from services.bridge.stats import BridgeStatus, colibri_stats, presence_stats, timestamp
from services.common import bridge_channel as bc

EPS = ["a", "b", "c"]


def test_client_hello_gets_server_hello() -> None:
    r = route(bc.ClientHello(), "a", EPS, "1.2")
    assert [(to, bc.to_dict(m)) for to, m in r.deliveries] == [
        ("a", {"colibriClass": "ServerHello", "version": "1.2"})
    ]


def test_unicast_endpoint_message_reaches_only_the_target_with_from() -> None:
    msg = bc.parse({"colibriClass": "EndpointMessage", "to": "b", "msgPayload": {"x": 1}})
    r = route(msg, "a", EPS, "v")
    assert [(to, bc.to_dict(m)["from"]) for to, m in r.deliveries] == [("b", "a")]
    assert r.to_engine is None


def test_broadcast_reaches_every_other_endpoint() -> None:
    r = route(bc.parse({"colibriClass": "EndpointMessage", "to": "", "msgPayload": 1}), "a", EPS, "v")
    assert sorted(to for to, _ in r.deliveries) == ["b", "c"]


def test_endpoint_stats_broadcast_and_unknown_target_dropped() -> None:
    r = route(bc.parse({"colibriClass": "EndpointStats", "jitter": 3}), "b", EPS, "v")
    assert sorted(to for to, _ in r.deliveries) == ["a", "c"]
    assert bc.to_dict(r.deliveries[0][1]) == {"colibriClass": "EndpointStats", "from": "b", "jitter": 3}
    assert route(bc.parse({"colibriClass": "EndpointMessage", "to": "zz"}), "a", EPS, "v").deliveries == []
    assert route(bc.parse({"colibriClass": "EndpointMessage", "to": "a"}), "a", EPS, "v").deliveries == []


def test_media_control_goes_to_the_engine() -> None:
    r = route(bc.parse({"colibriClass": "LastNChangedEvent", "lastN": 2}), "a", EPS, "v")
    assert r.to_engine == bc.LastNChangedEvent(last_n=2) and r.deliveries == []
    r = route(bc.ForwardedSources(forwarded_sources=["x-v0"]), "a", EPS, "v")
    assert r.to_engine is None and r.deliveries == []


def test_stats_report_keys_and_values() -> None:
    media = MediaStats(
        packet_rate_download=300.0,
        packet_rate_upload=700.0,
        bit_rate_download_kbps=812.4,
        total_ice_succeeded=4,
        total_ice_failed=1,
    )
    stats = colibri_stats(
        media=media,
        conference_sizes=[3, 1],
        status=BridgeStatus(drain=True),
        max_packet_rate=10000,
        version="0.1.0",
        region="eu",
        relay_id=None,
        threads=5,
        wall_time=1408058774.782,
    )
    for key in (
        "bit_rate_download",
        "bit_rate_upload",
        "conferences",
        "participants",
        "current_timestamp",
        "threads",
    ):
        assert key in stats  # Colibri REST stats keys
    assert stats["bit_rate_download"] == "812" and stats["conferences"] == 2 and stats["participants"] == 4
    assert stats["current_timestamp"] == "2014-08-14 23:26:14.782"
    assert stats["stress_level"] == 0.1 and stats["largest_conference"] == 3 and stats["endpoints"] == 4
    assert stats["total_ice_succeeded"] == 4 and stats["total_ice_failed"] == 1 and stats["drain"] is True
    pres = presence_stats(stats)
    assert pres["stress_level"] == 0.1 and pres["region"] == "eu" and "relay_id" not in pres
    assert "threads" not in pres


def test_timestamp_format() -> None:
    assert timestamp(0.0) == "1970-01-01 00:00:00.000"

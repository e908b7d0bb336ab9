"""The stack snapshot (pure): services up or down, conferences, endpoints with bitrates, bridges,
XMPP sessions and rooms, WebSocket servers; and the stack description the tools read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.launcher.plan import StackSettings, build_plan, stack_state
from services.ops import snapshot
from services.ops.stack import OpsError, Service, find_services, select

KINDS = {"xmpp": "xmpp", "jvb1": "bridge", "focus": "focus", "sip": "sip"}


def debug(rx: int, tx: int) -> dict:
    return {
        "conferences": [
            {
                "id": "c1",
                "name": None,
                "endpoints": [
                    {
                        "id": "ep1",
                        "state": "connected",
                        "streams": {"audio_ssrcs": [1], "video_ssrcs": [2, 3]},
                        "media": {
                            "bytes_received": rx,
                            "bytes_sent": tx,
                            "state": "connected",
                            "rtt_ms": 3.0,
                        },
                        "bridge_channel": "websocket",
                    }
                ],
            }
        ]
    }


WS = {
    "enabled": True,
    "connections": 2,
    "stats": {"closed_events": 1},
    "settings": {"keepalive_mechanism": 1},
}


def raw(rx: int, tx: int) -> snapshot.Raw:
    return {
        "xmpp": {
            "/health": {"status": "ok"},
            "/admin/sessions": {"counts": {"tcp": 2}, "bound": 2, "sessions": [{"jid": "a@meet.jitsi/x"}]},
            "/admin/rooms": {"rooms": [{"jid": "room@muc.meet.jitsi", "occupants": [{"nick": "ada", "role": "participant", "affiliation": "none"}]}]},
            "/admin/ws/status": WS,
        },
        "jvb1": {"/colibri/stats": {"conferences": 1, "participants": 1, "stress_level": 0.1}, "/debug": debug(rx, tx), "/admin/ws/status": {**WS, "enabled": False}},
        "focus": {"/conferences": [{"room": "room@muc.meet.jitsi", "bridge": "jvb1", "colibri_id": "c1", "participants": [{}]}], "/bridges": [{"id": "jvb1", "state": "healthy"}], "/recordings": {"recorders": {}, "recordings": []}},
        "sip": {"/health": {"error": "sip: cannot reach"}, "/admin/ws/status": {"error": "x"}, "/calls": {"error": "404"}},
    }  # fmt: skip


def test_summarize_two_readings_gives_bitrates() -> None:
    snap = snapshot.summarize(KINDS, raw(2000, 4000), raw(1000, 1000), 2.0)
    (ep,) = snap["endpoints"]
    assert (ep["kbps_in"], ep["kbps_out"]) == (4.0, 12.0)
    assert ep["room"] == "room@muc.meet.jitsi" and len(ep["video_ssrcs"]) == 2
    up = {s["name"]: s["up"] for s in snap["services"]}
    assert up == {"xmpp": True, "jvb1": True, "focus": True, "sip": False}
    assert snap["xmpp"]["rooms"][0]["occupants"][0]["nick"] == "ada"
    assert [(w["service"], w["enabled"]) for w in snap["websockets"]] == [("xmpp", True), ("jvb1", False)]
    assert snap["sip_calls"] is None


def test_one_reading_has_no_bitrate_and_counter_resets_give_none() -> None:
    assert snapshot.summarize(KINDS, raw(10, 10))["endpoints"][0]["kbps_in"] is None
    reset = snapshot.summarize(KINDS, raw(10, 10), raw(5000, 5000), 1.0)
    assert reset["endpoints"][0]["kbps_in"] is None


def test_render_sections() -> None:
    snap = snapshot.summarize(KINDS, raw(2000, 4000), raw(1000, 1000), 2.0)
    text = snapshot.render(snap)
    for title in (
        "services",
        "conferences",
        "endpoints",
        "bridges",
        "sessions",
        "rooms",
        "websockets",
        "recorders",
        "sip",
    ):
        assert f"== {title}" in text
    assert "DOWN" in text and "room@muc.meet.jitsi" in text
    only = snapshot.render(snap, "endpoints")
    assert only.startswith("== endpoints") and "== bridges" not in only and "12.0" in only
    json.dumps(snap)  # what --json prints


def test_stack_description_from_the_launcher(tmp_path: Path) -> None:
    plan = build_plan(StackSettings(port_offset=100, bridges=2, run_dir=tmp_path))
    state = stack_state(plan)
    apis = {s["name"]: (s["kind"], s["api"]) for s in state["services"]}  # type: ignore[union-attr]
    assert apis["xmpp"] == ("xmpp", "http://127.0.0.1:5380")
    assert apis["jvb2"] == ("bridge", "http://127.0.0.1:8181")
    assert apis["focus"] == ("focus", "http://127.0.0.1:8988") and "nginx" not in apis
    (tmp_path / "stack.json").write_text(json.dumps(state))
    services = find_services(tmp_path)
    assert [s.name for s in select(services, "bridge", ws_only=True)] == ["jvb1", "jvb2"]
    # the SIP gateway's /sip-ws is administered like the others
    assert [s.name for s in select(services, None, ws_only=True)] == ["xmpp", "jvb1", "jvb2", "sip"]
    assert apis["sip"][0] == "sip" and [s.name for s in select(services, "sip", ws_only=True)] == ["sip"]
    with pytest.raises(OpsError, match="no service 'recorder'"):
        select(services, "recorder", ws_only=True)
    assert find_services(tmp_path, port_offset=0)[0] == Service("xmpp", "xmpp", "http://127.0.0.1:5280")
    (tmp_path / "stack.json").write_text("[1]")
    with pytest.raises(OpsError, match="not a stack description"):
        find_services(tmp_path)

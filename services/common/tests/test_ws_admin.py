"""The WebSocket admin core: Kamailio's websocket module semantics, time as an input."""

from __future__ import annotations

import json

import pytest

from services.common.ws_admin import (
    DUMP_LIMIT,
    ClosedEvent,
    Endpoint,
    RecordedTransport,
    State,
    WsAdmin,
    WsAdminError,
    WsAdminSettings,
)
from services.common.ws_admin_http import handle

LOCAL = Endpoint("ws", "127.0.0.1", 5280)


def open_conn(admin: WsAdmin, now: float, port: int = 40000, proto: str | None = "sip"):
    transport = RecordedTransport()
    conn = admin.register(
        transport, remote=Endpoint("ws", "127.0.0.1", port), local=LOCAL, now=now, sub_protocol=proto
    )
    return conn, transport


def test_defaults_are_kamailios() -> None:
    s = WsAdminSettings()
    assert (s.keepalive_mechanism, s.keepalive_timeout, s.keepalive_processes) == (1, 180, 1)
    assert (s.keepalive_interval, s.timer_interval, s.rm_delay_interval) == (1, 1, 5)
    assert s.enabled and s.cors_mode == 0


def test_settings_from_config_names_the_bad_key() -> None:
    s = WsAdminSettings.from_mapping({"keepalive-mechanism": "2", "keepalive_timeout": 30, "origins": "a,b"})
    assert s.keepalive_mechanism == 2 and s.keepalive_timeout == 30 and s.origins == ("a", "b")
    with pytest.raises(ValueError, match="keepalive_mechanism"):
        WsAdminSettings.from_mapping({"keepalive_mechanism": 3})
    with pytest.raises(ValueError, match="unknown WebSocket setting 'keepalive'"):
        WsAdminSettings.from_mapping({"keepalive": 1})
    with pytest.raises(ValueError, match="keepalive_processes"):
        WsAdminSettings.from_mapping({"keepalive_processes": 0})


def test_handshake_policy() -> None:
    admin = WsAdmin(
        "sip",
        WsAdminSettings(
            sub_protocols=("sip", "msrp"),
            origins=("https://meet.example",),
            hosts=("meet.example",),
            cors_mode=2,
        ),
    )
    ok = admin.check_handshake(
        host="meet.example:443", origin="https://meet.example", protocols=["msrp", "sip"]
    )
    assert ok.accepted and ok.subprotocol == "sip"
    assert ok.headers == (("Access-Control-Allow-Origin", "https://meet.example"),)
    assert (
        admin.check_handshake(host="evil.example", origin="https://meet.example", protocols=["sip"]).status
        == 403
    )
    assert admin.check_handshake(host=None, origin="https://meet.example", protocols=["sip"]).status == 403
    assert admin.check_handshake(host="meet.example", origin="https://evil", protocols=["sip"]).status == 403
    assert admin.check_handshake(host="meet.example", origin=None, protocols=["sip"]).status == 403
    assert (
        admin.check_handshake(host="meet.example", origin="https://meet.example", protocols=["xmpp"]).status
        == 400
    )
    admin.disable()
    refused = admin.check_handshake(host="meet.example", origin="https://meet.example", protocols=["sip"])
    assert refused.status == 503 and "disabled" in refused.reason
    admin.enable()
    assert admin.check_handshake(
        host="meet.example", origin="https://meet.example", protocols=["sip"]
    ).accepted
    assert admin.stats["failed_handshakes"] == 6


def test_open_policy_accepts_anything() -> None:
    decision = WsAdmin("x").check_handshake(host=None, origin=None)
    assert decision.accepted and decision.subprotocol is None and decision.headers == ()
    star = WsAdmin("x", WsAdminSettings(cors_mode=1)).check_handshake(host="h", origin=None)
    assert star.headers == (("Access-Control-Allow-Origin", "*"),)


def test_dump_line_is_kamailios() -> None:
    admin = WsAdmin("sip")
    conn, _ = open_conn(admin, 100.0, port=51000)
    out = admin.dump(103.5)
    assert out["connections"] == [
        f"{conn.id}: ws:127.0.0.1:51000 -> ws:127.0.0.1:5280 (state: OPEN, last used 3s ago, sub-protocol: sip)"
    ]
    assert out["info"] == {"wscounter": 1, "truncated": "no", "total": 1}
    admin.ping(conn.id)
    assert "awaiting Pong, last used" in admin.dump(104)["connections"][0]
    detail = admin.dump(104)["details"][0]
    assert detail["state"] == "OPEN" and detail["awaiting_pong"] and detail["last_used"] == 4


def test_dump_orders_and_first_fifty() -> None:
    admin = WsAdmin("x")
    conns = [open_conn(admin, float(i))[0] for i in range(60)]
    conns[0].received(90.0)
    conns[10].received(100.0)  # most recently used
    ids = lambda out: [int(line.split(":")[0]) for line in out["connections"]]  # noqa: E731
    by_hash = admin.dump(101)
    assert ids(by_hash) == [c.id for c in conns[:50]]
    assert by_hash["info"] == {"wscounter": DUMP_LIMIT, "truncated": "yes", "total": 60}
    desc = ids(admin.dump(101, "used_desc"))  # least recently used first
    assert desc[:3] == [conns[1].id, conns[2].id, conns[3].id] and len(desc) == 50
    asc = ids(admin.dump(101, "used_asc"))  # most recently used first
    assert asc[:3] == [conns[10].id, conns[0].id, conns[59].id]
    with pytest.raises(WsAdminError) as err:
        admin.dump(101, "newest")
    assert err.value.status == 400


def test_id_hash_order_wraps_at_1024_buckets_newest_first() -> None:
    admin = WsAdmin("x", first_id=1023)
    a, _ = open_conn(admin, 0)  # 1023 -> bucket 1023
    b, _ = open_conn(admin, 0)  # 1024 -> bucket 0
    c, _ = open_conn(admin, 0)  # 1025 -> bucket 1
    assert [d["id"] for d in admin.dump(1)["details"]] == [b.id, c.id, a.id]


def test_close_default_and_given_status() -> None:
    admin = WsAdmin("x")
    conn, transport = open_conn(admin, 0)
    assert admin.close(conn.id) == {"id": conn.id, "status": 1000, "reason": "Normal closure"}
    assert transport.sent == [("close", (1000, "Normal closure"))]
    assert conn.state is State.CLOSING and "state: CLOSING" in admin.dump(1)["connections"][0]
    with pytest.raises(WsAdminError) as again:
        admin.close(conn.id)
    assert again.value.status == 409
    other, t2 = open_conn(admin, 0)
    admin.close(other.id, 4000, "Because I say so")
    assert t2.sent == [("close", (4000, "Because I say so"))]
    for bad in (999, 1005, 1006, 5000):
        with pytest.raises(WsAdminError):
            admin.close(open_conn(admin, 0)[0].id, bad, "x")
    with pytest.raises(WsAdminError):
        admin.close(open_conn(admin, 0)[0].id, 4000, "x" * 124)
    with pytest.raises(WsAdminError) as missing:
        admin.close(424242)
    assert missing.value.status == 404


def test_ping_pong_commands() -> None:
    admin = WsAdmin("x", WsAdminSettings(ping_application_data=b"hi"))
    conn, transport = open_conn(admin, 0)
    admin.ping(conn.id)
    admin.pong(conn.id)
    assert transport.sent == [("ping", b"hi"), ("pong", b"hi")]
    assert conn.awaiting_pong
    conn.pong_received(b"other", 1)
    assert conn.awaiting_pong  # a Pong must echo our application data
    conn.pong_received(b"hi", 2)
    assert not conn.awaiting_pong and conn.last_used == 2


def test_keepalive_ping_then_drop() -> None:
    events: list[ClosedEvent] = []
    admin = WsAdmin("x", WsAdminSettings(keepalive_timeout=10, rm_delay_interval=2), on_closed=events.append)
    quiet, tq = open_conn(admin, 0)
    chatty, tc = open_conn(admin, 0)
    answering, ta = open_conn(admin, 0)
    for t in range(1, 11):
        chatty.received(float(t))
        admin.tick(float(t))
    assert tq.sent == [] and tc.sent == []
    admin.tick(11.0)  # quiet and answering idle > 10 s: a Ping each
    assert tq.sent == [("ping", WsAdminSettings().ping_application_data)]
    assert ta.sent == tq.sent and tc.sent == []
    answering.pong_received(WsAdminSettings().ping_application_data, 11.5)
    admin.tick(12.0)  # quiet did not answer: dropped without a closing handshake
    assert tq.sent[-1] == ("abort", None) and ta.sent == tq.sent[:1]
    assert quiet.state is State.REMOVING and quiet.id not in admin.connections
    assert all(d["id"] != quiet.id for d in admin.dump(12)["details"])
    admin.tick(13.0)
    assert events == []  # removed after rm_delay_interval, then the event
    admin.tick(14.0)
    assert [(e.id, e.closed_by) for e in events] == [(quiet.id, "keepalive")]
    assert admin.closed_counts == {"keepalive": 1}


def test_keepalive_pong_mechanism_never_drops_for_silence() -> None:
    admin = WsAdmin("x", WsAdminSettings(keepalive_mechanism=2, keepalive_timeout=5))
    conn, transport = open_conn(admin, 0)
    for t in range(6, 10):
        admin.tick(float(t))
    assert [kind for kind, _ in transport.sent] == ["pong"] * 4
    assert conn.state is State.OPEN and not conn.awaiting_pong


def test_keepalive_none() -> None:
    admin = WsAdmin("x", WsAdminSettings(keepalive_mechanism=0, keepalive_timeout=1))
    conn, transport = open_conn(admin, 0)
    admin.tick(1000.0)
    admin.tick(2000.0)
    assert transport.sent == [] and conn.state is State.OPEN


def test_keepalive_processes_share_connections_out() -> None:
    admin = WsAdmin("x", WsAdminSettings(keepalive_processes=2, keepalive_timeout=1))
    pairs = [open_conn(admin, 0) for _ in range(4)]
    admin.tick(5.0)
    assert all(t.sent and t.sent[0][0] == "ping" for _, t in pairs)


def test_closing_connection_that_never_answers_is_dropped_by_keepalive() -> None:
    admin = WsAdmin("x", WsAdminSettings(keepalive_timeout=3, rm_delay_interval=0))
    events: list[ClosedEvent] = []
    admin.on_closed.append(events.append)
    conn, transport = open_conn(admin, 0)
    admin.close(conn.id, 4001, "bye")
    admin.tick(4.0)
    assert transport.sent[-1] == ("abort", None)
    admin.tick(5.0)
    assert events[0].closed_by == "local" and (events[0].code, events[0].reason) == (4001, "bye")


def test_remote_close_and_lost_run_the_event_once() -> None:
    events: list[ClosedEvent] = []
    admin = WsAdmin("x", WsAdminSettings(rm_delay_interval=0), on_closed=events.append)
    conn, _ = open_conn(admin, 0)
    conn.close_received(1001, "going", 1.0)
    conn.lost(1.5)
    conn.lost(1.6)
    admin.tick(2.0)
    admin.tick(3.0)
    assert [(e.closed_by, e.code, e.reason) for e in events] == [("remote", 1001, "going")]
    assert admin.stats["remote_closed_connections"] == 1


def test_a_failing_hook_does_not_stop_the_timer() -> None:
    def boom(event: ClosedEvent) -> None:
        raise RuntimeError("bad hook")

    seen: list[int] = []
    admin = WsAdmin("x", WsAdminSettings(rm_delay_interval=0), on_closed=boom)
    admin.on_closed.append(lambda e: seen.append(e.id))
    conn, _ = open_conn(admin, 0)
    conn.lost(1)
    admin.tick(2)
    assert seen == [conn.id]


def test_http_commands() -> None:
    admin = WsAdmin("x")
    conn, transport = open_conn(admin, 0)
    status, body = handle(admin, "GET", "/admin/ws/dump", {"order": "used_asc"}, b"", 1)
    assert status == 200 and body["order"] == "used_asc" and body["info"]["wscounter"] == 1
    assert handle(admin, "GET", "/admin/ws/dump", {"order": "bogus"}, b"", 1)[0] == 400
    assert handle(admin, "POST", f"/admin/ws/ping/{conn.id}", {}, b"", 1)[0] == 200
    assert handle(admin, "POST", f"/admin/ws/pong/{conn.id}", {}, b"", 1)[0] == 200
    assert handle(admin, "POST", "/admin/ws/ping/x1", {}, b"", 1)[0] == 400
    assert handle(admin, "POST", "/admin/ws/ping/99", {}, b"", 1)[0] == 404
    assert handle(admin, "POST", "/admin/ws/disable", {}, b"", 1) == (200, {"enabled": False})
    assert handle(admin, "GET", "/admin/ws/status", {}, b"", 1)[1]["enabled"] is False
    assert handle(admin, "POST", "/admin/ws/enable", {}, b"", 1) == (200, {"enabled": True})
    for bad in (b"[1]", b"{", b'{"status": "4000", "reason": "x"}', b'{"status": 4000}', b"x" * 5000):
        assert handle(admin, "POST", f"/admin/ws/close/{conn.id}", {}, bad, 1)[0] in (400, 413)
    body_ok = json.dumps({"status": 4000, "reason": "maintenance"}).encode()
    assert handle(admin, "POST", f"/admin/ws/close/{conn.id}", {}, body_ok, 1)[0] == 200
    assert transport.sent[-1] == ("close", (4000, "maintenance"))
    assert handle(admin, "DELETE", "/admin/ws/dump", {}, b"", 1)[0] == 404

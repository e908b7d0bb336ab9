"""A snapshot of the running stack from its services' private APIs, and its text form.

Pure: :func:`summarize` turns the raw answers (``{service name: {path: JSON}}``) of one or two
readings into the snapshot ``parley stats --json`` prints; bitrates come from the difference of
two readings of the bridges' byte counters. :func:`render` is the text ``parley stats`` prints.
"""

from __future__ import annotations

from typing import Any

PATHS: dict[str, tuple[str, ...]] = {
    "xmpp": ("/health", "/admin/sessions", "/admin/rooms", "/admin/ws/status"),
    "bridge": ("/colibri/stats", "/debug", "/admin/ws/status"),
    "focus": ("/conferences", "/bridges", "/recordings"),
    "recorder": ("/recordings",),
    "sip": ("/health", "/admin/ws/status", "/calls"),
    "web": ("/health",),
}
"""What each kind of service is asked (read-only GETs)."""

Raw = dict[str, dict[str, Any]]


def _ok(value: Any) -> bool:
    return not (isinstance(value, dict) and set(value) == {"error"})


def _kbps(now: int, before: int | None, elapsed: float | None) -> float | None:
    if before is None or not elapsed or elapsed <= 0 or now < before:
        return None
    return round((now - before) * 8 / elapsed / 1000, 1)


def _endpoint_bytes(debug: Any) -> dict[tuple[str, str], tuple[int, int]]:
    out: dict[tuple[str, str], tuple[int, int]] = {}
    if not _ok(debug) or not isinstance(debug, dict):
        return out
    for conf in debug.get("conferences", []):
        for ep in conf.get("endpoints", []):
            media = ep.get("media") or {}
            out[(conf["id"], ep["id"])] = (
                int(media.get("bytes_received", 0)),
                int(media.get("bytes_sent", 0)),
            )
    return out


def summarize(
    kinds: dict[str, str], raw: Raw, previous: Raw | None = None, elapsed: float | None = None
) -> dict[str, Any]:
    """The snapshot: services (up or their error), conferences (focus's view joined with each
    bridge's endpoints, streams and bitrates), bridges and their load, XMPP sessions and rooms,
    WebSocket servers, recorders and SIP calls."""
    snap: dict[str, Any] = {
        "services": [],
        "conferences": [],
        "endpoints": [],
        "bridges": [],
        "xmpp": {},
        "websockets": [],
        "recorders": {},
        "recordings": [],
        "sip_calls": None,
    }
    for name, kind in kinds.items():
        answers = raw.get(name, {})
        # a missing optional endpoint (a gateway without /calls) is not a problem
        fatal = [
            f"{path}: {value['error']}"
            for path, value in answers.items()
            if not _ok(value) and path != "/calls"
        ]
        asked = [path for path in answers if path != "/calls"]
        snap["services"].append(
            {"name": name, "kind": kind, "up": len(fatal) < len(asked) or not asked, "errors": fatal}
        )
        ws = answers.get("/admin/ws/status")
        if ws is not None and _ok(ws):
            snap["websockets"].append(
                {"service": name, "enabled": ws["enabled"], "connections": ws["connections"],
                 "closed": ws["stats"].get("closed_events", 0), "keepalive_mechanism": ws["settings"]["keepalive_mechanism"]}
            )  # fmt: skip
        if kind == "bridge":
            _bridge(snap, name, answers, (previous or {}).get(name, {}), elapsed)
        elif kind == "focus":
            confs = answers.get("/conferences")
            if _ok(confs) and isinstance(confs, list):
                snap["conferences"] = confs
            bridges = answers.get("/bridges")
            if _ok(bridges) and isinstance(bridges, list):
                snap["focus_bridges"] = bridges
            recs = answers.get("/recordings")
            if _ok(recs) and isinstance(recs, dict):
                snap["recorders"] = recs.get("recorders", {})
                snap["recordings"] = recs.get("recordings", [])
        elif kind == "xmpp":
            sessions, rooms = answers.get("/admin/sessions"), answers.get("/admin/rooms")
            if _ok(sessions) and isinstance(sessions, dict):
                snap["xmpp"]["counts"] = sessions.get("counts", {})
                snap["xmpp"]["bound"] = sessions.get("bound", 0)
                snap["xmpp"]["sessions"] = sessions.get("sessions", [])
            if _ok(rooms) and isinstance(rooms, dict):
                snap["xmpp"]["rooms"] = rooms.get("rooms", [])
        elif kind == "sip":
            calls = answers.get("/calls")
            if calls is not None and _ok(calls):
                snap["sip_calls"] = calls
    # the focus knows each bridge conference's room
    rooms = {c.get("colibri_id"): c.get("room") for c in snap["conferences"] if c.get("colibri_id")}
    for e in snap["endpoints"]:
        e["room"] = rooms.get(e["conference"]) or e["conference_name"]
    return snap


def _bridge(
    snap: dict[str, Any], name: str, answers: dict[str, Any], before: dict[str, Any], elapsed: float | None
) -> None:
    stats, debug = answers.get("/colibri/stats"), answers.get("/debug")
    if _ok(stats) and isinstance(stats, dict):
        snap["bridges"].append(
            {
                "service": name,
                "conferences": stats.get("conferences"),
                "participants": stats.get("participants", stats.get("endpoints")),
                "stress_level": stats.get("stress_level"),
                "bit_rate_download": stats.get("bit_rate_download"),
                "bit_rate_upload": stats.get("bit_rate_upload"),
                "packet_rate_download": stats.get("packet_rate_download"),
                "packet_rate_upload": stats.get("packet_rate_upload"),
                "drain": stats.get("drain"),
            }
        )
    if not (_ok(debug) and isinstance(debug, dict)):
        return
    previous = _endpoint_bytes(before.get("/debug"))
    for conf in debug.get("conferences", []):
        for ep in conf.get("endpoints", []):
            media = ep.get("media") or {}
            streams = ep.get("streams") or {}
            rx, tx = int(media.get("bytes_received", 0)), int(media.get("bytes_sent", 0))
            old = previous.get((conf["id"], ep["id"]))
            snap["endpoints"].append(
                {
                    "bridge": name,
                    "conference": conf["id"],
                    "conference_name": conf.get("name"),
                    "endpoint": ep["id"],
                    "state": media.get("state", ep.get("state")),
                    "audio_ssrcs": streams.get("audio_ssrcs", []),
                    "video_ssrcs": streams.get("video_ssrcs", []),
                    "bridge_channel": ep.get("bridge_channel"),
                    "bytes_received": rx,
                    "bytes_sent": tx,
                    "kbps_in": _kbps(rx, old[0] if old else None, elapsed),
                    "kbps_out": _kbps(tx, old[1] if old else None, elapsed),
                    "rtt_ms": media.get("rtt_ms"),
                }
            )


def _table(rows: list[list[Any]], header: list[str]) -> list[str]:
    cells = [[("-" if v is None else str(v)) for v in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def render(snap: dict[str, Any], section: str | None = None) -> str:
    """The text of a snapshot, or of one section of it."""
    parts: list[str] = []

    def add(title: str, lines: list[str]) -> None:
        if section in (None, title):
            parts.append(f"== {title}")
            parts.extend(lines or ["(none)"])

    add(
        "services",
        _table(
            [
                [s["name"], s["kind"], "up" if s["up"] else "DOWN", "; ".join(s["errors"])[:80]]
                for s in snap["services"]
            ],
            ["name", "kind", "state", "problems"],
        ),
    )
    add(
        "conferences",
        _table(
            [
                [
                    c.get("room"),
                    c.get("bridge"),
                    c.get("colibri_id"),
                    len(c.get("participants", [])),
                    c.get("moves"),
                ]
                for c in snap["conferences"]
            ],
            ["room", "bridge", "colibri id", "participants", "moves"],
        ),
    )
    add("endpoints", _table(
        [[e["room"] or e["conference"], e["endpoint"], e["bridge"], e["state"], len(e["audio_ssrcs"]), len(e["video_ssrcs"]), e["kbps_in"], e["kbps_out"], e["bridge_channel"]] for e in snap["endpoints"]],
        ["conference", "endpoint", "bridge", "state", "audio", "video", "kbps in", "kbps out", "channel"],
    ))  # fmt: skip
    loads = {b["id"]: b for b in snap.get("focus_bridges", [])}
    add("bridges", _table(
        [[b["service"], b["conferences"], b["participants"], b["stress_level"], loads.get(b["service"], {}).get("state"), b["bit_rate_download"], b["bit_rate_upload"], b["drain"]] for b in snap["bridges"]],
        ["bridge", "conferences", "participants", "stress", "focus sees", "kbps down", "kbps up", "drain"],
    ))  # fmt: skip
    x = snap["xmpp"]
    sessions = _table(
        [[s.get("jid"), s.get("transport"), s.get("peer"), s.get("age"), s.get("stanzas_in")] for s in x.get("sessions", [])],
        ["jid", "transport", "peer", "age s", "stanzas in"],
    )  # fmt: skip
    add("sessions", [f"connections {x.get('counts', {})}, bound sessions {x.get('bound', 0)}", *sessions])
    add(
        "rooms",
        _table(
            [
                [r["jid"], len(r["occupants"]), ", ".join(o["nick"] for o in r["occupants"])[:60]]
                for r in x.get("rooms", [])
            ],
            ["room", "occupants", "nicks"],
        ),
    )
    add(
        "websockets",
        _table(
            [
                [
                    w["service"],
                    "yes" if w["enabled"] else "NO",
                    w["connections"],
                    w["closed"],
                    w["keepalive_mechanism"],
                ]
                for w in snap["websockets"]
            ],
            ["server", "accepting", "connections", "closed", "keepalive"],
        ),
    )
    add("recorders", _table(
        [[n, r.get("healthy"), r.get("busy"), r.get("active")] for n, r in snap["recorders"].items()]
        + [[f"  {r.get('session_id')}", r.get("room"), r.get("mode"), r.get("status")] for r in snap["recordings"]],
        ["recorder / recording", "healthy / room", "busy / mode", "active / status"],
    ))  # fmt: skip
    calls = snap["sip_calls"]
    add(
        "sip",
        ["(no SIP gateway API)"]
        if calls is None
        else [str(c) for c in (calls if isinstance(calls, list) else calls.get("calls", [calls]))],
    )
    return "\n".join(parts)

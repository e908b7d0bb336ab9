"""``parley ws ...``: Kamailio's ``ws.*`` RPC commands against every WebSocket server of the stack
(broker ``/xmpp-websocket``, bridges ``/colibri-ws``, SIP gateway ``/sip-ws``), over their
private ``/admin/ws/`` APIs (services/common/ws_admin_http.py)."""

from __future__ import annotations

from typing import Any

from services.common.ws_admin import ORDERS

from .stack import Api, OpsError, Service, select

COMMANDS = ("dump", "close", "ping", "pong", "disable", "enable", "status")


def render_dump(service: Service, dump: dict[str, Any]) -> str:
    """``kamcmd ws.dump``'s layout, one block per server."""
    lines = [
        f"{service.name} ({service.kind}, new connections {'enabled' if dump.get('enabled') else 'DISABLED'}) {{"
    ]
    lines.append("\tconnections: {")
    lines += [f"\t\t{line}" for line in dump.get("connections", [])]
    lines.append("\t}")
    info = dump.get("info", {})
    lines += [
        "\tinfo: {",
        f"\t\twscounter: {info.get('wscounter', 0)}",
        f"\t\ttruncated: {info.get('truncated', 'no')}",
        "\t}",
        "}",
    ]
    return "\n".join(lines)


def run(api: Api, services: list[Service], command: str, args: list[str], *, service: str | None = None,
        order: str | None = None, as_json: bool = False) -> tuple[str, Any]:  # fmt: skip
    """One ``ws`` command: (text for the operator, JSON-able result)."""
    targets = select(services, service, ws_only=True)
    if command == "dump":
        if order is not None and order not in ORDERS:
            raise OpsError(f"order must be one of {', '.join(ORDERS)}")
        params = {"order": order} if order else {}
        results = {s.name: api.get(s, "/admin/ws/dump", **params) for s in targets}
        text = "\n".join(render_dump(s, results[s.name]) for s in targets)
        return text, results
    if command == "status":
        results = {s.name: api.get(s, "/admin/ws/status") for s in targets}
        text = "\n".join(
            f"{name}: {'enabled' if r['enabled'] else 'DISABLED'}, {r['connections']} connections, "
            f"keepalive_mechanism {r['settings']['keepalive_mechanism']}, keepalive_timeout "
            f"{r['settings']['keepalive_timeout']:g} s"
            for name, r in results.items()
        )
        return text, results
    if command in ("disable", "enable"):
        results = {s.name: api.post(s, f"/admin/ws/{command}") for s in targets}
        return "\n".join(f"{name}: new WebSocket connections {command}d" for name in results), results
    if command in ("close", "ping", "pong"):
        if not args or not args[0].isdigit():
            raise OpsError(f"usage: ws {command} ID" + (" [STATUS REASON]" if command == "close" else ""))
        conn_id = int(args[0])
        body = None
        if command == "close" and len(args) > 1:
            if len(args) < 3 or not args[1].isdigit():
                raise OpsError("usage: ws close ID [STATUS REASON]")
            body = {"status": int(args[1]), "reason": " ".join(args[2:])}
        target = _owner(api, targets, conn_id)
        result = api.post(target, f"/admin/ws/{command}/{conn_id}", body)
        if command == "close":
            return f"{target.name}: closing {conn_id} with {result['status']} {result['reason']!r}", result
        return f"{target.name}: {command} sent on {conn_id}", result
    raise OpsError(f"unknown ws command {command!r} (one of {', '.join(COMMANDS)})")


def _owner(api: Api, targets: list[Service], conn_id: int) -> Service:
    """The one server with connection ``conn_id`` (ids are per server: ``--service`` picks one)."""
    if len(targets) == 1:
        return targets[0]
    owners = []
    for s in targets:
        try:
            details = api.get(s, "/admin/ws/dump").get("details", [])
        except OpsError:
            continue
        if any(d.get("id") == conn_id for d in details):
            owners.append(s)
    if len(owners) == 1:
        return owners[0]
    if not owners:
        raise OpsError(f"no WebSocket connection {conn_id} on {', '.join(s.name for s in targets)}")
    raise OpsError(f"connection {conn_id} exists on {', '.join(s.name for s in owners)}: give --service")

"""The I/O around :mod:`services.common.ws_admin`: its clock, its HTTP API, its metrics.

Every WebSocket server exposes the same commands on its *private* HTTP API (never routed by
nginx), under ``/admin/ws/``:

=========================================  =====================================================
``GET  /admin/ws/dump[?order=used_desc]``   ``ws.dump`` (``id_hash``, ``used_desc``, ``used_asc``)
``GET  /admin/ws/status``                   enabled, counts, settings, statistics
``POST /admin/ws/close/<id>``               ``ws.close`` (JSON body ``{"status": 4000, "reason": "…"}``
                                            optional; default 1000 "Normal closure")
``POST /admin/ws/ping/<id>``                ``ws.ping``
``POST /admin/ws/pong/<id>``                ``ws.pong``
``POST /admin/ws/disable``                  ``ws.disable``
``POST /admin/ws/enable``                   ``ws.enable``
=========================================  =====================================================

:func:`handle` maps one request onto the core and returns ``(status, JSON object)``; each service
routes ``/admin/ws/...`` to it with its own HTTP stack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from .ws_admin import WsAdmin, WsAdminError

log = logging.getLogger("ws.admin")

PREFIX = "/admin/ws/"
MAX_BODY = 4096


def handle(
    admin: WsAdmin, method: str, path: str, query: Mapping[str, str], body: bytes, now: float
) -> tuple[int, dict[str, Any]]:
    """One ``/admin/ws/...`` request: ``(HTTP status, JSON object)``."""
    rest = path[len(PREFIX) :] if path.startswith(PREFIX) else path.strip("/")
    parts = [p for p in rest.split("/") if p]
    try:
        if parts == ["dump"] and method in ("GET", "POST"):
            return 200, admin.dump(now, query.get("order") or None)
        if parts == ["status"] and method == "GET":
            return 200, admin.status()
        if parts in (["disable"], ["enable"]) and method == "POST":
            return 200, admin.disable() if parts[0] == "disable" else admin.enable()
        if len(parts) == 2 and parts[0] in ("close", "ping", "pong") and method == "POST":
            conn_id = _connection_id(parts[1])
            if parts[0] == "ping":
                return 200, admin.ping(conn_id)
            if parts[0] == "pong":
                return 200, admin.pong(conn_id)
            status, reason = _close_arguments(body)
            return 200, admin.close(conn_id, status, reason)
    except WsAdminError as exc:
        return exc.status, {"error": str(exc)}
    return 404, {"error": f"unknown WebSocket admin command {method} {path[:100]!r}"}


def _connection_id(text: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise WsAdminError(400, f"bad connection ID {text[:20]!r}")
    return int(text)


def _close_arguments(body: bytes) -> tuple[int | None, str | None]:
    if not body.strip():
        return None, None
    if len(body) > MAX_BODY:
        raise WsAdminError(413, "request body too large")
    try:
        args = json.loads(body)
    except ValueError as exc:
        raise WsAdminError(400, f"malformed JSON: {exc}") from None
    if not isinstance(args, dict):
        raise WsAdminError(400, "expected a JSON object {status, reason}")
    status, reason = args.get("status"), args.get("reason")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise WsAdminError(400, "status must be an integer")
    if reason is not None and not isinstance(reason, str):
        raise WsAdminError(400, "reason must be a string")
    if (status is None) != (reason is None):
        raise WsAdminError(400, "give both status and reason, or neither")
    return status, reason


async def run_ticks(admin: WsAdmin, clock: Callable[[], float] = time.monotonic) -> None:
    """Drive the core's keep-alive and removal timer until cancelled."""
    while True:
        await asyncio.sleep(admin.settings.tick_interval)
        try:
            admin.tick(clock())
        except Exception:  # a bug in one run must not stop the keep-alive for good
            log.exception("%s: WebSocket timer run failed", admin.server)


class WsAdminCollector(Collector):
    """Prometheus metrics of WebSocket servers: ``parley_ws_connections``,
    ``parley_ws_closed_total{closed_by}``, ``parley_ws_handshakes_total{result}``, ``parley_ws_enabled``."""

    def __init__(self, admins: Callable[[], Iterable[WsAdmin]]) -> None:
        self.admins = admins

    def collect(self) -> Iterator[Any]:
        conns = GaugeMetricFamily("parley_ws_connections", "Open WebSocket connections", labels=["server"])
        enabled = GaugeMetricFamily(
            "parley_ws_enabled", "1 while new WebSocket connections are accepted", labels=["server"]
        )
        closed = CounterMetricFamily(
            "parley_ws_closed",
            "WebSocket connections closed (the closed event)",
            labels=["server", "closed_by"],
        )
        shakes = CounterMetricFamily(
            "parley_ws_handshakes", "WebSocket handshakes", labels=["server", "result"]
        )
        for admin in self.admins():
            conns.add_metric([admin.server], len(admin.connections))
            enabled.add_metric([admin.server], 1.0 if admin.enabled else 0.0)
            for by in ("remote", "local", "keepalive", "lost"):
                closed.add_metric([admin.server, by], admin.closed_counts.get(by, 0))
            shakes.add_metric([admin.server, "accepted"], admin.stats["successful_handshakes"])
            shakes.add_metric([admin.server, "refused"], admin.stats["failed_handshakes"])
        yield from (conns, enabled, closed, shakes)


_default_admins: weakref.WeakSet[WsAdmin] = weakref.WeakSet()
_default_registered = False


def export_metrics(admin: WsAdmin, registry: CollectorRegistry | None = None) -> None:
    """Publish ``admin``'s metrics: in ``registry`` (its own collector), or in the process's
    default registry (one collector for every admin of the process)."""
    global _default_registered
    if registry is not None:
        registry.register(WsAdminCollector(lambda: [admin]))
        return
    _default_admins.add(admin)
    if not _default_registered:
        REGISTRY.register(WsAdminCollector(lambda: sorted(_default_admins, key=lambda a: a.server)))
        _default_registered = True

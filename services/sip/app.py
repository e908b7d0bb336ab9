"""Wiring: config -> SIP core, transports (UDP, TCP, WebSocket), media, HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aioice.ice

from services.common import ws_admin_http
from services.common.runtime import freeze_heap, serve_http, stop_http
from services.common.ws_admin import ClosedEvent, WsAdmin, WsAdminSettings

from .config import SipSettings
from .core import CoreSettings, SipCore
from .digest import DigestAuth
from .flood import SourceLimiter
from .http_api import create_app
from .meeting import MeetingMedia
from .transport import SipGateway

log = logging.getLogger("sip")


def core_settings(settings: SipSettings) -> CoreSettings:
    lim = settings.limits
    return CoreSettings(
        domains=tuple(d.lower() for d in settings.domains), realm=settings.realm, host=settings.public_host,
        register_auth=settings.register_auth, invite_auth=settings.invite_auth,
        min_expires=lim.min_expires, max_expires=lim.max_expires, default_expires=lim.default_expires,
        max_calls=lim.max_calls, max_transactions=lim.max_transactions,
        max_auth_failures=lim.max_auth_failures, offer_timeout=lim.offer_timeout,
    )


def ws_settings(settings: SipSettings) -> WsAdminSettings:
    ws = settings.websocket
    return WsAdminSettings(
        keepalive_mechanism=ws.keepalive_mechanism, keepalive_timeout=ws.keepalive_timeout,
        keepalive_processes=ws.keepalive_processes, keepalive_interval=ws.keepalive_interval,
        timer_interval=ws.timer_interval, rm_delay_interval=ws.rm_delay_interval,
        sub_protocols=("sip", "msrp"), origins=tuple(ws.origins), hosts=tuple(ws.hosts),
    )


def _closed(event: ClosedEvent) -> None:
    log.info("WebSocket %d from %s closed by %s (%s %s) after %.1fs", event.id, event.remote, event.closed_by,
             event.code, event.reason[:60], event.duration)


async def main(settings: SipSettings) -> None:
    if settings.media.ice_host_addresses:
        addresses = list(settings.media.ice_host_addresses)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: addresses  # type: ignore[assignment]
    core = SipCore(core_settings(settings), DigestAuth(settings.realm, settings.account_map))
    admin = WsAdmin("sip", ws_settings(settings), on_closed=_closed)
    ws_admin_http.export_metrics(admin)
    media = MeetingMedia(settings)
    gateway = SipGateway(
        core, media, admin, max_message_size=settings.limits.max_message_size,
        max_headers=settings.limits.max_headers, max_tcp_connections=settings.tcp.max_connections,
        tcp_idle_timeout=settings.tcp.idle_timeout, trusted_proxies=settings.websocket.trusted_proxies,
        sources=SourceLimiter(settings.limits.requests_per_second, settings.limits.requests_burst,
                              settings.limits.request_exempt_networks),
    )
    media.hangup = gateway.hangup
    if settings.udp.port:
        await gateway.start_udp(settings.udp.host, settings.udp.port)
    if settings.tcp.port:
        await gateway.start_tcp(settings.tcp.host, settings.tcp.port)
    await gateway.start_websocket(settings.websocket.host, settings.websocket.port)
    media.msrp_authority = f"{settings.public_host}:{gateway.ports['ws']}"
    core.settings.ports = dict(gateway.ports)
    gateway.msrp_bind_timeout = settings.msrp.bind_timeout
    server = await serve_http(create_app(core, admin, gateway.ports, media.view), settings.http.host,
                              settings.http.port)
    log.info("SIP gateway for %s: HTTP API on %s:%d", ", ".join(settings.domains), settings.http.host,
             settings.http.port)
    timers = asyncio.ensure_future(gateway.run_timers())
    ticks = asyncio.ensure_future(ws_admin_http.run_ticks(admin))
    freeze_heap()
    try:
        await asyncio.Event().wait()
    finally:
        for task in (timers, ticks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await gateway.close()
        await media.close()
        await stop_http(server)

"""The bridge's private HTTP API (``videobridge.http-servers.private``, loopback by default; for the
focus and the operator only): Colibri REST, ``/colibri/stats``, ``/about/health``,
``/about/version``, ``/metrics``, ``/debug``, drain, shutdown and WebSocket administration.

Everything the routes act on is given to :class:`PrivateApi`'s constructor; the routes hold no
state of their own. The public HTTP server (``/colibri-ws/...``, ``/about/health``) is
:class:`~services.bridge.ws.server.ColibriWebSocketServer`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Gauge

from services.bridge.channel.datachannel import DataChannelTransport
from services.bridge.channel.dispatch import BridgeChannels
from services.bridge.colibri.conferences import ConferenceBook, render
from services.bridge.colibri.rest import colibri_router, error
from services.bridge.colibri.service import ColibriService
from services.bridge.media.engine import MediaEngine
from services.bridge.presence import BreweryPresence
from services.bridge.stats import BridgeStatus
from services.bridge.ws.server import ColibriWebSocketServer
from services.common import ws_admin_http
from services.common.runtime import metrics_body

log = logging.getLogger("bridge")

_GAUGES = {
    key: Gauge(f"parley_bridge_{key}", help_text)
    for key, help_text in {
        "conferences": "Conferences on this bridge",
        "endpoints": "Endpoints on this bridge",
        "largest_conference": "Endpoints in the largest conference",
        "stress_level": "Packet rate as a fraction of the configured maximum",
        "packet_rate_download": "RTP/RTCP packets per second received",
        "packet_rate_upload": "RTP/RTCP packets per second sent",
        "total_ice_succeeded": "Endpoints whose ICE/DTLS connected since start",
        "total_ice_failed": "Endpoints whose ICE/DTLS failed since start",
        "colibri_web_socket_connections": "Open Colibri WebSocket connections",
    }.items()
}


def _rss_bytes() -> int | None:
    """The process's resident set now (Linux), for /debug."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class PrivateApi:
    def __init__(
        self,
        *,
        server_id: str,
        version: str,
        status: BridgeStatus,
        colibri: ColibriService,
        book: ConferenceBook,
        engine: MediaEngine,
        ws: ColibriWebSocketServer,
        data_channels: DataChannelTransport,
        channels: BridgeChannels,
        presence: BreweryPresence | None,
        stats: Callable[[], dict[str, Any]],
        shutdown_requested: asyncio.Event,
    ) -> None:
        self.server_id = server_id
        self.version = version
        self.status = status
        self.colibri = colibri
        self.book = book
        self.engine = engine
        self.ws = ws
        self.data_channels = data_channels
        self.channels = channels
        self.presence = presence
        self.stats = stats
        self.shutdown_requested = shutdown_requested

    # --- operator actions --------------------------------------------------------------------------

    def set_drain(self, drain: bool) -> None:
        self.status.drain = drain
        log.info("drain %s", "enabled" if drain else "disabled")
        if self.presence:
            self.presence.publish_now()

    def shutdown(self, graceful: bool) -> None:
        if graceful:
            self.status.graceful_shutdown = True
            log.info("graceful shutdown requested: exiting when the last conference ends")
        else:
            self.status.shutting_down = True
            log.info("shutdown requested")
            self.shutdown_requested.set()
        if self.presence:
            self.presence.publish_now()

    # --- views -------------------------------------------------------------------------------------

    def debug(self) -> dict[str, Any]:
        media = {(d.conference_id, d.endpoint_id): d for d in self.engine.stats().endpoint_details}
        conferences = []
        for conf in self.book.conferences.values():
            endpoints = []
            for ep in conf.endpoints.values():
                detail = media.get((conf.id, ep.id))
                sources = ep.sources()
                endpoints.append(
                    {
                        "id": ep.id,
                        "state": ep.state,
                        "bundle": ep.bundle_id,
                        "remote_transport_set": ep.remote is not None,
                        "ice_ufrag": ep.local.ufrag if ep.local else None,
                        "streams": {
                            "audio_ssrcs": sources.audio_ssrcs,
                            "video_ssrcs": sources.video_ssrcs,
                            "ssrc_groups": sources.ssrc_groups,
                        },
                        "media": None
                        if detail is None
                        else {
                            k: v for k, v in vars(detail).items() if k not in ("conference_id", "endpoint_id")
                        },
                        "web_socket": (conf.id, ep.id) in self.ws.by_endpoint,
                        "data_channel": self.data_channels.is_open(conf.id, ep.id),
                        "bridge_channel": self.channels.transport_of(conf.id, ep.id),
                    }
                )
            conferences.append(
                {"id": conf.id, "name": conf.name, "endpoints": endpoints, "colibri": render(conf).to_json()}
            )
        return {
            "server_id": self.server_id,
            "status": vars(self.status),
            "conferences": conferences,
            "web_sockets": self.ws.dump(),
            "data_channels": self.data_channels.dump(),
            "stats": self.stats(),
            "threads": sorted(thread.name for thread in threading.enumerate()),
            "rss_bytes": _rss_bytes(),
            "xmpp": None
            if self.presence is None
            else {
                "sessions": self.presence.connections,
                "joined": self.presence.joined,
                "stanzas_refused": self.presence.stanzas_refused,
            },
        }

    # --- routes ------------------------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI(title="Parley bridge (private)", docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(colibri_router(self.colibri, self.status.refusal))

        @app.get("/colibri/stats")
        async def stats() -> JSONResponse:
            return JSONResponse(self.stats())

        @app.get("/about/health")
        async def health() -> Response:
            problem = self.status.problem()
            if problem:
                return JSONResponse({"error": problem}, status_code=503)
            return Response(status_code=200)

        @app.get("/about/version")
        async def about_version() -> JSONResponse:
            return JSONResponse(
                {
                    "name": "parley-bridge",
                    "version": self.version,
                    "os": f"{platform.system()} {platform.release()}",
                }
            )

        @app.get("/metrics")
        async def metrics() -> Response:
            current = self.stats()
            for key, gauge in _GAUGES.items():
                gauge.set(float(current[key]))
            body, content_type = metrics_body()
            return Response(body, media_type=content_type)

        @app.get("/debug")
        async def debug() -> JSONResponse:
            return JSONResponse(self.debug())

        @app.get("/colibri/drain")
        async def drain_state() -> JSONResponse:
            return JSONResponse({"drain": self.status.drain})

        @app.post("/colibri/drain/enable")
        async def drain_enable() -> JSONResponse:
            self.set_drain(True)
            return JSONResponse({"drain": True})

        @app.post("/colibri/drain/disable")
        async def drain_disable() -> JSONResponse:
            self.set_drain(False)
            return JSONResponse({"drain": False})

        @app.post("/colibri/shutdown")
        async def shutdown(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw or b"{}")
            except ValueError as exc:
                return error(400, f"malformed JSON: {exc}")
            if not isinstance(body, dict):
                return error(400, "expected a JSON object", "graceful-shutdown")
            graceful = body.get("graceful-shutdown", False)
            if isinstance(graceful, str) and graceful.lower() in ("true", "false"):
                graceful = graceful.lower() == "true"
            if not isinstance(graceful, bool):
                return error(400, "must be true or false", "graceful-shutdown")
            self.shutdown(graceful)
            return JSONResponse(
                {
                    "graceful-shutdown": self.status.graceful_shutdown,
                    "shutting-down": self.status.shutting_down,
                }
            )

        @app.api_route("/admin/ws/{command:path}", methods=["GET", "POST"])
        async def ws_admin(command: str, request: Request) -> JSONResponse:
            """The WebSocket admin of /colibri-ws (Kamailio's ws.* RPCs): services/common/ws_admin_http.py."""
            body = await request.body()
            status, answer = ws_admin_http.handle(
                self.ws.admin, request.method, f"/admin/ws/{command}", dict(request.query_params), body,
                time.monotonic(),
            )  # fmt: skip
            return JSONResponse(answer, status_code=status)

        return app

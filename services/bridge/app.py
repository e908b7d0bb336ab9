"""The bridge process: media engine + Colibri REST + Colibri WebSocket + brewery presence.

Private HTTP (``videobridge.http-servers.private``, loopback by default; for the focus and the
operator only): Colibri REST, ``/colibri/stats``, ``/about/health``, ``/about/version``,
``/metrics``, ``/debug``, drain, shutdown and WebSocket administration. Public HTTP
(``...public``): only ``/colibri-ws/...`` and ``/about/health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import ssl
import threading
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Gauge

from services.bridge.channel.datachannel import DataChannelTransport
from services.bridge.channel.dispatch import BridgeChannels
from services.bridge.colibri.conferences import ConferenceBook, render
from services.bridge.colibri.rest import colibri_router, error
from services.bridge.colibri.service import ColibriService
from services.bridge.config import BridgeConfig
from services.bridge.media.engine import MediaConfig, MediaEngine
from services.bridge.media.lastn import ConferenceIntelligencePolicy, intelligence_policy_factory
from services.bridge.media.policy import SendMessage
from services.bridge.presence import BreweryPresence
from services.bridge.stats import BridgeStatus, colibri_stats, presence_stats
from services.bridge.ws.server import ColibriWebSocketServer, authorize_with
from services.common import ws_admin_http
from services.common.runtime import freeze_heap, metrics_body, serve_http, stop_http

log = logging.getLogger("bridge")


def _rss_bytes() -> int | None:
    """The process's resident set now (Linux), for /debug."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


try:
    VERSION = package_version("parley")
except PackageNotFoundError:  # running from a checkout that was not pip-installed
    VERSION = "0.1.0"

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


class Bridge:
    def __init__(self, config: BridgeConfig, state_file: Path | None = None) -> None:
        self.config = config
        self.state_file = state_file
        vb = config.videobridge
        self.server_id = config.server_id
        self.status = BridgeStatus(drain=vb.drain)
        self.policies: dict[str, ConferenceIntelligencePolicy] = {}
        self.engine = MediaEngine(
            MediaConfig(
                port=config.udp_port,
                bind_address=vb.ice.bind_address,
                advertise_ips=tuple(vb.ice.advertise_ips),
                stun_servers=tuple(vb.ice.stun_servers),
                tcp_port=vb.ice.tcp.port if vb.ice.tcp.enabled else None,
                tcp_advertise_port=vb.ice.tcp.mapped_port,
                native_forwarding=vb.forwarding.native_loop,
            ),
            policy_factory=self._policy_for,
        )
        self.book = ConferenceBook(
            default_expire=int(vb.colibri.default_expire.total_seconds()),
            conference_idle_timeout=vb.colibri.conference_idle_timeout.total_seconds(),
        )
        ws = vb.websockets
        vb_channel = vb.bridge_channel
        self.colibri = ColibriService(
            self.book, self.engine, self.web_socket_url if ws.enabled else None, policy_of=self.policies.get
        )
        self.colibri.conference_expired_listeners.append(self._forget_policy)
        # one bridge channel per endpoint, over the Colibri WebSocket or an SCTP data channel
        self.channels = BridgeChannels(
            endpoints_of=lambda cid: (
                list(self.book.conferences[cid].endpoints) if cid in self.book.conferences else []
            ),
            to_engine=self.engine.on_bridge_channel_message,
            version=VERSION,
            max_message_bytes=vb_channel.max_message_size,
            max_depth=vb_channel.max_depth,
        )
        self.ws = ColibriWebSocketServer(
            server_id=self.server_id,
            authorize=authorize_with(self._endpoint_pwd),
            on_frame=lambda cid, eid, frame: self.channels.receive(cid, eid, frame, "websocket"),
            on_open=lambda cid, eid: self.channels.opened(cid, eid, "websocket"),
            version=VERSION,
            admin=ws.settings(),
            max_message_size=ws.max_message_size,
            max_queued_bytes=ws.max_queued_bytes,
            health=self.health_problem,
        )
        ws_admin_http.export_metrics(self.ws.admin)
        self.data_channels = DataChannelTransport(
            self.engine,
            on_frame=lambda cid, eid, text: self.channels.receive(cid, eid, text, "datachannel"),
            on_open=lambda cid, eid: self.channels.opened(cid, eid, "datachannel", take_over=False),
            version=VERSION,
        )
        self.channels.add_transport(self.ws)
        self.channels.add_transport(self.data_channels)
        self.engine.on_dtls_data = self.data_channels.dtls_data
        self.colibri.sctp_listeners.append(self.data_channels.set_sctp)
        self.colibri.endpoint_connected_listeners.append(self.data_channels.dtls_connected)
        self.colibri.endpoint_expired_listeners += [
            self.ws.endpoint_expired,
            self.data_channels.endpoint_expired,
            self.channels.forget,
        ]
        self.engine.send_to_endpoint = self._deliver_from_engine
        self.presence: BreweryPresence | None = None
        xmpp = config.xmpp
        if xmpp.enabled and xmpp.password:
            self.presence = BreweryPresence(
                jid=f"{xmpp.username}@{xmpp.auth_domain}",
                password=xmpp.password,
                host=xmpp.host,
                port=xmpp.port,
                room=f"{xmpp.brewery_muc}@{xmpp.internal_muc_domain}",
                nick=self.server_id,
                stats=lambda: presence_stats(self.stats()),
                healthy=self.health_problem,
                interval=xmpp.presence_interval.total_seconds(),
                reconnect_min=xmpp.reconnect_min.total_seconds(),
                reconnect_max=xmpp.reconnect_max.total_seconds(),
                use_tls=xmpp.use_tls,
                max_stanza_depth=xmpp.max_stanza_depth,
                max_stanza_size=xmpp.max_stanza_size,
            )
        self.started = False
        self.shutdown_requested = asyncio.Event()
        self.public_port: int | None = None

    def _policy_for(self, conference_id: str, send: SendMessage) -> ConferenceIntelligencePolicy:
        """The engine builds one forwarding policy per conference; Colibri channel settings
        (``last-n``, ``rtp-level-relay-type``) are applied to it. The engine builds a new one when
        a conference it had dropped (its last endpoint left) gets endpoints again."""
        old = self.policies.get(conference_id)
        if old is not None:
            old.close()
        policy = self.policies[conference_id] = intelligence_policy_factory(conference_id, send)
        return policy

    def _forget_policy(self, conference_id: str) -> None:
        """The Colibri conference expired: its policy goes, mixer thread and all."""
        policy = self.policies.pop(conference_id, None)
        if policy is not None:
            policy.close()

    def _deliver_from_engine(self, conference_id: str, endpoint_id: str, message: dict[str, Any]) -> None:
        self.channels.send(conference_id, endpoint_id, message)

    # --- derived values --------------------------------------------------------------------------

    def web_socket_url(self, conference_id: str, endpoint_id: str, pwd: str) -> str:
        ws = self.config.videobridge.websockets
        scheme = "wss" if ws.tls else "ws"
        # every id is percent-encoded: an endpoint id is a MUC nick a guest chose
        path = "/".join(quote(part, safe="") for part in (self.server_id, conference_id, endpoint_id))
        return f"{scheme}://{ws.domain}/colibri-ws/{path}?pwd={quote(pwd, safe='')}"

    @property
    def colibri_url(self) -> str:
        """The private REST base URL as the focus reaches it (published in brewery presence)."""
        host = self.config.videobridge.http_servers.private.host
        if host in ("0.0.0.0", "::", ""):
            host = next(iter(self.config.videobridge.ice.advertise_ips), "127.0.0.1")
        return f"http://{host}:{self.config.private_port}"

    def _endpoint_pwd(self, conference_id: str, endpoint_id: str) -> str | None:
        ep = self.book.endpoint(conference_id, endpoint_id)
        return ep.local.pwd if ep is not None and ep.local is not None else None

    def health_problem(self) -> str | None:
        if not self.started:
            return "starting"
        if self.status.shutting_down:
            return "shutting down"
        if not self.status.healthy:
            return self.status.unhealthy_reason or "unhealthy"
        return None

    def stats(self) -> dict[str, Any]:
        return colibri_stats(
            media=self.engine.stats(),
            conference_sizes=self.book.conference_sizes(),
            status=self.status,
            max_packet_rate=self.config.videobridge.load_management.max_packet_rate,
            version=VERSION,
            region=self.config.videobridge.region,
            relay_id=None,
            threads=threading.active_count(),
            wall_time=time.time(),
            websockets=len(self.ws.connections),
            colibri_url=self.colibri_url,
        )

    def refusal(self) -> str | None:
        if self.status.shutting_down:
            return "bridge is shutting down"
        if self.status.graceful_shutdown:
            return "bridge is in graceful shutdown"
        return None

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

    # --- HTTP --------------------------------------------------------------------------------------

    def private_app(self) -> FastAPI:
        app = FastAPI(title="Parley bridge (private)", docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(colibri_router(self.colibri, self.refusal))

        @app.get("/colibri/stats")
        async def stats() -> JSONResponse:
            return JSONResponse(self.stats())

        @app.get("/about/health")
        async def health() -> Response:
            problem = self.health_problem()
            if problem:
                return JSONResponse({"error": problem}, status_code=503)
            return Response(status_code=200)

        @app.get("/about/version")
        async def about_version() -> JSONResponse:
            return JSONResponse(
                {
                    "name": "parley-bridge",
                    "version": VERSION,
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
            self._set_drain(True)
            return JSONResponse({"drain": True})

        @app.post("/colibri/drain/disable")
        async def drain_disable() -> JSONResponse:
            self._set_drain(False)
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
            if graceful:
                self.status.graceful_shutdown = True
                log.info("graceful shutdown requested: exiting when the last conference ends")
            else:
                self.status.shutting_down = True
                log.info("shutdown requested")
                self.shutdown_requested.set()
            if self.presence:
                self.presence.publish_now()
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

    def _set_drain(self, drain: bool) -> None:
        self.status.drain = drain
        log.info("drain %s", "enabled" if drain else "disabled")
        if self.presence:
            self.presence.publish_now()

    # --- lifecycle ---------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext | None:
        public = self.config.videobridge.http_servers.public
        files = public.certificate_files
        if public.tls_port is None or files is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(files[0], files[1], password=public.key_store_password)
        return ctx

    async def run(self) -> None:
        vb = self.config.videobridge
        tasks: list[asyncio.Task[Any]] = []
        private = None
        await self.engine.start()
        try:
            tls = self._tls_context()
            public = vb.http_servers.public
            port = (
                public.tls_port
                if tls is not None and public.tls_port is not None
                else self.config.public_port
            )
            self.public_port = await self.ws.start(public.host, port, tls)
            priv = vb.http_servers.private
            private = await serve_http(self.private_app(), priv.host, self.config.private_port)
            tasks.append(
                asyncio.ensure_future(
                    self.colibri.run_expiry(vb.colibri.expire_check_interval.total_seconds())
                )
            )
            tasks.append(asyncio.ensure_future(self._graceful_watch()))
            if self.presence is not None:
                tasks.append(asyncio.ensure_future(self.presence.run()))
            if self.state_file is not None:
                self.state_file.write_text(
                    json.dumps(
                        {
                            "server_id": self.server_id,
                            "private_url": self.colibri_url,
                            "public_port": self.public_port,
                            "udp_port": self.engine.port,
                        }
                    )
                )
            freeze_heap()
            self.started = True
            log.info(
                "bridge %s up: colibri http://%s:%d, colibri-ws on %s:%d%s, media udp %d",
                self.server_id,
                priv.host,
                self.config.private_port,
                public.host,
                self.public_port,
                " (tls)" if tls else "",
                self.engine.port,
            )
            await self.shutdown_requested.wait()
        finally:
            self.status.shutting_down = True
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.colibri.expire_all()
            await self.ws.stop()
            await self.data_channels.stop()
            if private is not None:
                await stop_http(private)
            await self.engine.stop()
            log.info("bridge %s stopped", self.server_id)

    async def _graceful_watch(self) -> None:
        started: float | None = None
        max_wait = self.config.videobridge.graceful_shutdown_max_wait.total_seconds()
        while True:
            await asyncio.sleep(0.5)
            if not self.status.graceful_shutdown:
                started = None
                continue
            started = started or time.monotonic()
            if self.book.endpoint_count() == 0 or time.monotonic() - started >= max_wait:
                log.info("graceful shutdown: %d conferences left, exiting", len(self.book.conferences))
                self.status.shutting_down = True
                self.shutdown_requested.set()
                return

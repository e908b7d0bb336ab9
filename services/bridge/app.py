"""The bridge process: builds its parts, routes their events, runs and stops them.

Parts, each given what it uses in its constructor: the media engine (``media/``), the Colibri
service and its conference book (``colibri/``), each conference's policy
(:class:`~services.bridge.policies.ConferencePolicies`), the bridge channel and its two
transports (``channel/``, ``ws/``), brewery presence (``presence.py``) and the private HTTP API
(``http_api.py``). :class:`Bridge` is the one place where the engine's and the Colibri service's
events reach the parts that act on them (:class:`~services.bridge.media.engine.EngineEvents`,
:class:`~services.bridge.colibri.service.ColibriEvents`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from services.bridge.channel.datachannel import DataChannelTransport
from services.bridge.channel.dispatch import BridgeChannels
from services.bridge.colibri.conferences import ConferenceBook
from services.bridge.colibri.service import ColibriService
from services.bridge.config import BridgeConfig
from services.bridge.http_api import PrivateApi
from services.bridge.media.engine import EndpointState, MediaConfig, MediaEngine
from services.bridge.policies import ConferencePolicies
from services.bridge.presence import BreweryPresence
from services.bridge.stats import BridgeStatus, colibri_stats, presence_stats
from services.bridge.ws.server import ColibriWebSocketServer, authorize_with
from services.common import ws_admin_http
from services.common.bridge_channel import BridgeChannelMessage
from services.common.runtime import freeze_heap, serve_http, stop_http

log = logging.getLogger("bridge")

try:
    VERSION = package_version("parley")
except PackageNotFoundError:  # running from a checkout that was not pip-installed
    VERSION = "0.1.0"


class Bridge:
    def __init__(self, config: BridgeConfig, state_file: Path | None = None) -> None:
        self.config = config
        self.state_file = state_file
        vb = config.videobridge
        self.server_id = config.server_id
        self.status = BridgeStatus(drain=vb.drain)
        self.shutdown_requested = asyncio.Event()
        self.public_port: int | None = None
        self.policies = ConferencePolicies()
        self.engine = MediaEngine(
            MediaConfig(
                port=config.udp_port,
                bind_address=vb.ice.bind_address,
                advertise_ips=tuple(vb.ice.advertise_ips),
                stun_servers=tuple(vb.ice.stun_servers),
                tcp_port=vb.ice.tcp.port if vb.ice.tcp.enabled else None,
                tcp_advertise_port=vb.ice.tcp.mapped_port,
                native_forwarding=vb.forwarding.native_loop,
                send_side_bwe=vb.forwarding.send_side_bwe,
            ),
            policy_factory=self.policies.create,
            events=self,
        )
        self.book = ConferenceBook(
            default_expire=int(vb.colibri.default_expire.total_seconds()),
            conference_idle_timeout=vb.colibri.conference_idle_timeout.total_seconds(),
        )
        ws = vb.websockets
        vb_channel = vb.bridge_channel
        self.colibri = ColibriService(
            self.book,
            self.engine,
            self.web_socket_url if ws.enabled else None,
            policy_of=self.policies.get,
            events=self,
        )
        # one bridge channel per endpoint, over the Colibri WebSocket or an SCTP data channel
        self.channels = BridgeChannels(
            endpoints_of=lambda cid: (
                list(self.book.conferences[cid].endpoints) if cid in self.book.conferences else []
            ),
            to_engine=self.engine.on_bridge_channel_message,
            on_open=self._channel_opened,
            version=VERSION,
            max_message_bytes=vb_channel.max_message_size,
            max_depth=vb_channel.max_depth,
            relay_bytes_per_second=vb_channel.relay_bytes_per_second,
            relay_burst_bytes=vb_channel.relay_burst_bytes,
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
            health=self.status.problem,
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
                healthy=self.status.problem,
                interval=xmpp.presence_interval.total_seconds(),
                reconnect_min=xmpp.reconnect_min.total_seconds(),
                reconnect_max=xmpp.reconnect_max.total_seconds(),
                use_tls=xmpp.use_tls,
                max_stanza_depth=xmpp.max_stanza_depth,
                max_stanza_size=xmpp.max_stanza_size,
            )
        self.api = PrivateApi(
            server_id=self.server_id,
            version=VERSION,
            status=self.status,
            colibri=self.colibri,
            book=self.book,
            engine=self.engine,
            ws=self.ws,
            data_channels=self.data_channels,
            channels=self.channels,
            presence=self.presence,
            stats=self.stats,
            shutdown_requested=self.shutdown_requested,
        )

    # --- events: the media engine (EngineEvents) ------------------------------------------------

    def endpoint_state(self, conference_id: str, endpoint_id: str, state: EndpointState) -> None:
        self.colibri.engine_state(conference_id, endpoint_id, state)

    def send_to_endpoint(self, conference_id: str, endpoint_id: str, message: BridgeChannelMessage) -> None:
        self.channels.send(conference_id, endpoint_id, message)

    def dtls_data(self, conference_id: str, endpoint_id: str, data: bytes) -> None:
        self.data_channels.dtls_data(conference_id, endpoint_id, data)

    # --- events: the Colibri service (ColibriEvents) --------------------------------------------

    def endpoint_connected(self, conference_id: str, endpoint_id: str) -> None:
        self.data_channels.dtls_connected(conference_id, endpoint_id)

    def endpoint_expired(self, conference_id: str, endpoint_id: str) -> None:
        self.ws.endpoint_expired(conference_id, endpoint_id)
        self.data_channels.endpoint_expired(conference_id, endpoint_id)
        self.channels.forget(conference_id, endpoint_id)

    def sctp_changed(self, conference_id: str, endpoint_id: str, port: int | None) -> None:
        self.data_channels.set_sctp(conference_id, endpoint_id, port)

    def _channel_opened(self, conference_id: str, endpoint_id: str) -> None:
        """An endpoint's bridge channel opened: its conference's policy tells it the state it
        missed (who is interrupted)."""
        policy = self.policies.get(conference_id)
        if policy is not None:
            policy.on_channel_open(endpoint_id)

    def conference_expired(self, conference_id: str) -> None:
        """The Colibri conference expired: its policy goes, mixer thread and all."""
        self.policies.forget(conference_id)

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

    def stats(self) -> dict[str, Any]:
        out = colibri_stats(
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
        out["bridge_channel_messages_refused"] = self.channels.refused
        out["bridge_channel_relay_dropped"] = self.channels.relay_dropped
        return out

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
            private = await serve_http(self.api.app(), priv.host, self.config.private_port)
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
            self.status.started = True
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

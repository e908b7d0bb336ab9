"""Wiring: builds the broker core from the config and serves it on TCP and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..common import addresses, ws_admin_http
from ..common.ws_admin import WsAdmin
from ..common.ws_admin_http import export_metrics
from . import context
from .bosh import BoshService
from .broker import Broker, HostPolicy
from .config import XmppConfig
from .jid import JID
from .limits import ConnectionLimiter, IdleConnections, LoginGuard, MemoryTrimmer, in_networks, log_limited
from .metrics import BrokerCollector
from .modules import guests, presence_identity, token_verification
from .modules.client_proxy import ClientProxy
from .modules.extdisco import ExtDiscoSettings, ExternalServices
from .modules.lobby import Lobby
from .modules.muc import MucService
from .modules.presence_throttle import PresenceThrottle
from .sasl import ScramCredential
from .session import ClientSession, Link, SessionLimits
from .stream_management import ResumptionRegistry
from .tokens import TokenClaims, TokenSettings, TokenVerifier, keyserver_url
from .transports import stop_reading
from .transports.http import HttpConnection, HttpResponse, WebSocketSession
from .transports.slices import SliceScheduler
from .transports.tcp import TcpConnection
from .users import UserStore, users_path
from .xml import ElementBudget

log = logging.getLogger("xmpp.server")

Connection = TcpConnection | WebSocketSession


def build_broker(cfg: XmppConfig) -> tuple[Broker, list[MucService]]:
    """The sans-I/O core for a config: hosts, accounts, MUC hosts, the focus proxy."""
    accounts: dict[str, ScramCredential] = {}
    for user, password in (
        (cfg.focus_user, cfg.focus_password),
        (cfg.jvb_user, cfg.jvb_password),
        (cfg.recorder_user, cfg.recorder_password),
        (cfg.gateway_user, cfg.gateway_password),
    ):
        if password:
            accounts[user.lower()] = ScramCredential.from_password(password)
    for acct in cfg.accounts:
        accounts[acct.user.lower()] = ScramCredential.from_config(
            acct.salt, acct.stored_key, acct.server_key, acct.iterations
        )
    auth = cfg.auth
    verifier = token_verifier(cfg) if auth.enabled and auth.type == "jwt" else None
    if auth.enabled and auth.type == "internal":
        # people's accounts on the client host; service accounts stay on the auth host
        login = HostPolicy(cfg.domain, accounts=UserStore(users_path(auth.users_file)), public_login=True)
    else:
        login = HostPolicy(
            cfg.domain,
            anonymous=True,
            tokens=verifier,
            allow_empty_token=auth.jwt.allow_empty,
            end_session_on_expiry=auth.jwt.end_session_on_expiry,
        )
    hosts = [login, HostPolicy(cfg.auth_domain, anonymous=False, accounts=accounts)]
    if auth.enabled and auth.guests:
        hosts.append(HostPolicy(cfg.guest_domain, anonymous=True))
    broker = Broker(hosts)
    focus = JID(cfg.focus_user.lower(), cfg.auth_domain, "")
    conference = MucService(
        cfg.muc_domain,
        broker.send_to,
        broker.route,
        admins=[focus],
        creators=[focus],
        name="Conferences",
        fixed_whois="moderators",  # semi-anonymous: real JIDs for the focus only
        reserved_nicks={cfg.focus_resource: focus},
        presence_throttle=PresenceThrottle(cfg.limits.presence_interval, cfg.limits.presence_burst),
        schedule=_call_later,
    )
    brewery = MucService(
        cfg.internal_muc_domain,
        broker.send_to,
        broker.route,
        admins=[focus],
        presence_domains={cfg.auth_domain},
        name="Internal",
    )
    if auth.enabled:

        def claims_of(jid: JID) -> TokenClaims | None:
            """The claims of a session here or, with several nodes, on another node (told with
            its bind); a session no node knows of is refused rather than taken as token-less."""
            session = broker.session_for(jid)
            if session is not None:
                return getattr(session, "claims", None)
            if broker.cluster is not None and broker.cluster.known(jid):
                return broker.cluster.claims_of(jid)
            raise LookupError(f"session {jid} is not known to this node")

        def account_of(jid: JID) -> str | None:
            return jid.node if jid.domain == cfg.domain and login.public_login else None

        token_verification.install(conference, claims_of)
        presence_identity.install(conference, claims_of, account_of)
        if auth.guests:
            guests.install(conference, cfg.guest_domain, cfg.domain)
    broker.add_component(conference)
    broker.add_component(brewery)
    broker.add_component(Lobby(cfg.lobby_address, conference, broker.send_to))
    broker.guest_blocked = {cfg.auth_domain, cfg.internal_muc_domain}

    def resources_of(bare: JID) -> list[JID]:
        return broker._available(bare) or [s.jid for s in broker.sessions.get(bare, {}).values()]

    broker.add_component(
        ClientProxy(cfg.focus_address, focus, cfg.focus_resource, resources_of, broker.send_to)
    )
    broker.features.append(external_services(cfg, broker))
    return broker, [conference, brewery]


def _call_later(delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
    return asyncio.get_running_loop().call_later(delay, fn)
def token_verifier(cfg: XmppConfig) -> TokenVerifier:
    """The JWT settings (``JWT_*``) as a verifier; a local public key file is read here."""
    jwt_cfg = cfg.auth.jwt
    keys: dict[str, str] = {}
    if jwt_cfg.public_key_file:
        keys[""] = Path(jwt_cfg.public_key_file).read_text()
    settings = TokenSettings(
        app_id=jwt_cfg.app_id,
        app_secret=jwt_cfg.app_secret,
        accepted_issuers=tuple(jwt_cfg.accepted_issuers),
        accepted_audiences=tuple(jwt_cfg.accepted_audiences) or ("*",),
        public_keys=keys,
        keyserver=jwt_cfg.asap_keyserver,
    )
    return TokenVerifier(settings)


def external_services(cfg: XmppConfig, broker: Broker) -> ExternalServices:
    """XEP-0215 for the broker's bound client sessions (off without a TURN secret)."""
    ed = cfg.extdisco
    host = ed.host or urlparse(os.environ.get("PUBLIC_URL", "")).hostname or ""
    settings = ExtDiscoSettings(
        ed.secret, host, ed.port, ed.turns_port, tuple(ed.transports), ed.ttl, ed.stun
    )
    return ExternalServices(settings, lambda jid: broker.session_for(jid) is not None)


class XmppServer:
    def __init__(self, cfg: XmppConfig) -> None:
        self.config = cfg
        self.broker, self.mucs = build_broker(cfg)
        lim = cfg.limits
        self.limits = SessionLimits(
            max_stanza_size=lim.max_stanza_size,
            allow_plain_without_tls=cfg.c2s.allow_plain_without_tls,
            sm_resume_timeout=cfg.stream_management.resume_timeout,
            max_unacked=lim.max_unacked_stanzas,
            max_depth=lim.max_depth,
            max_elements=lim.max_elements,
            max_header_size=lim.max_header_size,
            max_outbound_bytes=lim.max_outbound_bytes,
            login_guard=LoginGuard(
                lim.login_failures_per_address,
                lim.login_failures_per_account,
                lim.login_failure_window,
                tarpit_delay=lim.login_tarpit_delay,
                tarpit_per_address=lim.login_tarpit_per_address,
            ),
        )
        self.resumption = ResumptionRegistry()
        # elements in unfinished stanzas over every TCP stream (services/xmpp/xml.py)
        self.element_budget = ElementBudget(lim.max_pending_elements)
        self.tls_context: ssl.SSLContext | None = None
        if cfg.c2s.tls_certificate and cfg.c2s.tls_key:
            self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_context.load_cert_chain(cfg.c2s.tls_certificate, cfg.c2s.tls_key)
        self.connections: dict[int, Connection] = {}
        self.websockets: dict[int, WebSocketSession] = {}
        self.http_connections: set[HttpConnection] = set()
        # /xmpp-websocket's connections, keep-alive and the operator's ws.* commands
        self.ws_admin = WsAdmin("xmpp", cfg.websocket.settings())
        self.websocket_path = "/xmpp-websocket"
        self.bosh_path = "/http-bind"
        self._stanzas_closed = 0
        self.registry = CollectorRegistry()
        self.registry.register(
            BrokerCollector(self.broker, self.mucs, self.connection_counts, self.stanzas_received)
        )
        export_metrics(self.ws_admin, self.registry)
        self.servers: list[asyncio.AbstractServer] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.bosh: BoshService | None = None
        self.cluster: Any = None
        self.started = time.monotonic()
        self.trimmer = MemoryTrimmer()
        self.idle_http = IdleConnections(cfg.http.keepalive_timeout, cfg.http.max_idle_connections)
        self.connection_limits = ConnectionLimiter(
            lim.connections_per_second,
            lim.connections_burst,
            lim.max_connections_per_address,
            lim.connection_exempt_networks,
        )
        self.slices = SliceScheduler()
        login = self.broker.hosts.get(cfg.domain)
        self.verifier = login.tokens if login is not None else None
        self.key_fetches: dict[str, asyncio.Task[None]] = {}
        if self.verifier is not None:
            self.verifier.want_key = self._fetch_key

    # -- RS256 keys from the ASAP key server ---------------------------------------------------
    def token_seen(self, token: str) -> None:
        """A connection brought a token: fetch its key now, so it is there at SASL time."""
        verifier = self.verifier
        if verifier is None or not token:
            return
        kid = verifier.header_kid(token)
        if kid is not None and verifier.cache.get(kid) is None:
            self._fetch_key(kid)

    def _fetch_key(self, kid: str) -> None:
        verifier = self.verifier
        if verifier is None or kid in self.key_fetches or len(self.key_fetches) >= 8:
            return
        if verifier.cache.recently_failed(kid, verifier.clock()):
            return
        self.key_fetches[kid] = asyncio.ensure_future(self._fetch(kid))

    async def _fetch(self, kid: str) -> None:
        import httpx
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        verifier = self.verifier
        assert verifier is not None
        url = keyserver_url(verifier.settings.keyserver, kid)
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                resp = await client.get(url)
                resp.raise_for_status()
                pem = resp.text[:16384]
            load_pem_public_key(pem.encode())
            verifier.cache.put(kid, pem)
        except Exception as exc:  # any failure: remembered, retried after a while
            verifier.cache.fail(kid, verifier.clock())
            log_limited(log, logging.WARNING, "asap-key", "no public key for kid %r from %s: %s", kid, url, exc)
        finally:
            self.key_fetches.pop(kid, None)

    # -- the transports' context (context.ServerContext) ---------------------------------------
    def open_session(self, link: Link) -> ClientSession:
        return ClientSession(
            self.broker, link, self.limits, self.resumption, self.schedule, on_end=self.session_ended
        )

    def is_internal(self, peer_ip: str) -> bool:
        """A c2s TCP peer on the internal listener's networks (service accounts may log in)."""
        return in_networks(peer_ip, self.config.c2s.internal_networks)

    def client_address(self, peer_ip: str, headers: dict[str, str]) -> str:
        """The HTTP client's address: the forwarded one only when the peer is a trusted proxy."""
        forwarded = headers.get("x-real-ip") or headers.get("x-forwarded-for")
        return addresses.forwarded_client(
            peer_ip, forwarded, addresses.parse_networks(tuple(self.config.http.trusted_proxies))
        )

    def is_trusted_proxy(self, peer_ip: str) -> bool:
        return in_networks(peer_ip, self.config.http.trusted_proxies)

    def admit_connection(self, address: str, port: str) -> bool:
        why = self.connection_limits.admit(address, time.monotonic())
        if why is None:
            return True
        log_limited(
            log, logging.WARNING, f"connection-refused-{port}", "refused %s connection from %s: %s", port, address, why
        )
        return False

    def release_connection(self, address: str) -> None:
        self.connection_limits.closed(address)

    def refuse_connection(self, transport: asyncio.BaseTransport, address: str) -> None:
        limits = self.connection_limits
        delay = self.config.limits.connection_refusal_delay
        if delay <= 0 or not limits.hold(address):
            transport.abort()  # type: ignore[attr-defined]
            return
        stop_reading(transport)

        def reset() -> None:
            limits.release(address)
            transport.abort()  # type: ignore[attr-defined]

        self.schedule(delay, reset)

    def schedule(self, delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, fn)

    def session_ended(self, session: ClientSession) -> None:
        self._stanzas_closed += session.stanzas_in

    def connection_opened(self, conn: context.Connection) -> None:
        assert isinstance(conn, TcpConnection | WebSocketSession)
        self.connections[id(conn)] = conn
        if isinstance(conn, WebSocketSession):
            self.websockets[conn.id] = conn

    def connection_closed(self, conn: context.Connection) -> None:
        self.trimmer.freed()
        self.connections.pop(id(conn), None)
        if isinstance(conn, WebSocketSession):
            self.websockets.pop(conn.id, None)

    def http_connection_lost(self, conn: object) -> None:
        self.trimmer.freed()
        self.idle_http.active(conn)
        if isinstance(conn, HttpConnection):
            self.http_connections.discard(conn)

    def http_idle(self, conn: object) -> None:
        for old in self.idle_http.idle(conn, time.monotonic()):
            assert isinstance(old, HttpConnection)
            old.close_idle()

    def http_active(self, conn: object) -> None:
        self.idle_http.active(conn)

    def connection_counts(self) -> dict[str, int]:
        counts = {"tcp": 0, "websocket": 0, "bosh": 0}
        for conn in self.connections.values():
            counts[conn.transport_name] += 1
        if self.bosh is not None:
            counts["bosh"] = len(self.bosh.sessions)
        return counts

    def stanzas_received(self) -> int:
        live = 0
        for conn in self.connections.values():
            s = conn.session_obj
            if s is not None:
                live += s.stanzas_in
        return self._stanzas_closed + live

    # -- HTTP routes -------------------------------------------------------------------------
    def http_request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        peer: str,
        address: str = "",
        query: dict[str, str] | None = None,
        token: str = "",
    ) -> HttpResponse | Awaitable[HttpResponse]:
        if path == "/health" and method in ("GET", "HEAD"):
            return HttpResponse.json(200, {"status": "ok", "sessions": self.broker.session_count()})
        if path == "/metrics" and method == "GET":
            return HttpResponse(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        if path == self.bosh_path and self.bosh is not None:
            return self.bosh.handle_http(method, headers, body, address, token)
        if path.startswith("/admin/"):
            if not self._admin_allowed(headers, peer):
                return HttpResponse.json(403, {"error": "admin access denied"})
            return self._admin(method, path, query or {}, body)
        if path == self.websocket_path:
            # a plain GET (a reachability probe, a browser) is answered like Prosody's mod_websocket
            return HttpResponse(
                200, b"It works! Now point your WebSocket client to this URL to connect.", "text/plain"
            )
        return HttpResponse(404, b"not found", "text/plain")

    def _admin_allowed(self, headers: dict[str, str], peer: str) -> bool:
        token = self.config.admin.token
        if token:
            given = headers.get("authorization", "").removeprefix("Bearer ").strip()
            return hmac.compare_digest(given.encode(), token.encode())
        host = peer.rsplit(":", 1)[0]
        return host.startswith("127.") or host in ("::1", "[::1]")

    def _admin(self, method: str, path: str, query: dict[str, str], body: bytes) -> HttpResponse:
        """WebSocket administration (Kamailio's websocket module RPCs): services/common/ws_admin_http.py."""
        if path == "/admin/sessions" and method == "GET":
            return HttpResponse.json(200, self.sessions_view())
        if path == "/admin/rooms" and method == "GET":
            return HttpResponse.json(200, self.rooms_view())
        if not path.startswith(ws_admin_http.PREFIX):
            return HttpResponse.json(404, {"error": "unknown admin path"})
        status, answer = ws_admin_http.handle(self.ws_admin, method, path, query, body, time.monotonic())
        return HttpResponse.json(status, answer)

    def sessions_view(self, limit: int = 1000) -> dict[str, Any]:
        """Read-only, for the ops console: this node's client streams (first ``limit``)."""
        now = time.monotonic()
        out = []
        for conn in list(self.connections.values())[:limit]:
            session = conn.session_obj
            out.append(
                {
                    "transport": conn.transport_name,
                    "jid": str(session.jid) if session is not None and session.bound else None,
                    "peer": getattr(conn, "peer", ""),
                    "age": round(now - conn.started, 1),
                    "stanzas_in": session.stanzas_in if session is not None else 0,
                }
            )
        return {"counts": self.connection_counts(), "bound": self.broker.session_count(), "sessions": out}

    def rooms_view(self, limit: int = 1000) -> dict[str, Any]:
        """Read-only, for the ops console: MUC rooms and their occupants (first ``limit`` rooms)."""
        rooms = []
        for muc in self.mucs:
            for room in list(muc.rooms.values())[:limit]:
                rooms.append(
                    {
                        "jid": str(room.jid),
                        "occupants": [
                            {"nick": o.nick, "role": o.role, "affiliation": o.affiliation}
                            for o in room.occupants.values()
                        ],
                    }
                )
        return {"rooms": rooms}

    # -- housekeeping ------------------------------------------------------------------------
    async def sweep(self) -> None:
        """Idle and authentication timeouts, WebSocket keep-alive pings."""
        lim = self.config.limits
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            self.trimmer.maybe_trim(now)
            self.connection_limits.sweep(now)
            for idle in self.idle_http.expired(now):
                assert isinstance(idle, HttpConnection)
                idle.close_idle()
            if self.bosh is not None:
                self.bosh.sweep(now)
            for conn in list(self.connections.values()):
                session = conn.session_obj
                if session is None or session.closed:
                    continue
                if not session.bound and now - conn.started > lim.auth_timeout:
                    session.fail("connection-timeout", "authentication took too long")
                    continue
                if lim.idle_timeout and now - conn.last_rx > lim.idle_timeout:
                    session.fail("connection-timeout", "idle for too long")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.config.c2s.bind_address
        tcp = await loop.create_server(
            lambda: TcpConnection(self), host, self.config.c2s.port, reuse_address=True, backlog=1024
        )

        def http_factory() -> HttpConnection:
            conn = HttpConnection(self)
            self.http_connections.add(conn)
            return conn

        http = await loop.create_server(
            http_factory, host, self.config.http.port, reuse_address=True, backlog=1024
        )
        self.servers = [tcp, http]
        self.tasks.append(asyncio.ensure_future(self.sweep()))
        self.tasks.append(asyncio.ensure_future(ws_admin_http.run_ticks(self.ws_admin)))
        if self.config.cluster.redis_url:
            from .cluster import RedisCluster

            self.cluster = RedisCluster(
                self.broker,
                self.mucs,
                self.config.cluster,
                satellites={self.config.lobby_address: self.config.muc_domain},
            )
            await self.cluster.start()
        self.bosh = BoshService(self)
        log.info(
            "listening: c2s %s:%d, http %s:%d (domain %s)",
            host,
            self.config.c2s.port,
            host,
            self.config.http.port,
            self.config.domain,
        )

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for conn in list(self.connections.values()):
            session = conn.session_obj
            if session is not None and not session.closed:
                session.fail("system-shutdown")
        if self.cluster is not None:
            await self.cluster.stop()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""The Colibri WebSocket server (jitsi-videobridge doc/web-sockets.md) on the bridge's public HTTP port.

``GET /colibri-ws/<server-id>/<conference-id>/<endpoint-id>?pwd=<ICE pwd>`` upgrades to the
endpoint's bridge channel. Wrong server id -> 404; new connections disabled by the operator
(``ws.disable``) -> 503; a Host or Origin not allowed -> 403; unknown conference or endpoint, or
a wrong pwd -> 403. On connect the bridge sends ``ServerHello``. Every message received goes to
``on_frame`` (the transport-independent dispatch, :mod:`services.bridge.channel.dispatch`);
``on_open`` is told when an endpoint's socket opens. Frames may be compressed
(permessage-deflate, negotiated by the client). When the endpoint expires the socket is closed
with :data:`CLOSE_ENDPOINT_EXPIRED`.

Every connection is registered with the shared WebSocket admin (``services/common/ws_admin.py``):
keep-alive (Kamailio's ``keepalive_mechanism``/``keepalive_timeout``...), ``ws.dump``,
``ws.close``, ``ws.ping``, ``ws.pong``, ``ws.disable``/``ws.enable`` and the closed event; the
private HTTP API serves them under ``/admin/ws/``.

Also serves ``GET /about/health`` for a front door's health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State as ProtocolState

from services.common import bridge_channel as bc
from services.common.logging import RateLimitedLogger
from services.common.ws_admin import Endpoint, WsAdmin, WsAdminSettings, WsConnection
from services.common.ws_admin_http import run_ticks

log = logging.getLogger("bridge.ws")
_bad_input = RateLimitedLogger(log)

CLOSE_ENDPOINT_EXPIRED = 1001
"""Going Away, reason ``endpoint expired``: the endpoint's channels expired; do not reconnect."""
CLOSE_REPLACED = 1000
CLOSE_SHUTDOWN = 1001
CLOSE_BACKLOG = 1008
"""An endpoint with more than ``max_queued_bytes`` waiting to be sent (it does not read): its TCP
connection is aborted (no closing handshake: it would wait behind the unread data)."""

_PATH = re.compile(r"^/colibri-ws/([^/]+)/([^/]+)/([^/]+)/?$")

Authorize = Callable[[str, str, str], bool]
"""(conference id, endpoint id, pwd) -> may this endpoint connect?"""

FrameHandler = Callable[[str, str, str | bytes], None]
"""(conference id, endpoint id, frame): one message an endpoint sent."""


class AdministeredConnection(ServerConnection):
    """A websockets connection that reports its frames to the WebSocket admin and carries out
    its keep-alive and commands (:class:`services.common.ws_admin.WsTransport`)."""

    admin: WsConnection | None = None
    cors_headers: tuple[tuple[str, str], ...] = ()

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        admin = self.admin
        if admin is None or not isinstance(event, Frame):
            return
        now = time.monotonic()
        if event.opcode is Opcode.PONG:
            admin.pong_received(bytes(event.data), now)
        elif event.opcode is Opcode.CLOSE:
            close = Close.parse(bytes(event.data)) if len(event.data) >= 2 else None
            admin.close_received(close.code if close else None, close.reason if close else "", now)
        else:
            admin.received(now)

    def send_ping(self, data: bytes) -> None:
        if self.protocol.state is ProtocolState.OPEN:
            self.protocol.send_ping(data)
            self.send_data()

    def send_pong(self, data: bytes) -> None:
        if self.protocol.state is ProtocolState.OPEN:
            self.protocol.send_pong(data)
            self.send_data()

    def send_close(self, code: int, reason: str) -> None:
        if self.protocol.state is ProtocolState.OPEN:
            # the closing handshake; the TCP connection ends when the client answers
            self.protocol.send_close(code, reason)
            self.send_data()

    def abort(self) -> None:
        self.transport.abort()


@dataclass
class BridgeChannelConnection:
    id: int
    conference_id: str
    endpoint_id: str
    socket: AdministeredConnection
    opened_wall: float = field(default_factory=time.time)
    messages_in: int = 0
    messages_out: int = 0
    closing: bool = False
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0

    def describe(self) -> dict[str, Any]:
        """The bridge's fields in ``ws.dump``'s details."""
        return {
            "conference": self.conference_id,
            "endpoint": self.endpoint_id,
            "opened": self.opened_wall,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "queued_bytes": self.queued_bytes,
            "compression": self.socket.response.headers.get("Sec-WebSocket-Extensions")
            if self.socket.response
            else None,
        }


class ColibriWebSocketServer:
    name = "websocket"

    def __init__(
        self,
        *,
        server_id: str,
        authorize: Authorize,
        on_frame: FrameHandler,
        on_open: Callable[[str, str], None] = lambda conference_id, endpoint_id: None,
        version: str,
        admin: WsAdminSettings | None = None,
        max_message_size: int = 1 << 20,
        max_queued_bytes: int = 1 << 20,
        health: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.server_id = server_id
        self.authorize = authorize
        self.on_frame = on_frame
        self.on_open = on_open
        self.version = version
        self.admin = WsAdmin("bridge", admin)
        self.max_message_size = max_message_size
        self.max_queued_bytes = max_queued_bytes
        self.closed_for_backlog = 0
        self.health = health
        self.tls = False
        self.connections: dict[int, BridgeChannelConnection] = {}
        self.by_endpoint: dict[tuple[str, str], BridgeChannelConnection] = {}
        self._server: Server | None = None
        self._ticks: asyncio.Future[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        try:
            self._server = await serve(
                self._handle,
                host,
                port,
                process_request=self._process_request,
                process_response=self._process_response,
                create_connection=AdministeredConnection,
                # the WebSocket admin runs the keep-alive (keepalive_mechanism...)
                ping_interval=None,
                ping_timeout=None,
                max_size=self.max_message_size,
                compression="deflate",
                ssl=tls,
                server_header=None,
            )
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port} for Colibri WebSockets: {exc}") from exc
        self.tls = tls is not None
        self._ticks = asyncio.ensure_future(run_ticks(self.admin))
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._ticks is not None:
            self._ticks.cancel()
        for conn in list(self.connections.values()):
            self._close(conn, CLOSE_SHUTDOWN, "bridge shutting down")
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # --- handshake -------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/about/health":
            reason = self.health()
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE if reason else HTTPStatus.OK, reason or ""
            )
        match = _PATH.match(url.path)
        if match is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        server_id, conference_id, endpoint_id = (unquote(g) for g in match.groups())
        if server_id != self.server_id:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no bridge {server_id!r} here\n")
        decision = self.admin.check_handshake(
            host=request.headers.get("Host"),
            origin=request.headers.get("Origin"),
            protocols=",".join(request.headers.get_all("Sec-WebSocket-Protocol")).split(","),
        )
        if not decision.accepted:
            _bad_input.info(("refused", decision.status), "bridge channel refused: %s", decision.reason)
            return connection.respond(HTTPStatus(decision.status), decision.reason + "\n")
        if isinstance(connection, AdministeredConnection):
            connection.cors_headers = decision.headers
        pwd = (parse_qs(url.query).get("pwd") or [""])[0]
        if not pwd or not self.authorize(conference_id, endpoint_id, pwd):
            return connection.respond(HTTPStatus.FORBIDDEN, "unknown conference or endpoint, or wrong pwd\n")
        return None

    @staticmethod
    def _process_response(connection: ServerConnection, request: Request, response: Response) -> Response:
        if response.status_code == 101 and isinstance(connection, AdministeredConnection):
            for name, value in connection.cors_headers:
                response.headers[name] = value
        return response

    # --- connection ------------------------------------------------------------------------------

    async def _handle(self, socket: ServerConnection) -> None:
        match = _PATH.match(urlsplit(socket.request.path).path if socket.request else "")
        assert match is not None  # _process_request let only these through
        assert isinstance(socket, AdministeredConnection)
        _, conference_id, endpoint_id = (unquote(g) for g in match.groups())
        info: dict[str, Any] = {}
        admin = self.admin.register(
            socket,
            remote=Endpoint.of(socket.remote_address, self.tls),
            local=Endpoint.of(socket.local_address, self.tls),
            now=time.monotonic(),
            info=lambda: info,
        )
        socket.admin = admin
        conn = BridgeChannelConnection(admin.id, conference_id, endpoint_id, socket)
        info.update(conference=conference_id, endpoint=endpoint_id)
        admin.info = conn.describe
        old = self.by_endpoint.get((conference_id, endpoint_id))
        if old is not None:
            self._close(old, CLOSE_REPLACED, "replaced by a new connection")
        self.connections[conn.id] = conn
        self.by_endpoint[(conference_id, endpoint_id)] = conn
        log.info("bridge channel open id=%d conference=%s endpoint=%s", conn.id, conference_id, endpoint_id)
        writer = asyncio.ensure_future(self._write(conn))
        try:
            self._enqueue(conn, bc.serialize(bc.ServerHello(version=self.version)))
            self.on_open(conference_id, endpoint_id)
            async for frame in socket:
                conn.messages_in += 1
                try:
                    self.on_frame(conference_id, endpoint_id, frame)
                except Exception as exc:  # the dispatch refuses bad input itself; this is a bug
                    _bad_input.warning(
                        ("frame", type(exc).__name__), "bridge-channel message from endpoint=%s failed: %s: %s",
                        endpoint_id, type(exc).__name__, exc,
                    )  # fmt: skip
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.connections.pop(conn.id, None)
            if self.by_endpoint.get((conference_id, endpoint_id)) is conn:
                del self.by_endpoint[(conference_id, endpoint_id)]
            admin.lost(time.monotonic(), socket.close_code, socket.close_reason or "")
            log.info("bridge channel closed id=%d code=%s", conn.id, socket.close_code)

    async def _write(self, conn: BridgeChannelConnection) -> None:
        while True:
            text = await conn.queue.get()
            if text is None:
                return
            conn.queued_bytes -= len(text)
            try:
                await conn.socket.send(text)
                conn.messages_out += 1
            except ConnectionClosed:
                return

    def _enqueue(self, conn: BridgeChannelConnection, text: str) -> None:
        """Queue for the writer. An endpoint that does not read its socket stops the writer (the
        send waits for the kernel buffer to drain); once ``max_queued_bytes`` wait behind it the
        connection is closed and its queue dropped, so its backlog never grows the bridge."""
        if conn.closing:
            return
        if conn.queued_bytes + len(text) > self.max_queued_bytes:
            self.closed_for_backlog += 1
            _bad_input.warning(
                "backlog", "bridge channel id=%d endpoint=%s does not read: %d bytes queued; closing it",
                conn.id, conn.endpoint_id, conn.queued_bytes,
            )  # fmt: skip
            self._drop_queue(conn)
            self._close(conn, CLOSE_BACKLOG, "not reading")
            return
        conn.queued_bytes += len(text)
        conn.queue.put_nowait(text)

    @staticmethod
    def _drop_queue(conn: BridgeChannelConnection) -> None:
        while not conn.queue.empty():
            conn.queue.get_nowait()
        conn.queued_bytes = 0

    # --- used by the rest of the bridge ----------------------------------------------------------

    def send_text(self, conference_id: str, endpoint_id: str, text: str) -> bool:
        """Queue a message for an endpoint's socket; False if it has no open socket."""
        conn = self.by_endpoint.get((conference_id, endpoint_id))
        if conn is None:
            return False
        self._enqueue(conn, text)
        return True

    def endpoint_expired(self, conference_id: str, endpoint_id: str) -> None:
        conn = self.by_endpoint.get((conference_id, endpoint_id))
        if conn is not None:
            self._close(conn, CLOSE_ENDPOINT_EXPIRED, "endpoint expired")

    def _close(self, conn: BridgeChannelConnection, code: int, reason: str) -> None:
        conn.closing = True
        if conn.socket.admin is not None:
            conn.socket.admin.closing(code, reason)
        if self.by_endpoint.get((conn.conference_id, conn.endpoint_id)) is conn:
            del self.by_endpoint[(conn.conference_id, conn.endpoint_id)]
        if code == CLOSE_BACKLOG:
            # the peer reads nothing, so a closing handshake would wait for close_timeout: drop it
            conn.socket.transport.abort()
            return
        task = asyncio.ensure_future(conn.socket.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def dump(self) -> dict[str, Any]:
        """For ``/debug``: ``ws.dump`` and the backlog counter."""
        return {
            **self.admin.dump(time.monotonic()),
            "closed_for_backlog": self.closed_for_backlog,
        }


def authorize_with(lookup: Callable[[str, str], str | None]) -> Authorize:
    """An :data:`Authorize` comparing ``pwd`` (constant-time) with the endpoint's ICE pwd."""

    def check(conference_id: str, endpoint_id: str, pwd: str) -> bool:
        expected = lookup(conference_id, endpoint_id)
        return expected is not None and hmac.compare_digest(expected.encode(), pwd.encode())

    return check

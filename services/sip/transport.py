"""The gateway's I/O: SIP over UDP, TCP (RFC 3261 §18) and WebSocket (RFC 7118), around the
sans-I/O :class:`~services.sip.core.SipCore`, and the bridge to the media side.

Each adapter turns bytes into :class:`SipMessage` (``message.parse`` / ``StreamFramer``), hands
them to the core with their :class:`Flow`, then :meth:`SipGateway.flush` writes what the core
queued to the flow it names: a UDP ``sendto`` to the source address, or the TCP/WebSocket
connection the flow is. WebSocket connections are registered with the shared WebSocket admin
(``services/common/ws_admin.py``: keep-alive, ``ws.dump``/``ws.close``/…, the closed event).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.common import addresses
from services.common.addresses import Network
from services.common.logging import RateLimitedLogger
from services.common.tasks import Background
from services.common.ws_admin import Endpoint, WsAdmin, WsConnection

from . import metrics, msrp
from .core import (
    Call,
    CallConfirmed,
    CallDigit,
    CallEnded,
    CallOffered,
    CallReoffered,
    Close,
    Flow,
    Registered,
    Send,
    SipCore,
)
from .flood import SourceLimiter
from .message import SipParseError, StreamFramer, parse

log = logging.getLogger("sip.transport")
rl = RateLimitedLogger(log)


class CallRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class CallMedia(Protocol):
    """The media side: joins the meeting for a call and answers the caller's SDP."""

    async def offered(self, call: Call) -> bytes:
        """The SDP answer once the call is in the meeting; raise :class:`CallRefused` to refuse."""
        ...

    async def reoffered(self, call: Call, sdp: bytes) -> bytes: ...

    def digit(self, call: Call, digit: str) -> None:
        """A DTMF digit the caller sent as SIP INFO (already rate-bounded by the core)."""
        ...

    async def ended(self, call: Call, reason: str) -> None: ...


class _WsTransport:
    """ws_admin's view of one WebSocket connection (control frames, abort)."""

    def __init__(self, ws: ServerConnection, tasks: Background) -> None:
        self.ws = ws
        self.tasks = tasks
        self.admin_conn: WsConnection | None = None

    def send_ping(self, data: bytes) -> None:
        async def ping() -> None:
            with contextlib.suppress(ConnectionClosed, RuntimeError):
                waiter = await self.ws.ping(data)
                await waiter
                if self.admin_conn is not None:
                    self.admin_conn.pong_received(data, time.monotonic())

        self.tasks.spawn(ping(), "WebSocket ping")

    def send_pong(self, data: bytes) -> None:
        async def pong() -> None:
            with contextlib.suppress(ConnectionClosed, RuntimeError):
                await self.ws.pong(data)

        self.tasks.spawn(pong(), "WebSocket pong")

    def send_close(self, code: int, reason: str) -> None:
        async def close() -> None:
            with contextlib.suppress(ConnectionClosed, RuntimeError):
                await self.ws.close(code, reason)

        self.tasks.spawn(close(), "WebSocket close")

    def abort(self) -> None:
        transport = self.ws.transport
        if transport is not None:
            transport.abort()


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """A WebSocket client's address (:func:`services.common.addresses.forwarded_client`). Without
    it, every client behind nginx shared nginx's address, and one guest's failed authentications
    (20 a minute per address) locked every WebSocket client out."""
    return addresses.forwarded_client(peer, forwarded_for, trusted)


class SipGateway:
    def __init__(self, core: SipCore, media: CallMedia, admin: WsAdmin, *, max_message_size: int,
                 max_headers: int, max_tcp_connections: int = 1000, tcp_idle_timeout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, trusted_proxies: Sequence[str] = (),
                 sources: SourceLimiter | None = None) -> None:
        self.trusted_proxies: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in trusted_proxies
        )
        self.core = core
        self.media = media
        self.admin = admin
        self.max_size = max_message_size
        self.max_headers = max_headers
        self.max_tcp = max_tcp_connections
        self.tcp_idle = tcp_idle_timeout
        self.clock = clock
        # messages per source address (sip.limits.requests-*; off unless given)
        self.sources = sources if sources is not None else SourceLimiter(0, 1)
        self._swept = clock()
        self.tasks = Background(log)
        self._conn_ids = itertools.count(1)
        self._udp: asyncio.DatagramTransport | None = None
        self._streams: dict[Flow, Callable[[bytes], None]] = {}
        self._closers: dict[Flow, Callable[[str], Awaitable[None] | None]] = {}
        self._flooding: set[Flow] = set()  # stream connections being closed for their source's rate
        self._call_tasks: dict[str, asyncio.Task[Any]] = {}
        self._wake = asyncio.Event()
        self._servers: list[Any] = []
        self.ports: dict[str, int] = {}
        self.msrp_bind_timeout = 30.0

    # ------------------------------------------------------------------ core plumbing

    def admit(self, flow: Flow, now: float) -> bool:
        """Whether a message from ``flow`` may be handled: its source is within its rate
        (:class:`~services.sip.flood.SourceLimiter`). Otherwise it is dropped unanswered (UDP: an
        answer to a flood, perhaps from a spoofed source, would amplify it) and a TCP or WebSocket
        connection is closed; one log line per source every 10 s."""
        if self.sources.admit(flow.host, now):
            return True
        metrics.FLOODED.labels(flow.transport).inc()
        rl.warning(("flood", flow.host), "%s sends SIP faster than %g messages a second: dropping them%s",
                   flow.host, self.sources.rate, "" if flow.transport == "udp" else ", closing its connection")
        if flow.transport != "udp" and flow not in self._flooding:
            closer = self._closers.get(flow)
            if closer is not None:
                self._flooding.add(flow)
                result = closer("too many requests")
                if asyncio.iscoroutine(result):
                    self.tasks.spawn(result, "close SIP connection")
        return False

    def handle(self, flow: Flow, data: bytes) -> None:
        """One whole message from a datagram or a WebSocket frame."""
        now = self.clock()
        if not self.admit(flow, now):
            return
        try:
            msg = parse(data, max_size=self.max_size, max_headers=self.max_headers)
        except SipParseError as exc:
            metrics.MALFORMED.labels(flow.transport).inc()
            rl.warning(("malformed", flow.host), "malformed SIP from %s %s:%d: %s", flow.transport,
                       flow.host, flow.port, exc.reason)
            self.core.receive_error(flow, exc, now)
        else:
            self._receive(flow, msg, now)
        self.flush()

    def _receive(self, flow: Flow, msg: Any, now: float) -> None:
        try:
            self.core.receive(flow, msg, now)
        except Exception:  # a bug on one message must not stop the gateway
            log.exception("SIP message from %s %s:%d failed", flow.transport, flow.host, flow.port)

    def flush(self) -> None:
        out, self.core.outbox = self.core.outbox, []
        for item in out:
            if isinstance(item, Send):
                self._write(item.flow, item.data)
            elif isinstance(item, Close):
                closer = self._closers.get(item.flow)
                if closer is not None:
                    result = closer(item.reason)
                    if asyncio.iscoroutine(result):
                        self.tasks.spawn(result, "close SIP connection")
        events, self.core.events = self.core.events, []
        for event in events:
            self._event(event)
        self._wake.set()

    def _write(self, flow: Flow, data: bytes) -> None:
        metrics.MESSAGES_OUT.labels(flow.transport).inc()
        if flow.transport == "udp":
            if self._udp is not None:
                self._udp.sendto(data, (flow.host, flow.port))
            return
        writer = self._streams.get(flow)
        if writer is None:
            metrics.UNROUTABLE.inc()
            rl.info(("noflow", flow.token), "no connection for %s any more, message dropped", flow.token)
            return
        writer(data)

    def _event(self, event: Any) -> None:
        if isinstance(event, CallOffered):
            call = event.call
            metrics.CALLS.inc()
            log.info("call %s from %r into room %s over %s", call.call_id[:40], call.display_name, call.room,
                     call.flow.transport)
            task = asyncio.ensure_future(self._join(call))
            self._call_tasks[call.key] = task
        elif isinstance(event, CallReoffered):
            self.tasks.spawn(self._reoffer(event.call, event.sdp), "re-INVITE")
        elif isinstance(event, CallEnded):
            call = event.call
            metrics.CALLS.dec()
            metrics.CALLS_ENDED.labels(event.reason.split(" ")[0]).inc()
            log.info("call %s in room %s ended: %s", call.call_id[:40], call.room, event.reason)
            joining = self._call_tasks.pop(call.key, None)
            if joining is not None and not joining.done():
                joining.cancel()
            self.tasks.spawn(self.media.ended(call, event.reason), "end call media")
        elif isinstance(event, CallDigit):
            self.media.digit(event.call, event.digit)
        elif isinstance(event, CallConfirmed):
            metrics.CALLS_CONFIRMED.inc()
        elif isinstance(event, Registered):
            metrics.REGISTRATIONS.set(sum(len(v) for v in self.core.bindings.values()))

    async def _join(self, call: Call) -> None:
        try:
            answer = await self.media.offered(call)
        except CallRefused as exc:
            self.core.reject(call.key, exc.status, exc.reason, self.clock())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call %s into %s failed: %s", call.call_id[:40], call.room, exc)
            self.core.reject(call.key, 480, "Cannot join the meeting", self.clock())
        else:
            if not self.core.answer(call.key, answer, self.clock()):
                await self.media.ended(call, "gone before the answer")
        finally:
            self._call_tasks.pop(call.key, None)
        self.flush()

    async def _reoffer(self, call: Call, sdp: bytes) -> None:
        try:
            answer = await self.media.reoffered(call, sdp)
        except CallRefused as exc:
            self.core.reject(call.key, exc.status, exc.reason, self.clock())
        except Exception as exc:
            log.warning("re-INVITE of %s failed: %s", call.call_id[:40], exc)
            self.core.reject(call.key, 488, "Cannot apply this offer", self.clock())
        else:
            self.core.answer(call.key, answer, self.clock())
        self.flush()

    def hangup(self, key: str, reason: str) -> None:
        """The media side ends a call (the meeting ended, the gateway stops)."""
        self.core.hangup(key, reason, self.clock())
        self.flush()

    async def run_timers(self) -> None:
        while True:
            deadline = self.core.next_deadline()
            timeout = 5.0 if deadline is None else max(0.0, deadline - self.clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            now = self.clock()
            try:
                self.core.tick(now)
            except Exception:
                log.exception("SIP timers failed")
            if now - self._swept >= 5.0:
                self._swept = now
                self.sources.sweep(now)
            out = self.core.outbox or self.core.events
            if out:
                self.flush()
                self._wake.clear()

    # ------------------------------------------------------------------ UDP

    async def start_udp(self, host: str, port: int) -> None:
        gateway = self

        class Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                metrics.MESSAGES_IN.labels("udp").inc()
                if data in (b"\r\n\r\n", b"\r\n", b"\x00\x00\x00\x00"):  # keep-alives
                    return
                gateway.handle(Flow("udp", addr[0], addr[1]), data)

            def error_received(self, exc: Exception) -> None:
                rl.info("udp-error", "UDP error: %s", exc)

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=(host, port))
        self._udp = transport
        self.ports["udp"] = transport.get_extra_info("sockname")[1]
        log.info("SIP over UDP on %s:%d", host, self.ports["udp"])

    # ------------------------------------------------------------------ TCP

    async def start_tcp(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._tcp_client, host, port, limit=self.max_size)
        self._servers.append(server)
        self.ports["tcp"] = server.sockets[0].getsockname()[1]
        log.info("SIP over TCP on %s:%d", host, self.ports["tcp"])

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        if sum(1 for f in self._streams if f.transport == "tcp") >= self.max_tcp:
            rl.warning("tcp-full", "refusing a SIP TCP connection from %s: %d open", peer[0], self.max_tcp)
            writer.close()
            return
        flow = Flow("tcp", peer[0], peer[1], conn=next(self._conn_ids))
        framer = StreamFramer(self.max_size, self.max_headers)

        def write(data: bytes) -> None:
            if not writer.is_closing():
                writer.write(data)

        def close(reason: str) -> None:
            writer.close()

        self._streams[flow] = write
        self._closers[flow] = close
        metrics.CONNECTIONS.labels("tcp").inc()
        try:
            while not writer.is_closing():
                data = await asyncio.wait_for(reader.read(65536), self.tcp_idle)
                if not data:
                    break
                metrics.MESSAGES_IN.labels("tcp").inc()
                before = framer.keepalives
                try:
                    for msg in framer.feed(data):
                        now = self.clock()
                        if not self.admit(flow, now):
                            break
                        self._receive(flow, msg, now)
                except SipParseError as exc:
                    metrics.MALFORMED.labels("tcp").inc()
                    rl.warning(("malformed", flow.host), "malformed SIP over TCP from %s: %s", flow.host, exc.reason)
                    self.core.receive_error(flow, exc, self.clock())
                    if not exc.fatal:
                        exc.fatal = True
                        self.core.outbox.append(Close(flow, exc.reason))
                if framer.keepalives > before:  # RFC 5626 §4.4.1: CRLFCRLF is answered with CRLF
                    write(b"\r\n")
                self.flush()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            metrics.CONNECTIONS.labels("tcp").dec()
            self._streams.pop(flow, None)
            self._closers.pop(flow, None)
            self._flooding.discard(flow)
            self.core.flow_closed(flow, self.clock())
            self.flush()
            writer.close()

    # ------------------------------------------------------------------ WebSocket

    async def start_websocket(self, host: str, port: int) -> Server:
        server = await serve(
            self._ws_client,
            host,
            port,
            process_request=self._ws_handshake,
            select_subprotocol=self._ws_subprotocol,
            ping_interval=None,  # the WebSocket admin runs the keep-alive
            max_size=self.max_size,
            max_queue=16,
            compression=None,
            server_header=None,
        )
        self._servers.append(server)
        self.ports["ws"] = next(iter(server.sockets)).getsockname()[1]
        log.info("SIP over WebSocket on %s:%d", host, self.ports["ws"])
        return server

    @staticmethod
    def _wanted_subprotocol(path: str) -> str | None:
        """``sip`` at /sip-ws (and /), ``msrp`` at /msrp-ws (RFC 7977 §4), None elsewhere."""
        path = path.split("?", 1)[0]
        if path in ("/sip-ws", "/sip-ws/", "/"):
            return "sip"
        if path in ("/msrp-ws", "/msrp-ws/"):
            return "msrp"
        return None

    def _ws_subprotocol(self, connection: ServerConnection, offered: Any) -> Any:
        wanted = self._wanted_subprotocol(connection.request.path if connection.request else "")
        return wanted if wanted is not None and wanted in offered else None

    def _ws_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        wanted = self._wanted_subprotocol(request.path)
        if wanted is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        headers: Headers = request.headers
        protocols: list[str] = []
        for value in headers.get_all("Sec-WebSocket-Protocol"):
            protocols.extend(p.strip() for p in value.split(","))
        decision = self.admin.check_handshake(
            host=headers.get("Host"), origin=headers.get("Origin"), protocols=protocols
        )
        if decision.accepted and wanted not in {p.lower() for p in protocols}:
            rl.info(("ws-refused", wanted), "refused a WebSocket at %s without the %s sub-protocol",
                    request.path[:40], wanted)
            return connection.respond(HTTPStatus.BAD_REQUEST,
                                      f"Bad Request: Sec-WebSocket-Protocol must offer {wanted}\n")
        if not decision.accepted:
            rl.info(("ws-refused", decision.status), "refused a SIP WebSocket: %s", decision.reason)
            return connection.respond(HTTPStatus(decision.status), decision.reason + "\n")
        return None

    async def _ws_client(self, ws: ServerConnection) -> None:
        if ws.subprotocol == "msrp":
            await self._msrp_client(ws)
            return
        remote = ws.remote_address or ("", 0)
        forwarded = ws.request.headers.get("X-Forwarded-For") if ws.request is not None else None
        flow = Flow("ws", client_address(str(remote[0]), forwarded, self.trusted_proxies), int(remote[1]),
                    conn=next(self._conn_ids))
        transport = _WsTransport(ws, self.tasks)
        conn = self.admin.register(
            transport, remote=Endpoint.of(remote), local=Endpoint.of(ws.local_address),
            now=self.clock(), sub_protocol=ws.subprotocol, info={"flow": flow.token},
        )
        transport.admin_conn = conn

        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)

        def write(data: bytes) -> None:
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:  # a peer that does not read: drop it rather than buffer
                rl.warning("ws-full", "SIP WebSocket %s does not read, closing it", flow.token)
                transport.abort()

        sender = asyncio.ensure_future(self._ws_sender(ws, queue))

        async def close(reason: str) -> None:
            await ws.close(1008, reason.encode()[:100].decode(errors="ignore"))  # RFC 6455 §5.5: 123 bytes

        self._streams[flow] = write
        self._closers[flow] = close
        metrics.CONNECTIONS.labels("ws").inc()
        try:
            async for message in ws:
                conn.received(self.clock())
                metrics.MESSAGES_IN.labels("ws").inc()
                data = message.encode() if isinstance(message, str) else bytes(message)
                self.handle(flow, data)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            metrics.CONNECTIONS.labels("ws").dec()
            now = self.clock()
            if ws.protocol.close_rcvd is not None:
                conn.close_received(ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason, now)
            conn.lost(now, ws.close_code, ws.close_reason or "")
            self._streams.pop(flow, None)
            self._closers.pop(flow, None)
            self._flooding.discard(flow)
            self.core.flow_closed(flow, now)
            self.flush()

    async def _msrp_client(self, ws: ServerConnection) -> None:
        """An MSRP session's WebSocket (RFC 7977): the first frame's To-Path names a session the
        media side set up for a call; every frame after that goes to that session."""
        remote = ws.remote_address or ("", 0)
        transport = _WsTransport(ws, self.tasks)
        info = {"msrp": "unbound"}
        conn = self.admin.register(
            transport, remote=Endpoint.of(remote), local=Endpoint.of(ws.local_address),
            now=self.clock(), sub_protocol=ws.subprotocol, info=info,
        )
        transport.admin_conn = conn
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=256)

        def write(data: bytes) -> None:
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                rl.warning("msrp-full", "MSRP WebSocket from %s does not read, closing it", remote[0])
                transport.abort()

        sender = asyncio.ensure_future(self._ws_sender(ws, queue))
        link: Any = None
        find_link = getattr(self.media, "msrp_link", None)
        metrics.CONNECTIONS.labels("msrp").inc()
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), None if link is not None else self.msrp_bind_timeout)
                except TimeoutError:
                    await ws.close(1008, "no MSRP session named")
                    break
                now = self.clock()
                conn.received(now)
                metrics.MESSAGES_IN.labels("msrp").inc()
                data = message.encode() if isinstance(message, str) else bytes(message)
                try:
                    frame = msrp.parse_frame(data, self.max_size)
                except msrp.MsrpError as exc:
                    metrics.MALFORMED.labels("msrp").inc()
                    rl.warning(("msrp-malformed", remote[0]), "malformed MSRP from %s: %s", remote[0], exc.reason)
                    reply = msrp.Frame(exc.tid, status=exc.status, comment=exc.reason[:80]).to_bytes()
                    if link is not None:
                        if exc.tid:
                            write(reply)
                        continue
                    if exc.tid:  # nothing to resynchronise with: answer, then refuse the connection
                        await ws.send(reply.decode())
                    await ws.close(1008, "malformed MSRP")
                    break
                if link is None:
                    sid = msrp.session_id_of(frame.get("To-Path") or "")
                    found = find_link(sid) if (find_link is not None and sid) else None
                    if found is None or not found.attach(write):
                        rl.info(("msrp-unknown", remote[0]), "MSRP from %s names no session of a call", remote[0])
                        if frame.is_request:
                            await ws.send(msrp.Frame(frame.tid, status=481, comment="Session Does Not Exist")
                                          .to_bytes().decode())
                        await ws.close(1008, "no such MSRP session")
                        break
                    link = found
                    info["msrp"] = sid or ""
                replies, texts = link.session.receive(frame, now)
                for reply in replies:
                    write(reply)
                for text in texts:
                    link.on_text(text)
        except ConnectionClosed:
            pass
        finally:
            if link is not None:
                link.detach(write)
            sender.cancel()
            metrics.CONNECTIONS.labels("msrp").dec()
            now = self.clock()
            if ws.protocol.close_rcvd is not None:
                conn.close_received(ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason, now)
            conn.lost(now, ws.close_code, ws.close_reason or "")

    @staticmethod
    async def _ws_sender(ws: ServerConnection, queue: asyncio.Queue[bytes]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                data = await queue.get()
                await ws.send(data.decode("utf-8", "replace"))

    # ------------------------------------------------------------------ shutdown

    async def close(self) -> None:
        for key in list(self.core.calls):
            self.core.hangup(key, "gateway shutting down", self.clock())
        self.flush()
        await asyncio.sleep(0)
        for server in self._servers:
            server.close()
        if self._udp is not None:
            self._udp.close()
        for task in self._call_tasks.values():
            task.cancel()
        await self.tasks.close()

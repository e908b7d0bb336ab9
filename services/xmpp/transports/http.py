"""The HTTP port: XMPP over WebSocket (RFC 7395), BOSH, health, metrics, administration.

HTTP/1.1 is parsed by ``h11`` and WebSocket framing by ``websockets``' sans-I/O protocol, both
driven from one asyncio protocol per connection: the broker owns the socket, so it can ping,
close and count each WebSocket connection itself (the administration of Kamailio's websocket module).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import h11
from websockets.datastructures import Headers
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from ...common.ws_admin import Endpoint, WsConnection
from ..limits import ReadBudget, log_limited
from ..session import ClientSession, Link, WebSocketFraming
from ..xml import CLIENT_NS, FRAMING_NS, StreamClosed, StreamOpened, XmlStreamError, parse_document
from . import stop_reading

if TYPE_CHECKING:  # pragma: no cover
    from ..context import ServerContext

log = logging.getLogger("xmpp.http")

WS_PROTOCOLS: weakref.WeakSet[ServerProtocol] = weakref.WeakSet()
"""The WebSocket protocol objects (frame parsers) in memory, for the ``xmpp_websocket_protocols``
metric: the open WebSocket connections' only, once every closed one has been freed."""


def release_protocol(proto: ServerProtocol) -> None:
    """Free a WebSocket protocol object that will parse nothing more, now. ``websockets``' sans-I/O
    protocol parses frames with a generator that refers to the protocol object, so the two form
    a reference cycle that only a garbage collection frees, holding the read buffer and the last
    frame received (up to the frame size limit). The broker's collections are rare (``__main__``),
    and a connection still open at a young collection is moved to an older generation, where its
    cycle waited for a full collection: a flood of short hostile connections left megabytes
    behind. Closing the generator ends that reference."""
    proto.parser.close()



class HttpResponse:
    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []

    @classmethod
    def json(cls, status: int, obj: Any) -> HttpResponse:
        return cls(status, json.dumps(obj).encode())


class WebSocketSession:
    """One XMPP-over-WebSocket connection after the upgrade; registered with the server's
    WebSocket admin (``services/common/ws_admin.py``), for which it is the transport."""

    transport_name = "websocket"

    def __init__(
        self,
        conn: HttpConnection,
        proto: ServerProtocol,
        origin: str | None,
        address: str = "",
        token: str = "",
    ) -> None:
        self.conn = conn
        self.server = conn.server
        self.proto = proto
        self.origin = origin
        self.peer = conn.peer
        self.started = self.last_rx = time.monotonic()
        self.closing = False
        self.fragments: list[bytes] = []
        self.fragment_bytes = 0
        self.link = Link(
            WebSocketFraming(),
            self.write,
            self.close_transport,
            secure=conn.secure,
            address=address,
            token=token,
        )
        self.session = self.server.open_session(self.link)
        transport = conn.transport
        self.admin: WsConnection = self.server.ws_admin.register(
            self,
            remote=Endpoint.of(transport.get_extra_info("peername") if transport else None, conn.secure),
            local=Endpoint.of(transport.get_extra_info("sockname") if transport else None, conn.secure),
            now=self.started,
            sub_protocol="xmpp",
            info=self.describe,
        )
        self.id = self.admin.id

    def receive(self, data: bytes) -> None:
        self.last_rx = now = time.monotonic()
        self.proto.receive_data(data)
        for frame in self.proto.events_received():
            if not isinstance(frame, Frame):
                continue
            if frame.opcode is Opcode.PONG:
                self.admin.pong_received(bytes(frame.data), now)
            elif frame.opcode is Opcode.CLOSE:
                close = Close.parse(bytes(frame.data)) if len(frame.data) >= 2 else None
                self.admin.close_received(close.code if close else None, close.reason if close else "", now)
            else:
                self.admin.received(now)
            self._frame(frame)
            if self.closing:
                break
        self.conn.flush_ws()
        if self.closing or self.proto.close_expected():
            self.closing = True
            self.conn.close_soon()

    def _frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if not frame.fin:
                self.fragments = [bytes(frame.data)]
                self.fragment_bytes = len(frame.data)
                return
            self._message(bytes(frame.data))
        elif op is Opcode.CONT:
            self.fragments.append(bytes(frame.data))
            self.fragment_bytes += len(frame.data)
            if self.fragment_bytes > self.server.limits.max_stanza_size:
                self.fragments, self.fragment_bytes = [], 0
                self.session_obj.fail("policy-violation", "stanza too large")  # type: ignore[union-attr]
                return
            if frame.fin:
                data, self.fragments, self.fragment_bytes = b"".join(self.fragments), [], 0
                self._message(data)
        elif op is Opcode.CLOSE:
            self.closing = True
            session = self.link.session
            if session is not None and not session.closed:
                session.transport_lost()

    def _message(self, data: bytes) -> None:
        session = self.link.session
        assert session is not None
        lim = self.server.limits
        try:
            el = parse_document(
                data, lim.max_stanza_size, default_ns=CLIENT_NS, max_depth=lim.max_depth,
                max_elements=lim.max_elements,
            )  # fmt: skip
        except XmlStreamError as err:
            session.fail(err.condition, err.text)
            return
        # RFC 7395's <open/> and <close/> are the stream's header and end
        if el.ns == FRAMING_NS and el.name == "open":
            session.receive(StreamOpened(el.ns, el.name, el.attrs))
        elif el.ns == FRAMING_NS and el.name == "close":
            session.receive(StreamClosed())
        else:
            session.receive(el)

    # -- link --------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closing:
            return
        if self.proto.state is not OPEN:
            # the peer's close frame came in the same read as its last message (a <close/>
            # followed at once by the socket's close): nothing more can be sent
            self.closing = True
            return
        self.proto.send_text(data)
        self.conn.schedule_flush()
        transport = self.conn.transport
        if (
            transport is not None
            and transport.get_write_buffer_size() > self.server.limits.max_outbound_bytes
        ):
            session = self.link.session
            if session is not None and not session.overflowed and not session.closed:
                session.overflow("policy-violation", "the client does not read what it is sent")

    def close_transport(self, code: int = 1000) -> None:
        if self.closing:
            return
        self.closing = True
        try:
            self.proto.send_close(code)
        except Exception:  # already closing on the protocol level
            pass
        self.conn.flush_ws()
        self.conn.close_soon()

    # -- the WebSocket admin's transport (services/common/ws_admin.py) -----------------------------
    def send_ping(self, data: bytes) -> None:
        if not self.closing and self.proto.state is OPEN:
            self.proto.send_ping(data)
            self.conn.flush_ws()

    def send_pong(self, data: bytes) -> None:
        if not self.closing and self.proto.state is OPEN:
            self.proto.send_pong(data)
            self.conn.flush_ws()

    def send_close(self, code: int, reason: str) -> None:
        """The operator's ``ws.close``: the stream's ``<close/>`` (RFC 7395 section 3.6), then the
        WebSocket Close; the TCP connection ends when the client answers (or the keep-alive drops it)."""
        if self.closing or self.proto.state is not OPEN:
            return
        session = self.link.session
        if session is not None and not session.closed:
            self.proto.send_text(f"<close xmlns='{FRAMING_NS}'/>".encode())
        self.proto.send_close(code, reason)
        self.conn.flush_ws()

    def abort(self) -> None:
        self.closing = True
        if self.conn.transport is not None:
            self.conn.transport.abort()

    def lost(self) -> None:
        self.closing = True
        self.admin.lost(time.monotonic(), self.proto.close_rcvd.code if self.proto.close_rcvd else None)
        session = self.link.session
        if session is not None:
            session.transport_lost()
        self.link.detach()
        self.fragments, self.fragment_bytes = [], 0
        release_protocol(self.proto)

    @property
    def session_obj(self) -> ClientSession | None:
        return self.link.session

    def describe(self) -> dict[str, Any]:
        """The broker's fields in ``ws.dump``'s details."""
        s = self.link.session
        return {
            "address": self.link.address,
            "origin": self.origin,
            "jid": str(s.jid) if s is not None and s.bound else None,
        }


class HttpConnection(asyncio.Protocol):
    """One TCP connection on the HTTP port: requests until (maybe) a WebSocket upgrade."""

    def __init__(self, server: ServerContext, secure: bool = False) -> None:
        self.server = server
        self.secure = secure
        self.transport: asyncio.Transport | None = None
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=65536)
        self.ws: WebSocketSession | None = None
        self.peer = ""
        self.peer_ip = ""
        self.request: h11.Request | None = None
        self.body: list[bytes] = []
        self.busy = False
        self.flush_scheduled = False
        lc = server.config.limits
        full = (lc.rate_bytes_per_second, lc.burst_bytes)
        self.budget = ReadBudget(full, full, time.monotonic())
        self.paused = False
        self.resume_timer: asyncio.TimerHandle | None = None
        self.deferred = b""  # read, over the read budget: handled when reading resumes
        # bytes read while a request is being answered (pipelined, RFC 9112 section 9.3): they
        # wait in h11's buffer, so past one more request's worth reading stops until the answer
        self.pipelined = 0
        self.pipeline_limit = 2 * lc.max_stanza_size + 65536  # a body and its headers
        self.held_back = False  # reading paused for that
        self.closed = False
        # the address counted against the per-address connection limits while this is open: the
        # peer, or (a trusted proxy's connection) the forwarded client once it upgrades
        self.limited_address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.peer_ip = str(peer[0]) if peer else ""
        if not self.server.is_trusted_proxy(self.peer_ip):
            if not self.server.admit_connection(self.peer_ip, "http"):
                # refused before its request is read or parsed (and before any handshake): reset
                # (an answer written now would be lost to the reset its request causes)
                self.closed = True
                self.server.refuse_connection(transport, self.peer_ip)
                return
            self.limited_address = self.peer_ip

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.limited_address:
            self.server.release_connection(self.limited_address)
            self.limited_address = ""
        self.deferred = b""
        if self.resume_timer is not None:
            self.resume_timer.cancel()
            self.resume_timer = None
        if self.ws is not None:
            self.server.connection_closed(self.ws)
            self.ws.lost()
            self.ws = None  # the session and this connection refer to each other: let both go now
        self.server.http_connection_lost(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            stop_reading(self.transport)  # refused (or closing): what it sends is not looked at
            return
        now = time.monotonic()
        if self.ws is None:
            self.server.http_active(self)
        take, delay = self.budget.admit(len(data), now)
        if delay > 0 and self.transport is not None:
            self.deferred += data[take:]
            data = data[:take]
            if not self.paused:
                self.paused = True
                self.transport.pause_reading()
            if self.resume_timer is not None:
                self.resume_timer.cancel()
            self.resume_timer = asyncio.get_running_loop().call_later(delay, self._resume_reading)
        if data:
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.receive(data)
            return
        self.h11.receive_data(data)
        if self.busy:
            self.pipelined += len(data)
            if self.pipelined > self.pipeline_limit and not self.held_back and self.transport is not None:
                self.held_back = True
                self.transport.pause_reading()
            return
        self._pump()

    def _resume_reading(self) -> None:
        self.paused = False
        self.resume_timer = None
        data, self.deferred = self.deferred, b""
        if self.transport is None or self.closed:
            return
        if not self.held_back:
            self.transport.resume_reading()
        if data:
            self._handle(data)

    def _pump(self) -> None:
        while not self.busy and self.ws is None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._send_simple(400, f"bad request: {exc}".encode(), close=True)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request = event
                self.body = []
                if self._is_upgrade(event):
                    self._upgrade(event)
                    return
            elif isinstance(event, h11.Data):
                self.body.append(bytes(event.data))
                if sum(map(len, self.body)) > self.server.limits.max_stanza_size * 2:
                    self._send_simple(413, b"body too large", close=True)
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                return

    @staticmethod
    def _is_upgrade(req: h11.Request) -> bool:
        for name, value in req.headers:
            if name == b"upgrade" and value.lower() == b"websocket":
                return True
        return False

    def _dispatch(self) -> None:
        req = self.request
        assert req is not None
        method = req.method.decode()
        target = req.target.decode("latin-1")
        path = urlsplit(target).path
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in req.headers}
        body = b"".join(self.body)
        self.busy = True
        address = self.server.client_address(self.peer_ip, headers)
        query = dict(parse_qsl(urlsplit(target).query))
        token = url_token(target)
        result = self.server.http_request(method, path, headers, body, self.peer, address, query, token=token)
        if isinstance(result, HttpResponse):
            self.respond(result)
        else:  # an awaitable (BOSH long poll)
            task = asyncio.ensure_future(result)
            task.add_done_callback(self._async_done)

    def _async_done(self, task: asyncio.Future[HttpResponse]) -> None:
        if self.closed:
            return
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                log_limited(log, logging.WARNING, "http-failed", "request failed: %r", task.exception())
            self.respond(HttpResponse(500, b"internal error", "text/plain"))
        else:
            self.respond(task.result())

    def respond(self, resp: HttpResponse) -> None:
        if self.closed or self.transport is None:
            return
        headers = [
            ("content-type", resp.content_type),
            ("content-length", str(len(resp.body))),
            *resp.headers,
        ]
        out = self.h11.send(h11.Response(status_code=resp.status, headers=headers)) or b""
        out += self.h11.send(h11.Data(data=resp.body)) or b"" if resp.body else b""
        out += self.h11.send(h11.EndOfMessage()) or b""
        self.transport.write(out)
        self.busy = False
        self.pipelined = 0
        if self.held_back:
            self.held_back = False
            if not self.paused:
                self.transport.resume_reading()
        if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
            self.transport.close()
            return
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            self.transport.close()
            return
        self._pump()
        if not self.busy and self.ws is None and not self.closed:
            self.server.http_idle(self)  # waits for its next request

    def _send_simple(self, status: int, body: bytes, close: bool = False) -> None:
        if self.transport is None:
            return
        try:
            self.respond(HttpResponse(status, body, "text/plain", [("connection", "close")] if close else []))
        except h11.LocalProtocolError:
            pass
        if close:
            self.transport.close()

    # -- WebSocket upgrade -------------------------------------------------------------------
    def _upgrade(self, req: h11.Request) -> None:
        target = req.target.decode("latin-1")
        path = urlsplit(target).path
        headers = Headers()
        for k, v in req.headers:
            headers[k.decode()] = v.decode("latin-1")
        origin = headers.get("Origin")
        protocols = ",".join(headers.get_all("Sec-WebSocket-Protocol")).replace(" ", "").split(",")
        if path != self.server.websocket_path:
            self._send_simple(404, b"no WebSocket endpoint here", close=True)
            return
        # enabled, Host, Origin and sub-protocol: the WebSocket admin's policy (ws.disable -> 503)
        decision = self.server.ws_admin.check_handshake(
            host=headers.get("Host"), origin=origin, protocols=protocols
        )
        if not decision.accepted:
            log_limited(
                log, logging.INFO, f"ws-refused-{decision.status}", "refused WebSocket from %s: %s",
                self.peer, decision.reason,
            )  # fmt: skip
            self._send_simple(decision.status, decision.reason.encode(), close=True)
            return
        lowered = {k.lower(): v for k, v in headers.raw_items()}
        if not self.limited_address:  # a trusted proxy's connection: count the client it names
            address = self.server.client_address(self.peer_ip, lowered)
            if not self.server.admit_connection(address, "websocket"):
                self._send_simple(429, b"too many connections from your address", close=True)
                return
            self.limited_address = address
        # the handshake is validated by one protocol object; frames are parsed by a second one
        # that starts OPEN (h11 has already consumed the request bytes)
        handshake = ServerProtocol(
            subprotocols=[decision.subprotocol] if decision.subprotocol else None,  # type: ignore[list-item]
        )
        response = handshake.accept(Request(target, headers))
        if response.status_code == 101:
            for name, value in decision.headers:
                response.headers[name] = value
        handshake.send_response(response)
        if self.transport is not None:
            self.transport.writelines(handshake.data_to_send())
        release_protocol(handshake)
        if response.status_code != 101:
            if self.transport is not None:
                self.transport.close()
            return
        # frames up to twice the stanza limit reach the XML layer, which answers with the
        # policy-violation stream error; larger ones are cut off by the WebSocket layer (1009)
        proto = ServerProtocol(state=OPEN, max_size=self.server.limits.max_stanza_size * 2)
        WS_PROTOCOLS.add(proto)
        token = url_token(target)
        self.server.token_seen(token)
        self.ws = WebSocketSession(
            self, proto, origin, self.server.client_address(self.peer_ip, lowered), token=token
        )
        self.server.connection_opened(self.ws)
        # a WebSocket carries one guest's stream (service accounts never log in on this path):
        # from here on it is read at the guests' rate (limits.guest-rate-bytes-per-second)
        lc = self.server.config.limits
        self.budget = ReadBudget(
            (lc.guest_rate_bytes_per_second, lc.guest_burst_bytes),
            (lc.rate_bytes_per_second, lc.burst_bytes),
            time.monotonic(),
        )
        trailing, _closed = self.h11.trailing_data
        if trailing:
            self.ws.receive(bytes(trailing))

    def schedule_flush(self) -> None:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_ws)

    def flush_ws(self) -> None:
        self.flush_scheduled = False
        if self.ws is None or self.transport is None or self.closed:
            return
        data = self.ws.proto.data_to_send()
        if data:
            self.transport.writelines(data)

    def close_idle(self) -> None:
        """Closed by the server while waiting for a request (keep-alive timeout or too many idle)."""
        if self.transport is not None and not self.closed and not self.busy and self.ws is None:
            self.transport.close()

    def close_soon(self) -> None:
        if self.transport is not None and not self.closed:
            self.flush_ws()
            if self.transport.get_write_buffer_size() > self.server.limits.max_outbound_bytes:
                self.transport.abort()  # it does not read: drop its backlog instead of waiting
            else:
                self.transport.close()


def url_token(target: str) -> str:
    """``?token=`` of a request target, as Jitsi's clients send their JWT (empty if absent)."""
    query = urlsplit(target).query
    if "token=" not in query:
        return ""
    values = parse_qs(query, max_num_fields=16).get("token")
    return values[0] if values else ""


Handler = Callable[[str, str, dict[str, str], bytes, str], Any]

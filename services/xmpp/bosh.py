"""BOSH (XEP-0124, XEP-0206): XMPP over long-polled HTTP requests.

Each BOSH session wraps a :class:`ClientSession` whose writes are collected until a held request
can carry them. Requests are answered in ``rid`` order rules kept simple: each request's payload
is handed to the session at once, the newest request is held until there is output or ``wait``
seconds pass, and an older held request is released empty when a newer one arrives (``hold=1``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..common.token_bucket import TokenBucket
from .limits import log_limited
from .session import ClientSession, Link
from .xml import STREAM_NS, Element, StreamClosed, StreamOpened, XmlStreamError, escape_attr, parse_document

if TYPE_CHECKING:  # pragma: no cover
    from .context import ServerContext
    from .transports.http import HttpResponse

log = logging.getLogger("xmpp.bosh")

BOSH_NS = "http://jabber.org/protocol/httpbind"
XBOSH_NS = "urn:xmpp:xbosh"
CORS = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "GET, POST, OPTIONS"),
    ("access-control-allow-headers", "Content-Type"),
    ("access-control-max-age", "86400"),
]


class BoshFraming:
    """Stream framing is implicit in BOSH: the session-creation response carries the header."""

    name = "bosh"

    def open(self, host: str, stream_id: str) -> bytes:
        return b""

    def stream_element(self, el: Element) -> bytes:
        return el.serialize().encode()

    def close(self) -> bytes:
        return b""


class BoshSession:
    transport_name = "bosh"

    def __init__(
        self,
        service: BoshService,
        sid: str,
        rid: int,
        wait: float,
        hold: int,
        address: str = "",
        token: str = "",
    ) -> None:
        self.service = service
        self.sid = sid
        self.rid = rid
        self.wait = wait
        self.hold = hold
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.held: asyncio.Future[None] | None = None
        self.terminated = False
        self.last_request = time.monotonic()
        # the guests' read budget (limits.guest-rate-bytes-per-second) over the session's request
        # bodies: nginx opens an upstream connection per request, so no connection's bucket
        # sees a BOSH session's whole input (service accounts never log in over BOSH)
        lc = service.server.config.limits
        self.bucket = TokenBucket(lc.guest_rate_bytes_per_second, lc.guest_burst_bytes, self.last_request)
        self.throttled = 0  # requests waiting for that budget
        self.link = Link(BoshFraming(), self.write, self.close, secure=False, address=address, token=token)
        self.session: ClientSession = service.server.open_session(self.link)

    def write(self, data: bytes) -> None:
        if data and not self.terminated:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > self.service.server.limits.max_outbound_bytes:
                self.session.overflow("policy-violation", "the client does not poll for what it is sent")
            self._wake()

    def close(self) -> None:
        self.terminated = True
        self._wake()

    def _wake(self) -> None:
        if self.held is not None and not self.held.done():
            self.held.set_result(None)

    def take_body(self) -> bytes:
        payload = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        if self.terminated:
            self.service.forget(self)
            return (f"<body xmlns='{BOSH_NS}' type='terminate'>").encode() + payload + b"</body>"
        return f"<body xmlns='{BOSH_NS}'>".encode() + payload + b"</body>"


class BoshService:
    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.sessions: dict[str, BoshSession] = {}
        self.config = server.config.bosh
        self.per_address: Counter[str] = Counter()
        self.refused_sessions = 0
        # refusals of one address being held back (bosh.refusal-delay)
        self.refusing: Counter[str] = Counter()

    def _add(self, bs: BoshSession) -> None:
        self.sessions[bs.sid] = bs
        self.per_address[bs.link.address] += 1

    def forget(self, bs: BoshSession) -> None:
        """The session is over: it no longer counts against its address."""
        if self.sessions.pop(bs.sid, None) is not None:
            left = self.per_address[bs.link.address] - 1
            if left > 0:
                self.per_address[bs.link.address] = left
            else:
                del self.per_address[bs.link.address]

    def _response(self, status: int, body: bytes) -> HttpResponse:
        from .transports.http import HttpResponse

        return HttpResponse(status, body, "text/xml; charset=utf-8", list(CORS))

    def handle_http(  # type: ignore[no-untyped-def]
        self, method: str, headers: dict[str, str], body: bytes, address: str = "", token: str = ""
    ):
        if method == "OPTIONS":
            return self._response(200, b"")
        if method != "POST":
            return self._response(405, b"BOSH wants POST")
        lim = self.server.limits
        try:
            # the <body/> wrapper is one level above the stanzas
            root = parse_document(
                body, lim.max_stanza_size, max_depth=lim.max_depth + 1, max_elements=lim.max_elements
            )
        except XmlStreamError as err:
            return self._terminate("bad-request", err.text)
        if root.name != "body" or root.ns != BOSH_NS:
            return self._terminate(
                "bad-request", "expected <body xmlns='http://jabber.org/protocol/httpbind'>"
            )
        try:
            rid = int(root.get("rid") or "")
        except ValueError:
            return self._terminate("bad-request", "rid missing")
        sid = root.get("sid")
        if sid is None:
            self.server.token_seen(token)
            return self._create(root, rid, address, token)
        bs = self.sessions.get(sid)
        if bs is None:
            return self._terminate("item-not-found", "unknown sid")
        return self._request(bs, root, rid, len(body))

    def _terminate(self, condition: str, text: str = "") -> HttpResponse:
        log_limited(log, logging.INFO, "bosh:" + condition, "BOSH request refused: %s %s", condition, text)
        return self._response(
            200 if condition != "bad-request" else 400,
            f"<body xmlns='{BOSH_NS}' type='terminate' condition='{condition}'/>".encode(),
        )

    def _create(
        self, root: Element, rid: int, address: str = "", token: str = ""
    ) -> HttpResponse | Coroutine[Any, Any, HttpResponse]:
        to = root.get("to") or ""
        if self.per_address[address] >= self.config.max_sessions_per_address:
            # XEP-0124 section 17.2: a condition that ends only this request's would-be session
            self.refused_sessions += 1
            if (
                self.config.refusal_delay > 0
                and self.refusing[address] < self.config.max_sessions_per_address
            ):
                self.refusing[address] += 1
                return self._refuse_later(address)
            return self._terminate("policy-violation", f"too many BOSH sessions from {address}")
        wait = _bounded(root.get("wait"), self.config.max_wait, 1.0, self.config.max_wait)
        hold = int(_bounded(root.get("hold"), 1, 1, self.config.hold))
        sid = secrets.token_hex(16)
        bs = BoshSession(self, sid, rid, wait, hold, address, token)
        self._add(bs)
        bs.session.receive(StreamOpened(STREAM_NS, "stream", {"to": to, "version": "1.0"}))
        if bs.terminated:
            return self._response(200, bs.take_body())
        payload = b"".join(bs.pending)
        bs.pending.clear()
        head = (
            f"<body xmlns='{BOSH_NS}' sid='{sid}' wait='{int(wait)}' hold='{hold}' requests='{hold + 1}' "
            f"inactivity='{int(self.config.inactivity)}' polling='1' ver='1.6' from='{escape_attr(to)}' "
            f"authid='{bs.session.stream_id}' xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0' "
            f"xmlns:stream='{STREAM_NS}'>"
        )
        return self._response(200, head.encode() + payload + b"</body>")

    async def _refuse_later(self, address: str) -> HttpResponse:
        """The refusal of one session too many, answered after ``bosh.refusal-delay`` seconds:
        a client that opens sessions as fast as it is answered (each answer costs an HTTP
        request's parsing and a response) gets one answer per delay and connection. At most
        ``max-sessions-per-address`` refusals of one address wait at once; past that they are
        answered at once."""
        try:
            await asyncio.sleep(self.config.refusal_delay)
        finally:
            left = self.refusing[address] - 1
            if left > 0:
                self.refusing[address] = left
            else:
                del self.refusing[address]
        return self._terminate("policy-violation", f"too many BOSH sessions from {address}")

    async def _request(self, bs: BoshSession, root: Element, rid: int, size: int = 0) -> HttpResponse:
        if rid <= bs.rid - 2 or rid > bs.rid + bs.hold + 1:
            bs.session.fail("policy-violation", "BOSH rid out of window")
            return self._terminate("item-not-found", "rid out of window")
        bs.rid = max(bs.rid, rid)
        bs.last_request = time.monotonic()
        delay = bs.bucket.consume(size, bs.last_request)
        if delay > 0:  # over the read budget: the payload waits, as a TCP stream's reading would
            if bs.throttled > bs.hold:
                # more requests waiting at once than the session's ``requests`` (hold + 1): each
                # holds its parsed payload and lengthens the next one's wait (XEP-0124 section
                # 11, overactivity: the session ends with policy-violation)
                bs.session.fail("policy-violation", "too many simultaneous BOSH requests")
                return self._terminate("policy-violation", "too many simultaneous requests")
            bs.throttled += 1
            try:
                await asyncio.sleep(delay)
            finally:
                bs.throttled -= 1
            if bs.terminated or bs.session.closed:
                return self._response(200, bs.take_body())
            bs.last_request = time.monotonic()
        if root.get("type") == "terminate":
            for child in root.elements():
                bs.session.receive(child)
            bs.session.receive(StreamClosed())
            bs.terminated = True
            self.forget(bs)
            return self._response(200, f"<body xmlns='{BOSH_NS}' type='terminate'/>".encode())
        restart = root.get(f"{{{XBOSH_NS}}}restart") in ("true", "1")
        session = bs.session
        if restart:
            host = session.host.domain if session.host is not None else ""
            session.receive(
                StreamOpened(STREAM_NS, "stream", {"to": root.get("to") or host, "version": "1.0"})
            )
        for child in root.elements():
            if session.closed:
                break
            session.receive(child)
        if bs.pending or bs.terminated:
            return self._response(200, bs.take_body())
        if bs.held is not None and not bs.held.done():
            bs.held.set_result(None)  # release the older held request empty
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        bs.held = fut
        try:
            await asyncio.wait_for(asyncio.shield(fut), bs.wait)
        except TimeoutError:
            pass
        if bs.held is fut:
            bs.held = None
        bs.last_request = time.monotonic()
        return self._response(200, bs.take_body())

    def sweep(self, now: float) -> None:
        """End sessions whose client stopped polling."""
        for bs in list(self.sessions.values()):
            if bs.held is None and now - bs.last_request > self.config.inactivity:
                self.forget(bs)
                bs.session.transport_lost()


def _bounded(text: str | None, default: float, lo: float, hi: float) -> float:
    """A numeric BOSH attribute (``wait``, ``hold``) clamped to [lo, hi]; garbage, NaN and
    infinities mean the default."""
    try:
        value = float(text) if text is not None else default
    except ValueError:
        value = default
    if not math.isfinite(value):
        value = default
    return min(max(value, lo), hi)

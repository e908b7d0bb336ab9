"""Client-to-server TCP (RFC 6120): an asyncio protocol around StreamParser + ClientSession."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING

from ..limits import ReadBudget, log_limited
from ..session import ClientSession, Link, TcpFraming
from ..xml import StreamParser, XmlStreamError
from . import stop_reading

if TYPE_CHECKING:  # pragma: no cover
    from ..context import ServerContext

log = logging.getLogger("xmpp.tcp")


class TcpConnection(asyncio.Protocol):
    transport_name = "tcp"

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.refused = False  # over the per-address connection limits: nothing was set up
        self.address = ""

    def _setup(self) -> None:
        """What an admitted connection needs (a refused one never pays for a parser or a session)."""
        server = self.server
        lim = server.limits
        self.parser = StreamParser(
            lim.max_stanza_size, lim.max_depth, lim.max_header_size, lim.max_elements, server.element_budget
        )
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.flush_scheduled = False
        self.started = self.last_rx = time.monotonic()
        self.peer = ""
        lc = server.config.limits
        self.budget = ReadBudget(
            (lc.guest_rate_bytes_per_second, lc.guest_burst_bytes),
            (lc.rate_bytes_per_second, lc.burst_bytes),
            self.started,
        )
        self.paused = False
        self.resume_timer: asyncio.TimerHandle | None = None
        self.deferred = b""  # read, over the read budget: handled when reading resumes
        self.slicing = False
        self.backlog = bytearray()
        self.tls_pending = False
        tls = server.tls_context
        self.link = Link(
            TcpFraming(),
            self.write,
            self.close_transport,
            self.restart,
            self.starttls if tls is not None else None,
        )
        self.session = server.open_session(self.link)

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        if not self.server.admit_connection(ip, "c2s"):
            # refused before anything is read or set up (and before STARTTLS): reset
            self.refused = self.closing = True
            self.server.refuse_connection(transport, ip)
            return
        self.address = ip
        self._setup()
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.link.address = ip
        self.link.internal = self.server.is_internal(ip)
        self.server.connection_opened(self)

    # input beyond this many bytes at once is parsed in slices of this size, handed out by the
    # server's SliceScheduler under a time budget per event-loop turn: a connection that sends
    # many small elements at once cannot hold the loop, and other clients' input runs in between
    SLICE = 4096

    def data_received(self, data: bytes) -> None:
        if self.closing:
            # the stream is closed (a stream error, say) or the connection refused: what still
            # arrives is not looked at, and no more is read
            stop_reading(self.transport)
            return
        now = time.monotonic()
        self.last_rx = now
        session = self.link.session
        take, delay = self.budget.admit(len(data), now, session is not None and session.service_account)
        if delay > 0:
            self.deferred += data[take:]
            data = data[:take]
            self.paused = True
            if self.resume_timer is not None:
                self.resume_timer.cancel()
            self.resume_timer = asyncio.get_running_loop().call_later(delay, self._resume_reading)
        self._handle(data)

    def _handle(self, data: bytes) -> None:
        if not data:
            self._update_reading()
        elif not self.slicing and len(data) <= self.SLICE:
            self._input(data)  # the common case: a few stanzas, parsed at once
        else:
            self.backlog += data
            if not self.slicing:
                self.slicing = True
                self.server.slices.add(self)
        self._update_reading()

    def next_slice(self) -> bool:
        """Parse one slice of the backlog; True if more is left (called by the scheduler)."""
        if self.closing or not self.backlog:
            self.slicing = False
            self.backlog.clear()
            self._update_reading()
            return False
        data = bytes(self.backlog[: self.SLICE])
        del self.backlog[: self.SLICE]
        self._input(data)
        if self.backlog and not self.closing:
            return True
        self.slicing = False
        self._update_reading()
        return False

    def _update_reading(self) -> None:
        """Read from the socket only while neither the rate limit nor a backlog holds it."""
        transport = self.transport
        if transport is None or self.closing or self.tls_pending:
            return
        want = not self.paused and not self.slicing
        if want and not transport.is_reading():
            transport.resume_reading()
        elif not want and transport.is_reading():
            transport.pause_reading()

    def _input(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except XmlStreamError as err:
            self.backlog.clear()
            self.link.session.fail(err.condition, err.text)  # type: ignore[union-attr]
            return
        for event in events:
            session = self.link.session
            assert session is not None
            session.receive(event)
            if self.closing:
                self.backlog.clear()
                break

    def _resume_reading(self) -> None:
        self.paused = False
        self.resume_timer = None
        data, self.deferred = self.deferred, b""
        if self.closing:
            return
        self._handle(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            self.transport = None
            return
        if self.tls_pending:
            return
        self.closing = True
        if self.address:
            self.server.release_connection(self.address)
            self.address = ""
        self.parser.discard()
        self.out = []
        self.backlog = bytearray()
        self.deferred = b""
        if self.resume_timer is not None:
            self.resume_timer.cancel()
            self.resume_timer = None
        self.server.connection_closed(self)
        session = self.link.session
        if session is not None:
            session.transport_lost()
        self.link.detach()

    # -- link --------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closing:
            return
        self.out.append(data)
        self.out_bytes += len(data)
        if self.transport is not None:
            queued = self.out_bytes + self.transport.get_write_buffer_size()
            if queued > self.server.limits.max_outbound_bytes:
                session = self.link.session
                if session is not None and not session.overflowed and not session.closed:
                    session.overflow("policy-violation", "the client does not read what it is sent")
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out.clear()
            self.out_bytes = 0
            self.transport.write(data)

    def close_transport(self) -> None:
        if self.closing:
            return
        self.flush()
        self.closing = True
        if self.transport is not None:
            if self.transport.get_write_buffer_size() > self.server.limits.max_outbound_bytes:
                self.transport.abort()  # it does not read: drop its backlog instead of waiting
            else:
                self.transport.close()
        self.out = []

    def restart(self) -> None:
        self.parser.reset()

    def starttls(self) -> bool:
        ctx = self.server.tls_context
        if ctx is None or self.transport is None:
            return False
        self.flush()
        self.tls_pending = True
        self._tls_task = asyncio.ensure_future(self._upgrade(ctx))
        return True

    async def _upgrade(self, ctx: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        assert self.transport is not None
        try:
            new = await loop.start_tls(self.transport, self, ctx, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log_limited(log, logging.INFO, "tls-failed", "TLS handshake with %s failed: %s", self.peer, exc)
            self.tls_pending = False
            self.connection_lost(exc)
            return
        self.tls_pending = False
        self.transport = new  # type: ignore[assignment]
        self.link.secure = True

    # -- admin view --------------------------------------------------------------------------
    @property
    def session_obj(self) -> ClientSession | None:
        return self.link.session

"""WebSocket administration shared by every WebSocket server (RFC 6455): connection registry,
keep-alive, handshake policy and the operator's commands, with the names, defaults and semantics
of Kamailio's ``websocket`` module (its admin guide: parameters, RPC commands ``ws.dump``,
``ws.close``, ``ws.ping``, ``ws.pong``, ``ws.disable``, ``ws.enable`` and the
``websocket:closed`` event route).

Sans-I/O: nothing here touches a socket or a clock. A server adapter

* asks :meth:`WsAdmin.check_handshake` before it upgrades a request (enabled? Host? Origin?
  sub-protocol?) and answers a refusal with the status it returns;
* registers each upgraded connection with **one call**, :meth:`WsAdmin.register`, giving an
  object that can send control frames (:class:`WsTransport`) and the addresses;
* tells the returned :class:`WsConnection` about received frames (:meth:`WsConnection.received`,
  :meth:`WsConnection.pong_received`) and :meth:`WsConnection.lost` when its TCP connection ends;
* calls :meth:`WsAdmin.tick` with the current time every :attr:`WsAdminSettings.tick_interval`
  seconds (``services/common/ws_admin_http.py`` has the asyncio loop and the HTTP API).

Semantics kept from Kamailio:

* ``last used`` is the time of the last frame *received* (any opcode); sending does not count.
* keep-alive: every ``keepalive_interval`` seconds each connection idle for more than
  ``keepalive_timeout`` seconds is sent a Ping (``keepalive_mechanism`` 1, then it awaits a Pong)
  or an unsolicited Pong (2); one still idle on the next run while awaiting a Pong, or while
  closing, is dropped without a closing handshake. 0: no keep-alive. Connections are shared out
  between ``keepalive_processes`` runs by ``id % keepalive_processes``.
* ``ws.close`` starts the closing handshake (default 1000 "Normal closure"); the connection stays
  listed as CLOSING until the peer answers or the keep-alive drops it.
* a connection whose transport is gone waits ``rm_delay_interval`` seconds (checked every
  ``timer_interval``) before it is destroyed; the ``closed`` event runs then, once.
* ``ws.dump`` lists at most the first 50 connections in ``id_hash`` order (Kamailio's TCP
  connection id hash, 1024 buckets, newest first in a bucket), ``used_desc`` (least recently used
  first) or ``used_asc`` (most recently used first), each as Kamailio's one-line summary.
* ``ws.disable`` refuses new handshakes with 503 until ``ws.enable``; open connections stay.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("ws.admin")

KEEPALIVE_NONE = 0
KEEPALIVE_PING = 1
KEEPALIVE_PONG = 2
DUMP_LIMIT = 50
"""``ws.dump`` lists at most this many connections (Kamailio's MAX_WS_CONNS_DUMP)."""
ID_HASH_SIZE = 1024
"""Buckets of the connection id hash whose order ``ws.dump id_hash`` follows (TCP_ID_HASH_SIZE)."""
ORDERS = ("id_hash", "used_desc", "used_asc")
NORMAL_CLOSURE = (1000, "Normal closure")
MAX_REASON_BYTES = 123
"""A close frame's payload is at most 125 bytes: 2 for the status, the rest for the reason."""


class WsAdminError(ValueError):
    """A command the operator got wrong: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class State(enum.Enum):
    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"
    REMOVING = "REMOVING"


def _seconds(name: str, value: Any, minimum: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    return number


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, Iterable):
        raise ValueError(f"{name} must be a list of strings, not {value!r}")
    out = tuple(str(v).strip() for v in value)
    if any(not v for v in out):
        raise ValueError(f"{name} has an empty entry")
    return out


@dataclass(frozen=True)
class WsAdminSettings:
    """One WebSocket server's settings, with Kamailio's ``websocket`` parameter names and defaults."""

    keepalive_mechanism: int = KEEPALIVE_PING
    keepalive_timeout: float = 180.0
    keepalive_processes: int = 1
    keepalive_interval: float = 1.0
    timer_interval: float = 1.0
    rm_delay_interval: float = 5.0
    ping_application_data: bytes = b"Parley WebSocket keep-alive"
    sub_protocols: tuple[str, ...] = ()
    """Sub-protocols this server speaks, in preference order; empty: none is negotiated."""
    origins: tuple[str, ...] = ()
    """Allowed ``Origin`` values (RFC 6454 serialisation); empty: any, and requests without one."""
    hosts: tuple[str, ...] = ()
    """Allowed ``Host`` values (``name`` or ``name:port``, case-insensitive); empty: any."""
    cors_mode: int = 0
    """0: no ``Access-Control-Allow-Origin``; 1: ``*``; 2: the request's Origin, if it has one."""
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.keepalive_mechanism not in (KEEPALIVE_NONE, KEEPALIVE_PING, KEEPALIVE_PONG):
            raise ValueError(
                f"keepalive_mechanism must be 0 (none), 1 (Ping) or 2 (Pong), not {self.keepalive_mechanism!r}"
            )
        if not isinstance(self.keepalive_processes, int) or self.keepalive_processes < 1:
            raise ValueError(
                f"keepalive_processes must be a whole number >= 1, not {self.keepalive_processes!r}"
            )
        if self.cors_mode not in (0, 1, 2):
            raise ValueError(f"cors_mode must be 0, 1 or 2, not {self.cors_mode!r}")
        if not 0 < len(self.ping_application_data) <= 125:
            raise ValueError("ping_application_data must be 1 to 125 bytes")
        for name in ("keepalive_timeout", "keepalive_interval", "timer_interval"):
            _seconds(name, getattr(self, name), 0.01)
        _seconds("rm_delay_interval", self.rm_delay_interval, 0)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **overrides: Any) -> WsAdminSettings:
        """From a config block; keys may be spelled ``keepalive_timeout`` or ``keepalive-timeout``.
        Unknown keys are an error naming the key."""
        fields = {f for f in cls.__dataclass_fields__}
        kwargs: dict[str, Any] = {}
        for key, value in {**values, **overrides}.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ValueError(f"unknown WebSocket setting {key!r}")
            kwargs[name] = value
        for name in ("keepalive_mechanism", "keepalive_processes", "cors_mode"):
            if name in kwargs:
                try:
                    kwargs[name] = int(kwargs[name])
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be a whole number, not {kwargs[name]!r}") from None
        for name in ("keepalive_timeout", "keepalive_interval", "timer_interval", "rm_delay_interval"):
            if name in kwargs:
                kwargs[name] = _seconds(name, kwargs[name], 0)
        for name in ("sub_protocols", "origins", "hosts"):
            if name in kwargs:
                kwargs[name] = _strings(name, kwargs[name])
        if "ping_application_data" in kwargs and isinstance(kwargs["ping_application_data"], str):
            kwargs["ping_application_data"] = kwargs["ping_application_data"].encode()
        if "enabled" in kwargs and isinstance(kwargs["enabled"], str):
            kwargs["enabled"] = kwargs["enabled"].strip().lower() in ("1", "true", "yes", "on")
        return cls(**kwargs)

    @property
    def tick_interval(self) -> float:
        """How often the adapter should call :meth:`WsAdmin.tick`."""
        intervals = [self.timer_interval]
        if self.keepalive_mechanism != KEEPALIVE_NONE:
            intervals.append(self.keepalive_interval)
        return min(intervals)


class WsTransport(Protocol):
    """What the core needs from a server adapter for one connection. Each call must not block;
    errors (the socket is already gone) are the adapter's to swallow."""

    def send_ping(self, data: bytes) -> None: ...

    def send_pong(self, data: bytes) -> None: ...

    def send_close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""


class _Gone:
    """The transport of a connection whose TCP connection is gone: every call does nothing."""

    def send_ping(self, data: bytes) -> None:
        return None

    def send_pong(self, data: bytes) -> None:
        return None

    def send_close(self, code: int, reason: str) -> None:
        return None

    def abort(self) -> None:
        return None


_GONE = _Gone()


@dataclass(frozen=True)
class Endpoint:
    """One side of a connection as ``ws.dump`` prints it: ``ws:127.0.0.1:5060``."""

    proto: str  # "ws" or "wss"
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.proto}:{self.ip or '*'}:{self.port}"

    @classmethod
    def of(cls, address: Any, secure: bool = False) -> Endpoint:
        """From a socket address tuple (``(host, port, ...)``) or ``None``."""
        proto = "wss" if secure else "ws"
        if isinstance(address, (tuple, list)) and len(address) >= 2:
            return cls(proto, str(address[0]), int(address[1]))
        return cls(proto, "", 0)


@dataclass(frozen=True)
class HandshakeDecision:
    """The answer to a handshake: ``status`` 101 to accept (with ``subprotocol`` and ``headers``
    to add to the 101 response), anything else to refuse with that status and ``reason``."""

    status: int
    reason: str = ""
    subprotocol: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.status == 101


@dataclass(frozen=True)
class ClosedEvent:
    """The ``closed`` event (Kamailio's ``event_route[websocket:closed]``)."""

    server: str
    id: int
    remote: Endpoint
    local: Endpoint
    sub_protocol: str | None
    code: int | None
    reason: str
    closed_by: str  # "remote", "local" (a close we started), "keepalive", "lost"
    duration: float
    info: Mapping[str, Any]


class WsConnection:
    """One registered WebSocket connection; the adapter reports what happens on it."""

    def __init__(
        self,
        admin: WsAdmin,
        conn_id: int,
        transport: WsTransport,
        remote: Endpoint,
        local: Endpoint,
        sub_protocol: str | None,
        now: float,
        info: dict[str, Any] | Callable[[], dict[str, Any]],
    ) -> None:
        self.admin = admin
        self.id = conn_id
        self.transport = transport
        self.remote = remote
        self.local = local
        self.sub_protocol = sub_protocol
        self.opened = now
        self.last_used = now
        self.state = State.OPEN
        self.awaiting_pong = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_by = ""
        self.removed_at: float | None = None
        self.frames_in = 0
        self.info = info
        """Adapter-specific fields shown by ``ws.dump`` (JID, conference, endpoint...), or a
        function returning them when they change (a JID bound after the handshake)."""

    # -- reported by the adapter ------------------------------------------------------------------

    def received(self, now: float) -> None:
        """A frame (any opcode) arrived: the connection was used."""
        if self.state is State.REMOVING:
            return
        self.frames_in += 1
        self.last_used = now
        self.admin._touch(self)

    def pong_received(self, data: bytes, now: float) -> None:
        """A Pong arrived (call :meth:`received` for it too, or let this do it)."""
        self.received(now)
        if bytes(data).startswith(self.admin.settings.ping_application_data):
            self.awaiting_pong = False

    def close_received(self, code: int | None, reason: str, now: float) -> None:
        """The peer's Close frame arrived (the adapter's WebSocket library answers it)."""
        self.received(now)
        if self.state is State.OPEN:
            self.closed_by = "remote"
            self.close_code, self.close_reason = code, reason
        self.state = State.CLOSING

    def closing(self, code: int, reason: str) -> None:
        """The server itself started the closing handshake (not the operator: see :meth:`WsAdmin.close`)."""
        if self.state is State.OPEN:
            self.state = State.CLOSING
            self.closed_by = "local"
            self.close_code, self.close_reason = code, reason

    def lost(self, now: float, code: int | None = None, reason: str = "") -> None:
        """The TCP connection is gone: the connection is removed after ``rm_delay_interval``."""
        if self.state is State.REMOVING:
            return
        if not self.closed_by:
            self.closed_by = "lost"
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.state = State.REMOVING
        self.removed_at = now
        # kept for ``rm_delay_interval`` as a record only: let go of the adapter's connection (its
        # buffers, parser and session) now rather than when the record goes, which under a flood
        # of short connections held seconds' worth of them
        if callable(self.info):
            try:
                self.info = self.info()
            except Exception:  # the adapter's fields are for display only
                self.info = {}
        self.transport = _GONE
        self.admin._detach(self)

    # -- shown by ws.dump -------------------------------------------------------------------------

    def summary(self, now: float) -> str:
        """Kamailio's ``ws.dump`` line for this connection."""
        pong = "awaiting Pong, " if self.awaiting_pong else ""  # two spaces follow, as in Kamailio
        return (
            f"{self.id}: {self.remote} -> {self.local} (state: {self.state.value}, {pong} "
            f"last used {int(now - self.last_used)}s ago, sub-protocol: {self.sub_protocol or '**UNKNOWN**'})"
        )

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "id_hash": self.id % ID_HASH_SIZE,
            "src_proto": self.remote.proto,
            "src_ip": self.remote.ip,
            "src_port": self.remote.port,
            "dst_proto": self.local.proto,
            "dst_ip": self.local.ip,
            "dst_port": self.local.port,
            "state": self.state.value,
            "awaiting_pong": self.awaiting_pong,
            "last_used": int(now - self.last_used),
            "sub_protocol": self.sub_protocol,
            "age": round(now - self.opened, 3),
            "frames_in": self.frames_in,
            **self.extra(),
        }

    def extra(self) -> dict[str, Any]:
        try:
            return dict(self.info() if callable(self.info) else self.info)
        except Exception:  # the adapter's view of a half-torn-down connection
            return {}


class WsAdmin:
    """The connections of one WebSocket server and the operator's commands on them."""

    def __init__(
        self,
        server: str,
        settings: WsAdminSettings | None = None,
        *,
        on_closed: Callable[[ClosedEvent], None] | None = None,
        first_id: int = 1,
    ) -> None:
        self.server = server
        self.settings = settings or WsAdminSettings()
        self.enabled = self.settings.enabled
        self.on_closed: list[Callable[[ClosedEvent], None]] = [on_closed] if on_closed else []
        self._ids = itertools.count(first_id)
        self.connections: dict[int, WsConnection] = {}
        """Every live connection (not yet removed) by id; the ``used`` order is insertion order
        of :attr:`_used` (least recently used first)."""
        self._used: dict[int, None] = {}
        self._removing: dict[int, WsConnection] = {}
        self._last_keepalive: float | None = None
        self._last_timer: float | None = None
        # counters, as Kamailio's websocket statistics
        self.stats: dict[str, int] = {
            "successful_handshakes": 0,
            "failed_handshakes": 0,
            "local_closed_connections": 0,
            "remote_closed_connections": 0,
            "keepalive_closed_connections": 0,
            "closed_events": 0,
            "max_concurrent_connections": 0,
        }
        self.closed_counts: dict[str, int] = {}
        """``closed`` events by who ended the connection: remote, local, keepalive, lost."""

    # -- handshake ----------------------------------------------------------------------------------

    def check_handshake(
        self, *, host: str | None, origin: str | None, protocols: Iterable[str] = ()
    ) -> HandshakeDecision:
        """Decide a WebSocket upgrade request: 503 while disabled, 403 for a Host or Origin not
        allowed, 400 when the server has sub-protocols and the client offers none of them."""
        s = self.settings
        if not self.enabled:
            return self._refuse(503, "Service Unavailable: new WebSocket connections are disabled")
        if s.hosts:
            given = (host or "").strip().lower()
            allowed = {h.lower() for h in s.hosts}
            if not given or (given not in allowed and given.rsplit(":", 1)[0] not in allowed):
                return self._refuse(403, f"Forbidden: bad Host {(host or '')[:100]!r}")
        if s.origins and (origin is None or origin not in s.origins):
            return self._refuse(403, f"Forbidden: Origin {(origin or '')[:100]!r} not allowed")
        chosen: str | None = None
        if s.sub_protocols:
            offered = {p.strip().lower() for p in protocols if p.strip()}
            for candidate in s.sub_protocols:
                if candidate.lower() in offered:
                    chosen = candidate
                    break
            if chosen is None:
                return self._refuse(
                    400, "Bad Request: Sec-WebSocket-Protocol must offer " + " or ".join(s.sub_protocols)
                )
        headers: list[tuple[str, str]] = []
        if s.cors_mode == 1:
            headers.append(("Access-Control-Allow-Origin", "*"))
        elif s.cors_mode == 2 and origin:
            headers.append(("Access-Control-Allow-Origin", origin))
        return HandshakeDecision(101, "Switching Protocols", chosen, tuple(headers))

    def _refuse(self, status: int, reason: str) -> HandshakeDecision:
        self.stats["failed_handshakes"] += 1
        return HandshakeDecision(status, reason)

    # -- registry -----------------------------------------------------------------------------------

    def register(
        self,
        transport: WsTransport,
        *,
        remote: Endpoint,
        local: Endpoint,
        now: float,
        sub_protocol: str | None = None,
        info: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    ) -> WsConnection:
        """Add an upgraded connection; the returned object is how the adapter reports on it."""
        conn = WsConnection(self, next(self._ids), transport, remote, local, sub_protocol, now, info or {})
        self.connections[conn.id] = conn
        self._used[conn.id] = None
        self.stats["successful_handshakes"] += 1
        self.stats["max_concurrent_connections"] = max(
            self.stats["max_concurrent_connections"], len(self.connections)
        )
        return conn

    def get(self, conn_id: int) -> WsConnection:
        conn = self.connections.get(conn_id)
        if conn is None:
            raise WsAdminError(404, f"no WebSocket connection {conn_id}")
        return conn

    def _touch(self, conn: WsConnection) -> None:
        if conn.id in self._used:
            del self._used[conn.id]
            self._used[conn.id] = None

    def _detach(self, conn: WsConnection) -> None:
        self.connections.pop(conn.id, None)
        self._used.pop(conn.id, None)
        self._removing[conn.id] = conn

    # -- time ---------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Run whatever is due at ``now``: the keep-alive (every ``keepalive_interval``) and the
        removal timer (every ``timer_interval``)."""
        s = self.settings
        if s.keepalive_mechanism != KEEPALIVE_NONE and (
            self._last_keepalive is None or now - self._last_keepalive >= s.keepalive_interval
        ):
            self._last_keepalive = now
            for process in range(s.keepalive_processes):
                self._keepalive(now, process)
        if self._last_timer is None or now - self._last_timer >= s.timer_interval:
            self._last_timer = now
            self._timer(now)

    def _keepalive(self, now: float, process: int) -> None:
        s = self.settings
        check_time = now - s.keepalive_timeout
        for conn_id in list(self._used):  # least recently used first: stop at the first recent one
            conn = self.connections.get(conn_id)
            if conn is None:
                continue
            if conn.last_used >= check_time:
                break
            if conn.id % s.keepalive_processes != process:
                continue
            if conn.state is State.CLOSING or conn.awaiting_pong:
                log.warning(
                    "%s: WebSocket %d idle for %.0f s %s; dropping it",
                    self.server, conn.id, now - conn.last_used,
                    "while closing" if conn.state is State.CLOSING else "after a Ping",
                )  # fmt: skip
                self.stats["keepalive_closed_connections"] += 1
                if not conn.closed_by:
                    conn.closed_by = "keepalive"
                conn.transport.abort()
                conn.lost(now)
            elif s.keepalive_mechanism == KEEPALIVE_PING:
                conn.transport.send_ping(s.ping_application_data)
                conn.awaiting_pong = True
            else:
                conn.transport.send_pong(s.ping_application_data)

    def _timer(self, now: float) -> None:
        for conn in list(self._removing.values()):
            if conn.removed_at is not None and now - conn.removed_at >= self.settings.rm_delay_interval:
                del self._removing[conn.id]
                self._emit_closed(conn, now)

    def _emit_closed(self, conn: WsConnection, now: float) -> None:
        self.stats["closed_events"] += 1
        by = conn.closed_by or "lost"
        self.closed_counts[by] = self.closed_counts.get(by, 0) + 1
        log.info(
            "%s: WebSocket connection %d from %s has closed (code %s %s, by %s, after %.1f s)",
            self.server, conn.id, conn.remote, conn.close_code, conn.close_reason or "-", by,
            (conn.removed_at or now) - conn.opened,
        )  # fmt: skip
        if conn.closed_by == "remote":
            self.stats["remote_closed_connections"] += 1
        elif conn.closed_by == "local":
            self.stats["local_closed_connections"] += 1
        event = ClosedEvent(
            self.server, conn.id, conn.remote, conn.local, conn.sub_protocol, conn.close_code,
            conn.close_reason, conn.closed_by or "lost", (conn.removed_at or now) - conn.opened,
            conn.extra(),
        )  # fmt: skip
        for hook in self.on_closed:
            try:
                hook(event)
            except Exception:  # one bad hook must not stop the timer
                log.exception("%s: WebSocket closed hook failed", self.server)

    # -- the operator's commands (Kamailio's RPC) -------------------------------------------------------

    def dump(self, now: float, order: str | None = None) -> dict[str, Any]:
        """``ws.dump [order]``: the first 50 connections and ``info`` (``wscounter``, ``truncated``)."""
        order = order or "id_hash"
        if order not in ORDERS:
            raise WsAdminError(400, "Bad display order parameter (id_hash, used_desc or used_asc)")
        if order == "id_hash":
            buckets: dict[int, list[WsConnection]] = {}
            for conn in self.connections.values():
                buckets.setdefault(conn.id % ID_HASH_SIZE, []).append(conn)
            ordered = [c for h in sorted(buckets) for c in reversed(buckets[h])]
        else:
            ids = list(self._used)
            if order == "used_asc":
                ids.reverse()
            ordered = [self.connections[i] for i in ids]
        shown = ordered[:DUMP_LIMIT]
        return {
            "server": self.server,
            "enabled": self.enabled,
            "order": order,
            "connections": [c.summary(now) for c in shown],
            "details": [c.describe(now) for c in shown],
            "info": {
                "wscounter": len(shown),
                "truncated": "yes" if len(ordered) > DUMP_LIMIT else "no",
                "total": len(ordered),
            },
        }

    def close(self, conn_id: int, status: int | None = None, reason: str | None = None) -> dict[str, Any]:
        """``ws.close ID [STATUS REASON]``: start the closing handshake (default 1000 "Normal closure")."""
        code = NORMAL_CLOSURE[0] if status is None else status
        text = NORMAL_CLOSURE[1] if reason is None else reason
        if not isinstance(code, int) or not (1000 <= code <= 4999) or code in (1004, 1005, 1006, 1015):
            raise WsAdminError(
                400, f"bad close status {code!r} (RFC 6455 section 7.4: 1000-4999, not 1004-1006, 1015)"
            )
        if len(text.encode()) > MAX_REASON_BYTES:
            raise WsAdminError(400, f"close reason longer than {MAX_REASON_BYTES} bytes")
        conn = self.get(conn_id)
        if conn.state is not State.OPEN:
            raise WsAdminError(409, f"WebSocket connection {conn_id} is already {conn.state.value}")
        conn.transport.send_close(code, text)
        conn.state = State.CLOSING
        conn.closed_by = "local"
        conn.close_code, conn.close_reason = code, text
        log.info("%s: WebSocket %d closed by the operator: %d %s", self.server, conn_id, code, text)
        return {"id": conn_id, "status": code, "reason": text}

    def ping(self, conn_id: int) -> dict[str, Any]:
        """``ws.ping ID``: send a Ping carrying ``ping_application_data``; a Pong is then awaited."""
        conn = self._open(conn_id)
        conn.transport.send_ping(self.settings.ping_application_data)
        conn.awaiting_pong = True
        return {"id": conn_id, "sent": "ping"}

    def pong(self, conn_id: int) -> dict[str, Any]:
        """``ws.pong ID``: send an unsolicited Pong (RFC 6455 5.5.3: a one-way heartbeat)."""
        conn = self._open(conn_id)
        conn.transport.send_pong(self.settings.ping_application_data)
        return {"id": conn_id, "sent": "pong"}

    def _open(self, conn_id: int) -> WsConnection:
        conn = self.get(conn_id)
        if conn.state is not State.OPEN:
            raise WsAdminError(409, f"WebSocket connection {conn_id} is {conn.state.value}")
        return conn

    def disable(self) -> dict[str, Any]:
        """``ws.disable``: refuse new connections (503); open ones stay."""
        if self.enabled:
            log.warning("%s: disabling WebSockets - new connections will be refused", self.server)
        self.enabled = False
        return {"enabled": False}

    def enable(self) -> dict[str, Any]:
        """``ws.enable``: accept new connections again."""
        if not self.enabled:
            log.warning("%s: enabling WebSockets", self.server)
        self.enabled = True
        return {"enabled": True}

    def status(self) -> dict[str, Any]:
        s = self.settings
        return {
            "server": self.server,
            "enabled": self.enabled,
            "connections": len(self.connections),
            "removing": len(self._removing),
            "settings": {
                "keepalive_mechanism": s.keepalive_mechanism,
                "keepalive_timeout": s.keepalive_timeout,
                "keepalive_processes": s.keepalive_processes,
                "keepalive_interval": s.keepalive_interval,
                "timer_interval": s.timer_interval,
                "rm_delay_interval": s.rm_delay_interval,
                "sub_protocols": list(s.sub_protocols),
                "origins": list(s.origins),
                "hosts": list(s.hosts),
                "cors_mode": s.cors_mode,
            },
            "stats": dict(self.stats),
        }


@dataclass
class RecordedTransport:
    """A :class:`WsTransport` that records what it was asked to send; for tests and dry runs."""

    sent: list[tuple[str, Any]] = field(default_factory=list)

    def send_ping(self, data: bytes) -> None:
        self.sent.append(("ping", data))

    def send_pong(self, data: bytes) -> None:
        self.sent.append(("pong", data))

    def send_close(self, code: int, reason: str) -> None:
        self.sent.append(("close", (code, reason)))

    def abort(self) -> None:
        self.sent.append(("abort", None))

"""What a transport may use of the server: the context object the TCP, WebSocket and BOSH
adapters are given (and nothing else of :class:`~.server.XmppServer`).

The transports turn bytes into stream events and hand them to a :class:`~.session.ClientSession`
through its one entry point, :meth:`~.session.ClientSession.receive`; the session answers
through its :class:`~.session.Link`. Sessions are made in one place, :meth:`ServerContext.open_session`,
whatever carries them. This module imports no transport and not the server, so there is no import
cycle between them: the server implements the protocol and hands itself to the transports.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ..common.ws_admin import WsAdmin
    from .config import XmppConfig
    from .session import ClientSession, Link, SessionLimits
    from .transports.http import HttpResponse
    from .transports.slices import SliceScheduler
    from .xml import ElementBudget


class Connection(Protocol):
    """A client connection as the server tracks it (TCP stream or WebSocket)."""

    transport_name: str
    started: float
    last_rx: float

    @property
    def session_obj(self) -> ClientSession | None: ...


class ServerContext(Protocol):
    config: XmppConfig
    limits: SessionLimits
    element_budget: ElementBudget  # elements in unfinished stanzas over every TCP stream
    tls_context: ssl.SSLContext | None
    slices: SliceScheduler
    ws_admin: WsAdmin  # /xmpp-websocket's connections and the operator's ws.* commands
    websocket_path: str

    def open_session(self, link: Link) -> ClientSession:
        """A new client session speaking over ``link`` (the only place sessions are made)."""
        ...

    def is_internal(self, peer_ip: str) -> bool: ...

    def token_seen(self, token: str) -> None:
        """A connection brought a token (``?token=``): its signing key may be fetched ahead of SASL."""
        ...

    def client_address(self, peer_ip: str, headers: dict[str, str]) -> str: ...

    def is_trusted_proxy(self, peer_ip: str) -> bool:
        """An HTTP peer whose forwarding headers name the client (``http.trusted-proxies``)."""
        ...

    def admit_connection(self, address: str, port: str) -> bool:
        """A new connection from ``address`` (on the ``port`` named) may be served: within the
        per-address limits (``limits.connections-*``), and then counted open until
        :meth:`release_connection`. False: refuse it now (logged here)."""
        ...

    def release_connection(self, address: str) -> None: ...

    def refuse_connection(self, transport: asyncio.BaseTransport, address: str) -> None:
        """Reset a connection :meth:`admit_connection` refused, after ``limits.connection-refusal-delay``
        (it is not read meanwhile) or at once when too many of its address wait."""
        ...

    def connection_opened(self, conn: Connection) -> None: ...

    def connection_closed(self, conn: Connection) -> None: ...

    def http_connection_lost(self, conn: object) -> None: ...

    def http_idle(self, conn: object) -> None:
        """An HTTP connection now waits for its next request (keep-alive)."""

    def http_active(self, conn: object) -> None:
        """An HTTP connection has a request in progress again."""

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
    ) -> HttpResponse | Awaitable[HttpResponse]: ...

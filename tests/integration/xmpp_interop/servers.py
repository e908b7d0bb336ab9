"""XMPP servers under test, started as real processes on free loopback ports.

:func:`start_parley` runs ``python -m services.xmpp``; :func:`prosody_server` runs Debian's Prosody
as the reference peer, through the one Prosody runner (tests/integration/prosody.py), with the
same hosts and service accounts.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.integration.harness import ServiceProcess, free_port
from tests.integration.prosody import Prosody

DOMAIN = "meet.jitsi"
AUTH_DOMAIN = "auth.meet.jitsi"
MUC_DOMAIN = "muc.meet.jitsi"
INTERNAL_MUC_DOMAIN = "internal-muc.meet.jitsi"
FOCUS_PASSWORD = "focus-secret"
JVB_PASSWORD = "jvb-secret"


@dataclass
class XmppEndpoint:
    """Where a test reaches the server under test."""

    kind: str
    c2s_port: int
    http_port: int
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/xmpp-websocket"

    @property
    def bosh_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/http-bind"


def parley_env(c2s_port: int, http_port: int, **extra: str) -> dict[str, str]:
    return {
        "XMPP_C2S_PORT": str(c2s_port),
        "XMPP_HTTP_PORT": str(http_port),
        "XMPP_BIND_ADDRESS": "127.0.0.1",
        "JICOFO_AUTH_PASSWORD": FOCUS_PASSWORD,
        "JVB_AUTH_PASSWORD": JVB_PASSWORD,
        "LOG_LEVEL": "INFO",
        **extra,
    }


def start_parley(name: str = "xmpp", **extra: str) -> tuple[ServiceProcess, XmppEndpoint]:
    c2s, http = free_port(), free_port()
    proc = ServiceProcess.python_module(
        name, "services.xmpp", parley_env(c2s, http, **extra), health_url=f"http://127.0.0.1:{http}/health"
    )
    proc.start()
    return proc, XmppEndpoint("parley", c2s, http)


@contextlib.contextmanager
def prosody_server(**options: Any) -> Iterator[tuple[Prosody, XmppEndpoint]]:
    """Debian's Prosody (tests/integration/prosody.py) with this suite's hosts and service
    accounts; ``options`` go to :class:`Prosody`."""
    accounts = {"focus": FOCUS_PASSWORD, "jvb": JVB_PASSWORD}
    with Prosody(domain=DOMAIN, accounts=accounts, **options) as prosody:
        yield prosody, XmppEndpoint("prosody", prosody.c2s_port, prosody.http_port, {"dir": prosody.workdir})


def raw_connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def recv_until(sock: socket.socket, needle: bytes, timeout: float = 5.0) -> bytes:
    """Read until ``needle`` shows up or the peer closes; returns everything read."""
    deadline = time.monotonic() + timeout
    buf = b""
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{needle!r} not received; got {buf[-500:]!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf

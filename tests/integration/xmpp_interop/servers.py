"""XMPP servers under test, started as real processes on free loopback ports.

``ParleyBroker`` runs ``python -m services.xmpp``; ``ProsodyServer`` runs Debian's Prosody with a
configuration written to a temporary directory (its own ports, data directory, an anonymous guest
host, an auth host with service accounts and two MUC components), as the reference peer.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import ServiceProcess, free_port, wait_tcp

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


PROSODY_CONFIG = """
pidfile = "{dir}/prosody.pid"
certificates = "{dir}"
data_path = "{dir}/data"
plugin_paths = {{ }}
admins = {{ "focus@{auth}" }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "bosh"; "websocket"; "smacks"; }}
modules_disabled = {{ "s2s"; "offline"; "posix" }}
daemonize = false
log = {{ info = "{dir}/prosody.log"; error = "{dir}/prosody.err" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ {http} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
consider_bosh_secure = true
cross_domain_websocket = true
cross_domain_bosh = true
authentication = "internal_plain"
storage = "internal"
limits = {{ c2s = {{ rate = "10mb/s"; burst = "10mb" }} }}
network_settings = {{ read_size = 65536; nagle = false }}

VirtualHost "{domain}"
    authentication = "anonymous"
    ssl = {{ }}

VirtualHost "{auth}"
    authentication = "internal_plain"
    ssl = {{ }}

Component "{muc}" "muc"
    restrict_room_creation = false
    muc_room_locking = false
    muc_room_default_public_jids = true

Component "{imuc}" "muc"
    muc_room_locking = false
"""


def prosody_available() -> bool:
    return shutil.which("prosody") is not None


@contextlib.contextmanager
def prosody_server():
    """Debian's Prosody, configured in a temporary directory for this test run."""
    workdir = Path(tempfile.mkdtemp(prefix="parley-prosody-"))
    c2s, http = free_port(), free_port()
    (workdir / "data").mkdir()
    cfg = workdir / "prosody.cfg.lua"
    cfg.write_text(
        PROSODY_CONFIG.format(
            dir=workdir,
            c2s=c2s,
            http=http,
            domain=DOMAIN,
            auth=AUTH_DOMAIN,
            muc=MUC_DOMAIN,
            imuc=INTERNAL_MUC_DOMAIN,
        )
    )
    env = {**os.environ}
    # prosodyctl drops root privileges to the prosody user: let it write its data directory
    with contextlib.suppress(LookupError, PermissionError):
        for path in (workdir, workdir / "data"):
            shutil.chown(path, "prosody", "prosody")
    try:
        for user, password in (("focus", FOCUS_PASSWORD), ("jvb", JVB_PASSWORD)):
            subprocess.run(
                ["prosodyctl", "--config", str(cfg), "register", user, AUTH_DOMAIN, password],
                check=True,
                env=env,
                capture_output=True,
                timeout=30,
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    proc = subprocess.Popen(
        ["prosody", "--config", str(cfg), "-F"],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_tcp("127.0.0.1", c2s, 20)
        wait_tcp("127.0.0.1", http, 20)
        yield proc, XmppEndpoint("prosody", c2s, http, {"dir": workdir})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


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

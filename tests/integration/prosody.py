"""Debian's Prosody, configured the way Jitsi deploys it, in a temporary directory on free ports.

The one runner for every test and benchmark that needs Prosody as the reference peer:

    with Prosody(accounts={"focus": "s3cret", "jvb": "s3cret"}) as xmpp:
        ... connect to 127.0.0.1:xmpp.c2s_port ...
        xmpp.restart()   # same ports, same data: clients must reconnect

Hosts (docker-jitsi-meet names, all overridable):

* ``domain`` (``meet.jitsi``): the client host, guests log in with SASL ANONYMOUS;
* ``auth_domain`` (``auth.<domain>``): service accounts (SCRAM-SHA-1 / PLAIN, stored hashed),
  created with ``prosodyctl register`` from ``accounts``;
* ``muc_domain`` (``muc.<domain>``): conference rooms;
* ``internal_muc_domain`` (``internal-muc.<domain>``): the brewery rooms of bridges and focus.

Service accounts are server admins, so only they create rooms where ``restrict_room_creation``
is on (the internal MUC always; the conference MUC when ``focus_creates_rooms``). Plain-text
c2s is allowed on loopback (no certificates in tests). HTTP serves BOSH and XMPP over WebSocket.

Server settings follow docker-jitsi-meet's production configuration: the epoll network backend
with a listen backlog of 511, MUC rooms in memory, and ``mod_limits`` on c2s. The c2s rate limit
is the same token bucket Parley's broker applies by default to service accounts (1 MiB/s, 2 MiB
of burst); Parley reads guests at 32 KiB/s after 256 KiB, more than a benchmark client's share
of a groupchat burst, so a side-by-side benchmark throttles both servers alike.

Prosody and ``prosodyctl`` both run as the invoking user (``run_as_root``): as root, prosodyctl
would otherwise switch to the ``prosody`` user and fail to read or write this temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from services.common import xmpp_names
from tests.integration.harness import free_port, wait_tcp

# Parley's broker default (services/xmpp/reference.conf: xmpp.limits): 1 MiB/s, 2 MiB of burst.
C2S_RATE_BYTES_PER_SECOND = 1048576
C2S_BURST_SECONDS = 2

CONFIG = """
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
run_as_root = true
admins = {{ {admins} }}
network_backend = "epoll"
network_settings = {{ tcp_backlog = 511 }}
modules_enabled = {{
    "roster"; "saslauth"; "disco"; "ping"; "limits"; "bosh"; "websocket"; "smacks"; {modules}
}}
modules_disabled = {{ "s2s"; "offline"; "posix" }}
limits = {{ c2s = {{ rate = "{rate}b/s"; burst = "{burst}s" }} }}
daemonize = false
log = {{ {level} = "{dir}/prosody.log"; error = "{dir}/prosody.err" }}
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
storage = "internal"
{extra}

VirtualHost "{domain}"
    authentication = "anonymous"
    ssl = {{ }}

VirtualHost "{auth_domain}"
    authentication = "internal_hashed"
    ssl = {{ }}

Component "{muc_domain}" "muc"
    storage = "memory"
    restrict_room_creation = {restrict_conference}
    muc_room_locking = false
    muc_room_default_public_jids = true
    muc_room_cache_size = 1000

Component "{internal_muc_domain}" "muc"
    storage = "memory"
    restrict_room_creation = true
    muc_room_locking = false
    muc_room_default_public_jids = true
"""


def prosody_available() -> bool:
    return shutil.which("prosody") is not None and shutil.which("prosodyctl") is not None


class Prosody:
    def __init__(
        self,
        *,
        domain: str = "meet.jitsi",
        auth_domain: str | None = None,
        muc_domain: str | None = None,
        internal_muc_domain: str | None = None,
        accounts: dict[str, str] | None = None,
        focus_creates_rooms: bool = False,
        extra_modules: tuple[str, ...] = (),
        log_level: str = "info",
        extra_config: str = "",
    ) -> None:
        """``extra_config``: more global Lua settings, appended after the defaults (a later
        assignment of the same name wins)."""
        self.domain = domain
        self.auth_domain = auth_domain or xmpp_names.auth_domain(domain)
        self.muc_domain = muc_domain or xmpp_names.muc_domain(domain)
        self.internal_muc_domain = internal_muc_domain or xmpp_names.internal_muc_domain(domain)
        self.accounts = dict(accounts or {})
        self.focus_creates_rooms = focus_creates_rooms
        self.extra_modules = extra_modules
        self.log_level = log_level
        self.extra_config = extra_config
        self.workdir = Path(tempfile.mkdtemp(prefix="parley-prosody-"))
        self.c2s_port = free_port()
        self.http_port = free_port()
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.proc: subprocess.Popen[bytes] | None = None
        self._configured = False

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("prosody is not running")
        return self.proc.pid

    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/xmpp-websocket"

    @property
    def bosh_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/http-bind"

    def config_text(self) -> str:
        admins = "; ".join(f'"{user}@{self.auth_domain}"' for user in self.accounts)
        return CONFIG.format(
            dir=self.workdir,
            admins=admins,
            modules="".join(f'"{m}"; ' for m in self.extra_modules),
            rate=C2S_RATE_BYTES_PER_SECOND,
            burst=C2S_BURST_SECONDS,
            level=self.log_level,
            c2s=self.c2s_port,
            http=self.http_port,
            extra=self.extra_config,
            domain=self.domain,
            auth_domain=self.auth_domain,
            muc_domain=self.muc_domain,
            internal_muc_domain=self.internal_muc_domain,
            restrict_conference="true" if self.focus_creates_rooms else "false",
        )

    def _configure(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)
        self.config_path.write_text(self.config_text())
        for user, password in self.accounts.items():
            self.register(user, password)
        self._configured = True

    def register(self, user: str, password: str, host: str | None = None) -> None:
        """Create (or reset) an account with ``prosodyctl register``."""
        result = subprocess.run(
            [
                "prosodyctl",
                "--config",
                str(self.config_path),
                "register",
                user,
                host or self.auth_domain,
                password,
            ],
            capture_output=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"prosodyctl register {user} failed ({result.returncode}):\n"
                + (result.stdout + result.stderr).decode(errors="replace")
            )

    def start(self, timeout: float = 20.0) -> Prosody:
        if not self._configured:
            try:
                self._configure()
            except BaseException:
                self.close()
                raise
        self.proc = subprocess.Popen(
            ["prosody", "--config", str(self.config_path), "-F"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_tcp("127.0.0.1", self.c2s_port, timeout)
            wait_tcp("127.0.0.1", self.http_port, timeout)
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"prosody did not start:\n{self.log()}") from exc
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        """Stop and start again on the same ports with the same data (a broker restart)."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def log(self, tail: int = 100) -> str:
        out = []
        for name in ("prosody.log", "prosody.err"):
            with contextlib.suppress(OSError):
                out.extend((self.workdir / name).read_text(errors="replace").splitlines()[-tail:])
        return "\n".join(out)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Prosody:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

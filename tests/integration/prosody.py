"""Debian's Prosody, configured the way Jitsi deploys it, in a temporary directory on free ports.

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
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration.harness import free_port, wait_tcp

CONFIG = """
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
admins = {{ {admins} }}
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "bosh"; "websocket"; "smacks"; {modules} }}
modules_disabled = {{ "s2s"; "offline"; "posix" }}
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

VirtualHost "{domain}"
    authentication = "anonymous"
    ssl = {{ }}

VirtualHost "{auth_domain}"
    authentication = "internal_hashed"
    ssl = {{ }}

Component "{muc_domain}" "muc"
    restrict_room_creation = {restrict_conference}
    muc_room_locking = false
    muc_room_default_public_jids = true

Component "{internal_muc_domain}" "muc"
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
    ) -> None:
        self.domain = domain
        self.auth_domain = auth_domain or f"auth.{domain}"
        self.muc_domain = muc_domain or f"muc.{domain}"
        self.internal_muc_domain = internal_muc_domain or f"internal-muc.{domain}"
        self.accounts = dict(accounts or {})
        self.focus_creates_rooms = focus_creates_rooms
        self.extra_modules = extra_modules
        self.log_level = log_level
        self.workdir = Path(tempfile.mkdtemp(prefix="parley-prosody-"))
        self.c2s_port = free_port()
        self.http_port = free_port()
        self.config_path = self.workdir / "prosody.cfg.lua"
        self.proc: subprocess.Popen[bytes] | None = None
        self._configured = False

    @property
    def websocket_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/xmpp-websocket"

    @property
    def bosh_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/http-bind"

    def _configure(self) -> None:
        # prosodyctl (run as root) switches to the 'prosody' user: it must read the config and own
        # the data directory; the server itself runs as the invoking user.
        self.workdir.chmod(0o755)
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        with contextlib.suppress(KeyError, PermissionError, OSError):
            entry = pwd.getpwnam("prosody")
            os.chown(data, entry.pw_uid, entry.pw_gid)
        admins = "; ".join(f'"{user}@{self.auth_domain}"' for user in self.accounts)
        self.config_path.write_text(
            CONFIG.format(
                dir=self.workdir,
                admins=admins,
                modules="".join(f'"{m}"; ' for m in self.extra_modules),
                level=self.log_level,
                c2s=self.c2s_port,
                http=self.http_port,
                domain=self.domain,
                auth_domain=self.auth_domain,
                muc_domain=self.muc_domain,
                internal_muc_domain=self.internal_muc_domain,
                restrict_conference="true" if self.focus_creates_rooms else "false",
            )
        )
        self.config_path.chmod(0o644)
        for user, password in self.accounts.items():
            self.register(user, password)
        self._configured = True

    def register(self, user: str, password: str, host: str | None = None) -> None:
        """Create (or reset) an account with ``prosodyctl register``."""
        subprocess.run(
            [
                "prosodyctl",
                "--config",
                str(self.config_path),
                "register",
                user,
                host or self.auth_domain,
                password,
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def start(self, timeout: float = 20.0) -> Prosody:
        if not self._configured:
            self._configure()
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

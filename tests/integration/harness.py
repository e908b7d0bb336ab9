"""Start real Parley services (and real peers) as processes for integration tests.

Every service runs as ``python -m services.<name>`` with its settings in environment variables, the
same way the launcher and the Docker images run it. A :class:`ServiceProcess` captures the
process's log to a file (printed when a test fails), waits for its liveness endpoint, and stops it
with SIGTERM (then SIGKILL) so no process outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


# Ports handed to services come from below the kernel's ephemeral range (32768-60999 on Linux):
# a port the kernel picked for ``bind(0)`` and released can be taken again by any outgoing
# connection (a browser, a TURN allocation, an HTTP client) before the service binds it.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_rng = random.Random(os.getpid() ^ time.monotonic_ns())


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _fresh_port(kinds: tuple[int, ...]) -> int:
    for _ in range(500):
        port = _rng.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        if all(_bindable(port, kind) for kind in kinds):
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free on every address for ``kind`` (TCP by default, ``socket.SOCK_DGRAM`` for UDP).

    Never the same port twice in one test run, and never one the kernel hands out for outgoing
    connections, so nothing else takes it between this call and the service binding it.
    """
    return _fresh_port((kind,))


def free_tcp_udp_port() -> int:
    """A port number free for both TCP and UDP (the bridge's media port wants UDP)."""
    return _fresh_port((socket.SOCK_STREAM, socket.SOCK_DGRAM))


# A whole launcher stack (``python -m services.launcher up --port-offset N``) spans its plan's ports
# plus N: 3478 (TURN) up to 10002 (the third bridge's media port) at offset 0. Offsets are picked so
# that every port stays below the range above, hence below the ephemeral range too.
_LAUNCHER_PORT_SPAN = 10100
_offsets_handed_out: set[int] = set()


def free_launcher_offset(bridges: int = 2) -> int:
    """A ``--port-offset`` whose whole launcher plan is free, never the same twice in one run."""
    from services.launcher.plan import StackSettings, build_plan
    from services.launcher.supervisor import port_conflicts

    candidates = [
        o for o in range(1000, _PORT_RANGE[0] - _LAUNCHER_PORT_SPAN, 97) if o not in _offsets_handed_out
    ]
    _rng.shuffle(candidates)
    for offset in candidates:
        plan = build_plan(StackSettings(port_offset=offset, bridges=bridges))
        if (
            not port_conflicts(plan)
            and max(p for pr in plan.processes for p in [*pr.tcp_ports, *pr.udp_ports]) < _PORT_RANGE[0]
        ):
            _offsets_handed_out.add(offset)
            return offset
    raise RuntimeError("no free port range for a launcher stack")


def wait_tcp(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
        time.sleep(0.05)


class ServiceProcess:
    """One running service. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        health_url: str | None = None,
        tcp_port: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.health_url = health_url
        self.tcp_port = tcp_port
        self.cwd = cwd or REPO
        self.log_path = Path(tempfile.mkstemp(prefix=f"parley-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def python_module(cls, name: str, module: str, env: dict[str, str], **kw: object) -> ServiceProcess:
        return cls(name, [PYTHON, "-m", module], env, **kw)  # type: ignore[arg-type]

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready(timeout)
        except Exception:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            if self.health_url:
                return httpx.get(self.health_url, timeout=1.0).status_code == 200
            if self.tcp_port:
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5):
                    return True
            return True
        except (httpx.HTTPError, OSError):
            return False

    def log(self, tail: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self, timeout: float = 10.0) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # anything the service itself spawned in its group goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tcp_udp_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def free_block(size: int, low: int = 12000, high: int = 30000) -> int:
    """The first port of ``size`` consecutive ports free for TCP and UDP (below the ephemeral range)."""
    rng = random.Random()
    for _ in range(400):
        base = rng.randrange(low, high - size)
        if all(_tcp_udp_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no free block of ports")

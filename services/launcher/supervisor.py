"""Runs a :class:`StackPlan` as local processes, docker-compose style.

- refuses to start when a port of the plan is taken, naming the port and the service;
- starts the services in dependency order, each after the previous one is healthy;
- prefixes every output line with the service's name (``jvb1  | ...``);
- restarts a service that exits, like compose's ``restart: unless-stopped``: after a back-off
  (:class:`RestartBackoff`: 1 s doubling to 30 s, back to 1 s once it ran 30 s) and with a log line,
  killing whatever its process group left behind (nginx workers still holding the port) first;
- stops everything in reverse order on SIGINT/SIGTERM, and only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from services.common.stun import StunError, binding_request, parse_server
from services.launcher.plan import STATE_FILE, ProcessSpec, StackPlan, stack_state


class StackError(Exception):
    """The stack cannot start or has failed; the message says which service and why."""


def port_conflicts(plan: StackPlan, host: str = "127.0.0.1") -> list[str]:
    """Human-readable list of the plan's ports that something else already holds."""
    taken = []
    for proc in plan.processes:
        for port, kind, label in [(p, socket.SOCK_STREAM, "TCP") for p in proc.tcp_ports] + [
            (p, socket.SOCK_DGRAM, "UDP") for p in proc.udp_ports
        ]:
            with socket.socket(socket.AF_INET, kind) as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError:
                    taken.append(f"{label} port {port} (needed by {proc.name}) is already in use")
    return taken


def prepare_run_dir(plan: StackPlan) -> None:
    nginx_dir = plan.settings.run_dir / "nginx"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (nginx_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    # nginx workers run as an unprivileged user when the launcher runs as root
    for path in [plan.settings.run_dir, nginx_dir, nginx_dir / "tmp", *(nginx_dir / "tmp").iterdir()]:
        with contextlib.suppress(OSError):
            path.chmod(0o777 if "tmp" in path.parts else 0o755)
    (nginx_dir / "nginx.conf").write_text(plan.nginx_config())
    (plan.settings.run_dir / STATE_FILE).write_text(json.dumps(stack_state(plan), indent=1) + "\n")


async def _healthy(http: httpx.AsyncClient, url: str) -> bool:
    """HTTP 200 from an ``http://`` URL, or a STUN Binding answer from a ``stun:`` one (coturn)."""
    if url.startswith("stun:"):
        with contextlib.suppress(StunError, OSError, ValueError):
            await binding_request(parse_server(url), wait=1.0, attempts=1)
            return True
        return False
    with contextlib.suppress(httpx.HTTPError):
        return (await http.get(url)).status_code == 200
    return False


@dataclass
class Running:
    spec: ProcessSpec
    proc: asyncio.subprocess.Process
    pump: asyncio.Task[None]
    started: float = 0.0
    restarts: int = 0


@dataclass
class RestartBackoff:
    """How long to wait before restarting a service that exited (pure).

    Doubles from ``initial`` up to ``maximum`` while the service keeps failing; a run of at least
    ``reset_after`` seconds counts as healthy and starts again from ``initial``.
    """

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 30.0
    _next: float = 0.0

    def delay(self, uptime: float) -> float:
        if uptime >= self.reset_after or self._next == 0.0:
            self._next = self.initial
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay


class Supervisor:
    def __init__(
        self,
        plan: StackPlan,
        out: Callable[[str], None] | None = None,
        start_timeout: float = 40.0,
        backoff: Callable[[], RestartBackoff] = RestartBackoff,
    ) -> None:
        self.plan = plan
        self.out = out or (lambda line: print(line, flush=True))
        self.start_timeout = start_timeout
        self.backoff = backoff
        self.running: list[Running] = []
        self.stopping = False
        self._width = max(len(p.name) for p in plan.processes)

    def say(self, name: str, line: str) -> None:
        self.out(f"{name.ljust(self._width)} | {line}")

    async def _pump(self, spec: ProcessSpec, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            self.say(spec.name, line.decode(errors="replace").rstrip())

    async def start(self) -> None:
        conflicts = port_conflicts(self.plan)
        if conflicts:
            raise StackError("cannot start: " + "; ".join(conflicts))
        if not shutil.which(self.plan.settings.nginx_binary):
            raise StackError(f"nginx not found at {self.plan.settings.nginx_binary} (apt-get install nginx)")
        prepare_run_dir(self.plan)
        for spec in self.plan.processes:
            running = await self._spawn(spec)
            self.running.append(running)
            await self._wait_healthy(running)

    async def _spawn(self, spec: ProcessSpec) -> Running:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        pump = asyncio.create_task(self._pump(spec, proc.stdout))
        return Running(spec, proc, pump, started=time.monotonic())

    async def _wait_healthy(self, running: Running) -> None:
        spec, proc = running.spec, running.proc
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(timeout=1.0) as http:
            while True:
                if proc.returncode is not None:
                    raise StackError(
                        f"{spec.name} exited with status {proc.returncode} during start "
                        f"(see its log lines above)"
                    )
                if await _healthy(http, spec.health_url):
                    self.say(spec.name, f"healthy ({spec.health_url})")
                    return
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{spec.name} did not become healthy within {self.start_timeout:.0f}s "
                        f"({spec.health_url})"
                    )
                await asyncio.sleep(0.2)

    async def supervise(self) -> None:
        """Restart every service that exits, until cancelled (compose's ``unless-stopped``)."""
        watchers = [asyncio.create_task(self._watch(i)) for i in range(len(self.running))]
        try:
            await asyncio.gather(*watchers)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, index: int) -> None:
        backoff = self.backoff()
        while not self.stopping:
            running = self.running[index]
            status = await running.proc.wait()
            if self.stopping:
                return
            uptime = time.monotonic() - running.started
            delay = backoff.delay(uptime)
            self.say(
                running.spec.name,
                f"exited with status {status} after {uptime:.1f}s; restarting in {delay:.0f}s "
                f"(restart {running.restarts + 1})",
            )
            _kill_group(running.proc.pid)  # e.g. nginx workers of a killed master still hold the port
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(running.pump, 2)
            await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                fresh = await self._spawn(running.spec)
            except OSError as exc:
                self.say(running.spec.name, f"cannot restart: {exc}")
                continue
            fresh.restarts = running.restarts + 1
            self.running[index] = fresh
            try:
                await self._wait_healthy(fresh)
                self.say(running.spec.name, f"restarted (restart {fresh.restarts})")
            except StackError as exc:
                self.say(running.spec.name, f"restart failed: {exc}")
                if fresh.proc.returncode is None:
                    _kill_group(fresh.proc.pid)

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping = True
        for r in reversed(self.running):
            if r.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(r.proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(r.proc.wait(), grace)
                except TimeoutError:
                    self.say(r.spec.name, f"did not stop within {grace:.0f}s; killing it")
                    _kill_group(r.proc.pid)
                    await r.proc.wait()
            _kill_group(r.proc.pid)  # anything left in its group
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(r.pump, 2)
        self.running.clear()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_stack(plan: StackPlan) -> int:
    """Start the stack, print where to open it, keep it running until Ctrl-C or SIGTERM.

    Returns the exit status: 0 after Ctrl-C/SIGTERM, 1 when the stack could not start, 130 when
    interrupted during start.
    """
    sup = Supervisor(plan)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    status = 0
    try:
        starting = asyncio.create_task(sup.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StackError):
                await starting
            sup.say("parley", "interrupted during start")
            return 130
        starting.result()
        sup.say("parley", f"the stack is up: open {plan.settings.url}/ (Ctrl-C stops it)")
        supervising = asyncio.create_task(sup.supervise())
        await asyncio.wait({supervising, stopping}, return_when=asyncio.FIRST_COMPLETED)
        sup.stopping = True
        if supervising.done() and supervising.exception() is not None:
            sup.say("parley", f"supervision failed: {supervising.exception()!r}")
        supervising.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervising
        sup.say("parley", "stopping")
    except StackError as exc:
        print(f"parley: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        await sup.stop()
        sup.say("parley", "stopped")
    return status

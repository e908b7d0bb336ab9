"""Runs a :class:`StackPlan` as local processes, docker-compose style.

- refuses to start when a port of the plan is taken, naming the port and the service;
- starts the services in dependency order, each after the previous one is healthy;
- prefixes every output line with the service's name (``jvb1  | ...``);
- stops everything in reverse order on SIGINT/SIGTERM, or when any service dies (exit status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from services.launcher.plan import ProcessSpec, StackPlan


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


class Supervisor:
    def __init__(
        self, plan: StackPlan, out: Callable[[str], None] | None = None, start_timeout: float = 40.0
    ) -> None:
        self.plan = plan
        self.out = out or (lambda line: print(line, flush=True))
        self.start_timeout = start_timeout
        self.running: list[Running] = []
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
            await self._start_one(spec)

    async def _start_one(self, spec: ProcessSpec) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        self.running.append(Running(spec, proc, asyncio.create_task(self._pump(spec, proc.stdout))))
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

    async def wait_for_failure(self) -> Running:
        """Returns the first service that exits on its own."""
        waits = {asyncio.create_task(r.proc.wait()): r for r in self.running}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for task in waits:
                task.cancel()

    async def stop(self, grace: float = 10.0) -> None:
        for r in reversed(self.running):
            if r.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(r.proc.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(r.proc.wait(), grace)
                except TimeoutError:
                    self.say(r.spec.name, f"did not stop within {grace:.0f}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(r.proc.pid, signal.SIGKILL)
                    await r.proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.proc.pid, signal.SIGKILL)  # anything left in its group
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(r.pump, 2)
        self.running.clear()


async def run_stack(plan: StackPlan) -> int:
    """Start the stack, print where to open it, run until Ctrl-C or a failure. Returns exit status."""
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
        failed = asyncio.create_task(sup.wait_for_failure())
        await asyncio.wait({failed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if failed.done() and not stop.is_set():
            r = failed.result()
            sup.say("parley", f"{r.spec.name} exited with status {r.proc.returncode}; stopping the stack")
            status = 1
        else:
            failed.cancel()
            sup.say("parley", "stopping")
    except StackError as exc:
        print(f"parley: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        await sup.stop()
        sup.say("parley", "stopped")
    return status

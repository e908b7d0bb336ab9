"""Process runtime shared by the services: uvloop, signals, HTTP servers inside one event loop.

A service's ``__main__`` loads its config, calls :func:`run` with its async main, and inside that
main starts its HTTP apps with :func:`serve_http`. SIGINT/SIGTERM cancel the main task; services
clean up in ``finally`` blocks and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("parley.runtime")


def run(main: Callable[[], Awaitable[Any]]) -> None:
    """Run ``main()`` on uvloop until it returns or the process gets SIGINT/SIGTERM."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep stdlib fallback
        runner = asyncio.Runner()

    async def guarded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await main()

    with runner:
        runner.run(guarded())


def freeze_heap() -> None:
    """Call once a service has started: collect, then move every object alive now (modules,
    apps, routes, schemas, config; ~100k objects in the bridge) to the collector's permanent
    generation. A full collection otherwise walks all of them (45-85 ms on a busy 2-core machine,
    every few seconds under load): a pause in the packet path and, for the bridge, more CPU than
    forwarding a second of a small conference. Objects made later are collected as usual."""
    gc.collect()
    gc.freeze()


async def serve_http(
    app: Any,
    host: str,
    port: int,
    *,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ws_ping_interval: float | None = None,
    ws_ping_timeout: float | None = None,
) -> uvicorn.Server:
    """Start an ASGI app on ``host:port`` inside the running loop; returns once it listens.

    Raises ``OSError`` with the port in the message if it cannot bind (port taken), so the
    service fails at start with a clear message.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        lifespan="off",
        ws_ping_interval=ws_ping_interval,
        ws_ping_timeout=ws_ping_timeout,
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
    if not server.config.loaded:
        server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)
    try:
        await server.startup()
    except SystemExit as exc:  # uvicorn exits on bind errors; make it an OSError naming the port
        raise OSError(f"cannot listen on {host}:{port} (port in use or not permitted)") from exc
    if server.should_exit:
        raise OSError(f"cannot listen on {host}:{port} (port in use or not permitted)")
    stop = asyncio.Event()
    server._parley_stop = stop  # type: ignore[attr-defined]
    server._parley_task = asyncio.ensure_future(_housekeeping(server, stop))  # type: ignore[attr-defined]
    return server


HOUSEKEEPING_INTERVAL = 1.0  # seconds; the resolution of the Date header uvicorn sends


async def _housekeeping(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """What uvicorn's ``main_loop`` does (refresh the Date header, notice ``should_exit``), once
    a second instead of ten times, and at once when :func:`stop_http` asks: a service otherwise
    idle (a bridge between conferences) should not wake up ten times a second per HTTP server."""
    while not await server.on_tick(0):  # tick 0 refreshes the Date header
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HOUSEKEEPING_INTERVAL)


async def stop_http(server: uvicorn.Server) -> None:
    server.should_exit = True
    stop = getattr(server, "_parley_stop", None)
    if stop is not None:
        stop.set()
    task = getattr(server, "_parley_task", None)
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await server.shutdown()


def metrics_body() -> tuple[bytes, str]:
    """Prometheus exposition of this process's default registry: (body, content type)."""
    return generate_latest(), CONTENT_TYPE_LATEST

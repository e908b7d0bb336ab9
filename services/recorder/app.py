"""Wiring: config -> recorder core, XMPP session, HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

import aioice.ice

from services.common.runtime import freeze_heap, serve_http, stop_http

from .config import RecorderSettings
from .http_api import create_app
from .service import Recorder
from .xmpp import RecorderXmpp

log = logging.getLogger("recorder")

GC_THRESHOLDS = (10000, 10, 100)
"""The collector's thresholds (Python's default: 700, 10, 10). The receive path (aiortc) makes
several objects per RTP packet, which with the defaults ran a young collection several times a
second and full ones over every object of the process: about a third of the event loop's CPU
while recording. Young collections every 10,000 allocations, full ones ten times rarer; what
the process built at start is moved out of every walk (:func:`freeze_heap`)."""


def public_http_url(settings: RecorderSettings) -> str:
    h = settings.http
    if h.public_url:
        return h.public_url.rstrip("/")
    host = "127.0.0.1" if h.host in ("0.0.0.0", "") else h.host
    return f"http://{host}:{h.port}"


async def main(settings: RecorderSettings) -> None:
    if settings.ice_host_addresses:
        addresses = list(settings.ice_host_addresses)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: addresses  # type: ignore[assignment]
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(settings, public_http_url(settings))
    client = RecorderXmpp(settings, recorder)
    recorder.signaling = client
    server = await serve_http(
        create_app(recorder, client.ready.is_set), settings.http.host, settings.http.port
    )
    log.info(
        "recorder HTTP API on %s:%d, writing to %s",
        settings.http.host,
        settings.http.port,
        settings.output_dir,
    )
    await client.start()
    watch = asyncio.ensure_future(recorder.watch())
    freeze_heap()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        await asyncio.Event().wait()
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        await recorder.close()
        client.close()
        await stop_http(server)

"""Wiring: config -> recorder core, XMPP session, HTTP API."""

from __future__ import annotations

import asyncio
import logging

import aioice.ice

from services.common.runtime import serve_http, stop_http

from .config import RecorderSettings
from .http_api import create_app
from .service import Recorder
from .xmpp import RecorderXmpp

log = logging.getLogger("recorder")


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
    try:
        await asyncio.Event().wait()
    finally:
        await recorder.close()
        client.close()
        await stop_http(server)

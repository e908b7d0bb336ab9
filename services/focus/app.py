"""Wiring: config -> store, Colibri client, orchestrator, XMPP session, health loop, HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.runtime import serve_http, stop_http

from .colibri_client import ColibriClient
from .config import FocusSettings
from .focus import Focus
from .http_api import create_app
from .moderation import Moderation
from .moderator import Moderator
from .store import open_store
from .xmpp import FocusXmpp

log = logging.getLogger("focus")


async def main(settings: FocusSettings) -> None:
    store = open_store(settings.redis_url)
    colibri = ColibriClient(timeout=settings.bridge.colibri_timeout)
    moderation = Moderation(settings.authentication.enabled)
    focus = Focus(settings, colibri, store, is_moderator=moderation.is_moderator)
    await focus.restore()
    client = FocusXmpp(settings, focus, focus.jibri)
    focus.signaling = client
    focus.jibri.signaling = client
    Moderator(client, focus, moderation)  # the XMPP side of moderation: it registers its handlers
    server = await serve_http(
        create_app(focus, client.ready.is_set, client.session_stats), settings.rest.host, settings.rest.port
    )
    log.info("focus HTTP API on %s:%d", settings.rest.host, settings.rest.port)
    await client.start()
    loops = [asyncio.ensure_future(focus.health_loop()), asyncio.ensure_future(focus.expiry_loop())]
    try:
        await asyncio.Event().wait()
    finally:
        for loop in loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await focus.close()
        client.close()
        await stop_http(server)
        await colibri.close()
        await store.close()

"""XEP-0198 with a real client: slixmpp's stream management loses its TCP connection, comes back,
resumes the session, and gets what was sent to it meanwhile; it never left the room."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.xmpp_interop.servers import (
    AUTH_DOMAIN,
    DOMAIN,
    FOCUS_PASSWORD,
    MUC_DOMAIN,
    start_parley,
)
from tests.integration.xmpp_interop.slix import JID, Client, connected, next_matching


@pytest.fixture(scope="module")
def broker():
    proc, endpoint = start_parley("xmpp-sm")
    try:
        yield endpoint
    finally:
        proc.stop()


async def test_slixmpp_resumes_after_connection_loss(broker):
    room = JID(f"sm@{MUC_DOMAIN}")
    focus = Client(f"focus@{AUTH_DOMAIN}/focus", FOCUS_PASSWORD)
    focus.register_plugin("xep_0198")
    enabled, resumed = asyncio.Event(), asyncio.Event()
    focus.add_event_handler("sm_enabled", lambda _: enabled.set())
    focus.add_event_handler("session_resumed", lambda _: resumed.set())
    focus.connect("127.0.0.1", broker.c2s_port)
    try:
        await asyncio.wait_for(focus.online.wait(), 10)
        await asyncio.wait_for(enabled.wait(), 5)
        await focus.plugin["xep_0045"].join_muc_wait(room, "focus", timeout=5)
        async with connected(broker.c2s_port, DOMAIN, anonymous=True) as guest:
            await guest.plugin["xep_0045"].join_muc_wait(room, "guest", timeout=5)
            focus.transport.abort()  # the network drops; no stream close
            await asyncio.sleep(0.5)
            guest.send_message(mto=room, mbody="while you were away", mtype="groupchat")
            await asyncio.sleep(0.3)
            focus.connect("127.0.0.1", broker.c2s_port)
            await asyncio.wait_for(resumed.wait(), 10)
            await next_matching(focus.groupchat, lambda m: m["body"] == "while you were away", wait=5)
            # the focus never left: the guest saw no unavailable presence from it
            while not guest.presences.empty():
                p = guest.presences.get_nowait()
                assert not (p["from"] == JID(f"{room}/focus") and p["type"] == "unavailable")
            guest.send_message(mto=room, mbody="after resume", mtype="groupchat")
            await next_matching(focus.groupchat, lambda m: m["body"] == "after resume", wait=5)
    finally:
        focus.disconnect()

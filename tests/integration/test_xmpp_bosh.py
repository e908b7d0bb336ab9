"""BOSH (XEP-0124/0206) at /http-bind: a guest logs in, binds, and chats with a TCP client.
Runs against Parley and, as the reference, Prosody's mod_bosh."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.integration.prosody import prosody_available
from tests.integration.xmpp_interop.raw import RawClient
from tests.integration.xmpp_interop.servers import (
    prosody_server,
    start_parley,
)

BOSH = "http://jabber.org/protocol/httpbind"


@pytest.fixture(scope="module", params=["parley", pytest.param("prosody", marks=pytest.mark.peer)])
def server(request):
    if request.param == "parley":
        proc, endpoint = start_parley("xmpp-bosh")
        try:
            yield endpoint
        finally:
            proc.stop()
    else:
        if not prosody_available():
            pytest.skip("Debian's prosody is not installed")
        with prosody_server() as (_proc, endpoint):
            yield endpoint


class BoshClient:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.rid = 1000
        self.sid = ""

    async def post(self, inner: str = "", **attrs: str) -> str:
        self.rid += 1
        extra = "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
        sid = f" sid='{self.sid}'" if self.sid else ""
        body = f"<body xmlns='{BOSH}' rid='{self.rid}'{sid}{extra}>{inner}</body>"
        r = await self.http.post(self.url, content=body, headers={"content-type": "text/xml"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.text

    async def until(self, needle: str, inner: str = "") -> str:
        text = await self.post(inner)
        for _ in range(10):
            if needle in text:
                return text
            text = await self.post()
        raise AssertionError(f"{needle!r} never came; last body {text!r}")


async def test_bosh_guest_logs_in_and_chats(server):
    # guests may not address service accounts (docs/security.md), so the TCP peer is a guest too
    focus = RawClient(server.c2s_port).login()
    try:
        async with httpx.AsyncClient() as http:
            c = BoshClient(http, server.bosh_url)
            created = await c.post(
                to="meet.jitsi",
                wait="3",
                hold="1",
                ver="1.6",
                xmlns__xmpp="urn:xmpp:xbosh",
                xmpp__version="1.0",
            )
            c.sid = re.search(r"sid=['\"]([^'\"]+)", created).group(1)
            if "ANONYMOUS" not in created:
                created = await c.until("ANONYMOUS")
            assert await c.until(
                "success", "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>"
            )
            restarted = await c.post(to="meet.jitsi", xmpp__restart="true", xmlns__xmpp="urn:xmpp:xbosh")
            if "bind" not in restarted:
                await c.until("bind")
            bound = await c.until(
                "</jid>",
                "<iq xmlns='jabber:client' type='set' id='b1'>"
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
            )
            jid = re.search(r"<jid>([^<]+)</jid>", bound).group(1)
            await c.post("<presence xmlns='jabber:client'/>")
            # a held request carries a message that arrives while it waits
            poll = asyncio.ensure_future(c.until("from tcp"))
            await asyncio.sleep(0.5)
            focus.send(f"<message to='{jid}' type='chat'><body>from tcp</body></message>")
            assert "from tcp" in await asyncio.wait_for(poll, 15)
            await c.post(
                f"<message xmlns='jabber:client' to='{focus.jid}' type='chat'><body>from bosh</body></message>"
            )
            got = await asyncio.to_thread(focus.expect, "from bosh")
            assert jid.split("/")[0] in got
            assert "terminate" in await c.post(type="terminate")
    finally:
        focus.close()


async def test_bosh_unknown_sid_is_terminated(server):
    async with httpx.AsyncClient() as http:
        r = await http.post(server.bosh_url, content=f"<body xmlns='{BOSH}' rid='5' sid='nope'/>")
        assert "terminate" in r.text and "item-not-found" in r.text

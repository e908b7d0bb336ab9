"""XMPP over WebSocket (RFC 7395) and its administration (as Kamailio's websocket module) against a real broker."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
import websockets

from tests.integration.xmpp_interop.raw import RawClient
from tests.integration.xmpp_interop.servers import start_parley

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


BROKER_PROCS: list = []  # the module's broker process, for tests that read its log


@pytest.fixture(scope="module")
def broker():
    proc, endpoint = start_parley(
        "xmpp-ws", XMPP_WS_KEEPALIVE_TIMEOUT="2", XMPP_WS_RM_DELAY_INTERVAL="0.5"
    )
    BROKER_PROCS.append(proc)
    try:
        yield endpoint
    finally:
        proc.stop()


async def ws_login(url: str, host: str = "meet.jitsi", user: str | None = None, password: str = ""):
    ws = await websockets.connect(url, subprotocols=["xmpp"])
    assert ws.subprotocol == "xmpp"

    async def recv_until(needle: str) -> str:
        while True:
            frame = await asyncio.wait_for(ws.recv(), 5)
            if needle in frame:
                return frame

    await ws.send(f"<open xmlns='{FRAMING}' to='{host}' version='1.0'/>")
    await recv_until("features")
    if user is None:
        await ws.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    else:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await ws.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    await recv_until("success")
    await ws.send(f"<open xmlns='{FRAMING}' to='{host}' version='1.0'/>")
    await recv_until("features")
    await ws.send(
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
    )
    bound = await recv_until("<jid>")
    jid = bound.split("<jid>")[1].split("</jid>")[0]
    return ws, jid, recv_until


async def test_websocket_guest_chats_with_tcp_guest(broker):
    # guests may not address service accounts (docs/security.md), so the TCP peer is a guest too
    focus = RawClient(broker.c2s_port).login()
    try:
        ws, jid, recv_until = await ws_login(broker.ws_url)
        async with ws:
            await ws.send(
                f"<message xmlns='jabber:client' to='{focus.jid}' type='chat'><body>over ws</body></message>"
            )
            got = await asyncio.to_thread(focus.expect, "over ws")
            assert f"from='{jid}'" in got
            focus.send(f"<message to='{jid}' type='chat'><body>over tcp</body></message>")
            frame = await recv_until("over tcp")
            assert frame.startswith("<message xmlns='jabber:client'")  # one stanza per frame, namespaced
            await ws.send(f"<close xmlns='{FRAMING}'/>")
            assert "<close" in await recv_until("close")
    finally:
        focus.close()


async def test_admin_lists_pings_closes_and_refuses(broker):
    admin = f"http://127.0.0.1:{broker.http_port}/admin/ws"
    ws, jid, recv_until = await ws_login(broker.ws_url)
    async with httpx.AsyncClient() as http, ws:
        listing = (await http.get(f"{admin}/dump")).json()
        mine = next(c for c in listing["details"] if c["jid"] == jid)
        assert mine["sub_protocol"] == "xmpp" and mine["state"] == "OPEN"
        assert (await http.post(f"{admin}/ping/{mine['id']}")).status_code == 200
        await asyncio.sleep(0.3)  # the client library answers with a pong
        listing = (await http.get(f"{admin}/dump")).json()
        assert not next(c for c in listing["details"] if c["id"] == mine["id"])["awaiting_pong"]
        # refuse new connections, then accept them again
        assert (await http.post(f"{admin}/disable")).json() == {"enabled": False}
        with pytest.raises(websockets.InvalidStatus) as err:
            await websockets.connect(broker.ws_url, subprotocols=["xmpp"])
        assert err.value.response.status_code == 503
        assert (await http.post(f"{admin}/enable")).json() == {"enabled": True}
        other = await websockets.connect(broker.ws_url, subprotocols=["xmpp"])
        await other.close()
        # close one connection: the stream's <close/>, then the WebSocket Close with the status given
        r = await http.post(f"{admin}/close/{mine['id']}", json={"status": 4000, "reason": "maintenance"})
        assert r.status_code == 200
        assert "<close" in await recv_until("close")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert (ws.close_code, ws.close_reason) == (4000, "maintenance")
        assert (await http.post(f"{admin}/close/999999")).status_code == 404


async def test_keepalive_pings_idle_connections(broker):
    """keepalive_timeout 2 s: an idle client is pinged; its library answers, so it stays."""
    admin = f"http://127.0.0.1:{broker.http_port}/admin/ws"
    ws, jid, _ = await ws_login(broker.ws_url)
    async with httpx.AsyncClient() as http, ws:
        await asyncio.sleep(4.5)
        listing = (await http.get(f"{admin}/dump")).json()
        mine = next(c for c in listing["details"] if c["jid"] == jid)
        assert mine["frames_in"] >= 5  # the login's frames and at least one pong
        assert mine["last_used"] <= 3


async def test_websocket_that_never_answers_pings_is_closed(broker):
    ws = await websockets.connect(broker.ws_url, subprotocols=["xmpp"], ping_interval=None)
    # stop reading: the client library cannot answer pings while the transport is paused
    ws.transport.pause_reading()
    await asyncio.sleep(5)
    ws.transport.resume_reading()
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 3)


async def test_plain_get_answers_200_and_close_then_hang_up_logs_no_error(broker):
    """As Prosody: a GET without the upgrade is answered 200 (reachability probes, Jitsi's
    connection checks). A client that sends ``<close/>`` and drops the socket at once (what
    lib-jitsi-meet does when it leaves) ends quietly."""
    async with httpx.AsyncClient() as http:
        response = await http.get(broker.ws_url.replace("ws://", "http://"))
    assert response.status_code == 200
    for i in range(10):
        ws, _, _ = await ws_login(broker.ws_url)
        await ws.send(f"<close xmlns='{FRAMING}'/>")
        if i % 2:
            ws.transport.abort()  # no closing handshake
        else:
            await ws.close()  # the WebSocket close right behind the stream's
    await asyncio.sleep(1.0)
    ws, _, _ = await ws_login(broker.ws_url)  # still serving
    await ws.close()
    log = BROKER_PROCS[-1].log(tail=2000)
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]

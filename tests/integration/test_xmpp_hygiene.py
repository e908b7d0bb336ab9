"""Bad input closes only the offending stream, with the right stream error; everyone else keeps
being served. Runs against a real broker process."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from tests.integration.xmpp_interop.raw import STREAM_HEADER, RawClient
from tests.integration.xmpp_interop.servers import start_parley


@pytest.fixture(scope="module")
def broker():
    proc, endpoint = start_parley(
        "xmpp-hygiene", XMPP_IDLE_TIMEOUT="3", XMPP_WS_ORIGINS="https://meet.example"
    )
    try:
        yield endpoint
    finally:
        proc.stop()


@pytest.fixture
def bystander(broker):
    """Another client, connected before the bad one (the broker's idle timeout here is 3 s)."""
    client = RawClient(broker.c2s_port).login()
    yield client
    client.close()


def assert_still_served(bystander: RawClient, ident: str) -> None:
    bystander.send(f"<iq type='get' id='{ident}' to='meet.jitsi'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = bystander.expect(f"id='{ident}'")
    assert "type='result'" in reply


BAD_INPUTS = {
    "oversized": (
        "<message to='x@meet.jitsi'><body>" + "x" * (300 * 1024) + "</body></message>",
        "policy-violation",
    ),
    "malformed": ("<message><body>unclosed</message>", "not-well-formed"),
    "billion-laughs": (
        "<message><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol1 '&lol;&lol;&lol;'>]>"
        "<body>&lol1;</body></message>",
        "not-well-formed",
    ),
    "undefined-entity": ("<message><body>&xxe;</body></message>", "not-well-formed"),
    "comment": ("<message><!-- hi --></message>", "restricted-xml"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_after_login_closes_only_that_stream(broker, bystander, name):
    data, condition = BAD_INPUTS[name]
    bad = RawClient(broker.c2s_port).login()
    try:
        bad.send(data)
        out = bad.expect("</stream:stream>")
        assert f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
        assert bad.closed_by_peer()
    finally:
        bad.close()
    assert_still_served(bystander, f"after-{name}")


def test_doctype_before_the_stream_is_restricted_xml(broker, bystander):
    bad = RawClient(broker.c2s_port)
    try:
        bad.send(
            "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
            + STREAM_HEADER.format(host="meet.jitsi").split("?>", 1)[1]
        )
        out = bad.expect("</stream:stream>")
        assert "restricted-xml" in out and "root:" not in out
    finally:
        bad.close()
    assert_still_served(bystander, "after-doctype")


def test_idle_connection_times_out(broker):
    idle = RawClient(broker.c2s_port).login()
    try:
        out = idle.expect("</stream:stream>", timeout=8)
        assert "connection-timeout" in out
    finally:
        idle.close()


def test_flooding_client_is_throttled_not_others(broker, bystander):
    flood = RawClient(broker.c2s_port).login()
    try:
        chunk = (" " * 65536).encode()  # whitespace keep-alives: valid, and cheap to parse
        flood.sock.settimeout(0.2)
        sent = 0
        for _ in range(64):
            try:
                flood.sock.send(chunk)
                sent += len(chunk)
            except TimeoutError:
                break
        assert_still_served(bystander, "during-flood")
    finally:
        flood.close()


async def test_websocket_needs_xmpp_subprotocol_and_allowed_origin(broker):
    with pytest.raises(websockets.InvalidStatus) as err:
        async with websockets.connect(broker.ws_url, origin="https://meet.example"):
            pass
    assert err.value.response.status_code == 400
    with pytest.raises(websockets.InvalidStatus) as err:
        async with websockets.connect(broker.ws_url, subprotocols=["xmpp"], origin="https://evil.example"):
            pass
    assert err.value.response.status_code == 403


async def test_websocket_malformed_frame_closes_that_stream(broker, bystander):
    async with websockets.connect(broker.ws_url, subprotocols=["xmpp"], origin="https://meet.example") as ws:
        await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='meet.jitsi' version='1.0'/>")
        assert "<open" in await ws.recv()
        assert "features" in await ws.recv()
        await ws.send("<message><body>broken</message>")
        err = await asyncio.wait_for(ws.recv(), 5)
        assert "not-well-formed" in err
        assert "<close" in await asyncio.wait_for(ws.recv(), 5)
    assert_still_served(bystander, "after-ws")


async def test_websocket_oversized_stanza_is_policy_violation(broker, bystander):
    async with websockets.connect(broker.ws_url, subprotocols=["xmpp"], origin="https://meet.example") as ws:
        await ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='meet.jitsi' version='1.0'/>")
        await ws.recv()
        await ws.recv()
        await ws.send("<message><body>" + "x" * (300 * 1024) + "</body></message>")
        assert "policy-violation" in await asyncio.wait_for(ws.recv(), 5)
    assert_still_served(bystander, "after-ws-oversized")


def test_metrics_and_health(broker):
    assert httpx.get(f"http://127.0.0.1:{broker.http_port}/health").status_code == 200
    body = httpx.get(f"http://127.0.0.1:{broker.http_port}/metrics").text
    assert 'xmpp_connections{transport="tcp"}' in body
    assert "xmpp_stanzas_routed_total" in body and "xmpp_muc_rooms" in body
    assert 'xmpp_stream_errors_total{condition="not-well-formed"}' in body  # from the tests above

"""A flood of short hostile connections leaves no parser behind (a real broker process).

Each connection sends a stanza nested 2,000 deep and is closed by the broker with a stream error
(policy-violation). What it held must be freed as it closes, not at the broker's rare full garbage
collection (``services/xmpp/__main__.py``): there, a connection still open at a young collection
waited in the oldest generation with its buffers, and ``bench/abuse.py``'s ``wsdeep`` attack
left the broker 7-8 MB larger 30 s after it ended. The broker's ``xmpp_websocket_protocols``
gauge counts the WebSocket frame parsers in memory; it must come back to the number of open
WebSocket connections as soon as the flood's connections are closed.
"""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from tests.integration.xmpp_interop.raw import RawClient
from tests.integration.xmpp_interop.servers import start_parley

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
DEEP = "<iq type='get' id='d' to='focus.meet.jitsi'>" + "<a>" * 2000 + "</a>" * 2000 + "</iq>"
FLOOD = 150


@pytest.fixture(scope="module")
def broker():
    proc, endpoint = start_parley("xmpp-parser-release")
    try:
        yield endpoint
    finally:
        proc.stop()


def metric(http_port: int, name: str, label: str = "") -> float:
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + " ") or line.startswith(name + "{")) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(condition, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    """Whether ``condition()`` holds within ``timeout`` (connections close asynchronously)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def deep_websocket(http_port: int) -> str:
    """One hostile WebSocket connection; returns what the broker answered before closing it."""
    seen = []
    with contextlib.suppress(WebSocketException, TimeoutError, OSError):
        with ws_connect(f"ws://127.0.0.1:{http_port}/xmpp-websocket", subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
            ws.send(f"<open xmlns='{FRAMING}' to='meet.jitsi' version='1.0'/>")
            ws.send(DEEP)
            while True:
                frame = ws.recv(timeout=5)
                seen.append(frame if isinstance(frame, str) else frame.decode(errors="replace"))
    return "".join(seen)


def test_closed_websocket_connections_free_their_frame_parsers_at_once(broker):
    port = broker.http_port
    bystander = RawClient(broker.c2s_port).login()
    try:
        assert "policy-violation" in deep_websocket(port)
        for _ in range(FLOOD - 1):
            deep_websocket(port)
        assert wait_for(lambda: metric(port, "xmpp_connections", 'transport="websocket"') == 0)
        assert metric(port, "xmpp_websocket_protocols") == 0
        assert bystander.ping("after-flood")
    finally:
        bystander.close()


def test_an_open_websocket_connection_keeps_its_parser_and_is_served(broker):
    port = broker.http_port
    with ws_connect(f"ws://127.0.0.1:{port}/xmpp-websocket", subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
        ws.send(f"<open xmlns='{FRAMING}' to='meet.jitsi' version='1.0'/>")
        assert "features" in str(ws.recv(timeout=5)) + str(ws.recv(timeout=5))
        deep_websocket(port)
        assert wait_for(lambda: metric(port, "xmpp_connections", 'transport="websocket"') == 1)
        assert metric(port, "xmpp_websocket_protocols") == 1
        ws.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        assert "success" in str(ws.recv(timeout=5))

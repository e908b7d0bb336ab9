"""Chromium's own SCTP stack against the bridge's data channel.

Headless Chromium answers the focus's offer (with the ``data`` content) in a bare page, takes the
data channel the bridge opens in ``ondatachannel`` (as lib-jitsi-meet does), and exchanges
bridge-channel messages with a WebSocket-only endpoint of the same conference.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from services.common import colibri
from tests.integration.browser import BROWSER_MARKS, browsers, console_log
from tests.integration.datachannel_client import EXPIRE, accept_patch, allocate_request, offer_sdp
from tests.integration.test_bridge_control_support import RunningBridge, dumps, start_bridge

pytestmark = BROWSER_MARKS

ANSWER = """async (offer) => {
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
  window.pc = pc;
  window.received = [];
  window.labels = [];
  pc.ondatachannel = (event) => {
    window.channel = event.channel;
    window.labels.push(event.channel.label);
    event.channel.onmessage = (m) => window.received.push(JSON.parse(m.data));
  };
  await pc.setRemoteDescription({ type: 'offer', sdp: offer });
  await pc.setLocalDescription(await pc.createAnswer());
  return pc.localDescription.sdp;
}"""


@pytest.fixture(scope="module")
def bridge() -> Iterator[RunningBridge]:
    b = start_bridge("bridge-sctp-chromium", server_id="jvbsctpc")
    try:
        yield b
    finally:
        b.process.stop()


def wait_for(predicate: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def test_chromium_takes_the_bridge_data_channel(bridge: RunningBridge) -> None:
    with httpx.Client(base_url=bridge.url, timeout=10) as http, browsers() as pool:
        r = http.post("/colibri/conferences", content=allocate_request("chrome", None))
        assert r.status_code == 200, r.text
        allocated = colibri.parse_conference(r.content)
        assert allocated.id is not None
        cid = allocated.id
        allocation, _, sdp = offer_sdp("chrome", allocated)
        page = pool.open(fake_media=False)
        log = console_log(page)
        answer = page.evaluate(ANSWER, sdp)
        assert "m=application" in answer and "webrtc-datachannel" in answer, answer
        r = http.patch(f"/colibri/conferences/{cid}", content=accept_patch(cid, "chrome", allocation, answer))
        assert r.status_code == 200, r.text

        def received(colibri_class: str) -> list[dict[str, Any]]:
            return [m for m in page.evaluate("window.received") if m.get("colibriClass") == colibri_class]

        assert wait_for(lambda: received("ServerHello"), 30), f"{page.evaluate('window.labels')} {log}"
        assert page.evaluate("window.labels") == ["default"]
        # a WebSocket-only endpoint in the same conference
        body = {
            "contents": [{"name": "audio", "channels": [{"endpoint": "ws", "expire": EXPIRE}]}],
            "channel-bundles": [{"id": "ws", "transport": {"rtcp-mux": True}}],
        }
        r = http.patch(f"/colibri/conferences/{cid}", content=dumps(body))
        url = next(b["transport"]["web-socket"] for b in r.json()["channel-bundles"] if b["id"] == "ws")
        with connect(url) as ws:
            assert json.loads(ws.recv(10))["colibriClass"] == "ServerHello"
            page.evaluate(
                "window.channel.send(JSON.stringify("
                "{colibriClass: 'EndpointMessage', to: 'ws', msgPayload: {hello: 'from chromium'}}))"
            )
            got = json.loads(ws.recv(10))
            assert got == {
                "colibriClass": "EndpointMessage",
                "to": "ws",
                "msgPayload": {"hello": "from chromium"},
                "from": "chrome",
            }
            ws.send(json.dumps({"colibriClass": "EndpointMessage", "to": "chrome", "msgPayload": "x" * 3000}))
            assert wait_for(lambda: received("EndpointMessage"), 10), page.evaluate("window.received")
            (back,) = received("EndpointMessage")
            assert back["from"] == "ws" and back["msgPayload"] == "x" * 3000  # fragmented over DATA chunks
        page.evaluate("window.pc.close()")

"""nginx's per-client limits (docs/security.md): one address cannot hold every XMPP WebSocket,
flood the page or the bridge channel; over the limit it gets 429 and, once it calms down, it is
served again."""

from __future__ import annotations

import time

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.security.conftest import WsGuest


@pytest.fixture(autouse=True)
def rested():
    time.sleep(6)  # let the request buckets of earlier tests (same address) refill
    yield
    time.sleep(6)  # and leave them full for the tests after this one


def test_one_address_holds_at_most_16_xmpp_websockets(stack):
    held: list[WsGuest] = []
    refused = []
    try:
        for _ in range(20):
            try:
                held.append(WsGuest(stack.ws_url))
            except InvalidStatus as exc:
                refused.append(exc.response.status_code)
        assert 12 <= len(held) <= 16 and refused and set(refused) == {429}  # 16 minus any still closing
        held[0].login().ping("under-the-limit")  # the ones admitted work
    finally:
        for ws in held:
            ws.close()
    time.sleep(1)
    WsGuest(stack.ws_url).login().close()  # and the address is served again


def test_a_page_flood_gets_429_and_the_page_comes_back(stack):
    statuses = []
    with httpx.Client(timeout=10) as http:
        for _ in range(400):
            statuses.append(http.get(f"{stack.front}/").status_code)
    assert 429 in statuses and statuses[0] == 200
    time.sleep(6)
    assert httpx.get(f"{stack.front}/", timeout=10).status_code == 200


def test_bridge_channel_handshakes_are_rate_limited(stack):
    statuses = []
    with httpx.Client(timeout=10) as http:
        for i in range(300):
            r = http.get(
                f"{stack.front}/colibri-ws/jvb1/conf/ep{i}?pwd=x",
                headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
            )  # fmt: skip
            statuses.append(r.status_code)
    # the first handshake reaches the bridge (which refuses the unknown endpoint), later ones stop at nginx
    assert statuses[0] != 429 and 429 in statuses

"""The WebSocket admin (docs/operations.md) is out of a guest's reach, and its own inputs are
checked: through nginx every admin path is 404; on the private port, malformed commands get a
clear 400/404/413 and change nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from tests.integration.harness import ServiceProcess, free_port
from tests.integration.xmpp_interop.servers import parley_env
from tests.security.conftest import Stack, WsGuest


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A broker alone (its private admin API), for the malformed commands."""
    c2s, http = free_port(), free_port()
    proc = ServiceProcess.python_module(
        "xmpp-admin-attacks",
        "services.xmpp",
        parley_env(c2s, http),
        health_url=f"http://127.0.0.1:{http}/health",
    )
    proc.start(timeout=120)
    try:
        yield f"http://127.0.0.1:{http}"
    finally:
        proc.stop()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/ws/dump",
        "/admin/ws/status",
        "/admin/sessions",
        "/admin/rooms",
        "/colibri/conferences",
        "/debug",
    ],
)
def test_admin_paths_are_not_reachable_through_nginx(stack: Stack, path: str) -> None:
    assert httpx.get(f"{stack.front}{path}", timeout=10).status_code == 404
    assert httpx.post(f"{stack.front}{path}", timeout=10).status_code in (404, 405)
    # not by smuggling the path behind the public WebSocket location either
    r = httpx.get(f"{stack.front}/xmpp-websocket/../admin/ws/dump", timeout=10)
    assert r.status_code == 404 or "connections" not in r.text


def test_disable_cannot_be_reached_by_a_guest(stack: Stack) -> None:
    for path in ("/admin/ws/disable", "/xmpp-websocket?/admin/ws/disable"):
        httpx.post(f"{stack.front}{path}", timeout=10)
    WsGuest(stack.ws_url).login().close()  # still accepting


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/admin/ws/close/abc", b"", 400),
        ("/admin/ws/close/99999999999999999999", b"", 400),
        ("/admin/ws/close/424242", b"", 404),
        ("/admin/ws/close/1", b"{", 400),
        ("/admin/ws/close/1", b"[1, 2]", 400),
        ("/admin/ws/close/1", b'{"status": true, "reason": "x"}', 400),
        ("/admin/ws/close/1", b'{"status": 1005, "reason": "x"}', 400),
        ("/admin/ws/close/1", b'{"status": 4000, "reason": "' + b"x" * 200 + b'"}', 400),
        ("/admin/ws/close/1", b'{"status": 4000}', 400),
        ("/admin/ws/close/1", b" " + b"9" * 10000, 413),
        ("/admin/ws/ping/-1", b"", 400),
        ("/admin/ws/dump/../../sessions", b"", 404),
    ],
)
def test_malformed_admin_commands_are_refused(broker: str, path: str, body: bytes, status: int) -> None:
    api = broker
    guest = ws_client.connect(
        api.replace("http", "ws") + "/xmpp-websocket", subprotocols=["xmpp"], open_timeout=30
    )  # type: ignore[list-item]
    try:
        r = httpx.post(f"{api}{path}", content=body, timeout=30)
        assert r.status_code == status, r.text
        assert "error" in r.json()
        assert httpx.get(f"{api}/admin/ws/status", timeout=30).json()["enabled"] is True
        dump = httpx.get(f"{api}/admin/ws/dump", params={"order": "x" * 5000}, timeout=30)
        assert dump.status_code == 400
        assert len(httpx.get(f"{api}/admin/ws/dump", timeout=30).json()["connections"]) == 1  # still open
    finally:
        guest.close()


def test_handshake_without_the_sub_protocol_is_refused(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws_client.connect(stack.ws_url, subprotocols=["sip"], open_timeout=10)  # type: ignore[list-item]
    assert refused.value.response.status_code == 400

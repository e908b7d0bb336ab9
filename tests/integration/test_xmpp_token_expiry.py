"""A token's ``exp`` against a real broker process: by default the session outlives it (as in
Jitsi); with ``JWT_END_SESSION_ON_EXPIRY=1`` the stream is closed at ``exp`` with a stream error
that says why."""

from __future__ import annotations

import time

import pytest

from services.xmpp.tokens import mint
from tests.integration.xmpp_interop.servers import start_parley
from tests.security.conftest import WsGuest

SECRET = "expiry-test-secret"
APP = "parley-expiry"
ENV = {"ENABLE_AUTH": "1", "AUTH_TYPE": "jwt", "JWT_APP_ID": APP, "JWT_APP_SECRET": SECRET}


@pytest.mark.parametrize("end_on_expiry", [False, True])
def test_session_at_token_expiry(end_on_expiry: bool) -> None:
    extra = {"JWT_END_SESSION_ON_EXPIRY": "1"} if end_on_expiry else {}
    node, ep = start_parley(f"xmpp-expiry-{int(end_on_expiry)}", **ENV, **extra)
    try:
        token = mint(SECRET, APP, "*", ttl=3)
        g = WsGuest(f"ws://127.0.0.1:{ep.http_port}/xmpp-websocket?token={token}").login()
        try:
            t0 = time.monotonic()
            if end_on_expiry:
                error = g.recv_until("stream:error", timeout=60)
                assert "policy-violation" in error and "token expired" in error, error
                assert time.monotonic() - t0 >= 1.0  # not before exp
                assert g.closed_by_server()
            else:
                time.sleep(6.0)  # well past exp
                g.ping("after-exp")  # still served
        finally:
            g.close()
    finally:
        node.stop()

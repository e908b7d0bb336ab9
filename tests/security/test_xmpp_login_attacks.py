"""Password guessing against the service accounts: not possible at all on the public paths
(``/xmpp-websocket`` and ``/http-bind`` through nginx), rate-limited per address and per account
on the internal listener, PLAIN never offered without TLS; guests keep logging in."""

from __future__ import annotations

import base64
import re

import httpx
import pytest
from scramp import ScramClient

from tests.integration.xmpp_interop.raw import STREAM_HEADER, RawClient
from tests.integration.xmpp_interop.servers import FOCUS_PASSWORD, start_parley
from tests.security.conftest import WsGuest

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def scram_attempt(port: int, user: str, password: str, tries: int = 1) -> list[str]:
    """One stream, ``tries`` SCRAM-SHA-1 logins; each outcome: success or the failure condition."""
    c = RawClient(port, "auth.meet.jitsi")
    outcomes = []
    try:
        features = c.open()
        assert "SCRAM-SHA-1" in features and "PLAIN" not in features  # no PLAIN without TLS
        for _ in range(tries):
            client = ScramClient(["SCRAM-SHA-1"], user, password)
            first = base64.b64encode(client.get_client_first().encode()).decode()
            c.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>{first}</auth>")
            out = _next(c)
            if "<challenge" in out:
                text = re.search(r"<challenge[^>]*>([^<]*)</challenge>", out).group(1)  # type: ignore[union-attr]
                client.set_server_first(base64.b64decode(text).decode())
                final = base64.b64encode(client.get_client_final().encode()).decode()
                c.send(f"<response xmlns='{SASL}'>{final}</response>")
                out = _next(c)
            if "<success" in out:
                outcomes.append("success")
                break
            outcomes.append(re.search(r"<failure[^>]*><([a-z-]+)", out).group(1))  # type: ignore[union-attr]
            if "</stream:stream>" in out:
                break
    finally:
        c.close()
    return outcomes


def _next(c: RawClient) -> str:
    data = b""
    c.sock.settimeout(5)
    while not re.search(rb"</challenge>|<challenge[^>]*/>|</failure>|</success>|<success[^>]*/>", data):
        chunk = c.sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


@pytest.fixture(scope="module")
def broker():
    proc, endpoint = start_parley("xmpp-login-limits", XMPP_LOGIN_FAILURES_PER_ADDRESS="4")
    try:
        yield endpoint
    finally:
        proc.stop()


def test_guessing_is_refused_after_the_per_address_limit_even_with_the_right_password(broker):
    assert scram_attempt(broker.c2s_port, "focus", FOCUS_PASSWORD) == ["success"]
    assert scram_attempt(broker.c2s_port, "focus", "guess", tries=3) == ["not-authorized"] * 3
    assert scram_attempt(broker.c2s_port, "focus", "guess", tries=3) == [
        "not-authorized",
        "temporary-auth-failure",
    ]
    assert scram_attempt(broker.c2s_port, "focus", FOCUS_PASSWORD) == ["temporary-auth-failure"]
    # guests are not affected: ANONYMOUS never fails and is never limited
    guest = RawClient(broker.c2s_port).login()
    assert guest.ping("guest-ok")
    guest.close()


def test_service_accounts_cannot_log_in_through_the_public_paths(stack):
    ws = WsGuest(stack.ws_url)
    try:
        ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='auth.meet.jitsi' version='1.0'/>")
        err = ws.recv_until("policy-violation")
        assert "internal listener" in err and "mechanism" not in err
        assert ws.closed_by_server()
    finally:
        ws.close()
    body = (
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' to='auth.meet.jitsi' wait='5' hold='1' "
        "ver='1.6' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>"
    )
    r = httpx.post(f"{stack.front}/http-bind", content=body, timeout=10)
    assert r.status_code == 200 and "type='terminate'" in r.text and "policy-violation" in r.text
    assert "SCRAM" not in r.text
    # guests still log in on both paths
    WsGuest(stack.ws_url).login().close()


def test_forged_forwarded_for_does_not_change_the_address_the_broker_sees(stack):
    ws = WsGuest(stack.ws_url, headers={"X-Forwarded-For": "203.0.113.66"}).login()
    try:
        conns = httpx.get(f"http://127.0.0.1:{5280 + stack.offset}/admin/ws/dump", timeout=5).json()
        mine = [c for c in conns["details"] if c["jid"] == ws.jid]
        assert mine and mine[0]["address"] == "127.0.0.1"  # nginx's view of the client, not the header's
    finally:
        ws.close()


def test_stream_header_sent_to_the_auth_host_over_plain_tcp_offers_scram_only(broker):
    c = RawClient(broker.c2s_port, "auth.meet.jitsi")
    try:
        c.send(STREAM_HEADER.format(host="auth.meet.jitsi"))
        features = c.expect("</stream:features>")
        assert "<mechanism>SCRAM-SHA-1</mechanism>" in features and "PLAIN" not in features
    finally:
        c.close()

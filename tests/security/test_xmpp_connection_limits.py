"""New connections per client address on the broker's own ports (``limits.connections-*``): an
address that opens connections faster than allowed, or holds more than allowed open, is refused
before anything is parsed (the connection is reset at once: no stream header, no HTTP answer;
behind a trusted proxy, 429 before the WebSocket handshake), while another address is served as usual (nginx's
``limit_req``/``limit_conn``, for deployments that expose the broker's ports). Behind a trusted
proxy the forwarded client address is the one counted; a forwarded address from anyone else is
not believed. The host itself (``connection-exempt-networks``: 127.0.0.1, where the focus, the
bridges and nginx connect from) is never limited. A real broker process; the other clients come
from other loopback addresses (127.0.0.2 and up stand for other machines).
"""

from __future__ import annotations

import contextlib
import select
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidMessage, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.integration.xmpp_interop.servers import recv_until, start_parley

DOMAIN = "meet.jitsi"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
HEADER = (
    "<?xml version='1.0'?><stream:stream to='{host}' version='1.0' xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams'>"
)
RATE, BURST, MAX_OPEN = 0.2, 5, 3
DELAY, HELD = 1.0, 8  # limits.connection-refusal-delay; refusals held per address


@pytest.fixture(scope="module")
def broker():
    proc, endpoint = start_parley(
        "xmpp-connection-limits",
        XMPP_CONNECTIONS_PER_SECOND=str(RATE),
        XMPP_CONNECTIONS_BURST=str(BURST),
        XMPP_MAX_CONNECTIONS_PER_ADDRESS=str(MAX_OPEN),
        XMPP_CONNECTION_REFUSAL_DELAY=str(DELAY),
    )
    try:
        yield proc, endpoint
    finally:
        proc.stop()


def c2s(port: int, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def c2s_served(port: int, source: str) -> bool:
    """Whether a c2s connection from ``source`` gets its stream features (True), or is cut off
    before a single byte (False)."""
    sock = c2s(port, source)
    try:
        sock.sendall(HEADER.format(host=DOMAIN).encode())
        return b"</stream:features>" in recv_until(sock, b"</stream:features>")
    except (ConnectionResetError, BrokenPipeError):
        return False
    finally:
        sock.close()


def websocket(port: int, source: str, headers: dict[str, str] | None = None) -> ClientConnection:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return ws_connect(
        f"ws://127.0.0.1:{port}/xmpp-websocket",
        sock=sock,
        subprotocols=["xmpp"],  # type: ignore[list-item]
        additional_headers=headers,
        proxy=None,
    )


def websocket_refusal(port: int, source: str, headers: dict[str, str] | None = None) -> int | str | None:
    """None when a WebSocket from ``source`` opens and its XMPP stream is served, else the HTTP
    status it was refused with, or "reset" when it had no answer at all."""
    try:
        with websocket(port, source, headers) as ws:
            ws.send(f"<open xmlns='{FRAMING}' to='{DOMAIN}' version='1.0'/>")
            got = ""
            while "</stream:features>" not in got:
                got += str(ws.recv(timeout=5))
    except InvalidStatus as exc:
        return exc.response.status_code
    except (InvalidMessage, ConnectionClosedError, OSError):
        return "reset"
    return None


def test_c2s_over_the_rate_is_cut_off_and_another_address_is_served(broker):
    _proc, endpoint = broker
    port = endpoint.c2s_port
    served = [c2s_served(port, "127.0.0.2") for _ in range(BURST)]
    assert served == [True] * BURST  # one after the other: never more than one open
    assert not c2s_served(port, "127.0.0.2")  # the burst is spent: reset, no stream header
    assert c2s_served(port, "127.0.0.3")  # another address has its own budget
    for _ in range(BURST + 5):  # the host itself (the focus, bridges) is never limited
        assert c2s_served(port, "127.0.0.1")


def test_c2s_over_the_open_cap_is_cut_off_until_one_closes(broker):
    _proc, endpoint = broker
    port = endpoint.c2s_port
    held = [c2s(port, "127.0.0.4") for _ in range(MAX_OPEN)]
    for sock in held:  # each one served
        sock.sendall(HEADER.format(host=DOMAIN).encode())
        assert b"</stream:features>" in recv_until(sock, b"</stream:features>")
    assert not c2s_served(port, "127.0.0.4")
    held.pop().close()
    deadline = time.monotonic() + 5
    while not c2s_served(port, "127.0.0.4"):  # its place is free once the broker saw the close
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for sock in held:
        sock.close()


def test_websockets_over_the_rate_are_reset_before_the_handshake(broker):
    proc, endpoint = broker
    port = endpoint.http_port
    assert [websocket_refusal(port, "127.0.0.5") for _ in range(BURST)] == [None] * BURST
    assert websocket_refusal(port, "127.0.0.5") == "reset"
    assert websocket_refusal(port, "127.0.0.6") is None
    # one line for the refusals, not one per connection
    deadline = time.monotonic() + 5
    while "refused http connection from 127.0.0.5" not in proc.log():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(broker):
    _proc, endpoint = broker
    port = endpoint.http_port
    # nginx on the host (a trusted proxy, 127.0.0.1) passes each client's address: one client's
    # WebSockets are counted against it, another's against that other
    one, two = {"X-Forwarded-For": "198.51.100.7"}, {"X-Real-IP": "198.51.100.8"}
    with contextlib.ExitStack() as held:
        for _ in range(MAX_OPEN):
            held.enter_context(websocket(port, "127.0.0.1", one))
        assert websocket_refusal(port, "127.0.0.1", one) == 429
        assert websocket_refusal(port, "127.0.0.1", two) is None
        assert websocket_refusal(port, "127.0.0.1") is None  # the proxy's own: the host, exempt
    # anyone else's forwarding headers are not believed: its own address is counted
    assert [websocket_refusal(port, "127.0.0.7", two) for _ in range(BURST)] == [None] * BURST
    assert websocket_refusal(port, "127.0.0.7", two) == "reset"
    assert websocket_refusal(port, "127.0.0.8", one) is None


def test_refusals_are_held_for_the_delay_a_few_at_a_time(broker):
    """A client that reconnects as soon as it is refused gets one refusal per delay: a refused
    connection is reset only after ``connection-refusal-delay`` (nothing is read or answered
    meanwhile); past a few held refusals of one address, the rest are reset at once."""
    _proc, endpoint = broker
    port = endpoint.c2s_port
    while c2s_served(port, "127.0.0.9"):  # spend its budget
        pass
    start = time.monotonic()
    waiting = {c2s(port, "127.0.0.9"): 0 for _ in range(HELD + 4)}
    reset_after = []
    while waiting and time.monotonic() - start < 10:
        readable, _, _ = select.select(list(waiting), [], [], 1)
        for sock in readable:
            try:
                assert sock.recv(1) == b""  # nothing is ever answered
            except ConnectionResetError:
                pass
            reset_after.append(time.monotonic() - start)
            del waiting[sock]
            sock.close()
    assert not waiting
    assert sum(1 for t in reset_after if t >= DELAY * 0.8) == HELD, reset_after


@pytest.mark.parametrize("which, source", [("c2s_port", "127.0.0.10"), ("http_port", "127.0.0.11")])
def test_a_held_refusal_is_not_read(broker, which, source):
    """A refused connection held for the delay is not read: what its client sends stays in the
    socket buffers and the client soon has to wait, instead of the broker reading (and dropping)
    a 20 MB stream header as fast as it comes, for every held refusal."""
    _proc, endpoint = broker
    while c2s_served(endpoint.c2s_port, source):  # spend its budget (both ports share it)
        pass
    sock = socket.create_connection(("127.0.0.1", getattr(endpoint, which)), source_address=(source, 0))
    sock.setblocking(False)
    sent, chunk = 0, b"x" * 65536
    deadline = time.monotonic() + DELAY * 0.6  # well before the reset
    while time.monotonic() < deadline and sent < 64 << 20:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
    sock.close()
    # the client's send buffer (tcp_wmem, at most 4 MiB by default), the broker's unread receive
    # buffer and at most one read before the broker stops reading
    assert sent < 8 << 20, sent

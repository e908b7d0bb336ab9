"""Attacks on the broker's parsers and queues: a stanza nested too deep (WebSocket, through nginx),
an unterminated start tag or stream header of 20 MB, partial stanzas held open to grow memory, a
client that never reads, a client that never acknowledges (XEP-0198). Each ends that client's
stream with a stream error; the bystander keeps being served; memory comes back."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx

from tests.integration.xmpp_interop.raw import RawClient
from tests.security.conftest import WsGuest, rss_mb, tracebacks

SM = "urn:xmpp:sm:3"


def metric(stack, name: str, label: str = "") -> float:
    text = httpx.get(f"http://127.0.0.1:{5280 + stack.offset}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def settle_rss(pid: int, target: float, timeout: float = 30.0) -> float:
    """RSS once it is at or below ``target`` (or after ``timeout``): memory is returned lazily."""
    deadline = time.monotonic() + timeout
    while True:
        now = rss_mb(pid)
        if now <= target or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def push(sock: socket.socket, total: int, chunk: bytes = b"x" * 65536) -> int:
    """Send up to ``total`` bytes; returns how many the broker took before closing on us."""
    sent = 0
    sock.settimeout(10)
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    return sent


def test_websocket_frame_nested_2000_deep_without_xmlns(stack):
    before = tracebacks(stack.log())
    bystander = WsGuest(stack.ws_url).login()
    mallory = WsGuest(stack.ws_url).login()
    try:
        mallory.send("<iq type='get' id='deep'>" + "<a>" * 2000 + "</a>" * 2000 + "</iq>")
        assert "policy-violation" in mallory.recv_until("policy-violation")
        assert mallory.closed_by_server()
        bystander.ping("after-deep")
        assert tracebacks(stack.log()) == before
    finally:
        bystander.close()
        mallory.close()


def test_unterminated_start_tag_and_stream_header_of_20_mb_are_cut_off_early(stack):
    pid = stack.xmpp_pid
    bystander = RawClient(stack.c2s_port).login()
    try:
        base = rss_mb(pid)
        tag = RawClient(stack.c2s_port).login()
        tag.send("<message to='x@meet.jitsi' a='")
        assert push(tag.sock, 20 << 20) < 8 << 20  # closed after the stanza limit, not 20 MB later
        tag.close()
        header = socket.create_connection(("127.0.0.1", stack.c2s_port), timeout=10)
        header.sendall(b"<?xml version='1.0'?><stream:stream to='meet.jitsi' a='")
        assert push(header, 20 << 20) < 8 << 20
        header.close()
        assert bystander.ping("after-tokens")
        assert settle_rss(pid, base + 5) <= base + 5
    finally:
        bystander.close()


def test_a_flood_of_short_hostile_connections_leaves_no_memory_behind(stack):
    """Hundreds of short connections, each ended by the broker (a WebSocket frame nested 2,000
    deep; a stream header over its limit): what each held is
    freed when it closes, not at the broker's rare full garbage collection. Before, each closed
    WebSocket connection kept its HTTP connection, WebSocket protocol and session alive in
    reference cycles: a flood of them at 600/s kept 80 MB after it ended. Straight to the
    broker's own ports, as from inside the network: nginx would rate-limit it first."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect as ws_connect

    pid = stack.xmpp_pid
    http_port = 5280 + stack.offset
    deep = "<iq type='get' id='d' to='focus.meet.jitsi'>" + "<a>" * 2000 + "</a>" * 2000 + "</iq>"
    bystander = RawClient(stack.c2s_port).login()
    try:
        base = rss_mb(pid)
        for _ in range(300):
            with contextlib.suppress(WebSocketException, TimeoutError, OSError):
                with ws_connect(f"ws://127.0.0.1:{http_port}/xmpp-websocket", subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
                    ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='meet.jitsi' version='1.0'/>")
                    ws.send(deep)
                    while True:
                        ws.recv(timeout=5)
            header = socket.create_connection(("127.0.0.1", stack.c2s_port), timeout=10)
            header.sendall(b"<?xml version='1.0'?><stream:stream to='meet.jitsi' a='")
            push(header, 1 << 20)
            header.close()
        during = rss_mb(pid)
        assert bystander.ping("after-flood")
        after = settle_rss(pid, base + 5)
        assert after <= base + 5, f"RSS {base:.1f} MB before, {during:.1f} after the flood, {after:.1f} 30 s later"
    finally:
        bystander.close()


def test_partial_stanzas_held_open_cost_bounded_memory_that_comes_back(stack):
    pid = stack.xmpp_pid
    bystander = RawClient(stack.c2s_port).login()
    holders = []
    try:
        base = rss_mb(pid)
        # the next element over the per-stanza element limit is a policy-violation for that client
        over = RawClient(stack.c2s_port).login()
        over.send("<message to='x@meet.jitsi'>" + "<a/>" * 20000)
        assert "policy-violation" in over.expect("</stream:stream>")
        over.close()
        for _ in range(10):
            c = RawClient(stack.c2s_port).login()
            c.send("<message to='x@meet.jitsi'>" + "<a/>" * 9000)  # many elements, just under the limits
            holders.append(c)
        # five of them fill the server's budget for elements in unfinished stanzas
        # (limits.max-pending-elements, 50,000): the connections after that are cut off
        refused = 0
        for c in holders[5:]:
            with contextlib.suppress(TimeoutError, OSError):
                if "resource-constraint" in c.expect("</stream:stream>"):
                    refused += 1
        assert refused >= 4, f"{refused} of the 5 holders past the budget were refused"
        assert bystander.ping("while-held")
        during = rss_mb(pid)
        assert during - base < 60, f"{during - base:.1f} MB for 10 partial stanzas"
        for c in holders:
            c.close()
        holders = []
        after = settle_rss(pid, base + 15)
        assert after <= base + 15, f"RSS {base:.1f} MB before, {during:.1f} during, {after:.1f} after"
        assert bystander.ping("after-held")
    finally:
        for c in holders:
            c.close()
        bystander.close()


def test_a_client_that_never_reads_is_cut_off_and_memory_returns(stack):
    pid = stack.xmpp_pid
    # each guest's connection is read at limits.guest-rate-bytes-per-second after a burst of
    # guest-burst-bytes (256 KiB): the flood comes from many guests, as it would have to now
    senders = [RawClient(stack.c2s_port).login() for _ in range(24)]
    sender = senders[0]
    sleeper = RawClient(stack.c2s_port)
    sleeper.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.login()
    try:
        base = rss_mb(pid)
        errors_before = metric(stack, "xmpp_stream_errors_total", 'condition="policy-violation"')
        body = "y" * 8192
        bounced = False
        for i in range(3000):  # 24 MB if nobody cut it off
            senders[i % len(senders)].send(
                f"<message to='{sleeper.jid}' type='chat' id='f{i}'><body>{body}</body></message>"
            )
            if i % 100 == 99:
                sender.send(f"<iq type='get' id='sync{i}' to='meet.jitsi'><ping xmlns='urn:xmpp:ping'/></iq>")
                sender.expect(f"id='sync{i}'", timeout=20)
                if metric(stack, "xmpp_stream_errors_total", 'condition="policy-violation"') > errors_before:
                    bounced = True
                    break
        assert bounced, "the broker kept queueing for a client that never reads"
        sender.send(f"<message to='{sleeper.jid}' type='chat' id='gone'><body>x</body></message>")
        assert "service-unavailable" in sender.expect("id='gone'", timeout=10)
        assert sender.ping("sender-ok")
        after = settle_rss(pid, base + 5)
        assert after <= base + 5, f"RSS {base:.1f} MB before, {after:.1f} MB after"
    finally:
        for c in senders:
            c.close()
        sleeper.close()


def test_a_client_that_never_acks_is_closed_with_a_stream_error(stack):
    sender = WsGuest(stack.ws_url).login()
    lazy = WsGuest(stack.ws_url).login()
    try:
        lazy.send(f"<enable xmlns='{SM}' resume='true'/>")
        lazy.recv_until("enabled")
        done = threading.Event()

        def flood() -> None:
            for i in range(700):
                if done.is_set():
                    return
                sender.send(
                    f"<message xmlns='jabber:client' to='{lazy.jid}' type='chat'><body>{i}</body></message>"
                )

        t = threading.Thread(target=flood)
        t.start()
        err = lazy.recv_until("policy-violation", timeout=30)  # reads everything, acks nothing
        done.set()
        t.join()
        assert "unacknowledged" in err
        assert lazy.closed_by_server()
        sender.ping("sender-after-sm")
    finally:
        sender.close()
        lazy.close()

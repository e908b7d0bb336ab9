"""A client that pipelines (RFC 9112 section 9.3) behind a BOSH request the broker holds
(XEP-0124 section 7: up to ``wait`` seconds, longer with the refusal delay or the read budget):
what it sends meanwhile cannot be handled before the held request is answered. The broker must
stop reading it (TCP pushes back) instead of buffering it all (a real broker process)."""

from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from tests.integration.xmpp_interop.servers import start_parley
from tests.security.conftest import rss_mb

BOSH = "http://jabber.org/protocol/httpbind"


@pytest.fixture(scope="module")
def broker():
    # a read rate no client is slowed by, so only the pipelining limit can hold the flood back
    proc, endpoint = start_parley(
        "xmpp-http-pipelining", XMPP_RATE_BYTES_PER_SECOND="1000000000", XMPP_GUEST_RATE_BYTES_PER_SECOND="1000000000"
    )
    try:
        yield proc, endpoint
    finally:
        proc.stop()


def post(body: str) -> bytes:
    data = body.encode()
    return (
        b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )


def test_what_is_pipelined_behind_a_held_bosh_request_is_not_all_read(broker) -> None:
    proc, endpoint = broker
    created = httpx.post(
        f"http://127.0.0.1:{endpoint.http_port}/http-bind",
        content=f"<body xmlns='{BOSH}' rid='1' to='meet.jitsi' wait='8' hold='1' ver='1.6'/>",
        timeout=10,
    )
    sid = re.search(r"sid='([^']+)'", created.text).group(1)  # type: ignore[union-attr]
    before = rss_mb(proc.proc.pid)
    s = socket.create_connection(("127.0.0.1", endpoint.http_port), timeout=5)
    try:
        s.sendall(post(f"<body xmlns='{BOSH}' rid='2' sid='{sid}'/>"))  # held: nothing to say
        time.sleep(0.3)
        s.sendall(b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n")
        chunk, sent, total = b"x" * 65536, 0, 128 << 20
        s.settimeout(3)
        try:
            while sent < total:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the broker stopped reading: the socket buffers are full
            pass
        grown = rss_mb(proc.proc.pid) - before
        print(f"taken behind a held request: {sent / 2**20:.1f} MB; broker RSS {grown:+.1f} MB")
        assert sent < 32 << 20, f"{sent >> 20} MB taken behind a held request"
        assert grown < 24, f"RSS grew by {grown:.1f} MB"
        # the held request is answered when its wait is over (XEP-0124 section 7); then the
        # broker reads on, and the pipelined request is refused for its size, as at any time
        got, deadline = b"", time.monotonic() + 20
        while b"413" not in got and time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            got += chunk
        assert got.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 413" in got, got[:300]
    finally:
        s.close()

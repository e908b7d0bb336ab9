"""Bridge inputs (docs/security.md, "The bridge's inputs") against the stack the launcher starts, through nginx
where a client would come from: malformed STUN on the media port, hostile bridge-channel
messages, an endpoint that never reads its Colibri WebSocket, odd endpoint ids and unknown
bridge server ids. Each gets a clear error for that client only, a rate-limited log line (never a
traceback per packet), and everyone else is served.

The test acts as the focus on the bridge's private Colibri REST (loopback) to create endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.integration.browser import LauncherStack
from tests.security.test_focus_hostile_stanzas import Stack

pytestmark = [pytest.mark.peer]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    launcher = LauncherStack(tmp_path_factory.mktemp("stack") / "run", bridges=1).start()
    try:
        yield Stack(launcher)
    finally:
        launcher.stop()


def bridge_lines(stack: Stack) -> list[str]:
    return [line for line in stack.launcher.log().splitlines() if line.startswith("jvb1 ")]


def colibri_stats(stack: Stack) -> dict[str, Any]:
    return httpx.get(f"{stack.bridge}/colibri/stats", timeout=5).json()  # type: ignore[no-any-return]


def create(stack: Stack, *endpoints: str) -> dict[str, str]:
    """A conference with those endpoints; each endpoint's bridge-channel URL, as nginx serves it."""
    body = {
        "contents": [{"name": "audio", "channels": [{"endpoint": e, "expire": 60} for e in endpoints]}],
        "channel-bundles": [{"id": e, "transport": {"rtcp-mux": True}} for e in endpoints],
    }
    r = httpx.post(f"{stack.bridge}/colibri/conferences", content=json.dumps(body), timeout=10)
    assert r.status_code == 200, r.text
    urls = {b["id"]: b["transport"]["web-socket"] for b in r.json()["channel-bundles"]}
    front = stack.front.replace("http://", "ws://")
    for url in urls.values():
        assert url.startswith(front + "/colibri-ws/jvb1/"), url
    return urls


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))  # type: ignore[no-any-return]


async def recv_class(ws: ClientConnection, cls: str, within: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        msg = await recv_json(ws, max(0.1, deadline - time.monotonic()))
        if msg.get("colibriClass") == cls:
            return msg


# ------------------------------------------------------------------------------------------ STUN

TID = os.urandom(12)


def stun(attrs: list[tuple[int, bytes]], declared: int | None = None) -> bytes:
    body = b"".join(struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attrs)
    return struct.pack("!HHI", 0x0001, len(body) if declared is None else declared, 0x2112A442) + TID + body


MALFORMED_STUN = [
    stun([(0x0006, b"a:b"), (0x0024, b"\x01")]),  # PRIORITY of 1 byte
    stun([(0x0006, b"a:b"), (0x802A, b"12")]),  # ICE-CONTROLLING of 2 bytes
    stun([(0x0006, b"a:b"), (0x8028, b"\x00")]),  # FINGERPRINT of 1 byte
    stun([(0x0006, b"\xff\xfe:x")]),  # USERNAME not UTF-8
    stun([(0x0020, b"\x00")]),  # XOR-MAPPED-ADDRESS of 1 byte
    stun([(0x0006, b"a:b")], declared=400),  # length beyond the datagram
    b"\x00\x01\x00",  # truncated header
]


def test_malformed_stun_is_dropped_with_a_rate_limited_line(stack: Stack) -> None:
    udp_port = int(stack.front.rsplit(":", 1)[1]) - 8000 + 10000
    before = colibri_stats(stack)["stun_errors"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(100):
            for datagram in MALFORMED_STUN:
                sock.sendto(datagram, ("127.0.0.1", udp_port))
            time.sleep(0.002)
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while colibri_stats(stack)["stun_errors"] - before < 600:
        assert time.monotonic() < deadline, colibri_stats(stack)["stun_errors"] - before
        time.sleep(0.2)
    lines = bridge_lines(stack)
    assert not [line for line in lines if "Traceback" in line or "Exception in callback" in line]
    assert 1 <= len([line for line in lines if "STUN" in line]) <= 5
    assert httpx.get(f"{stack.bridge}/about/health", timeout=5).status_code == 200


# -------------------------------------------------------------------------------- bridge channel


async def test_hostile_bridge_channel_messages_get_an_error_and_the_channel_stays(stack: Stack) -> None:
    urls = create(stack, "hostile", "peer")
    async with connect(urls["hostile"]) as bad, connect(urls["peer"]) as peer:
        assert (await recv_json(bad))["colibriClass"] == "ServerHello"
        assert (await recv_json(peer))["colibriClass"] == "ServerHello"
        attacks = [
            "[" * 5000 + "]" * 5000,  # deep
            '{"colibriClass":"EndpointMessage","to":"","msgPayload":' + "[" * 900 + "]" * 900 + "}",
            json.dumps({"colibriClass": "EndpointMessage", "to": "", "msgPayload": "x" * 200_000}),  # huge
            json.dumps({"colibriClass": "NoSuchClass"}),
            json.dumps({"colibriClass": {"a": 1}}),
            "{not json",
            json.dumps({"colibriClass": "LastNChangedEvent", "lastN": "lots"}),
            json.dumps(
                {"colibriClass": "ReceiverVideoConstraints", "constraints": {"x": {"maxHeight": 1e308}}}
            ),
        ]
        errors = []
        for i, attack in enumerate(attacks):
            await bad.send(attack)
            if i % 3 == 0:  # Error replies are rate-limited to one a second per endpoint
                errors.append(await recv_class(bad, "Error"))
                await asyncio.sleep(1.05)
        assert all(e.get("reason") for e in errors), errors
        # still open, still served, and the peer never saw any of it
        await bad.send(json.dumps({"colibriClass": "ClientHello"}))
        await recv_class(bad, "ServerHello")
        await bad.send(json.dumps({"colibriClass": "EndpointMessage", "to": "peer", "msgPayload": {"ok": 1}}))
        relayed = await recv_class(peer, "EndpointMessage")
        assert relayed["msgPayload"] == {"ok": 1} and relayed["from"] == "hostile"
    lines = bridge_lines(stack)
    assert not [line for line in lines if "Traceback" in line]
    assert len([line for line in lines if "bridge-channel message" in line]) <= 12


async def test_odd_endpoint_ids_are_url_encoded(stack: Stack) -> None:
    odd = "a b/c?pwd=x&d#e%"
    urls = create(stack, odd)
    url = urls[odd]
    assert "/a%20b%2Fc%3Fpwd%3Dx%26d%23e%25?pwd=" in url, url
    async with connect(url) as ws:
        assert (await recv_json(ws))["colibriClass"] == "ServerHello"


def test_unknown_bridge_server_ids_are_404_not_the_page(stack: Stack) -> None:
    for path in ("/colibri-ws/nope/c/e?pwd=x", "/colibri-ws/", "/colibri-ws/jvb1x/c/e"):
        r = httpx.get(stack.front + path, timeout=5)
        assert r.status_code == 404, (path, r.status_code)
        assert "<html" not in r.text.lower() or "parley" not in r.text.lower()
    # the bridge's public port itself only listens on loopback
    public_port = int(stack.front.rsplit(":", 1)[1]) - 8000 + 9090
    assert f"127.0.0.1:{public_port}" in "\n".join(bridge_lines(stack))


# ------------------------------------------------------------------------ an endpoint that never reads


def raw_websocket(url: str) -> socket.socket:
    """A WebSocket handshake over a plain socket with a tiny receive buffer, then never read."""
    rest = url.split("://", 1)[1]
    hostport, path = rest.split("/", 1)
    host, port = hostport.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked_text_frame(text: str) -> bytes:
    """One client-to-server WebSocket text frame (RFC 6455 section 5.2), payload under 126 bytes."""
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_an_endpoint_that_never_reads_is_disconnected(stack: Stack) -> None:
    urls = create(stack, "sleeper", "talker")
    async with httpx.AsyncClient(timeout=5) as http:
        rss_before = (await http.get(f"{stack.bridge}/debug")).json()["rss_bytes"]
    # straight to the bridge's public WebSocket port (nginx in between would buffer megabytes of
    # answers in its own sockets before the bridge saw a backlog)
    direct = f"ws://127.0.0.1:{9090 + int(stack.bridge.rsplit(':', 1)[1]) - 8080}"
    sleeper = raw_websocket(urls["sleeper"].replace(stack.front.replace("http://", "ws://"), direct))
    try:
        async with connect(urls["talker"]) as talker:
            await recv_json(talker)
            # Messages relayed to it are bounded by each sender's relay budget
            # (tests/security/test_bridge_channel_flood.py); an endpoint asking the bridge itself
            # for answers (ClientHello -> ServerHello) and never reading them is not: up to 10 MB
            # of answers for 200,000 hellos (the kernel's send buffer takes the first few MB)
            hellos = masked_text_frame(json.dumps({"colibriClass": "ClientHello"})) * 2000
            for _ in range(100):
                try:
                    await asyncio.to_thread(sleeper.sendall, hellos)
                except OSError:  # the bridge cut it off already
                    break
                await talker.send(json.dumps({"colibriClass": "ClientHello"}))  # let the bridge keep up
                await recv_class(talker, "ServerHello")
            deadline = time.monotonic() + 20
            while True:
                async with httpx.AsyncClient(timeout=5) as http:
                    dump = (await http.get(f"{stack.bridge}/debug")).json()["web_sockets"]
                # ws.dump's details carry the bridge's fields (endpoint, queued bytes) per connection
                if not [c for c in dump["details"] if c.get("endpoint") == "sleeper"]:
                    break
                assert time.monotonic() < deadline, dump
                await asyncio.sleep(0.3)
            assert dump["closed_for_backlog"] >= 1
            assert all(c.get("queued_bytes", 0) <= 1 << 20 for c in dump["details"])
            async with httpx.AsyncClient(timeout=5) as http:
                rss_after = (await http.get(f"{stack.bridge}/debug")).json()["rss_bytes"]
            # the 30 MB never piled up in the bridge (its queue for the sleeper is bounded at 1 MiB)
            assert rss_after - rss_before < 15 << 20, (rss_before, rss_after)
            # the talker is still served
            await talker.send(json.dumps({"colibriClass": "ClientHello"}))
            await recv_class(talker, "ServerHello")
    finally:
        sleeper.close()

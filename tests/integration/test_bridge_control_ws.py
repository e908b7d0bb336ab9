"""Colibri WebSocket (jitsi-videobridge doc/web-sockets.md) against a running bridge: rejections, hello, relaying, expiry, admin."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.harness import free_port
from tests.integration.test_bridge_control_support import RunningBridge, dumps, start_bridge


@pytest.fixture(scope="module")
def bridge() -> Iterator[RunningBridge]:
    b = start_bridge(
        "bridge-ws",
        "videobridge.colibri.expire-check-interval = 200 ms\n"
        "videobridge.websockets { keepalive-timeout = 2, rm-delay-interval = 0.5 }\n",
        server_id="jvbws",
    )
    try:
        yield b
    finally:
        b.process.stop()


async def conference(
    http: httpx.AsyncClient, *endpoints: str, expire: int = 60
) -> tuple[str, dict[str, str]]:
    """A conference with one audio channel per endpoint; returns its id and each endpoint's ws URL."""
    body = {
        "contents": [{"name": "audio", "channels": [{"endpoint": e, "expire": expire} for e in endpoints]}],
        "channel-bundles": [{"id": e, "transport": {"rtcp-mux": True}} for e in endpoints],
    }
    r = await http.post("/colibri/conferences", content=dumps(body))
    assert r.status_code == 200, r.text
    out = r.json()
    return out["id"], {b["id"]: b["transport"]["web-socket"] for b in out["channel-bundles"]}


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def quiet(ws: ClientConnection, seconds: float = 0.5) -> bool:
    """True if nothing arrives within ``seconds``."""
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def opened(url: str) -> ClientConnection:
    ws = await connect(url, compression="deflate")
    hello = await recv_json(ws)
    assert hello["colibriClass"] == "ServerHello"
    return ws


async def test_rejections(bridge: RunningBridge, http: httpx.AsyncClient) -> None:
    cid, urls = await conference(http, "a")
    url = urls["a"]
    pwd = url.split("pwd=")[1]
    base = bridge.ws_base
    cases = {
        f"{base}/colibri-ws/otherbridge/{cid}/a?pwd={pwd}": 404,
        f"{base}/colibri-ws/jvbws/nosuchconf/a?pwd={pwd}": 403,
        f"{base}/colibri-ws/jvbws/{cid}/nosuchendpoint?pwd={pwd}": 403,
        f"{base}/colibri-ws/jvbws/{cid}/a?pwd=wrong": 403,
        f"{base}/colibri-ws/jvbws/{cid}/a": 403,
        f"{base}/elsewhere": 404,
    }
    for bad, status in cases.items():
        with pytest.raises(InvalidStatus) as err:
            await connect(bad)
        assert err.value.response.status_code == status, bad


async def test_hello_relay_and_broadcast(http: httpx.AsyncClient) -> None:
    _, urls = await conference(http, "a", "b", "c")
    a, b, c = [await opened(urls[e]) for e in ("a", "b", "c")]
    assert a.response.headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
    await a.send(json.dumps({"colibriClass": "ClientHello"}))
    assert (await recv_json(a))["colibriClass"] == "ServerHello"
    # unicast: A -> B only, with from
    await a.send(json.dumps({"colibriClass": "EndpointMessage", "to": "b", "msgPayload": {"hi": 1}}))
    got = await recv_json(b)
    assert got == {"colibriClass": "EndpointMessage", "to": "b", "msgPayload": {"hi": 1}, "from": "a"}
    assert await quiet(a) and await quiet(c, 0.1)
    # broadcast: everyone else
    await b.send(json.dumps({"colibriClass": "EndpointMessage", "to": "", "msgPayload": "all"}))
    for ws in (a, c):
        m = await recv_json(ws)
        assert m["from"] == "b" and m["msgPayload"] == "all"
    assert await quiet(b, 0.2)
    # EndpointStats relayed to the others with from
    await c.send(json.dumps({"colibriClass": "EndpointStats", "bitrate": {"upload": 10}}))
    for ws in (a, b):
        m = await recv_json(ws)
        assert m == {"colibriClass": "EndpointStats", "bitrate": {"upload": 10}, "from": "c"}
    # garbage is refused with an Error (at most one a second), the socket stays up
    await a.send("{not json")
    await a.send(json.dumps({"colibriClass": "NoSuchClass"}))
    await a.send(json.dumps({"colibriClass": "ClientHello"}))
    error = await recv_json(a)
    assert error["colibriClass"] == "Error" and "malformed JSON" in error["reason"], error
    assert (await recv_json(a))["colibriClass"] == "ServerHello"
    assert await quiet(b, 0.1) and await quiet(c, 0.1)
    for ws in (a, b, c):
        await ws.close()


async def test_media_steering_reaches_the_engine_and_its_answer_the_socket(http: httpx.AsyncClient) -> None:
    """LastNChangedEvent goes to the media engine's conference policy, whose ForwardedSources
    comes back over the same bridge channel."""
    body = {
        "contents": [
            {"name": "audio", "channels": [{"endpoint": "m"}, {"endpoint": "n"}]},
            {
                "name": "video",
                "channels": [
                    {"endpoint": "m"},
                    {
                        "endpoint": "n",
                        "sources": [1111],
                        "payload-types": [{"id": 100, "name": "VP8", "clockrate": 90000}],
                    },
                ],
            },
        ],
        "channel-bundles": [{"id": "m"}, {"id": "n"}],
    }
    out = (await http.post("/colibri/conferences", content=dumps(body))).json()
    url = next(b["transport"]["web-socket"] for b in out["channel-bundles"] if b["id"] == "m")
    ws = await opened(url)
    await ws.send(json.dumps({"colibriClass": "LastNChangedEvent", "lastN": 0}))
    got = await recv_json(ws)
    assert got == {"colibriClass": "ForwardedSources", "forwardedSources": []}
    await ws.close()


async def test_expiry_closes_the_socket(http: httpx.AsyncClient) -> None:
    cid, urls = await conference(http, "x", "y")
    ws = await opened(urls["x"])
    conf = (await http.get(f"/colibri/conferences/{cid}")).json()
    (ch,) = [c for c in conf["contents"][0]["channels"] if c["endpoint"] == "x"]
    body = {"contents": [{"name": "audio", "channels": [{"id": ch["id"], "expire": 0}]}]}
    assert (await http.patch(f"/colibri/conferences/{cid}", content=dumps(body))).status_code == 200
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1001 and ws.close_reason == "endpoint expired"


async def test_inactivity_expiry_closes_the_socket(http: httpx.AsyncClient) -> None:
    _, urls = await conference(http, "z", expire=1)
    ws = await opened(urls["z"])
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1001


async def test_keepalive_keeps_an_answering_client(http: httpx.AsyncClient) -> None:
    """Pinged after 2 s idle, the client answers, so it outlives the keep-alive."""
    _, urls = await conference(http, "k")
    ws = await opened(urls["k"])
    await asyncio.sleep(3.5)
    await ws.send(json.dumps({"colibriClass": "ClientHello"}))
    assert (await recv_json(ws))["colibriClass"] == "ServerHello"
    await ws.close()


async def test_idle_timeout_drops_a_silent_client(http: httpx.AsyncClient) -> None:
    """A client that never answers pings is dropped (pinged after 2 s idle, dropped a run later)."""
    _, urls = await conference(http, "s")
    reader, writer = await asyncio.open_connection(*urls["s"].split("/")[2].split(":"))
    path = "/" + urls["s"].split("/", 3)[3]
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    loop = asyncio.get_running_loop()
    start = loop.time()
    # read (and never answer) until the server closes the TCP connection
    while await asyncio.wait_for(reader.read(4096), 15):
        pass
    elapsed = loop.time() - start
    assert 2.0 <= elapsed <= 10.0
    writer.close()


async def test_admin_list_ping_close_disable_enable(bridge: RunningBridge, http: httpx.AsyncClient) -> None:
    cid, urls = await conference(http, "p", "q")
    ws = await opened(urls["p"])
    listing = (await http.get("/admin/ws/dump")).json()
    assert listing["enabled"] is True
    (mine,) = [c for c in listing["details"] if c["conference"] == cid]
    assert mine["endpoint"] == "p" and mine["state"] == "OPEN"
    r = await http.post(f"/admin/ws/ping/{mine['id']}")
    assert r.status_code == 200
    assert (await http.post("/admin/ws/ping/999999")).status_code == 404
    assert (await http.post("/admin/ws/disable")).json() == {"enabled": False}
    with pytest.raises(InvalidStatus) as err:
        await connect(urls["q"])
    assert err.value.response.status_code == 503
    assert (await http.post("/admin/ws/enable")).json() == {"enabled": True}
    q = await opened(urls["q"])
    assert (await http.post(f"/admin/ws/close/{mine['id']}")).status_code == 200
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert (ws.close_code, ws.close_reason) == (1000, "Normal closure")
    await asyncio.sleep(0.5)
    assert (await http.post(f"/admin/ws/close/{mine['id']}")).status_code == 404
    await q.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_public_server(tmp_path: Path) -> None:
    """tls-port + a PEM pair: the public server speaks TLS and the advertised URL is wss://."""
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    b = start_bridge(
        "bridge-wss",
        f'videobridge.http-servers.public {{ tls-port = {tls_port}, tls-certificate-path = "{cert}", '
        f'tls-private-key-path = "{key}" }}\n',
        server_id="jvbtls",
        JVB_WS_TLS="true",
        JVB_WS_DOMAIN=f"127.0.0.1:{tls_port}",
    )
    try:
        async with httpx.AsyncClient(base_url=b.url, timeout=10) as http:
            _, urls = await conference(http, "t")
        assert urls["t"].startswith(f"wss://127.0.0.1:{tls_port}/colibri-ws/jvbtls/")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        async with connect(urls["t"], ssl=ctx) as ws:
            assert (await recv_json(ws))["colibriClass"] == "ServerHello"
    finally:
        b.process.stop()

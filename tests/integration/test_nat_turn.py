"""coturn as Parley configures it, against a real TURN client (aioice's): REST credentials are
checked (c: wrong or expired ones are refused), and the relay reaches the bridges' addresses and
nothing else on private ranges (d: not an open proxy)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioice.stun import TransactionFailed

from tests.integration.turn import TurnClient, coturn_available, credential, start_coturn, stop_coturn

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not coturn_available(), reason="needs coturn (/usr/bin/turnserver)"),
]

SECRET = "turn-test-secret"


@pytest.fixture(scope="module")
def turn() -> Iterator[tuple[str, int]]:
    proc, port = start_coturn(SECRET)
    try:
        yield ("127.0.0.1", port)
    finally:
        stop_coturn(proc)


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    """A UDP socket at the bridges' address (127.0.0.1): what the relay may reach."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


async def _recv(sock: socket.socket, wait: float = 5.0) -> tuple[bytes, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    fut = loop.sock_recvfrom(sock, 2048)
    data, addr = await asyncio.wait_for(fut, wait)
    return data, addr


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_valid_credentials_relay_both_ways_to_a_bridge(
    turn: tuple[str, int], peer: socket.socket, transport: str
) -> None:
    client = await TurnClient.open(turn, *credential(SECRET), transport=transport)
    try:
        relayed = await client.allocate()
        assert relayed[0] == "127.0.0.1"
        await client.send(b"hello bridge", peer.getsockname())
        data, addr = await _recv(peer)
        assert data == b"hello bridge"
        assert addr == tuple(relayed)  # the bridge sees the relay's address, not the client's
        peer.sendto(b"hello client", addr)
        data, frm = await asyncio.wait_for(client.received.get(), 5)
        assert (data, frm) == (b"hello client", peer.getsockname())
    finally:
        client.close()


@pytest.mark.parametrize(
    "username_password",
    [
        pytest.param(lambda: (credential(SECRET)[0], "d3JvbmcgcGFzc3dvcmQ="), id="wrong-password"),
        pytest.param(lambda: credential("another-secret"), id="other-secret"),
        pytest.param(lambda: credential(SECRET, lifetime=-60), id="expired"),
        pytest.param(lambda: ("tester@meet.jitsi", "x"), id="no-timestamp"),
    ],
)
async def test_bad_or_expired_credentials_are_refused(turn: tuple[str, int], username_password) -> None:
    client = await TurnClient.open(turn, *username_password())
    try:
        with pytest.raises(TransactionFailed) as failure:
            await client.allocate()
        assert failure.value.response.error_code == 401
    finally:
        client.close()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.2",  # loopback other than the bridges' address
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata service
        "100.64.0.1",
        "224.0.0.251",
        "0.0.0.0",
    ],
)
async def test_relay_refuses_addresses_outside_the_allowed_list(turn: tuple[str, int], address: str) -> None:
    client = await TurnClient.open(turn, *credential(SECRET))
    try:
        await client.allocate()
        with pytest.raises(TransactionFailed) as failure:
            await client.create_permission((address, 9))
        assert failure.value.response.error_code == 403
        await client.create_permission(("127.0.0.1", 9))  # the bridges' address is allowed
    finally:
        client.close()


async def test_no_relay_over_tcp_to_reach_services(turn: tuple[str, int]) -> None:
    """RFC 6062 TCP allocations would let a client open connections through the relay."""
    client = await TurnClient.open(turn, *credential(SECRET), transport="tcp")
    try:
        with pytest.raises(TransactionFailed) as failure:
            await client.allocate(requested_transport=6 << 24)  # TCP, RFC 6062
        assert failure.value.response.error_code == 442  # Unsupported Transport Protocol
    finally:
        client.close()


async def test_the_launcher_sees_coturn_healthy_through_stun(turn: tuple[str, int]) -> None:
    import httpx

    from services.launcher.supervisor import _healthy
    from tests.integration.harness import free_port

    async with httpx.AsyncClient() as http:
        assert await _healthy(http, f"stun:127.0.0.1:{turn[1]}")
        assert not await _healthy(http, f"stun:127.0.0.1:{free_port(socket.SOCK_DGRAM)}")


async def test_turn_over_tls_with_a_certificate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """TURNS (RFC 8656 over TLS) on its own port once a certificate is configured."""
    import ssl

    from tests.integration.harness import free_port
    from tests.integration.test_bridge_control_ws import self_signed

    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    proc, _ = await asyncio.to_thread(
        start_coturn,
        SECRET,
        extra_env={"TURN_TLS_CERT": str(cert), "TURN_TLS_KEY": str(key), "TURNS_PORT": str(tls_port)},
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        client = await TurnClient.open(
            ("127.0.0.1", tls_port), *credential(SECRET), transport="tcp", tls=context
        )
        try:
            relayed = await client.allocate()
            assert relayed[0] == "127.0.0.1"
            tls = client.transport.get_extra_info("ssl_object")
            assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            client.close()
    finally:
        stop_coturn(proc)


GATHER_RELAY = """
async ([url, username, credential]) => {
  const pc = new RTCPeerConnection({
    iceServers: [{ urls: url, username, credential }], iceTransportPolicy: 'relay' });
  const candidates = [];
  const errors = [];
  pc.onicecandidate = (e) => { if (e.candidate) candidates.push(e.candidate.candidate); };
  pc.onicecandidateerror = (e) => errors.push(e.errorCode);
  pc.createDataChannel('probe');
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
    setTimeout(resolve, 20000);
  });
  pc.close();
  return { candidates, errors };
}
"""


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_chromium_gets_a_relay_only_with_valid_credentials(turn: tuple[str, int], transport: str) -> None:
    """Real Chromium against real coturn: a relay candidate with fresh credentials, none (and a
    401 candidate error) with an expired or a wrong one."""
    from tests.integration.browser import browsers

    url = f"turn:127.0.0.1:{turn[1]}?transport={transport}"
    valid = credential(SECRET)
    cases = {
        "valid": valid,
        "expired": credential(SECRET, lifetime=-60),
        "wrong": (valid[0], "bm90IHRoZSBwYXNzd29yZA=="),
    }
    with browsers() as pool:
        page = pool.open(fake_media=False)
        page.goto("about:blank")
        got = {name: page.evaluate(GATHER_RELAY, [url, *cred]) for name, cred in cases.items()}
    relays = {name: [c for c in g["candidates"] if " typ relay " in c] for name, g in got.items()}
    assert relays["valid"] and all(" 127.0.0.1 " in c for c in relays["valid"]), got["valid"]
    for name in ("expired", "wrong"):
        assert relays[name] == [], got[name]
        assert 401 in got[name]["errors"], got[name]

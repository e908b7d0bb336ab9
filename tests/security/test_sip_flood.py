"""One source flooding the SIP gateway (``python -m services.sip``) with requests: its messages
past ``sip.limits.requests-*`` (a token bucket per source address, Kamailio's pike) are dropped
unanswered over UDP and its TCP or WebSocket connection is closed, while another source is still
answered; the host itself (where nginx runs) is never limited, and a WebSocket from nginx counts as
the client address nginx forwards."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from services.sip.message import parse
from tests.integration.harness import ServiceProcess
from tests.integration.sip_client import DOMAIN, SipClient, gateway_process, request

RATE, BURST = 5, 10
ORIGIN = {"Origin": "https://meet.example"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[ServiceProcess, dict[str, int]]]:
    proc, ports = gateway_process({"SIP_REQUESTS_PER_SECOND": str(RATE), "SIP_REQUESTS_BURST": str(BURST),
                                   "SIP_WS_ORIGINS": ORIGIN["Origin"]})  # fmt: skip
    with proc:
        yield proc, ports


def udp_flood(ports: dict[str, int], source: str, method: str, count: int = 300) -> tuple[list[int], float]:
    """``count`` requests from ``source`` as fast as the gateway reads them: (the answers' statuses,
    seconds from the first request to the end of the last answer's wait)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((source, 0))
    host = f"{source}:{sock.getsockname()[1]}"
    extra = [("Contact", f"<sip:alice@{host}>"), ("Expires", "300")] if method == "REGISTER" else []
    try:
        start = time.monotonic()
        for i in range(count):
            sock.sendto(request(method, f"sip:{DOMAIN}", host=host, extra=extra).to_bytes(), ("127.0.0.1", ports["sip"]))
            if i % 50 == 49:
                time.sleep(0.05)  # let the gateway read them (UDP drops what overflows its buffer)
        answers = []
        sock.settimeout(1.0)
        while True:
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                return answers, time.monotonic() - start
            answers.append(parse(data, check=False).status)
    finally:
        sock.close()


def at_most(took: float) -> float:
    """What the limit can let through in ``took`` seconds from a source's first message: its
    burst, then its rate (an answer counted was admitted before it arrived, however slowly the
    gateway worked through the flood)."""
    return BURST + RATE * took


def answered(kind: str, ports: dict[str, int], **kw: object) -> int | None:
    c = SipClient(kind, "127.0.0.1", ports["ws" if kind == "ws" else "sip"], **kw)  # type: ignore[arg-type]
    try:
        c.send_raw(request("OPTIONS", f"sip:{DOMAIN}", transport=c.via_transport, host=c.local).to_bytes())
        resp = c.recv(5)
        return resp.status if resp is not None else None
    finally:
        c.close()


def stream_flood(c: SipClient, count: int = 100) -> tuple[int, float]:
    """``count`` OPTIONS on one connection at once: (the answers before the connection closed or
    went quiet, seconds from the first request to then)."""
    data = b"".join(request("OPTIONS", f"sip:{DOMAIN}", transport=c.via_transport, host=c.local).to_bytes()
                    for _ in range(count))  # fmt: skip
    start = time.monotonic()
    if c.kind == "ws":
        for _ in range(count):
            c.send_raw(data[: len(data) // count])
    else:
        c.send_raw(data)
    answers = 0
    while c.recv(3) is not None:
        answers += 1
    return answers, time.monotonic() - start


@pytest.mark.parametrize(("source", "method", "status"), [("127.0.0.3", "OPTIONS", 200), ("127.0.0.5", "REGISTER", 401)])
def test_udp_flood_is_cut_to_the_rate_and_another_source_is_answered(
    gateway: tuple[ServiceProcess, dict[str, int]], source: str, method: str, status: int
) -> None:
    proc, ports = gateway
    answers, took = udp_flood(ports, source, method)
    assert BURST <= len(answers) <= at_most(took), (len(answers), took)
    assert set(answers) == {status}
    assert answered("udp", ports, local_host="127.0.0.2") == 200
    c = SipClient("udp", "127.0.0.1", ports["sip"], local_host="127.0.0.2")
    try:
        resp = c.register("bob", "bob-secret")
        assert resp is not None and resp.status == 200, resp
    finally:
        c.close()
    lines = [line for line in proc.log(2000).splitlines() if f"{source} sends SIP faster" in line]
    assert len(lines) == 1, lines  # one line per source (every 10 s), not one per dropped request


def test_tcp_flood_closes_the_connection(gateway: tuple[ServiceProcess, dict[str, int]]) -> None:
    _, ports = gateway
    c = SipClient("tcp", "127.0.0.1", ports["sip"], local_host="127.0.0.4")
    try:
        answers, took = stream_flood(c)
        # (what was answered may be lost: closed with the flood unread, the socket is reset)
        assert answers <= at_most(took), (answers, took)
        assert c.closed(5)
    finally:
        c.close()
    assert answered("tcp", ports, local_host="127.0.0.2") == 200


def test_websocket_flood_counts_the_address_nginx_forwards(gateway: tuple[ServiceProcess, dict[str, int]]) -> None:
    _, ports = gateway
    flooder = SipClient("ws", "127.0.0.1", ports["ws"], ws_headers={**ORIGIN, "X-Forwarded-For": "203.0.113.7"})
    try:
        answers, took = stream_flood(flooder)
        assert BURST <= answers <= at_most(took), (answers, took)
        assert flooder.closed(5)
    finally:
        flooder.close()
    # another client behind the same nginx is still answered
    assert answered("ws", ports, ws_headers={**ORIGIN, "X-Forwarded-For": "198.51.100.9"}) == 200
    # nginx's own address (the host) is never limited
    local = SipClient("ws", "127.0.0.1", ports["ws"], ws_headers=ORIGIN)
    try:
        assert stream_flood(local, 60)[0] == 60
    finally:
        local.close()


def test_without_the_limit_the_flood_is_answered() -> None:
    """The measure above can fail: with ``requests-per-second`` 0 every request is answered."""
    proc, ports = gateway_process({"SIP_REQUESTS_PER_SECOND": "0"})
    with proc:
        answers, took = udp_flood(ports, "127.0.0.3", "OPTIONS")
        assert len(answers) > 2 * at_most(took), (len(answers), took)

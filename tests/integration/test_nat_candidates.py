"""What the bridge's media engine advertises with ICE-TCP on (a real TCP listener): the TCP
passive candidates come after the UDP ones, at a lower priority, on the listening port or the
mapped one (``JVB_TCP_MAPPED_PORT``)."""

from __future__ import annotations

import socket

from services.bridge.media.engine import MediaConfig, MediaEngine


async def candidates(**config: object) -> tuple[list[tuple[str, str, int, int, str | None]], int]:
    engine = MediaEngine(
        MediaConfig(port=0, bind_address="127.0.0.1", tcp_port=0, native_forwarding=False, **config)  # type: ignore[arg-type]
    )
    await engine.start()
    try:
        local = engine.create_endpoint("c", "e")
        assert engine._tcp is not None
        with socket.create_connection(("127.0.0.1", engine._tcp.port), timeout=5):
            pass  # it listens
        return [
            (c.protocol, c.type, c.port, c.priority, c.tcptype) for c in local.candidates
        ], engine._tcp.port
    finally:
        await engine.stop()


async def test_tcp_candidates_follow_udp_at_a_lower_priority() -> None:
    found, tcp_port = await candidates()
    (udp, tcp) = found
    assert udp[:2] == ("udp", "host") and tcp == ("tcp", "host", tcp_port, tcp[3], "passive")
    assert tcp[3] < udp[3]


async def test_the_mapped_port_is_advertised() -> None:
    found, tcp_port = await candidates(tcp_advertise_port=443)
    assert found[-1][:3] == ("tcp", "host", 443) and tcp_port != 443

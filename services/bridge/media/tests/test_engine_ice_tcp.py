"""ICE over TCP through the full ICE agent, with real sockets: a peer whose only way in is the
bridge's passive TCP candidate (RFC 6544, RFC 4571 framing) connects, is checked and nominated by
the bridge (controlling), completes DTLS over the connection and receives the media a UDP peer
sends. Run on asyncio's loop and on uvloop (the bridge's), whose timers differ."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest
import uvloop

from services.bridge.media.engine import MediaConfig, MediaEngine
from services.bridge.media.model import (
    DtlsFingerprint,
    IceCandidate,
    MediaSources,
    PayloadType,
    RemoteTransport,
)
from services.bridge.media.transport import aiortc_adapter as adapter
from services.bridge.media.transport.aiortc_adapter import DtlsCertificate, DtlsSession, DtlsState
from services.bridge.media.transport.ice_tcp import Rfc4571Framer, frame

PEER_CERT = DtlsCertificate()
VP8 = [PayloadType(96, "VP8", 90000)]


class _Peer:
    """A controlled ICE agent with DTLS, over TCP (``reader``/``writer``) or UDP (``udp``)."""

    def __init__(self, engine: MediaEngine, name: str) -> None:
        self.engine, self.name = engine, name
        self.local = engine.create_endpoint("conf", name)
        self.ufrag, self.pwd = f"u{name}", f"p{name}" * 8
        self.dtls = DtlsSession(PEER_CERT, "client", [("sha-256", self.local.fingerprints[0].fingerprint)])
        engine.set_remote_transport(
            "conf",
            name,
            RemoteTransport(
                self.ufrag, self.pwd, [DtlsFingerprint("sha-256", PEER_CERT.fingerprint(), "active")]
            ),
        )
        self.nominated = False
        self.srtp_in: list[bytes] = []

    def answer(self, data: bytes, address: tuple[str, int]) -> list[bytes]:
        """What this peer sends back for one packet from the bridge."""
        if data[0] < 4:
            if data[:2] != b"\x00\x01":
                return []  # the answer to our check
            request = adapter.parse_binding_request(data)
            assert adapter.verify_integrity(request, self.pwd)
            assert "ICE-CONTROLLING" in request.message.attributes  # the bridge controls
            self.nominated = self.nominated or request.use_candidate
            return [adapter.binding_success(request, address, self.pwd)]
        if 19 < data[0] < 64:
            return self.dtls.feed(data)
        if self.dtls.srtp is not None and not 191 < data[1] < 224:
            self.srtp_in.append(self.dtls.srtp.unprotect(data))
        return []

    def check(self) -> bytes:
        return adapter.binding_request(
            self.ufrag,
            self.local.ufrag,
            self.local.pwd,
            use_candidate=False,
            controlling=False,
            tie_breaker=1,
        )


async def _until(condition, what: str, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_peer_over_ice_tcp_is_nominated_and_receives_media_from_a_udp_peer(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_tcp_and_udp_peers())


async def _tcp_and_udp_peers() -> None:
    engine = MediaEngine(
        MediaConfig(port=0, bind_address="127.0.0.1", advertise_ips=("127.0.0.1",), tcp_port=0)
    )
    states: list[tuple[str, str]] = []
    engine.on_endpoint_state = lambda c, e, s: states.append((e, s))
    await engine.start()
    try:
        tcp_peer = _Peer(engine, "t")
        candidates = {(c.protocol, c.type, c.tcptype): c for c in tcp_peer.local.candidates}
        passive = candidates[("tcp", "host", "passive")]
        assert passive.priority < candidates[("udp", "host", None)].priority
        reader, writer = await asyncio.open_connection("127.0.0.1", passive.port)
        framer = Rfc4571Framer()
        me = writer.get_extra_info("sockname")

        async def pump_tcp() -> None:
            while data := await reader.read(65536):
                for packet in framer.feed(data):
                    for reply in tcp_peer.answer(packet, me):
                        writer.write(frame(reply))

        tcp_task = asyncio.ensure_future(pump_tcp())
        writer.write(frame(tcp_peer.check()))  # the browser's check makes the connection a candidate
        await _until(lambda: tcp_peer.nominated, "the bridge to nominate the TCP pair")
        for datagram in tcp_peer.dtls.start():
            writer.write(frame(datagram))
        await _until(lambda: ("t", "connected") in states, "DTLS over TCP")
        await _until(lambda: tcp_peer.dtls.state is DtlsState.CONNECTED, "the peer's side of DTLS")

        # a UDP sender in the same conference
        udp_peer = _Peer(engine, "u")
        loop = asyncio.get_running_loop()
        bridge_udp = ("127.0.0.1", engine.port)

        class _Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                for reply in udp_peer.answer(data, udp.get_extra_info("sockname")):
                    udp.sendto(reply, bridge_udp)

        udp, _ = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.1", 0))
        udp.sendto(udp_peer.check(), bridge_udp)
        await _until(lambda: udp_peer.nominated, "the bridge to nominate the UDP pair")
        for datagram in udp_peer.dtls.start():
            udp.sendto(datagram, bridge_udp)
        await _until(lambda: ("u", "connected") in states, "DTLS over UDP")
        await _until(lambda: udp_peer.dtls.srtp is not None, "the UDP peer's side of DTLS")
        engine.set_sources("conf", "u", MediaSources(video_ssrcs=[11], payload_types=VP8))
        assert udp_peer.dtls.srtp is not None
        sent = [struct.pack("!BBHII", 0x80, 96, seq, 3000, 11) + b"\x10\x00vp8" for seq in range(1, 6)]
        for packet in sent:
            udp.sendto(udp_peer.dtls.srtp.protect(packet), bridge_udp)
        await _until(lambda: len(tcp_peer.srtp_in) >= len(sent), "media over TCP")
        assert [p[2:4] for p in tcp_peer.srtp_in[: len(sent)]] == [p[2:4] for p in sent]

        details = {d.endpoint_id: d for d in engine.stats().endpoint_details}
        assert details["t"].remote_address == f"tcp:127.0.0.1:{me[1]}"
        assert details["t"].local_address == f"127.0.0.1:{passive.port}" and details["t"].ice_nominated
        assert details["u"].remote_address == f"127.0.0.1:{udp.get_extra_info('sockname')[1]}"
        assert engine.stats().ice_tcp_connections == 1
        tcp_task.cancel()
        writer.close()
        udp.close()
    finally:
        await engine.stop()


def test_ice_timer_rearms_on_uvloop_when_a_check_is_due_at_once() -> None:
    """uvloop's ``call_later(0, ...)`` returns a plain Handle (no ``when()``): the engine must not
    rely on it when a check arrives while such a timer is armed."""

    class _Wire:
        def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
            pass

        def get_extra_info(self, name: str) -> object:
            return ("127.0.0.1", 10000) if name == "sockname" else None

        def close(self) -> None:
            pass

    async def run() -> None:
        engine = MediaEngine(MediaConfig(port=0, advertise_ips=("127.0.0.1",)))
        engine.connection_made(_Wire())  # type: ignore[arg-type]
        local = engine.create_endpoint("conf", "a")
        candidate = IceCandidate("1", 1, "udp", 2130706431, "127.0.0.1", 5001, "host")
        engine.set_remote_transport(
            "conf",
            "a",
            RemoteTransport(
                "ua", "pa" * 12, [DtlsFingerprint("sha-256", PEER_CERT.fingerprint(), "active")], [candidate]
            ),
        )
        check = adapter.binding_request(
            "ua", local.ufrag, local.pwd, use_candidate=False, controlling=False, tie_breaker=1
        )
        for _ in range(3):  # each check triggers one due at once, while the last timer is armed
            engine.datagram_received(check, ("127.0.0.1", 5002))
        await asyncio.sleep(0.05)
        await engine.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())

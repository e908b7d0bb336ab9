"""Data-channel bridge channels on a real media engine (no socket): the peer is real ICE, DTLS and
SCTP state (the aiortc adapter), wired to the engine in memory."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.bridge.channel.datachannel import LABEL, DataChannelTransport
from services.bridge.media.engine import MediaConfig, MediaEngine
from services.bridge.media.model import DtlsFingerprint, RemoteTransport
from services.bridge.media.transport import aiortc_adapter as adapter
from services.bridge.media.transport.aiortc_adapter import (
    DataChannel,
    DtlsCertificate,
    DtlsSession,
    SctpAssociation,
)

PEER_CERT = DtlsCertificate()
ADDR = ("127.0.0.1", 5001)


class Peer:
    """One endpoint: ICE-controlling, DTLS client, an SCTP association of its own; datagrams the
    engine sends to it are handled at once (``sendto`` of the engine's transport)."""

    def __init__(self, engine: MediaEngine, name: str = "a") -> None:
        self.engine, self.name = engine, name
        self.local = engine.create_endpoint("conf", name)
        self.ufrag, self.pwd = f"u{name}", f"p{name}" * 8
        self.dtls = DtlsSession(PEER_CERT, "client", [("sha-256", self.local.fingerprints[0].fingerprint)])
        self.channels: list[DataChannel] = []
        self.received: list[dict[str, Any]] = []
        self.sctp = self.new_association()
        self.deaf = False  # drop everything the engine sends
        engine.set_remote_transport(
            "conf",
            name,
            RemoteTransport(
                self.ufrag, self.pwd, [DtlsFingerprint("sha-256", PEER_CERT.fingerprint(), "active")]
            ),
        )

    def new_association(self) -> SctpAssociation:
        def send(data: bytes) -> None:
            for datagram in self.dtls.send_application_data(data):
                self.engine.datagram_received(datagram, ADDR)

        def on_channel(channel: DataChannel) -> None:
            channel.on_message = lambda text: self.received.append(json.loads(text))
            self.channels.append(channel)

        return SctpAssociation("client", send, on_channel=on_channel)

    def sendto(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        if self.deaf or data[0] < 4:  # STUN responses are not needed here
            return
        for datagram in self.dtls.feed(data):
            self.engine.datagram_received(datagram, ADDR)
        for packet in self.dtls.take_application_data():
            self.sctp.feed(packet)

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 10000) if name == "sockname" else None

    def connect(self) -> None:
        request = adapter.binding_request(self.ufrag, self.local.ufrag, self.local.pwd, use_candidate=True)
        self.engine.datagram_received(request, ADDR)
        for datagram in self.dtls.start():
            self.engine.datagram_received(datagram, ADDR)


async def until(predicate, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def bridge() -> tuple[MediaEngine, DataChannelTransport, Peer, list[tuple[str, str, str]], list[str]]:
    engine = MediaEngine(MediaConfig(port=0))
    frames: list[tuple[str, str, str]] = []
    opened: list[str] = []
    transport = DataChannelTransport(
        engine,
        on_frame=lambda c, e, text: frames.append((c, e, text)),
        on_open=lambda c, e: opened.append(e),
        version="1.0",
    )
    engine.on_dtls_data = transport.dtls_data
    engine.on_endpoint_state = lambda c, e, s: transport.dtls_connected(c, e) if s == "connected" else None
    peer = Peer(engine)
    engine.connection_made(peer)  # type: ignore[arg-type]
    return engine, transport, peer, frames, opened


async def test_the_bridge_opens_the_default_channel_and_messages_flow_both_ways() -> None:
    engine, transport, peer, frames, opened = bridge()
    transport.set_sctp("conf", "a", 5000)  # Colibri first, then DTLS (the usual order)
    assert not transport.send_text("conf", "a", "{}")
    peer.connect()
    await peer.sctp.start()
    await until(lambda: opened and peer.received)
    (channel,) = peer.channels
    assert channel.label == LABEL and channel.stream_id is not None and channel.stream_id % 2 == 1
    assert peer.received == [{"colibriClass": "ServerHello", "version": "1.0"}]
    assert transport.is_open("conf", "a")
    channel.send_text('{"colibriClass":"ClientHello"}')
    await until(lambda: frames)
    assert frames == [("conf", "a", '{"colibriClass":"ClientHello"}')]
    assert transport.send_text("conf", "a", '{"colibriClass":"ForwardedSources","forwardedSources":[]}')
    await until(lambda: len(peer.received) == 2)
    (state,) = transport.dump()
    assert state["channel"] == LABEL and state["messages_in"] == 1 and state["messages_out"] == 2
    engine.expire_endpoint("conf", "a")
    transport.endpoint_expired("conf", "a")
    assert not transport.send_text("conf", "a", "{}") and transport.dump() == []
    await transport.stop()


async def test_sctp_enabled_after_dtls_and_a_channel_the_endpoint_opens() -> None:
    engine, transport, peer, frames, opened = bridge()
    peer.connect()
    await until(lambda: engine.dtls_role("conf", "a") == "server")
    await peer.sctp.start()
    transport.set_sctp("conf", "a", 5000)  # a later Colibri PATCH adds the data content
    own = peer.sctp.open_channel("mine")
    await until(lambda: own.is_open and len(opened) >= 1)
    own.send_text('{"colibriClass":"EndpointStats"}')
    await until(lambda: ("conf", "a", '{"colibriClass":"EndpointStats"}') in frames)
    # both channels are open (the bridge's and the endpoint's): the newest carries what it sends
    await until(lambda: len(opened) == 2)
    got: list[str] = []
    own.on_message = got.append
    before = len(peer.received)
    assert transport.send_text("conf", "a", '{"colibriClass":"ForwardedSources","forwardedSources":[]}')
    newest = transport.dump()[0]["channel"]
    if newest == "mine":
        await until(lambda: got)
    else:
        assert newest == LABEL
        await until(lambda: len(peer.received) > before)
    # the endpoint closes the channel it opened: the bridge's own channel carries on
    own.close()
    await until(lambda: transport.dump()[0]["channel"] == LABEL)
    before = len(peer.received)
    assert transport.send_text("conf", "a", '{"colibriClass":"ForwardedSources","forwardedSources":["x"]}')
    await until(lambda: len(peer.received) > before)
    transport.set_sctp("conf", "a", 5000)  # the same port again: the association stays
    assert transport.is_open("conf", "a")
    transport.set_sctp("conf", "a", None)  # the sctpconnection expired alone
    assert not transport.is_open("conf", "a")
    await transport.stop()
    engine.expire_endpoint("conf", "a")


async def test_an_sctp_peer_that_never_answers_does_not_touch_media() -> None:
    engine, transport, peer, _frames, opened = bridge()
    transport.set_sctp("conf", "a", 5000)
    peer.connect()
    await until(lambda: engine.dtls_role("conf", "a") == "server")
    peer.deaf = True  # INITs go nowhere
    await asyncio.sleep(0.2)
    assert not transport.is_open("conf", "a") and opened == []
    assert engine.has_endpoint("conf", "a") and engine.stats().endpoint_details[0].state == "connected"
    peer.sctp.feed(b"junk")  # the peer's own association survives garbage too
    for datagram in peer.dtls.send_application_data(b"\x00\x01 not sctp"):
        engine.datagram_received(datagram, ADDR)  # and so does the bridge's
    await asyncio.sleep(0.05)
    assert engine.stats().endpoint_details[0].state == "connected"
    engine.expire_endpoint("conf", "a")
    transport.endpoint_expired("conf", "a")
    await transport.stop()

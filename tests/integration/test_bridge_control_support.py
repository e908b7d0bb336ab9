"""Start a Parley bridge for control-plane tests, and a real ICE/DTLS peer for its transports.

:func:`start_bridge` runs ``python -m services.bridge`` on free loopback ports (private REST,
public Colibri WebSocket, UDP media) with extra settings from a HOCON file and env.
:class:`IceDtlsPeer` is an endpoint built from aiortc's ORTC objects (RTCIceGatherer,
RTCIceTransport, RTCDtlsTransport): it connects to the transport a Colibri response advertised.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice.ice
from aiortc import (
    RTCCertificate,
    RTCDtlsFingerprint,
    RTCDtlsParameters,
    RTCDtlsTransport,
    RTCIceCandidate,
    RTCIceGatherer,
    RTCIceParameters,
    RTCIceTransport,
)

from tests.integration.harness import ServiceProcess, free_port, free_tcp_udp_port

SEEDS = Path(__file__).resolve().parents[2] / "services" / "common" / "tests" / "data"
EXAMPLE_CONFERENCE = b"a439deb315b4128c"
SEED_ENDPOINT = "9f537ebb-1c2a-4ee9-9940-373304f9b260"


def example(name: str) -> bytes:
    """A JSON example of jitsi-videobridge's doc/rest-colibri.md, byte for byte."""
    return (SEEDS / name).read_bytes()


@dataclass
class RunningBridge:
    process: ServiceProcess
    server_id: str
    private_port: int
    public_port: int
    udp_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.private_port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.public_port}"


UNBUDGETED = "videobridge.bridge-channel { relay-bytes-per-second = 1000000000, relay-burst-bytes = 1000000000 }\n"
"""A bridge configuration without a practical relay budget, for measuring relay throughput."""


def start_bridge(
    name: str = "bridge", hocon: str = "", server_id: str = "jvbtest", **env: str
) -> RunningBridge:
    private, public, udp = free_port(), free_port(), free_tcp_udp_port()
    conf = Path(tempfile.mkstemp(prefix="parley-bridge-", suffix=".conf")[1])
    conf.write_text(hocon)
    environment = {
        "JVB_CONFIG": str(conf),
        "JVB_COLIBRI_PORT": str(private),
        "JVB_PUBLIC_PORT": str(public),
        "JVB_PORT": str(udp),
        "JVB_ADVERTISE_IPS": "127.0.0.1",
        "JVB_WS_SERVER_ID": server_id,
        "JVB_WS_DOMAIN": f"127.0.0.1:{public}",
        "JVB_WS_TLS": "false",
        "LOG_LEVEL": "INFO",
        **env,
    }
    proc = ServiceProcess.python_module(
        name, "services.bridge", environment, health_url=f"http://127.0.0.1:{private}/about/health"
    )
    proc.start()
    return RunningBridge(proc, server_id, private, public, udp)


def allow_loopback_ice() -> None:
    """aioice skips loopback addresses when gathering; these tests run on loopback only."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]


class IceDtlsPeer:
    """One endpoint's transport as a browser answering the bridge's offer has it: ICE controlled
    (the bridge is a full, controlling agent) and DTLS server (``setup: passive`` in its answer).

    The DTLS role is the one the answer declared, never derived from the ICE role (aiortc's ORTC
    default): the ICE roles may still change through a role conflict (RFC 8445 section 7.3.1.1),
    and a peer that derived its DTLS role from them could end up a DTLS client facing the bridge's
    client, a handshake that never completes.
    """

    def __init__(self) -> None:
        allow_loopback_ice()
        self.gatherer = RTCIceGatherer()
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [RTCCertificate.generateCertificate()])

    async def gather(self) -> None:
        await self.gatherer.gather()

    def colibri_transport(self) -> dict[str, Any]:
        """This peer's transport as a Colibri channel-bundle transport (for the answer PATCH)."""
        ice = self.gatherer.getLocalParameters()
        return {
            "xmlns": "urn:xmpp:jingle:transports:ice-udp:1",
            "ufrag": ice.usernameFragment,
            "pwd": ice.password,
            "rtcp-mux": True,
            # the peer is the DTLS server (see connect): the bridge is the client
            "fingerprints": [
                {"fingerprint": f.value, "hash": f.algorithm, "setup": "passive"}
                for f in self.dtls.getLocalParameters().fingerprints
            ],
            "candidates": [],
        }

    async def connect(self, bridge_transport: dict[str, Any]) -> None:
        for c in bridge_transport["candidates"]:
            await self.ice.addRemoteCandidate(
                RTCIceCandidate(
                    component=c["component"],
                    foundation=c["foundation"],
                    ip=c["ip"],
                    port=c["port"],
                    priority=c["priority"],
                    protocol=c["protocol"],
                    type=c["type"],
                )
            )
        await self.ice.addRemoteCandidate(None)
        # The bridge controls and nominates; aiortc decides the ICE role only inside
        # RTCPeerConnection, so the ORTC transport is told directly, and so is the DTLS role the
        # answer declared (aiortc's ORTC "auto" would follow the ICE role).
        self.ice._connection.ice_controlling = False
        self.dtls._set_role("server")
        await self.ice.start(
            RTCIceParameters(usernameFragment=bridge_transport["ufrag"], password=bridge_transport["pwd"])
        )
        await self.dtls.start(
            RTCDtlsParameters(
                fingerprints=[
                    RTCDtlsFingerprint(algorithm=f["hash"], value=f["fingerprint"])
                    for f in bridge_transport["fingerprints"]
                ],
                role="auto",
            )
        )

    async def close(self) -> None:
        await self.dtls.stop()
        await self.ice.stop()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()

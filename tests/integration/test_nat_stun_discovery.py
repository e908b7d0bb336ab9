"""The bridge's public address from STUN (``JVB_STUN_SERVERS``, like jvb's STUN mapping harvester):
the bridge's media engine runs in a namespace behind a masquerading NAT and asks coturn; it must
advertise the NAT's public address as a server-reflexive candidate beside its own."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator

import pytest

from tests.integration.harness import PYTHON, REPO
from tests.integration.netns import NetLab, Site, netns_available
from tests.integration.turn import coturn_available, start_coturn, stop_coturn

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not coturn_available(), reason="needs coturn (/usr/bin/turnserver)"),
    pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nftables"),
]

# the bridge's media engine as the bridge starts it; prints the candidates it would advertise
ENGINE = textwrap.dedent(
    """
    import asyncio, json, sys
    from services.bridge.media.engine import MediaConfig, MediaEngine

    async def main():
        engine = MediaEngine(MediaConfig(port=0, stun_servers=tuple(sys.argv[1:]), native_forwarding=False))
        await engine.start()
        local = engine.create_endpoint("c", "e")
        print(json.dumps([[c.type, c.ip, c.port, c.rel_addr, c.rel_port] for c in local.candidates]))
        print(json.dumps(engine.port))
        await engine.stop()

    asyncio.run(main())
    """
)


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[NetLab, Site, Site, Site, int]]:
    lab = NetLab()
    turn = None
    try:
        direct = lab.site("d")
        router, behind = lab.nat_site("n")
        turn, port = start_coturn("unused", listen_ips=(direct.gateway, router.gateway))
        yield lab, direct, router, behind, port
    finally:
        if turn is not None:
            stop_coturn(turn)
        lab.close()


def candidates(site: Site, *servers: str) -> tuple[list[list[object]], int]:
    out = subprocess.run(
        ["ip", "netns", "exec", site.ns, PYTHON, "-c", ENGINE, *servers],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[0]), json.loads(lines[1])


def test_behind_nat_the_mapped_address_is_advertised_beside_the_local_one(lab) -> None:  # type: ignore[no-untyped-def]
    _, _, router, behind, port = lab
    cands, media_port = candidates(behind, f"{router.gateway}:{port}")
    assert cands == [
        ["host", behind.ip, media_port, None, None],
        ["srflx", router.ip, media_port, behind.ip, media_port],
    ]


def test_without_nat_there_is_nothing_to_add(lab) -> None:  # type: ignore[no-untyped-def]
    _, direct, _, _, port = lab
    cands, media_port = candidates(direct, f"{direct.gateway}:{port}")
    assert cands == [["host", direct.ip, media_port, None, None]]


def test_an_unreachable_stun_server_leaves_the_local_address(lab) -> None:  # type: ignore[no-untyped-def]
    _, direct, _, behind, _ = lab
    cands, media_port = candidates(behind, f"{direct.ip}:9")  # a lab namespace with no STUN server
    assert cands == [["host", "127.0.0.1", media_port, None, None]]

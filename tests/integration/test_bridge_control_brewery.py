"""Brewery presence against real XMPP brokers: Debian's Prosody and Parley's own (services.xmpp).

A focus-like observer (slixmpp, the focus account) joins the brewery room and watches the bridge's
presence: it appears with the stats extension, updates when the bridge's state changes (drain),
the bridge answers the health-check IQ, and after a broker restart the bridge logs in and joins
again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import slixmpp
from slixmpp.xmlstream import ET

from services.common import brewery
from tests.integration.harness import REPO, ServiceProcess, free_port
from tests.integration.prosody import Prosody, prosody_available
from tests.integration.test_bridge_control_support import RunningBridge, start_bridge

pytestmark = pytest.mark.peer

DOMAIN = "meet.jitsi"
ROOM = f"jvbbrewery@internal-muc.{DOMAIN}"
FOCUS_PASSWORD = "focus-secret"
JVB_PASSWORD = "jvb-secret"
SERVER_ID = "jvbbrew"
FAST_PRESENCE = "videobridge.apis.xmpp-client { presence-interval = 1 second, reconnect-min = 300 ms, reconnect-max = 2 seconds }\n"


class Broker(Protocol):
    c2s_port: int

    def restart(self) -> None: ...


class ParleyBroker:
    def __init__(self) -> None:
        self.c2s_port, self.http_port = free_port(), free_port()
        self.proc = self._process()

    def _process(self) -> ServiceProcess:
        env = {
            "XMPP_C2S_PORT": str(self.c2s_port),
            "XMPP_HTTP_PORT": str(self.http_port),
            "XMPP_BIND_ADDRESS": "127.0.0.1",
            "XMPP_DOMAIN": DOMAIN,
            "JICOFO_AUTH_PASSWORD": FOCUS_PASSWORD,
            "JVB_AUTH_PASSWORD": JVB_PASSWORD,
        }
        return ServiceProcess.python_module(
            "xmpp", "services.xmpp", env, health_url=f"http://127.0.0.1:{self.http_port}/health"
        )

    def start(self) -> None:
        self.proc.start()

    def restart(self) -> None:
        self.proc.stop()
        self.proc = self._process()
        self.proc.start()

    def close(self) -> None:
        self.proc.stop()


@pytest.fixture(params=["prosody", "parley"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "prosody":
        if not prosody_available():
            pytest.skip("Debian's prosody is not installed")
        with Prosody(domain=DOMAIN, accounts={"focus": FOCUS_PASSWORD, "jvb": JVB_PASSWORD}) as prosody:
            yield prosody
    else:
        if not (Path(REPO) / "services" / "xmpp" / "__main__.py").exists():
            pytest.skip("Parley's broker (services/xmpp/__main__.py) does not exist yet")
        parley = ParleyBroker()
        parley.start()
        try:
            yield parley
        finally:
            parley.close()


@pytest.fixture
def bridge(broker: Broker) -> Iterator[RunningBridge]:
    b = start_bridge(
        "bridge-brewery",
        FAST_PRESENCE,
        server_id=SERVER_ID,
        XMPP_SERVER="127.0.0.1",
        XMPP_PORT=str(broker.c2s_port),
        XMPP_DOMAIN=DOMAIN,
        JVB_AUTH_PASSWORD=JVB_PASSWORD,
        JVB_REGION="test-region",
    )
    try:
        yield b
    finally:
        b.process.stop()


class Observer(slixmpp.ClientXMPP):
    """The focus's view of the brewery: every bridge presence's stats, newest last."""

    def __init__(self) -> None:
        super().__init__(
            f"focus@auth.{DOMAIN}/observer",
            FOCUS_PASSWORD,
            plugin_config={"feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}},
        )
        self.enable_direct_tls = self.enable_starttls = False
        self.enable_plaintext = True
        self.online = asyncio.Event()
        self.stats: list[dict[str, str]] = []
        self.bridge_jid: str | None = None
        self.bridge_left = asyncio.Event()
        self.add_event_handler("session_start", lambda _: self.online.set())
        self.add_event_handler("presence", self._presence)

    def _presence(self, pres: Any) -> None:
        if str(pres["from"]) != f"{ROOM}/{SERVER_ID}":
            return
        if pres["type"] == "unavailable":
            self.bridge_left.set()
            return
        element = brewery.find_stats(pres.xml)
        if element is not None:
            self.stats.append(brewery.decode_stats(element))
        item = pres.xml.find(
            "{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item"
        )
        if item is not None and item.get("jid"):
            self.bridge_jid = item.get("jid")

    async def wait_for(self, pred: Any, within: float = 15.0) -> dict[str, str]:
        deadline = time.monotonic() + within
        while True:
            for s in reversed(self.stats):
                if pred(s):
                    return s
            assert time.monotonic() < deadline, f"no matching bridge presence; saw {self.stats[-3:]}"
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def observing(port: int) -> AsyncIterator[Observer]:
    obs = Observer()
    deadline = time.monotonic() + 20
    while True:  # the broker may still be coming up after a restart
        obs.connect("127.0.0.1", port)
        try:
            await asyncio.wait_for(obs.online.wait(), 5)
            break
        except TimeoutError:
            obs.abort()
            assert time.monotonic() < deadline, "observer could not log in"
    obs.send_presence()
    join = obs.make_presence(pto=f"{ROOM}/focus")
    ET.SubElement(join.xml, "{http://jabber.org/protocol/muc}x")
    join.send()
    try:
        yield obs
    finally:
        obs.abort()


async def test_presence_stats_updates_healthcheck_and_reconnect(
    broker: Broker, bridge: RunningBridge
) -> None:
    async with observing(broker.c2s_port) as obs:
        first = await obs.wait_for(lambda s: "stress_level" in s)
        for key in (
            "stress_level",
            "average_participant_stress",
            "graceful_shutdown",
            "shutting_down",
            "drain",
            "version",
            "region",
            "healthy",
            "conferences",
            "endpoints",
        ):
            assert key in first, key
        assert first["region"] == "test-region" and first["drain"] == "false" and first["healthy"] == "true"
        assert first["colibri_url"] == bridge.url  # where the focus reaches this bridge's Colibri REST
        typed = brewery.BridgeStats.from_stats(first)
        assert 0.0 <= typed.stress_level < 1.0

        # a state change shows up in the next presence
        async with httpx.AsyncClient(base_url=bridge.url) as http:
            assert (await http.post("/colibri/drain/enable")).status_code == 200
            await obs.wait_for(lambda s: s.get("drain") == "true", within=5)
            await http.post("/colibri/conferences", content=b"{}")
            await obs.wait_for(lambda s: s.get("conferences") == "1", within=5)

        # health check IQ to the bridge's real JID (seen in the non-anonymous room)
        assert obs.bridge_jid == f"jvb@auth.{DOMAIN}/{SERVER_ID}"
        iq = obs.make_iq_get(ito=obs.bridge_jid)
        iq.xml.append(brewery.healthcheck_element())
        reply = await iq.send(timeout=5)
        assert reply["type"] == "result"

    # the broker restarts; the bridge logs in and joins the room again by itself
    broker.restart()
    async with observing(broker.c2s_port) as obs:
        again = await obs.wait_for(lambda s: "stress_level" in s, within=20)
        assert again["drain"] == "true"
        assert bridge.process.alive
        # a bridge that stops leaves the brewery
        await asyncio.get_running_loop().run_in_executor(None, bridge.process.stop)
        await asyncio.wait_for(obs.bridge_left.wait(), 10)

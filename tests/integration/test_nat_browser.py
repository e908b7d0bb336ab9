"""Real Chromium in network namespaces this test creates, joining through coturn:

(a) a browser whose site drops all UDP (nftables) joins through TURN over TCP, and decodes the
    others, who decode it;
(b) a browser behind a masquerading NAT joins through TURN over UDP.

The stack runs in the test's own namespace and the bridge advertises only 127.0.0.1, which no site
can reach: like a bridge on a private network whose only public door is the TURN server. coturn
listens on the sites' gateway address and relays from 127.0.0.1, the one peer address it allows.
Each test asserts which candidate pair carried the media (getStats: the transport's selected
``candidate-pair`` and its ``local-candidate`` / ``remote-candidate``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.integration.browser import BROWSER_MARKS, DIRECT_STACK_NAMES, browsers, console_log
from tests.integration.harness import ServiceProcess, free_port, free_tcp_udp_port
from tests.integration.netns import NetLab, Site, netns_available
from tests.integration.turn import coturn_available, start_coturn, stop_coturn

pytestmark = [
    *BROWSER_MARKS,
    pytest.mark.peer,
    pytest.mark.skipif(not coturn_available(), reason="needs coturn (/usr/bin/turnserver)"),
    pytest.mark.skipif(not netns_available(), reason="needs root, iproute2 and nftables"),
]

SECRET = "nat-browser-secret"


@dataclass
class Stack:
    lab: NetLab
    front: str  # the web client, at the address every site reaches
    udp_blocked: Site
    nat_router: Site
    behind_nat: Site
    bridge_udp: int
    procs: list[ServiceProcess]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    import subprocess

    from tests.integration.harness import REPO

    subprocess.run([str(REPO / "services/web/build.sh")], check=True, capture_output=True, timeout=300)
    lab = NetLab()
    procs: list[ServiceProcess] = []
    turn = None
    try:
        udp_blocked = lab.site("a")
        lab.drop_udp(udp_blocked)
        nat_router, behind_nat = lab.nat_site("n")
        public = udp_blocked.gateway  # this namespace's address on site a's link
        turn, turn_port = start_coturn(
            SECRET,
            listen_ips=(public, nat_router.gateway, "127.0.0.1"),
            allowed_peer_ips=("127.0.0.1",),
            relay_ip="127.0.0.1",
        )
        c2s, xmpp_http, focus_http, web_http = free_port(), free_port(), free_port(), free_port()
        colibri, ws_port, udp = free_port(), free_port(), free_tcp_udp_port()

        def run(name: str, module: str, env: dict[str, str], health: str) -> None:
            proc = ServiceProcess.python_module(
                name, module, {**DIRECT_STACK_NAMES, **env}, health_url=health
            )
            procs.append(proc)
            proc.start(30)

        xmpp_client = {"XMPP_SERVER": "127.0.0.1", "XMPP_PORT": str(c2s)}
        run("xmpp", "services.xmpp",
            {"XMPP_C2S_PORT": str(c2s), "XMPP_HTTP_PORT": str(xmpp_http), "XMPP_BIND_ADDRESS": "0.0.0.0",
             "TURN_CREDENTIALS": SECRET, "TURN_HOST": public, "TURN_PORT": str(turn_port)},
            f"http://127.0.0.1:{xmpp_http}/health")  # fmt: skip
        run("jvb1", "services.bridge",
            {**xmpp_client, "JVB_WS_SERVER_ID": "jvb1", "JVB_WS_DOMAIN": f"{public}:{ws_port}",
             "JVB_WS_TLS": "false", "JVB_PORT": str(udp), "JVB_ADVERTISE_IPS": "127.0.0.1",
             "JVB_COLIBRI_HOST": "127.0.0.1", "JVB_COLIBRI_PORT": str(colibri),
             "JVB_PUBLIC_PORT": str(ws_port), "JVB_BREWERY_MUC": "jvbbrewery"},
            f"http://127.0.0.1:{colibri}/about/health")  # fmt: skip
        run("focus", "services.focus",
            {**xmpp_client, "JICOFO_HTTP_HOST": "127.0.0.1", "JICOFO_HTTP_PORT": str(focus_http),
             "JVB_BREWERY_MUC": "jvbbrewery", "JICOFO_BRIDGE_COLIBRI_URLS": f"jvb1=http://127.0.0.1:{colibri}"},
            f"http://127.0.0.1:{focus_http}/about/health")  # fmt: skip
        run("web", "services.web",
            {"WEB_HTTP_HOST": "0.0.0.0", "WEB_HTTP_PORT": str(web_http), "WEB_DISABLE_SIMULCAST": "true",
             "XMPP_WEBSOCKET_URL": f"ws://{public}:{xmpp_http}/xmpp-websocket"},
            f"http://127.0.0.1:{web_http}/health")  # fmt: skip
        _wait_for_bridge(f"http://127.0.0.1:{focus_http}")
        yield Stack(lab, f"http://{public}:{web_http}", udp_blocked, nat_router, behind_nat, udp, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if turn is not None:
            stop_coturn(turn)
        lab.close()


def _wait_for_bridge(focus: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while not httpx.get(f"{focus}/bridges", timeout=2).json():
        assert time.monotonic() < deadline, "the focus never saw the bridge"
        time.sleep(0.2)


@dataclass
class Person:
    name: str
    page: Page
    log: list[str]

    @property
    def endpoint(self) -> str:
        return str(self.page.evaluate("window.parley.endpointId"))

    def frames(self) -> dict[str, int]:
        stats = self.page.evaluate("window.parley.videoStats()")
        return {ep: s["framesDecoded"] for ep, s in stats.items()}

    def pair(self) -> dict[str, Any] | None:
        return self.page.evaluate("window.parley.candidatePair()")  # type: ignore[no-any-return]


def wait_until(what: str, cond: Any, people: list[Person], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            logs = "\n\n".join(f"--- {p.name}\n" + "\n".join(p.log[-30:]) for p in people)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.3)


def meet(stack: Stack, sites: dict[str, Site | None]) -> Iterator[list[Person]]:
    room = f"nat-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        people = []
        for name, site in sites.items():
            page = stack.lab.open_browser(pool, site, stack.front)
            log = console_log(page)
            page.goto(f"{stack.front}/{room}?name={name}")
            people.append(Person(name, page, log))
        for p in people:
            p.page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
        yield people


def decode_each_other(people: list[Person]) -> None:
    endpoints = {p.name: p.endpoint for p in people}
    for p in people:
        others = {endpoints[o.name] for o in people if o is not p}
        wait_until(
            f"{p.name} to decode the others' video",
            lambda p=p, o=others: o <= {ep for ep, n in p.frames().items() if n > 0},
            people,
        )
    for p in people:
        before = p.frames()
        time.sleep(1.5)
        after = p.frames()
        for ep, n in before.items():
            if ep in endpoints.values():
                assert after[ep] > n, f"{p.name}: video of {ep} is not advancing ({before} -> {after})"


def selected_pair(person: Person, people: list[Person]) -> dict[str, Any]:
    wait_until(f"{person.name}'s selected candidate pair", lambda: person.pair() is not None, people)
    pair = person.pair()
    assert pair is not None
    return pair


def test_udp_blocked_site_joins_through_turn_over_tcp(stack: Stack) -> None:
    for people in meet(stack, {"Office": stack.udp_blocked, "Home": None}):
        office, home = people
        assert any("transport=tcp" in url for url in office.page.evaluate("window.parley.iceServers"))
        decode_each_other(people)
        pair = selected_pair(office, people)
        assert pair["local"]["candidateType"] == "relay", pair
        assert pair["local"]["relayProtocol"] == "tcp", pair
        assert pair["remote"]["candidateType"] == "host", pair
        assert (pair["remote"]["address"], pair["remote"]["port"]) == ("127.0.0.1", stack.bridge_udp), pair
        assert pair["bytesReceived"] > 10_000, pair
        # the site's firewall really dropped UDP (Chromium tried), and home went straight to the bridge
        assert stack.lab.udp_dropped(stack.udp_blocked) > 0
        home_pair = selected_pair(home, people)
        assert home_pair["local"]["candidateType"] == "host", home_pair


def test_site_behind_nat_joins_through_turn_over_udp(stack: Stack) -> None:
    for people in meet(stack, {"Cafe": stack.behind_nat, "Home": None}):
        cafe, _home = people
        decode_each_other(people)
        pair = selected_pair(cafe, people)
        assert pair["local"]["candidateType"] == "relay", pair
        assert pair["local"]["relayProtocol"] == "udp", pair
        assert (pair["remote"]["address"], pair["remote"]["port"]) == ("127.0.0.1", stack.bridge_udp), pair
        assert pair["bytesReceived"] > 10_000, pair
        # coturn saw the NAT's public address (the relay candidate's related address), not the
        # browser's own 192.168 one: the masquerade really was on the path
        assert pair["local"]["relatedAddress"] == stack.nat_router.ip, pair
        assert pair["local"]["url"].endswith("?transport=udp"), pair

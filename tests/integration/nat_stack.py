"""A Parley stack reachable from network "sites" (``netns.py``), and the browser-side helpers the
NAT tests share: join a room from several sites, wait until everyone decodes everyone, read the
candidate pair that carries the media."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
from playwright.sync_api import Page

from tests.integration.browser import DIRECT_STACK_NAMES, Browsers, browsers, console_log
from tests.integration.harness import REPO, ServiceProcess, free_port, free_tcp_udp_port
from tests.integration.netns import NetLab, Site


@dataclass
class MeetingStack:
    """Broker, one bridge, focus and web in the test's namespace. Browsers load ``front`` (the
    ``public`` address every site reaches); the bridge advertises ``bridge_ips``."""

    front: str = ""
    colibri: str = ""  # the bridge's private REST API (/colibri/stats)
    bridge_udp: int = 0
    bridge_tcp: int | None = None
    procs: list[ServiceProcess] = field(default_factory=list)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def build_web_client() -> None:
    subprocess.run([str(REPO / "services/web/build.sh")], check=True, capture_output=True, timeout=300)


def start_meeting_stack(
    public: str,
    bridge_ips: str,
    turn: tuple[str, int, str] | None = None,
    ice_tcp: bool = False,
    stack: MeetingStack | None = None,
    force_turn_relay: bool = False,
    simulcast: bool = False,
    start_timeout: float = 30.0,
) -> MeetingStack:
    """``turn``: (host, port, secret) the broker hands out over XEP-0215. ``ice_tcp`` turns the
    bridge's ICE-TCP port on; ``force_turn_relay`` makes every page relay through TURN; ``simulcast`` leaves the client's simulcast on. Pass ``stack`` to have processes recorded (for cleanup) as they
    start."""
    stack = stack or MeetingStack()
    c2s, xmpp_http, focus_http, web_http = free_port(), free_port(), free_port(), free_port()
    colibri, ws_port, udp = free_port(), free_port(), free_tcp_udp_port()
    stack.bridge_udp = udp
    stack.colibri = f"http://127.0.0.1:{colibri}"

    def run(name: str, module: str, env: dict[str, str], health: str) -> None:
        proc = ServiceProcess.python_module(name, module, {**DIRECT_STACK_NAMES, **env}, health_url=health)
        stack.procs.append(proc)
        proc.start(start_timeout)

    xmpp_client = {"XMPP_SERVER": "127.0.0.1", "XMPP_PORT": str(c2s)}
    turn_env = {"TURN_CREDENTIALS": turn[2], "TURN_HOST": turn[0], "TURN_PORT": str(turn[1])} if turn else {}
    tcp_env = {}
    if ice_tcp:
        stack.bridge_tcp = free_port()
        tcp_env = {"JVB_TCP_HARVESTER_DISABLED": "false", "JVB_TCP_PORT": str(stack.bridge_tcp)}
    run("xmpp", "services.xmpp",
        {"XMPP_C2S_PORT": str(c2s), "XMPP_HTTP_PORT": str(xmpp_http), "XMPP_BIND_ADDRESS": "0.0.0.0", **turn_env},
        f"http://127.0.0.1:{xmpp_http}/health")  # fmt: skip
    run("jvb1", "services.bridge",
        {**xmpp_client, "JVB_WS_SERVER_ID": "jvb1", "JVB_WS_DOMAIN": f"{public}:{ws_port}",
         "JVB_WS_TLS": "false", "JVB_PORT": str(udp), "JVB_ADVERTISE_IPS": bridge_ips,
         "JVB_COLIBRI_HOST": "127.0.0.1", "JVB_COLIBRI_PORT": str(colibri),
         "JVB_PUBLIC_PORT": str(ws_port), "JVB_PUBLIC_HOST": "0.0.0.0",  # the sites reach it directly
         "JVB_BREWERY_MUC": "jvbbrewery", **tcp_env},
        f"http://127.0.0.1:{colibri}/about/health")  # fmt: skip
    run("focus", "services.focus",
        {**xmpp_client, "JICOFO_HTTP_HOST": "127.0.0.1", "JICOFO_HTTP_PORT": str(focus_http),
         "JVB_BREWERY_MUC": "jvbbrewery", "JICOFO_BRIDGE_COLIBRI_URLS": f"jvb1=http://127.0.0.1:{colibri}"},
        f"http://127.0.0.1:{focus_http}/about/health")  # fmt: skip
    run("web", "services.web",
        {"WEB_HTTP_HOST": "0.0.0.0", "WEB_HTTP_PORT": str(web_http), "WEB_DISABLE_SIMULCAST": str(not simulcast).lower(),
         "WEB_FORCE_TURN_RELAY": str(force_turn_relay).lower(),
         "XMPP_WEBSOCKET_URL": f"ws://{public}:{xmpp_http}/xmpp-websocket",
         "WEB_CONNECT_ORIGINS": f"ws://{public}:{ws_port}"},  # the bridge's WebSocket, no nginx
        f"http://127.0.0.1:{web_http}/health")  # fmt: skip
    deadline = time.monotonic() + start_timeout
    while not httpx.get(f"http://127.0.0.1:{focus_http}/bridges", timeout=2).json():
        assert time.monotonic() < deadline, "the focus never saw the bridge"
        time.sleep(0.2)
    stack.front = f"http://{public}:{web_http}"
    return stack


@contextlib.contextmanager
def one_site(
    name: str, prepare: Callable[[NetLab, Site], None] | None = None, **start: Any
) -> Iterator[tuple[NetLab, MeetingStack, Site]]:
    """The web client built, a lab with one site ``name`` (``prepare`` may change its network
    first) and a stack every page reaches, and whose bridge advertises, at the site's gateway
    (``start``: more :func:`start_meeting_stack` arguments); stopped and removed afterwards."""
    build_web_client()
    lab = NetLab()
    stack = MeetingStack()
    try:
        site = lab.site(name)
        if prepare is not None:
            prepare(lab, site)
        start_meeting_stack(site.gateway, site.gateway, stack=stack, **start)
        yield lab, stack, site
    finally:
        stack.stop()
        lab.close()


class Joined(Protocol):
    @property
    def page(self) -> Page: ...


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


P = TypeVar("P", bound=Joined)


def join_from(
    lab: NetLab,
    pool: Browsers,
    front: str,
    room_url: str,
    sites: dict[str, Site | None],
    person: Callable[[str, Page, list[str]], P],
    timeout_ms: int = 30_000,
) -> list[P]:
    """Everyone in ``sites`` (name -> site, None = the test's namespace) opens ``room_url`` in a
    browser of ``pool`` on that site's network; each a ``person(name, page, console log)``, once
    the page shows the meeting."""
    people = []
    for name, site in sites.items():
        page = lab.open_browser(pool, site, front)
        log = console_log(page)
        page.goto(f"{room_url}?name={name}")
        people.append(person(name, page, log))
    for p in people:
        p.page.wait_for_selector("#meeting:not([hidden])", timeout=timeout_ms)
    return people


def meet(lab: NetLab, front: str, sites: dict[str, Site | None]) -> Iterator[list[Person]]:
    """Everyone in ``sites`` (name -> site, None = the test's namespace) joins one new room."""
    with browsers() as pool:
        yield join_from(lab, pool, front, f"{front}/nat-{uuid.uuid4().hex[:8]}", sites, Person)


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

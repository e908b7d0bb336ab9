"""Bridge failover seen from the browser: two people meet on one of two bridges, that bridge
crashes, the focus moves them (session-terminate "moving", then a new session-initiate) and their
pages show each other's video again from the other bridge.

Processes are started directly (broker, two bridges, focus, web) so one bridge can be killed; the
browsers reach the bridges' Colibri WebSockets on their public ports."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.browser import DESKTOP, browsers, chromium_available, console_log
from tests.integration.harness import REPO, ServiceProcess, free_port, free_tcp_udp_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
    pytest.mark.skipif(
        not (REPO / "services" / "bridge" / "__main__.py").exists(), reason="no bridge service"
    ),
]

NAMES = {
    "XMPP_DOMAIN": "meet.jitsi",
    "XMPP_AUTH_DOMAIN": "auth.meet.jitsi",
    "XMPP_MUC_DOMAIN": "muc.meet.jitsi",
    "XMPP_INTERNAL_MUC_DOMAIN": "internal-muc.meet.jitsi",
    "JICOFO_AUTH_USER": "focus",
    "JICOFO_AUTH_PASSWORD": "focus-secret",
    "JVB_AUTH_USER": "jvb",
    "JVB_AUTH_PASSWORD": "jvb-secret",
}


class Services:
    def __init__(self) -> None:
        self.procs: list[ServiceProcess] = []
        self.bridges: dict[str, ServiceProcess] = {}

    def start(self) -> tuple[str, str]:
        c2s, xmpp_http, focus_http, web_http = free_port(), free_port(), free_port(), free_port()
        xmpp_client = {"XMPP_SERVER": "127.0.0.1", "XMPP_PORT": str(c2s)}
        self._run(ServiceProcess.python_module(
            "xmpp", "services.xmpp",
            {**NAMES, "XMPP_C2S_PORT": str(c2s), "XMPP_HTTP_PORT": str(xmpp_http), "XMPP_BIND_ADDRESS": "127.0.0.1"},
            health_url=f"http://127.0.0.1:{xmpp_http}/health"))  # fmt: skip
        colibri_urls = []
        for server_id in ("jvb1", "jvb2"):
            colibri, public, udp = free_port(), free_port(), free_tcp_udp_port()
            colibri_urls.append(f"{server_id}=http://127.0.0.1:{colibri}")
            self.bridges[server_id] = self._run(ServiceProcess.python_module(
                server_id, "services.bridge",
                {**NAMES, **xmpp_client, "JVB_WS_SERVER_ID": server_id, "JVB_WS_DOMAIN": f"127.0.0.1:{public}",
                 "JVB_WS_TLS": "false", "JVB_PORT": str(udp), "JVB_ADVERTISE_IPS": "127.0.0.1",
                 "JVB_COLIBRI_HOST": "127.0.0.1", "JVB_COLIBRI_PORT": str(colibri),
                 "JVB_PUBLIC_PORT": str(public), "JVB_BREWERY_MUC": "jvbbrewery"},
                health_url=f"http://127.0.0.1:{colibri}/about/health"), timeout=30)  # fmt: skip
        focus = f"http://127.0.0.1:{focus_http}"
        self._run(ServiceProcess.python_module(
            "focus", "services.focus",
            {**NAMES, **xmpp_client, "JICOFO_HTTP_HOST": "127.0.0.1", "JICOFO_HTTP_PORT": str(focus_http),
             "JVB_BREWERY_MUC": "jvbbrewery", "JICOFO_BRIDGE_COLIBRI_URLS": ",".join(colibri_urls)},
            health_url=f"{focus}/about/health"))  # fmt: skip
        self._run(ServiceProcess.python_module(
            "web", "services.web",
            {**NAMES, "WEB_HTTP_PORT": str(web_http), "XMPP_WEBSOCKET_URL": f"ws://127.0.0.1:{xmpp_http}/xmpp-websocket"},
            health_url=f"http://127.0.0.1:{web_http}/health"))  # fmt: skip
        deadline = time.monotonic() + 20
        while len(httpx.get(f"{focus}/bridges", timeout=2).json()) < 2:
            assert time.monotonic() < deadline, "the focus never saw both bridges"
            time.sleep(0.2)
        return f"http://127.0.0.1:{web_http}", focus

    def _run(self, proc: ServiceProcess, timeout: float = 20.0) -> ServiceProcess:
        self.procs.append(proc)
        return proc.start(timeout)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@pytest.fixture
def services() -> Iterator[tuple[Services, str, str]]:
    subprocess.run(
        [str(REPO / "services" / "web" / "build.sh")], check=True, capture_output=True, timeout=300
    )
    svc = Services()
    try:
        web, focus = svc.start()
        yield svc, web, focus
    finally:
        svc.stop()


def test_video_comes_back_after_the_bridge_crashes(services: tuple[Services, str, str]) -> None:
    svc, web, focus = services
    room = f"fo-{uuid.uuid4().hex[:8]}"

    def conference() -> dict:
        confs = httpx.get(f"{focus}/conferences", timeout=2).json()
        return next(c for c in confs if c["room"].startswith(room))

    def wait_until(what: str, cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}\n" + "\n--\n".join("\n".join(x[-30:]) for x in logs)
                )
            time.sleep(0.25)

    def frames(page) -> dict[str, int]:  # type: ignore[no-untyped-def]
        return {ep: s["framesDecoded"] for ep, s in page.evaluate("window.parley.videoStats()").items()}

    def playing(page) -> bool:  # type: ignore[no-untyped-def]
        before = frames(page)
        time.sleep(0.5)
        after = frames(page)
        return bool(after) and all(after[ep] > before.get(ep, 0) for ep in after)

    with browsers() as pool:
        pages, logs = [], []
        for name in ("Ada", "Bob"):
            page = pool.open(DESKTOP)
            logs.append(console_log(page))
            page.goto(f"{web}/{room}?name={name}")
            pages.append(page)
        for page in pages:
            wait_until("video before the crash", lambda p=page: playing(p))
        first = conference()["bridge"]
        svc.bridges[first].kill()
        for page in pages:
            wait_until(
                "video again after the move",
                lambda p=page: playing(p) and conference()["bridge"] != first,
                timeout=45,
            )
        assert conference()["moves"] >= 1
        for page in pages:
            wait_until(
                "the bridge channel to the new bridge",
                lambda p=page: p.evaluate("window.parley.channel") == "open",
            )
            assert page.is_visible("#meeting")

"""Headless Chromium for integration tests, driven by Playwright.

Launches Debian's ``/usr/bin/chromium`` with the flags that work headless on a machine without a GPU or network: fake camera and
microphone (a test pattern and a beep), permission prompts accepted, loopback ICE candidates allowed,
a fresh user-data-dir per browser. Artifacts (screenshots) go under ``artifacts/`` at the repository
root.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from tests.integration.harness import REPO, ServiceProcess, free_launcher_offset, free_port, free_tcp_udp_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts"

FAKE_DEVICES = "--use-fake-device-for-media-stream"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    FAKE_DEVICES,
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-dev-shm-usage",
]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


# every browser test module's marks: ``pytestmark = BROWSER_MARKS`` (plus its own)
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not chromium_available(), reason="needs /usr/bin/chromium"),
]


class Browsers:
    """Opens Chromium instances (each its own process and profile) and closes them all at the end."""

    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.contexts: list[BrowserContext] = []
        self.profiles: list[Path] = []

    def open(
        self, viewport: dict[str, int] | None = None, fake_media: bool = True, extra_args: list[str] | None = None
    ) -> Page:
        """A new browser; ``fake_media=False`` leaves it without camera or microphone;
        ``extra_args`` are more command-line flags."""
        profile = Path(tempfile.mkdtemp(prefix="parley-chromium-"))
        self.profiles.append(profile)
        context = self.playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=[f for f in CHROMIUM_FLAGS if fake_media or f != FAKE_DEVICES] + (extra_args or []),
            viewport=viewport or DESKTOP,
            ignore_default_args=["--mute-audio"],
        )
        self.contexts.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        return page

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()
        for profile in self.profiles:
            shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def browsers() -> Iterator[Browsers]:
    with sync_playwright() as playwright:
        pool = Browsers(playwright)
        try:
            yield pool
        finally:
            pool.close()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    return path


def console_log(page: Page) -> list[str]:
    """Start collecting the page's console messages (for failure messages)."""
    lines: list[str] = []

    def record(msg: Any) -> None:
        lines.append(f"{msg.type}: {msg.text}")

    page.on("console", record)
    page.on("pageerror", lambda exc: lines.append(f"pageerror: {exc}"))
    return lines


@dataclass
class Person:
    """One participant of a browser test: its name, its page and that page's console log."""

    name: str
    page: Page
    log: list[str]

    @property
    def endpoint(self) -> str:
        return str(self.page.evaluate("window.parley.endpointId"))

    def js(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def received(self) -> dict[str, dict[str, Any]]:
        """getStats of each decoded video, by tile key (window.parley.videoStats())."""
        return dict(self.page.evaluate("window.parley.videoStats()"))

    def frames(self, key: str) -> int:
        return int(self.received().get(key, {}).get("framesDecoded", 0))

    def video_of(self, endpoint: str) -> dict[str, Any]:
        """getStats of ``endpoint``'s decoded video, empty before there is any."""
        return dict(self.received().get(endpoint, {}))


P = TypeVar("P", bound=Person)

# what a media test's failure message shows of each page (label -> expression), besides its console
MEDIA_STATE = {
    "sends": "window.parley.sendStats()",
    "receives": "window.parley.videoStats()",
    "asks": "window.parley.videoConstraints",
    "forwarded": "window.parley.forwardedSources",
    "bridge's downlink estimate": "window.parley.downlinkBps",
}


def wait_for(
    what: str,
    cond: Callable[[], Any],
    people: Sequence[Person],
    timeout: float = 30.0,
    shows: dict[str, str] | None = None,
) -> None:
    """Poll ``cond()`` until true; on timeout fail naming ``what``, with each page's state
    (``shows``: label -> JavaScript expression, :data:`MEDIA_STATE` by default) and last 30
    console lines."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            state = MEDIA_STATE if shows is None else shows
            logs = "\n\n".join(
                f"--- {p.name}\n"
                + "".join(f"{label} {p.page.evaluate(expression)}\n" for label, expression in state.items())
                + "\n".join(p.log[-30:])
                for p in people
            )
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.3)


def launcher_colibri(page: Page) -> str:
    """The first bridge's private HTTP (``/debug``, ``/colibri``) of the :class:`LauncherStack`
    whose front door ``page`` is on: the launcher puts it 80 ports above the front door."""
    front_port = int(page.url.split("/")[2].rsplit(":", 1)[1])
    return f"http://127.0.0.1:{front_port + 80}"


def bridge_media(colibri: str, endpoint: str) -> dict[str, Any]:
    """The bridge's media view of ``endpoint`` (its ``/debug``), empty when it has none."""
    debug = httpx.get(f"{colibri}/debug", timeout=5).json()
    media = [e["media"] for c in debug["conferences"] for e in c["endpoints"] if e["id"] == endpoint]
    return dict(media[0]) if media and media[0] else {}


class LauncherStack:
    """The whole stack as a user starts it (``python -m services.launcher up``) on a free port range.

    ``front`` is the nginx front door. The launcher's process group is killed at exit.
    """

    def __init__(self, run_dir: Path, bridges: int = 1, env: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.bridges = bridges
        self.env = env or {}  # more variables for the launcher (e.g. ENABLE_AUTH, AUTH_TYPE)
        self.log_path = run_dir.parent / "launcher.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.front = ""

    def start(self, timeout: float = 300.0) -> LauncherStack:

        offset = free_launcher_offset(self.bridges)
        self.front = f"http://127.0.0.1:{8000 + offset}"
        log = self.log_path.open("wb")
        argv = [
            sys.executable,
            "-m",
            "services.launcher",
            "up",
            "--port-offset",
            str(offset),
            "--bridges",
            str(self.bridges),
            "--run-dir",
            str(self.run_dir),
            "--public-url",
            self.front,
        ]
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while "the stack is up" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the launcher did not bring the stack up:\n" + self.log()[-6000:])
            time.sleep(0.25)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


DIRECT_STACK_NAMES = {
    "XMPP_DOMAIN": "meet.jitsi",
    "XMPP_AUTH_DOMAIN": "auth.meet.jitsi",
    "XMPP_MUC_DOMAIN": "muc.meet.jitsi",
    "XMPP_INTERNAL_MUC_DOMAIN": "internal-muc.meet.jitsi",
    "JICOFO_AUTH_USER": "focus",
    "JICOFO_AUTH_PASSWORD": "focus-secret",
    "JVB_AUTH_USER": "jvb",
    "JVB_AUTH_PASSWORD": "jvb-secret",
}


class DirectStack:
    """Broker, ``bridges`` bridges (``jvb1``, ``jvb2``…), focus and web started directly (no
    nginx), so that one of them can be killed (``bridges``) or started again on the same ports
    (``xmpp``); ``focus_env`` adds focus settings."""

    def __init__(self, focus_env: dict[str, str] | None = None, bridges: int = 1) -> None:
        self.focus_env = focus_env or {}
        self.bridge_count = bridges
        self.procs: list[ServiceProcess] = []
        self.xmpp: ServiceProcess | None = None
        self.bridges: dict[str, ServiceProcess] = {}
        self.web = self.focus = ""

    def start(self) -> DirectStack:
        c2s, xmpp_http, focus_http, web_http = free_port(), free_port(), free_port(), free_port()
        xmpp_client = {"XMPP_SERVER": "127.0.0.1", "XMPP_PORT": str(c2s)}
        self.xmpp = self._run(ServiceProcess.python_module(
            "xmpp", "services.xmpp",
            {**DIRECT_STACK_NAMES, "XMPP_C2S_PORT": str(c2s), "XMPP_HTTP_PORT": str(xmpp_http), "XMPP_BIND_ADDRESS": "127.0.0.1"},
            health_url=f"http://127.0.0.1:{xmpp_http}/health"))  # fmt: skip
        colibri_urls = []
        for server_id in (f"jvb{i + 1}" for i in range(self.bridge_count)):
            colibri, public, udp = free_port(), free_port(), free_tcp_udp_port()
            colibri_urls.append(f"{server_id}=http://127.0.0.1:{colibri}")
            self.bridges[server_id] = self._run(ServiceProcess.python_module(
                server_id, "services.bridge",
                {**DIRECT_STACK_NAMES, **xmpp_client, "JVB_WS_SERVER_ID": server_id, "JVB_WS_DOMAIN": f"127.0.0.1:{public}",
                 "JVB_WS_TLS": "false", "JVB_PORT": str(udp), "JVB_ADVERTISE_IPS": "127.0.0.1",
                 "JVB_COLIBRI_HOST": "127.0.0.1", "JVB_COLIBRI_PORT": str(colibri),
                 "JVB_PUBLIC_PORT": str(public), "JVB_BREWERY_MUC": "jvbbrewery"},
                health_url=f"http://127.0.0.1:{colibri}/about/health"), timeout=30)  # fmt: skip
        self.focus = f"http://127.0.0.1:{focus_http}"
        self._run(ServiceProcess.python_module(
            "focus", "services.focus",
            {**DIRECT_STACK_NAMES, **xmpp_client, "JICOFO_HTTP_HOST": "127.0.0.1", "JICOFO_HTTP_PORT": str(focus_http),
             "JVB_BREWERY_MUC": "jvbbrewery", "JICOFO_BRIDGE_COLIBRI_URLS": ",".join(colibri_urls),
             **self.focus_env},
            health_url=f"{self.focus}/about/health"))  # fmt: skip
        self._run(ServiceProcess.python_module(
            "web", "services.web",
            {**DIRECT_STACK_NAMES, "WEB_HTTP_PORT": str(web_http), "XMPP_WEBSOCKET_URL": f"ws://127.0.0.1:{xmpp_http}/xmpp-websocket",
             "WEB_CONNECT_ORIGINS": "ws://127.0.0.1:*"},  # the bridges' WebSockets, no nginx in front
            health_url=f"http://127.0.0.1:{web_http}/health"))  # fmt: skip
        self.web = f"http://127.0.0.1:{web_http}"
        deadline = time.monotonic() + 20
        while len(httpx.get(f"{self.focus}/bridges", timeout=2).json()) < self.bridge_count:
            assert time.monotonic() < deadline, "the focus never saw every bridge"
            time.sleep(0.2)
        return self

    def _run(self, proc: ServiceProcess, timeout: float = 20.0) -> ServiceProcess:
        self.procs.append(proc)
        return proc.start(timeout)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def direct_stack(**settings: Any) -> Iterator[DirectStack]:
    """The web client built, then a :class:`DirectStack` (``settings`` are its arguments)
    started, and stopped afterwards."""
    subprocess.run(
        [str(REPO / "services" / "web" / "build.sh")], check=True, capture_output=True, timeout=300
    )
    stack = DirectStack(**settings)
    try:
        yield stack.start()
    finally:
        stack.stop()


def wait_with_logs(what: str, cond: Any, logs: list[list[str]], timeout: float = 30.0) -> None:
    """Poll ``cond()`` until true; on timeout fail naming ``what``, with the pages' last console lines."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}\n" + "\n--\n".join("\n".join(x[-30:]) for x in logs)
            )
        time.sleep(0.25)


def decodes(person: Person, count: int) -> bool:
    """``person``'s page decodes the video of exactly ``count`` others."""
    return sum(1 for s in person.received().values() if s["framesDecoded"] > 0) == count


@contextlib.contextmanager
def launcher_meeting(
    run_dir: Path,
    room_prefix: str,
    joins: Sequence[tuple[str, str]],
    person: type[P],
    shows: dict[str, str] | None = None,
) -> Iterator[list[P]]:
    """A :class:`LauncherStack` (one bridge) in ``run_dir`` and one desktop Chromium for each
    ``(name, more URL query)`` of ``joins`` in a new room; yields the people (of type ``person``)
    once each page shows the meeting and decodes every other's video. Closed afterwards."""
    stack = LauncherStack(run_dir, bridges=1).start()
    room = f"{room_prefix}-{uuid.uuid4().hex[:8]}"
    try:
        with browsers() as pool:
            people = []
            for name, query in joins:
                page = pool.open(DESKTOP)
                log = console_log(page)
                page.goto(f"{stack.front}/{room}?name={name}{query}")
                people.append(person(name, page, log))
            for p in people:
                p.page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
            others = len(people) - 1
            for p in people:
                wait_for(
                    f"{p.name} to decode {'the other' if others == 1 else f'the {others} others'}",
                    functools.partial(decodes, p, others),
                    people,
                    timeout=45,
                    shows=shows,
                )
            yield people
    finally:
        stack.stop()

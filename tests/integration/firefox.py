"""Headless Firefox (Debian's ``firefox-esr``) for integration tests, driven over WebDriver BiDi.

``firefox_driver/driver.mjs`` runs puppeteer-core (``protocol: 'webDriverBiDi'``) against
``/usr/bin/firefox-esr``; this module starts it as a child process and speaks JSON lines with it
(``goto``, ``eval``, ``wait``, ``click``), so a test reads a Firefox page the way it reads a Playwright one:
``FirefoxPage.evaluate("window.parley.videoStats()")``. The prefs give Firefox a fake camera and
microphone without a prompt and let ICE use every address (Firefox never gathers a loopback
candidate: tests run it where the bridge advertises a non-loopback address, see ``netns.py``).

The driver's npm packages are installed (``npm ci``) into ``firefox_driver/node_modules`` on first
use, before any network namespace is entered.

Screen sharing: headless Firefox has no screen to capture and no fake display source
(``media.navigator.streams.fake`` fakes cameras and microphones only: ``getDisplayMedia`` fails
with ``NotFoundError``), so :func:`xvfb` starts a virtual X display (Debian's ``xvfb``) and a
:class:`FirefoxPage` given ``display`` runs on it with a window; ``getDisplayMedia`` then captures
that display ("Primary Monitor", its full size), Firefox's own window included.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import REPO

FIREFOX = "/usr/bin/firefox-esr"
XVFB = "/usr/bin/Xvfb"
DRIVER_DIR = REPO / "tests" / "integration" / "firefox_driver"

PREFS: dict[str, Any] = {
    "media.navigator.streams.fake": True,  # a test pattern and a tone instead of devices
    "media.navigator.permission.disabled": True,  # no getUserMedia prompt
    "media.autoplay.default": 0,  # allowed
    "media.autoplay.blocking_policy": 0,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.no_host": False,
    "media.peerconnection.ice.obfuscate_host_addresses": False,  # plain addresses, not mDNS names
    "media.peerconnection.ice.link_local": True,
    # every interface, not only the one with the default route (a test namespace has none)
    "media.peerconnection.ice.default_address_only": False,
    "media.peerconnection.use_document_iceservers": True,
    "network.dns.disableIPv6": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}


def firefox_available() -> bool:
    return Path(FIREFOX).exists() and shutil.which("node") is not None and shutil.which("npm") is not None


FIREFOX_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not firefox_available(), reason="needs /usr/bin/firefox-esr (apt firefox-esr) and node"
    ),
]


def install_driver() -> None:
    """``npm ci`` the driver's packages (puppeteer-core, no browser download) once."""
    if (DRIVER_DIR / "node_modules" / "puppeteer-core").exists():
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=DRIVER_DIR,
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"},
    )


class FirefoxPage:
    """One Firefox process (its own profile) with one page."""

    def __init__(self, timeout: float = 300.0, display: str | None = None) -> None:
        self.log: list[str] = []
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next = 0
        options: dict[str, Any] = {"executable": FIREFOX, "prefs": PREFS}
        if display:
            options["display"] = display  # a window on that X display, not headless
        self.proc = subprocess.Popen(
            ["node", str(DRIVER_DIR / "driver.mjs"), json.dumps(options)],
            cwd=DRIVER_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self._reply(None, timeout)
        self.version = str(ready.get("version", ""))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self.log.append(f"driver: {line.rstrip()}")
                continue
            if not isinstance(message, dict):
                continue
            if "console" in message:
                self.log.append(str(message["console"]))
            else:
                self._replies.put(message)
        self._replies.put({"id": -1, "ok": False, "error": "the Firefox driver exited"})

    def _reply(self, wanted: int | None, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"Firefox did not answer within {timeout:.0f} s\n" + "\n".join(self.log[-30:])
                )
            try:
                message = self._replies.get(timeout=left)
            except queue.Empty:
                continue
            if message.get("id") == -1:
                raise RuntimeError("the Firefox driver exited\n" + "\n".join(self.log[-40:]))
            if wanted is None and message.get("ready"):
                return message
            if message.get("id") == wanted:
                if not message.get("ok"):
                    raise RuntimeError(f"Firefox: {message.get('error')}\n" + "\n".join(self.log[-30:]))
                return message

    def _call(self, op: str, timeout: float = 120.0, **fields: Any) -> Any:
        self._next += 1
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"id": self._next, "op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._reply(self._next, timeout).get("value")

    def goto(self, url: str, timeout: float = 180.0) -> None:
        self._call("goto", timeout=timeout + 10, url=url, timeout_ms=timeout * 1000)

    def evaluate(self, expr: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        return self._call("eval", expr=expr)

    def wait_for_selector(self, selector: str, timeout: float = 30_000) -> None:
        self._call("wait", timeout=timeout / 1000 + 10, selector=selector, timeout_ms=timeout)

    def click(self, selector: str) -> None:
        """Click the element like a user (a user gesture: ``getDisplayMedia`` needs one)."""
        self._call("click", selector=selector)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self._call("close", timeout=20)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def xvfb_available() -> bool:
    return Path(XVFB).exists()


@contextlib.contextmanager
def xvfb(width: int = 1280, height: int = 720) -> Iterator[str]:
    """A virtual X display of ``width`` x ``height`` (no TCP listener); yields its name (``:N``).
    ``-displayfd`` lets the server pick a display number no other X server uses."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [XVFB, "-displayfd", str(write_end), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(write_end)
    try:
        number = b""
        deadline = time.monotonic() + 60
        while not number.endswith(b"\n"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Xvfb did not start")
            if not select.select([read_end], [], [], 1.0)[0]:
                continue
            chunk = os.read(read_end, 16)
            if not chunk:
                raise RuntimeError("Xvfb did not say which display it uses")
            number += chunk
        yield f":{number.decode().strip()}"
    finally:
        os.close(read_end)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def firefox() -> Iterator[FirefoxPage]:
    page = FirefoxPage()
    try:
        yield page
    finally:
        page.close()

"""Headless Chromium for integration tests, driven by Playwright.

Launches Debian's ``/usr/bin/chromium`` with the flags of DESIGN.md section 6: fake camera and
microphone (a test pattern and a beep), permission prompts accepted, loopback ICE candidates allowed,
a fresh user-data-dir per browser. Artifacts (screenshots) go under ``artifacts/`` at the repository
root.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from tests.integration.harness import REPO

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts"

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-dev-shm-usage",
]

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


class Browsers:
    """Opens Chromium instances (each its own process and profile) and closes them all at the end."""

    def __init__(self, playwright: Playwright) -> None:
        self.playwright = playwright
        self.contexts: list[BrowserContext] = []
        self.profiles: list[Path] = []

    def open(self, viewport: dict[str, int] | None = None, extra_flags: list[str] | None = None) -> Page:
        profile = Path(tempfile.mkdtemp(prefix="parley-chromium-"))
        self.profiles.append(profile)
        context = self.playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS + (extra_flags or []),
            viewport=viewport or DESKTOP,
            ignore_default_args=["--mute-audio"],
        )
        self.contexts.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(15_000)
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

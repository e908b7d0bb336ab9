"""Bridge failover seen from the browser: two people meet on one of two bridges, that bridge
crashes, the focus moves them (session-terminate "moving", then a new session-initiate) and their
pages show each other's video again from the other bridge.

Processes are started directly (broker, two bridges, focus, web) so one bridge can be killed; the
browsers reach the bridges' Colibri WebSockets on their public ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.browser import (
    BROWSER_MARKS,
    DESKTOP,
    DirectStack,
    browsers,
    console_log,
    direct_stack,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def services() -> Iterator[tuple[DirectStack, str, str]]:
    with direct_stack(bridges=2) as stack:
        yield stack, stack.web, stack.focus


def test_video_comes_back_after_the_bridge_crashes(services: tuple[DirectStack, str, str]) -> None:
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

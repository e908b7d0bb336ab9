"""The XMPP broker restarts under a meeting, seen from the browser: both pages stay on the meeting
screen saying they are reconnecting (no "Rejoin" dead end), connect again with backoff, ask the
focus for the room again and join it as new occupants; the focus forgets their old selves and
invites them, and each page plays the other's video again.

Processes are started directly (broker, one bridge, focus, web) so the broker can be killed and
started again on the same ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.integration.browser import (
    BROWSER_MARKS,
    DESKTOP,
    DirectStack,
    browsers,
    console_log,
    direct_stack,
    wait_with_logs,
)

pytestmark = BROWSER_MARKS


@pytest.fixture
def stack() -> Iterator[DirectStack]:
    with direct_stack() as s:
        yield s


def test_the_meeting_comes_back_after_the_broker_restarts(stack: DirectStack) -> None:
    room = f"rc-{uuid.uuid4().hex[:8]}"
    logs: list[list[str]] = []

    def wait_until(what: str, cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        wait_with_logs(what, cond, logs, timeout)

    def frames(page: Page) -> dict[str, int]:
        return {ep: s["framesDecoded"] for ep, s in page.evaluate("window.parley.videoStats()").items()}

    def playing_one(page: Page) -> bool:
        before = frames(page)
        time.sleep(0.5)
        after = frames(page)
        return len(after) == 1 and all(after[ep] > before.get(ep, 0) for ep in after)

    def remote_tiles(page: Page) -> list[str]:
        return list(page.eval_on_selector_all(".tile:not(.local)", "ts => ts.map(t => t.dataset.endpoint)"))

    with browsers() as pool:
        pages: list[Page] = []
        for name in ("Ada", "Bob"):
            page = pool.open(DESKTOP)
            logs.append(console_log(page))
            page.goto(f"{stack.web}/{room}?name={name}")
            pages.append(page)
        for page in pages:
            wait_until("video before the restart", lambda p=page: playing_one(p), timeout=45)
        before = [str(p.evaluate("window.parley.endpointId")) for p in pages]

        assert stack.xmpp is not None
        stack.xmpp.kill()
        for page in pages:
            wait_until(
                "the page to say it is reconnecting",
                lambda p=page: p.evaluate("window.parley.phase") == "reconnecting",
            )
            assert page.is_visible("#meeting") and not page.is_visible("#left")
            assert "Reconnecting" in page.inner_text("#status-line")
        time.sleep(2)  # a few attempts against the dead broker
        stack.xmpp.start()

        after: list[str] = []
        for page in pages:
            wait_until(
                "the page to join again",
                lambda p=page: p.evaluate("window.parley.phase") == "joined",
                timeout=60,
            )
            after.append(str(page.evaluate("window.parley.endpointId")))
        assert set(after).isdisjoint(before)  # new occupants
        for page, other in ((pages[0], after[1]), (pages[1], after[0])):
            wait_until("video again after the restart", lambda p=page: playing_one(p), timeout=45)
            wait_until("only the other's new tile", lambda p=page, o=other: remote_tiles(p) == [o])
            assert page.is_visible("#meeting") and not page.is_visible("#left")
            assert page.evaluate("window.parley.reconnects") >= 1

"""The page's bridge channel over the bridge's SCTP data channel (focus ``enable-sctp``): the offer
carries a ``data`` content, Chromium answers it, takes the channel the bridge opens and moves its
bridge-channel messages there (the Colibri WebSocket stays as the fallback). Last-N (a
ReceiverVideoConstraints out, ForwardedSources back) goes over it; chat between the two pages,
which is MUC groupchat as Jitsi's, keeps working beside it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

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
def stack(tmp_path: Path) -> Iterator[DirectStack]:
    config = tmp_path / "jicofo.conf"
    config.write_text("jicofo.conference.enable-sctp = true\n")
    with direct_stack(focus_env={"JICOFO_CONFIG": str(config)}) as s:
        yield s


def test_the_bridge_channel_moves_to_the_data_channel(stack: DirectStack) -> None:
    room = f"dc-{uuid.uuid4().hex[:8]}"
    logs: list[list[str]] = []

    def wait_until(what: str, cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        wait_with_logs(what, cond, logs, timeout)

    with browsers() as pool:
        pages: list[Page] = []
        for name in ("Ada", "Bob"):
            page = pool.open(DESKTOP)
            logs.append(console_log(page))
            page.goto(f"{stack.web}/{room}?name={name}")
            pages.append(page)
        ada, bob = pages
        for page in pages:
            wait_until(
                "the bridge channel on the data channel",
                lambda p=page: p.evaluate("window.parley.channelTransport") == "datachannel",
                timeout=45,
            )
            assert "m=application" in page.evaluate("window.parley.localSdp()")
        bob_ep = str(bob.evaluate("window.parley.endpointId"))
        wait_until(
            "Ada to decode Bob",
            lambda: ada.evaluate("window.parley.videoStats()").get(bob_ep, {}).get("framesDecoded", 0) > 0,
        )

        ada.click("#chat-button")
        ada.fill("#chat-input", "over SCTP")
        ada.press("#chat-input", "Enter")
        wait_until(
            "Bob to receive the chat",
            lambda: (
                "over SCTP"
                in bob.eval_on_selector_all(
                    ".chat-message .text", "ms => ms.map(m => m.textContent).join('|')"
                )
            ),
        )

        ada.evaluate("window.parley.setLastN(0)")
        wait_until(
            "the bridge to forward nothing to Ada",
            lambda: ada.evaluate("window.parley.forwardedSources") == [],
        )
        wait_until(
            "Bob's tile to show initials",
            lambda: ada.get_attribute(f'.tile[data-endpoint="{bob_ep}"]', "data-video-off") == "true",
        )
        ada.evaluate("window.parley.setLastN(-1)")
        wait_until(
            "the bridge to forward Bob again",
            lambda: ada.evaluate("window.parley.forwardedSources") == [f"{bob_ep}-v0"],
        )
        assert ada.evaluate("window.parley.channelTransport") == "datachannel"

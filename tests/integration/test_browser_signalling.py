"""Three browsers in one room with the XMPP broker and the focus but no bridge: the room works
on signalling alone (tiles from MUC presence, muted state, leaving), the page says that no
media bridge is available instead of waiting forever, and that it is reconnecting when the broker
goes away."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.integration.browser import BROWSER_MARKS, DESKTOP, PHONE, browsers, console_log
from tests.integration.harness import REPO, ServiceProcess, free_port

pytestmark = BROWSER_MARKS

NAMES = {
    "XMPP_DOMAIN": "meet.jitsi",
    "XMPP_AUTH_DOMAIN": "auth.meet.jitsi",
    "XMPP_MUC_DOMAIN": "muc.meet.jitsi",
    "XMPP_INTERNAL_MUC_DOMAIN": "internal-muc.meet.jitsi",
}
ACCOUNTS = {
    "JICOFO_AUTH_USER": "focus",
    "JICOFO_AUTH_PASSWORD": "focus-secret",
    "JVB_AUTH_USER": "jvb",
    "JVB_AUTH_PASSWORD": "jvb-secret",
}


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[str, ServiceProcess]]:
    """(page URL, broker process)."""
    subprocess.run(
        [str(REPO / "services" / "web" / "build.sh")], check=True, capture_output=True, timeout=300
    )
    c2s, xmpp_http, focus_http, web_http = free_port(), free_port(), free_port(), free_port()
    xmpp = ServiceProcess.python_module(
        "xmpp",
        "services.xmpp",
        {
            **NAMES,
            **ACCOUNTS,
            "XMPP_C2S_PORT": str(c2s),
            "XMPP_HTTP_PORT": str(xmpp_http),
            "XMPP_BIND_ADDRESS": "127.0.0.1",
        },
        health_url=f"http://127.0.0.1:{xmpp_http}/health",
    )
    focus = ServiceProcess.python_module(
        "focus",
        "services.focus",
        {
            **NAMES,
            **ACCOUNTS,
            "XMPP_SERVER": "127.0.0.1",
            "XMPP_PORT": str(c2s),
            "JICOFO_HTTP_HOST": "127.0.0.1",
            "JICOFO_HTTP_PORT": str(focus_http),
        },
        health_url=f"http://127.0.0.1:{focus_http}/about/health",
    )
    web = ServiceProcess.python_module(
        "web",
        "services.web",
        {
            **NAMES,
            "WEB_HTTP_PORT": str(web_http),
            "WEB_MEDIA_TIMEOUT": "3",
            "XMPP_WEBSOCKET_URL": f"ws://127.0.0.1:{xmpp_http}/xmpp-websocket",
        },
        health_url=f"http://127.0.0.1:{web_http}/health",
    )
    with xmpp, focus, web:
        yield f"http://127.0.0.1:{web_http}", xmpp


def remote_tiles(page: Page) -> dict[str, str]:
    return dict(
        page.eval_on_selector_all(
            ".tile:not(.local)",
            "ts => ts.map(t => [t.dataset.endpoint, t.querySelector('.nick').textContent])",
        )
    )


def wait_until(what: str, cond, logs: list[list[str]], timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}\n" + "\n--\n".join("\n".join(x[-30:]) for x in logs)
            )
        time.sleep(0.2)


def test_room_on_signalling_alone(stack: tuple[str, ServiceProcess]) -> None:
    web_url, xmpp = stack
    room = f"sig-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        pages, logs = [], []
        for i, name in enumerate(("Ada", "Bob", "Cy")):
            page = pool.open(PHONE if i == 2 else DESKTOP)
            logs.append(console_log(page))
            page.goto(f"{web_url}/{room}?name={name}")
            pages.append(page)
        ada, bob, cy = pages
        for page in pages:
            page.wait_for_selector("#meeting:not([hidden])")
        ids = [page.evaluate("window.parley.endpointId") for page in pages]
        for i, page in enumerate(pages):
            expected = {ids[j]: n for j, n in enumerate(("Ada", "Bob", "Cy")) if j != i}
            wait_until(f"two remote tiles on page {i}", lambda p=page, e=expected: remote_tiles(p) == e, logs)

        # no bridge: each page says so after WEB_MEDIA_TIMEOUT, and stays in the meeting
        ada.wait_for_selector("#banner:not([hidden])", timeout=10_000)
        assert "No media bridge" in ada.inner_text("#banner")
        assert ada.is_visible("#meeting")

        # Bob mutes: the others see it from his presence
        bob.click("#mic-button")
        for page in (ada, cy):
            wait_until(
                "Bob shown muted",
                lambda p=page: (
                    p.get_attribute(f'.tile[data-endpoint="{ids[1]}"]', "data-audio-muted") == "true"
                ),
                logs,
            )
        assert ada.get_attribute(f'.tile[data-endpoint="{ids[2]}"]', "data-audio-muted") == "false"

        # Cy leaves: the tile goes away elsewhere
        cy.click("#leave-button")
        cy.wait_for_selector("#left:not([hidden])")
        for page in (ada, bob):
            wait_until("Cy's tile to go", lambda p=page: ids[2] not in remote_tiles(p), logs)
        assert ada.inner_text("#participant-count") == "2 people"

        # the broker goes away: the page says so and keeps trying (test_browser_reconnect.py
        # has it come back) instead of freezing; leaving stays possible
        xmpp.kill()
        wait_until(
            "the page to report the lost connection",
            lambda: ada.evaluate("window.parley.phase") == "reconnecting",
            logs,
            timeout=10,
        )
        assert ada.is_visible("#meeting") and not ada.is_visible("#left")
        assert "meeting server" in ada.inner_text("#banner")
        assert "Reconnecting" in ada.inner_text("#status-line")
        ada.click("#leave-button")
        ada.wait_for_selector("#left:not([hidden])")

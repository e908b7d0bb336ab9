"""The meeting page in headless Chromium, without focus or bridge: it renders at desktop and
phone widths, previews the fake camera, validates the form, and reports an unreachable XMPP
server instead of hanging."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.browser import BROWSER_MARKS, DESKTOP, PHONE, browsers, console_log, screenshot
from tests.integration.harness import REPO, ServiceProcess, free_port

pytestmark = BROWSER_MARKS

WEB = REPO / "services" / "web"


@pytest.fixture(scope="module")
def built_client() -> None:
    subprocess.run([str(WEB / "build.sh")], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def web_url(built_client: None) -> Iterator[str]:
    """The web service alone, its XMPP WebSocket pointing at a loopback port nobody listens on."""
    port = free_port()
    dead = free_port()
    env = {
        "WEB_HTTP_PORT": str(port),
        "XMPP_WEBSOCKET_URL": f"ws://127.0.0.1:{dead}/xmpp-websocket",
        "WEB_CONNECT_TIMEOUT": "5",
    }
    with ServiceProcess.python_module(
        "web", "services.web", env, health_url=f"http://127.0.0.1:{port}/health"
    ):
        yield f"http://127.0.0.1:{port}"


def test_jingle_offer_and_source_changes_negotiate_in_chromium(web_url: str) -> None:
    """The translator against Chromium's own WebRTC: a jicofo-style offer is accepted, the answer
    becomes a session-accept, source-add/-remove renegotiate (services/web/test/browser/)."""
    bundle = subprocess.run(
        [
            str(WEB / "node_modules" / ".bin" / "esbuild"),
            "test/browser/sdp-in-chrome.js",
            "--bundle",
            "--format=iife",
            "--log-level=warning",
        ],
        cwd=WEB,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    with browsers() as pool:
        page = pool.open(DESKTOP)
        page.goto(f"{web_url}/")
        page.evaluate(bundle)  # through DevTools: the page's CSP forbids inline scripts
        result = page.evaluate("window.sdpInChrome()")
    initial, added, removed = result["initial"], result["added"], result["removed"]
    # we send on the offer's audio/video m-lines and receive Alice's audio and video on their own
    assert initial["transceivers"] == [
        ["audio", "sendonly"],
        ["video", "sendonly"],
        ["audio-0", "recvonly"],
        ["video-1", "recvonly"],
    ]
    assert {(t["mid"], t["kind"], t["endpoint"]) for t in initial["tracks"]} == {
        ("audio-0", "audio", "a1b2c3d4"),
        ("video-1", "video", "a1b2c3d4"),
    }
    audio, video = initial["accept"]
    assert audio["name"] == "audio" and audio["sources"] == ["me000001-a0"]
    assert video["sources"][0] == "me000001-v0" and "FID" in video["groups"]
    assert "opus" in audio["codecs"] and "VP8" in video["codecs"]
    assert audio["ufrag"] and audio["setup"] == "active"
    assert audio["candidates"] > 0, (
        "loopback candidates are gathered with --allow-loopback-in-peer-connection"
    )
    # Bob's source-add: two more receiving m-lines, tracks mapped to his endpoint
    assert added["transceivers"][4:] == [["audio-2", "recvonly"], ["video-3", "recvonly"]]
    assert {t["endpoint"] for t in added["tracks"]} == {"a1b2c3d4", "b0b0b0b0"}
    # Alice's source-remove: her m-lines go inactive, Bob's stay
    assert [d for _, d in removed["transceivers"]] == [
        "sendonly",
        "sendonly",
        "inactive",
        "inactive",
        "recvonly",
        "recvonly",
    ]


def test_prejoin_shows_the_camera_preview(web_url: str) -> None:
    with browsers() as pool:
        page = pool.open(DESKTOP)
        log = console_log(page)
        page.goto(f"{web_url}/")
        page.wait_for_selector("#prejoin:not([hidden])")
        # the fake camera plays in the preview: frames are decoded and it has a size
        page.wait_for_function(
            "() => { const v = document.getElementById('preview-video');"
            " return v.srcObject && v.videoWidth > 0 && v.currentTime > 0.2; }"
        )
        assert page.is_hidden("#preview-placeholder"), log
        assert page.input_value("#room-input") == ""
        screenshot(page, "prejoin-desktop.png")


def test_form_asks_for_missing_names(web_url: str) -> None:
    with browsers() as pool:
        page = pool.open(DESKTOP)
        page.goto(f"{web_url}/")
        page.click("#join-button")
        assert "Enter a meeting name" in page.inner_text("#form-error")
        page.fill("#room-input", "bad@room")
        page.fill("#name-input", "Ada")
        page.click("#join-button")
        assert "letters, digits" in page.inner_text("#form-error")


def test_unreachable_server_shows_an_error_instead_of_hanging(web_url: str) -> None:
    with browsers() as pool:
        page = pool.open(PHONE)
        log = console_log(page)
        # a room in the URL and a name join directly
        page.goto(f"{web_url}/Weekly%20Standup?name=Ada")
        page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
        text = page.inner_text("#banner")
        assert "meeting server" in text, (text, log)
        assert page.evaluate("window.parley.errors[0].kind") == "server"
        # the page stays usable: the form is back and keeps the room
        assert page.is_visible("#join-button")
        assert page.is_enabled("#join-button")
        assert page.input_value("#room-input") == "weekly-standup"
        screenshot(page, "server-unreachable-phone.png")


def test_without_a_camera_the_page_explains_and_still_lets_you_join(web_url: str) -> None:
    with browsers() as pool:
        page = pool.open(DESKTOP, fake_media=False)
        page.goto(f"{web_url}/")
        page.wait_for_function("() => window.parley.errors.some(e => e.kind === 'media')")
        message = page.inner_text("#preview-message")
        assert "unavailable" in message and "join" in message, message
        assert page.is_visible("#preview-placeholder")
        assert page.is_enabled("#join-button")
        assert page.get_attribute("#preview-cam", "aria-pressed") == "true"

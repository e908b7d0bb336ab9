"""Recording from the web client, in headless Chromium, through the stack the launcher starts (with
its recorder): the moderator clicks Record, everyone - and a joiner - sees the indicator, the
recorder writes the browsers' media, another participant has no Record control and may not stop
it, the moderator's Stop ends it and the indicator goes away."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.browser import BROWSER_MARKS, DESKTOP, LauncherStack, browsers, console_log, screenshot

pytestmark = [*BROWSER_MARKS, pytest.mark.peer]


def wait_until(what: str, cond, timeout: float = 30.0, logs: list[list[str]] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            text = "\n\n".join("\n".join(log[-30:]) for log in logs or [])
            raise AssertionError(f"timed out waiting for {what}\n{text}")
        time.sleep(0.2)


def test_record_button_indicator_and_files(tmp_path: Path) -> None:
    stack = LauncherStack(tmp_path / "run", bridges=1).start()
    room = f"rec-{uuid.uuid4().hex[:8]}"
    port = int(stack.front.rsplit(":", 1)[1]) - 8000 + 8300
    recorder = f"http://127.0.0.1:{port}"
    try:
        with browsers() as pool:
            pages, logs = [], []
            for name in ("Ada", "Bob"):
                page = pool.open(DESKTOP)
                logs.append(console_log(page))
                page.goto(f"{stack.front}/{room}?name={name}")
                page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
                pages.append(page)
            ada, bob = pages
            wait_until("media between the two", lambda: all(
                any(s["framesDecoded"] > 0 for s in p.evaluate("window.parley.videoStats()").values()) for p in pages
            ), logs=logs)  # fmt: skip
            assert ada.is_hidden("#recording-indicator")
            ada.click("#record-button")
            for p in pages:
                p.wait_for_selector("#recording-indicator:not([hidden])", timeout=30_000)
            wait_until(
                "the recording to be on",
                lambda: (bob.evaluate("window.parley.recording") or {}).get("status") == "on",
                logs=logs,
            )
            assert ada.text_content("#record-button .tool-label") == "Stop recording"
            time.sleep(6)
            # someone joining now is told at once
            carol = pool.open(DESKTOP)
            carol.goto(f"{stack.front}/{room}?name=Carol")
            carol.wait_for_selector("#recording-indicator:not([hidden])", timeout=30_000)
            screenshot(ada, "recording-indicator.png")
            # only a moderator may stop it (Ada, the room's first participant): Bob has no Record
            # control, and the focus refuses his request all the same
            assert bob.is_hidden("#record-button") and carol.is_hidden("#record-button")
            refused = bob.evaluate("window.parley.stopRecording().then(() => 'stopped', (e) => e.message)")
            assert "only moderators may start or stop" in refused.lower(), refused
            assert (ada.evaluate("window.parley.recording") or {}).get("on"), "a participant stopped it"
            ada.click("#record-button")
            for p in (ada, bob, carol):
                p.wait_for_selector("#recording-indicator", state="hidden", timeout=30_000)
        views = httpx.get(f"{recorder}/recordings", timeout=5).json()
        [view] = [v for v in views if v["room"].startswith(room)]
        assert view["state"] == "finished", view
        names = {f["name"] for f in view["files"]}
        assert "composed.mkv" in names and len([n for n in names if n.endswith(".webm")]) >= 2, names
        for name in names:
            out = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format=duration", "-of", "json",
                 str(Path(view["directory"]) / name)],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            info = json.loads(out.stdout)
            assert float(info["format"]["duration"]) > 3, (name, info)
    finally:
        stack.stop()

"""Three people meet in headless Chromium, through the stack the launcher starts (nginx front
door, XMPP broker, focus, bridge, web service): everyone sees the two others' video playing, a
muted microphone, chat (MUC groupchat, as Jitsi clients send it), and a tile going away when
someone leaves.

Artifacts: ``artifacts/meeting-desktop.png``, ``artifacts/meeting-phone.png`` and
``artifacts/join-to-first-frame.json`` (join click to first decoded remote frame, per browser).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.browser import (
    ARTIFACTS,
    BROWSER_MARKS,
    DESKTOP,
    PHONE,
    LauncherStack,
    browsers,
    console_log,
    screenshot,
)
from tests.integration.browser import Person as BasePerson

pytestmark = [*BROWSER_MARKS, pytest.mark.peer]

NAMES = ("Ada Lovelace", "Bob Kahn", "Cy Young")


class Person(BasePerson):
    """A participant, with what this test reads of its page."""

    def remote_tiles(self) -> list[str]:
        return list(
            self.page.eval_on_selector_all(".tile:not(.local)", "ts => ts.map(t => t.dataset.endpoint)")
        )

    def frames(self) -> dict[str, int]:
        stats = self.page.evaluate("window.parley.videoStats()")
        return {ep: s["framesDecoded"] for ep, s in stats.items()}


def wait_until(what: str, cond, timeout: float = 20.0, people: list[Person] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            logs = "\n\n".join(f"--- {p.name}\n" + "\n".join(p.log[-40:]) for p in people or [])
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Person]]:
    run_dir = tmp_path_factory.mktemp("stack") / "run"
    stack = LauncherStack(run_dir, bridges=1).start()
    room = f"it-{uuid.uuid4().hex[:8]}"
    try:
        with browsers() as pool:
            people = []
            for i, name in enumerate(NAMES):
                page = pool.open(PHONE if i == 1 else DESKTOP)
                log = console_log(page)
                page.goto(f"{stack.front}/{room}?name={name.replace(' ', '%20')}")
                people.append(Person(name, page, log))
            for p in people:
                p.page.wait_for_selector("#meeting:not([hidden])", timeout=20_000)
            yield people
    finally:
        stack.stop()
        if stack.proc is not None and stack.proc.returncode not in (0, None):
            print(stack.log()[-4000:])


def test_everyone_sees_two_remote_videos_playing(meeting: list[Person]) -> None:
    endpoints = {p.name: p.endpoint for p in meeting}
    for p in meeting:
        others = {endpoints[o.name] for o in meeting if o is not p}
        wait_until(
            f"{p.name} to show two remote tiles",
            lambda p=p, o=others: set(p.remote_tiles()) == o,
            people=meeting,
        )
    for p in meeting:
        others = {endpoints[o.name] for o in meeting if o is not p}
        wait_until(
            f"{p.name} to decode video of both others",
            lambda p=p, o=others: o <= {ep for ep, n in p.frames().items() if n > 0},
            timeout=30,
            people=meeting,
        )
        before = p.frames()
        time.sleep(1.0)
        after = p.frames()
        for ep in others:
            assert after[ep] > before[ep], f"{p.name}: video of {ep} is not advancing ({before} -> {after})"
    # the tiles show the right names and the videos have a picture
    names = meeting[0].page.eval_on_selector_all(
        ".tile:not(.local) .nick", "ns => ns.map(n => n.textContent)"
    )
    assert sorted(names) == sorted(NAMES[1:])
    assert meeting[0].page.eval_on_selector_all(
        ".tile:not(.local) video", "vs => vs.every(v => v.videoWidth > 0)"
    )
    screenshot(meeting[0].page, "meeting-desktop.png")
    screenshot(meeting[1].page, "meeting-phone.png")
    timings = {p.name: p.page.evaluate("window.parley.timings") for p in meeting}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "join-to-first-frame.json").write_text(json.dumps(timings, indent=2))
    print("join to first remote frame (ms):", {n: t.get("firstRemoteFrameMs") for n, t in timings.items()})


def test_the_dominant_speaker_is_highlighted(meeting: list[Person]) -> None:
    # every fake microphone beeps, so the bridge names one of them dominant speaker
    for p in meeting:
        wait_until(
            f"{p.name} to highlight a speaker",
            lambda p=p: p.page.eval_on_selector_all(".tile.speaking", "ts => ts.length") == 1,
            people=meeting,
        )


def test_muted_microphone_and_camera_show_for_the_others(meeting: list[Person]) -> None:
    bob = meeting[1]
    bob_ep = bob.endpoint
    others = (meeting[0], meeting[2])

    def tile_state(p: Person, attribute: str) -> str | None:
        return p.page.get_attribute(f'.tile[data-endpoint="{bob_ep}"]', attribute)

    bob.page.click("#mic-button")
    assert bob.page.get_attribute("#mic-button", "aria-pressed") == "true"
    for p in others:
        wait_until(
            f"{p.name} to show Bob muted",
            lambda p=p: tile_state(p, "data-audio-muted") == "true",
            people=meeting,
        )
    bob.page.click("#mic-button")
    for p in others:
        wait_until(
            f"{p.name} to show Bob unmuted",
            lambda p=p: tile_state(p, "data-audio-muted") == "false",
            people=meeting,
        )
    # camera off: the others show his initials instead of a black picture, and back
    bob.page.click("#cam-button")
    for p in others:
        wait_until(
            f"{p.name} to show Bob's avatar",
            lambda p=p: tile_state(p, "data-video-off") == "true",
            people=meeting,
        )
        assert p.page.is_visible(f'.tile[data-endpoint="{bob_ep}"] .avatar')
    bob.page.click("#cam-button")
    for p in others:
        wait_until(
            f"{p.name} to show Bob's video again",
            lambda p=p: tile_state(p, "data-video-off") == "false",
            people=meeting,
        )


def test_chat_reaches_everyone_over_muc_groupchat(meeting: list[Person]) -> None:
    ada = meeting[0]
    wait_until(
        "the bridge channel to open",
        lambda: ada.page.evaluate("window.parley.channel") == "open",
        people=meeting,
    )
    ada.page.click("#chat-button")
    ada.page.fill("#chat-input", "Hello from Ada")
    ada.page.press("#chat-input", "Enter")
    for p in meeting[1:]:
        wait_until(
            f"{p.name} to receive the chat",
            lambda p=p: (
                "Hello from Ada"
                in p.page.eval_on_selector_all(
                    ".chat-message .text", "ms => ms.map(m => m.textContent).join('|')"
                )
            ),
            people=meeting,
        )
        assert "Ada Lovelace" in p.page.inner_text("#chat-log")


def test_leaving_removes_the_tile_elsewhere(meeting: list[Person]) -> None:
    cy = meeting[2]
    cy_ep = cy.endpoint
    cy.page.click("#leave-button")
    cy.page.wait_for_selector("#left:not([hidden])")
    for p in meeting[:2]:
        wait_until(f"{p.name} to drop Cy's tile", lambda p=p: cy_ep not in p.remote_tiles(), people=meeting)
        assert len(p.remote_tiles()) == 1

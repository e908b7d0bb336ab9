"""Moderation in real Chromium through the launcher's stack (no authentication: the first person
in a room moderates): a moderator mutes a participant (the others stop receiving its audio, in
getStats), removes one (it is told and does not come back on its own), the moderator's rights
pass on when it leaves, the lobby admits and denies, and only moderators have the Record control."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.browser import (
    BROWSER_MARKS,
    DESKTOP,
    Browsers,
    LauncherStack,
    browsers,
    console_log,
)
from tests.integration.browser import Person as BasePerson

pytestmark = [*BROWSER_MARKS, pytest.mark.peer, pytest.mark.timeout(900)]


class Person(BasePerson):
    """A participant, with what this test reads of its page."""

    @property
    def moderation(self) -> dict:
        return self.page.evaluate("window.parley.moderation") or {}

    def audio_packets(self, endpoint: str) -> int:
        stats = self.page.evaluate("window.parley.audioStats()")
        return int(stats.get(endpoint, {}).get("packetsReceived", 0))


def wait_until(what: str, cond, timeout: float = 90.0, people: list[Person] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            logs = "\n\n".join(f"--- {p.name}\n" + "\n".join(p.log[-40:]) for p in people or [])
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.25)


@dataclass
class Env:
    stack: LauncherStack
    pool: Browsers

    def person(self, room: str, name: str, wait_meeting: bool = True) -> Person:
        page = self.pool.open(DESKTOP)
        log = console_log(page)
        page.goto(f"{self.stack.front}/{room}?name={name}")
        if wait_meeting:
            page.wait_for_selector("#meeting:not([hidden])", timeout=120_000)
        return Person(name, page, log)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    stack = LauncherStack(tmp_path_factory.mktemp("moderation") / "run", bridges=1).start(timeout=400)
    try:
        with browsers() as pool:
            yield Env(stack, pool)
    finally:
        stack.stop()


def menu_action(moderator: Person, endpoint: str, action: str) -> None:
    tile = f".tile[data-endpoint='{endpoint}']"
    moderator.page.click(f"{tile} .moderator-menu-button")
    moderator.page.click(f"{tile} .moderator-menu-items [data-action='{action}']")


def moderated_meeting(env: Env, prefix: str) -> list[Person]:
    """Ada (the first, so the moderator), then Bob and Cy (participants) in a new room."""
    room = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ada = env.person(room, "Ada")
    wait_until("Ada to moderate", lambda: ada.moderation.get("role") == "moderator", people=[ada])
    bob = env.person(room, "Bob")
    cy = env.person(room, "Cy")
    people = [ada, bob, cy]
    wait_until("Bob to be a participant", lambda: bob.moderation.get("role") == "participant", people=people)
    return people


def test_mute_kick_and_handover(env: Env) -> None:
    people = ada, bob, cy = moderated_meeting(env, "mod")
    b = bob.endpoint
    assert not bob.page.is_visible("#mute-all-button") and ada.page.is_visible("#mute-all-button")
    wait_until("Cy to receive Bob's audio", lambda: cy.audio_packets(b) > 50, timeout=45, people=people)
    wait_until("Ada to see the menu on Bob's tile",
               lambda: ada.page.is_visible(f".tile[data-endpoint='{b}'] .moderator-menu-button"), people=people)
    assert not cy.page.is_visible(f".tile[data-endpoint='{b}'] .moderator-menu-button")
    menu_action(ada, b, "mute")
    wait_until("Bob to be told", lambda: bob.moderation.get("forceMuted", {}).get("audio") is True, people=people)
    assert "turned off your microphone" in bob.page.inner_text("#banner")
    time.sleep(2.0)  # what was in flight
    before = cy.audio_packets(b), ada.audio_packets(b)
    time.sleep(3.0)
    after = cy.audio_packets(b), ada.audio_packets(b)
    assert after == before, f"Bob's audio still arrives after the mute: {before} -> {after}"
    # Bob unmutes himself: the focus lets his audio through again
    bob.page.click("#mic-button")
    wait_until("Cy to receive Bob's audio again", lambda: cy.audio_packets(b) > after[0] + 20, people=people)
    # Ada removes Cy: Cy is told, gone from the others, and stays out
    c = cy.endpoint
    menu_action(ada, c, "kick")
    wait_until("Cy to see the removal", lambda: cy.page.evaluate("window.parley.state") == "left", people=people)
    assert "removed" in cy.page.inner_text("#left-title")
    wait_until("Cy's tile to go", lambda: not bob.page.is_visible(f".tile[data-endpoint='{c}']"), people=people)
    time.sleep(3.0)
    assert cy.page.evaluate("window.parley.state") == "left"  # no silent rejoin
    assert not ada.page.is_visible(f".tile[data-endpoint='{c}']")
    # Ada leaves: Bob is made moderator
    ada.page.click("#leave-button")
    wait_until("Bob to become moderator", lambda: bob.moderation.get("role") == "moderator", people=people)
    wait_until("Bob to see the moderator tools", lambda: bob.page.is_visible("#mute-all-button"), people=people)
    for p in people:
        p.page.close()


def test_record_control_only_for_moderators(env: Env) -> None:
    """Only a moderator may start or stop recording (the focus answers others ``forbidden``): the
    Record control is on a moderator's page only, and appears when a participant is made
    moderator (everyone sees the recording indicator: test_browser_recording.py)."""
    room = f"rec-ctl-{uuid.uuid4().hex[:6]}"
    ada = env.person(room, "Ada")
    wait_until("Ada to moderate", lambda: ada.moderation.get("role") == "moderator", people=[ada])
    wait_until("Ada to see the Record control", lambda: ada.page.is_visible("#record-button"), people=[ada])
    bob = env.person(room, "Bob")
    people = [ada, bob]
    wait_until("Bob to be a participant", lambda: bob.moderation.get("role") == "participant", people=people)
    assert bob.page.is_hidden("#record-button")
    assert bob.page.is_visible("#mic-button")  # the toolbar itself is there
    b = bob.endpoint
    wait_until("Ada to see the menu on Bob's tile",
               lambda: ada.page.is_visible(f".tile[data-endpoint='{b}'] .moderator-menu-button"), people=people)
    assert bob.page.is_hidden("#record-button")
    menu_action(ada, b, "moderator")
    wait_until("Bob to become moderator", lambda: bob.moderation.get("role") == "moderator", people=people)
    wait_until("Bob to see the Record control", lambda: bob.page.is_visible("#record-button"), people=people)
    assert ada.page.is_visible("#record-button")
    for p in people:
        p.page.close()


def test_lobby_admit_and_deny(env: Env) -> None:
    room = f"lobby-{uuid.uuid4().hex[:6]}"
    host = env.person(room, "Host")
    wait_until("the host to moderate", lambda: host.moderation.get("role") == "moderator", people=[host])
    host.page.click("#lobby-button")
    wait_until("the lobby to be on", lambda: host.page.get_attribute("#lobby-button", "aria-pressed") == "true",
               people=[host])
    guest = env.person(room, "Guest", wait_meeting=False)
    people = [host, guest]
    guest.page.wait_for_selector("#lobby:not([hidden])", timeout=120_000)
    host.page.wait_for_selector(".knock:has-text('Guest wants to join')", timeout=90_000)
    host.page.click(".knock:has-text('Guest') .admit")
    guest.page.wait_for_selector("#meeting:not([hidden])", timeout=120_000)
    assert guest.page.evaluate("window.parley.lobby") == "admitted"
    troll = env.person(room, "Troll", wait_meeting=False)
    people.append(troll)
    troll.page.wait_for_selector("#lobby:not([hidden])", timeout=120_000)
    host.page.wait_for_selector(".knock:has-text('Troll wants to join')", timeout=90_000)
    host.page.click(".knock:has-text('Troll') .deny")
    wait_until("the troll to be told", lambda: troll.page.evaluate("window.parley.lobby") == "denied", people=people)
    wait_until("the denial to show", lambda: "did not let you in" in troll.page.inner_text("#banner"), people=people)
    assert troll.page.evaluate("window.parley.state") != "meeting"
    for p in people:
        p.page.close()


def test_av_moderation_ask_reject_and_allow(env: Env) -> None:
    people = ada, bob, cy = moderated_meeting(env, "avmod")
    b = bob.endpoint
    wait_until("Cy to receive Bob's audio", lambda: cy.audio_packets(b) > 50, timeout=45, people=people)
    assert not bob.page.is_visible("#av-moderation-audio")  # a participant has no switch
    # Ada starts audio moderation from the participants panel
    ada.page.click("#participants-button", no_wait_after=True)
    ada.page.wait_for_selector("#av-moderation-audio", state="visible", timeout=60_000)
    ada.page.click("#av-moderation-audio", no_wait_after=True)
    wait_until("the switch to show it on",
               lambda: ada.page.get_attribute("#av-moderation-audio", "aria-pressed") == "true", people=people)
    wait_until("Bob to be muted by the moderation",
               lambda: bob.moderation.get("avModeration", {}).get("audio") is True
               and bob.moderation.get("forceMuted", {}).get("audio") is True, people=people)
    wait_until("Bob's microphone to be locked", lambda: bob.page.is_disabled("#mic-button"), people=people)
    assert bob.page.is_visible("#ask-unmute-button")
    assert not ada.page.is_disabled("#mic-button")  # moderators are not moderated
    # Bob's client asks the focus anyway: refused, and the bridge keeps dropping his audio
    refused = bob.page.evaluate("window.parley.requestUnmute('audio').then(() => 'ok', (e) => e.message)")
    assert "approval" in refused, refused
    time.sleep(2.0)  # what was in flight
    before = cy.audio_packets(b), ada.audio_packets(b)
    time.sleep(3.0)
    after = cy.audio_packets(b), ada.audio_packets(b)
    assert after == before, f"Bob is heard before any approval: {before} -> {after}"
    # Bob asks; Ada turns him down: told, hand lowered, still locked
    request = f"#unmute-requests .unmute-request[data-nick='{b}']"
    bob.page.click("#ask-unmute-button")
    ada.page.wait_for_selector(request, timeout=60_000)
    assert "Bob asks to unmute" in ada.page.inner_text(request)
    ada.page.click(f"{request} .reject")
    wait_until("Bob to be told no", lambda: "did not allow you" in bob.page.inner_text("#banner"), people=people)
    wait_until("Bob's hand to go down", lambda: not ada.page.is_visible(request), people=people)
    assert bob.page.is_disabled("#mic-button") and bob.moderation["approved"]["audio"] is False
    # asked again and allowed: Bob unmutes and is heard
    bob.page.click("#ask-unmute-button")
    ada.page.wait_for_selector(request, timeout=60_000)
    ada.page.click(f"{request} .approve")
    wait_until("Bob to be allowed", lambda: bob.moderation.get("approved", {}).get("audio") is True, people=people)
    wait_until("Bob's microphone to be unlocked", lambda: not bob.page.is_disabled("#mic-button"), people=people)
    assert "allowed you" in bob.page.inner_text("#banner")
    assert cy.audio_packets(b) == after[0]  # allowed is not yet unmuted
    bob.page.click("#mic-button")
    wait_until("Cy to hear Bob", lambda: cy.audio_packets(b) > after[0] + 20, people=people)
    wait_until("Ada to hear Bob", lambda: ada.audio_packets(b) > after[1] + 20, people=people)
    # Cy was never allowed: still locked
    assert cy.page.is_disabled("#mic-button")
    for p in people:
        p.page.close()

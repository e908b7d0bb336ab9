"""A guest flooding the room's chat, in real Chromium through nginx: a raw XMPP guest in the room
sends hundreds of groupchat messages, one of them huge, with markup as its nick and text.

Every page keeps at most ``MAX_CHAT_LINES`` chat lines (the oldest go), cuts a message to
``MAX_CHAT_TEXT`` characters and a name to ``MAX_DISPLAY_NAME``, and shows guest text as text,
never as markup (docs/security.md, "Focus, bridge and web client"). Before, each page appended
every line for as long as the meeting lasted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from xml.sax.saxutils import escape

import pytest

from tests.integration.browser import BROWSER_MARKS, DESKTOP, LauncherStack, browsers, console_log
from tests.security.test_browser_hijack import MUC, Person, XmppGuest, wait_until

pytestmark = [*BROWSER_MARKS, pytest.mark.peer]

MAX_CHAT_LINES, MAX_CHAT_TEXT = 500, 10000
MARKUP = "<img src=x onerror=\"window.pwned=1\">"


@pytest.fixture(scope="module")
def page_in_room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Person]]:
    stack = LauncherStack(tmp_path_factory.mktemp("stack") / "run", bridges=1).start()
    room = f"chat-{uuid.uuid4().hex[:8]}"
    try:
        with browsers() as pool:
            page = pool.open(DESKTOP)
            person = Person(page, console_log(page))
            page.goto(f"{stack.front}/{room}?name=Ada")
            page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
            yield stack.front, room, person
    finally:
        stack.stop()


def test_a_chat_flood_is_bounded_on_the_page(page_in_room: tuple[str, str, Person]) -> None:
    front, room, ada = page_in_room
    room_jid = f"{room}@{MUC}"
    attacker = XmppGuest(front)
    try:
        attacker.join(room_jid, f"flood{uuid.uuid4().hex[:4]}")

        def say(text: str, nick: str = "") -> None:
            named = f"<nick xmlns='http://jabber.org/protocol/nick'>{escape(nick)}</nick>" if nick else ""
            attacker.send(f"<message xmlns='jabber:client' to='{room_jid}' type='groupchat'>"
                          f"<body>{escape(text)}</body>{named}</message>")  # fmt: skip

        say(MARKUP + "x" * 30_000, nick=MARKUP + "n" * 500)
        for i in range(MAX_CHAT_LINES + 150):
            say(f"m{i}")
        last = f"m{MAX_CHAT_LINES + 149}"
        wait_until(
            "the last line on the page",
            lambda: ada.page.evaluate("document.querySelector('#chat-log').lastElementChild?.textContent ?? ''")
            .endswith(last),
            [ada],
            timeout=60,
        )
        lines = ada.page.evaluate("document.querySelector('#chat-log').children.length")
        assert lines == MAX_CHAT_LINES, lines
        first = ada.page.evaluate("document.querySelector('#chat-log .text').textContent")
        assert first == "m150", first  # the oldest went first
        assert not ada.page.evaluate("document.querySelector('#chat-log img') !== null || !!window.pwned")
    finally:
        attacker.close()


def test_a_huge_chat_message_is_cut_and_shown_as_text(page_in_room: tuple[str, str, Person]) -> None:
    front, room, ada = page_in_room
    room_jid = f"{room}@{MUC}"
    attacker = XmppGuest(front)
    try:
        attacker.join(room_jid, f"big{uuid.uuid4().hex[:4]}")
        attacker.send(f"<message xmlns='jabber:client' to='{room_jid}' type='groupchat'>"
                      f"<body>{escape(MARKUP + 'y' * 30_000)}</body>"
                      f"<nick xmlns='http://jabber.org/protocol/nick'>{escape(MARKUP + 'n' * 500)}</nick></message>")  # fmt: skip
        wait_until(
            "the message on the page",
            lambda: ada.page.evaluate("document.querySelector('#chat-log').lastElementChild?.textContent ?? ''")
            .endswith("y"),
            [ada],
            timeout=30,
        )
        text = ada.page.evaluate("document.querySelector('#chat-log').lastElementChild.querySelector('.text').textContent")
        who = ada.page.evaluate("document.querySelector('#chat-log').lastElementChild.querySelector('.who').textContent")
        assert len(text) == MAX_CHAT_TEXT and text.startswith(MARKUP), len(text)
        assert len(who) <= 100, len(who)
        assert not ada.page.evaluate("document.querySelector('#chat-log img') !== null || !!window.pwned")
    finally:
        attacker.close()

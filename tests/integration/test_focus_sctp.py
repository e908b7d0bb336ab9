"""The focus with ``enable-sctp``: the Jingle offer carries the ``data`` content, participants
answer it, and the bridge channel runs over the data channel end to end (broker, focus, bridge
and aiortc participants, all real processes)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.test_focus_stack import MUC_DOMAIN, Stack, bridge_missing

pytestmark = pytest.mark.skipif(bridge_missing() is not None, reason=bridge_missing() or "")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    config = Path(tempfile.mkstemp(prefix="parley-jicofo-", suffix=".conf")[1])
    config.write_text("jicofo.conference.enable-sctp = true\n")
    try:
        with Stack(bridges=1, focus_env={"JICOFO_CONFIG": str(config)}) as s:
            yield s
    finally:
        config.unlink(missing_ok=True)


def messages(p: JingleParticipant, colibri_class: str) -> list[dict[str, object]]:
    return [m for m in p.bridge_messages if m.get("colibriClass") == colibri_class]


async def test_bridge_channel_over_the_data_channel_through_the_focus(stack: Stack) -> None:
    room = f"datachannel@{MUC_DOMAIN}"
    people: list[JingleParticipant] = []
    try:
        for nick, rgb, tone in (("alice", (220, 30, 30), 330.0), ("bob", (30, 220, 30), 550.0)):
            p = stack.participant(nick, rgb=rgb, tone=tone)
            await p.start()
            await p.join(room)
            people.append(p)
        alice, bob = people
        opened = lambda: all(messages(p, "ServerHello") for p in people)  # noqa: E731
        assert await wait_until(opened, 40), (
            f"no data channel: {[p.bridge_messages for p in people]}\n{stack.logs()}"
        )
        for p in people:
            assert p.offer is not None and "data" in [c.name for c in p.offer.offer.contents]
            assert p.bridge_channel is not None and p.bridge_channel.label == "default"
        alice.send_bridge_message(
            {"colibriClass": "EndpointMessage", "to": "", "msgPayload": {"chat": "hello"}}
        )
        assert await wait_until(lambda: messages(bob, "EndpointMessage"), 15), bob.bridge_messages
        (got,) = messages(bob, "EndpointMessage")
        assert got["msgPayload"] == {"chat": "hello"} and got["from"]
        endpoint_of_alice = got["from"]
        bob.send_bridge_message({"colibriClass": "EndpointMessage", "to": endpoint_of_alice, "msgPayload": 1})
        assert await wait_until(lambda: messages(alice, "EndpointMessage"), 15), alice.bridge_messages
        # and the media plane is untouched by the data channel beside it
        hears = lambda: all(min(p.frames_from(o.nick)) >= 5 for p in people for o in people if o is not p)  # noqa: E731
        assert await wait_until(hears, 30), f"media did not flow\n{stack.logs()}"
    finally:
        for p in people:
            await p.stop()

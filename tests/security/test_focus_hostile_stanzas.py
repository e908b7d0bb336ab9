"""One stanza must not knock a service off (docs/security.md), against the stack the launcher
starts, through nginx: a guest sends the focus (by its account and by its component address)
and the bridge stanzas nested hundreds and thousands of levels deep, large ones, and malformed
Jingle and conference requests. Each gets an error (or is dropped); the focus and the bridge keep
their one XMPP session, the bridge is never declared failed, and the focus still sets up rooms.
"""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.browser import LauncherStack
from tests.security.test_browser_hijack import XmppGuest

pytestmark = [pytest.mark.peer]

FOCUS_ACCOUNT = "focus@auth.meet.jitsi/focus"
FOCUS_COMPONENT = "focus.meet.jitsi"
BRIDGE = "jvb@auth.meet.jitsi/jvb1"


class Stack:
    def __init__(self, launcher: LauncherStack) -> None:
        self.launcher = launcher
        self.front = launcher.front
        offset = int(self.front.rsplit(":", 1)[1]) - 8000
        self.focus = f"http://127.0.0.1:{8888 + offset}"
        self.bridge = f"http://127.0.0.1:{8080 + offset}"

    def focus_xmpp(self) -> dict[str, object]:
        return httpx.get(f"{self.focus}/debug", timeout=5).json()["xmpp"]  # type: ignore[no-any-return]

    def bridge_xmpp(self) -> dict[str, object]:
        return httpx.get(f"{self.bridge}/debug", timeout=5).json()["xmpp"]  # type: ignore[no-any-return]

    def bridges(self) -> list[dict[str, object]]:
        return httpx.get(f"{self.focus}/bridges", timeout=5).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    launcher = LauncherStack(tmp_path_factory.mktemp("stack") / "run", bridges=1).start()
    try:
        s = Stack(launcher)
        deadline = time.monotonic() + 30
        while not (s.bridges() and s.bridge_xmpp()["joined"]):
            assert time.monotonic() < deadline, "the bridge never joined the brewery"
            time.sleep(0.3)
        yield s
    finally:
        launcher.stop()


def nested(depth: int, ns: str = "urn:example:deep") -> str:
    return f"<a xmlns='{ns}'>" + "<a>" * (depth - 1) + "</a>" * depth


def conference_ready(guest: XmppGuest, room: str, ident: str) -> bool:
    guest.send(
        f"<iq xmlns='jabber:client' to='{FOCUS_COMPONENT}' type='set' id='{ident}'>"
        f"<conference xmlns='http://jitsi.org/protocol/focus' room='{room}@muc.meet.jitsi' machine-uid='m'/></iq>"
    )
    answer = guest.iq_answer(ident, timeout=15)
    conf = answer.find("{http://jitsi.org/protocol/focus}conference")
    return answer.get("type") == "result" and conf is not None and conf.get("ready") == "true"


def test_deep_huge_and_malformed_stanzas_leave_focus_and_bridge_connected(stack: Stack) -> None:
    before_focus, before_bridge = stack.focus_xmpp(), stack.bridge_xmpp()
    assert before_focus["sessions"] == 1 and before_bridge["sessions"] == 1
    guest = XmppGuest(stack.front)
    try:
        n = reached_services = 0

        def refused(stanzas: list[str], ident: str) -> ET.Element | None:
            """Send from a fresh guest: the IQ's error answer, or None when the broker's own depth
            limit ended that guest's stream first (policy-violation), which is also a refusal."""
            attacker = XmppGuest(stack.front)
            try:
                for stanza in stanzas:
                    attacker.send(stanza)
                answer = attacker.iq_answer(ident)
            except (ConnectionClosed, OSError):
                return None
            finally:
                attacker.close()
            assert answer.get("type") == "error"
            return answer

        for target in (FOCUS_ACCOUNT, FOCUS_COMPONENT, BRIDGE):
            for depth in (300, 600):
                n += 1
                answer = refused(
                    [
                        f"<message xmlns='jabber:client' to='{target}'>{nested(depth)}</message>",
                        f"<presence xmlns='jabber:client' to='{target}'>{nested(depth)}</presence>",
                        f"<iq xmlns='jabber:client' to='{target}' type='set' id='deep{n}'>{nested(depth)}</iq>",
                    ][::-1],
                    f"deep{n}",
                )
                if answer is not None:
                    reached_services += "stanza nested deeper than" in ET.tostring(answer, "unicode")
            # deep inside a payload the service does handle
            refused(
                [
                    f"<iq xmlns='jabber:client' to='{target}' type='set' id='deepj{n}'>"
                    "<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='x'>"
                    f"<content name='audio'>{nested(800, 'urn:xmpp:jingle:apps:rtp:1')}</content></jingle></iq>"
                ],
                f"deepj{n}",
            )
            # big (but under the broker's stanza limit)
            guest.send(
                f"<iq xmlns='jabber:client' to='{target}' type='get' id='big{n}'>"
                f"<query xmlns='urn:example:big'>{'x' * 100_000}</query></iq>"
            )
            assert guest.iq_answer(f"big{n}").get("type") == "error"
            # malformed requests of the kinds the services handle
            for i, payload in enumerate(
                (
                    "<jingle xmlns='urn:xmpp:jingle:1'/>",
                    "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid=''><content/></jingle>",
                    "<conference xmlns='http://jitsi.org/protocol/focus'/>",
                    "<conference xmlns='http://jitsi.org/protocol/focus' room='x@elsewhere'/>",
                    "<healthcheck xmlns='http://jitsi.org/protocol/healthcheck'><a/></healthcheck>",
                )
            ):
                guest.send(
                    f"<iq xmlns='jabber:client' to='{target}' type='set' id='bad{n}-{i}'>{payload}</iq>"
                )
                assert guest.iq_answer(f"bad{n}-{i}").get("type") in ("error", "result")

        # still one session each, the bridge never failed, and the focus still sets up rooms
        assert conference_ready(guest, f"after-{uuid.uuid4().hex[:6]}", "conf1")
        assert stack.focus_xmpp()["sessions"] == 1
        assert stack.bridge_xmpp()["sessions"] == 1
        assert [b["state"] for b in stack.bridges()] == ["operational"], stack.bridges()
        if reached_services:  # (a broker with its own depth limit may refuse them first)
            refused = int(stack.focus_xmpp()["stanzas_refused"]) + int(stack.bridge_xmpp()["stanzas_refused"])  # type: ignore[call-overload]
            assert refused >= reached_services
        ours = [line for line in stack.launcher.log().splitlines() if line.startswith(("focus ", "jvb1 "))]
        assert not [line for line in ours if "xmpp disconnected" in line or "xmpp connection lost" in line]
        assert not [line for line in ours if "Traceback" in line or "RecursionError" in line]
        # one log line per kind of refusal, not one per stanza
        assert len([line for line in ours if "xmpp.guard" in line]) <= 6
    finally:
        guest.close()

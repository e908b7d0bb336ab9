"""Who may record or stream a meeting, and where a stream may go, against real processes (broker,
focus, bridge, recorder; aiortc participants as anonymous guests).

* Only a moderator starts or stops a recording or stream (Jicofo checks the requester's role): a
  guest who is a mere participant is answered ``forbidden`` and nothing starts or stops. A guest
  who sends the Jibri IQ straight to the recorder's brewery address or to the focus's account is
  bounced by the broker.
* A moderator's ``streamid`` cannot make the recorder connect into the deployment
  (server-side request forgery): loopback, private, link-local (169.254.169.254, the clouds'
  metadata service) and names resolving to them are refused with ``not-acceptable`` and the
  reason, before any connection; a canary listening on loopback (standing for Redis, the
  broker's internal ports or a bridge's private API) is never contacted.

docs/security.md, "Recording and streaming".
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from services.common import jibri
from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.test_focus_stack import INTERNAL_MUC_DOMAIN, MUC_DOMAIN, bridge_missing
from tests.integration.test_recorder import RecorderStack, StatusWatcher, jibri_iq, meeting

pytestmark = pytest.mark.skipif(
    bridge_missing() is not None or shutil.which("ffprobe") is None, reason="bridge or ffprobe missing"
)

NS_MUC_USER = "http://jabber.org/protocol/muc#user"


class DefaultPolicyStack(RecorderStack):
    """The recorder with the stream policy an operator gets by default (no network allowed)."""

    def start(self) -> None:
        super(RecorderStack, self).start()
        self.start_recorder({"RECORDER_RTMP_ALLOWED_NETWORKS": ""})


@pytest.fixture(scope="module")
def stack() -> Iterator[DefaultPolicyStack]:
    with DefaultPolicyStack() as s:
        s.wait_recorder_registered()
        yield s


class Canary:
    """A TCP listener on loopback that counts who connects to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class Roles:
    """The MUC roles one participant sees in its room."""

    def __init__(self, p: JingleParticipant, room: str) -> None:
        self.room, self.of = room, {}  # type: ignore[var-annotated]
        p.add_event_handler("presence", self._presence)

    def _presence(self, stanza: slixmpp.Presence) -> None:
        if stanza["from"].bare != self.room:
            return
        item = stanza.xml.find(f"{{{NS_MUC_USER}}}x/{{{NS_MUC_USER}}}item")
        if item is not None:
            self.of[stanza["from"].resource] = item.get("role")


def presence_update(p: JingleParticipant, room: str) -> None:
    """``p`` sends its presence again (as a page does when its state changes): the room sees
    its current role in the broadcast."""
    presence = p.make_presence(pto=f"{room}/{p.nick}")
    nick = ET.SubElement(presence.xml, "{http://jabber.org/protocol/nick}nick")
    nick.text = p.nick
    for tag in ("audiomuted", "videomuted"):
        ET.SubElement(presence.xml, f"{{jabber:client}}{tag}").text = "false"
    presence.send()


async def refused(p: JingleParticipant, to: str, request: jibri.JibriIq) -> tuple[str, str]:
    iq = p.make_iq_set(ito=to)
    iq.append(request.to_element())
    with pytest.raises(IqError) as error:
        await iq.send(timeout=20)
    return str(error.value.iq["error"]["condition"]), str(error.value.iq["error"]["text"])


def recording_now(stack: RecorderStack, room: str) -> list[dict[str, Any]]:
    return [v for v in stack.recordings() if v.get("room") == room and v.get("state") == "recording"]


START = jibri.JibriIq(action=jibri.Action.START)


@pytest.mark.peer
async def test_only_a_moderator_starts_or_stops_recording(stack: DefaultPolicyStack) -> None:
    room = f"modonly@{MUC_DOMAIN}"
    people = await meeting(stack, room, ["alice", "bob"])
    alice, bob = people
    roles = Roles(bob, room)
    try:
        # alice came first: the focus made her a moderator
        presence_update(alice, room)
        assert await wait_until(lambda: roles.of.get("alice") == "moderator", 20), (roles.of, stack.logs())
        assert roles.of.get("bob") != "moderator"

        for request in (START, jibri.JibriIq(action=jibri.Action.START, recording_mode=jibri.RecordingMode.STREAM,
                                             stream_id="live-key")):  # fmt: skip
            condition, text = await refused(bob, f"{room}/focus", request)
            assert condition == "forbidden" and "moderator" in text, (condition, text)
        # straight to the recorder, or to the focus's account: the broker bounces guests
        brewery_rec = f"jibribrewery@{INTERNAL_MUC_DOMAIN}/rec1"
        session = jibri.JibriIq(action=jibri.Action.START, session_id="forged1", room=room)
        assert (await refused(bob, brewery_rec, session))[0] == "service-unavailable"
        assert (await refused(bob, "jibri@auth.meet.jitsi/rec1", session))[0] == "service-unavailable"
        assert (await refused(bob, "focus@auth.meet.jitsi", START))[0] == "service-unavailable"
        await asyncio.sleep(1)
        assert recording_now(stack, room) == [] and stack.get("/recordings")["recordings"] == []

        answer = await jibri_iq(alice, room, START)
        assert answer.session_id
        assert await wait_until(lambda: len(recording_now(stack, room)) == 1, 20), stack.logs()
        stop = jibri.JibriIq(action=jibri.Action.STOP, session_id=answer.session_id)
        assert (await refused(bob, f"{room}/focus", stop))[0] == "forbidden"
        assert (await refused(bob, brewery_rec, stop))[0] == "service-unavailable"
        await asyncio.sleep(1)
        assert len(recording_now(stack, room)) == 1, "a guest stopped the recording"
        await jibri_iq(alice, room, stop)
        assert await wait_until(lambda: recording_now(stack, room) == [], 20), stack.logs()
    finally:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)


@pytest.mark.peer
async def test_a_stream_cannot_point_into_the_deployment(stack: DefaultPolicyStack) -> None:
    room = f"ssrf@{MUC_DOMAIN}"
    canary = Canary()
    people = await meeting(stack, room, ["alice", "bob"])
    alice = people[0]
    roles = Roles(people[1], room)
    try:
        presence_update(alice, room)
        assert await wait_until(lambda: roles.of.get("alice") == "moderator", 20), (roles.of, stack.logs())
        # four (with the legitimate start below, the room's burst of starts; every other
        # special-purpose range is in services/recorder/tests/test_stream_policy.py)
        targets = [
            f"rtmp://127.0.0.1:{canary.port}/live/x",  # the recorder's own loopback
            f"rtmp://localhost:{canary.port}/live/x",  # a name that resolves to it
            f"rtmp://[::ffff:127.0.0.1]:{canary.port}/live/x",
            "rtmp://169.254.169.254/latest/meta-data/",  # cloud metadata
            f"rtmp://evil.example@127.0.0.1:{canary.port}/live/x",  # user info (refused as malformed)
        ]
        for url in targets:
            request = jibri.JibriIq(action=jibri.Action.START, recording_mode=jibri.RecordingMode.STREAM,
                                    stream_id=url)  # fmt: skip
            started = time.monotonic()
            condition, text = await refused(alice, f"{room}/focus", request)
            assert condition in ("not-acceptable", "bad-request"), (url, condition, text, stack.logs())
            assert text, url
            assert time.monotonic() - started < 10, url
        await asyncio.sleep(3)  # a started stream would have connected by now (media flows)
        assert canary.connections == 0
        assert recording_now(stack, room) == []
        # the recorder still records for the room
        answer = await jibri_iq(alice, room, START)
        assert await wait_until(lambda: len(recording_now(stack, room)) == 1, 20), stack.logs()
        await jibri_iq(alice, room, jibri.JibriIq(action=jibri.Action.STOP, session_id=answer.session_id))
    finally:
        canary.close()
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)


@pytest.mark.peer
async def test_recording_starts_per_room_are_rate_limited(stack: DefaultPolicyStack) -> None:
    """A moderator starting and stopping in a loop starts an encoder and a directory each time:
    a room gets ``jicofo.jibri.start-burst`` starts at once, then ``starts-per-minute``; stopping is
    never limited."""
    room = f"churn@{MUC_DOMAIN}"
    people = await meeting(stack, room, ["alice", "bob"])
    alice = people[0]
    roles = Roles(people[1], room)
    try:
        presence_update(alice, room)
        assert await wait_until(lambda: roles.of.get("alice") == "moderator", 20), (roles.of, stack.logs())
        for _ in range(5):  # the burst: each start is taken, and stopped at once
            answer = await jibri_iq(alice, room, START)
            await jibri_iq(alice, room, jibri.JibriIq(action=jibri.Action.STOP, session_id=answer.session_id))
        condition, text = await refused(alice, f"{room}/focus", START)
        assert condition == "resource-constraint" and "retry" in text, (condition, text)
        assert recording_now(stack, room) == []
    finally:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)


@pytest.mark.peer
async def test_a_recording_left_running_is_ended_at_its_maximum_duration(stack: DefaultPolicyStack) -> None:
    """A moderator who starts a recording and never stops it cannot fill the recorder's disk:
    past ``recorder.max-duration`` the recorder ends it and the room is told why (runs last: it
    restarts the module's recorder with a short limit)."""
    assert stack.recorder is not None
    stack.recorder.stop()
    stack.start_recorder({"RECORDER_RTMP_ALLOWED_NETWORKS": "", "RECORDER_MAX_DURATION": "3"})
    stack.wait_recorder_registered()
    room = f"forever@{MUC_DOMAIN}"
    people = await meeting(stack, room, ["alice", "bob"])
    alice = people[0]
    watcher = StatusWatcher(people[1], room)
    roles = Roles(people[1], room)
    try:
        presence_update(alice, room)
        assert await wait_until(lambda: roles.of.get("alice") == "moderator", 20), (roles.of, stack.logs())
        answer = await jibri_iq(alice, room, START)
        assert await wait_until(lambda: watcher.last is jibri.Status.ON, 20), (watcher.seen, stack.logs())
        assert await wait_until(lambda: watcher.last is jibri.Status.OFF, 20), (watcher.seen, stack.logs())
        assert "maximum duration" in (watcher.seen[-1].failure_reason or ""), watcher.seen[-1]
        [view] = [v for v in stack.recordings() if v.get("session_id") == answer.session_id]
        assert view["state"] == "stopped" and view["ended_at"] - view["started_at"] < 10, view
    finally:
        await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)

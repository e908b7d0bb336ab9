"""The orchestrator :class:`~services.focus.focus.Focus` with fakes of its two ports (signalling and
the Colibri client): joins, retries on another bridge, moves, giving up. Real processes are in
``tests/integration/``; here each failure is made to happen on purpose."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from services.common import colibri, jibri, jingle
from services.common.brewery import BridgeStats
from services.focus import config
from services.focus.colibri_client import ColibriError
from services.focus.conference import Conference, ParticipantState
from services.focus.focus import Focus
from services.focus.jibri import JibriRefused
from services.focus.moderation import Moderation
from services.focus.store import MemoryStore
from services.focus.tests.test_flows import bridge_response

ROOM = "r@muc.meet.jitsi"
URLS = {"jvb1": "http://jvb1", "jvb2": "http://jvb2", "jvb3": "http://jvb3"}


@dataclass
class FakeSignaling:
    present: set[str] = field(default_factory=set)
    sent: list[tuple[str, jingle.Jingle]] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)

    async def ensure_room(self, room: str) -> set[str]:
        return set(self.present)

    def leave_room(self, room: str) -> None:
        pass

    async def destroy_room(self, room: str, reason: str) -> None:
        self.destroyed.append(room)

    async def send_jingle(self, to: str, message: jingle.Jingle) -> bool:
        self.sent.append((to, message))
        return True

    def actions(self) -> list[tuple[str, str]]:
        return [(to.rsplit("/", 1)[-1], m.action) for to, m in self.sent]


@dataclass
class FakeColibri:
    """Answers like a bridge unless ``errors[bridge]`` holds errors to raise (one per call)."""

    errors: dict[str, list[ColibriError]] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (method, bridge, endpoint)
    bodies: list[colibri.Conference] = field(default_factory=list)  # what each call asked for
    expired: list[tuple[str, str]] = field(default_factory=list)
    created: int = 0

    def _answer(self, method: str, base: str, body: colibri.Conference) -> colibri.Conference:
        bridge = base.removeprefix("http://")
        endpoint = body.contents[0].channels[0].endpoint or "?"
        self.calls.append((method, bridge, endpoint))
        self.bodies.append(body)
        if self.errors.get(bridge):
            raise self.errors[bridge].pop(0)
        if body.id is None:
            self.created += 1
        return bridge_response(endpoint, body.id or f"{bridge}-conf{self.created}")

    async def create(self, base: str, body: colibri.Conference) -> colibri.Conference:
        return self._answer("POST", base, body)

    async def patch(self, base: str, body: colibri.Conference) -> colibri.Conference:
        return self._answer("PATCH", base, body)

    async def expire(self, base: str, conference_id: str) -> None:
        self.expired.append((base, conference_id))

    async def health(self, base: str, within: float) -> tuple[bool, bool, str]:
        return True, False, ""


def unreachable() -> ColibriError:
    return ColibriError("connection refused", unreachable=True)


def status(code: int) -> ColibriError:
    return ColibriError(f"HTTP {code}", status=code, unreachable=code >= 500)


@pytest.fixture
async def setup() -> tuple[Focus, FakeSignaling, FakeColibri]:
    urls = ",".join(f"{k}={v}" for k, v in URLS.items())
    settings = config.load(environ={"JICOFO_AUTH_PASSWORD": "x", "JICOFO_BRIDGE_COLIBRI_URLS": urls})
    fake_colibri = FakeColibri()
    focus = Focus(settings, fake_colibri, MemoryStore(), clock=lambda: 100.0)
    signaling = FakeSignaling()
    focus.signaling = signaling
    return focus, signaling, fake_colibri


async def settle(focus: Focus) -> None:
    for _ in range(1000):
        if not len(focus.background):
            return
        await asyncio.sleep(0)
    raise AssertionError("background tasks did not finish")


async def bridges(focus: Focus, **stress: float) -> None:
    for bridge_id, level in stress.items():
        focus.bridge_presence(bridge_id, BridgeStats(stress_level=level))
    await settle(focus)  # a new bridge invites whoever waits


async def join(focus: Focus, signaling: FakeSignaling, *nicks: str) -> None:
    await focus.conference_request(ROOM, "a@meet.jitsi/x")
    for nick in nicks:
        signaling.present.add(nick)
        focus.occupant_joined(ROOM, nick, f"{ROOM}/{nick}", f"{nick}@meet.jitsi/x")
        await settle(focus)


async def test_a_join_is_placed_on_the_least_loaded_bridge_and_offered(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.5, jvb2=0.1)
    await join(focus, signaling, "a", "b")
    assert fake.calls == [("POST", "jvb2", "a"), ("PATCH", "jvb2", "b")]
    assert signaling.actions() == [("a", "session-initiate"), ("b", "session-initiate")]
    conf = focus.conferences[ROOM]
    assert conf.bridge_id == "jvb2" and conf.participants["b"].state is ParticipantState.INVITED
    await focus.close()


async def test_a_bridge_shutting_down_is_avoided_for_a_new_conference_but_not_failed(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1, jvb2=0.5)
    fake.errors["jvb1"] = [status(503)]
    await join(focus, signaling, "a")
    assert fake.calls == [("POST", "jvb1", "a"), ("POST", "jvb2", "a")]
    assert focus.conferences[ROOM].bridge_id == "jvb2"
    assert focus.registry.is_usable("jvb1")
    assert signaling.actions() == [("a", "session-initiate")]
    await focus.close()


async def test_an_unreachable_bridge_is_failed_and_the_conference_moves_with_everyone(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1, jvb2=0.5)
    await join(focus, signaling, "a")
    fake.errors["jvb1"] = [unreachable()]
    await join(focus, signaling, "b")
    assert not focus.registry.is_usable("jvb1")
    assert fake.calls == [("POST", "jvb1", "a"), ("PATCH", "jvb1", "b"), ("POST", "jvb2", "a"),
                          ("PATCH", "jvb2", "b")]  # fmt: skip
    assert signaling.actions() == [("a", "session-initiate"), ("a", "session-terminate"),
                                   ("a", "session-initiate"), ("b", "session-initiate")]  # fmt: skip
    terminate = signaling.sent[1][1]
    assert terminate.reason is not None and terminate.reason.text == "moving"
    conf = focus.conferences[ROOM]
    assert conf.bridge_id == "jvb2" and conf.moves == 1
    await focus.close()


async def test_a_bridge_that_forgot_the_conference_is_not_failed_the_conference_is_recreated(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1)
    await join(focus, signaling, "a")
    fake.errors["jvb1"] = [status(404)]
    await join(focus, signaling, "b")
    assert focus.registry.is_usable("jvb1")
    assert fake.calls[1:] == [("PATCH", "jvb1", "b"), ("POST", "jvb1", "a"), ("PATCH", "jvb1", "b")]
    assert focus.conferences[ROOM].colibri_id == "jvb1-conf2"
    await focus.close()


async def test_a_refused_request_gives_up_and_the_participant_waits(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1, jvb2=0.2)
    fake.errors["jvb1"] = [status(400)]
    await join(focus, signaling, "a")
    assert fake.calls == [("POST", "jvb1", "a")]  # another bridge would not help
    assert focus.conferences[ROOM].participants["a"].state is ParticipantState.JOINED
    assert signaling.sent == [] and focus.registry.is_usable("jvb1")
    await focus.close()


async def test_attempts_run_out_then_a_new_bridge_invites_who_waits(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1, jvb2=0.2)
    fake.errors["jvb1"] = [status(503), status(503)]
    fake.errors["jvb2"] = [status(503), status(503)]
    await join(focus, signaling, "a")
    assert [c[1] for c in fake.calls] == ["jvb1", "jvb2"]  # then no bridge is left: a waits
    assert focus.conferences[ROOM].participants["a"].state is ParticipantState.JOINED
    await bridges(focus, jvb3=0.9)  # a new invitation asks every bridge again
    assert [c[1] for c in fake.calls[2:]] == ["jvb1", "jvb2", "jvb3"]
    assert signaling.actions() == [("a", "session-initiate")] and focus.conferences[ROOM].bridge_id == "jvb3"
    await focus.close()


async def test_no_more_than_three_attempts_per_invitation(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1)
    fake.errors["jvb1"] = [status(404)] * 5
    await join(focus, signaling, "a")
    assert len(fake.calls) == 3 and signaling.sent == []
    await focus.close()


async def test_a_bridge_leaving_the_brewery_moves_its_conferences(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, _ = setup
    await bridges(focus, jvb1=0.1, jvb2=0.5)
    await join(focus, signaling, "a", "b")
    focus.bridge_left("jvb1")
    await settle(focus)
    assert focus.conferences[ROOM].bridge_id == "jvb2"
    assert signaling.actions()[2:] == [("a", "session-terminate"), ("b", "session-terminate"),
                                       ("a", "session-initiate"), ("b", "session-initiate")]  # fmt: skip
    await focus.close()


async def test_the_last_one_leaving_ends_the_conference_on_its_bridge(setup) -> None:  # type: ignore[no-untyped-def]
    focus, signaling, fake = setup
    await bridges(focus, jvb1=0.1)
    await join(focus, signaling, "a")
    focus.occupant_left(ROOM, "a")
    await settle(focus)
    assert ROOM not in focus.conferences
    assert fake.expired == [("http://jvb1", "jvb1-conf1")] and signaling.destroyed == [ROOM]
    await focus.close()


@dataclass
class NoRecorders:
    """The recorders' brewery with nobody in it."""

    async def send_jibri(self, recorder: str, request: jibri.JibriIq) -> jibri.JibriIq:
        raise AssertionError("no recorder to ask")

    def set_room_extension(self, room: str, tag: str, element: object) -> None:
        pass


async def test_the_focus_is_built_with_who_may_record_and_asks_the_moderation_core() -> None:
    """Only a moderator (as the moderation core, given at construction, says) gets past the
    recording service's check; the room's other occupants are refused."""
    settings = config.load(environ={"JICOFO_AUTH_PASSWORD": "x"})
    moderation = Moderation()
    focus = Focus(settings, FakeColibri(), MemoryStore(), is_moderator=moderation.is_moderator)
    focus.jibri.signaling = NoRecorders()
    conf = focus.conferences[ROOM] = Conference(room=ROOM)
    for nick, role in (("alice", "moderator"), ("bob", "participant")):
        conf.occupant_joined(nick, f"{ROOM}/{nick}")
        moderation.presence(ROOM, nick, f"{nick}@meet.jitsi/web", role, False, None)
    start = jibri.JibriIq(action=jibri.Action.START, recording_mode=jibri.RecordingMode.FILE)
    with pytest.raises(JibriRefused) as refused:
        await focus.jibri.request(ROOM, "bob", start)
    assert refused.value.condition == "forbidden"
    with pytest.raises(JibriRefused) as refused:
        await focus.jibri.request(ROOM, "alice", start)
    assert refused.value.condition == "service-unavailable"  # allowed; no recorder in the brewery
    without = Focus(settings, FakeColibri(), MemoryStore())
    without.jibri.signaling = NoRecorders()
    without.conferences[ROOM] = conf
    with pytest.raises(JibriRefused) as refused:
        await without.jibri.request(ROOM, "alice", start)
    assert refused.value.condition == "forbidden"  # built without moderation: nobody may

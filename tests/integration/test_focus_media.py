"""The focus with the real broker and two real bridges: Jingle to aiortc participants, media through
the bridges, placement, failover, departures, restart with Redis.

Every process is real (``services.xmpp``, ``services.bridge`` x2, ``services.focus``, redis-server);
participants speak XMPP and Jingle (:mod:`tests.integration.participant`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.participant import JingleParticipant, wait_until
from tests.integration.test_focus_stack import MUC_DOMAIN, Stack, bridge_missing

pytestmark = pytest.mark.skipif(bridge_missing() is not None, reason=bridge_missing() or "")

COLOURS = {"alice": (220, 30, 30), "bob": (30, 220, 30), "carol": (30, 30, 220), "dave": (200, 200, 30)}
TONES = {"alice": 330.0, "bob": 550.0, "carol": 770.0, "dave": 990.0}


@pytest.fixture
def stack():
    """A fresh stack, for tests that kill, freeze, drain or count on idle bridges."""
    with Stack(bridges=2) as s:
        yield s


@pytest.fixture(scope="module")
def shared_stack():
    """One stack for the tests that only use their own room."""
    with Stack(bridges=2) as s:
        yield s


async def joined(stack: Stack, room: str, *nicks: str, media: bool = True) -> list[JingleParticipant]:
    out = []
    for nick in nicks:
        p = stack.participant(
            nick, rgb=COLOURS.get(nick, (90, 90, 90)), tone=TONES.get(nick, 440.0), media=media
        )
        await p.start()
        await p.join(room)
        out.append(p)
    return out


def hears_everyone(p: JingleParticipant, others: list[JingleParticipant], frames: int = 5) -> bool:
    return all(min(p.frames_from(o.nick)) >= frames for o in others if o is not p)


async def wait_media(stack: Stack, people: list[JingleParticipant], within: float = 25.0) -> None:
    ok = await wait_until(lambda: all(hears_everyone(p, people) for p in people), within)
    if not ok:
        got = {p.nick: {o: p.frames_from(o) for o in p.received} for p in people}
        pytest.fail(f"media did not flow: {got}\n{stack.logs()}")


def colour_of(p: JingleParticipant, owner: str) -> str:
    rgb = p.received[owner].last_rgb
    assert rgb is not None
    return min(COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], rgb, strict=True)))


async def stop_all(people: list[JingleParticipant]) -> None:
    await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)


async def test_three_participants_receive_each_others_media(shared_stack: Stack) -> None:
    stack = shared_stack
    room = f"trio@{MUC_DOMAIN}"
    people = await joined(stack, room, "alice", "bob", "carol")
    try:
        await wait_media(stack, people)
        for p in people:
            assert len(p.log_.initiated_at) == 1
            # the bridge is a full, controlling ICE agent, as jitsi-videobridge: no ICE-lite marker
            assert p.offer is not None and not p.offer.transport.ice_lite
            ws = p.offer.transport.web_socket or ""
            assert "/colibri-ws/" in ws and f"/{p.nick}?pwd=" in ws  # the bridge channel URL, per endpoint
            for o in people:
                if o is not p:
                    assert colour_of(p, o.nick) == o.nick  # decoded the right sender's video
        assert stack.participants_of(room) == {"alice": "active", "bob": "active", "carol": "active"}
        # the later joiners' sources reached the earlier ones with source-add
        assert people[0].log_.source_adds == 2 and people[1].log_.source_adds == 1
    finally:
        await stop_all(people)


async def test_rooms_spread_over_idle_bridges_and_a_loaded_bridge_is_avoided(stack: Stack) -> None:
    people: list[JingleParticipant] = []
    try:
        people += await joined(stack, f"one@{MUC_DOMAIN}", "a1", media=False)
        assert await wait_until(lambda: stack.bridge_of(f"one@{MUC_DOMAIN}") is not None, 10)
        people += await joined(stack, f"two@{MUC_DOMAIN}", "b1", media=False)
        assert await wait_until(lambda: stack.bridge_of(f"two@{MUC_DOMAIN}") is not None, 10)
        first, second = stack.bridge_of(f"one@{MUC_DOMAIN}"), stack.bridge_of(f"two@{MUC_DOMAIN}")
        assert {first, second} == {"jvb1", "jvb2"}  # two idle bridges: one room each
        people += await joined(stack, f"one@{MUC_DOMAIN}", "a2", "a3", "a4", media=False)
        loads = {b["id"]: b["load"] for b in stack.get("/bridges")}
        assert loads[first] > loads[second]
        people += await joined(stack, f"three@{MUC_DOMAIN}", "c1", media=False)
        assert await wait_until(lambda: stack.bridge_of(f"three@{MUC_DOMAIN}") is not None, 10)
        assert stack.bridge_of(f"three@{MUC_DOMAIN}") == second  # the loaded bridge is avoided
    finally:
        await stop_all(people)


async def test_draining_and_graceful_shutdown_steer_new_conferences(stack: Stack) -> None:
    people: list[JingleParticipant] = []
    try:
        people += await joined(stack, f"busy@{MUC_DOMAIN}", "a1", media=False)
        assert await wait_until(lambda: stack.bridge_of(f"busy@{MUC_DOMAIN}") is not None, 10)
        busy = stack.bridge_of(f"busy@{MUC_DOMAIN}")
        idle = ({"jvb1", "jvb2"} - {busy}).pop()
        async with httpx.AsyncClient(timeout=5) as http:
            (await http.post(f"{stack.colibri_url(idle)}/colibri/drain/enable")).raise_for_status()
        assert await wait_until(
            lambda: any(b["id"] == idle and b["drain"] for b in stack.get("/bridges")), 10
        )
        people += await joined(stack, f"second@{MUC_DOMAIN}", "b1", media=False)
        assert await wait_until(lambda: stack.bridge_of(f"second@{MUC_DOMAIN}") is not None, 10)
        assert stack.bridge_of(f"second@{MUC_DOMAIN}") == busy  # the idle bridge drains: used last
        async with httpx.AsyncClient(timeout=5) as http:
            url = f"{stack.colibri_url(busy)}/colibri/shutdown"
            (await http.post(url, json={"graceful-shutdown": True})).raise_for_status()
        states = lambda: {b["id"]: b["state"] for b in stack.get("/bridges")}  # noqa: E731
        assert await wait_until(lambda: states().get(busy) == "graceful_shutdown", 10), states()
        people += await joined(stack, f"third@{MUC_DOMAIN}", "c1", media=False)
        assert await wait_until(lambda: stack.bridge_of(f"third@{MUC_DOMAIN}") is not None, 10)
        assert stack.bridge_of(f"third@{MUC_DOMAIN}") == idle  # no new conference on a bridge shutting down
        assert stack.bridge_of(f"busy@{MUC_DOMAIN}") == busy  # its running conferences stay
    finally:
        await stop_all(people)


async def test_killed_bridge_conference_moves_and_media_resumes(stack: Stack) -> None:
    room = f"failover@{MUC_DOMAIN}"
    people = await joined(stack, room, "alice", "bob")
    try:
        await wait_media(stack, people)
        victim = stack.bridge_of(room)
        assert victim is not None
        survivor = ({"jvb1", "jvb2"} - {victim}).pop()
        killed_at = time.perf_counter()
        stack.bridges[victim].kill()
        moved = await wait_until(lambda: all(len(p.log_.initiated_at) == 2 for p in people), 15, 0.01)
        assert moved, stack.logs()
        await wait_media(stack, people)
        resumed_at = max(max(p.received[o.nick].first_at or 0 for o in people if o is not p) for p in people)
        print(f"\nfailover: bridge {victim} killed -> media flowing again on {survivor} in "
              f"{resumed_at - killed_at:.2f} s")  # fmt: skip
        assert stack.bridge_of(room) == survivor
        for p in people:
            assert [(c, t) for _, c, t in p.log_.terminated] == [("success", "moving")]
            assert len(p.log_.initiated_at) == 2
        assert stack.conference(room)["moves"] == 1  # type: ignore[index]
    finally:
        await stop_all(people)


async def test_hung_bridge_fails_its_health_checks_and_the_conference_moves(tmp_path: Path) -> None:
    """A frozen bridge (SIGSTOP) keeps its XMPP connection, so only health checks can tell."""
    conf_file = tmp_path / "focus.conf"
    conf_file.write_text("jicofo.bridge { health-interval = 1, health-timeout = 1, health-failures = 2 }")
    room = f"hung@{MUC_DOMAIN}"
    with Stack(bridges=2, focus_env={"JICOFO_CONFIG": str(conf_file)}) as stack:
        people = await joined(stack, room, "alice", "bob")
        try:
            await wait_media(stack, people)
            victim = stack.bridge_of(room)
            assert victim is not None
            proc = stack.bridges[victim].proc
            assert proc is not None
            frozen_at = time.perf_counter()
            os.killpg(proc.pid, signal.SIGSTOP)
            moved = await wait_until(lambda: all(len(p.log_.initiated_at) == 2 for p in people), 20, 0.02)
            assert moved, stack.logs()
            await wait_media(stack, people)
            print(
                f"\nhung bridge {victim}: media flowing again after {time.perf_counter() - frozen_at:.2f} s"
            )
            listed = {b["id"]: b for b in stack.get("/bridges")}.get(victim)
            assert listed is None or (listed["state"] == "failed" and listed["failure_reason"])
            assert stack.bridge_of(room) != victim
        finally:
            await stop_all(people)
            for bridge in stack.bridges.values():
                bridge.kill()  # a stopped process ignores SIGTERM


async def test_leaving_participant_is_removed_everywhere(shared_stack: Stack) -> None:
    stack = shared_stack
    room = f"leave@{MUC_DOMAIN}"
    people = await joined(stack, room, "alice", "bob", "carol")
    alice, bob, carol = people
    try:
        await wait_media(stack, people)
        conf = stack.conference(room)
        assert conf is not None
        bridge_url, colibri_id = stack.colibri_url(conf["bridge"]), conf["colibri_id"]
        carol_ssrcs = {
            src.ssrc for p in (alice, bob) for slot in p.offer.slots if slot.owner.endswith("/carol")  # type: ignore[union-attr]
            for src in slot.sources
        }  # fmt: skip
        assert carol_ssrcs
        await carol.stop()
        for p in (alice, bob):
            assert await wait_until(lambda p=p: set(p.log_.removed_ssrcs) >= carol_ssrcs, 5)

        def bridge_endpoints() -> set[str]:
            body = httpx.get(f"{bridge_url}/colibri/conferences/{colibri_id}", timeout=5).json()
            return {
                ch.get("endpoint") for c in body.get("contents", []) for ch in c.get("channels", []) or []
            }

        assert await wait_until(lambda: "carol" not in bridge_endpoints(), 5), bridge_endpoints()
        assert {"alice", "bob"} <= bridge_endpoints()
        await alice.stop()
        await bob.stop()
        assert await wait_until(lambda: stack.conference(room) is None, 5)

        def conference_ids() -> list[str]:
            return [c["id"] for c in httpx.get(f"{bridge_url}/colibri/conferences", timeout=5).json()]

        assert await wait_until(lambda: colibri_id not in conference_ids(), 10), conference_ids()
    finally:
        await stop_all(people)


async def test_ice_failure_report_gets_a_new_session(shared_stack: Stack) -> None:
    stack = shared_stack
    room = f"ice@{MUC_DOMAIN}"
    people = await joined(stack, room, "alice", "bob")
    alice, bob = people
    try:
        await wait_media(stack, people)
        bridge = stack.bridge_of(room)
        assert await bob.report_ice_failure()
        assert await wait_until(lambda: len(bob.log_.initiated_at) == 2, 10), stack.logs()
        assert [(c, t) for _, c, t in bob.log_.terminated] == [("success", "moving")]
        before = alice.frames_from("bob")
        await wait_media(stack, people)  # bob's new session receives again...
        more = lambda: all(n >= b + 5 for n, b in zip(alice.frames_from("bob"), before, strict=True))  # noqa: E731
        assert await wait_until(more, 15), (before, alice.frames_from("bob"))  # ...and sends again
        assert stack.bridge_of(room) == bridge and len(alice.log_.initiated_at) == 1
        assert alice.log_.source_removes == 1  # bob's old sources were withdrawn, then added again
    finally:
        await stop_all(people)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="Debian's redis-server is not installed")
async def test_restarted_focus_resumes_conferences_from_redis() -> None:
    room = f"redis@{MUC_DOMAIN}"
    with Stack(bridges=1, redis=True) as stack:
        people = await joined(stack, room, "alice", "bob")
        try:
            await wait_media(stack, people)
            assert stack.focus is not None
            stack.focus.stop()
            stack.start_focus()
            assert await wait_until(
                lambda: stack.participants_of(room) == {"alice": "active", "bob": "active"}, 10
            )
            carol = (await joined(stack, room, "carol"))[0]
            people.append(carol)
            await wait_media(stack, people)
            for p in people:
                assert len(p.log_.initiated_at) == 1  # nobody was re-invited
        finally:
            await stop_all(people)


async def test_a_restart_request_naming_the_bridge_session_gets_a_new_offer(shared_stack: Stack) -> None:
    """lib-jitsi-meet's recovery when the focus advertises support-terminate-restart: a
    session-terminate with <bridge-session restart='true'> naming the current session is answered
    with a new session-initiate; one naming another session is not."""
    stack = shared_stack
    room = f"restart@{MUC_DOMAIN}"
    people = await joined(stack, room, "alice", "bob")
    alice, bob = people
    try:
        await wait_media(stack, people)
        assert bob.bridge_session  # the offer names the bridge session
        assert await bob.request_restart(bridge_session="not-the-current-one", close_pc=False)
        await asyncio.sleep(2.0)
        assert len(bob.log_.initiated_at) == 1  # a stale restart request is ignored
        assert await bob.request_restart()
        assert await wait_until(lambda: len(bob.log_.initiated_at) == 2, 10), stack.logs()
        await wait_media(stack, people)  # media flows again on the new session
        assert len(alice.log_.initiated_at) == 1
    finally:
        await stop_all(people)

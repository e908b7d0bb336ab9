"""The focus against the real XMPP broker: conference IQ, rooms, occupants, HTTP API, config errors.

Media through bridges is in ``test_focus_media.py``; here the broker (``python -m services.xmpp``)
and the focus (``python -m services.focus``) run as processes and test participants speak XMPP.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import httpx
import pytest
import redis
from slixmpp.exceptions import IqError

from services.focus.store import REDIS_KEY
from tests.integration.participant import wait_until
from tests.integration.test_focus_stack import DOMAIN, MUC_DOMAIN, Stack


@pytest.fixture(scope="module")
def stack():
    with Stack(bridges=0) as s:
        yield s


async def test_conference_request_creates_room_and_occupants_are_tracked(stack: Stack) -> None:
    room = f"tracked@{MUC_DOMAIN}"
    alice, bob = stack.participant("alice", media=False), stack.participant("bob", media=False)
    await alice.start()
    await bob.start()
    try:
        answer = await alice.request_conference(room)
        assert answer.get("ready") == "true" and answer.get("focusjid") == f"focus@auth.{DOMAIN}"
        await alice.join(room)
        await bob.join(room)
        assert await wait_until(
            lambda: stack.participants_of(room) == {"alice": "joined", "bob": "joined"}, 5
        )
        conf = stack.conference(room)
        assert conf is not None and conf["bridge"] is None  # no bridge in this stack: they wait
        await bob.leave()
        assert await wait_until(lambda: stack.participants_of(room) == {"alice": "joined"}, 30)
        await alice.leave()
        assert await wait_until(lambda: stack.conference(room) is None, 30)
    finally:
        await alice.stop()
        await bob.stop()


async def test_conference_request_for_a_foreign_room_is_refused(stack: Stack) -> None:
    guest = stack.participant("mallory", media=False)
    await guest.start()
    try:
        with pytest.raises(IqError) as err:
            await guest.request_conference("room@conference.elsewhere.example")
        assert err.value.iq["error"]["condition"] == "bad-request"
        iq = guest.make_iq_set(ito=stack.focus_jid)
        iq.append(ET.Element("{http://jitsi.org/protocol/focus}conference"))  # no room at all
        with pytest.raises(IqError):
            await iq.send(timeout=5)
    finally:
        await guest.stop()


async def test_http_api(stack: Stack) -> None:
    base = stack.focus_url
    async with httpx.AsyncClient() as http:
        for path in ("/about/health", "/health"):
            assert (await http.get(base + path)).status_code == 200
        metrics = (await http.get(base + "/metrics")).text
        assert "jicofo_conferences" in metrics and "jicofo_allocation_seconds" in metrics
        assert (await http.get(base + "/bridges")).json() == []
        debug = (await http.get(base + "/debug")).json()
        assert debug["xmpp_ready"] is True and "conferences" in debug


async def test_focus_reconnects_after_the_broker_restarts() -> None:
    with Stack(bridges=0) as stack:
        assert stack.xmpp is not None
        stack.xmpp.kill()
        assert await wait_until(lambda: httpx.get(stack.focus_url + "/about/health").status_code == 503, 30)
        stack.start_xmpp()
        assert await wait_until(lambda: httpx.get(stack.focus_url + "/about/health").status_code == 200, 60)
        guest = stack.participant("late", media=False)
        await guest.start()
        room = f"after-restart@{MUC_DOMAIN}"
        try:
            await guest.join(room)
            assert await wait_until(lambda: stack.participants_of(room) == {"late": "joined"}, 30)
        finally:
            await guest.stop()


async def test_after_a_broker_restart_the_focus_forgets_who_is_gone() -> None:
    room = f"emptied@{MUC_DOMAIN}"
    with Stack(bridges=0) as stack:
        assert stack.xmpp is not None
        alice = stack.participant("alice", media=False)
        await alice.start()
        try:
            await alice.join(room)
            assert await wait_until(lambda: stack.participants_of(room) == {"alice": "joined"}, 30)
            stack.xmpp.kill()  # the rooms go with the broker; alice's client does not come back
            stack.start_xmpp()
            assert await wait_until(
                lambda: httpx.get(stack.focus_url + "/about/health").status_code == 200, 10
            )
            assert await wait_until(lambda: stack.conference(room) is None, 60)
        finally:
            await alice.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="Debian's redis-server is not installed")
async def test_conference_state_survives_a_focus_restart_in_redis() -> None:
    room = f"kept@{MUC_DOMAIN}"
    with Stack(bridges=0, redis=True) as stack:
        alice = stack.participant("alice", media=False)
        await alice.start()
        try:
            await alice.join(room)
            assert await wait_until(lambda: stack.participants_of(room) == {"alice": "joined"}, 30)
            assert stack.redis is not None and stack.focus is not None
            stored = redis.Redis(port=stack.redis.port).hkeys(REDIS_KEY)
            assert stored == [room.encode()]
            stack.focus.stop()
            stack.start_focus()
            assert stack.participants_of(room) == {"alice": "joined"}  # restored before anyone spoke
            await alice.leave()
            assert await wait_until(lambda: stack.conference(room) is None, 30)
            assert redis.Redis(port=stack.redis.port).hkeys(REDIS_KEY) == []
        finally:
            await alice.stop()


def test_bad_setting_exits_with_its_name() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.focus"],
        env={"PATH": "/usr/bin:/bin", "JICOFO_AUTH_PASSWORD": "x", "XMPP_PORT": "port"},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(Stack.repo),
    )
    assert proc.returncode == 2
    assert "jicofo.xmpp.port" in proc.stderr and "XMPP_PORT" in proc.stderr

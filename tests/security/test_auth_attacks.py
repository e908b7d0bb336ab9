"""Authentication and moderation against hostile clients: the real broker (JWT mode) and focus.

A client without a valid token cannot log in, and is told why; a token for one room does not
open another; the broker's identity stamp cannot be forged; a participant who is not a moderator
cannot kick, mute, run AV moderation, approve itself or grant itself rights; nobody can kick the
focus; with two broker nodes a token's room claim and identity still hold on the room's node."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest

from services.xmpp.tokens import mint
from tests.integration.test_focus_stack import Stack
from tests.integration.test_xmpp_cluster import redis_url  # noqa: F401  (fixture)
from tests.security.conftest import FOCUS_NS, MUC, WsGuest

SECRET = "security-test-secret"
APP = "parley-tests"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = {"ENABLE_AUTH": "1", "AUTH_TYPE": "jwt", "JWT_APP_ID": APP, "JWT_APP_SECRET": SECRET,
           "JWT_ACCEPTED_AUDIENCES": "jitsi"}  # fmt: skip
    with Stack(bridges=0, xmpp_env=env, focus_env={"ENABLE_AUTH": "1"}) as s:
        yield s


def url(stack: Stack, token: str | None) -> str:
    base = f"ws://127.0.0.1:{stack.xmpp_http}/xmpp-websocket"
    return base if token is None else f"{base}?token={token}"


def sasl_failure(stack: Stack, token: str | None) -> str:
    guest = WsGuest(url(stack, token))
    try:
        guest.open()
        guest.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        return guest.recv_until(re.compile("failure|success"))
    finally:
        guest.close()


def guest(stack: Stack, room: str = "*", **claims: object) -> WsGuest:
    g = WsGuest(url(stack, mint(SECRET, APP, room, **claims)))  # type: ignore[arg-type]
    return g.login()


def test_login_refusals_name_their_reason(stack: Stack) -> None:
    cases = {
        None: "a token is required",
        "garbage": "malformed token",
        mint("not-the-secret", APP, "r"): "invalid token signature",
        mint(SECRET, APP, "r", now=time.time() - 7200, ttl=60): "token expired",
        mint(SECRET, APP, "r", not_before=time.time() + 3600, ttl=7200): "token not yet valid",
        mint(SECRET, APP, "r", audience="elsewhere"): "invalid audience",
        mint(SECRET, "other-app", "r"): "invalid issuer",
    }
    for token, reason in cases.items():
        answer = sasl_failure(stack, token)
        assert "<failure" in answer and "not-authorized" in answer and reason in answer, (token, answer)
    assert "<success" in sasl_failure(stack, mint(SECRET, APP, "r"))


def test_a_token_for_one_room_does_not_open_another(stack: Stack) -> None:
    g = guest(stack, room="allowed", name="Mallory")
    try:
        g.request_conference("forbidden")  # the focus creates it; the broker still says no
        answer = g.join("forbidden", "mallory")
        assert "type='error'" in answer and "not-allowed" in answer and "room claim" in answer, answer
        g.request_conference("allowed")
        assert "code='110'" in g.join("allowed", "mallory")
    finally:
        g.close()


def admin_iq(g: WsGuest, room: str, item: str) -> str:
    ident = uuid.uuid4().hex[:8]
    g.send(
        f"<iq xmlns='jabber:client' type='set' id='{ident}' to='{room}@{MUC}'>"
        f"<query xmlns='http://jabber.org/protocol/muc#admin'>{item}</query></iq>"
    )
    return g.recv_until(f"id='{ident}'")


def focus_iq(g: WsGuest, payload: str) -> str:
    ident = uuid.uuid4().hex[:8]
    g.send(f"<iq xmlns='jabber:client' type='set' id='{ident}' to='focus.meet.jitsi'>{payload}</iq>")
    return g.recv_until(f"id='{ident}'")


def test_forged_moderator_actions_are_refused(stack: Stack) -> None:
    room = "guarded"
    host = guest(stack, room=room, moderator=True, name="Host")
    troll = guest(stack, room=room, moderator=False, name="Troll")
    victim = guest(stack, room=room, name="Victim")
    try:
        host.request_conference(room)
        host.join(room, "host")
        # a forged identity saying "moderator" is dropped; the token's claim (false) stands
        forged = "<identity><user><name>Host</name><moderator>true</moderator></user></identity>"
        troll.join(room, "troll", forged)
        victim.join(room, "victim")
        host.recv_until(re.compile(r"from='guarded@muc.meet.jitsi/host'[^>]*>.*role='moderator'"), timeout=15)
        seen = host.recv_until("guarded@muc.meet.jitsi/troll'")
        assert "role='participant'" in seen and "<moderator>false</moderator>" in seen, seen
        assert seen.count("<identity") == 1 and "<moderator>true" not in seen, seen
        time.sleep(1.0)
        kick = admin_iq(troll, room, "<item nick='victim' role='none'/>")
        assert "type='error'" in kick and "forbidden" in kick, kick
        grant = admin_iq(troll, room, "<item nick='troll' affiliation='owner'/>")
        assert "type='error'" in grant and "forbidden" in grant, grant
        mute = focus_iq(
            troll, f"<mute xmlns='http://jitsi.org/jitmeet/audio' jid='{room}@{MUC}/victim'>true</mute>"
        )
        assert "type='error'" in mute and "forbidden" in mute, mute
        av = focus_iq(
            troll,
            "<json-message xmlns='http://jitsi.org/jitmeet'>"
            f'{{"type":"av_moderation","room":"{room}@{MUC}","kind":"audio","enable":true}}</json-message>',
        )
        assert "type='error'" in av and "forbidden" in av, av
        # a mute IQ straight to the victim's occupant JID is not relayed by the room
        ident = uuid.uuid4().hex[:8]
        troll.send(
            f"<iq xmlns='jabber:client' type='set' id='{ident}' to='{room}@{MUC}/victim'>"
            "<mute xmlns='http://jitsi.org/jitmeet/audio'>true</mute></iq>"
        )
        assert "not-allowed" in troll.recv_until(f"id='{ident}'")
        # even the moderator cannot kick the focus
        kick_focus = admin_iq(host, room, "<item nick='focus' role='none'/>")
        assert "type='error'" in kick_focus, kick_focus
        # the moderator can kick
        assert "type='result'" in admin_iq(host, room, "<item nick='victim' role='none'/>")
        assert "code='307'" in victim.recv_until("code='307'")
    finally:
        for g in (host, troll, victim):
            g.close()


def test_conference_request_needs_a_logged_in_session(stack: Stack) -> None:
    g = WsGuest(url(stack, None))
    try:
        g.open()
        g.send(
            f"<iq xmlns='jabber:client' type='set' id='c1' to='focus.meet.jitsi'>"
            f"<conference xmlns='{FOCUS_NS}' room='x@{MUC}'/></iq>"
        )
        assert g.closed_by_server() or "not-authorized" in "".join(g.seen)
    finally:
        g.close()


def test_only_moderators_run_the_lobby(stack: Stack) -> None:
    room = "doorway"
    host = guest(stack, room=room, moderator=True)
    troll = guest(stack, room=room, moderator=False)
    knocker = guest(stack, room=room, moderator=False)
    try:
        host.request_conference(room)
        host.join(room, "host")
        host.recv_until(re.compile(r"from='doorway@muc.meet.jitsi/host'[^>]*>.*role='moderator'"), timeout=15)
        troll.join(room, "troll")
        form = (
            "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='muc#roomconfig_membersonly'><value>1</value></field></x></query>"
        )
        ident = uuid.uuid4().hex[:8]
        troll.send(f"<iq xmlns='jabber:client' type='set' id='{ident}' to='{room}@{MUC}'>{form}</iq>")
        assert "forbidden" in troll.recv_until(f"id='{ident}'")
        host.send(f"<iq xmlns='jabber:client' type='set' id='lobby-on' to='{room}@{MUC}'>{form}</iq>")
        assert "type='result'" in host.recv_until("id='lobby-on'")
        answer = knocker.join(room, "knocker")
        assert "registration-required" in answer and "lobbyroom" in answer, answer
        knocker.send(f"<presence xmlns='jabber:client' to='{room}@lobby.meet.jitsi/knocker'/>")
        knocker.recv_until("code='110'")
        # a participant can neither deny nor admit
        ident = uuid.uuid4().hex[:8]
        troll.send(
            f"<iq xmlns='jabber:client' type='set' id='{ident}' to='{room}@lobby.meet.jitsi'>"
            "<query xmlns='http://jabber.org/protocol/muc#admin'><item nick='knocker' role='none'/></query></iq>"
        )
        assert "forbidden" in troll.recv_until(f"id='{ident}'")
        grant = admin_iq(troll, room, f"<item affiliation='member' jid='{knocker.jid.split('/')[0]}'/>")
        assert "forbidden" in grant, grant
        # a knocker cannot slip in under another name either
        again = knocker.join(room, "someone-else")
        assert "registration-required" in again
    finally:
        for g in (host, troll, knocker):
            g.close()


def av_message(g: WsGuest, room: str, **body: object) -> str:
    import json

    payload = json.dumps({"type": "av_moderation", "room": f"{room}@{MUC}", **body})
    return focus_iq(g, f"<json-message xmlns='http://jitsi.org/jitmeet'>{payload}</json-message>")


def test_forged_av_moderation_and_self_approval_are_refused(stack: Stack) -> None:
    room = "hushed"
    host = guest(stack, room=room, moderator=True, name="Host")
    troll = guest(stack, room=room, moderator=False, name="Troll")
    victim = guest(stack, room=room, moderator=False, name="Victim")
    try:
        host.request_conference(room)
        host.join(room, "host")
        host.recv_until(re.compile(rf"from='{room}@muc.meet.jitsi/host'[^>]*>.*role='moderator'"), timeout=15)
        troll.join(room, "troll")
        victim.join(room, "victim")
        time.sleep(1.0)
        # only moderators switch it on, approve, or reject
        assert "forbidden" in av_message(troll, room, kind="audio", enable=True)
        assert "type='result'" in av_message(host, room, kind="audio", enable=True)
        host.recv_until("av-moderation", timeout=15)
        for body in ({"jidToWhitelist": f"{room}@{MUC}/troll"}, {"jidToBlacklist": f"{room}@{MUC}/victim"},
                     {"jidToWhitelist": f"{room}@{MUC}/victim"}):  # fmt: skip
            answer = av_message(troll, room, kind="audio", **body)
            assert "type='error'" in answer and "forbidden" in answer, (body, answer)
        # approving oneself by naming the room differently, or an occupant of another room
        answer = av_message(troll, room, kind="audio", jidToWhitelist=f"elsewhere@{MUC}/troll")
        assert "type='error'" in answer, answer
        # and so the troll still cannot unmute itself
        unmute = focus_iq(troll, f"<mute xmlns='http://jitsi.org/jitmeet/audio' jid='{room}@{MUC}/troll'>false</mute>")
        assert "type='error'" in unmute and "forbidden" in unmute and "approval" in unmute, unmute
        # junk in the JSON: refused with bad-request, the focus keeps serving
        for junk in ("{", "[1,2]", "x" * 5000, "{" * 2000 + "}" * 2000):
            answer = focus_iq(troll, f"<json-message xmlns='http://jitsi.org/jitmeet'>{junk}</json-message>")
            assert "type='error'" in answer, (junk[:20], answer)
        # a forged "you are approved" message to the victim comes from the troll's occupant JID,
        # never from the focus's (the client trusts only the latter)
        troll.send(
            f"<message xmlns='jabber:client' type='chat' to='{room}@{MUC}/victim' from='{room}@{MUC}/focus'>"
            "<json-message xmlns='http://jitsi.org/jitmeet'>"
            '{"type":"av_moderation","approved":true,"kind":"audio"}</json-message></message>'
        )
        forged = victim.recv_until("approved", timeout=10)
        assert f"from='{room}@{MUC}/troll'" in forged and f"from='{room}@{MUC}/focus'" not in forged, forged
        # the host approves the victim: that one comes from the focus
        assert "type='result'" in av_message(host, room, kind="audio", jidToWhitelist=f"{room}@{MUC}/victim")
        real = victim.recv_until("approved", timeout=15)
        assert f"from='{room}@{MUC}/focus'" in real, real
    finally:
        for g in (host, troll, victim):
            g.close()


async def test_a_token_for_one_room_does_not_open_another_on_another_node(redis_url: str) -> None:  # noqa: F811
    """Two broker nodes: the room lives on node a, the attacker's session on node b. Node a must
    still check b's token (its room claim travels with the bind) and drop a forged identity."""
    import asyncio

    from tests.integration.test_xmpp_cluster import AUTH_ENV, ws_guest
    from tests.integration.xmpp_interop.servers import AUTH_DOMAIN, FOCUS_PASSWORD, MUC_DOMAIN, start_parley
    from tests.integration.xmpp_interop.slix import JID, connected, next_matching

    node_a, ep_a = start_parley("xmpp-attack-a", REDIS_URL=redis_url, XMPP_NODE_ID="attack-a", **AUTH_ENV)
    node_b, ep_b = start_parley("xmpp-attack-b", REDIS_URL=redis_url, XMPP_NODE_ID="attack-b", **AUTH_ENV)
    guests: list[WsGuest] = []
    try:
        room = JID(f"vault@{MUC_DOMAIN}")
        async with connected(ep_a.c2s_port, f"focus@{AUTH_DOMAIN}/focus", FOCUS_PASSWORD) as focus:
            await focus.plugin["xep_0045"].join_muc_wait(room, "focus", timeout=5)
            await asyncio.sleep(0.5)
            mallory = await asyncio.to_thread(ws_guest, ep_b.http_port, "lobby-of-elsewhere", name="Mallory")
            plain = await asyncio.to_thread(ws_guest, ep_b.http_port, "vault", name="Plain", moderator=False)
            guests += [mallory, plain]
            refused = await asyncio.to_thread(mallory.join, "vault", "mallory")
            assert "type='error'" in refused and "room claim" in refused, refused
            forged = "<identity><user><name>Boss</name><moderator>true</moderator></user></identity>"
            assert "code='110'" in await asyncio.to_thread(plain.join, "vault", "plain", forged)
            seen = str(await next_matching(focus.presences, lambda p: p["from"] == JID(f"{room}/plain"), wait=10))
            assert "Boss" not in seen and "<moderator>false</moderator>" in seen, seen
    finally:
        for g in guests:
            g.close()
        node_b.stop()
        node_a.stop()

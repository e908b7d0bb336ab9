"""Two broker processes serve one domain through Redis: clients on different nodes chat and share
a MUC room; when a node dies its users leave the room on the other node within seconds. With JWT
authentication the token's room claim and the identity stamp hold for an occupant whose session
is on the other node, the lobby knocks and admits across nodes, and moderator rights granted on
one node work from the other."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from services.xmpp.tokens import mint
from tests.integration.harness import free_port, wait_tcp
from tests.integration.xmpp_interop.servers import (
    AUTH_DOMAIN,
    DOMAIN,
    FOCUS_PASSWORD,
    MUC_DOMAIN,
    start_parley,
)
from tests.integration.xmpp_interop.slix import JID, connected, next_matching
from tests.security.conftest import WsGuest

SECRET = "cluster-test-secret"
APP = "parley-cluster"
AUTH_ENV = {"ENABLE_AUTH": "1", "AUTH_TYPE": "jwt", "JWT_APP_ID": APP, "JWT_APP_SECRET": SECRET}


@pytest.fixture(scope="module")
def redis_url():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="parley-redis-")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_tcp("127.0.0.1", port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def test_two_nodes_share_sessions_and_rooms_and_forget_a_dead_node(redis_url):
    node_a, ep_a = start_parley("xmpp-node-a", REDIS_URL=redis_url, XMPP_NODE_ID="a")
    node_b, ep_b = start_parley("xmpp-node-b", REDIS_URL=redis_url, XMPP_NODE_ID="b")
    try:
        room = JID(f"cluster@{MUC_DOMAIN}")
        async with connected(ep_a.c2s_port, f"focus@{AUTH_DOMAIN}/focus", FOCUS_PASSWORD) as focus:
            await focus.plugin["xep_0045"].join_muc_wait(room, "focus", timeout=5)
            async with connected(ep_b.c2s_port, DOMAIN, anonymous=True) as guest:
                await asyncio.sleep(0.3)  # the bind event reaches node a
                # direct messages both ways across nodes (focus to guest; a guest may not address
                # service accounts, docs/security.md, so the answer comes from a guest on node a)
                focus.send_message(mto=guest.boundjid.full, mbody="a to b", mtype="chat")
                await next_matching(guest.messages, lambda m: m["body"] == "a to b")
                async with connected(ep_a.c2s_port, DOMAIN, anonymous=True) as guest_a:
                    await asyncio.sleep(0.3)
                    guest.send_message(mto=guest_a.boundjid.full, mbody="b to a", mtype="chat")
                    await next_matching(guest_a.messages, lambda m: m["body"] == "b to a")
                # the guest on node b joins the room that lives on node a
                await guest.plugin["xep_0045"].join_muc_wait(room, "guest", timeout=5)
                await next_matching(focus.presences, lambda p: p["from"] == JID(f"{room}/guest"))
                guest.send_message(mto=room, mbody="hello across nodes", mtype="groupchat")
                for client in (focus, guest):
                    await next_matching(client.groupchat, lambda m: m["body"] == "hello across nodes")
                # IQ to the occupant across nodes
                await focus.plugin["xep_0199"].ping(JID(f"{room}/guest"), timeout=5)
                # node b dies: the guest leaves the room on node a within a few seconds
                t0 = time.monotonic()
                node_b.kill()
                gone = await next_matching(
                    focus.presences,
                    lambda p: p["from"] == JID(f"{room}/guest") and p["type"] == "unavailable",
                    wait=15,
                )
                assert gone is not None and time.monotonic() - t0 < 10
    finally:
        node_b.stop()
        node_a.stop()


def ws_guest(http_port: int, room: str, **claims: object) -> WsGuest:
    token = mint(SECRET, APP, room, **claims)  # type: ignore[arg-type]
    return WsGuest(f"ws://127.0.0.1:{http_port}/xmpp-websocket?token={token}").login()


def admin_iq(g: WsGuest, to: str, item: str) -> str:
    ident = f"adm{time.monotonic_ns()}"
    g.send(
        f"<iq xmlns='jabber:client' type='set' id='{ident}' to='{to}'>"
        f"<query xmlns='http://jabber.org/protocol/muc#admin'>{item}</query></iq>"
    )
    return g.recv_until(f"id='{ident}'")


MEMBERS_ONLY = (
    "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
    "<field var='muc#roomconfig_membersonly'><value>1</value></field></x></query>"
)


async def test_tokens_identity_lobby_and_grants_across_nodes(redis_url):
    """The room lives on node a (its creator, the focus, is there); everybody else is on node b,
    except Bo, on node a, whom a moderator on node b makes moderator."""
    node_a, ep_a = start_parley("xmpp-auth-a", REDIS_URL=redis_url, XMPP_NODE_ID="auth-a", **AUTH_ENV)
    node_b, ep_b = start_parley("xmpp-auth-b", REDIS_URL=redis_url, XMPP_NODE_ID="auth-b", **AUTH_ENV)
    run = asyncio.to_thread
    guests: list[WsGuest] = []
    try:
        room = JID(f"guarded@{MUC_DOMAIN}")
        async with connected(ep_a.c2s_port, f"focus@{AUTH_DOMAIN}/focus", FOCUS_PASSWORD) as focus:
            await focus.plugin["xep_0045"].join_muc_wait(room, "focus", timeout=5)
            await asyncio.sleep(0.5)  # the room event reaches node b
            host = await run(ws_guest, ep_b.http_port, "guarded", name="Host", moderator=True)
            mallory = await run(ws_guest, ep_b.http_port, "elsewhere", name="Mallory", moderator=True)
            bo = await run(ws_guest, ep_a.http_port, "guarded", name="Bo", moderator=False)
            knocker = await run(ws_guest, ep_b.http_port, "guarded", name="Knocker")
            guests += [host, mallory, bo, knocker]
            # the room claim is checked on node a for a session on node b
            refused = await run(mallory.join, "guarded", "mallory")
            assert "type='error'" in refused and "not-allowed" in refused and "room claim" in refused, refused
            # the identity stamp from node b's token reaches the focus on node a; a forged one is dropped
            forged = "<identity><user><name>Admin</name><moderator>false</moderator></user></identity>"
            # node b learns of the room through Redis; until then a join there is a creation
            joined = await run(host.join, "guarded", "host", forged)
            for _ in range(50):
                if "Room creation is restricted" not in joined:
                    break
                await asyncio.sleep(0.2)
                joined = await run(host.join, "guarded", "host", forged)
            assert "code='110'" in joined
            seen = await next_matching(focus.presences, lambda p: p["from"] == JID(f"{room}/host"), wait=10)
            identity = str(seen)
            assert "<name>Host</name>" in identity and "<moderator>true</moderator>" in identity, identity
            assert identity.count("<identity") == 1 and "Admin" not in identity, identity
            assert "code='110'" in await run(bo.join, "guarded", "bo")
            # the focus (node a) grants the host (node b) moderator rights
            iq = focus.make_iq_set(ito=room)
            iq.append(ET.fromstring(
                "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                f"<item affiliation='owner' jid='{host.jid.split('/')[0]}'/></query>"
            ))  # fmt: skip
            await iq.send(timeout=5)
            await run(host.recv_until, re.compile(r"from='guarded@muc\.meet\.jitsi/host'[^>]*>.*role='moderator'"))
            # the host, on node b, makes Bo (node a) a moderator and turns the lobby on
            granted = await run(admin_iq, host, str(room), f"<item affiliation='owner' jid='{bo.jid.split('/')[0]}'/>")
            assert "type='result'" in granted, granted
            await run(bo.recv_until, re.compile(r"from='guarded@muc\.meet\.jitsi/bo'[^>]*>.*role='moderator'"))
            ident = "lobby-on"
            await run(host.send, f"<iq xmlns='jabber:client' type='set' id='{ident}' to='{room}'>{MEMBERS_ONLY}</iq>")
            assert "type='result'" in await run(host.recv_until, f"id='{ident}'")
            # a knocker on node b is sent to the lobby, knocks; Bo (node a) watches and sees it
            answer = await run(knocker.join, "guarded", "knocker")
            assert "registration-required" in answer and "guarded@lobby.meet.jitsi" in answer, answer
            await run(bo.send, "<presence xmlns='jabber:client' to='guarded@lobby.meet.jitsi/bo'/>")
            await run(bo.recv_until, "code='110'")
            await run(
                knocker.send,
                "<presence xmlns='jabber:client' to='guarded@lobby.meet.jitsi/knocker'>"
                "<nick xmlns='http://jabber.org/protocol/nick'>Kay</nick></presence>",
            )
            await run(knocker.recv_until, "code='110'")
            knock = await run(bo.recv_until, "guarded@lobby.meet.jitsi/knocker")
            assert "Kay" in knock, knock
            # Bo admits: the knocker on node b is invited and joins the room on node a
            bare = knocker.jid.split("/")[0]
            assert "type='result'" in await run(admin_iq, bo, str(room), f"<item affiliation='member' jid='{bare}'/>")
            invite = await run(knocker.recv_until, "<invite")
            assert "from='guarded@muc.meet.jitsi'" in invite, invite
            assert "code='110'" in await run(knocker.join, "guarded", "knocker")
    finally:
        for g in guests:
            g.close()
        node_b.stop()
        node_a.stop()

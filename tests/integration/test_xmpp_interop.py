"""Interop: slixmpp (a client library that is not ours) against the Parley broker and, as the
reference, Debian's Prosody configured by the test. Where both pass, the behaviour matches."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream import ET

from tests.integration.prosody import prosody_available
from tests.integration.xmpp_interop.servers import (
    AUTH_DOMAIN,
    DOMAIN,
    FOCUS_PASSWORD,
    INTERNAL_MUC_DOMAIN,
    JVB_PASSWORD,
    MUC_DOMAIN,
    prosody_server,
    start_parley,
)
from tests.integration.xmpp_interop.slix import JID, connected, next_matching

FOCUS = f"focus@{AUTH_DOMAIN}/focus"
JVB = f"jvb@{AUTH_DOMAIN}/jvb1"


@pytest.fixture(scope="module", params=["parley", pytest.param("prosody", marks=pytest.mark.peer)])
def server(request):
    if request.param == "parley":
        proc, endpoint = start_parley("xmpp-interop")
        try:
            yield endpoint
        finally:
            proc.stop()
    else:
        if not prosody_available():
            pytest.skip("Debian's prosody is not installed")
        with prosody_server() as (_proc, endpoint):
            yield endpoint


async def test_service_account_and_guest_log_in_and_ping(server):
    async with (
        connected(server.c2s_port, FOCUS, FOCUS_PASSWORD) as focus,
        connected(server.c2s_port, DOMAIN, anonymous=True) as guest,
    ):
        assert focus.boundjid.full == FOCUS
        assert guest.boundjid.domain == DOMAIN and guest.boundjid.user
        rtt = await focus.plugin["xep_0199"].ping(JID(DOMAIN), timeout=5)
        assert rtt >= 0
        info = await guest.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=5)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]


async def test_wrong_password_is_a_sasl_failure(server):
    with pytest.raises(ConnectionError, match="login failed"):
        async with connected(server.c2s_port, FOCUS, "not-the-password", wait=8):
            pass


async def test_chat_between_full_and_bare_jids(server):
    # two service accounts: guests may not address service accounts on Parley (docs/security.md)
    async with (
        connected(server.c2s_port, FOCUS, FOCUS_PASSWORD) as focus,
        connected(server.c2s_port, JVB, JVB_PASSWORD) as guest,
    ):
        guest.send_message(mto=focus.boundjid.full, mbody="to your full JID", mtype="chat")
        msg = await next_matching(focus.messages, lambda m: m["body"] == "to your full JID")
        assert msg["from"] == guest.boundjid
        focus.send_message(mto=guest.boundjid.bare, mbody="to your bare JID", mtype="chat")
        msg = await next_matching(guest.messages, lambda m: m["body"] == "to your bare JID")
        assert msg["from"] == focus.boundjid


async def test_iq_nobody_handles_is_service_unavailable(server):
    async with connected(server.c2s_port, DOMAIN, anonymous=True) as guest:
        iq = guest.Iq(stype="get", sto=DOMAIN)
        iq.append(ET.Element("{urn:example:nothing}query"))
        with pytest.raises(IqError) as err:
            await iq.send(timeout=5)
        assert err.value.condition == "service-unavailable"


async def test_muc_conference_flow(server):
    room = JID(f"interop-{server.kind}@{MUC_DOMAIN}")
    async with (
        connected(server.c2s_port, FOCUS, FOCUS_PASSWORD) as focus,
        connected(server.c2s_port, DOMAIN, anonymous=True) as guest,
    ):
        muc_f = focus.plugin["xep_0045"]
        await muc_f.join_muc_wait(room, "focus", timeout=5)
        form = await muc_f.get_room_config(room)
        form["type"] = "submit"
        await muc_f.set_room_config(room, form)
        pres = guest.make_presence(pto=JID(f"{room}/alice"))
        pres.append(ET.fromstring("<x xmlns='http://jabber.org/protocol/muc'/>"))
        pres.append(ET.fromstring("<nick xmlns='http://jabber.org/protocol/nick'>Alice</nick>"))
        pres.append(ET.fromstring("<stats-id>Abc-1</stats-id>"))
        pres.append(ET.fromstring("<audiomuted xmlns='http://jitsi.org/jitmeet/audio'>true</audiomuted>"))
        pres.send()
        # the focus sees the guest join with its extensions verbatim and its real JID
        seen = await next_matching(focus.presences, lambda p: p["from"] == JID(f"{room}/alice"))
        xml = ET.tostring(seen.xml).decode()
        assert "<stats-id>Abc-1</stats-id>" in xml or ">Abc-1</stats-id>" in xml
        assert "audiomuted" in xml and ">true<" in xml
        assert seen["muc"]["jid"] == guest.boundjid
        own = await next_matching(guest.presences, lambda p: p["from"] == JID(f"{room}/alice"))
        assert "110" in {str(c) for c in own["muc"]["status_codes"]}
        # groupchat reaches everyone, from the sender's occupant JID
        guest.send_message(mto=room, mbody="hello room", mtype="groupchat")
        for client in (focus, guest):
            msg = await next_matching(client.groupchat, lambda m: m["body"] == "hello room")
            assert msg["from"] == JID(f"{room}/alice")
        # private message through the room
        focus.send_message(mto=JID(f"{room}/alice"), mbody="psst", mtype="chat")
        msg = await next_matching(guest.messages, lambda m: m["body"] == "psst")
        assert msg["from"] == JID(f"{room}/focus")
        # an IQ to an occupant JID reaches the occupant's real JID, the answer comes back
        await focus.plugin["xep_0199"].ping(JID(f"{room}/alice"), timeout=5)
        # kick: status 307 to the kicked occupant
        await muc_f.set_role(room, "alice", "none", reason="bye")
        gone = await next_matching(
            guest.presences, lambda p: p["from"] == JID(f"{room}/alice") and p["type"] == "unavailable"
        )
        assert "307" in {str(c) for c in gone["muc"]["status_codes"]}


async def test_brewery_presence_with_stats(server):
    room = JID(f"jvbbrewery@{INTERNAL_MUC_DOMAIN}")
    async with (
        connected(server.c2s_port, FOCUS, FOCUS_PASSWORD) as focus,
        connected(server.c2s_port, JVB, JVB_PASSWORD) as jvb,
    ):
        await focus.plugin["xep_0045"].join_muc_wait(room, "focus", timeout=5)
        stats = ET.fromstring(
            "<stats xmlns='http://jitsi.org/protocol/colibri'><stat name='stress_level' value='0.1'/></stats>"
        )
        await jvb.plugin["xep_0045"].join_muc_wait(
            room, "jvb1", timeout=5, presence_options={"pstatus": None} if False else None
        )
        pres = jvb.make_presence(pto=JID(f"{room}/jvb1"))
        pres.append(stats)
        pres.send()
        seen = await next_matching(
            focus.presences, lambda p: p["from"] == JID(f"{room}/jvb1") and "stress_level" in str(p)
        )
        assert "0.1" in str(seen)


async def test_guest_cannot_create_conference_rooms_or_join_brewery(server):
    if server.kind != "parley":
        pytest.skip("room-creation policy is Jitsi's Prosody modules, not stock Prosody")
    async with connected(server.c2s_port, DOMAIN, anonymous=True) as guest:
        with pytest.raises(PresenceError) as err:
            await guest.plugin["xep_0045"].join_muc_wait(
                JID(f"nobody-made-this@{MUC_DOMAIN}"), "x", timeout=5
            )
        assert err.value.condition == "not-allowed"
        with pytest.raises(PresenceError) as err:
            await guest.plugin["xep_0045"].join_muc_wait(
                JID(f"jvbbrewery@{INTERNAL_MUC_DOMAIN}"), "x", timeout=5
            )
        # guests cannot address the internal MUC host at all
        assert err.value.condition == "service-unavailable"


async def test_focus_client_proxy(server):
    if server.kind != "parley":
        pytest.skip("mod_client_proxy is a prosody-modules community module")
    async with (
        connected(server.c2s_port, FOCUS, FOCUS_PASSWORD) as focus,
        connected(server.c2s_port, DOMAIN, anonymous=True) as guest,
    ):
        got: asyncio.Queue = asyncio.Queue()

        def on_conference(iq):  # the focus answers conference requests like Jicofo
            got.put_nowait(iq)
            reply = iq.reply()
            reply.append(ET.fromstring("<conference xmlns='http://jitsi.org/protocol/focus' ready='true'/>"))
            reply.send()

        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        focus.register_handler(
            Callback(
                "conference",
                MatchXPath("{jabber:client}iq/{http://jitsi.org/protocol/focus}conference"),
                on_conference,
            )
        )
        iq = guest.Iq(stype="set", sto=f"focus.{DOMAIN}")
        iq.append(
            ET.fromstring(f"<conference xmlns='http://jitsi.org/protocol/focus' room='r@{MUC_DOMAIN}'/>")
        )
        result = await iq.send(timeout=5)
        assert result["from"] == JID(f"focus.{DOMAIN}")
        assert "ready='true'" in str(result) or 'ready="true"' in str(result)
        request = await asyncio.wait_for(got.get(), 5)
        assert request["from"] == JID(f"focus.{DOMAIN}/{guest.boundjid.full}")


NODE_DIR = Path(__file__).parent / "xmpp_interop" / "node"


def node_client_ready() -> str | None:
    """Why the node client cannot run, or None when it can (installs its packages once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed"
    try:
        subprocess.run([str(NODE_DIR / "install.sh")], check=True, capture_output=True, timeout=180)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"npm install of @xmpp/client failed: {exc}"
    return None


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
async def test_node_xmpp_client_joins_and_chats(server, transport):
    reason = node_client_ready()
    if reason:
        pytest.skip(reason)
    room = JID(f"node-{transport}-{server.kind}@{MUC_DOMAIN}")
    nick = f"node-{transport}"
    service = f"xmpp://127.0.0.1:{server.c2s_port}" if transport == "tcp" else server.ws_url
    async with connected(server.c2s_port, FOCUS, FOCUS_PASSWORD) as focus:
        muc = focus.plugin["xep_0045"]
        await muc.join_muc_wait(room, "focus", timeout=5)

        async def answer() -> None:
            msg = await next_matching(focus.groupchat, lambda m: m["body"] == f"hello from {nick}", wait=20)
            assert msg["from"] == JID(f"{room}/{nick}")
            focus.send_message(mto=room, mbody=f"reply to {nick}", mtype="groupchat")

        answering = asyncio.ensure_future(answer())
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / "interop.mjs"),
            service,
            DOMAIN,
            str(room),
            nick,
            cwd=NODE_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        await asyncio.wait_for(answering, 5)
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert proc.returncode == 0, f"{result}\n{err.decode()[-3000:]}"
        assert result["joined"] and "110" in result["selfCodes"]
        assert result["jid"].split("@")[1].startswith(DOMAIN)
        assert result["reply"] == {"from": f"{room}/focus", "body": f"reply to {nick}"}

"""Two broker processes serve one domain through Redis: clients on different nodes chat and share
a MUC room; when a node dies its users leave the room on the other node within seconds."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.integration.harness import free_port, wait_tcp
from tests.integration.xmpp_interop.servers import (
    AUTH_DOMAIN,
    DOMAIN,
    FOCUS_PASSWORD,
    MUC_DOMAIN,
    start_parley,
)
from tests.integration.xmpp_interop.slix import JID, connected, next_matching


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

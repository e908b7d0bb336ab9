"""``./parley stats`` and ``./parley console`` against a running stack (the launcher, as
``./parley up`` runs it) with a two-person meeting whose media flows through the bridge."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pexpect
import pytest

from tests.integration.browser import LauncherStack
from tests.integration.harness import REPO
from tests.integration.participant import JingleParticipant, wait_until

DOMAIN = "meet.jitsi"
ROOM = f"opsroom@muc.{DOMAIN}"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LauncherStack]:
    stack = LauncherStack(tmp_path_factory.mktemp("ops-stack") / "run", bridges=1).start(timeout=240)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def meeting(launcher: LauncherStack) -> AsyncIterator[list[JingleParticipant]]:
    offset = int(launcher.front.rsplit(":", 1)[1]) - 8000
    people = []
    for nick, rgb in (("ada", (200, 30, 30)), ("bob", (30, 200, 30))):
        p = JingleParticipant(
            nick,
            port=5222 + offset,
            domain=DOMAIN,
            muc_domain=f"muc.{DOMAIN}",
            focus_jid=f"focus.{DOMAIN}",
            rgb=rgb,
        )
        await p.start(within=60)
        await p.join(ROOM, within=60)
        people.append(p)
    flowing = await wait_until(
        lambda: min(people[0].frames_from("bob")) > 5 and min(people[1].frames_from("ada")) > 5, 90
    )
    assert flowing, launcher.log()[-5000:]
    yield people
    await asyncio.gather(*(p.stop() for p in people), return_exceptions=True)


def ops(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.ops", "--run-dir", str(run_dir), *args],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


async def test_stats_and_console(launcher: LauncherStack, meeting: list[JingleParticipant]) -> None:
    """One meeting (its setup is slow), looked at with ``parley stats`` and then the console."""
    await check_stats(launcher)
    await check_console(launcher)


async def check_stats(launcher: LauncherStack) -> None:
    out = await asyncio.to_thread(ops, launcher.run_dir, "stats", "--json", "--interval", "2")
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    kinds = {s["kind"]: s for s in snap["services"]}
    assert {"xmpp", "bridge", "focus", "recorder", "web"} <= set(kinds)
    assert all(s["up"] for s in snap["services"]), snap["services"]
    (conference,) = [c for c in snap["conferences"] if c["room"] == ROOM]
    assert len(conference["participants"]) == 2 and conference["bridge"] == "jvb1"
    mine = [e for e in snap["endpoints"] if e["room"] == ROOM]
    assert len(mine) == 2
    for e in mine:  # each sends a tone and a colour, and receives the other's
        assert e["audio_ssrcs"] and e["video_ssrcs"] and e["kbps_in"] > 0 and e["kbps_out"] > 0, e
    assert [b["service"] for b in snap["bridges"]] == ["jvb1"] and snap["bridges"][0]["conferences"] >= 1
    (room,) = [r for r in snap["xmpp"]["rooms"] if r["jid"] == ROOM]
    assert {"ada", "bob"} <= {o["nick"] for o in room["occupants"]}
    assert snap["xmpp"]["bound"] >= 4  # the two participants, the focus, the bridge, the recorder
    assert {w["service"] for w in snap["websockets"]} == {"xmpp", "jvb1", "sip"}  # every WebSocket server
    text = await asyncio.to_thread(ops, launcher.run_dir, "stats", "--interval", "0")
    assert "== endpoints" in text.stdout and "opsroom" in text.stdout


async def check_console(launcher: LauncherStack) -> None:
    def session() -> str:
        shell = pexpect.spawn(
            sys.executable, ["-m", "services.ops", "--run-dir", str(launcher.run_dir), "console"],
            cwd=str(REPO), encoding="utf-8", timeout=90, dimensions=(50, 250),
        )  # fmt: skip
        seen = []
        try:
            shell.expect("parley> ")
            shell.sendline("help")
            shell.expect("parley> ")
            seen.append(shell.before)
            shell.send("conf\t")  # readline completes the command
            shell.expect("conferences")
            shell.sendline("")
            shell.expect("parley> ")
            seen.append(shell.before)
            shell.sendline("endpoints")
            shell.expect("parley> ")
            seen.append(shell.before)
            shell.sendline("rooms")
            shell.expect("parley> ")
            seen.append(shell.before)
            shell.send("ws du\t")
            shell.expect("dump")
            shell.sendline(" used_desc xmpp")
            shell.expect("parley> ")
            seen.append(shell.before)
            shell.sendline("ws ping 999999 @jvb1")
            shell.expect("parley> ")
            seen.append(shell.before)
            shell.sendline("bogus")
            shell.expect("parley> ")
            seen.append(shell.before)
            shell.sendline("quit")
            shell.expect(pexpect.EOF)
        finally:
            shell.close(force=True)
        return "\n".join(seen)

    out = await asyncio.to_thread(session)
    for command in (
        "conferences",
        "endpoints",
        "bridges",
        "sessions",
        "rooms",
        "recorders",
        "sip",
        "ws",
        "stats",
    ):
        assert command in out.split("== conferences")[0], f"help does not list {command}"
    assert "== conferences" in out and ROOM in out and "jvb1" in out
    assert "kbps in" in out and "ada" in out and "bob" in out
    assert "wscounter:" in out and "xmpp (xmpp, new connections enabled)" in out
    assert "error: jvb1: 404 no WebSocket connection 999999" in out
    assert "unknown command 'bogus'" in out

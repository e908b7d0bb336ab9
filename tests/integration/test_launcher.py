"""The whole stack from the launcher, as a user starts it: every service healthy through nginx."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import REPO, free_launcher_offset

SERVICES = ["xmpp", "jvb1", "jvb2", "focus", "recorder", "sip", "web", "nginx"]


def _offset() -> int:
    """A port offset whose whole plan is free (tests must not collide with a running stack)."""
    return free_launcher_offset()


def _pids_under(run_dir: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True).stdout
    return out.split()


@pytest.fixture
def stack(tmp_path: Path):
    offset = _offset()
    run_dir = tmp_path / "run"
    log = (tmp_path / "launcher.log").open("w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.launcher",
            "up",
            "--port-offset",
            str(offset),
            "--run-dir",
            str(run_dir),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    front = f"http://127.0.0.1:{8000 + offset}"
    deadline = time.monotonic() + 120
    while "the stack is up" not in Path(log.name).read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("launcher did not bring the stack up:\n" + Path(log.name).read_text()[-6000:])
        time.sleep(0.25)
    yield proc, front, run_dir, Path(log.name)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.peer
def test_stack_is_healthy_through_nginx_and_stops_cleanly(stack) -> None:
    proc, front, run_dir, log = stack
    text = log.read_text()
    assert f"open http://localhost:{front.rsplit(':', 1)[1]}/" in text
    for name in SERVICES:
        assert re.search(rf"^{name} +\| healthy", text, re.M), f"{name} never reported healthy"
    paths = [
        "/nginx-health",
        "/health/xmpp",
        "/health/focus",
        "/health/web",
        "/health/bridge/jvb1",
        "/health/bridge/jvb2",
    ]
    for path in paths:
        response = httpx.get(front + path, timeout=5)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:200]}"
    # the web client is served through the front door; the bridges' Colibri REST is not
    assert httpx.get(front + "/", timeout=5).status_code == 200
    assert httpx.get(front + "/colibri/conferences", timeout=5).status_code == 404
    assert httpx.get(front + "/colibri/stats", timeout=5).status_code == 404

    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(30) == 0
    assert "stopped" in log.read_text().splitlines()[-1]
    assert _pids_under(run_dir) == [], "processes left behind after Ctrl-C"


@pytest.mark.peer
def test_a_taken_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.launcher",
                "up",
                "--http-port",
                str(port),
                "--run-dir",
                str(tmp_path),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"TCP port {port} (needed by nginx) is already in use" in result.stderr
    assert not (tmp_path / "nginx" / "nginx.conf").exists()  # nothing was started


# --- supervision: kill -9 of each service under ./parley up ----------------------------------------


def _children(launcher_pid: int) -> dict[str, int]:
    """service name -> pid of the launcher's children (bridges by their server id)."""
    out: dict[str, int] = {}
    pids = subprocess.run(["pgrep", "-P", str(launcher_pid)], capture_output=True, text=True).stdout.split()
    for pid in map(int, pids):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"services.bridge" in argv:
            server_id = next((e.split(b"=", 1)[1] for e in environ if e.startswith(b"JVB_WS_SERVER_ID=")), b"")
            out[server_id.decode()] = pid
        elif argv and b"nginx" in argv[0]:
            out["nginx"] = pid
        else:
            for name in ("xmpp", "focus", "web", "recorder", "sip"):
                if f"services.{name}".encode() in argv:
                    out[name] = pid
    return out


def _wait_log(log: Path, name: str, text: str, after: int, timeout: float = 90) -> None:
    """Wait for the launcher's line ``<name> | <text>…`` (names are padded to the longest one)."""
    line = re.compile(rf"^{re.escape(name)} +\| {re.escape(text)}", re.M)
    deadline = time.monotonic() + timeout
    while not line.search(log.read_text()[after:]):
        if time.monotonic() > deadline:
            pytest.fail(f"no {name!r} line {text!r} in the launcher's log:\n" + log.read_text()[-5000:])
        time.sleep(0.25)


@pytest.mark.peer
def test_every_service_killed_with_sigkill_is_restarted_and_the_stack_keeps_running(stack) -> None:
    proc, front, _run_dir, log = stack
    for name in SERVICES:
        pid = _children(proc.pid)[name]
        mark = len(log.read_text())
        os.kill(pid, signal.SIGKILL)
        _wait_log(log, name, "exited with status -9", mark)
        _wait_log(log, name, "restarted (restart 1)", mark)
        assert proc.poll() is None, "the launcher stopped when a service died"
        assert _children(proc.pid)[name] != pid
        if name == "recorder":  # private: its own health check, which the launcher ran and logged
            _wait_log(log, name, "healthy", mark)
            continue
        health = "/nginx-health" if name == "nginx" else f"/health/{name.replace('jvb', 'bridge/jvb')}"
        response = httpx.get(front + health, timeout=5)
        assert response.status_code == 200, f"{name} after its restart: {response.status_code}"
    assert "stopping the stack" not in log.read_text()
    proc.send_signal(signal.SIGTERM)  # only a signal stops it
    assert proc.wait(30) == 0


@pytest.mark.peer
@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_a_meeting_recovers_from_kill_9_of_its_bridge_the_focus_and_the_broker(tmp_path: Path) -> None:
    """Two people in a meeting through ./parley up's front door; the bridge carrying it, then the
    focus, then the broker are killed with SIGKILL; the launcher restarts each, and the pages play
    each other's video again without a reload (and a late joiner still gets in after all that)."""
    import uuid

    from tests.integration.browser import DESKTOP, LauncherStack, browsers, console_log, wait_with_logs

    stack = LauncherStack(tmp_path / "run", bridges=2).start()
    launcher = stack.proc
    assert launcher is not None
    log = stack.log_path
    room = f"sup-{uuid.uuid4().hex[:8]}"
    logs: list[list[str]] = []
    focus = f"http://127.0.0.1:{int(stack.front.rsplit(':', 1)[1]) - 8000 + 8888}"

    def frames(page) -> dict[str, int]:  # type: ignore[no-untyped-def]
        return {ep: s["framesDecoded"] for ep, s in page.evaluate("window.parley.videoStats()").items()}

    def playing(page, remotes: int = 1) -> bool:  # type: ignore[no-untyped-def]
        before = frames(page)
        time.sleep(0.6)
        after = frames(page)
        return len(after) >= remotes and all(after[ep] > before.get(ep, 0) for ep in after)

    def bridge_of_room() -> str:
        confs = httpx.get(f"{focus}/conferences", timeout=3).json()
        return str(next(c for c in confs if str(c["room"]).startswith(room))["bridge"])

    try:
        with browsers() as pool:
            pages = []
            for name in ("Ada", "Bob"):
                page = pool.open(DESKTOP)
                logs.append(console_log(page))
                page.goto(f"{stack.front}/{room}?name={name}")
                pages.append(page)
            for page in pages:
                wait_with_logs("video at first", lambda p=page: playing(p), logs, timeout=60)
            for victim in ("bridge", "focus", "xmpp"):
                name = bridge_of_room() if victim == "bridge" else victim
                mark = len(log.read_text())
                os.kill(_children(launcher.pid)[name], signal.SIGKILL)
                _wait_log(log, name, "restarted", mark)
                for page in pages:
                    wait_with_logs(
                        f"video again after kill -9 of {name}", lambda p=page: playing(p), logs, timeout=90
                    )
                    assert page.is_visible("#meeting") and not page.is_visible("#left")
            late = pool.open(DESKTOP)
            logs.append(console_log(late))
            late.goto(f"{stack.front}/{room}?name=Late")
            wait_with_logs("the late joiner's video", lambda: playing(late, 2), logs, timeout=90)
            for page in pages:
                wait_with_logs("everyone's video", lambda p=page: playing(p, 2), logs, timeout=90)
        assert launcher.poll() is None
    finally:
        stack.stop()

"""The stack as docker compose runs it, checked through the nginx container like a user would.

One stack for the whole module (``compose_stack``, started from README.md's commands); the tests
run in file order and build on each other: images and health, HTTPS with the generated
certificate, a three-party meeting in real Chromium, ``--scale bridge=3``, the kill of the bridge
carrying a meeting, a restart of the broker container, and ``down`` leaving nothing behind.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.compose.conftest import SERVICES, Stack, readme_blocks
from tests.integration.browser import BROWSER_MARKS, CHROMIUM, CHROMIUM_FLAGS, DESKTOP, Browsers, browsers

pytestmark = [pytest.mark.compose, *BROWSER_MARKS, pytest.mark.timeout(2400)]

Page = Any


@pytest.fixture(scope="module")
def stack(compose_stack: Stack) -> Stack:
    return compose_stack


@pytest.fixture(scope="module")
def certificate(stack: Stack) -> Iterator[Path]:
    """The certificate nginx generated into its volume, as a file on the host."""
    nginx = stack.project.container_names("nginx")[0]
    pem = stack.project.podman("exec", nginx, "cat", "/var/lib/parley-tls/cert.pem")
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(pem)
    yield Path(f.name)
    Path(f.name).unlink(missing_ok=True)


def spki_hash(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def open_page(pool: Browsers, cert_file: Path) -> Page:
    """Chromium trusting exactly the stack's generated certificate (by its public key)."""
    profile = Path(tempfile.mkdtemp(prefix="parley-chromium-"))
    pool.profiles.append(profile)
    context = pool.playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={spki_hash(cert_file)}"],
        viewport=DESKTOP,
        ignore_default_args=["--mute-audio"],
    )
    pool.contexts.append(context)
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(60_000)
    logs: list[str] = []
    page.on("console", lambda msg: logs.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: logs.append(f"pageerror: {exc}"))
    page.parley_logs = logs  # type: ignore[attr-defined]
    return page


def frames(page: Page) -> dict[str, int]:
    stats = page.evaluate("window.parley ? window.parley.videoStats() : {}")
    return {ep: int(s["framesDecoded"]) for ep, s in stats.items()}


def playing(page: Page, remotes: int) -> bool:
    """``remotes`` remote videos, every one decoding new frames."""
    before = frames(page)
    time.sleep(0.7)
    after = frames(page)
    return len(after) >= remotes and all(after[ep] > before.get(ep, 0) for ep in after)


def wait_until(
    what: str, cond: Callable[[], bool], stack: Stack, pages: list[Page], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if cond():
                return
        if time.monotonic() > deadline:
            logs = "\n--\n".join("\n".join(p.parley_logs[-25:]) for p in pages)
            raise AssertionError(f"timed out waiting for {what}\n{logs}\n{stack.project.logs(40)}")
        time.sleep(0.5)


def conferences(stack: Stack) -> list[dict[str, Any]]:
    return list(httpx.get(f"{stack.focus}/conferences", timeout=5).json())


def conference_of(stack: Stack, room: str) -> dict[str, Any]:
    return next(c for c in conferences(stack) if str(c["room"]).startswith(room))


def operational_bridges(stack: Stack) -> list[str]:
    listed = httpx.get(f"{stack.focus}/bridges", timeout=5).json()
    return sorted(str(b["id"]) for b in listed if b.get("state", "operational") == "operational")


def join(pool: Browsers, stack: Stack, cert: Path, room: str, names: list[str]) -> list[Page]:
    pages = []
    for name in names:
        page = open_page(pool, cert)
        page.goto(f"{stack.front}/{room}?name={name}")
        pages.append(page)
    return pages


# --- images and health -----------------------------------------------------------------------------


def test_every_image_starts_from_debian_bookworm_slim(stack: Stack) -> None:
    base = json.loads(stack.project.podman("image", "inspect", "debian:bookworm-slim"))[0]["RootFS"][
        "Layers"
    ][0]
    for service in SERVICES:
        container = stack.project.container_names(service)[0]
        image = json.loads(stack.project.podman("inspect", "--format", "{{json .Image}}", container))
        layers = json.loads(stack.project.podman("image", "inspect", image))[0]["RootFS"]["Layers"]
        assert layers[0] == base, f"{service} does not start from debian:bookworm-slim"
    version = stack.project.podman("exec", stack.project.container_names("xmpp")[0], "python", "--version")
    assert version.startswith("Python 3.11"), version
    exe = stack.project.podman(
        "exec", stack.project.container_names("xmpp")[0], "readlink", "-f", "/opt/parley/bin/python"
    )
    assert exe.strip().startswith("/usr/bin/python3.11"), exe  # Debian's Python, in a venv


def test_every_container_is_healthy_by_its_own_healthcheck(stack: Stack) -> None:
    for service in SERVICES:
        for name in stack.project.container_names(service):
            # a loaded machine may stretch one probe past its timeout: three tries
            ok = any(stack.project.run_healthcheck(name) or time.sleep(2) for _ in range(3))
            assert ok, f"{name} unhealthy:\n{stack.project.logs(30)}"
            assert stack.project.health(name) == "healthy", name
    for path in ("/health/xmpp", "/health/focus", "/health/web"):
        assert httpx.get(stack.front + path, verify=False, timeout=5).status_code == 200, path


# --- HTTPS -------------------------------------------------------------------------------------------


def test_https_with_the_generated_certificate(stack: Stack, certificate: Path) -> None:
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    context = ssl.create_default_context(cafile=str(certificate))
    page = httpx.get(stack.front + "/", verify=context, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    config = httpx.get(stack.front + "/config.js", verify=context, timeout=10)
    assert config.status_code == 200
    assert f"localhost:{stack.env['HTTPS_PORT']}" in config.text  # PUBLIC_URL reaches the client
    # ENABLE_HTTP_REDIRECT: plain HTTP goes to HTTPS
    plain = httpx.get(stack.plain_front + "/some-room", timeout=10)
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://127.0.0.1:{stack.env['HTTPS_PORT']}/some-room"
    # the bridges' private REST stays private over HTTPS too
    assert httpx.get(stack.front + "/colibri/stats", verify=context, timeout=10).status_code == 404


# --- a meeting through the nginx container ---------------------------------------------------------


def test_three_chromium_participants_decode_each_other(stack: Stack, certificate: Path) -> None:
    room = f"cmp-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        pages = join(pool, stack, certificate, room, ["Ada", "Bob", "Cy"])
        for page in pages:
            wait_until("three-way video", lambda p=page: playing(p, 2), stack, pages, timeout=120)
        for page in pages:  # the bridge channel: wss:// through nginx to the bridge's Colibri WebSocket
            wait_until(
                "the bridge channel",
                lambda p=page: p.evaluate("window.parley.channel") == "open",
                stack,
                pages,
            )
        assert conference_of(stack, room)["bridge"] in operational_bridges(stack)


# --- scaling -----------------------------------------------------------------------------------------


def test_scale_to_three_bridges_and_conferences_spread(stack: Stack, certificate: Path) -> None:
    scale = next(line for block in readme_blocks() for line in block if "--scale bridge=3" in line)
    stack.run_readme_line(scale)
    stack.project.wait_healthy(["bridge"], count={"bridge": 3})
    bridges = stack.bridge_ids()
    assert len(bridges) == 3, bridges
    deadline = time.monotonic() + 60
    while sorted(bridges) != operational_bridges(stack):
        assert time.monotonic() < deadline, (sorted(bridges), operational_bridges(stack))
        time.sleep(1)
    # earlier meetings have ended: every bridge is empty, so three rooms land on three bridges
    deadline = time.monotonic() + 60
    while conferences(stack) and time.monotonic() < deadline:
        time.sleep(1)
    empty = not conferences(stack)
    rooms = [f"spread-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    with browsers() as pool:
        pages = []
        for room in rooms:
            pages += join(pool, stack, certificate, room, [f"solo{len(pages)}"])
            wait_until(f"a conference for {room}", lambda r=room: bool(conference_of(stack, r)), stack, pages)
        used = {conference_of(stack, room)["bridge"] for room in rooms}
    assert used <= set(bridges)
    assert len(used) == 3 if empty else len(used) >= 2, used


def test_killing_the_bridge_carrying_a_meeting_moves_it(stack: Stack, certificate: Path) -> None:
    room = f"kill-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        pages = join(pool, stack, certificate, room, ["Ada", "Bob", "Cy"])
        for page in pages:
            wait_until("video before the kill", lambda p=page: playing(p, 2), stack, pages, timeout=120)
        first = conference_of(stack, room)["bridge"]
        container = stack.bridge_ids()[first]
        stack.project.podman("kill", "--signal", "KILL", container)  # what `docker kill` does
        killed = time.monotonic()
        for page in pages:
            # a correctness bound, generous for a loaded machine: the focus notices the bridge's
            # departure at once and every page renegotiates within seconds when all is well
            wait_until(
                "video again from another bridge within 60 s of the kill",
                lambda p=page: conference_of(stack, room)["bridge"] != first and playing(p, 2),
                stack,
                pages,
                timeout=max(1.0, killed + 60 - time.monotonic()),
            )
        assert conference_of(stack, room)["moves"] >= 1


# --- the broker restarts ---------------------------------------------------------------------------


def test_participants_reconnect_after_the_broker_container_restarts(stack: Stack, certificate: Path) -> None:
    room = f"brk-{uuid.uuid4().hex[:8]}"
    with browsers() as pool:
        pages = join(pool, stack, certificate, room, ["Ada", "Bob"])
        for page in pages:
            wait_until("video before the restart", lambda p=page: playing(p, 1), stack, pages, timeout=120)
        before = {str(p.evaluate("window.parley.endpointId")) for p in pages}
        stack.project.compose("restart", "xmpp", timeout=180)
        stack.project.wait_healthy(["xmpp"])
        for page in pages:
            wait_until(
                "the page to join again, with video",
                lambda p=page: p.evaluate("window.parley.phase") == "joined" and playing(p, 1),
                stack,
                pages,
                timeout=120,
            )
        after = {str(p.evaluate("window.parley.endpointId")) for p in pages}
        assert after.isdisjoint(before)  # they reconnected as new occupants, without a reload
        assert all(p.evaluate("window.parley.reconnects") >= 1 for p in pages)
        # the meeting still works for someone new: the focus and the bridges are back on the broker
        late = join(pool, stack, certificate, room, ["Late"])[0]
        pages.append(late)
        wait_until("the late joiner's video", lambda: playing(late, 2), stack, pages, timeout=120)


# --- a crash inside a container -------------------------------------------------------------------


def test_a_crashed_service_is_restarted_by_its_restart_policy(stack: Stack) -> None:
    """The web service's process dies (SIGKILL from outside, as the kernel's OOM killer would):
    ``restart: unless-stopped`` brings that one container back, the others keep running."""
    web = stack.project.container_names("web")[0]
    others = {n: stack.project.podman("inspect", "--format", "{{.State.Pid}}", n).strip()
              for n in stack.project.container_names() if n != web}  # fmt: skip
    pid = int(stack.project.podman("inspect", "--format", "{{.State.Pid}}", web).strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        state = json.loads(stack.project.podman("inspect", "--format", "{{json .State}}", web))
        if state.get("Running") and state.get("Pid") not in (0, pid) and stack.project.run_healthcheck(web):
            break
        assert time.monotonic() < deadline, f"web was not restarted: {state}\n{stack.project.logs(20)}"
        time.sleep(1)
    assert httpx.get(stack.front + "/health/web", verify=False, timeout=10).status_code == 200
    for name, before in others.items():
        assert stack.project.podman("inspect", "--format", "{{.State.Pid}}", name).strip() == before, name


# --- a certificate of the operator's ------------------------------------------------------------


def test_a_provided_certificate_replaces_the_generated_one(stack: Stack, certificate: Path) -> None:
    from services.launcher.tls import self_signed

    pair = self_signed("localhost")
    (stack.dir / "fullchain.pem").write_bytes(pair.cert_pem)
    (stack.dir / "privkey.pem").write_bytes(pair.key_pem)
    block = next(b for b in readme_blocks() if any("config/tls/cert.pem" in line for line in b))
    for line in block:
        stack.run_readme_line(line, timeout=300)
    stack.project.wait_healthy(["nginx"])
    provided = stack.dir / "fullchain.pem"
    context = ssl.create_default_context(cafile=str(provided))
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(stack.front + "/", verify=context, timeout=10)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "nginx does not serve the provided certificate"
            time.sleep(1)
    assert response.status_code == 200
    with pytest.raises(httpx.HTTPError):  # and no longer the generated one
        httpx.get(stack.front + "/", verify=ssl.create_default_context(cafile=str(certificate)), timeout=10)


# --- down ------------------------------------------------------------------------------------------


def test_down_leaves_no_container_or_process(stack: Stack) -> None:
    pids = []
    for name in stack.project.container_names():
        pid = stack.project.podman("inspect", "--format", "{{.State.Pid}}", name).strip()
        if pid.isdigit() and int(pid) > 0:
            pids.append(int(pid))
    assert pids
    stack.project.down()
    assert stack.project.leftovers() == []
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, [p for p in pids if Path(f"/proc/{p}").exists()]
        time.sleep(0.5)

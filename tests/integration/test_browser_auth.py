"""Authentication in real Chromium through the launcher's stack. AUTH_TYPE=jwt: the page takes its
token from `?jwt=` and passes it on as `?token=`; a token for another room or an expired one is
refused with its reason on the page; a token's moderator claim makes a moderator.
AUTH_TYPE=internal with ENABLE_GUESTS=1 (a second stack): the page asks for a login, a wrong
password is refused with the broker's reason and asked again, the right one joins as moderator;
a guest waits for the host and joins once the host is in."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.xmpp.tokens import mint
from tests.integration.browser import BROWSER_MARKS, DESKTOP, LauncherStack, browsers, console_log

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [*BROWSER_MARKS, pytest.mark.peer, pytest.mark.timeout(900)]

SECRET = "browser-test-secret"
APP = "parley-browser-tests"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LauncherStack]:
    env = {"ENABLE_AUTH": "1", "AUTH_TYPE": "jwt", "JWT_APP_ID": APP, "JWT_APP_SECRET": SECRET}
    s = LauncherStack(tmp_path_factory.mktemp("auth") / "run", bridges=1, env=env).start(timeout=400)
    try:
        yield s
    finally:
        s.stop()


def test_jwt_from_the_page_url(stack: LauncherStack) -> None:
    room = f"jwt-{uuid.uuid4().hex[:6]}"
    with browsers() as pool:
        # no token: the broker's reason is on the page
        page = pool.open(DESKTOP)
        log = console_log(page)
        page.goto(f"{stack.front}/{room}?name=Nobody")
        page.wait_for_function("() => window.parley.errors.length > 0", timeout=120_000)
        assert "a token is required" in page.inner_text("#banner"), log[-20:]
        # an expired token
        expired = mint(SECRET, APP, room, now=time.time() - 7200, ttl=60)
        page.goto(f"{stack.front}/{room}?name=Late&jwt={expired}")
        page.wait_for_function("() => window.parley.errors.length > 0", timeout=120_000)
        assert "token expired" in page.inner_text("#banner")
        # a token for another room: refused at the room
        other = mint(SECRET, APP, "elsewhere", name="Mallory")
        page.goto(f"{stack.front}/{room}?name=Mallory&jwt={other}")
        page.wait_for_function("() => window.parley.errors.length > 0", timeout=120_000)
        assert "room claim" in page.inner_text("#banner")
        # a valid token with the moderator claim: in, and moderator
        good = mint(SECRET, APP, room, name="Ada", moderator=True)
        host = pool.open(DESKTOP)
        host_log = console_log(host)
        host.goto(f"{stack.front}/{room}?name=Ada&jwt={good}")
        host.wait_for_selector("#meeting:not([hidden])", timeout=120_000)
        host.wait_for_function("() => window.parley.moderation?.role === 'moderator'", timeout=90_000)
        # a token without the claim (everyone with a token moderates, as Jitsi), and one saying no
        plain = mint(SECRET, APP, "*", name="Bo", moderator=False)
        guest = pool.open(DESKTOP)
        guest.goto(f"{stack.front}/{room}?name=Bo&jwt={plain}")
        guest.wait_for_selector("#meeting:not([hidden])", timeout=120_000)
        time.sleep(2.0)
        assert guest.evaluate("window.parley.moderation.role") == "participant", host_log[-20:]


PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def internal_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LauncherStack]:
    base = tmp_path_factory.mktemp("internal")
    users = base / "users.json"
    # what `./parley user add ada` runs, with the password on stdin
    subprocess.run(
        [sys.executable, "-m", "services.xmpp.users", "--file", str(users), "add", "ada", "--password-stdin"],
        input=f"{PASSWORD}\n", text=True, check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    env = {"ENABLE_AUTH": "1", "AUTH_TYPE": "internal", "ENABLE_GUESTS": "1", "XMPP_USERS_FILE": str(users)}
    s = LauncherStack(base / "run", bridges=1, env=env).start(timeout=400)
    try:
        yield s
    finally:
        s.stop()


def log_in(page, user: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#login-dialog", timeout=120_000)
    page.fill("#login-dialog input[name='username']", user)
    page.fill("#login-dialog input[name='password']", password)
    page.click("#login-dialog button[value='login']")


def test_internal_accounts_and_a_guest_waiting_for_the_host(internal_stack: LauncherStack) -> None:
    stack = internal_stack
    room = f"internal-{uuid.uuid4().hex[:6]}"
    with browsers() as pool:
        # a guest comes first: it waits for the host
        guest = pool.open(DESKTOP)
        guest_log = console_log(guest)
        guest.goto(f"{stack.front}/{room}?name=Gus")
        guest.wait_for_selector("#login-dialog", timeout=120_000)
        assert guest.is_visible("#login-dialog button[value='guest']")
        guest.click("#login-dialog button[value='guest']")
        guest.wait_for_function("() => window.parley.phase === 'waiting-for-host'", timeout=120_000)
        assert "Waiting for the host" in guest.inner_text("#status-line")
        time.sleep(4.0)  # it keeps waiting (a retry every 3 s), not in
        assert guest.evaluate("window.parley.state") != "meeting", guest_log[-20:]
        # the host: a wrong password is refused with the broker's reason, then asked again
        host = pool.open(DESKTOP)
        host_log = console_log(host)
        host.goto(f"{stack.front}/{room}?name=Ada")
        log_in(host, "ada", "not the password")
        host.wait_for_function("() => window.parley.errors.length > 0", timeout=120_000)
        banner = host.inner_text("#banner")
        assert "refused the login" in banner, (banner, host_log[-20:])
        assert host.evaluate("window.parley.state") != "meeting"
        host.click("#join-button")
        host.wait_for_selector("#login-dialog", timeout=60_000)
        assert "refused" in host.inner_text("#login-dialog .dialog-text") or "not" in host.inner_text(
            "#login-dialog .dialog-text"
        )
        log_in(host, "Ada", PASSWORD)  # the user name is not case-sensitive
        host.wait_for_selector("#meeting:not([hidden])", timeout=120_000)
        host.wait_for_function("() => window.parley.moderation?.role === 'moderator'", timeout=90_000)
        # the host is in: the guest's next retry joins, as a participant
        guest.wait_for_selector("#meeting:not([hidden])", timeout=120_000)
        guest.wait_for_function("() => window.parley.moderation?.role === 'participant'", timeout=90_000)
        host.wait_for_function(
            "() => window.parley.participants().some((p) => p.nick === 'Gus')", timeout=90_000
        )
        time.sleep(2.0)
        assert guest.evaluate("window.parley.moderation.role") == "participant", guest_log[-20:]

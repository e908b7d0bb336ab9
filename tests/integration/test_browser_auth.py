"""Authentication in real Chromium through the launcher's stack (AUTH_TYPE=jwt): the page takes its
token from `?jwt=` and passes it on as `?token=`; a token for another room or an expired one is
refused with its reason on the page; a token's moderator claim makes a moderator."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from services.xmpp.tokens import mint
from tests.integration.browser import BROWSER_MARKS, DESKTOP, LauncherStack, browsers, console_log

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

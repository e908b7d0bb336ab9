"""Jitsi's clients and Parley's own against the stack as the launcher starts it, on a host with two
addresses, in real Chromium through nginx.

The whole module runs in a private network namespace (``tests/integration/netns.py``) whose host
has loopback and a second address on a veth; the bridge advertises both, Chromium gathers both,
so ICE has a real choice among four candidate pairs (some of which do not work the way they are
signalled). The bridge is a full ICE agent and controls, as jitsi-videobridge does: it checks and
nominates, and media must flow on the pair Chromium selected, from the address Chromium sent to.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route

from tests.integration import netns
from tests.integration.browser import BROWSER_MARKS, DESKTOP, Browsers, LauncherStack, browsers, console_log

pytestmark = [
    *BROWSER_MARKS,
    pytest.mark.peer,
    pytest.mark.skipif(not netns.available(), reason="needs root and iproute2 for a private network namespace"),
]

LIB_JITSI_MEET = "@lyno/lib-jitsi-meet@2.6726.2"
"""The npm build of lib-jitsi-meet (one script, lib-jitsi-meet.min.js, with jQuery external)."""
JQUERY = "jquery@3.7.1"
"""What that build expects as the global ``jquery`` (lib-jitsi-meet depends on jQuery 3)."""
CLIENT_DIR = Path(__file__).parent / "jitsi_client"
PACKAGES = CLIENT_DIR / "node_modules"
FILES = {
    "lib-jitsi-meet.min.js": (LIB_JITSI_MEET, "package/lib-jitsi-meet.min.js"),
    "jquery.min.js": (JQUERY, "package/dist/jquery.min.js"),
}
PAGE_PATH = "/jitsi-client/"


def install_lib_jitsi_meet() -> None:
    """``npm pack`` the library and jQuery from the registry (once; kept under node_modules/) and
    unpack the one file of each the page loads: none of their build dependencies are needed."""
    for name, (package, member) in FILES.items():
        target = PACKAGES / name
        if target.exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", "--silent", package], cwd=tmp, check=True, timeout=300,
                           capture_output=True)  # fmt: skip
            (tarball,) = Path(tmp).glob("*.tgz")
            with tarfile.open(tarball) as archive:
                source = archive.extractfile(archive.getmember(member))
                assert source is not None
                PACKAGES.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read())


# Every RTCPeerConnection a page creates, for the tests to read its selected candidate pair.
RECORD_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__peerConnections = [];
  function Recorded(...args) {
    const pc = new Native(...args);
    window.__peerConnections.push(pc);
    return pc;
  }
  Recorded.prototype = Native.prototype;
  Object.setPrototypeOf(Recorded, Native);
  window.RTCPeerConnection = Recorded;
})();
"""

SELECTED_PAIRS = """
async () => {
  const out = [];
  for (const pc of window.__peerConnections || []) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    let id = null;
    stats.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) id = s.selectedCandidatePairId; });
    const pair = id && stats.get(id);
    if (!pair) continue;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    out.push({
      local: `${local.address}:${local.port}`,
      remote: `${remote.address}:${remote.port}`,
      nominated: !!pair.nominated,
      state: pair.state,
      bytesReceived: pair.bytesReceived,
    });
  }
  return out;
}
"""


@dataclass
class Stack:
    launcher: LauncherStack
    pool: Browsers
    second_address: str

    @property
    def front(self) -> str:
        return self.launcher.front

    @property
    def bridge(self) -> str:
        """The bridge's private REST base (port 8080 shifted like the front door's 8000)."""
        offset = int(self.front.rsplit(":", 1)[1]) - 8000
        return f"http://127.0.0.1:{8080 + offset}"

    @property
    def focus(self) -> str:
        offset = int(self.front.rsplit(":", 1)[1]) - 8000
        return f"http://127.0.0.1:{8888 + offset}"

    def rooms(self) -> dict[str, list[str]]:
        """The focus's conferences: room name -> endpoints."""
        conferences = httpx.get(f"{self.focus}/conferences", timeout=5).json()
        return {c["room"].split("@")[0]: [p["endpoint"] for p in c["participants"]] for c in conferences}

    def bridge_endpoints(self) -> dict[str, dict[str, Any]]:
        debug = httpx.get(f"{self.bridge}/debug", timeout=5).json()
        return {ep["id"]: ep for conf in debug["conferences"] for ep in conf["endpoints"]}

    def open(self) -> tuple[Page, list[str]]:
        # pages fulfilled by the test (the lib-jitsi-meet page) have no address, so Chromium's
        # Local Network Access checks would count them public and refuse their loopback requests
        page = self.pool.open(DESKTOP, extra_args=["--disable-features=LocalNetworkAccessChecks"])
        page.add_init_script(RECORD_PEER_CONNECTIONS)
        page.route(f"{self.front}{PAGE_PATH}**", serve_client_page)
        return page, console_log(page)


def serve_client_page(route: Route) -> None:
    """The lib-jitsi-meet page and the library, as if the front door served them (same origin as
    /xmpp-websocket and /http-bind); nothing else is reachable from the namespace anyway."""
    name = route.request.url.split(PAGE_PATH, 1)[1].split("?", 1)[0] or "index.html"
    files = {"index.html": CLIENT_DIR / "index.html", **{n: PACKAGES / n for n in FILES}}
    if name not in files:
        route.fulfill(status=404, body="not here")
        return
    kind = "text/html" if name.endswith(".html") else "application/javascript"
    route.fulfill(status=200, body=files[name].read_bytes(), content_type=kind)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("jitsi-stack") / "run"
    install_lib_jitsi_meet()  # from the registry, before the namespace (which has no network)
    with netns.multi_homed() as second:
        previous = os.environ.get("JVB_ADVERTISE_IPS")
        os.environ["JVB_ADVERTISE_IPS"] = f"{second},127.0.0.1"
        try:
            launcher = LauncherStack(run_dir, bridges=1).start()
        finally:
            if previous is None:
                os.environ.pop("JVB_ADVERTISE_IPS", None)
            else:
                os.environ["JVB_ADVERTISE_IPS"] = previous
        try:
            with browsers() as pool:
                yield Stack(launcher, pool, second)
        finally:
            launcher.stop()


def wait_until(
    what: str, cond: Any, logs: list[list[str]], timeout: float = 40.0, detail: Any = None
) -> None:
    """Poll ``cond()``; on timeout fail naming ``what``, with ``detail()`` and the pages' logs."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            pages = "\n--\n".join("\n".join(x[-40:]) for x in logs)
            raise AssertionError(f"timed out waiting for {what}{extra}\n{pages}")
        time.sleep(0.25)


def selected_pairs(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate(SELECTED_PAIRS))


def assert_media_on_the_selected_pair(stack: Stack, page: Page, endpoint: str) -> dict[str, Any]:
    """Chromium's selected pair is the bridge's media pair for ``endpoint``, seen from both ends,
    nominated by the bridge, which is the controlling agent."""
    pairs = [p for p in selected_pairs(page) if p["state"] == "succeeded"]
    assert pairs, "no selected candidate pair in the page"
    media = stack.bridge_endpoints()[endpoint]["media"]
    assert media is not None and media["state"] == "connected", media
    assert media["ice_controlling"] and media["ice_nominated"], media
    browser_pair = pairs[-1]
    assert browser_pair["nominated"], browser_pair
    assert media["remote_address"] == browser_pair["local"], (media, browser_pair)
    assert media["local_address"] == browser_pair["remote"], (media, browser_pair)
    return browser_pair


# ---- Parley's own web client ------------------------------------------------------------------


@dataclass
class ParleyPerson:
    page: Page
    log: list[str]

    @property
    def endpoint(self) -> str:
        return str(self.page.evaluate("window.parley.endpointId"))

    def decoded(self) -> dict[str, int]:
        stats = self.page.evaluate("window.parley.videoStats()")
        return {ep: s["framesDecoded"] for ep, s in stats.items()}


def parley_join(stack: Stack, room: str, name: str) -> ParleyPerson:
    page, log = stack.open()
    page.goto(f"{stack.front}/{room}?name={name}")
    page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
    return ParleyPerson(page, log)


def test_parley_clients_on_a_multi_homed_host_use_the_pair_the_bridge_nominated(stack: Stack) -> None:
    room = f"mh-{uuid.uuid4().hex[:8]}"
    people = [parley_join(stack, room, name) for name in ("Ada", "Bob")]
    logs = [p.log for p in people]
    try:
        endpoints = [p.endpoint for p in people]
        for person, other in ((people[0], endpoints[1]), (people[1], endpoints[0])):
            wait_until(
                "video decoded from the other participant",
                lambda person=person, other=other: person.decoded().get(other, 0) > 10,
                logs,
            )
        used = set()
        for person, endpoint in zip(people, endpoints, strict=True):
            pair = assert_media_on_the_selected_pair(stack, person.page, endpoint)
            print("selected pair", endpoint, pair)
            used.add(pair["remote"].rsplit(":", 1)[0])
        # the bridge advertised both addresses and listens on both
        assert used <= {stack.second_address, "127.0.0.1"}
    finally:
        for person in people:
            with contextlib.suppress(Exception):
                person.page.close()


# ---- lib-jitsi-meet ---------------------------------------------------------------------------


@dataclass
class JitsiPerson:
    page: Page
    log: list[str]

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.page.evaluate("window.jitsi"))

    @property
    def endpoint(self) -> str:
        return str(self.page.evaluate("window.jitsi.myId"))

    def media(self) -> dict[str, dict[str, Any]]:
        return dict(self.page.evaluate("window.jitsiMedia()"))


def jitsi_join(stack: Stack, room: str, name: str, transport: str = "websocket") -> JitsiPerson:
    page, log = stack.open()
    page.goto(f"{stack.front}{PAGE_PATH}index.html?room={room}&name={name}&transport={transport}")
    person = JitsiPerson(page, log)
    wait_until(f"{name} to join", lambda: person.state["status"] == "joined", [log])
    return person


def test_two_lib_jitsi_meet_clients_see_and_hear_each_other(stack: Stack) -> None:
    room = f"jitsi-{uuid.uuid4().hex[:8]}"
    people = [jitsi_join(stack, room, name) for name in ("Ada", "Bob")]
    logs = [p.log for p in people]
    try:
        ids = [p.endpoint for p in people]
        for person, other in ((people[0], ids[1]), (people[1], ids[0])):
            wait_until(
                "video and audio from the other participant",
                lambda person=person, other=other: (m := person.media().get(other)) is not None
                and m["frames"] > 10 and m["width"] > 0 and m["audioEnergy"] > 0,
                logs,
            )
        for person, endpoint in zip(people, ids, strict=True):
            assert_media_on_the_selected_pair(stack, person.page, endpoint)
            assert person.state["errors"] == []
            # the room's disco#info has the meeting id Jitsi's Prosody module gives it
            assert not any("No meeting ID from backend" in line for line in person.log)
    finally:
        for person in people:
            with contextlib.suppress(Exception):
                person.page.close()


def remote_tiles(person: ParleyPerson) -> set[str]:
    return set(person.page.eval_on_selector_all(".tile:not(.local)", "ts => ts.map(t => t.dataset.endpoint)"))


def test_jitsi_clients_and_parleys_meet_chat_see_the_speaker_and_a_leaver_goes(stack: Stack) -> None:
    room = f"mixed-{uuid.uuid4().hex[:8]}"
    ada, bob = (jitsi_join(stack, room, name) for name in ("Ada", "Bob"))
    cy = parley_join(stack, room, "Cy")
    logs = [ada.log, bob.log, cy.log]
    try:
        ids = {"ada": ada.endpoint, "bob": bob.endpoint, "cy": cy.endpoint}
        # everyone is in everyone's roster, by the MUC nick that is also the bridge's endpoint id
        for me, person in (("ada", ada), ("bob", bob)):
            others = {v for k, v in ids.items() if k != me}
            wait_until(f"{me} to list the others", lambda p=person, o=others: set(p.state["participants"]) == o, logs)
        wait_until("Cy to show both Jitsi clients", lambda: remote_tiles(cy) == {ids["ada"], ids["bob"]}, logs)
        # video decoded and audio heard, both ways, between every pair
        for me, person in (("ada", ada), ("bob", bob)):
            for other in (v for k, v in ids.items() if k != me):
                wait_until(
                    f"{me} to decode video and hear audio of {other}",
                    lambda p=person, o=other: (m := p.media().get(o)) is not None
                    and m["frames"] > 10 and m["width"] > 0 and m["audioEnergy"] > 0,
                    logs,
                    detail=lambda p=person: (ids, p.media(), p.state["remoteTracks"]),
                )
        for other in (ids["ada"], ids["bob"]):
            wait_until(f"Cy to decode {other}", lambda o=other: cy.decoded().get(o, 0) > 10, logs)
        for person, me in ((ada, "ada"), (bob, "bob"), (cy, "cy")):
            assert_media_on_the_selected_pair(stack, person.page, ids[me])
        # the bridge names a dominant speaker (every fake microphone beeps) over the bridge channel
        for person in (ada, bob):
            wait_until("a dominant speaker", lambda p=person: p.state["dominant"] in ids.values(), logs)
        # chat: MUC groupchat between the Jitsi clients
        ada.page.evaluate("window.jitsiSend('hello from Ada')")
        wait_until(
            "Bob to get Ada's message",
            lambda: {"from": ids["ada"], "text": "hello from Ada"} in bob.state["messages"],
            logs,
        )
        # and between Jitsi's clients and Parley's, both ways
        cy.page.click("#chat-button")
        cy.page.fill("#chat-input", "hello from Cy")
        cy.page.press("#chat-input", "Enter")
        for person in (ada, bob):
            wait_until(
                "Cy's message at a Jitsi client",
                lambda p=person: {"from": ids["cy"], "text": "hello from Cy"} in p.state["messages"],
                logs,
            )
        wait_until("Ada's message at Cy", lambda: "hello from Ada" in cy.page.inner_text("#chat-log"), logs)
        # Bob leaves: gone from Ada's roster and from Cy's tiles
        bob.page.evaluate("window.jitsiLeave()")
        wait_until("Ada to see Bob leave", lambda: ids["bob"] not in ada.state["participants"], logs)
        wait_until("Cy to drop Bob's tile", lambda: remote_tiles(cy) == {ids["ada"]}, logs)
        for person in (ada, bob):
            assert person.state["errors"] == [], person.state["errors"]
    finally:
        for page in (ada.page, bob.page, cy.page):
            with contextlib.suppress(Exception):
                page.close()


def test_lib_jitsi_meet_over_bosh(stack: Stack) -> None:
    room = f"bosh-{uuid.uuid4().hex[:8]}"
    people = [jitsi_join(stack, room, name, transport="bosh") for name in ("Dee", "Eve")]
    logs = [p.log for p in people]
    try:
        ids = [p.endpoint for p in people]
        for person, other in ((people[0], ids[1]), (people[1], ids[0])):
            wait_until(
                "video and audio from the other participant over BOSH",
                lambda person=person, other=other: (m := person.media().get(other)) is not None
                and m["frames"] > 10 and m["audioEnergy"] > 0,
                logs,
            )
        people[0].page.evaluate("window.jitsiSend('over BOSH')")
        wait_until("the message over BOSH", lambda: {"from": ids[0], "text": "over BOSH"} in people[1].state["messages"], logs)
        people[1].page.evaluate("window.jitsiLeave()")
        wait_until("the leaver to go", lambda: ids[1] not in people[0].state["participants"], logs)
    finally:
        for person in people:
            with contextlib.suppress(Exception):
                person.page.close()


def test_a_client_that_closes_its_peer_connection_before_leaving_leaves_nothing_behind(stack: Stack) -> None:
    """Closing the peer connection sends a DTLS close_notify: the bridge frees the endpoint at
    once, before the client leaves the room and the focus expires its channels. That expiry must
    succeed, and once everyone has left the focus has no conference left."""
    room = f"close-{uuid.uuid4().hex[:8]}"
    fay, gus = (jitsi_join(stack, room, name) for name in ("Fay", "Gus"))
    logs = [fay.log, gus.log]
    try:
        ids = {"fay": fay.endpoint, "gus": gus.endpoint}
        wait_until("media between them", lambda: (fay.media().get(ids["gus"]) or {}).get("frames", 0) > 5, logs)
        log_mark = len(stack.launcher.log())
        fay.page.evaluate("window.__peerConnections.forEach((pc) => pc.close())")
        wait_until("the bridge to free Fay", lambda: ids["fay"] not in stack.bridge_endpoints(), logs)
        fay.page.evaluate("window.jitsiLeave()")
        wait_until("Gus to see Fay leave", lambda: ids["fay"] not in gus.state["participants"], logs)
        wait_until("the focus to forget Fay", lambda: stack.rooms().get(room) == [ids["gus"]], logs)
        gus.page.evaluate("window.jitsiLeave()")
        wait_until("the conference to end", lambda: room not in stack.rooms(), logs)
        after = stack.launcher.log()[log_mark:]
        assert "failed" not in "\n".join(line for line in after.splitlines() if "PATCH of room" in line), after[-3000:]
    finally:
        for page in (fay.page, gus.page):
            with contextlib.suppress(Exception):
                page.close()

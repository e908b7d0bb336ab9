"""An in-memory transport for driving the sans-I/O session and broker in unit tests."""

from __future__ import annotations

import base64

from services.xmpp.broker import Broker, HostPolicy
from services.xmpp.jid import JID
from services.xmpp.modules.client_proxy import ClientProxy
from services.xmpp.modules.muc import MucService
from services.xmpp.sasl import ScramCredential
from services.xmpp.session import ClientSession, Link, SessionLimits, TcpFraming
from services.xmpp.stream_management import ResumptionRegistry
from services.xmpp.xml import Element, StreamOpened, StreamParser, parse_document

DOMAIN, AUTH, MUC_HOST, BREWERY_HOST = (
    "meet.jitsi",
    "auth.meet.jitsi",
    "muc.meet.jitsi",
    "internal-muc.meet.jitsi",
)
FOCUS = JID("focus", AUTH, "")
CRED = ScramCredential.from_password("pw")


def make_broker() -> tuple[Broker, MucService, MucService]:
    broker = Broker(
        [HostPolicy(DOMAIN, anonymous=True), HostPolicy(AUTH, accounts={"focus": CRED, "jvb": CRED})]
    )
    conf = MucService(MUC_HOST, broker.send_to, broker.route, admins=[FOCUS], creators=[FOCUS])
    brew = MucService(BREWERY_HOST, broker.send_to, broker.route, admins=[FOCUS], presence_domains={AUTH})
    broker.add_component(conf)
    broker.add_component(brew)
    broker.guest_blocked = {AUTH, BREWERY_HOST}
    broker.add_component(
        ClientProxy(
            f"focus.{DOMAIN}",
            FOCUS,
            "focus",
            lambda bare: [s.jid for s in broker.sessions.get(bare, {}).values()],
            broker.send_to,
        )
    )
    return broker, conf, brew


class Wire:
    """A client's end of an in-memory stream: what the server wrote, parsed back as elements."""

    def __init__(
        self,
        broker: Broker,
        resumption: ResumptionRegistry | None = None,
        timers=None,
        limits: SessionLimits | None = None,
        internal: bool = True,
        secure: bool = False,
        address: str = "192.0.2.1",
    ) -> None:
        self.raw = bytearray()
        self.closed = False
        self.parser = StreamParser()
        self.timers = timers if timers is not None else []
        self.link = Link(
            TcpFraming(),
            self.raw.extend,
            self._close,
            restart=lambda: None,
            internal=internal,
            secure=secure,
            address=address,
        )
        self.session = ClientSession(
            broker,
            self.link,
            limits if limits is not None else SessionLimits(allow_plain_without_tls=True),
            resumption=resumption,
            schedule=lambda d, fn: self.timers.append(_Timer(fn, d)) or self.timers[-1],
        )
        self._client_parser = StreamParser()
        self.received: list[Element] = []

    def _close(self) -> None:
        self.closed = True

    def drain(self) -> list[Element]:
        """Elements the server wrote since the last call (stream headers restart the parser)."""
        data = bytes(self.raw)
        self.raw.clear()
        out = []
        for chunk in data.split(b"<?xml version='1.0'?>"):
            if not chunk:
                continue
            if chunk.startswith(b"<stream:stream"):
                self._client_parser = StreamParser()
            out.extend(e for e in self._client_parser.feed(chunk) if isinstance(e, Element))
        self.received.extend(out)
        return out

    def open(self, host: str) -> list[Element]:
        self.session.stream_opened(
            StreamOpened("http://etherx.jabber.org/streams", "stream", {"to": host, "version": "1.0"})
        )
        return self.drain()

    def send(self, xml: str) -> list[Element]:
        self.session.element(parse_document(xml, default_ns="jabber:client"))
        return self.drain()


class _Timer:
    def __init__(self, fn, delay: float = 0.0) -> None:
        self.fn = fn
        self.delay = delay
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.fn()


def login(broker: Broker, host: str = DOMAIN, user: str | None = None, resource: str = "r", **kw) -> Wire:
    wire = Wire(broker, **kw)
    wire.open(host)
    if user is None:
        wire.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    else:
        token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
        wire.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    wire.open(host)
    wire.send(
        f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        f"<resource>{resource}</resource></bind></iq>"
    )
    assert wire.session.state == "active"
    return wire

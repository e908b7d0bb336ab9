"""The client session state machine and the broker's routing, over an in-memory transport."""

import base64

from services.xmpp.stanza import SASL_NS, SM_NS
from services.xmpp.stream_management import ResumptionRegistry
from services.xmpp.tests.helpers import AUTH, DOMAIN, Wire, login, make_broker


def test_features_offer_host_specific_mechanisms():
    broker, *_ = make_broker()
    guest = Wire(broker).open(DOMAIN)
    service = Wire(broker).open(AUTH)
    mechs = lambda els: [m.text for m in els[-1].find("mechanisms", SASL_NS).elements()]  # noqa: E731
    assert mechs(guest) == ["ANONYMOUS"]
    assert mechs(service) == ["SCRAM-SHA-1", "PLAIN"]


def test_unknown_host_is_a_stream_error():
    broker, *_ = make_broker()
    wire = Wire(broker)
    out = wire.open("elsewhere.example")
    assert out[-1].name == "error" and out[-1].first_element().name == "host-unknown"
    assert wire.closed


def test_wrong_password_gets_a_sasl_failure_and_nothing_else():
    broker, *_ = make_broker()
    wire = Wire(broker)
    wire.open(AUTH)
    token = base64.b64encode(b"\0focus\0wrong").decode()
    out = wire.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
    assert [e.name for e in out] == ["failure"] and out[0].first_element().name == "not-authorized"
    assert not wire.closed and wire.session.username is None


def test_stanzas_before_binding_close_the_stream():
    broker, *_ = make_broker()
    wire = Wire(broker)
    wire.open(DOMAIN)
    out = wire.send("<message to='x@meet.jitsi'><body>hi</body></message>")
    assert out[-1].name == "error" and wire.closed


def test_message_routing_full_bare_and_spoofed_from():
    broker, *_ = make_broker()
    a = login(broker, AUTH, "focus", "focus")
    b = login(broker, AUTH, "jvb", "jvb1")
    b.send(f"<message to='focus@{AUTH}/focus' from='evil@x/y' type='chat'><body>1</body></message>")
    got = a.drain()
    assert got[0].find("body").text == "1" and got[0].get("from") == str(b.session.jid)
    out = b.send(f"<message to='focus@{AUTH}' type='chat'><body>2</body></message>")
    assert out[0].find("error").first_element().name == "service-unavailable"  # no available resource
    a.send("<presence/>")
    b.send(f"<message to='focus@{AUTH}' type='chat'><body>2</body></message>")
    assert a.drain()[0].find("body").text == "2"
    # to a resource that is not there: delivered to the bare JID's resources instead
    b.send(f"<message to='focus@{AUTH}/gone' type='chat'><body>3</body></message>")
    assert a.drain()[0].find("body").text == "3"


def test_iq_to_missing_resource_or_unknown_namespace_is_service_unavailable():
    broker, *_ = make_broker()
    b = login(broker)
    out = b.send(f"<iq type='get' id='1' to='focus@{AUTH}/none'><query xmlns='urn:x'/></iq>")
    assert (
        out[0].get("type") == "error" and out[0].find("error").first_element().name == "service-unavailable"
    )
    out = b.send(f"<iq type='get' id='2' to='{DOMAIN}'><query xmlns='urn:x'/></iq>")
    assert out[0].find("error").first_element().name == "service-unavailable"
    out = b.send("<iq type='get' id='3' to='other.example'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert out[0].find("error").first_element().name == "remote-server-not-found"


def test_ping_and_disco():
    broker, *_ = make_broker()
    b = login(broker)
    assert (
        b.send(f"<iq type='get' id='p' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")[0].get("type")
        == "result"
    )
    info = b.send(
        f"<iq type='get' id='d' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    features = {f.get("var") for f in info[0].first_element().find_all("feature")}
    assert "urn:xmpp:ping" in features
    items = b.send(
        f"<iq type='get' id='i' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
    )
    jids = {i.get("jid") for i in items[0].first_element().elements()}
    assert {"muc.meet.jitsi", "internal-muc.meet.jitsi", "focus.meet.jitsi"} <= jids


def test_same_resource_replaces_the_old_session():
    broker, *_ = make_broker()
    old = login(broker, AUTH, "jvb", "jvb1")
    new = login(broker, AUTH, "jvb", "jvb1")
    assert old.closed and any(e.name == "error" for e in old.drain())
    assert broker.session_for(new.session.jid) is new.session


def test_stream_management_acks_and_resume_replays_unacked():
    broker, *_ = make_broker()
    registry = ResumptionRegistry()
    timers: list = []
    a = login(broker, AUTH, "focus", "focus", resumption=registry, timers=timers)
    out = a.send(f"<enable xmlns='{SM_NS}' resume='true'/>")
    token = out[0].get("id")
    assert out[0].name == "enabled" and token
    b = login(broker, AUTH, "jvb", "jvb1")
    for i in range(3):
        b.send(f"<message to='focus@{AUTH}/focus' type='chat'><body>{i}</body></message>")
    a.drain()
    a.send(f"<a xmlns='{SM_NS}' h='1'/>")
    assert len(a.session.sm.unacked) == 2
    a.session.transport_lost()  # connection drops; the session waits to be resumed
    b.send(f"<message to='focus@{AUTH}/focus' type='chat'><body>3</body></message>")
    c = Wire(broker, resumption=registry)
    c.open(AUTH)
    token_b64 = base64.b64encode(b"\0focus\0pw").decode()
    c.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token_b64}</auth>")
    c.open(AUTH)
    out = c.send(f"<resume xmlns='{SM_NS}' previd='{token}' h='1'/>")
    assert out[0].name == "resumed"
    assert [m.find("body").text for m in out[1:]] == ["1", "2", "3"]
    b.send(f"<message to='focus@{AUTH}/focus' type='chat'><body>4</body></message>")
    assert c.drain()[0].find("body").text == "4"
    assert all(t.cancelled for t in timers)


def test_detached_session_ends_when_resume_timer_fires():
    broker, conf, _ = make_broker()
    registry = ResumptionRegistry()
    timers: list = []
    a = login(broker, AUTH, "focus", "focus", resumption=registry, timers=timers)
    a.send(f"<enable xmlns='{SM_NS}' resume='true'/>")
    a.send("<presence to='room@muc.meet.jitsi/focus'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    assert conf.rooms
    a.session.transport_lost()
    assert conf.rooms  # still an occupant while resumable
    timers[-1].fire()
    assert not conf.rooms and broker.session_count() == 0


def test_focus_client_proxy_translates_addresses():
    broker, *_ = make_broker()
    focus = login(broker, AUTH, "focus", "focus")
    guest = login(broker)
    guest.send(
        f"<iq type='set' id='c1' to='focus.{DOMAIN}'><conference xmlns='http://jitsi.org/protocol/focus'/></iq>"
    )
    req = focus.drain()[0]
    assert req.get("from") == f"focus.{DOMAIN}/{guest.session.jid}" and req.get("id") == "c1"
    focus.send(f"<iq type='result' id='c1' to='{req.get('from')}'/>")
    reply = guest.drain()[0]
    assert reply.get("from") == f"focus.{DOMAIN}" and reply.get("type") == "result"


def test_client_proxy_without_focus_is_service_unavailable():
    broker, *_ = make_broker()
    guest = login(broker)
    out = guest.send(
        f"<iq type='set' id='c1' to='focus.{DOMAIN}'><conference xmlns='http://jitsi.org/protocol/focus'/></iq>"
    )
    assert out[0].get("type") == "error"


def test_only_a_session_logged_in_to_the_auth_host_is_a_service_account():
    broker, *_ = make_broker()
    unauthenticated = Wire(broker)
    unauthenticated.open(AUTH)
    assert not unauthenticated.session.service_account  # not before the password is checked
    assert not login(broker).session.service_account  # a guest (SASL ANONYMOUS)
    assert login(broker, AUTH, "focus").session.service_account


def test_binding_does_not_fill_the_jid_cache():
    from services.xmpp.jid import _parse_jid_cached

    broker, *_ = make_broker()
    before = _parse_jid_cached.cache_info().currsize
    for i in range(50):  # every anonymous login binds a JID never seen before
        login(broker, resource=f"r{i}")
    assert _parse_jid_cached.cache_info().currsize == before


def test_a_persons_account_is_not_a_service_account():
    """People's accounts (AUTH_TYPE=internal, on the client host) are read at the guests' rate
    (docs/security.md): only the auth host's accounts are service accounts."""
    from services.xmpp.broker import Broker, HostPolicy
    from services.xmpp.tests.helpers import CRED

    broker = Broker(
        [
            HostPolicy(DOMAIN, accounts={"alice": CRED}, public_login=True),
            HostPolicy(AUTH, accounts={"focus": CRED}),
        ]
    )
    assert not login(broker, DOMAIN, "alice").session.service_account
    assert login(broker, AUTH, "focus").session.service_account

"""XEP-0215 external services through the broker: who gets TURN credentials, and what they are."""

from __future__ import annotations

from services.common.turn import turn_password
from services.xmpp.jid import JID
from services.xmpp.modules.extdisco import EXTDISCO_NS, ExtDiscoSettings, ExternalServices
from services.xmpp.xml import Element, parse_document

from .helpers import DOMAIN, login, make_broker

NOW = 1_800_000_000
SETTINGS = ExtDiscoSettings("sekrit", "turn.example.org", 3478, 5349, ("udp", "tcp"), ttl=3600)


def broker_with_extdisco(settings: ExtDiscoSettings = SETTINGS):
    broker, *_ = make_broker()
    broker.features.append(
        ExternalServices(settings, lambda jid: broker.session_for(jid) is not None, clock=lambda: NOW)
    )
    return broker


def services_of(reply: Element) -> list[dict[str, str]]:
    assert reply.get("type") == "result", reply.to_bytes()
    return [dict(s.attrs) for s in reply.first_element().find_all("service", EXTDISCO_NS)]


def test_signed_in_guest_gets_stun_and_turn_with_rest_credentials() -> None:
    guest = login(broker_with_extdisco())
    (reply,) = guest.send(f"<iq type='get' id='e' to='{DOMAIN}'><services xmlns='{EXTDISCO_NS}'/></iq>")
    services = services_of(reply)
    assert [(s["type"], s["transport"], s["port"]) for s in services] == [
        ("stun", "udp", "3478"),
        ("turn", "udp", "3478"),
        ("turn", "tcp", "3478"),
        ("turns", "tcp", "5349"),
    ]
    assert "username" not in services[0]
    for turn in services[1:]:
        expiry, _, ident = turn["username"].partition(":")
        assert int(expiry) == NOW + 3600
        assert ident == f"{guest.session.jid.node}@{DOMAIN}"
        assert turn["password"] == turn_password("sekrit", turn["username"])
        assert turn["host"] == "turn.example.org" and turn["restricted"] == "1"
        assert turn["expires"] == "2027-01-15T09:00:00Z"


def test_type_filter_and_credentials_request() -> None:
    guest = login(broker_with_extdisco())
    (reply,) = guest.send(
        f"<iq type='get' id='e' to='{DOMAIN}'><services xmlns='{EXTDISCO_NS}' type='turns'/></iq>"
    )
    assert [s["type"] for s in services_of(reply)] == ["turns"]
    (reply,) = guest.send(
        f"<iq type='get' id='c' to='{DOMAIN}'><credentials xmlns='{EXTDISCO_NS}'>"
        f"<service host='turn.example.org' type='turn' port='3478'/></credentials></iq>"
    )
    assert reply.first_element().name == "credentials"
    assert {(s["type"], s["transport"]) for s in services_of(reply)} == {("turn", "udp"), ("turn", "tcp")}
    (reply,) = guest.send(
        f"<iq type='get' id='c2' to='{DOMAIN}'><credentials xmlns='{EXTDISCO_NS}'>"
        f"<service host='elsewhere.example' type='turn'/></credentials></iq>"
    )
    assert reply.find("error").first_element().name == "item-not-found"


def test_disco_info_advertises_the_feature_only_when_configured() -> None:
    for settings, advertised in ((SETTINGS, True), (ExtDiscoSettings("", ""), False)):
        guest = login(broker_with_extdisco(settings))
        (info,) = guest.send(
            f"<iq type='get' id='d' to='{DOMAIN}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        )
        features = {f.get("var") for f in info.first_element().find_all("feature")}
        assert (EXTDISCO_NS in features) is advertised
    (reply,) = guest.send(f"<iq type='get' id='e' to='{DOMAIN}'><services xmlns='{EXTDISCO_NS}'/></iq>")
    assert reply.find("error").first_element().name == "service-unavailable"


def test_an_extdisco_iq_to_an_account_is_not_the_servers() -> None:
    guest = login(broker_with_extdisco())
    bare = f"{guest.session.jid.node}@{DOMAIN}"
    (reply,) = guest.send(f"<iq type='get' id='e' to='{bare}'><services xmlns='{EXTDISCO_NS}'/></iq>")
    assert reply.find("error").first_element().name == "service-unavailable"


def test_only_bound_client_sessions_get_credentials() -> None:
    ext = ExternalServices(SETTINGS, is_client=lambda jid: jid == JID("a", DOMAIN, "r"), clock=lambda: NOW)
    ask = parse_document(
        f"<iq type='get' id='x' from='muc.{DOMAIN}' to='{DOMAIN}'><services xmlns='{EXTDISCO_NS}'/></iq>",
        default_ns="jabber:client",
    )
    for frm in (JID("", f"muc.{DOMAIN}", ""), JID("a", DOMAIN, ""), JID("b", DOMAIN, "r")):
        reply = ext.handle(ask, ask.first_element(), frm)
        assert reply is not None and reply.find("error").first_element().name == "forbidden"
        assert b"password" not in reply.to_bytes()
    ok = ext.handle(ask, ask.first_element(), JID("a", DOMAIN, "r"))
    assert ok is not None and ok.get("type") == "result"


def test_malformed_requests_get_bad_request() -> None:
    guest = login(broker_with_extdisco())
    for payload in (
        f"<services xmlns='{EXTDISCO_NS}' type='ftp'/>",
        f"<nonsense xmlns='{EXTDISCO_NS}'/>",
    ):
        (reply,) = guest.send(f"<iq type='get' id='b' to='{DOMAIN}'>{payload}</iq>")
        assert reply.find("error").first_element().name == "bad-request"
    (reply,) = guest.send(f"<iq type='set' id='s' to='{DOMAIN}'><services xmlns='{EXTDISCO_NS}'/></iq>")
    assert reply.find("error").first_element().name == "bad-request"

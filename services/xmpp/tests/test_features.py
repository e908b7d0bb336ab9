"""Server features as modules hooking the server-IQ event (services/xmpp/hooks.py, modules/)."""

from __future__ import annotations

from services.xmpp.hooks import ServerIq
from services.xmpp.stanza import iq_result
from services.xmpp.xml import Element

from .helpers import DOMAIN, MUC_HOST, login, make_broker

DISCO_INFO = "http://jabber.org/protocol/disco#info"


def test_disco_info_lists_every_feature_in_order_and_a_new_module_adds_its_own() -> None:
    broker, _, _ = make_broker()

    class Time:  # a feature module: XEP-0202 entity time, answering with an empty result
        features = ("urn:xmpp:time",)

        def on_iq(self, event: ServerIq) -> Element | None:
            return iq_result(event.iq) if event.payload.ns == "urn:xmpp:time" else None

    broker.features.append(Time())

    w = login(broker)
    [info] = w.send(f"<iq type='get' id='d' to='{DOMAIN}'><query xmlns='{DISCO_INFO}'/></iq>")
    query = info.find("query", DISCO_INFO)
    assert query is not None
    assert [f.get("var") for f in query.children if f.name == "feature"] == [
        DISCO_INFO,
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:version",
        "urn:xmpp:sm:3",
        "urn:xmpp:time",
    ]
    [answer] = w.send(f"<iq type='get' id='t' to='{DOMAIN}'><time xmlns='urn:xmpp:time'/></iq>")
    assert (answer.get("type"), answer.get("id")) == ("result", "t")


def test_each_module_answers_its_own_iq_and_nobody_answers_the_rest() -> None:
    broker, _, _ = make_broker()

    w = login(broker)
    me = w.session.jid.bare

    def ask(to: str, payload: str, kind: str = "get") -> Element:
        [reply] = w.send(f"<iq type='{kind}' id='x' to='{to}'>{payload}</iq>")
        return reply

    assert ask(DOMAIN, "<ping xmlns='urn:xmpp:ping'/>").get("type") == "result"
    assert ask(DOMAIN, "<ping xmlns='urn:xmpp:ping'/>", "set").get("type") == "error"
    version = ask(DOMAIN, "<query xmlns='jabber:iq:version'/>").find("query", "jabber:iq:version")
    assert version is not None and version.find("name", "jabber:iq:version") is not None
    items = ask(DOMAIN, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    query = items.find("query", "http://jabber.org/protocol/disco#items")
    assert query is not None and MUC_HOST in [i.get("jid") for i in query.children]
    assert ask(str(me), "<query xmlns='jabber:iq:roster'/>").get("type") == "result"
    assert (
        ask(DOMAIN, "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>", "set").get("type") == "result"
    )
    unknown = ask(DOMAIN, "<query xmlns='urn:example:nothing'/>")
    assert unknown.get("type") == "error"
    assert unknown.find("error") is not None

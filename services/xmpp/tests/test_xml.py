"""The hardened incremental stream parser and the serializer."""

import pytest

from services.xmpp.xml import (
    CLIENT_NS,
    Element,
    StreamClosed,
    StreamOpened,
    StreamParser,
    XmlStreamError,
    parse_document,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='meet.jitsi' version='1.0'>"
)


def test_header_stanzas_and_close_arrive_as_events_across_any_split():
    data = HEADER + b"<message to='a@b'><body>hi &amp; bye</body></message> <presence/></stream:stream>"
    for step in (1, 7, len(data)):
        parser = StreamParser()
        events = []
        for i in range(0, len(data), step):
            events.extend(parser.feed(data[i : i + step]))
        assert isinstance(events[0], StreamOpened) and events[0].attrs["to"] == "meet.jitsi"
        msg = events[1]
        assert isinstance(msg, Element) and msg.name == "message" and msg.ns == CLIENT_NS
        assert msg.find("body").text == "hi & bye"
        assert events[2].name == "presence"
        assert isinstance(events[3], StreamClosed)


@pytest.mark.parametrize(
    "evil, condition",
    [
        (b"<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]>", "restricted-xml"),
        (b"<message><body>&xxe;</body></message>", "not-well-formed"),
        (b"<message><!-- comment --></message>", "restricted-xml"),
        (b"<message><?pi data?></message>", "restricted-xml"),
        (b"<message><body></message>", "not-well-formed"),
    ],
)
def test_forbidden_or_broken_xml_is_a_stream_error(evil, condition):
    parser = StreamParser()
    with pytest.raises(XmlStreamError) as err:
        parser.feed(HEADER + evil if not evil.startswith(b"<!DOCTYPE") else evil + HEADER)
    assert err.value.condition == condition


def test_oversized_stanza_is_refused_while_it_arrives():
    parser = StreamParser(max_stanza_size=10000)
    parser.feed(HEADER + b"<message><body>")
    with pytest.raises(XmlStreamError) as err:
        for _ in range(100):
            parser.feed(b"x" * 1000)
    assert err.value.condition == "policy-violation"


def test_many_small_stanzas_do_not_add_up_to_the_limit():
    parser = StreamParser(max_stanza_size=2000)
    parser.feed(HEADER)
    events = parser.feed(b"<message><body>0123456789</body></message>" * 500)
    assert len(events) == 500


def test_reset_starts_a_new_stream():
    parser = StreamParser()
    parser.feed(HEADER + b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    parser.reset()
    events = parser.feed(HEADER)
    assert isinstance(events[0], StreamOpened)


def test_serialization_declares_namespaces_only_where_they_change():
    el = parse_document(
        b"<iq xmlns='jabber:client' type='get'><query xmlns='urn:x'><item a='&apos;&lt;'/></query></iq>"
    )
    assert (
        el.serialize()
        == "<iq xmlns='jabber:client' type='get'><query xmlns='urn:x'><item a='&apos;&lt;'/></query></iq>"
    )
    assert parse_document(el.to_bytes()).serialize() == el.serialize()


def test_split_at_to_splices_the_recipient():
    el = Element("message", CLIENT_NS, {"from": "r@m/n", "to": "old", "type": "groupchat"})
    el.sub("body", text="x>y")
    head, tail = el.split_at_to()
    out = head + b"u@d/r" + tail
    parsed = parse_document(out)
    assert parsed.get("to") == "u@d/r" and parsed.get("from") == "r@m/n" and parsed.find("body").text == "x>y"


def test_document_without_namespace_gets_the_default():
    el = parse_document(b"<message to='a@b'><body>x</body></message>", default_ns=CLIENT_NS)
    assert el.ns == CLIENT_NS and el.find("body", CLIENT_NS) is not None


def test_xml_lang_attribute_round_trips():
    el = parse_document(b"<message xmlns='jabber:client' xml:lang='en'/>")
    assert el.get("xml:lang") == "en"

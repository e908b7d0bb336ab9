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


class _ScanCounter:
    """Stands in for a StreamParser's expat parser and counts what each ``Parse`` call scans:
    expat 2.5 starts again from the beginning of the token it had not finished, so a call scans
    that unfinished token plus the new bytes."""

    def __init__(self, real):
        self.real = real
        self.handed = 0  # bytes handed over so far
        self.scanned = 0
        self.calls = 0

    def Parse(self, data, final=False):
        self.calls += 1
        self.scanned += self.handed - max(self.real.CurrentByteIndex, 0) + len(data)
        self.handed += len(data)
        return self.real.Parse(data, final)

    def __getattr__(self, name):
        return getattr(self.real, name)


def _counting(parser: StreamParser) -> _ScanCounter:
    parser.parser = counter = _ScanCounter(parser.parser)
    return counter


def test_a_growing_unterminated_tag_is_scanned_a_few_times_its_size_not_once_per_piece():
    # a start tag whose attribute value arrives 4 KiB at a time (the broker's read slices): each
    # Parse call re-scans the unfinished tag, 64 calls would scan ~8 MB for a 256 KiB tag
    parser = StreamParser(max_stanza_size=262144)
    parser.feed(HEADER)
    counter = _counting(parser)
    parser.feed(b"<message to='x@meet.jitsi' a='")
    fed = 0
    with pytest.raises(XmlStreamError, match="unterminated tag larger than 262144"):
        while True:
            parser.feed(b"x" * 4096)
            fed += 4096
    assert fed == 258048  # refused at the same byte as when every piece was parsed at once
    assert counter.scanned < 4 * 262144
    assert counter.calls < 12


def test_a_kept_back_tag_finishes_as_soon_as_its_closing_bracket_arrives():
    parser = StreamParser()
    parser.feed(HEADER)
    counter = _counting(parser)
    assert parser.feed(b"<message to='a@b' a='") == []
    for _ in range(40):  # 160 KiB of attribute value, a '>' inside it too (allowed there)
        assert parser.feed(b"y" * 2000 + b">" + b"y" * 2095) == []
    events = parser.feed(b"'><body>hi</body></message>")
    assert len(events) == 1 and events[0].get("a") == ("y" * 2000 + ">" + "y" * 2095) * 40
    assert events[0].find("body").text == "hi"
    # text is never kept back: expat finishes it as it arrives
    before = counter.calls
    events = parser.feed(b"<message><body>" + b"z" * 30000)
    assert events == [] and counter.calls == before + 2
    assert parser.feed(b"z" * 3000) == [] and counter.calls == before + 3
    assert parser.feed(b"</body></message>")[0].find("body").text == "z" * 33000


def test_broken_xml_kept_back_is_still_refused_within_the_limit():
    parser = StreamParser(max_stanza_size=65536)
    parser.feed(HEADER + b"<message a='" + b"x" * 20000)
    with pytest.raises(XmlStreamError) as err:
        for _ in range(20):
            parser.feed(b"<" + b"x" * 4095)  # '<' is not allowed in an attribute value
    assert err.value.condition == "not-well-formed"

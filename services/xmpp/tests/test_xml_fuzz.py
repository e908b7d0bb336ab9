"""Property test of the XMPP stream parser: arbitrary bytes in arbitrary chunks.

Whatever arrives, the only thing that may escape :meth:`StreamParser.feed` is
:class:`XmlStreamError` (the stream error for that client), and what the parser holds stays bounded
by its limits."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.xmpp.xml import Element, StreamParser, XmlStreamError, parse_document

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='meet.jitsi' version='1.0'>"
)
MAX_SIZE, MAX_DEPTH, MAX_HEADER, MAX_ELEMENTS = 2048, 8, 512, 64

# fragments that make the input XML-ish often enough to reach deep parser states
PIECES = st.sampled_from(
    [
        b"<a>", b"</a>", b"<b x='1'>", b"</b>", b"<c/>", b"<iq type='get'>", b"</iq>", b"<message>",
        b"</message>", b"'", b'"', b"<", b">", b"&amp;", b"&#0;", b"&x;", b"<!--", b"<?pi?>",
        b"<!DOCTYPE x>", b"</stream:stream>", b" ", b"\xff", b"\xc3", b"<a xmlns='u'>", b"<p:a>",
        b"x" * 700,
    ]
)  # fmt: skip
STREAMS = st.lists(st.one_of(PIECES, st.binary(max_size=64)), max_size=60).map(b"".join)


def depth(el: Element) -> int:
    best, todo = 0, [(el, 1)]
    while todo:
        node, d = todo.pop()
        best = max(best, d)
        todo.extend((c, d + 1) for c in node.elements())
    return best


def count(el: Element) -> int:
    total, todo = 0, [el]
    while todo:
        node = todo.pop()
        total += 1
        todo.extend(node.elements())
    return total


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=STREAMS, with_header=st.booleans(), cuts=st.lists(st.integers(1, 300), max_size=30))
def test_stream_parser_survives_anything_and_stays_bounded(body, with_header, cuts):
    data = (HEADER if with_header else b"") + body
    parser = StreamParser(MAX_SIZE, MAX_DEPTH, MAX_HEADER, MAX_ELEMENTS)
    pos = 0
    chunks = []
    for n in cuts:
        chunks.append(data[pos : pos + n])
        pos += n
    chunks.append(data[pos:])
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                if isinstance(event, Element):
                    assert depth(event) <= MAX_DEPTH and count(event) <= MAX_ELEMENTS
            # after every chunk: nothing pending beyond a limit plus one fed piece
            assert parser.pending <= max(MAX_SIZE, MAX_HEADER) + StreamParser.CHUNK
            assert len(parser._stack) <= MAX_DEPTH
    except XmlStreamError as err:
        assert err.condition in ("not-well-formed", "restricted-xml", "policy-violation", "invalid-xml")


@settings(max_examples=300, deadline=None)
@given(body=STREAMS)
def test_document_parser_survives_anything(body):
    try:
        el = parse_document(
            body, MAX_SIZE, default_ns="jabber:client", max_depth=MAX_DEPTH, max_elements=MAX_ELEMENTS
        )
    except XmlStreamError:
        return
    assert depth(el) <= MAX_DEPTH and count(el) <= MAX_ELEMENTS
    el.serialize()

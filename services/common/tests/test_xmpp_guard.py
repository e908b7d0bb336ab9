"""The guarded slixmpp stream reader, fed bytes directly (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from services.common.xmpp_guard import GuardedStreamMixin

HEADER = (
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "from='meet.jitsi' id='s1' version='1.0'>"
)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Guarded(GuardedStreamMixin, slixmpp.ClientXMPP):
    pass


def make(cls: type[slixmpp.ClientXMPP]) -> tuple[slixmpp.ClientXMPP, FakeTransport, list[str]]:
    client = cls("focus@auth.meet.jitsi/focus", "pw")
    seen: list[str] = []
    client.register_handler(
        Callback(
            "ping", MatchXPath("{jabber:client}iq/{urn:xmpp:ping}ping"), lambda iq: seen.append(iq["id"])
        )
    )
    transport = FakeTransport()
    client.connection_made(transport, send_event=False)  # type: ignore[arg-type]
    client.data_received(HEADER)
    return client, transport, seen


def deep(depth: int) -> str:
    return "<a xmlns='urn:example:deep'>" + "<a>" * (depth - 1) + "</a>" * depth


def ping(ident: str) -> str:
    return f"<iq type='get' id='{ident}' from='guest@meet.jitsi/x'><ping xmlns='urn:xmpp:ping'/></iq>"


def written(transport: FakeTransport) -> str:
    return b"".join(transport.written).decode(errors="replace")


def test_unguarded_slixmpp_loses_the_session_on_a_deep_stanza() -> None:
    """What the guard is for: the exception leaves data_received (the event loop then drops the
    connection)."""
    client, _transport, _seen = make(slixmpp.ClientXMPP)
    with pytest.raises(RecursionError):
        client.data_received(f"<iq type='set' id='d' from='guest@meet.jitsi/x'>{deep(2000)}</iq>")


@pytest.mark.parametrize("depth", [40, 300, 5000, 50_000])
def test_a_deep_stanza_is_refused_and_the_stream_carries_on(depth: int) -> None:
    client, transport, seen = make(Guarded)
    client.data_received(f"<iq type='set' id='d1' from='guest@meet.jitsi/x'>{deep(depth)}</iq>")
    client.data_received(f"<message from='guest@meet.jitsi/x'>{deep(depth)}</message>")
    out = written(transport)
    assert "policy-violation" in out
    assert "id='d1'" in out or 'id="d1"' in out
    assert "guest@meet.jitsi/x" in out
    assert out.count("policy-violation") == 1  # the message is dropped, not answered
    client.data_received(ping("p1"))
    assert seen == ["p1"]
    assert not transport.closed
    assert client.stanzas_refused == 2  # type: ignore[attr-defined]
    assert client.xml_depth == 1


def test_a_stanza_split_over_many_reads_and_the_depth_limit_edge() -> None:
    client, transport, seen = make(Guarded)
    limit = Guarded.max_stanza_depth
    # an iq with a payload exactly at the limit is handled (here: no handler -> an error reply)
    text = f"<iq type='set' id='ok' from='guest@meet.jitsi/x'>{deep(limit - 1)}</iq>" + ping("p2")
    for i in range(0, len(text), 7):
        client.data_received(text[i : i + 7])
    assert seen == ["p2"]
    assert "policy-violation" not in written(transport)


def test_a_huge_stanza_is_refused() -> None:
    client, transport, seen = make(Guarded)
    client.max_stanza_bytes = 10_000  # type: ignore[attr-defined]
    client.data_received("<iq type='set' id='big' from='guest@meet.jitsi/x'><q xmlns='urn:x'>")
    for _ in range(50):
        client.data_received("<b>" + "x" * 1000 + "</b>")
    client.data_received("</q></iq>")
    assert "policy-violation" in written(transport)
    client.data_received(ping("p3"))
    assert seen == ["p3"]


def test_a_handler_exception_does_not_end_the_session() -> None:
    client, transport, seen = make(Guarded)

    def boom(_iq: Any) -> None:
        raise RecursionError("deep inside a handler")

    client.register_handler(Callback("boom", MatchXPath("{jabber:client}iq/{urn:x:boom}boom"), boom))
    client.data_received("<iq type='set' id='b1' from='guest@meet.jitsi/x'><boom xmlns='urn:x:boom'/></iq>")
    client.data_received(ping("p4"))
    assert seen == ["p4"]
    assert not transport.closed


def test_a_broken_stream_is_still_closed(caplog: pytest.LogCaptureFixture) -> None:
    client, _transport, seen = make(Guarded)
    disconnects: list[object] = []
    client.disconnect = lambda *a, **k: disconnects.append(a)  # type: ignore[method-assign,assignment,return-value]
    client.data_received("<iq type='get' id='x'></oops>")
    client.data_received(ping("p5"))
    assert seen == []
    assert disconnects, "a stream that is not well-formed ends"
    assert "not well-formed" in caplog.text

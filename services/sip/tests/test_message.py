"""SIP parsing bounds and header helpers."""

from __future__ import annotations

import pytest

from services.sip import digest
from services.sip.message import NameAddr, SipParseError, SipUri, StreamFramer, Via, parse

BASE = (
    "OPTIONS sip:meet.jitsi SIP/2.0\r\n"
    "v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKx;rport\r\n"
    "Max-Forwards: 70\r\n"
    'f: "A, B" <sip:a@meet.jitsi>;tag=1\r\n'
    "t: <sip:meet.jitsi>\r\n"
    "i: abc\r\n"
    "CSeq: 1 OPTIONS\r\n"
)


def test_parse_compact_forms_and_quoted_commas() -> None:
    msg = parse((BASE + "l: 0\r\n\r\n").encode())
    assert msg.method == "OPTIONS" and msg.call_id == "abc"
    assert NameAddr.parse(msg.get("From") or "").display == "A, B"
    assert msg.top_via.branch == "z9hG4bKx"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (BASE + "Content-Length: 10\r\n\r\nabc", "body shorter than Content-Length"),
        (BASE + "Content-Length: -1\r\n\r\n", "bad Content-Length"),
        (BASE + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", "conflicting Content-Length"),
        (BASE.replace("i: abc\r\n", "") + "\r\n", "Call-ID missing"),
        (BASE.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE") + "\r\n", "CSeq method does not match"),
        (BASE.replace(";branch=z9hG4bKx", "") + "\r\n", "Via without branch"),
        (BASE + "".join(f"X-H{i}: {i}\r\n" for i in range(100)) + "\r\n", "too many headers"),
        (BASE + "X-Big: " + "a" * 20000 + "\r\n\r\n", "message too large"),
    ],
)
def test_malformed_requests_raise_with_partial(data: str, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse(data.encode())
    assert info.value.reason == reason
    assert info.value.partial is not None and info.value.partial.method == "OPTIONS"


def test_garbage_has_no_partial() -> None:
    with pytest.raises(SipParseError) as info:
        parse(b"\x00\x01hello\r\n\r\n")
    assert info.value.partial is None


def test_stream_framer_cuts_messages_and_keepalives() -> None:
    one = (BASE + "Content-Length: 3\r\n\r\nabc").encode()
    framer = StreamFramer()
    got = list(framer.feed(b"\r\n\r\n" + one[:10]))
    assert got == []
    got = list(framer.feed(one[10:] + one))
    assert [m.body for m in got] == [b"abc", b"abc"]
    assert framer.keepalives == 1


def test_stream_framer_requires_content_length_and_bounds_size() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        list(framer.feed((BASE + "\r\n").encode()))
    assert info.value.fatal
    framer = StreamFramer(max_size=1000)
    with pytest.raises(SipParseError):
        list(framer.feed(b"X" * 1001))


def test_uri_and_via() -> None:
    uri = SipUri.parse("sip:room@meet.jitsi:5070;transport=ws")
    assert (uri.user, uri.host, uri.port, uri.params) == ("room", "meet.jitsi", 5070, {"transport": "ws"})
    via = Via.parse("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKabc")
    assert via.transport == "WSS" and via.port is None
    with pytest.raises(ValueError):
        SipUri.parse("http://x")
    with pytest.raises(ValueError):
        Via.parse("SIP/3.0/UDP h")


def test_digest_round_trip_sha256_md5_stale_and_replay() -> None:
    auth = digest.DigestAuth("meet.jitsi", {"alice": "pw"})
    for i in range(2):
        challenge = auth.challenges(now=1000.0 + i)[i]
        header = digest.answer(challenge, "alice", "pw", "REGISTER", "sip:meet.jitsi")
        assert auth.check(header, "REGISTER", now=1001.0).ok
        assert auth.check(header, "REGISTER", now=1001.0).reason == "replayed nonce count"
    [challenge, _] = auth.challenges(now=1000.0)
    header = digest.answer(challenge, "alice", "pw", "REGISTER", "sip:meet.jitsi", nc=5)
    assert auth.check(header, "REGISTER", now=2000.0).stale
    assert not auth.check(header.replace("alice", "mallory"), "REGISTER", now=1001.0).ok
    forged = header.replace('nonce="', 'nonce="1')
    assert auth.check(forged, "REGISTER", now=1001.0).reason == "bad nonce"


def test_digest_nonces_of_the_same_millisecond_differ() -> None:
    """Two clients challenged at once each answer with nc=1: neither is a replay of the other."""
    auth = digest.DigestAuth("meet.jitsi", {"alice": "pw", "bob": "pw2"})
    first, second = auth.challenges(now=1000.0)[0], auth.challenges(now=1000.0)[0]
    assert first != second
    assert auth.check(digest.answer(first, "alice", "pw", "REGISTER", "sip:meet.jitsi"), "REGISTER", now=1000.5).ok
    assert auth.check(digest.answer(second, "bob", "pw2", "REGISTER", "sip:meet.jitsi"), "REGISTER", now=1000.5).ok

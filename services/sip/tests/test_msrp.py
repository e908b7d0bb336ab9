"""MSRP (RFC 4975) frames, byte ranges, reassembly, session decisions and SDP, without I/O."""

from __future__ import annotations

import secrets

import pytest

from services.sip.msrp import (
    Frame,
    MsrpError,
    MsrpLink,
    MsrpSession,
    SessionLimits,
    accepts_text,
    message_answer,
    parse_byte_range,
    parse_frame,
    parse_message_offer,
    session_id_of,
)

LOCAL = "msrp://127.0.0.1:8401/gw1234abcd;ws"
REMOTE = "msrp://df7jal23ls0d.invalid:2855/c1ient99;ws"


def send(body: bytes, *, tid: str = "a786hjs2", mid: str = "87652491", rng: str | None = None, flag: str = "$",
         to: str = LOCAL, frm: str = REMOTE, ctype: str = "text/plain", extra: str = "") -> bytes:
    head = f"MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\nMessage-ID: {mid}\r\n"
    head += f"Byte-Range: {rng or f'1-{len(body)}/{len(body)}'}\r\n{extra}"
    if body or ctype:
        head += f"Content-Type: {ctype}\r\n\r\n"
        return head.encode() + body + f"\r\n-------{tid}{flag}\r\n".encode()
    return head.encode() + f"-------{tid}{flag}\r\n".encode()


def test_parse_rfc4975_example() -> None:
    f = parse_frame(send(b"Hey Bob, are you there?"))
    assert f.method == "SEND" and f.tid == "a786hjs2" and f.flag == "$"
    assert f.body == b"Hey Bob, are you there?"
    assert f.get("byte-range") == "1-23/23" and f.get("To-Path") == LOCAL


def test_bodiless_request_and_response_round_trip() -> None:
    empty = b"MSRP d93kswow SEND\r\nTo-Path: " + LOCAL.encode() + b"\r\nFrom-Path: " + REMOTE.encode() + \
        b"\r\nMessage-ID: 12339sdqwer\r\n-------d93kswow$\r\n"
    f = parse_frame(empty)
    assert f.body == b"" and f.get("Message-ID") == "12339sdqwer"
    resp = Frame("d93kswow", status=200, comment="OK", headers=[("To-Path", REMOTE), ("From-Path", LOCAL)])
    back = parse_frame(resp.to_bytes())
    assert back.status == 200 and not back.is_request and back.get("From-Path") == LOCAL
    assert parse_frame(Frame("abcd1234", method="SEND", headers=[("A", "b")], body=b"x\r\ny", flag="+")
                       .to_bytes()).body == b"x\r\ny"


@pytest.mark.parametrize("data, status, answerable", [
    (b"", 400, False),
    (b"HTTP/1.1 200 OK\r\n\r\n", 400, False),
    (b"MSRP ab SEND\r\n-------ab$\r\n", 400, False),  # transaction id too short
    (b"MSRP abcd1234 SEND\r\nTo-Path: x\r\n", 400, True),  # no end line
    (b"MSRP abcd1234 SEND\r\nTo-Path: x\r\n-------other123$\r\n", 400, True),  # another transaction's end
    (b"MSRP abcd1234 SEND\r\nTo-Path: x\r\n-------abcd1234!\r\n", 400, True),  # bad flag
    (b"MSRP abcd1234 SEND\r\nno colon here\r\n-------abcd1234$\r\n", 400, True),
    (b"MSRP abcd1234 SEND\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(40)) + b"-------abcd1234$\r\n", 400, True),
    (b"MSRP abcd1234 SEND\r\nX: " + b"v" * 3000 + b"\r\n-------abcd1234$\r\n", 400, True),
    (b"MSRP abcd1234 SEND\r\n" + b"x" * 20000, 413, False),
])
def test_malformed_frames(data: bytes, status: int, answerable: bool) -> None:
    with pytest.raises(MsrpError) as info:
        parse_frame(data)
    assert info.value.status == status
    assert bool(info.value.tid) == answerable


def test_byte_range() -> None:
    assert parse_byte_range("1-5/10", 5).total == 10
    assert parse_byte_range("6-*/*", 3).end is None
    assert parse_byte_range(None, 4).start == 1
    for bad, n in (("0-4/4", 5), ("1-5/4", 5), ("1-9/9", 5), ("x-1/1", 1), ("1-99999999999/1", 1)):
        with pytest.raises(MsrpError):
            parse_byte_range(bad, n)


def session(**kw: float) -> MsrpSession:
    return MsrpSession(LOCAL, REMOTE, SessionLimits(**kw))  # type: ignore[arg-type]


def test_send_is_answered_and_delivered() -> None:
    s = session()
    replies, texts = s.receive(parse_frame(send(b"hello room")), 0)
    assert texts == ["hello room"]
    [reply] = replies
    r = parse_frame(reply)
    assert r.status == 200 and r.tid == "a786hjs2" and r.get("To-Path") == REMOTE and r.get("From-Path") == LOCAL


def test_failure_report_no_gets_no_response() -> None:
    replies, texts = session().receive(parse_frame(send(b"hi", extra="Failure-Report: no\r\n")), 0)
    assert replies == [] and texts == ["hi"]


def test_opening_empty_send_delivers_nothing() -> None:
    s = session()
    frame = parse_frame(b"MSRP d93kswow SEND\r\nTo-Path: " + LOCAL.encode() + b"\r\nFrom-Path: " + REMOTE.encode()
                        + b"\r\nMessage-ID: 12339sdqwer\r\n-------d93kswow$\r\n")
    replies, texts = s.receive(frame, 0)
    assert texts == [] and parse_frame(replies[0]).status == 200


def test_chunks_reassemble_in_order() -> None:
    s = session()
    _, t1 = s.receive(parse_frame(send(b"Hello ", rng="1-6/11", flag="+")), 0)
    _, t2 = s.receive(parse_frame(send(b"world", tid="b786hjs2", rng="7-11/11")), 0)
    assert t1 == [] and t2 == ["Hello world"]


def test_out_of_order_chunk_is_refused_and_dropped() -> None:
    s = session()
    s.receive(parse_frame(send(b"Hello ", rng="1-6/11", flag="+")), 0)
    replies, texts = s.receive(parse_frame(send(b"world", tid="b786hjs2", rng="8-12/12")), 0)
    assert texts == [] and parse_frame(replies[0]).status == 400
    assert s._partial == {}


def test_aborted_message_is_dropped() -> None:
    s = session()
    s.receive(parse_frame(send(b"Hello ", rng="1-6/*", flag="+")), 0)
    _, texts = s.receive(parse_frame(send(b"wor", tid="b786hjs2", rng="7-9/*", flag="#")), 0)
    assert texts == [] and s._partial == {}


def test_oversized_messages_are_refused_with_413() -> None:
    s = session(max_message=100)
    replies, _ = s.receive(parse_frame(send(b"x" * 10, rng="1-10/5000", flag="+")), 0)
    assert parse_frame(replies[0]).status == 413
    # a total of '*' that grows past the limit chunk by chunk
    s.receive(parse_frame(send(b"y" * 60, mid="m2222222", rng="1-60/*", flag="+")), 0)
    replies, texts = s.receive(parse_frame(send(b"y" * 60, tid="c786hjs2", mid="m2222222", rng="61-120/*",
                                                flag="+")), 0)
    assert texts == [] and parse_frame(replies[0]).status == 413 and s._partial == {}


def test_too_many_messages_in_progress() -> None:
    s = session(max_partial=2)
    for i in range(2):
        s.receive(parse_frame(send(b"x", mid=f"mid{i}0000", rng="1-1/*", flag="+")), 0)
    replies, _ = s.receive(parse_frame(send(b"x", mid="mid90000", rng="1-1/*", flag="+")), 0)
    assert parse_frame(replies[0]).status == 413


def test_rate_limit() -> None:
    s = session(rate=1, burst=3)
    statuses = [parse_frame(s.receive(parse_frame(send(b"x", mid=f"m{i}00000")), 0)[0][0]).status for i in range(5)]
    assert statuses == [200, 200, 200, 403, 403]
    assert parse_frame(s.receive(parse_frame(send(b"x", mid="later000")), 1.5)[0][0]).status == 200


def test_other_sessions_paths_and_types_refused() -> None:
    s = session()
    assert parse_frame(s.receive(parse_frame(send(b"x", to="msrp://h:1/other;ws")), 0)[0][0]).status == 481
    assert parse_frame(s.receive(parse_frame(send(b"x", frm="msrp://evil:1/x;ws")), 0)[0][0]).status == 481
    assert parse_frame(s.receive(parse_frame(send(b"<b/>", ctype="text/html")), 0)[0][0]).status == 415
    bad_mid = parse_frame(send(b"x", mid="!"))
    assert parse_frame(s.receive(bad_mid, 0)[0][0]).status == 400


def test_text_is_cleaned() -> None:
    _, texts = session().receive(parse_frame(send("hi\x00\x1b[31m\nthere é".encode())), 0)
    assert texts == ["hi[31m\nthere é"]


def test_send_text_chunks_and_reassembles() -> None:
    out = session(chunk=10).send_text("a" * 25)
    frames = [parse_frame(f) for f in out]
    assert [f.flag for f in frames] == ["+", "+", "$"]
    assert [f.get("Byte-Range") for f in frames] == ["1-10/25", "11-20/25", "21-25/25"]
    peer = MsrpSession(REMOTE, LOCAL)  # the caller's side of the same session
    texts = [t for f in frames for t in peer.receive(f, 0)[1]]
    assert texts == ["a" * 25]


def test_link_keeps_a_backlog_until_attached_and_refuses_a_second_socket() -> None:
    got: list[bytes] = []
    link = MsrpLink(session(), lambda text: None, backlog=2)
    for i in range(3):
        link.send_text(f"m{i}")
    assert link.attach(got.append) and len(got) == 2  # the oldest was dropped
    assert not link.attach(lambda b: None)
    link.send_text("now")
    assert len(got) == 3


def test_sdp_offer_and_answer() -> None:
    offer_sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 df7jal23ls0d.invalid\r\nt=0 0\r\n"
                 "m=message 9 TCP/WSS/MSRP *\r\na=accept-types:text/plain message/cpim\r\n"
                 f"a=path:{REMOTE}\r\n")
    offer = parse_message_offer(offer_sdp)
    assert offer is not None and offer.proto == "TCP/WSS/MSRP" and accepts_text(offer)
    answer = message_answer(offer, LOCAL, "127.0.0.1", 7)
    assert "m=message 8401 TCP/WSS/MSRP *" in answer and f"a=path:{LOCAL}" in answer
    assert parse_message_offer("v=0\r\nm=audio 1 RTP/AVP 0\r\n") is None
    with pytest.raises(ValueError):
        parse_message_offer("v=0\r\nm=message 9 TCP/WS/MSRP *\r\n")  # no path
    assert session_id_of(f"msrp://a:1/x {REMOTE}") == "c1ient99"
    assert session_id_of("http://x/y") is None
    # every id the gateway makes (secrets.token_urlsafe: "-" and "_") is one it finds again
    for _ in range(200):
        sid = secrets.token_urlsafe(12)
        assert session_id_of(f"msrp://gw:443/{sid};ws") == sid
    assert session_id_of("msrp://gw:443/a~b.c_d;ws") == "a~b.c_d"  # RFC 4975 unreserved
    assert session_id_of("msrp://gw:443/a b;ws") is None and session_id_of("msrp://gw:443/a<b>;ws") is None

"""The SIP core driven directly: registrar with digest, OPTIONS, INVITE/ACK/BYE/CANCEL/re-INVITE,
retransmissions, flows."""

from __future__ import annotations

from services.sip import digest
from services.sip.core import (
    CallConfirmed,
    CallDigit,
    CallEnded,
    CallOffered,
    CallReoffered,
    Close,
    CoreSettings,
    Flow,
    Send,
    SipCore,
)
from services.sip.message import SipMessage, SipParseError, parse

UDP = Flow("udp", "10.0.0.2", 5062)
WS1 = Flow("ws", "127.0.0.1", 40000, conn=1)
WS2 = Flow("ws", "127.0.0.1", 40001, conn=2)
SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def make_core(**kw: object) -> SipCore:
    settings = CoreSettings(**kw)  # type: ignore[arg-type]
    return SipCore(settings, digest.DigestAuth("meet.jitsi", {"alice": "secret"}))


def req(method: str, uri: str = "sip:meet.jitsi", *, branch: str = "z9hG4bK1", call_id: str = "c1",
        cseq: int = 1, from_tag: str = "ft", to: str = "<sip:alice@meet.jitsi>", via_transport: str = "UDP",
        via_host: str = "10.0.0.2:5062", extra: list[tuple[str, str]] | None = None, body: bytes = b"",
        content_type: str = "application/sdp") -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{via_transport} {via_host};branch={branch};rport",
        "Max-Forwards: 70",
        f'From: "Alice" <sip:alice@meet.jitsi>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    for k, v in extra or []:
        lines.append(f"{k}: {v}")
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def feed(core: SipCore, flow: Flow, data: bytes, now: float = 0.0) -> list[SipMessage]:
    core.outbox.clear()
    core.receive(flow, parse(data), now)
    return [parse(s.data) for s in core.outbox if isinstance(s, Send)]


def test_options_answered_with_allow() -> None:
    core = make_core()
    [resp] = feed(core, UDP, req("OPTIONS"))
    assert resp.status == 200
    assert "INVITE" in (resp.get("Allow") or "")
    via = resp.top_via
    assert via.params["rport"] == "5062"
    [resp] = feed(core, UDP, req("OPTIONS", branch="z9hG4bKnat", via_host="192.168.1.9:5060"))
    assert resp.top_via.params["received"] == "10.0.0.2"


def register(core: SipCore, flow: Flow, *, contact: str, branch: str, cseq: int, expires: int = 300,
             password: str = "secret", via_transport: str = "UDP") -> SipMessage:
    [challenge] = feed(core, flow, req("REGISTER", branch=branch + "a", cseq=cseq, via_transport=via_transport,
                                       extra=[("Contact", contact), ("Expires", str(expires))]))
    assert challenge.status == 401
    values = [v for k, v in challenge.headers if k == "WWW-Authenticate"]
    assert values[0].find("SHA-256") > 0 and "MD5" in values[1]
    auth = digest.answer(values[0], "alice", password, "REGISTER", "sip:meet.jitsi")
    [resp] = feed(core, flow, req("REGISTER", branch=branch + "b", cseq=cseq + 1, via_transport=via_transport,
                                  extra=[("Contact", contact), ("Expires", str(expires)),
                                         ("Authorization", auth), ("Supported", "outbound, path")]))
    return resp


def test_register_with_digest_then_binding_listed() -> None:
    core = make_core()
    resp = register(core, UDP, contact="<sip:alice@10.0.0.2:5062>", branch="z9hG4bKr1", cseq=1)
    assert resp.status == 200
    assert "expires=300" in (resp.get("Contact") or "")
    [binding] = core.lookup("sip:alice@meet.jitsi", 0.0)
    assert binding.flow == UDP
    # it expires
    core.tick(301.0)
    assert core.lookup("sip:alice@meet.jitsi", 301.0) == []


def test_register_wrong_password_refused_and_brute_force_blocked() -> None:
    core = make_core(max_auth_failures=3)
    for i in range(3):
        resp = register(core, UDP, contact="<sip:alice@x>", branch=f"z9hG4bKw{i}", cseq=10 * i + 1,
                        password="wrong")
        assert resp.status == 401
    [resp] = feed(core, UDP, req("REGISTER", branch="z9hG4bKlast", cseq=99, extra=[("Contact", "<sip:a@x>")]))
    assert resp.status == 403
    assert core.lookup("sip:alice@meet.jitsi", 0.0) == []


def test_register_for_someone_else_forbidden() -> None:
    core = make_core()
    [challenge] = feed(core, UDP, req("REGISTER", branch="z9hG4bKo1", to="<sip:bob@meet.jitsi>",
                                      extra=[("Contact", "<sip:bob@x>")]))
    auth = digest.answer(challenge.get("WWW-Authenticate") or "", "alice", "secret", "REGISTER", "sip:meet.jitsi")
    [resp] = feed(core, UDP, req("REGISTER", branch="z9hG4bKo2", cseq=2, to="<sip:bob@meet.jitsi>",
                                 extra=[("Contact", "<sip:bob@x>"), ("Authorization", auth)]))
    assert resp.status == 403


def test_outbound_registration_moves_to_new_flow_and_dies_with_it() -> None:
    core = make_core()
    contact = '<sip:abc@df7jal23ls0d.invalid;transport=ws>;+sip.instance="<urn:uuid:1>";reg-id=1'
    resp = register(core, WS1, contact=contact, branch="z9hG4bKf1", cseq=1, via_transport="WSS")
    assert resp.status == 200 and resp.get("Require") == "outbound"
    resp = register(core, WS2, contact=contact.replace("abc@df7", "xyz@qq9"), branch="z9hG4bKf2", cseq=5,
                    via_transport="WSS")
    [binding] = core.lookup("sip:alice@meet.jitsi", 0.0)
    assert binding.flow == WS2
    core.flow_closed(WS1, 1.0)
    assert core.lookup("sip:alice@meet.jitsi", 1.0)
    core.flow_closed(WS2, 1.0)
    assert core.lookup("sip:alice@meet.jitsi", 1.0) == []


def test_register_interval_too_brief() -> None:
    core = make_core(register_auth=False)
    [resp] = feed(core, UDP, req("REGISTER", extra=[("Contact", "<sip:alice@x>"), ("Expires", "5")]))
    assert resp.status == 423 and resp.get("Min-Expires") == "60"


def invite(core: SipCore, flow: Flow = UDP, *, room: str = "myroom", branch: str = "z9hG4bKi1",
           via_transport: str = "UDP") -> tuple[list[SipMessage], str]:
    out = feed(core, flow, req("INVITE", f"sip:{room}@meet.jitsi", branch=branch, to=f"<sip:{room}@meet.jitsi>",
                               via_transport=via_transport, extra=[("Contact", "<sip:alice@10.0.0.2:5062>")],
                               body=SDP))
    offered = [e for e in core.events if isinstance(e, CallOffered)]
    return out, offered[-1].call.key if offered else ""


def test_invite_answer_ack_bye() -> None:
    core = make_core()
    out, key = invite(core)
    assert [m.status for m in out] == [100]
    call = core.calls[key]
    assert call.room == "myroom" and call.display_name == "Alice" and call.offer == SDP
    core.outbox.clear()
    assert core.answer(key, b"v=0\r\n", 0.1)
    [ok] = [parse(s.data) for s in core.outbox if isinstance(s, Send)]
    assert ok.status == 200 and ok.body == b"v=0\r\n"
    to_tag = ok.get("To").split("tag=")[1]  # type: ignore[union-attr]
    # 2xx retransmitted over UDP until ACK
    core.outbox.clear()
    core.tick(0.7)
    assert [parse(s.data).status for s in core.outbox if isinstance(s, Send)] == [200]
    ack = req("ACK", "sip:myroom@127.0.0.1", branch="z9hG4bKack", to=f"<sip:myroom@meet.jitsi>;tag={to_tag}")
    assert feed(core, UDP, ack, 0.8) == []
    assert any(isinstance(e, CallConfirmed) for e in core.events)
    core.outbox.clear()
    core.tick(5.0)
    assert core.outbox == []
    # re-INVITE with an offer -> event, answered
    reinv = req("INVITE", "sip:myroom@127.0.0.1", branch="z9hG4bKre", cseq=2,
                to=f"<sip:myroom@meet.jitsi>;tag={to_tag}", body=SDP + b"a=sendonly\r\n")
    out = feed(core, UDP, reinv, 6.0)
    assert [m.status for m in out] == [100]
    assert isinstance(core.events[-1], CallReoffered)
    core.outbox.clear()
    core.answer(key, b"v=0\r\na=recvonly\r\n", 6.1)
    [ok2] = [parse(s.data) for s in core.outbox if isinstance(s, Send)]
    assert ok2.status == 200 and ok2.cseq == (2, "INVITE")
    feed(core, UDP, req("ACK", "sip:myroom@127.0.0.1", branch="z9hG4bKack2", cseq=2,
                        to=f"<sip:myroom@meet.jitsi>;tag={to_tag}"), 6.2)
    bye = req("BYE", "sip:myroom@127.0.0.1", branch="z9hG4bKbye", cseq=3, to=f"<sip:myroom@meet.jitsi>;tag={to_tag}")
    [resp] = feed(core, UDP, bye, 7.0)
    assert resp.status == 200
    assert isinstance(core.events[-1], CallEnded) and key not in core.calls
    # retransmitted BYE: same answer from the transaction
    [again] = feed(core, UDP, bye, 7.1)
    assert again.status == 200


def test_cancel_before_answer() -> None:
    core = make_core()
    _, key = invite(core)
    cancel = req("CANCEL", "sip:myroom@meet.jitsi", branch="z9hG4bKi1", to="<sip:myroom@meet.jitsi>")
    out = feed(core, UDP, cancel, 0.2)
    assert sorted((m.status, m.cseq[1]) for m in out) == [(200, "CANCEL"), (487, "INVITE")]
    assert isinstance(core.events[-1], CallEnded) and key not in core.calls
    # 487 retransmitted until the ACK (timer G), then quiet
    core.outbox.clear()
    core.tick(0.8)
    assert [parse(s.data).status for s in core.outbox] == [487]
    tag = out[-1].get("To").split("tag=")[1] if "tag=" in (out[-1].get("To") or "") else "x"  # type: ignore[union-attr]
    feed(core, UDP, req("ACK", "sip:myroom@meet.jitsi", branch="z9hG4bKi1", to=f"<sip:myroom@meet.jitsi>;tag={tag}"))
    core.outbox.clear()
    core.tick(3.0)
    assert core.outbox == []


def test_cancel_unknown_is_481() -> None:
    core = make_core()
    [resp] = feed(core, UDP, req("CANCEL", "sip:x@meet.jitsi", branch="z9hG4bKnone"))
    assert resp.status == 481


def test_invite_to_foreign_domain_or_bad_room_is_404() -> None:
    core = make_core()
    out, key = invite(core, room="Bad%20Room")
    assert [m.status for m in out] == [100, 404] and key == ""
    out = feed(core, UDP, req("INVITE", "sip:room@evil.example", branch="z9hG4bKfd",
                              extra=[("Contact", "<sip:a@b>")], body=SDP))
    assert out[-1].status == 404


def test_gateway_hangup_sends_bye_over_the_dialog_flow() -> None:
    core = make_core()
    _out, key = invite(core, WS1, via_transport="WSS")
    core.answer(key, b"v=0\r\n", 0.1)
    ok = parse(core.outbox[-1].data)  # type: ignore[union-attr]
    tag = ok.get("To").split("tag=")[1]  # type: ignore[union-attr]
    feed(core, WS1, req("ACK", "sip:myroom@127.0.0.1", branch="z9hG4bKa", via_transport="WSS",
                        to=f"<sip:myroom@meet.jitsi>;tag={tag}"))
    core.outbox.clear()
    core.hangup(key, "conference ended", 1.0)
    [send] = core.outbox
    assert isinstance(send, Send) and send.flow == WS1
    bye = parse(send.data)
    assert bye.method == "BYE" and bye.uri == "sip:alice@10.0.0.2:5062"
    assert "WS " in (bye.get("Via") or "")


def test_unanswered_call_times_out_with_480() -> None:
    core = make_core(offer_timeout=5.0)
    _, key = invite(core)
    core.outbox.clear()
    core.tick(5.5)
    assert [parse(s.data).status for s in core.outbox] == [480]
    assert key not in core.calls


def test_ack_never_comes_ends_call_with_bye() -> None:
    core = make_core()
    _, key = invite(core)
    core.answer(key, b"v=0\r\n", 0.0)
    for t in range(1, 34):
        core.tick(float(t))
    assert key not in core.calls
    assert any(parse(s.data).method == "BYE" for s in core.outbox if isinstance(s, Send))


def test_unknown_method_405() -> None:
    core = make_core()
    [resp] = feed(core, UDP, req("SUBSCRIBE", branch="z9hG4bKsub"))
    assert resp.status == 405


def test_malformed_request_400_and_stream_closed() -> None:
    core = make_core()
    bad = req("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: 50")
    try:
        parse(bad)
    except SipParseError as exc:
        core.receive_error(WS1, exc, 0.0)
    [send, close] = core.outbox
    assert isinstance(send, Send) and parse(send.data).status == 400
    assert isinstance(close, Close)


def test_transaction_table_is_bounded_and_a_flood_of_answered_requests_cannot_fill_it() -> None:
    core = make_core(max_transactions=5)
    _, key = invite(core)  # in progress (waiting for the meeting): never forgotten
    for i in range(20):  # a flood answered at once: the oldest completed ones make room
        [resp] = feed(core, UDP, req("OPTIONS", branch=f"z9hG4bKb{i}"))
        assert resp.status == 200
    assert len(core._server) == 5 and core.counters["transactions_evicted"] == 16
    [again] = feed(core, UDP, req("OPTIONS", branch="z9hG4bKb19"))  # a retransmission: still known
    assert again.status == 200
    assert core.calls[key].state == "offered"
    # every one in progress: 503 for one more
    full = make_core(max_transactions=1)
    invite(full)
    [resp] = feed(full, UDP, req("OPTIONS", branch="z9hG4bKover"))
    assert resp.status == 503


def confirmed_call(core: SipCore) -> tuple[str, str]:
    _, key = invite(core)
    core.outbox.clear()
    core.answer(key, b"v=0\r\n", 0.1)
    [ok] = [parse(s.data) for s in core.outbox if isinstance(s, Send)]
    to_tag = ok.get("To").split("tag=")[1]  # type: ignore[union-attr]
    feed(core, UDP, req("ACK", "sip:myroom@127.0.0.1", branch="z9hG4bKack", to=f"<sip:myroom@meet.jitsi>;tag={to_tag}"))
    return key, to_tag


def test_info_dtmf_relay_and_dtmf_become_digits_bounded_and_checked() -> None:
    core = make_core()
    key, to_tag = confirmed_call(core)
    to = f"<sip:myroom@meet.jitsi>;tag={to_tag}"
    cseq = iter(range(2, 1000))

    def info(body: bytes, content_type: str = "application/dtmf-relay", now: float = 1.0) -> int:
        [resp] = feed(core, UDP, req("INFO", "sip:myroom@127.0.0.1", branch=f"z9hG4bKinfo{next(cseq)}",
                                     cseq=next(cseq), to=to, body=body, content_type=content_type), now)
        return resp.status

    core.events.clear()
    assert info(b"Signal=4\r\nDuration=160\r\n") == 200
    assert info(b"#", "application/dtmf") == 200
    assert info(b"11", "application/dtmf") == 200  # the event number of '#'
    assert [(e.call.key, e.digit) for e in core.events if isinstance(e, CallDigit)] == [
        (key, "4"), (key, "#"), (key, "#")]
    core.events.clear()
    assert info(b"Signal=Z\r\n") == 400
    assert info(b"Duration=160\r\n") == 400
    assert info(b"Signal=1\r\nSignal=2\r\n") == 400
    assert info(b"\xff\xfe", "application/dtmf") == 400
    assert info(b"Signal=1\r\n" + b"x" * 300) == 400
    assert info(b"<xml/>", "application/xml") == 415
    assert core.events == []
    # a flood: the burst passes, the rest is refused until the bucket refills
    statuses = [info(b"Signal=1\r\n", now=2.0) for _ in range(40)]
    assert statuses.count(200) <= 21 and statuses[-1] == 403
    assert info(b"Signal=1\r\n", now=10.0) == 200
    # outside a dialog
    [resp] = feed(core, UDP, req("INFO", "sip:myroom@127.0.0.1", branch="z9hG4bKinfoX", call_id="nope",
                                 to=to, body=b"Signal=1", content_type="application/dtmf-relay"))
    assert resp.status == 481

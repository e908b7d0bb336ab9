"""Hostile SIP against the gateway process (``python -m services.sip``), over UDP, TCP and
WebSocket: malformed messages get a 400 and nothing else (a stream is then closed), floods and
guessing are bounded, and the gateway keeps serving an honest client throughout."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from services.sip import audio, dtmf
from services.sip.message import SipMessage
from tests.integration.sip_client import DOMAIN, SipClient, gateway_process, get_json, request


@pytest.fixture(scope="module")
def gateway() -> Iterator[dict[str, int]]:
    proc, ports = gateway_process({"SIP_WS_ORIGINS": "https://meet.example", "SIP_MSRP_BIND_TIMEOUT": "3"})
    with proc:
        yield ports


def client(kind: str, ports: dict[str, int], **kw: object) -> SipClient:
    port = ports["ws"] if kind == "ws" else ports["sip"]
    headers = {"Origin": "https://meet.example"} if kind == "ws" else None
    return SipClient(kind, "127.0.0.1", port, ws_headers=headers, **kw)  # type: ignore[arg-type]


def options(c: SipClient) -> bytes:
    return request("OPTIONS", f"sip:{DOMAIN}", transport=c.via_transport, host=c.local).to_bytes()


def still_serves(ports: dict[str, int]) -> None:
    c = client("udp", ports)
    try:
        c.send_raw(options(c))
        resp = c.recv()
        assert resp is not None and resp.status == 200
    finally:
        c.close()


MALFORMED = {
    "content-length-too-big": lambda raw: raw.replace(b"Content-Length: 0", b"Content-Length: 99999"),
    "content-length-negative": lambda raw: raw.replace(b"Content-Length: 0", b"Content-Length: -4"),
    "content-length-junk": lambda raw: raw.replace(b"Content-Length: 0", b"Content-Length: 1e3"),
    "no-call-id": lambda raw: b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"Call-ID")),
    "no-cseq": lambda raw: b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"CSeq")),
    "no-from": lambda raw: b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"From")),
    "cseq-method-mismatch": lambda raw: raw.replace(b"1 OPTIONS", b"1 INVITE"),
    "too-many-headers": lambda raw: raw.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 200),
    "oversized": lambda raw: raw.replace(b"Max-Forwards: 70\r\n", b"X-Pad: " + b"a" * 30000 + b"\r\n"),
}


@pytest.mark.parametrize("kind", ["udp", "tcp", "ws"])
@pytest.mark.parametrize("attack", sorted(MALFORMED))
def test_malformed_request_gets_400_and_nothing_else(gateway: dict[str, int], kind: str, attack: str) -> None:
    if kind == "ws" and attack == "oversized":
        pytest.skip("covered by test_oversized_websocket_message_closes_the_connection")
    c = client(kind, gateway)
    try:
        raw = MALFORMED[attack](options(c))
        c.send_raw(raw)
        resp = c.recv(10)
        assert resp is not None and resp.status == 400, resp
        assert resp.call_id == "" or resp.call_id in raw.decode(errors="replace")
        if kind in ("tcp", "ws") and attack.startswith(("content-length", "oversized")):
            assert c.closed(10)  # the stream cannot be trusted after a bad length
        else:
            assert c.recv(1.0) is None  # nothing else
    finally:
        c.close()
    still_serves(gateway)


def test_oversized_websocket_message_closes_the_connection(gateway: dict[str, int]) -> None:
    c = client("ws", gateway)
    try:
        c.send_raw(options(c).replace(b"Max-Forwards: 70\r\n", b"X-Pad: " + b"a" * 40000 + b"\r\n"))
        assert c.closed(10)  # over the WebSocket message limit: 1009, no SIP answer
    finally:
        c.close()
    still_serves(gateway)


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_garbage_gets_nothing(gateway: dict[str, int], kind: str) -> None:
    c = client(kind, gateway)
    try:
        c.send_raw(b"\x16\x03\x01\x02\x00GARBAGE\r\n\r\n")
        assert c.recv(1.5) is None
    finally:
        c.close()
    still_serves(gateway)


def test_response_never_answered(gateway: dict[str, int]) -> None:
    c = client("udp", gateway)
    try:
        c.send_raw(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
                   b"To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
        assert c.recv(1.5) is None
    finally:
        c.close()


def test_password_guessing_is_cut_off(gateway: dict[str, int]) -> None:
    c = client("tcp", gateway)
    try:
        statuses = []
        for i in range(25):
            resp = c.register("alice", f"guess-{i}")
            statuses.append(resp.status if resp else None)
        assert statuses[0] == 401
        assert statuses[-1] == 403  # blocked for this source, without a new challenge
        assert get_json(gateway["http"], "/registrations") == []
    finally:
        c.close()


def test_websocket_without_sip_subprotocol_or_from_foreign_origin_refused(gateway: dict[str, int]) -> None:
    with pytest.raises(InvalidStatus) as info:
        SipClient("ws", "127.0.0.1", gateway["ws"], subprotocols=["xmpp"],
                  ws_headers={"Origin": "https://meet.example"})
    assert info.value.response.status_code == 400
    with pytest.raises(InvalidStatus) as info:
        SipClient("ws", "127.0.0.1", gateway["ws"], ws_headers={"Origin": "https://evil.example"})
    assert info.value.response.status_code == 403


def test_invite_without_sdp_or_to_bad_room_refused(gateway: dict[str, int]) -> None:
    c = client("udp", gateway)
    try:
        c.send(request("INVITE", f"sip:room@{DOMAIN}", host=c.local, to=f"<sip:room@{DOMAIN}>",
                       extra=[("Contact", f"<sip:alice@{c.local}>")]))
        resp = c.recv_final()
        assert resp is not None and resp.status == 488
        c.send(request("INVITE", f"sip:..%2f..@{DOMAIN}", host=c.local, to=f"<sip:x@{DOMAIN}>",
                       extra=[("Contact", f"<sip:alice@{c.local}>")], body=b"v=0\r\n"))
        resp = c.recv_final()
        assert resp is not None and resp.status == 404
    finally:
        c.close()


# ------------------------------------------------------------------------- MSRP over WebSocket


def msrp_socket(gateway: dict[str, int], subprotocol: str = "msrp", path: str = "/msrp-ws") -> ClientConnection:
    return ws_connect(f"ws://127.0.0.1:{gateway['ws']}{path}", subprotocols=[subprotocol],  # type: ignore[list-item]
                      additional_headers={"Origin": "https://meet.example"}, open_timeout=10)


def closed_with(ws: ClientConnection, within: float = 10) -> int | None:
    """The close code once the gateway closed the socket (None if it did not within ``within``)."""
    try:
        while True:
            ws.recv(timeout=within)
    except TimeoutError:
        return None
    except ConnectionClosed:
        return ws.close_code


def test_msrp_websocket_needs_its_subprotocol_on_its_path(gateway: dict[str, int]) -> None:
    with pytest.raises(InvalidStatus) as info:
        msrp_socket(gateway, subprotocol="sip")  # /msrp-ws offering only sip
    assert info.value.response.status_code == 400
    with pytest.raises(InvalidStatus) as info:
        msrp_socket(gateway, path="/sip-ws")  # /sip-ws offering only msrp
    assert info.value.response.status_code == 400


@pytest.mark.parametrize("frame, status", [
    (b"MSRP abcd1234 SEND\r\nTo-Path: msrp://x/y;ws\r\n", 400),  # no end line: answered, then closed
    (b"MSRP abcd1234 SEND\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(100)) + b"-------abcd1234$\r\n", 400),
    (b"\x00\xff garbage", None),  # not MSRP at all: closed without an answer
    (b"MSRP abcd1234 SEND\r\nTo-Path: msrp://127.0.0.1:1/nosuchsession;ws\r\nFrom-Path: msrp://a.invalid/b;ws\r\n"
     b"Message-ID: m1234567\r\nByte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------abcd1234$\r\n", 481),
])
def test_malformed_or_unknown_msrp_is_answered_then_closed(gateway: dict[str, int], frame: bytes,
                                                           status: int | None) -> None:
    with msrp_socket(gateway) as ws:
        ws.send(frame)
        if status is not None:
            reply = ws.recv(timeout=10)
            reply_bytes = reply.encode() if isinstance(reply, str) else reply
            assert reply_bytes.startswith(f"MSRP abcd1234 {status}".encode()), reply_bytes[:80]
        assert closed_with(ws) == 1008
    still_serves(gateway)


def test_oversized_msrp_frame_closes_the_connection(gateway: dict[str, int]) -> None:
    with msrp_socket(gateway) as ws:
        ws.send(b"MSRP abcd1234 SEND\r\nX: " + b"a" * 40000 + b"\r\n-------abcd1234$\r\n")
        assert closed_with(ws) == 1009  # over the WebSocket message limit, nothing parsed
    still_serves(gateway)


def test_silent_msrp_socket_is_closed_after_the_bind_timeout(gateway: dict[str, int]) -> None:
    with msrp_socket(gateway) as ws:
        assert closed_with(ws, within=20) == 1008  # SIP_MSRP_BIND_TIMEOUT=3 in this gateway


# ------------------------------------------------------------------------- dial-in DTMF


@pytest.fixture(scope="module")
def dial_in_gateway() -> Iterator[dict[str, int]]:
    proc, ports = gateway_process({"SIP_DIALIN_PINS": "1234:room"})
    with proc:
        yield ports


def dial_in_call(c: SipClient, rtp_port: int) -> tuple[str, str, SipMessage]:
    """A dial-in INVITE from ``c`` offering PCMU and telephone-event (RFC 4733) on ``rtp_port``,
    answered 200 and ACKed: its Call-ID, From tag and the 200."""
    offer = (f"v=0\r\no=m 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
             f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n").encode()
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    c.send(request("INVITE", f"sip:dialin@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag,
                   to=f"<sip:dialin@{DOMAIN}>", extra=[("Contact", f"<sip:m@{c.local}>")], body=offer))
    ok = c.recv_final(20)
    assert ok is not None and ok.status == 200, ok
    c.send(request("ACK", f"sip:dialin@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag, to=ok.get("To")))
    return call_id, tag, ok


def test_telephone_event_flood_and_garbage_rtp_end_the_dial_in_call(dial_in_gateway: dict[str, int]) -> None:
    """A dial-in caller (answered before any meeting: no XMPP needed) floods its RTP socket with
    garbage, malformed and unknown events and endless digits: what it cannot take is dropped (a
    bounded digit queue), three wrong attempts (over-long, or timed out once the queue dropped
    their '#') end the call with a BYE, and the gateway keeps serving."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    c = client("udp", dial_in_gateway)
    try:
        _, _, ok = dial_in_call(c, rtp.getsockname()[1])
        answer = audio.parse_plain_offer(ok.body.decode())
        target = (answer.address, answer.port)
        for i in range(300):  # garbage, truncated RTP, truncated and unknown events, oversized
            rtp.sendto(secrets.token_bytes(i % 40), target)
            rtp.sendto(audio.rtp_packet(101, i, i, 7, b"\x01"), target)
            rtp.sendto(audio.rtp_packet(101, i, 10_000 + i, 7, dtmf.event_payload(200, True, 160)), target)
        rtp.sendto(audio.rtp_packet(0, 1, 1, 7, b"\xff" * 4000), target)
        ts = 100_000
        for _attempt in range(3):  # 3 PINs of 200 digits each
            for d in "5" * 200 + "#":
                ts += 160
                for _ in range(3):  # each event's end packet sent three times: counted once
                    rtp.sendto(audio.rtp_packet(101, ts & 0xFFFF, ts, 7,
                                                dtmf.event_payload(dtmf.DIGITS.index(d), True, 160)), target)
        still_serves(dial_in_gateway)
        bye = c.recv(90)  # at most 3 digit timeouts of 15 s
        assert bye is not None and bye.method == "BYE", bye
        assert "3 times" in (bye.get("Reason") or ""), bye.get("Reason")
        calls = get_json(dial_in_gateway["http"], "/calls")
        assert calls == [], calls
    finally:
        rtp.close()
        c.close()
    still_serves(dial_in_gateway)


def test_hostile_sip_info_dtmf_is_refused_and_bounded(dial_in_gateway: dict[str, int]) -> None:
    """SIP INFO digits (RFC 6086; JsSIP's default DTMF) from a dial-in caller: malformed bodies
    get 400, other content types 415, INFO outside the dialog 481, and a flood is cut at the
    caller's digit rate (403) while the gateway keeps serving."""
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    c = client("udp", dial_in_gateway)
    try:
        call_id, tag, ok = dial_in_call(c, rtp.getsockname()[1])
        cseq = iter(range(2, 10_000))

        def send_info(body: bytes, content_type: str = "application/dtmf-relay", dialog: str = call_id) -> None:
            msg = request("INFO", f"sip:dialin@{DOMAIN}", host=c.local, call_id=dialog, from_tag=tag,
                          cseq=next(cseq), to=ok.get("To"))
            msg.add("Content-Type", content_type)
            msg.body = body
            c.send(msg)

        def info(body: bytes, content_type: str = "application/dtmf-relay", dialog: str = call_id) -> int:
            send_info(body, content_type, dialog)
            resp = c.recv_final(10)
            assert resp is not None
            return resp.status

        assert info(b"Signal=9\r\nDuration=160\r\n") == 200
        assert info(b"Signal=\r\n") == 400
        assert info(b"Signal=1\r\nSignal=2\r\n") == 400
        assert info(b"Signal=" + b"9" * 5000) == 400
        assert info(b"\x00\xff\xfe", "application/dtmf") == 400
        assert info(b"99", "application/dtmf") == 400
        assert info(b"<x/>", "application/x-evil") == 415
        assert info(b"Signal=1", dialog="no-such-dialog") == 481
        for _ in range(200):  # sent at once, answers read afterwards
            send_info(b"Signal=5\r\n")
        statuses = []
        while len(statuses) < 200 and (resp := c.recv_final(10)) is not None:
            statuses.append(resp.status)
        # UDP may drop some of a burst; of those answered, all but the burst and refill are refused
        assert len(statuses) >= 100 and statuses.count(200) <= 60 and set(statuses) <= {200, 403}, statuses
        still_serves(dial_in_gateway)
        [call] = [x for x in get_json(dial_in_gateway["http"], "/calls") if x["call_id"] == call_id]
        assert call["state"] == "confirmed" and call["pin_attempt"] >= 1, call
        c.send(request("BYE", f"sip:dialin@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag,
                       cseq=next(cseq), to=ok.get("To")))
    finally:
        rtp.close()
        c.close()
    still_serves(dial_in_gateway)


def test_media_goes_only_to_an_address_that_sends_rtp(dial_in_gateway: dict[str, int]) -> None:
    """A caller's SDP can name any address (a forged INVITE, or a caller pointing its call at a
    victim): the gateway sends G.711 at 50 packets a second there only for the first second, then
    holds it until RTP arrives from that address (services/sip/consent.py), so one INVITE cannot
    make it stream to someone who never asked for it."""
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.1", 0))
    victim.settimeout(0.1)
    c = client("udp", dial_in_gateway)

    def received_for(seconds: float) -> int:
        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                victim.recvfrom(4096)
                count += 1
            except TimeoutError:
                pass
        return count

    try:
        call_id, tag, ok = dial_in_call(c, victim.getsockname()[1])
        got = received_for(4.0)
        assert got <= 60, f"{got} packets sent to an address that sent none (50 a second unbounded)"
        [call] = get_json(dial_in_gateway["http"], "/calls")
        assert call["rtp_held"] > 100, call
        # the address sends RTP: it is sent media from then on
        answer = audio.parse_plain_offer(ok.body.decode())
        victim.sendto(audio.rtp_packet(0, 1, 160, 9, b"\xff" * 160), (answer.address, answer.port))
        assert received_for(1.0) >= 30
        c.send(request("BYE", f"sip:dialin@{DOMAIN}", host=c.local, call_id=call_id, from_tag=tag, cseq=2,
                       to=ok.get("To")))
    finally:
        victim.close()
        c.close()
    still_serves(dial_in_gateway)


def test_a_flood_of_requests_cannot_fill_the_transaction_table() -> None:
    """Requests answered at once (OPTIONS with a new branch each, as from many spoofed sources)
    used to stay in the transaction table for 64*T1 (32 s) each: a few thousand a second filled
    it and every other caller got 503 for half a minute. Now the oldest answered ones make room."""
    proc, ports = gateway_process({"SIP_MAX_TRANSACTIONS": "64"})
    with proc:
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flood.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{flood.getsockname()[1]}"
        try:
            for i in range(400):
                flood.sendto(request("OPTIONS", f"sip:{DOMAIN}", host=host, branch=f"z9hG4bKf{i}").to_bytes(),
                             ("127.0.0.1", ports["sip"]))  # fmt: skip
                if i % 50 == 49:
                    time.sleep(0.05)  # let the gateway read them (UDP drops what overflows)
            time.sleep(0.5)
            c = client("udp", ports)
            try:
                for _ in range(3):
                    c.send_raw(options(c))
                    resp = c.recv()
                    assert resp is not None and resp.status == 200, resp
            finally:
                c.close()
        finally:
            flood.close()


def test_one_websocket_guesser_behind_nginx_does_not_lock_out_the_others() -> None:
    """Every SIP WebSocket comes from nginx: the failed-authentication counter (20 a minute per
    address) must count the client's address nginx forwards, or one guest guessing passwords over
    /sip-ws locks every browser's registration out."""
    proc, ports = gateway_process({"SIP_WS_ORIGINS": "https://meet.example"})
    with proc:
        def via_nginx(client_ip: str) -> SipClient:
            headers = {"Origin": "https://meet.example", "X-Forwarded-For": f"10.9.9.9, {client_ip}"}
            return SipClient("ws", "127.0.0.1", ports["ws"], ws_headers=headers)

        guesser = via_nginx("203.0.113.7")
        try:
            statuses = [getattr(guesser.register("alice", f"guess-{i}"), "status", None) for i in range(25)]
            assert statuses[0] == 401 and statuses[-1] == 403, statuses
        finally:
            guesser.close()
        honest = via_nginx("198.51.100.9")
        try:
            resp = honest.register("alice", "alice-secret")
            assert resp is not None and resp.status == 200, resp
        finally:
            honest.close()
        # the left-most entries are the client's own say: a guesser cannot pick its address
        again = SipClient("ws", "127.0.0.1", ports["ws"],
                          ws_headers={"Origin": "https://meet.example", "X-Forwarded-For": "198.51.100.9, 203.0.113.7"})  # fmt: skip
        try:
            assert getattr(again.register("alice", "guess-x"), "status", None) == 403
        finally:
            again.close()

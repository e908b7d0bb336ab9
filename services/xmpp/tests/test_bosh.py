"""BOSH sessions driven through the HTTP handler, without sockets."""

import asyncio
import re

from services.xmpp.bosh import BOSH_NS, BoshService
from services.xmpp.config import load
from services.xmpp.server import XmppServer


def make_service(**environ: str) -> BoshService:
    return BoshService(XmppServer(load(environ=environ)))


def body(rid: int, inner: str = "", **attrs: str) -> bytes:
    extra = "".join(f" {k.replace('__', ':')}='{v}'" for k, v in attrs.items())
    return f"<body xmlns='{BOSH_NS}' rid='{rid}'{extra}>{inner}</body>".encode()


async def test_session_creation_login_bind_and_held_request():
    bosh = make_service()
    created = bosh.handle_http(
        "POST",
        {},
        body(1, to="meet.jitsi", wait="5", hold="1", xmlns__xmpp="urn:xmpp:xbosh", xmpp__version="1.0"),
    )
    text = created.body.decode()
    sid = re.search(r"sid='([^']+)'", text).group(1)
    assert "ANONYMOUS" in text and "requests='2'" in text
    r = await bosh.handle_http(
        "POST", {}, body(2, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>", sid=sid)
    )
    assert b"<success" in r.body
    r = await bosh.handle_http(
        "POST", {}, body(3, sid=sid, to="meet.jitsi", xmpp__restart="true", xmlns__xmpp="urn:xmpp:xbosh")
    )
    assert b"urn:ietf:params:xml:ns:xmpp-bind" in r.body
    r = await bosh.handle_http(
        "POST",
        {},
        body(
            4,
            "<iq xmlns='jabber:client' type='set' id='b'>"
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
            sid=sid,
        ),
    )
    jid = re.search(rb"<jid>([^<]+)</jid>", r.body).group(1).decode()
    held = asyncio.ensure_future(bosh.handle_http("POST", {}, body(5, sid=sid)))
    await asyncio.sleep(0.05)
    assert not held.done()  # nothing to say yet: the request is held
    bosh.server.broker.send_to(
        bosh.sessions[sid].session.jid, f"<message to='{jid}'><body>hi</body></message>".encode()
    )
    r = await asyncio.wait_for(held, 1)
    assert b"<body>hi</body>" in r.body
    r = await bosh.handle_http("POST", {}, body(6, sid=sid, type="terminate"))
    assert b"terminate" in r.body and sid not in bosh.sessions


def test_bad_requests_are_terminated_with_a_condition():
    bosh = make_service()
    assert b"item-not-found" in bosh.handle_http("POST", {}, body(1, sid="nope")).body
    assert bosh.handle_http("POST", {}, b"<not-bosh/>").status == 400
    assert bosh.handle_http("POST", {}, b"<body xmlns='http://jabber.org/protocol/httpbind'").status == 400
    assert bosh.handle_http("OPTIONS", {}, b"").status == 200


async def test_sessions_per_address_are_capped_and_freed_when_they_end():
    bosh = make_service(XMPP_BOSH_REFUSAL_DELAY="0")
    cap = bosh.config.max_sessions_per_address
    sids = []
    for _ in range(cap):
        created = bosh.handle_http("POST", {}, body(1, to="meet.jitsi"), address="203.0.113.7")
        sids.append(re.search(r"sid='([^']+)'", created.body.decode()).group(1))
    refused = bosh.handle_http("POST", {}, body(1, to="meet.jitsi"), address="203.0.113.7")
    assert b"type='terminate'" in refused.body and b"policy-violation" in refused.body
    assert len(bosh.sessions) == cap and bosh.refused_sessions == 1
    # another address is not affected
    other = bosh.handle_http("POST", {}, body(1, to="meet.jitsi"), address="203.0.113.8")
    assert b"sid=" in other.body
    # one session ends (terminate): one more may open
    await bosh.handle_http("POST", {}, body(2, sid=sids[0], type="terminate"), address="203.0.113.7")
    again = bosh.handle_http("POST", {}, body(1, to="meet.jitsi"), address="203.0.113.7")
    assert b"sid=" in again.body
    # sessions that stop polling are swept and stop counting
    bosh.sweep(10**12)
    assert not bosh.sessions and not bosh.per_address


async def test_a_refused_session_is_answered_after_the_refusal_delay_and_few_wait_at_once():
    bosh = make_service(XMPP_BOSH_MAX_SESSIONS_PER_ADDRESS="2", XMPP_BOSH_REFUSAL_DELAY="0.2")
    create = lambda: bosh.handle_http("POST", {}, body(1, to="meet.jitsi"), address="203.0.113.9")  # noqa: E731
    assert b"sid=" in create().body and b"sid=" in create().body
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    held = [asyncio.ensure_future(create()) for _ in range(2)]  # refusals, held back
    assert bosh.refusing["203.0.113.9"] == 2
    at_once = create()  # more refusals than sessions allowed are waiting: answered at once
    assert b"policy-violation" in at_once.body
    answers = await asyncio.gather(*held)
    assert loop.time() - t0 >= 0.2
    assert all(b"type='terminate'" in a.body and b"policy-violation" in a.body for a in answers)
    assert not bosh.refusing and len(bosh.sessions) == 2 and bosh.refused_sessions == 3


async def test_requests_waiting_for_the_read_budget_are_at_most_the_sessions_requests():
    """A request over the session's read budget waits; a client that sends many at once (the
    same rid again and again, each on its own connection) must not have the broker keep them
    all, parsed, for ever longer: past ``requests`` (hold + 1) waiting at once, the session ends
    with policy-violation (XEP-0124 section 11, overactivity)."""
    bosh = make_service(XMPP_GUEST_RATE_BYTES_PER_SECOND="1000", XMPP_GUEST_BURST_BYTES="1000")
    created = bosh.handle_http("POST", {}, body(1, to="meet.jitsi", hold="1"), address="198.51.100.3")
    sid = re.search(r"sid='([^']+)'", created.body.decode()).group(1)
    filler = "<presence xmlns='jabber:client'/>" * 60  # about 2 KB: over the budget
    requests = [
        asyncio.ensure_future(bosh.handle_http("POST", {}, body(2, filler, sid=sid), address="198.51.100.3"))
        for _ in range(20)
    ]
    await asyncio.sleep(0.05)
    waiting = [r for r in requests if not r.done()]
    try:
        assert len(waiting) <= 2, len(waiting)
        answered = [r.result() for r in requests if r.done()]
        assert answered and all(b"policy-violation" in a.body for a in answered)
        assert bosh.sessions[sid].session.closed if sid in bosh.sessions else True
    finally:
        for r in waiting:
            r.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

"""What a hostile guest may not do, and the limits that bound it, against the sans-I/O core.

Each test shows the attack failing and the well-behaved path next to it still working."""

from __future__ import annotations

import base64

import pytest

from services.xmpp.limits import FailureLimiter, LoginGuard, LogLimiter, in_networks
from services.xmpp.modules.muc import MucService
from services.xmpp.session import SessionLimits
from services.xmpp.stanza import MUC_USER, SASL_NS, SM_NS, STREAMS_NS
from services.xmpp.tests.helpers import AUTH, BREWERY_HOST, DOMAIN, FOCUS, MUC_HOST, Wire, login, make_broker
from services.xmpp.xml import StreamParser, XmlStreamError, parse_document

JOIN = "<presence to='{to}'><x xmlns='http://jabber.org/protocol/muc'/>{extra}</presence>"
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='meet.jitsi' version='1.0'>"
)


def room_with_two_guests(fixed_whois: str | None = "moderators"):
    broker, conf, _ = make_broker()
    conf.fixed_whois = fixed_whois
    if fixed_whois:
        conf.default_config.whois = fixed_whois
    focus = login(broker, AUTH, "focus", "focus")
    focus.send(JOIN.format(to=f"room@{MUC_HOST}/focus", extra=""))
    alice, mallory = login(broker, resource="a"), login(broker, resource="m")
    alice.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=""))
    for w in (focus, alice):
        w.drain()
    return broker, conf, focus, alice, mallory


def items(presence):
    return [x.find("item") for x in presence.find_all("x", MUC_USER)]


# -- MUC -------------------------------------------------------------------------------------
def test_forged_muc_user_item_is_stripped_and_the_server_item_comes_first():
    _b, _c, focus, alice, mallory = room_with_two_guests()
    forged = (
        f"<x xmlns='{MUC_USER}'><item jid='{FOCUS}/focus' affiliation='owner' role='moderator'/></x>"
        "<delay xmlns='urn:xmpp:delay' stamp='2000-01-01T00:00:00Z'/><nick xmlns='http://jabber.org/protocol/nick'>M</nick>"
    )
    mallory.send(JOIN.format(to=f"room@{MUC_HOST}/mallory", extra=forged))
    for viewer, expect_jid in ((focus, str(mallory.session.jid)), (alice, None)):
        pres = next(p for p in viewer.drain() if p.get("from") == f"room@{MUC_HOST}/mallory")
        assert pres.first_element().ns == MUC_USER  # the server's element is the first child
        (item,) = items(pres)  # exactly one muc#user element: the server's
        assert item.get("jid") == expect_jid and item.get("affiliation") == "none"
        assert item.get("role") == "participant"
        assert pres.find("delay") is None and pres.find("nick").text == "M"  # other payload kept


def test_rooms_stay_semi_anonymous_whatever_the_owner_configures():
    _b, conf, focus, _alice, mallory = room_with_two_guests()
    focus.send(
        f"<iq type='set' id='s' to='room@{MUC_HOST}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_whois'><value>anyone</value></field>"
        "</x></query></iq>"
    )
    assert conf.rooms[next(iter(conf.rooms))].config.whois == "moderators"
    out = mallory.send(JOIN.format(to=f"room@{MUC_HOST}/mallory", extra=""))
    seen = [items(p)[0].get("jid") for p in out if p.name == "presence"]
    # alice's real JID stays hidden from a guest; the focus's is public (Jitsi clients check it)
    assert seen[:2] == [str(focus.session.jid), None]
    assert items(focus.drain()[0])[0].get("jid") == str(mallory.session.jid)  # the focus sees it


def test_guest_iq_to_another_occupant_is_refused_and_the_focus_iq_still_passes():
    _b, _c, focus, alice, mallory = room_with_two_guests()
    mallory.send(JOIN.format(to=f"room@{MUC_HOST}/mallory", extra=""))
    for w in (focus, alice, mallory):
        w.drain()
    jingle = "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='x'/>"
    out = mallory.send(f"<iq type='set' id='evil' to='room@{MUC_HOST}/alice'>{jingle}</iq>")
    assert out[0].get("type") == "error" and out[0].find("error").first_element().name == "not-allowed"
    assert alice.drain() == []
    focus.send(f"<iq type='set' id='good' to='room@{MUC_HOST}/alice'>{jingle}</iq>")
    (iq,) = alice.drain()
    assert iq.get("id") == "good" and iq.get("from") == f"room@{MUC_HOST}/focus"
    alice.send(f"<iq type='result' id='good' to='room@{MUC_HOST}/focus'/>")
    assert focus.drain()[0].get("id") == "good"


def test_the_focus_nick_is_reserved_for_the_focus():
    broker, conf, _ = make_broker()
    conf.reserved_nicks = {"focus": FOCUS}
    focus = login(broker, AUTH, "focus", "focus")
    focus.send(JOIN.format(to=f"room@{MUC_HOST}/boss", extra=""))
    guest = login(broker)
    out = guest.send(JOIN.format(to=f"room@{MUC_HOST}/focus", extra=""))
    assert out[0].get("type") == "error" and out[0].find("error").first_element().name == "conflict"
    assert guest.send(JOIN.format(to=f"room@{MUC_HOST}/guest", extra=""))[0].get("type") is None


def test_forged_muc_user_payload_is_dropped_from_messages():
    _b, _c, focus, alice, mallory = room_with_two_guests()
    mallory.send(JOIN.format(to=f"room@{MUC_HOST}/mallory", extra=""))
    for w in (focus, alice):
        w.drain()
    mallory.send(
        f"<message to='room@{MUC_HOST}' type='groupchat'><body>hi</body>"
        f"<x xmlns='{MUC_USER}'><status code='110'/></x></message>"
    )
    got = alice.drain()[0]
    assert got.find("body").text == "hi" and got.find("x", MUC_USER) is None


# -- routing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target", [f"{FOCUS}/focus", f"jvb@{AUTH}/x", str(FOCUS), f"jvbbrewery@{BREWERY_HOST}"]
)
def test_guests_cannot_address_service_accounts_or_the_internal_muc(target):
    broker, _conf, _ = make_broker()
    focus = login(broker, AUTH, "focus", "focus")
    guest = login(broker)
    deep = "<a>" * 20 + "</a>" * 20
    out = guest.send(f"<iq type='get' id='q' to='{target}'><query xmlns='urn:x'>{deep}</query></iq>")
    assert out[0].get("type") == "error"
    assert out[0].find("error").first_element().name == "service-unavailable"
    assert focus.drain() == []
    # the focus stays reachable through its client-proxy address
    guest.send(f"<iq type='get' id='ok' to='focus.{DOMAIN}'><query xmlns='urn:x'/></iq>")
    assert focus.drain()[0].get("id") == "ok"


# -- logins ----------------------------------------------------------------------------------
def test_service_accounts_log_in_only_on_the_internal_listener_or_over_tls():
    broker, *_ = make_broker()
    public = Wire(broker, internal=False)
    out = public.open(AUTH)
    assert out[-1].name == "error" and out[-1].first_element().name == "policy-violation"
    assert public.closed
    assert Wire(broker, internal=False).open(DOMAIN)[-1].name == "features"  # guests are fine
    over_tls = Wire(broker, internal=False, secure=True, limits=SessionLimits())
    mechs = [m.text for m in over_tls.open(AUTH)[-1].find("mechanisms", SASL_NS).elements()]
    assert mechs == ["SCRAM-SHA-1", "PLAIN"]


def test_plain_is_not_offered_without_tls_by_default():
    broker, *_ = make_broker()
    wire = Wire(broker, limits=SessionLimits())
    mechs = [m.text for m in wire.open(AUTH)[-1].find("mechanisms", SASL_NS).elements()]
    assert mechs == ["SCRAM-SHA-1"]
    token = base64.b64encode(b"\0focus\0pw").decode()
    out = wire.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
    assert out[0].name == "failure" and out[0].first_element().name == "invalid-mechanism"


def test_failed_logins_are_limited_per_address_and_per_account():
    broker, *_ = make_broker()
    guard = LoginGuard(per_address=2, per_account=3, window=60)
    limits = SessionLimits(allow_plain_without_tls=True, login_guard=guard)

    def attempt(password: str, address: str) -> str:
        wire = Wire(broker, limits=limits, address=address)
        wire.open(AUTH)
        token = base64.b64encode(f"\0focus\0{password}".encode()).decode()
        out = wire.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
        return out[0].name if out[0].name == "success" else out[0].first_element().name

    assert attempt("wrong", "198.51.100.1") == "not-authorized"
    assert attempt("wrong", "198.51.100.1") == "not-authorized"
    assert attempt("pw", "198.51.100.1") == "temporary-auth-failure"  # this address is blocked
    assert attempt("wrong", "198.51.100.2") == "not-authorized"  # third failure for the account
    assert attempt("pw", "198.51.100.3") == "temporary-auth-failure"  # the account is blocked
    assert attempt("pw", "") == "temporary-auth-failure"
    assert len(guard.addresses) == 2 and len(guard.accounts) == 1


def test_failure_limiter_forgets_with_time_and_stays_bounded():
    lim = FailureLimiter(limit=2, window=10, max_keys=3)
    lim.failed("a", 0)
    lim.failed("a", 1)
    assert lim.blocked("a", 5) and not lim.blocked("a", 10.5)
    for key in "bcdef":
        lim.failed(key, 20)
    assert len(lim) == 3


def test_log_limiter_says_how_many_lines_it_held_back():
    lim = LogLimiter(interval=10)
    assert lim.should_log("k", 0) == (True, 0)
    assert lim.should_log("k", 1) == (False, 0)
    assert lim.should_log("k", 2) == (False, 0)
    assert lim.should_log("k", 11) == (True, 2)


def test_networks():
    assert in_networks("127.0.0.5", ["127.0.0.0/8"]) and in_networks("::ffff:127.0.0.1", ["127.0.0.0/8"])
    assert not in_networks("10.0.0.1", ["127.0.0.0/8", "::1/128"]) and not in_networks("junk", ["0.0.0.0/0"])


# -- outbound queues -------------------------------------------------------------------------
def test_a_client_that_never_acks_is_closed_when_its_queue_passes_the_bound():
    broker, *_ = make_broker()
    timers: list = []
    lazy = Wire(broker, timers=timers, limits=SessionLimits(max_unacked=10))
    login_wire(lazy)
    lazy.send(f"<enable xmlns='{SM_NS}'/>")
    sender = login(broker, resource="s")
    for i in range(11):
        sender.send(f"<message to='{lazy.session.jid}' type='chat'><body>{i}</body></message>")
    assert lazy.session.overflowed and not lazy.session.sm.unacked
    for t in timers:
        t.fire()
    out = lazy.drain()
    assert out[-1].name == "error" and out[-1].first_element().name == "policy-violation"
    assert lazy.closed and broker.session_for(lazy.session.jid) is None
    # the sender is unaffected
    assert (
        sender.send(f"<iq type='get' id='p' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>")[0].get("type")
        == "result"
    )


def login_wire(wire: Wire) -> None:
    wire.open(DOMAIN)
    wire.send(f"<auth xmlns='{SASL_NS}' mechanism='ANONYMOUS'/>")
    wire.open(DOMAIN)
    wire.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    wire.drain()


# -- parser limits ---------------------------------------------------------------------------
def test_nesting_beyond_the_depth_limit_is_a_policy_violation_and_just_below_is_fine():
    ok = HEADER + b"<iq>" + b"<a>" * 30 + b"</a>" * 30 + b"</iq>"
    assert len(StreamParser(max_depth=31).feed(ok)) == 2
    with pytest.raises(XmlStreamError) as err:
        StreamParser(max_depth=31).feed(HEADER + b"<iq>" + b"<a>" * 31)
    assert err.value.condition == "policy-violation"
    with pytest.raises(XmlStreamError):
        parse_document(b"<iq>" + b"<a>" * 2000 + b"</a>" * 2000 + b"</iq>")  # WebSocket frame, no xmlns
    assert parse_document(b"<iq><a/></iq>", default_ns="jabber:client").ns == "jabber:client"


def test_a_stream_refused_for_its_xml_parses_nothing_more():
    """Every parse error closes the stream: what the client still sends is not parsed (no new
    expat parser is made for it), whatever it is."""
    parser = StreamParser()
    parser.feed(HEADER)
    with pytest.raises(XmlStreamError) as err:
        parser.feed(b"<iq>" + b"<a>" * 2000)
    assert err.value.condition == "policy-violation" and parser.pending == 0
    assert parser.feed(HEADER + b"<message><body>hi</body></message>") == []
    assert parser.feed(b"<iq>" + b"<a>" * 2000) == []


def test_a_websocket_frame_parser_is_freed_without_a_garbage_collection():
    """websockets' protocol object and its parsing generator refer to each other; a closed
    connection's is let go at once (with its buffer and last frame), not at a full collection."""
    import gc
    import weakref

    from websockets.protocol import OPEN
    from websockets.server import ServerProtocol

    from services.xmpp.transports.http import release_protocol

    def frame(payload: bytes) -> bytes:  # a masked text frame, as a browser sends
        return bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload

    gc.disable()
    try:
        kept = ServerProtocol(state=OPEN)
        kept.receive_data(frame(b"<a/>" * 3000))
        assert len(kept.events_received()) == 1
        alive = weakref.ref(kept)
        del kept
        assert alive() is not None  # the cycle: only a collection would free it
        freed = ServerProtocol(state=OPEN)
        freed.receive_data(frame(b"<a/>" * 3000))
        freed.events_received()
        release_protocol(freed)
        gone = weakref.ref(freed)
        del freed
        assert gone() is None
    finally:
        gc.enable()


def test_unterminated_start_tag_and_stream_header_are_bounded_while_arriving():
    parser = StreamParser(max_stanza_size=4096)
    parser.feed(HEADER)
    parser.feed(b"<message to='")
    with pytest.raises(XmlStreamError) as err:
        for _ in range(100):
            parser.feed(b"x" * 1024)
    assert err.value.condition == "policy-violation" and parser.pending == 0
    with pytest.raises(XmlStreamError):
        header = StreamParser(max_header=1024)
        header.feed(b"<stream:stream a='")
        header.feed(b"x" * 2048)
    keepalive = StreamParser(max_stanza_size=4096)
    keepalive.feed(HEADER)
    for _ in range(100):
        assert keepalive.feed(b" " * 1024) == []  # whitespace keep-alives are not pending input


def test_too_many_elements_in_one_stanza_is_refused():
    with pytest.raises(XmlStreamError) as err:
        StreamParser(max_elements=100).feed(HEADER + b"<message>" + b"<a/>" * 100)
    assert "elements" in err.value.text
    assert len(StreamParser(max_elements=100).feed(HEADER + b"<message>" + b"<a/>" * 99 + b"</message>")) == 2


def test_muc_service_defaults_keep_owner_configured_whois():
    svc = MucService("m.example", lambda j, d: True, lambda e: None)
    assert svc.fixed_whois is None and svc.default_config.whois == "moderators"
    assert STREAMS_NS


def test_the_forwarded_client_address_is_believed_only_from_a_trusted_proxy():
    from services.xmpp.config import load
    from services.xmpp.server import XmppServer

    server = XmppServer(load(environ={"XMPP_TRUSTED_PROXIES": "127.0.0.1/32"}))
    # nginx appends the address it saw: the right-most entry is the real one
    headers = {"x-forwarded-for": "203.0.113.9, 198.51.100.7"}
    assert server.client_address("127.0.0.1", headers) == "198.51.100.7"
    assert server.client_address("192.0.2.50", headers) == "192.0.2.50"  # not a proxy: its own address
    assert server.client_address("127.0.0.1", {}) == "127.0.0.1"
    assert server.is_internal("127.0.0.1") and not server.is_internal("192.0.2.50")


def test_memory_trimmer_runs_only_after_a_free_and_at_most_once_per_interval():
    from services.xmpp.limits import MemoryTrimmer

    trimmer = MemoryTrimmer(interval=1.0)
    calls: list[int] = []
    trimmer._trim = lambda pad: calls.append(pad) or 1  # type: ignore[assignment]
    assert not trimmer.maybe_trim(10.0)  # nothing freed yet
    trimmer.freed()
    assert trimmer.maybe_trim(10.0) and calls == [0]
    trimmer.freed()
    assert not trimmer.maybe_trim(10.5)  # too soon: stays pending
    assert trimmer.maybe_trim(11.1) and trimmer.trims == 2


def test_memory_trimmer_keeps_trimming_for_a_while_after_the_last_free():
    """What a closed connection held is often let go seconds later (the WebSocket admin's
    rm_delay record, a session waiting for XEP-0198 resumption): trims go on for ``linger``."""
    from services.xmpp.limits import MemoryTrimmer

    trimmer = MemoryTrimmer(interval=1.0, linger=5.0)
    trimmer._trim = lambda pad: 1  # type: ignore[assignment]
    trimmer.freed()
    assert trimmer.maybe_trim(100.0)
    assert trimmer.maybe_trim(103.0)  # no new free, still within linger
    assert trimmer.maybe_trim(105.0)  # the last one
    assert not trimmer.maybe_trim(107.0) and trimmer.trims == 3
    trimmer.freed()
    assert trimmer.maybe_trim(108.0) and trimmer.maybe_trim(112.0) and trimmer.trims == 5


def test_a_closed_stream_parser_lets_go_of_expat_and_its_buffer_without_the_collector():
    """A connection's parser and expat refer to each other through expat's handlers; each
    expat parser holds a 64 KiB text buffer. Under a flood of short connections that waited for
    a full collection (rare in the broker: see ``GC_THRESHOLDS``), it held tens of MB."""
    import gc

    from services.xmpp.xml import StreamParser, XmlStreamError

    def one(data: bytes) -> None:
        parser = StreamParser(max_stanza_size=65536, max_header=8192)
        try:
            parser.feed(data)
        except XmlStreamError:
            pass
        parser.discard()
        assert parser.feed(b"<more/>") == []  # a discarded stream is fed nothing more

    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            one(b"<stream:stream to='x' a='" + b"x" * 20000)  # header over its limit
            one(HEADER + b"<message a='" + b"x" * 70000)  # unterminated tag over its limit
            one(HEADER + b"<message><body>hi")  # a partial stanza, then the connection goes
        assert gc.collect() == 0
    finally:
        gc.enable()


HEADER = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x'>"


def test_partial_stanzas_share_one_element_budget_and_the_big_holders_are_cut_off():
    from services.xmpp.xml import ElementBudget

    budget = ElementBudget(limit=5000, small=100)
    holders = []
    for _ in range(3):  # 3 x 2,000 elements held: the third passes the limit and is refused
        p = StreamParser(budget=budget)
        p.feed(HEADER)
        holders.append(p)
    holders[0].feed(b"<message>" + b"<a/>" * 2000)
    holders[1].feed(b"<message>" + b"<a/>" * 2000)
    with pytest.raises(XmlStreamError) as refused:
        holders[2].feed(b"<message>" + b"<a/>" * 2000)
    assert refused.value.condition == "resource-constraint"
    assert budget.held <= 5000 + 100 and budget.refused == 1
    # over the limit, an ordinary stanza still gets through on another stream
    small = StreamParser(budget=budget)
    small.feed(HEADER)
    (msg,) = small.feed(b"<message><body>hi</body><x/><y/></message>")
    assert msg.name == "message"
    # a finished stanza and a dropped stream give their elements back, to the unit
    holders[0].feed(b"</message>")
    holders[1].discard()
    assert budget.held == 0


def test_element_budget_accounting_survives_every_error_path():
    from services.xmpp.xml import ElementBudget

    budget = ElementBudget(limit=10**6)
    for tail in (b"<a/>" * 20 + b"</wrong>", b"<a>" * 40, b"<a/>" * 20000, b"<b/></message><message><c/>"):
        p = StreamParser(max_elements=10000, budget=budget)
        p.feed(HEADER)
        try:
            p.feed(b"<message>" + tail)
        except XmlStreamError:
            pass
        p.discard()
        assert budget.held == 0, tail[:20]


def test_idle_http_connections_are_bounded_in_number_and_time():
    """Keep-alive connections waiting for a request: past ``limit`` the longest idle is closed,
    and any idle for ``timeout`` seconds; one with a request in progress is never counted."""
    from services.xmpp.limits import IdleConnections

    idle = IdleConnections(timeout=30.0, limit=3)
    assert idle.idle("a", 0.0) == [] and idle.idle("b", 1.0) == [] and idle.idle("c", 2.0) == []
    idle.active("b")  # a request came in on b
    assert idle.idle("d", 3.0) == []
    assert idle.idle("e", 4.0) == ["a"]  # the longest idle goes
    assert idle.idle("c", 5.0) == []  # c waits again: now the youngest
    assert idle.expired(34.5) == ["d", "e"] and len(idle) == 1
    assert idle.expired(35.0) == ["c"] and idle.evicted == 4
    idle.active("nobody")  # unknown or already gone: nothing happens


def test_the_jid_cache_holds_only_short_jids_and_only_so_many():
    """Every stanza's addresses are parsed through a cache; a guest addressing stanzas to
    distinct JIDs of up to 3,071 characters once filled 65,536 entries (about 200 MB) for good."""
    from services.xmpp import jid as jids

    jids._parse_jid_cached.cache_clear()
    for i in range(200):
        assert jids.parse_jid(f"n{i}" + "n" * 1000 + "@" + "d" * 1000 + "/" + "r" * 1000).domain == "d" * 1000
    assert jids._parse_jid_cached.cache_info().currsize == 0
    for i in range(jids.JID_CACHE_SIZE + 100):
        jids.parse_jid(f"guest{i}@meet.jitsi/r")
    info = jids._parse_jid_cached.cache_info()
    assert info.currsize == jids.JID_CACHE_SIZE and info.maxsize == jids.JID_CACHE_SIZE
    jids._parse_jid_cached.cache_clear()


def test_a_refused_login_is_answered_after_the_tarpit_delay_and_few_wait_at_once():
    broker, *_ = make_broker()
    guard = LoginGuard(per_address=1, per_account=100, window=60, tarpit_delay=2.0, tarpit_per_address=2)
    limits = SessionLimits(allow_plain_without_tls=True, login_guard=guard)
    token = base64.b64encode(b"\0focus\0wrong").decode()
    auth = f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>"

    def wire() -> Wire:
        w = Wire(broker, limits=limits, address="198.51.100.7")
        w.open(AUTH)
        return w

    first = wire()
    assert first.send(auth)[0].first_element().name == "not-authorized"  # answered at once
    waiting = [wire(), wire()]
    for w in waiting:
        assert w.send(auth) == [] and not w.closed  # refused: the answer waits
        assert w.timers[-1].delay == 2.0
        assert w.send(auth) == []  # nothing more is looked at meanwhile
    assert guard.held("198.51.100.7") == 2
    third = wire()  # past the per-address number of waiting streams: refused at once
    out = third.send(auth)
    assert out[0].first_element().name == "temporary-auth-failure" and third.closed
    waiting[0].timers[-1].fire()
    out = waiting[0].drain()
    assert out[0].first_element().name == "temporary-auth-failure"
    assert out[1].name == "error" and waiting[0].closed
    waiting[1].session.transport_lost()  # the guesser gave up: its place is freed, the timer cancelled
    assert waiting[1].timers[-1].cancelled and guard.held("198.51.100.7") == 0


def test_a_refused_login_waiting_for_its_answer_cannot_start_tls():
    """While a refused login waits (login-tarpit-delay) nothing more of its stream is looked at,
    STARTTLS (RFC 6120 section 5) included: no TLS handshake to do for it, and the delayed
    answer is not written into a restarted stream before its header."""
    broker, *_ = make_broker()
    guard = LoginGuard(per_address=1, per_account=100, window=60, tarpit_delay=2.0)
    limits = SessionLimits(allow_plain_without_tls=True, login_guard=guard)
    token = base64.b64encode(b"\0focus\0wrong").decode()
    auth = f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>"
    first = Wire(broker, limits=limits, address="198.51.100.8")
    first.open(AUTH)
    first.send(auth)  # the address's one failure
    w = Wire(broker, limits=limits, address="198.51.100.8")
    w.open(AUTH)
    upgrades = []
    w.link.starttls = lambda: upgrades.append(1) or True
    assert w.send(auth) == []  # refused: the answer waits
    assert w.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>") == []
    assert not upgrades
    w.timers[-1].fire()
    assert w.drain()[0].first_element().name == "temporary-auth-failure" and w.closed

"""MUC (XEP-0045) logic as Jitsi uses it, through the broker with in-memory sessions."""

from services.xmpp.stanza import MUC_USER
from services.xmpp.tests.helpers import AUTH, BREWERY_HOST, MUC_HOST, login, make_broker

JOIN = "<presence to='{to}'><x xmlns='http://jabber.org/protocol/muc'/>{extra}</presence>"


def codes(presence):
    x = presence.find("x", MUC_USER)
    return {s.get("code") for s in x.find_all("status")} if x is not None else set()


def setup_room():
    broker, conf, _brew = make_broker()
    focus = login(broker, AUTH, "focus", "focus")
    out = focus.send(JOIN.format(to=f"room@{MUC_HOST}/focus", extra=""))
    assert {"110", "201"} <= codes(out[0])
    guest = login(broker)
    return broker, conf, focus, guest


def test_only_the_focus_creates_conference_rooms():
    broker, conf, _ = make_broker()
    guest = login(broker)
    out = guest.send(JOIN.format(to=f"new@{MUC_HOST}/me", extra=""))
    assert out[0].get("type") == "error" and out[0].find("error").first_element().name == "not-allowed"
    assert not conf.rooms


def test_join_rebroadcasts_extensions_verbatim_with_real_jid_to_moderators():
    _broker, _conf, focus, guest = setup_room()
    extra = "<stats-id>Abc</stats-id><audiomuted xmlns='http://jitsi.org/jitmeet/audio'>true</audiomuted>"
    out = guest.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=extra))
    # the guest sees the focus (with its real JID: a service account's is public, and Jitsi
    # clients take Jingle only from the occupant whose real JID is the focus's), itself with 110,
    # then the subject
    assert out[0].get("from") == f"room@{MUC_HOST}/focus"
    assert out[0].find("x", MUC_USER).find("item").get("jid") == str(focus.session.jid)
    assert out[1].get("from") == f"room@{MUC_HOST}/alice" and "110" in codes(out[1])
    assert out[2].name == "message" and out[2].find("subject") is not None
    seen = focus.drain()[0]
    assert seen.find("stats-id").text == "Abc" and seen.find("audiomuted").text == "true"
    assert seen.find("x", MUC_USER).find("item").get("jid") == str(guest.session.jid)


def test_groupchat_private_message_and_iq_to_occupant():
    _broker, _conf, focus, guest = setup_room()
    guest.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=""))
    focus.drain()
    out = guest.send(f"<message to='room@{MUC_HOST}' type='groupchat' id='m1'><body>hi</body></message>")
    assert out[0].find("body").text == "hi" and out[0].get("from") == f"room@{MUC_HOST}/alice"
    assert focus.drain()[0].get("id") == "m1"
    focus.send(f"<message to='room@{MUC_HOST}/alice' type='chat'><body>psst</body></message>")
    pm = guest.drain()[0]
    assert pm.get("from") == f"room@{MUC_HOST}/focus" and pm.find("body").text == "psst"
    # Jingle-style IQ to the occupant JID reaches the real JID; the result goes back the same way
    focus.send(
        f"<iq type='set' id='j1' to='room@{MUC_HOST}/alice'><jingle xmlns='urn:xmpp:jingle:1' "
        f"action='session-initiate'/></iq>"
    )
    iq = guest.drain()[0]
    assert iq.get("from") == f"room@{MUC_HOST}/focus" and iq.get("to") == str(guest.session.jid)
    assert iq.find("jingle", "urn:xmpp:jingle:1").get("action") == "session-initiate"
    guest.send(f"<iq type='result' id='j1' to='room@{MUC_HOST}/focus'/>")
    res = focus.drain()[0]
    assert res.get("type") == "result" and res.get("from") == f"room@{MUC_HOST}/alice"


def test_non_occupant_cannot_talk_or_iq():
    _broker, _conf, _focus, guest = setup_room()
    out = guest.send(f"<message to='room@{MUC_HOST}' type='groupchat'><body>x</body></message>")
    assert out[0].find("error").first_element().name == "not-acceptable"
    out = guest.send(f"<iq type='get' id='x' to='room@{MUC_HOST}/focus'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert out[0].find("error").first_element().name == "not-acceptable"


def test_nick_conflict():
    _broker, _conf, _focus, guest = setup_room()
    out = guest.send(JOIN.format(to=f"room@{MUC_HOST}/focus", extra=""))
    assert out[0].find("error").first_element().name == "conflict"


def test_owner_config_form_and_kick_with_307():
    _broker, conf, focus, guest = setup_room()
    form = focus.send(
        f"<iq type='get' id='c' to='room@{MUC_HOST}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
    )
    assert form[0].get("type") == "result"
    focus.send(
        f"<iq type='set' id='s' to='room@{MUC_HOST}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_whois'><value>anyone</value></field>"
        "</x></query></iq>"
    )
    assert conf.rooms[next(iter(conf.rooms))].config.whois == "anyone"
    guest.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=""))
    focus.drain()
    out = guest.send(
        f"<iq type='set' id='k' to='room@{MUC_HOST}'><query xmlns='http://jabber.org/protocol/muc#admin'>"
        "<item nick='focus' role='none'/></query></iq>"
    )
    assert out[0].find("error").first_element().name == "forbidden"  # participants cannot kick
    out = focus.send(
        f"<iq type='set' id='k' to='room@{MUC_HOST}'><query xmlns='http://jabber.org/protocol/muc#admin'>"
        "<item nick='alice' role='none'><reason>bye</reason></item></query></iq>"
    )
    assert "307" in codes(out[0]) and out[0].get("type") == "unavailable"
    kicked = guest.drain()[0]
    assert {"307", "110"} <= codes(kicked)


def test_non_owner_cannot_configure():
    _broker, _conf, _focus, guest = setup_room()
    guest.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=""))
    out = guest.send(
        f"<iq type='get' id='c' to='room@{MUC_HOST}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>"
    )
    assert out[0].find("error").first_element().name == "forbidden"


def test_empty_room_is_destroyed_and_leaving_session_leaves_rooms():
    _broker, conf, focus, guest = setup_room()
    guest.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=""))
    guest.session.close()  # session ends: directed presence becomes unavailable
    left = focus.drain()
    assert left[-1].get("type") == "unavailable" and left[-1].get("from") == f"room@{MUC_HOST}/alice"
    focus.send(f"<presence to='room@{MUC_HOST}/focus' type='unavailable'/>")
    assert not conf.rooms


def test_brewery_accepts_presence_only_from_service_accounts():
    broker, _conf, _brew = make_broker()
    jvb = login(broker, AUTH, "jvb", "jvb1")
    guest = login(broker)
    out = guest.send(JOIN.format(to=f"jvbbrewery@{BREWERY_HOST}/x", extra=""))
    # guests cannot even address the internal MUC host (the broker bounces it)
    assert out[0].find("error").first_element().name == "service-unavailable"
    broker.guest_blocked.clear()  # and the MUC's own policy refuses them too
    out = guest.send(JOIN.format(to=f"jvbbrewery@{BREWERY_HOST}/x", extra=""))
    assert out[0].find("error").first_element().name == "forbidden"
    out = jvb.send(
        JOIN.format(
            to=f"jvbbrewery@{BREWERY_HOST}/jvb1",
            extra="<stats xmlns='http://jitsi.org/protocol/colibri'>"
            "<stat name='stress_level' value='0.1'/></stats>",
        )
    )
    assert "110" in codes(out[0])
    focus = login(broker, AUTH, "focus", "focus")
    out = focus.send(JOIN.format(to=f"jvbbrewery@{BREWERY_HOST}/focus", extra=""))
    stats = out[0].find("stats", "http://jitsi.org/protocol/colibri")
    assert stats.find("stat").get("value") == "0.1"


def test_nick_change_is_unavailable_303_then_available():
    _broker, _conf, focus, guest = setup_room()
    guest.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=""))
    focus.drain()
    out = guest.send(f"<presence to='room@{MUC_HOST}/alicia'/>")
    assert out[0].get("type") == "unavailable" and {"303", "110"} <= codes(out[0])
    assert out[0].find("x", MUC_USER).find("item").get("nick") == "alicia"
    assert out[1].get("from") == f"room@{MUC_HOST}/alicia" and out[1].get("type") is None
    seen = focus.drain()
    assert [p.get("from") for p in seen] == [f"room@{MUC_HOST}/alice", f"room@{MUC_HOST}/alicia"]
    out = guest.send(f"<presence to='room@{MUC_HOST}/focus'/>")
    assert out[0].find("error").first_element().name == "conflict"


def test_room_disco_info_carries_a_meeting_id_like_jitsis_prosody() -> None:
    _broker, conf, _focus, guest = setup_room()
    guest.send(JOIN.format(to=f"room@{MUC_HOST}/alice", extra=""))
    query = "<iq type='get' id='d' to='{to}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    (answer,) = guest.send(query.format(to=f"room@{MUC_HOST}"))
    fields = {f.get("var"): f.find("value").text for f in answer.first_element().find("x").find_all("field")}
    meeting_id = fields["muc#roominfo_meetingId"]
    assert meeting_id == conf.rooms[next(iter(conf.rooms))].meeting_id and len(meeting_id) == 36
    (again,) = guest.send(query.format(to=f"room@{MUC_HOST}"))
    fields = {f.get("var"): f.find("value").text for f in again.first_element().find("x").find_all("field")}
    assert fields["muc#roominfo_meetingId"] == meeting_id  # stable for the room's life

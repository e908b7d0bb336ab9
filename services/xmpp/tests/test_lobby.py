"""The lobby (services/xmpp/modules/lobby.py) wired into the broker core: knock, admit, deny, password."""

from __future__ import annotations

from services.xmpp.config import load
from services.xmpp.server import build_broker

from .helpers import Wire
from .test_auth import bind, focus_creates

MUC = "muc.meet.jitsi"
LOBBY = "lobby.meet.jitsi"
JOIN = "<presence to='team@muc.meet.jitsi/{}'><x xmlns='http://jabber.org/protocol/muc'>{}</x></presence>"


def guest(broker, resource: str) -> Wire:  # type: ignore[no-untyped-def]
    wire = Wire(broker, internal=False)
    wire.open("meet.jitsi")
    wire.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    bind(wire, resource=resource)
    return wire


def text(elements) -> str:  # type: ignore[no-untyped-def]
    return "".join(e.serialize() for e in elements)


def test_knock_admit_deny_and_password() -> None:
    broker, (conf, _) = build_broker(load(environ={"JICOFO_AUTH_PASSWORD": "fpw"}))
    focus = focus_creates(broker, "team")
    mod = guest(broker, "m")
    mod.send(JOIN.format("mod", ""))
    focus.send(
        "<iq type='set' id='g' to='team@muc.meet.jitsi'><query xmlns='http://jabber.org/protocol/muc#admin'>"
        f"<item affiliation='owner' jid='{mod.session.jid.bare}'/></query></iq>"
    )
    mod.send(
        "<iq type='set' id='cfg' to='team@muc.meet.jitsi'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field>"
        "</x></query></iq>"
    )
    assert next(iter(conf.rooms.values())).config.members_only
    mod.send(f"<presence to='team@{LOBBY}/mod'/>")  # the moderator watches the lobby
    knocker = guest(broker, "k")
    refused = text(knocker.send(JOIN.format("kim", "")))
    assert (
        "registration-required" in refused
        and f"<lobbyroom xmlns='http://jitsi.org/jitmeet'>team@{LOBBY}" in refused
    )
    knocked = text(
        knocker.send(
            f"<presence to='team@{LOBBY}/kim'><nick xmlns='http://jabber.org/protocol/nick'>Kim</nick></presence>"
        )
    )
    assert "code='110'" in knocked
    seen = text(mod.drain())
    assert f"from='team@{LOBBY}/kim'" in seen and "Kim" in seen and str(knocker.session.jid) in seen
    # a participant who is not a moderator cannot deny
    other = guest(broker, "o")
    other.send(JOIN.format("olga", "<password>nope</password>"))
    deny = "<iq type='set' id='d' to='team@{}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='{}' role='none'/></query></iq>"
    assert "forbidden" in text(other.send(deny.format(LOBBY, "kim")))
    # admit: the moderator makes the knocker a member; it is invited and gets in
    mod.send(
        "<iq type='set' id='a' to='team@muc.meet.jitsi'><query xmlns='http://jabber.org/protocol/muc#admin'>"
        f"<item affiliation='member' jid='{knocker.session.jid.bare}'/></query></iq>"
    )
    invite = text(knocker.drain())
    assert "<invite" in invite and "from='team@muc.meet.jitsi'" in invite
    joined = text(knocker.send(JOIN.format("kim", "")))
    assert "code='110'" in joined and "type='error'" not in joined
    # deny: kicked from the lobby with 307
    loser = guest(broker, "l")
    loser.send(f"<presence to='team@{LOBBY}/lou'/>")
    assert "type='result'" in text(mod.send(deny.format(LOBBY, "lou")))
    told = text(loser.drain())
    assert "type='unavailable'" in told and "code='307'" in told
    # the password skips the lobby
    mod.send(
        "<iq type='set' id='pw' to='team@muc.meet.jitsi'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>"
        "<field var='muc#roomconfig_roomsecret'><value>s3cret</value></field></x></query></iq>"
    )
    vip = guest(broker, "v")
    assert "registration-required" in text(vip.send(JOIN.format("vip", "<password>wrong</password>")))
    assert "code='110'" in text(vip.send(JOIN.format("vip", "<password>s3cret</password>")))

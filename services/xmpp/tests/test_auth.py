"""Authentication modes wired into the broker core (build_broker from the config's variables)."""

from __future__ import annotations

import base64
from pathlib import Path

from services.xmpp.config import load
from services.xmpp.sasl import ScramCredential
from services.xmpp.server import build_broker
from services.xmpp.tokens import mint
from services.xmpp.users import read_users, write_users

from .helpers import Wire

SECRET = "unit-secret"
BASE = {"JICOFO_AUTH_PASSWORD": "fpw"}


def jwt_broker(**env: str):  # type: ignore[no-untyped-def]
    cfg = load(
        environ={
            **BASE,
            "ENABLE_AUTH": "1",
            "AUTH_TYPE": "jwt",
            "JWT_APP_ID": "app",
            "JWT_APP_SECRET": SECRET,
            **env,
        }
    )
    broker, (conf, _) = build_broker(cfg)
    return broker, conf


def token_login(broker, token: str, host: str = "meet.jitsi", resource: str = "r") -> Wire:  # type: ignore[no-untyped-def]
    wire = Wire(broker, internal=False)
    wire.link.token = token
    wire.open(host)
    wire.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    return wire


def bind(wire: Wire, host: str = "meet.jitsi", resource: str = "r") -> None:
    wire.open(host)
    wire.send(
        f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        f"<resource>{resource}</resource></bind></iq>"
    )
    assert wire.session.state == "active"


def sasl_failure(wire: Wire) -> tuple[str, str]:
    failure = next(e for e in wire.received if e.name == "failure")
    cond = next(c.name for c in failure.elements() if c.name != "text")
    text = failure.find("text")
    return cond, text.text if text is not None else ""


def focus_creates(broker, room: str) -> Wire:  # type: ignore[no-untyped-def]
    focus = Wire(broker)
    focus.open("auth.meet.jitsi")
    cred = base64.b64encode(b"\0focus\0fpw").decode()
    focus.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{cred}</auth>")
    bind(focus, "auth.meet.jitsi", "focus")
    focus.send(
        f"<presence to='{room}@muc.meet.jitsi/focus'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    return focus


def test_anonymous_login_needs_a_valid_token_and_says_why() -> None:
    broker, _ = jwt_broker()
    wire = token_login(broker, "")
    assert sasl_failure(wire) == ("not-authorized", "a token is required")
    wire = token_login(broker, mint("wrong", "app", "r"))
    assert sasl_failure(wire) == ("not-authorized", "invalid token signature")
    wire = token_login(broker, mint(SECRET, "app", "r"))
    assert any(e.name == "success" for e in wire.received)
    bind(wire)
    assert wire.session.claims is not None and wire.session.claims.room == "r"


def test_room_claim_checked_at_join_and_identity_stamped() -> None:
    broker, conf = jwt_broker()
    focus_creates(broker, "r1")
    wire = token_login(broker, mint(SECRET, "app", "r1", name="Ada", moderator=True))
    bind(wire)
    wire.send(
        "<presence to='r1@muc.meet.jitsi/ada'><x xmlns='http://jabber.org/protocol/muc'/>"
        "<identity><user><name>Forged</name></user></identity></presence>"
    )
    room = next(iter(conf.rooms.values()))
    ada = room.occupants["ada"]
    identities = [c for c in ada.payload if getattr(c, "name", "") == "identity"]
    assert len(identities) == 1
    assert "Ada" in identities[0].serialize() and "Forged" not in identities[0].serialize()
    assert "<moderator>true</moderator>" in identities[0].serialize()
    other = token_login(broker, mint(SECRET, "app", "r1"), resource="x")
    bind(other, resource="x")
    out = other.send(
        "<presence to='r9@muc.meet.jitsi/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    )
    err = next(e for e in out if e.get("type") == "error")
    assert "not-allowed" in err.serialize() and "room claim" in err.serialize()


def test_allow_empty_token_lets_tokenless_clients_in_but_not_bad_tokens() -> None:
    broker, _ = jwt_broker(JWT_ALLOW_EMPTY="true")
    wire = token_login(broker, "")
    assert any(e.name == "success" for e in wire.received)
    wire = token_login(broker, mint(SECRET, "app", "r", audience="x"), resource="b")
    assert any(e.name == "success" for e in wire.received)  # '*' audiences
    wire = token_login(broker, mint("bad", "app", "r"), resource="c")
    assert sasl_failure(wire)[0] == "not-authorized"


def test_internal_accounts_and_guests_wait_for_a_host(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    write_users(users, {"alice": ScramCredential.from_password("alice-password")})
    assert set(read_users(users)) == {"alice"}
    cfg = load(
        environ={
            **BASE,
            "ENABLE_AUTH": "1",
            "AUTH_TYPE": "internal",
            "ENABLE_GUESTS": "1",
            "XMPP_USERS_FILE": str(users),
        }
    )
    broker, (conf, _) = build_broker(cfg)
    # no anonymous login on the main host any more; SCRAM over a public (non-internal) stream
    wire = Wire(broker, internal=False)
    offered = "".join(e.serialize() for e in wire.open("meet.jitsi"))
    assert "SCRAM-SHA-1" in offered and "ANONYMOUS" not in offered
    # a password login (PLAIN allowed here by the test's limits) from a public address
    wire.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        + base64.b64encode(b"\0alice\0alice-password").decode()
        + "</auth>"
    )
    bind(wire, resource="a")
    # people's accounts may not address the service accounts
    out = wire.send("<message to='focus@auth.meet.jitsi'><body>x</body></message>")
    assert "service-unavailable" in "".join(e.serialize() for e in out)
    focus_creates(broker, "standup")
    guest = Wire(broker, internal=False)
    guest.open("guest.meet.jitsi")
    guest.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
    bind(guest, "guest.meet.jitsi", "g")
    join = "<presence to='standup@muc.meet.jitsi/{}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    out = guest.send(join.format("guest"))
    assert "not-authorized" in out[0].serialize() and "waiting for the host" in out[0].serialize()
    wire.send(join.format("alice"))
    out = guest.send(join.format("guest"))
    assert not any(e.get("type") == "error" for e in out)
    room = next(iter(conf.rooms.values()))
    assert set(room.occupants) == {"focus", "alice", "guest"}
    alice_identity = [c for c in room.occupants["alice"].payload if getattr(c, "name", "") == "identity"]
    assert alice_identity and "alice" in alice_identity[0].serialize()
    # accounts added while the broker runs can log in (the file is read again when it changes)
    import os
    import time

    write_users(users, {**read_users(users), "bob": ScramCredential.from_password("bob-password")})
    os.utime(users, (time.time() + 5, time.time() + 5))
    bob = Wire(broker, internal=False)
    bob.open("meet.jitsi")
    bob.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        + base64.b64encode(b"\0bob\0bob-password").decode()
        + "</auth>"
    )
    bind(bob, resource="b")


def test_a_session_outlives_its_token_unless_end_session_on_expiry() -> None:
    broker, _ = jwt_broker()
    wire = token_login(broker, mint(SECRET, "app", "r", ttl=600))
    bind(wire)
    assert not wire.timers  # Jitsi's behaviour: nothing happens at exp
    broker, _ = jwt_broker(JWT_END_SESSION_ON_EXPIRY="1")
    wire = token_login(broker, mint(SECRET, "app", "r", ttl=600))
    bind(wire)
    [timer] = wire.timers
    assert 590 < timer.delay <= 600  # at the token's exp
    assert wire.session.state == "active" and not wire.closed
    timer.fire()
    out = wire.drain()
    error = next(e for e in out if e.name == "error")
    assert error.find("policy-violation", "urn:ietf:params:xml:ns:xmpp-streams") is not None
    assert "token expired" in error.serialize()
    assert wire.closed and not wire.session.bound
    # a session that ends first takes its timer with it
    other = token_login(broker, mint(SECRET, "app", "r", ttl=600))
    bind(other)
    other.session.close()
    assert other.timers[0].cancelled

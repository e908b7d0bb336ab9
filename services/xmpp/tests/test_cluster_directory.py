"""The cluster directory: what a node knows of the others' sessions and rooms."""

from services.xmpp.cluster import ClusterDirectory
from services.xmpp.jid import parse_jid


def test_bind_unbind_and_resources_by_bare_jid():
    d = ClusterDirectory("a")
    assert d.apply("bind u@meet.jitsi/1 b") and d.apply("bind u@meet.jitsi/2 c")
    assert d.sessions[parse_jid("u@meet.jitsi/1")] == "b"
    assert d.by_bare[parse_jid("u@meet.jitsi")] == {parse_jid("u@meet.jitsi/1"), parse_jid("u@meet.jitsi/2")}
    d.apply("unbind u@meet.jitsi/1 b")
    assert parse_jid("u@meet.jitsi/1") not in d.sessions
    d.apply("unbind u@meet.jitsi/2 x")  # an unbind from a node that does not hold it changes nothing
    assert parse_jid("u@meet.jitsi/2") in d.sessions


def test_own_events_are_ignored_and_bad_ones_reported():
    d = ClusterDirectory("a")
    assert d.apply("bind u@meet.jitsi/1 a") and not d.sessions
    assert not d.apply("bind")
    assert not d.apply("explode u@meet.jitsi/1 b")


def test_dead_node_takes_its_sessions_and_rooms():
    d = ClusterDirectory("a")
    d.apply("bind u@meet.jitsi/1 b")
    d.apply("bind v@meet.jitsi/1 c")
    d.apply("room r@muc.meet.jitsi b")
    assert d.nodes() == {"b", "c"}
    gone = d.drop_node("b")
    assert gone == {parse_jid("u@meet.jitsi/1")}
    assert not d.room_homes and d.nodes() == {"c"}


def test_a_bind_carries_the_sessions_token_claims():
    from services.xmpp.tokens import TokenClaims, UserContext

    claims = TokenClaims("app", "standup", "meet", 1e10, True, UserContext("7", "Ada Lovelace", "a@x", ""))
    d = ClusterDirectory("a")
    assert d.apply(f"bind u@meet.jitsi/1 b {claims.to_json()}")
    jid = parse_jid("u@meet.jitsi/1")
    assert d.sessions[jid] == "b" and d.claims[jid] == claims
    assert d.apply("bind u@meet.jitsi/2 b") and parse_jid("u@meet.jitsi/2") not in d.claims
    assert not d.apply("bind u@meet.jitsi/3 b {not json")  # a bind with garbage claims is refused
    assert parse_jid("u@meet.jitsi/3") not in d.sessions
    d.apply("unbind u@meet.jitsi/1 b")
    assert jid not in d.claims
    d.apply(f"bind u@meet.jitsi/1 b {claims.to_json()}")
    d.drop_node("b")
    assert not d.claims


def test_claims_wire_form_round_trips_and_refuses_junk():
    import pytest

    from services.xmpp.tokens import TokenClaims

    c = TokenClaims("app", "*", "", 5.0, None)
    assert TokenClaims.from_json(c.to_json()) == c
    for junk in ("[]", '{"iss": 1}', '{"iss":"a","room":"r","sub":"","exp":1,"moderator":"yes","user":{}}', "x"):
        with pytest.raises(ValueError):
            TokenClaims.from_json(junk)

from __future__ import annotations

from services.common.jingle import Source
from services.focus.conference import Conference, MediaSources, ParticipantState


def conference() -> Conference:
    conf = Conference(room="r@muc.meet.jitsi", bridge_id="jvb1", colibri_id="c1")
    for ep in ("a", "b", "c"):
        p = conf.occupant_joined(ep, f"r@muc.meet.jitsi/{ep}")
        assert p is not None
        p.state = ParticipantState.ACTIVE
        p.sid = f"sid-{ep}"
        p.channels = {"audio": f"{ep}a", "video": f"{ep}v"}
        p.sources = {"audio": MediaSources(sources=[Source(ord(ep), f"{ep}-a0", p.occupant_jid)])}
    return conf


def test_join_is_idempotent_and_leave_returns_participant() -> None:
    conf = conference()
    assert conf.occupant_joined("a", "x") is None
    left = conf.occupant_left("b")
    assert left is not None and left.endpoint_id == "b"
    assert conf.occupant_left("b") is None
    assert list(conf.participants) == ["a", "c"]


def test_sources_of_others_excludes_self() -> None:
    conf = conference()
    assert [s.ssrc for s in conf.sources_of_others("a")["audio"].sources] == [ord("b"), ord("c")]


def test_with_session_and_by_sid() -> None:
    conf = conference()
    conf.participants["c"].state = ParticipantState.INVITING
    assert [p.endpoint_id for p in conf.with_session(exclude="a")] == ["b"]
    assert conf.by_sid("sid-b") is conf.participants["b"]
    assert conf.by_sid("nope") is None


def test_lose_bridge_resets_everyone_and_reports_old_sids() -> None:
    conf = conference()
    old = conf.lose_bridge()
    assert [(p.endpoint_id, sid) for p, sid in old] == [("a", "sid-a"), ("b", "sid-b"), ("c", "sid-c")]
    assert conf.bridge_id is None and conf.colibri_id is None and conf.moves == 1
    for p in conf.participants.values():
        assert p.state is ParticipantState.JOINED and p.sid is None and not p.channels and not p.has_sources()


def test_json_round_trip_for_the_store() -> None:
    conf = conference()
    again = Conference.model_validate_json(conf.model_dump_json())
    assert again == conf
    assert again.participants["a"].sources["audio"].sources[0] == Source(97, "a-a0", "r@muc.meet.jitsi/a")

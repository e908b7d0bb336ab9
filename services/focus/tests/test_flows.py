"""The focus's conference flows: events in, Jingle and Colibri out (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common import colibri
from services.common.colibri import Fingerprint, SsrcGroup
from services.common.jingle import Jingle, JingleContent, RtpDescription, Source, Transport
from services.focus import flows, offer
from services.focus.conference import Conference, ParticipantState

EXAMPLES = Path(__file__).parents[2] / "common" / "tests" / "data"
ROOM = "r@muc.meet.jitsi"
S = flows.OfferSettings(initiator="focus@auth.meet.jitsi/focus", ice_lite=True, channel_expire=60)


def bridge_response(endpoint: str, conf_id: str = "conf1") -> colibri.Conference:
    """What a bridge answers to an allocation for ``endpoint`` (the Colibri REST example's answer, renamed)."""
    text = (EXAMPLES / "rest_colibri_allocate_response.json").read_text()
    text = text.replace("9f537ebb-1c2a-4ee9-9940-373304f9b260", endpoint).replace("a439deb315b4128c", conf_id)
    return colibri.parse_conference(text)


def accept(sid: str, ssrcs: dict[str, list[int]]) -> Jingle:
    t = Transport(ufrag="uf", pwd="p" * 22, rtcp_mux=True,
                  fingerprints=[Fingerprint(hash="sha-256", fingerprint="AA", setup="active")])  # fmt: skip
    contents = []
    for media, numbers in ssrcs.items():
        groups = [SsrcGroup(semantics="FID", sources=numbers)] if len(numbers) == 2 else []
        desc = RtpDescription(media=media, sources=[Source(n) for n in numbers], ssrc_groups=groups)
        contents.append(JingleContent(name=media, description=desc, transport=t))
    return Jingle(action="session-accept", sid=sid, contents=contents)


def join_and_accept(
    conf: Conference, ep: str, ssrcs: dict[str, list[int]], bridge: str = "jvb1"
) -> flows.Outbox:
    p = conf.occupant_joined(ep, f"{ROOM}/{ep}", f"{ep}@meet.jitsi/x")
    assert p is not None
    request = flows.allocation_request(conf, p, bridge, S)
    assert p.state is ParticipantState.INVITING
    invite = flows.allocated(conf, p, bridge, request, bridge_response(ep), f"sid-{ep}", S)
    out = flows.accepted(conf, p, accept(f"sid-{ep}", ssrcs), S)
    return invite.extend(out)


def test_first_allocation_creates_the_conference_then_patches() -> None:
    conf = Conference(room=ROOM)
    a = conf.occupant_joined("a", f"{ROOM}/a")
    assert a is not None
    first = flows.allocation_request(conf, a, "jvb1", S)
    assert first.id is None  # POST /colibri/conferences
    out = flows.allocated(conf, a, "jvb1", first, bridge_response("a"), "sid-a", S)
    assert (conf.bridge_id, conf.colibri_id) == ("jvb1", "conf1")
    assert a.state is ParticipantState.INVITED and a.channels["audio"] == "e4023f2a35c47d57"
    [(to, initiate)] = out.jingle
    assert to == f"{ROOM}/a" and initiate.action == "session-initiate" and initiate.sid == "sid-a"
    b = conf.occupant_joined("b", f"{ROOM}/b")
    assert b is not None
    assert flows.allocation_request(conf, b, "jvb1", S).id == "conf1"  # PATCH the existing one
    assert flows.allocation_request(conf, b, "jvb2", S).id is None  # another bridge: create there


def test_join_sequence_offers_existing_sources_and_announces_new_ones() -> None:
    conf = Conference(room=ROOM)
    out_a = join_and_accept(conf, "a", {"audio": [1], "video": [2, 3]})
    assert [m.action for _, m in out_a.jingle] == ["session-initiate"]  # nobody else to tell
    assert len(out_a.patches) == 1
    patch = colibri.dump(out_a.patches[0])
    assert patch["id"] == "conf1" and patch["channel-bundles"][0]["transport"]["ufrag"] == "uf"
    assert patch["contents"][1]["channels"][0]["ssrc-groups"] == [{"semantics": "FID", "sources": [2, 3]}]

    out_b = join_and_accept(conf, "b", {"audio": [11]})
    initiate_b = out_b.jingle[0][1]
    offered = {m: [s.ssrc for s in ss] for m, ss in initiate_b.sources().items()}
    assert offered == {"audio": [1], "video": [2, 3]}  # a's sources, owned by a
    assert {s.owner for ss in initiate_b.sources().values() for s in ss} == {f"{ROOM}/a"}
    [(to, add)] = out_b.jingle[1:]
    assert to == f"{ROOM}/a" and add.action == "source-add" and add.sid == "sid-a"
    assert [s.ssrc for s in add.sources()["audio"]] == [11] and add.sources()["audio"][0].name == "b-a0"


def test_accept_in_wrong_state_does_nothing() -> None:
    conf = Conference(room=ROOM)
    join_and_accept(conf, "a", {"audio": [1]})
    again = flows.accepted(conf, conf.participants["a"], accept("sid-a", {"audio": [99]}), S)
    assert again.jingle == [] and again.patches == []
    assert [s.ssrc for s in conf.participants["a"].sources["audio"].sources] == [1]


def test_leave_expires_channels_and_removes_sources_from_the_others() -> None:
    conf = Conference(room=ROOM)
    for ep, ssrc in (("a", 1), ("b", 2), ("c", 3)):
        join_and_accept(conf, ep, {"audio": [ssrc]})
    out = flows.left(conf, "c")
    assert out is not None
    assert colibri.dump(out.patches[0])["contents"][0]["channels"][0]["expire"] == 0
    assert sorted(to for to, _ in out.jingle) == [f"{ROOM}/a", f"{ROOM}/b"]
    assert all(
        m.action == "source-remove" and [s.ssrc for s in m.sources()["audio"]] == [3] for _, m in out.jingle
    )
    assert "c" not in conf.participants
    assert flows.left(conf, "c") is None


def test_bridge_lost_terminates_everyone_moving_and_all_wait() -> None:
    conf = Conference(room=ROOM)
    join_and_accept(conf, "a", {"audio": [1]})
    join_and_accept(conf, "b", {"audio": [2]})
    conf.occupant_joined("c", f"{ROOM}/c")  # no session yet: nothing to terminate
    out = flows.bridge_lost(conf)
    assert [(to, m.action, m.sid, m.reason.text if m.reason else None) for to, m in out.jingle] == [
        (f"{ROOM}/a", "session-terminate", "sid-a", "moving"),
        (f"{ROOM}/b", "session-terminate", "sid-b", "moving"),
    ]
    assert out.patches == []  # the old bridge is not asked anything
    assert [p.endpoint_id for p in flows.waiting(conf)] == ["a", "b", "c"]
    assert conf.bridge_id is None and conf.colibri_id is None
    # re-invited on the new bridge: the first POSTs, no stale sources are offered
    a = conf.participants["a"]
    request = flows.allocation_request(conf, a, "jvb2", S)
    assert request.id is None
    out_a = flows.allocated(conf, a, "jvb2", request, bridge_response("a", "conf2"), "sid-a2", S)
    assert out_a.jingle[0][1].sources() == {} and conf.bridge_id == "jvb2"


def test_participant_source_add_and_remove_are_patched_and_forwarded() -> None:
    conf = Conference(room=ROOM)
    join_and_accept(conf, "a", {"audio": [1]})
    join_and_accept(conf, "b", {"audio": [2]})
    b = conf.participants["b"]
    add = Jingle(action="source-add", sid="sid-b", contents=[
        JingleContent(name="video", description=RtpDescription(media="video", sources=[Source(5), Source(2)]))])  # fmt: skip
    out = flows.sources_changed(conf, b, add, S)
    assert [s.ssrc for s in out.jingle[0][1].sources()["video"]] == [5]
    body = colibri.dump(out.patches[0])
    assert [c["channels"][0]["sources"] for c in body["contents"]] == [[2], [5]]
    remove = Jingle(action="source-remove", sid="sid-b", contents=[
        JingleContent(name="audio", description=RtpDescription(media="audio", sources=[Source(2), Source(77)]))])  # fmt: skip
    out = flows.sources_changed(conf, b, remove, S)
    assert [(to, m.action, [s.ssrc for s in m.sources()["audio"]]) for to, m in out.jingle] == [
        (f"{ROOM}/a", "source-remove", [2])
    ]
    noop = flows.sources_changed(conf, b, remove, S)
    assert noop.jingle == [] and noop.patches == []


def test_ice_failure_expires_terminates_and_leaves_participant_waiting() -> None:
    conf = Conference(room=ROOM)
    join_and_accept(conf, "a", {"audio": [1]})
    join_and_accept(conf, "b", {"audio": [2]})
    out = flows.ice_failed(conf, conf.participants["b"])
    actions = [(to, m.action) for to, m in out.jingle]
    assert actions == [(f"{ROOM}/a", "source-remove"), (f"{ROOM}/b", "session-terminate")]
    assert len(out.patches) == 1 and [p.endpoint_id for p in flows.waiting(conf)] == ["b"]
    assert conf.bridge_id == "jvb1"  # the conference stays where it is


def test_transport_info_candidates_are_patched_to_the_bridge_after_the_answer() -> None:
    conf = Conference(room=ROOM)
    p = conf.occupant_joined("a", f"{ROOM}/a", "a@meet.jitsi/x")
    assert p is not None
    request = flows.allocation_request(conf, p, "jvb1", S)
    flows.allocated(conf, p, "jvb1", request, bridge_response("a"), "sid-a", S)
    candidate = colibri.Candidate(foundation="1", component=1, protocol="udp", priority=7, ip="10.0.0.7",
                                  port=4000, type="host", generation=0)  # fmt: skip
    t = Transport(ufrag="uf", pwd="p" * 22, candidates=[candidate])
    info = Jingle(action="transport-info", sid="sid-a",
                  contents=[JingleContent(name="audio", transport=t), JingleContent(name="video", transport=t)])  # fmt: skip
    assert flows.transport_info(conf, p, info).patches == []  # not answered yet: nothing to add to
    flows.accepted(conf, p, accept("sid-a", {"audio": [1]}), S)
    (patch,) = flows.transport_info(conf, p, info).patches
    body = colibri.dump(patch)
    (bundle,) = body["channel-bundles"]
    assert bundle["id"] == "a" and body["id"] == "conf1"
    assert bundle["transport"]["ufrag"] == "uf" and "fingerprints" not in bundle["transport"]
    assert [(c["ip"], c["port"]) for c in bundle["transport"]["candidates"]] == [("10.0.0.7", 4000)]
    empty = Jingle(action="transport-info", sid="sid-a", contents=[JingleContent(name="audio", transport=Transport())])
    assert flows.transport_info(conf, p, empty).patches == []


def test_offers_name_the_bridge_session_and_a_restart_request_gets_a_new_one() -> None:
    conf = Conference(room=ROOM)
    p = conf.occupant_joined("a", f"{ROOM}/a", "a@meet.jitsi/x")
    assert p is not None
    request = flows.allocation_request(conf, p, "jvb1", S)
    out = flows.allocated(conf, p, "jvb1", request, bridge_response("a"), "sid-a", S, region="eu")
    ((_, initiate),) = out.jingle
    assert (initiate.bridge_session, initiate.bridge_session_region) == ("conf1", "eu")
    flows.accepted(conf, p, accept("sid-a", {"audio": [1]}), S)
    stale = Jingle(action="session-terminate", sid="sid-a", bridge_session="old", bridge_session_restart=True)
    assert flows.restart_requested(conf, p, stale) is None
    assert p.state is ParticipantState.ACTIVE
    restart = Jingle(action="session-terminate", sid="sid-a", bridge_session="conf1", bridge_session_restart=True)
    out = flows.restart_requested(conf, p, restart)
    assert out is not None and len(out.patches) == 1  # its channels expire
    assert p.state is ParticipantState.JOINED and p.sid is None  # waits for the new offer


# ------------------------------------------------------------------------ the SIP gateway (mixer)

GATEWAY_JID = "jigasi@auth.meet.jitsi"


def mixer_response(endpoint: str, mixed_ssrc: int | None = 777) -> colibri.Conference:
    """The bridge's answer to a mixer allocation: the audio channel's one source is its mix."""
    response = bridge_response(endpoint)
    for content in response.contents or ():
        if content.name == "audio":
            for channel in content.channels or ():
                channel.sources = [mixed_ssrc] if mixed_ssrc is not None else None
    return response


def join_gateway(conf: Conference, ep: str = "sip") -> tuple[flows.Outbox, colibri.Conference]:
    p = conf.occupant_joined(ep, f"{ROOM}/{ep}", f"{GATEWAY_JID}/sip-1")
    assert p is not None
    p.mixed_audio = True
    request = flows.allocation_request(conf, p, "jvb1", S)
    invite = flows.allocated(conf, p, "jvb1", request, mixer_response(ep), f"sid-{ep}", S)
    return invite.extend(flows.accepted(conf, p, accept(f"sid-{ep}", {"audio": [50]}), S)), request


def test_gateway_gets_a_mixer_channel_no_video_and_only_the_mix_in_its_offer() -> None:
    conf = Conference(room=ROOM)
    join_and_accept(conf, "a", {"audio": [1], "video": [2, 3]})
    out, request = join_gateway(conf)
    channels = {c.name: c.channels[0] for c in request.contents or () if c.channels}
    assert channels["audio"].rtp_level_relay_type == "mixer"
    assert channels["video"].last_n == 0 and channels["video"].rtp_level_relay_type is None
    initiate = out.jingle[0][1]
    assert initiate.action == "session-initiate"
    offered = initiate.sources()
    assert list(offered) == ["audio"] and [(s.ssrc, s.name) for s in offered["audio"]] == [(777, "jvb-mix-a0")]
    # its own voice goes to the others
    [(to, add)] = out.jingle[1:]
    assert to == f"{ROOM}/a" and [s.ssrc for s in add.sources()["audio"]] == [50]


def test_gateway_hears_no_source_updates_but_newcomers_get_its_voice() -> None:
    conf = Conference(room=ROOM)
    join_gateway(conf)
    out_b = join_and_accept(conf, "b", {"audio": [11], "video": [12]})
    assert [to for to, _ in out_b.jingle[1:]] == []  # no source-add to the gateway
    assert [s.ssrc for s in out_b.jingle[0][1].sources()["audio"]] == [50]
    assert flows.left(conf, "b") is not None
    assert conf.with_session() == []  # and no source-remove either


def test_ordinary_participants_get_translator_channels() -> None:
    conf = Conference(room=ROOM)
    a = conf.occupant_joined("a", f"{ROOM}/a", "a@meet.jitsi/x")
    assert a is not None
    request = flows.allocation_request(conf, a, "jvb1", S)
    assert all(c.rtp_level_relay_type is None for content in request.contents or () for c in content.channels or ())


def test_a_mixer_allocation_without_the_mixed_source_is_refused() -> None:
    conf = Conference(room=ROOM)
    p = conf.occupant_joined("sip", f"{ROOM}/sip", f"{GATEWAY_JID}/x")
    assert p is not None
    p.mixed_audio = True
    request = flows.allocation_request(conf, p, "jvb1", S)
    with pytest.raises(offer.AllocationError):
        flows.allocated(conf, p, "jvb1", request, mixer_response("sip", None), "sid", S)

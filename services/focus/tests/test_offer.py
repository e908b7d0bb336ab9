"""The focus's Colibri requests and Jingle messages, against the Colibri REST document's shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common import colibri, jingle
from services.common.colibri import SsrcGroup
from services.common.jingle import Jingle, JingleContent, RtpDescription, Source, Transport
from services.focus import offer
from services.focus.conference import MediaSources, Participant

EXAMPLES = Path(__file__).parents[2] / "common" / "tests" / "data"
EP = "9f537ebb-1c2a-4ee9-9940-373304f9b260"


def example_response() -> colibri.Conference:
    return colibri.parse_conference((EXAMPLES / "rest_colibri_allocate_response.json").read_bytes())


def test_allocation_request_is_the_documented_request_shape() -> None:
    body = colibri.dump(offer.allocation_request(EP, colibri_id="a439deb315b4128c", expire=10, enable_sctp=True,
                                                 last_n=2))  # fmt: skip
    doc = colibri.dump(colibri.parse_conference((EXAMPLES / "rest_colibri_allocate_patch.json").read_bytes()))
    assert body["id"] == doc["id"]
    assert [c["name"] for c in body["contents"]] == ["audio", "video", "data"]
    for ours, theirs in zip(body["contents"], doc["contents"], strict=True):
        key = "sctpconnections" if ours["name"] == "data" else "channels"
        mine, ref = ours[key][0], theirs[key][0]
        for field in ("initiator", "endpoint", "channel-bundle-id"):
            assert mine[field] == ref[field]
    assert body["contents"][1]["channels"][0]["last-n"] == 2
    assert "last-n" not in body["contents"][0]["channels"][0]
    assert body["contents"][2]["sctpconnections"][0]["port"] == 5000
    assert body["channel-bundles"] == [
        {"id": EP, "transport": {"xmlns": "urn:xmpp:jingle:transports:ice-udp:1", "rtcp-mux": True}}
    ]


def test_create_request_has_no_id_and_no_data_by_default() -> None:
    body = colibri.dump(offer.allocation_request("ep", colibri_id=None, expire=60))
    assert "id" not in body and [c["name"] for c in body["contents"]] == ["audio", "video"]


def test_read_allocation_from_documented_response() -> None:
    alloc = offer.read_allocation(example_response(), EP)
    assert alloc.channels == {
        "audio": "e4023f2a35c47d57",
        "video": "f52e248a094d3334",
        "data": "5c258c1a66d1c021",
    }
    assert alloc.sctp and alloc.transport.ufrag == "1t16a1ai1rpu7f"


def test_read_allocation_errors_are_clear() -> None:
    with pytest.raises(offer.AllocationError, match="no audio/video channel for endpoint other"):
        offer.read_allocation(example_response(), "other")
    resp = example_response()
    resp.channel_bundles[0].transport.fingerprints = None  # type: ignore[index,union-attr]
    with pytest.raises(offer.AllocationError, match="lacks ufrag/pwd/fingerprint"):
        offer.read_allocation(resp, EP)


def other_sources() -> dict[str, MediaSources]:
    owner = "room@muc.meet.jitsi/bbbb"
    return {
        "audio": MediaSources(sources=[Source(21, "bbbb-a0", owner)]),
        "video": MediaSources(sources=[Source(22, "bbbb-v0", owner), Source(23, "bbbb-v0", owner)],
                              groups=[SsrcGroup(semantics="FID", sources=[22, 23])]),
    }  # fmt: skip


def test_session_initiate_carries_transport_sources_codecs_bundle() -> None:
    alloc = offer.read_allocation(example_response(), EP)
    msg = offer.session_initiate("sid1", "focus@auth.meet.jitsi/focus", alloc, other_sources(), ice_lite=True)
    again = jingle.parse_xml(jingle.to_xml(msg))
    assert again == msg
    assert msg.bundle == ["audio", "video", "data"]
    audio, video, data = msg.contents
    assert audio.transport is not None and audio.transport.ice_lite and len(audio.transport.candidates) == 4
    assert audio.description is not None
    assert [(p.id, p.name) for p in audio.description.payload_types] == [
        (111, "opus"), (112, "red"), (126, "telephone-event")
    ]
    assert audio.description.payload_types[1].parameters == {"": "111/111"}
    assert video.description is not None
    assert [(p.id, p.name, p.parameters.get("apt")) for p in video.description.payload_types] == [
        (100, "VP8", None), (96, "rtx", "100"), (101, "VP9", None), (97, "rtx", "101"),
        (107, "H264", None), (99, "rtx", "107"),
    ]
    h264 = video.description.payload_types[4]
    assert h264.parameters == {"profile-level-id": "42e01f", "packetization-mode": "1"}
    assert all(p.rtcp_fbs for p in video.description.payload_types if p.name != "rtx")
    assert video.description is not None and [s.ssrc for s in video.description.sources] == [22, 23]
    assert video.description.ssrc_groups[0].sources == [22, 23]
    assert data.transport is not None and data.transport.sctp_port == 5000


def participant() -> Participant:
    return Participant(endpoint_id="aaaa", occupant_jid="room@muc.meet.jitsi/aaaa",
                       channels={"audio": "ca", "video": "cv"}, sid="sid1")  # fmt: skip


def accept() -> Jingle:
    t = Transport(
        ufrag="u",
        pwd="p" * 22,
        rtcp_mux=True,
        fingerprints=[colibri.Fingerprint(hash="sha-256", fingerprint="AA:BB", setup="active")],
    )
    audio = RtpDescription(
        media="audio",
        sources=[Source(31, owner="someone@else/x")],
        payload_types=list(offer.OFFERED_PAYLOAD_TYPES["audio"]),
    )
    video = RtpDescription(
        media="video",
        sources=[Source(32), Source(33)],
        ssrc_groups=[
            SsrcGroup(semantics="FID", sources=[32, 33]),
            SsrcGroup(semantics="FID", sources=[99, 100]),
        ],
    )
    return Jingle(action="session-accept", sid="sid1", contents=[
        JingleContent(name="audio", description=audio, transport=t),
        JingleContent(name="video", description=video, transport=t)])  # fmt: skip


def test_owned_sources_override_owner_and_name_and_drop_foreign_groups() -> None:
    p = participant()
    owned = offer.owned_sources(accept(), p)
    assert [(s.ssrc, s.owner, s.name) for s in owned["audio"].sources] == [(31, p.occupant_jid, "aaaa-a0")]
    assert [s.name for s in owned["video"].sources] == ["aaaa-v0", "aaaa-v0"]
    assert owned["video"].groups == [SsrcGroup(semantics="FID", sources=[32, 33])]


def test_accept_patch_is_the_documented_answer_shape() -> None:
    p = participant()
    p.sources = offer.owned_sources(accept(), p)
    body = colibri.dump(offer.accept_patch("conf1", p, accept(), expire=60))
    assert body["id"] == "conf1"
    audio, video = body["contents"]
    assert audio["channels"][0]["id"] == "ca" and audio["channels"][0]["sources"] == [31]
    assert audio["channels"][0]["payload-types"][0]["name"] == "opus"
    assert video["channels"][0]["ssrc-groups"] == [{"semantics": "FID", "sources": [32, 33]}]
    bundle = body["channel-bundles"][0]
    assert bundle["id"] == "aaaa" and bundle["transport"]["ufrag"] == "u"
    assert bundle["transport"]["fingerprints"] == [
        {"fingerprint": "AA:BB", "hash": "sha-256", "setup": "active"}
    ]
    colibri.parse_conference(body)  # valid for the bridge's parser


def test_expire_request_zeroes_every_channel() -> None:
    p = participant()
    p.channels["data"] = "cd"
    body = colibri.dump(offer.expire_request("conf1", p))
    assert body == {"id": "conf1", "contents": [
        {"name": "audio", "channels": [{"id": "ca", "expire": 0}]},
        {"name": "video", "channels": [{"id": "cv", "expire": 0}]},
        {"name": "data", "sctpconnections": [{"id": "cd", "expire": 0}]}]}  # fmt: skip


def test_source_update_only_lists_media_with_sources() -> None:
    msg = offer.source_update("source-remove", "sid9", {"audio": other_sources()["audio"]})
    assert msg.action == "source-remove" and [c.name for c in msg.contents] == ["audio"]
    assert msg.contents[0].description is not None and msg.contents[0].description.payload_types == []
    with pytest.raises(ValueError):
        offer.source_update("session-accept", "sid9", {})


def test_merge_and_remove_sources() -> None:
    current = other_sources()
    offer.merge_sources(current, {"audio": MediaSources(sources=[Source(21), Source(24)])})
    assert [s.ssrc for s in current["audio"].sources] == [21, 24]
    removed = offer.remove_sources(current, {"video": MediaSources(sources=[Source(22)])})
    assert [s.ssrc for s in removed["video"].sources] == [22] and current["video"].groups == []
    assert offer.remove_sources(current, {"video": MediaSources(sources=[Source(77)])}) == {}


def test_terminate_moving() -> None:
    msg = offer.session_terminate("s", "success", "moving")
    assert jingle.parse_xml(jingle.to_xml(msg)).reason == jingle.JingleReason("success", "moving")


def test_receivers_get_the_first_simulcast_ssrc_and_its_rtx_only() -> None:
    """Jicofo strips simulcast for receivers: lib-jitsi-meet turns every SSRC it is given into
    an m-line of one msid and Chrome refuses duplicate a=msid lines."""
    sim = MediaSources(
        sources=[Source(ssrc=n, name="ep-v0", owner="r@muc/ep") for n in (1, 2, 3, 11, 12, 13)],
        groups=[
            SsrcGroup(semantics="SIM", sources=[1, 2, 3]),
            SsrcGroup(semantics="FID", sources=[1, 11]),
            SsrcGroup(semantics="FID", sources=[2, 12]),
            SsrcGroup(semantics="FID", sources=[3, 13]),
        ],
    )
    plain = MediaSources(sources=[Source(ssrc=7, name="other-v0")], groups=[])
    for message in (
        offer.source_update("source-add", "sid", {"video": sim}),
        offer.source_update("source-remove", "sid", {"video": sim}),
    ):
        (content,) = message.contents
        assert content.description is not None
        assert [s.ssrc for s in content.description.sources] == [1, 11]
        assert [(g.semantics, g.sources) for g in content.description.ssrc_groups] == [("FID", [1, 11])]
    assert offer.strip_simulcast(plain) is plain
    # what the focus keeps for the bridge is untouched: it needs every layer
    assert len(sim.sources) == 6 and len(sim.groups) == 4

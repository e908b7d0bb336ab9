"""Jingle XML <-> models <-> Colibri <-> SDP, against the Colibri REST document's shapes and Jicofo's offer layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common import colibri, jingle, jingle_sdp
from services.common.colibri import Candidate, Fingerprint, PayloadType, RtcpFb, RtpHdrExt, SsrcGroup
from services.common.jingle import (
    Jingle,
    JingleContent,
    JingleError,
    JingleReason,
    RtpDescription,
    Source,
    Transport,
)
from services.common.jingle_sdp import SdpOffer

DATA = Path(__file__).parent / "data"
OWNER_A = "room@muc.meet.jitsi/aaaa"


def bridge_transport() -> colibri.IceUdpTransport:
    resp = colibri.parse_conference((DATA / "rest_colibri_allocate_response.json").read_bytes())
    return resp.channel_bundles[0].transport  # type: ignore[index,return-value]


def offer() -> Jingle:
    t = jingle.transport_from_colibri(bridge_transport(), ice_lite=True)
    t.web_socket = "wss://meet.example/colibri-ws/jvb1/c1/ep1?pwd=x"
    audio = RtpDescription(
        media="audio",
        payload_types=[
            PayloadType(
                id=111,
                name="opus",
                clockrate=48000,
                channels=2,
                parameters={"minptime": "10", "useinbandfec": "1"},
            )
        ],
        hdrexts=[RtpHdrExt(id=1, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level")],
        sources=[Source(ssrc=11, name="aaaa-a0", owner=OWNER_A)],
        rtcp_mux=True,
    )
    video = RtpDescription(
        media="video",
        payload_types=[
            PayloadType(
                id=100,
                name="VP8",
                clockrate=90000,
                rtcp_fbs=[RtcpFb(type="nack"), RtcpFb(type="nack", subtype="pli")],
            ),
            PayloadType(id=96, name="rtx", clockrate=90000, parameters={"apt": "100"}),
        ],
        sources=[
            Source(ssrc=12, name="aaaa-v0", owner=OWNER_A, msid="s t"),
            Source(ssrc=13, name="aaaa-v0", owner=OWNER_A),
        ],
        ssrc_groups=[SsrcGroup(semantics="FID", sources=[12, 13])],
        rtcp_mux=True,
    )
    return Jingle(
        action="session-initiate", sid="s1", initiator="focus@auth.meet.jitsi/focus",
        contents=[JingleContent(name="audio", description=audio, transport=t),
                  JingleContent(name="video", description=video, transport=t)],
        bundle=["audio", "video"],
    )  # fmt: skip


def test_xml_round_trip_keeps_everything() -> None:
    original = offer()
    text = jingle.to_xml(original)
    parsed = jingle.parse_xml(text)
    assert parsed == original
    assert 'xmlns:ns0="urn:xmpp:jingle:1"' in text or 'xmlns="urn:xmpp:jingle:1"' in text


def test_offer_xml_has_jicofo_shape() -> None:
    el = jingle.to_element(offer())
    q = jingle._q
    content = el.find(q(jingle.NS_JINGLE, "content"))
    assert content is not None and content.get("name") == "audio" and content.get("creator") == "initiator"
    transport = content.find(q(jingle.NS_ICE_UDP, "transport"))
    assert transport is not None and transport.get("ufrag") == "1t16a1ai1rpu7f"
    fp = transport.find(q(jingle.NS_DTLS, "fingerprint"))
    assert fp is not None and fp.get("hash") == "sha-1" and fp.get("setup") == "actpass"
    assert fp.text == "8F:B5:A3:C2:35:1D:42:E4:B6:B4:F1:08:F8:5D:47:38:2D:E8:07:F8"
    ws = transport.find(q(jingle.NS_COLIBRI, "web-socket"))
    assert ws is not None and ws.get("url", "").startswith("wss://")
    cands = transport.findall(q(jingle.NS_ICE_UDP, "candidate"))
    assert len(cands) == 4 and cands[0].get("tcptype") == "passive"
    src = content.find(f"{q(jingle.NS_RTP, 'description')}/{q(jingle.NS_SSMA, 'source')}")
    assert src is not None and src.get("ssrc") == "11" and src.get("name") == "aaaa-a0"
    info = src.find(q(jingle.NS_JITMEET, "ssrc-info"))
    assert info is not None and info.get("owner") == OWNER_A
    group = el.find(q(jingle.NS_GROUPING, "group"))
    assert group is not None and group.get("semantics") == "BUNDLE"
    assert [c.get("name") for c in group] == ["audio", "video"]


def test_terminate_reason_and_session_info() -> None:
    term = Jingle(action="session-terminate", sid="s", reason=JingleReason("success", "moving"))
    assert jingle.parse_xml(jingle.to_xml(term)).reason == JingleReason("success", "moving")
    info = jingle.parse_xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-info' sid='s'>"
        "<ice-state xmlns='http://jitsi.org/protocol/focus'>failed</ice-state>"
        "<bridge-session xmlns='http://jitsi.org/protocol/focus' id='b1'/></jingle>"
    )
    assert info.ice_state == "failed" and info.bridge_session == "b1"


@pytest.mark.parametrize(
    ("xml", "where"),
    [
        ("<jingle xmlns='urn:xmpp:jingle:1' sid='s'/>", "jingle@action"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='dance' sid='s'/>", "jingle@action"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='source-add'/>", "jingle@sid"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'><content name='audio'>"
         "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>"
         "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='x1'/></description></content></jingle>",
         "content[0]/description/source[0]@ssrc"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'><content name='audio'>"
         "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>"
         "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='4294967296'/></description></content></jingle>",
         "content[0]/description/source[0]@ssrc"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='s'><content name='audio'>"
         "<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'><candidate component='1' foundation='1' "
         "protocol='udp' priority='1' ip='1.2.3.4' port='99999' type='host'/></transport></content></jingle>",
         "content[0]/transport/candidate[0]@port"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='s'><content/></jingle>",
         "content[0]@name"),
        ("<jingle xmlns='urn:xmpp:jingle:1' action='session-accept' sid='s'", ""),
        ("<other/>", "jingle"),
    ],
)  # fmt: skip
def test_bad_input_names_the_culprit(xml: str, where: str) -> None:
    with pytest.raises(JingleError) as err:
        jingle.parse_xml(xml)
    assert err.value.where == where


def test_entities_are_refused() -> None:
    bomb = "<!DOCTYPE x [<!ENTITY a 'aaaa'>]><jingle xmlns='urn:xmpp:jingle:1' action='x' sid='&a;'/>"
    with pytest.raises(Exception):  # noqa: B017 - defusedxml's EntitiesForbidden
        jingle.parse_xml(bomb)


def test_transport_to_colibri_matches_documented_answer_shape() -> None:
    t = Transport(ufrag="CBdMLgEmFdIJ9xjJ", pwd="qZ6ehCjUjOS04MxUq+ahdctA", rtcp_mux=True,
                  fingerprints=[Fingerprint(hash="sha-256", fingerprint="49:37")])  # fmt: skip
    doc = json.loads((DATA / "rest_colibri_answer_patch.json").read_text())["channel-bundles"][0]["transport"]
    out = colibri.dump(jingle.transport_to_colibri(t))
    assert out["xmlns"] == doc["xmlns"] and out["rtcp-mux"] is True and out["ufrag"] == doc["ufrag"]
    assert out["fingerprints"] == [{"fingerprint": "49:37", "hash": "sha-256"}]


def test_channel_update_fields() -> None:
    desc = offer().contents[1].description
    assert desc is not None
    update = jingle.channel_update(desc)
    ch = colibri.Channel(id="c", **update)  # type: ignore[arg-type]
    out = colibri.dump(ch)
    assert out["sources"] == [12, 13]
    assert out["ssrc-groups"] == [{"semantics": "FID", "sources": [12, 13]}]
    assert out["payload-types"][1]["parameters"] == {"apt": "100"}


def test_sdp_offer_layout() -> None:
    sdp = SdpOffer(offer())
    text = sdp.render()
    assert "a=group:BUNDLE audio video r0 r1\r\n" in text
    assert "a=ice-lite\r\n" in text
    sections = text.split("m=")[1:]
    assert [s.split()[0] for s in sections] == ["audio", "video", "audio", "video"]
    local_audio, local_video, remote_audio, remote_video = sections
    assert "a=sendrecv" in local_audio and "a=ssrc:" not in local_audio
    assert "a=sendonly" in remote_audio and "a=ssrc:11 cname:" + OWNER_A in remote_audio
    assert "a=ssrc-group:FID 12 13" in remote_video
    assert remote_video.index("a=ssrc:12 ") < remote_video.index("a=ssrc:13 ")
    assert "a=rtpmap:111 opus/48000/2" in local_audio and "a=fmtp:96 apt=100" in local_video
    assert "a=rtcp-fb:100 nack pli" in local_video
    assert "a=candidate:3 1 udp 2113932031 192.168.142.251 10000 typ host generation 0" in local_audio
    assert "a=fingerprint:sha-1 8F:B5" in local_audio and "a=setup:actpass" in local_audio


def test_sdp_offer_is_valid_for_aiortc() -> None:
    from aiortc.sdp import SessionDescription

    parsed = SessionDescription.parse(SdpOffer(offer()).render())
    assert [m.kind for m in parsed.media] == ["audio", "video", "audio", "video"]
    assert parsed.media[3].ssrc[0].ssrc == 12 and parsed.media[3].ice.iceLite is True
    assert parsed.media[0].dtls.role == "auto"


def test_sdp_source_add_and_remove_keep_mlines() -> None:
    sdp = SdpOffer(offer())
    sdp.render()
    owner_b = "room@muc.meet.jitsi/bbbb"
    add = Jingle(action="source-add", sid="s1", contents=[
        JingleContent(name="audio", description=RtpDescription(media="audio", sources=[Source(21, "b-a0", owner_b)]))
    ])  # fmt: skip
    sdp.add_sources(add)
    text = sdp.render()
    assert "a=group:BUNDLE audio video r0 r1 r2\r\n" in text and "a=ssrc:21 " in text
    assert "o=- 1 2 IN IP4" in text  # version bumps per renegotiation
    remove = Jingle(action="source-remove", sid="s1", contents=[
        JingleContent(name="audio", description=RtpDescription(media="audio", sources=[Source(11)]))
    ])  # fmt: skip
    sdp.remove_sources(remove)
    text = sdp.render()
    sections = text.split("m=")[1:]
    assert len(sections) == 5
    assert "a=inactive" in sections[2] and "a=ssrc:11" not in text
    assert "a=sendonly" in sections[4]
    back = Jingle(action="source-add", sid="s1", contents=[
        JingleContent(name="audio", description=RtpDescription(media="audio", sources=[Source(14, "a-a0", OWNER_A)]))
    ])  # fmt: skip
    sdp.add_sources(back)
    sections = sdp.render().split("m=")[1:]
    assert len(sections) == 6 and "a=inactive" in sections[2]  # the old line is not reused
    assert "a=mid:r3" in sections[5] and "a=ssrc:14 " in sections[5]


CHROME_LIKE_ANSWER = "\r\n".join([
    "v=0", "o=- 5 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE audio video r0 r1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:audio", "a=ice-ufrag:uf1",
    "a=ice-pwd:pw1pw1pw1pw1pw1pw1pw1pw1", "a=fingerprint:sha-256 AA:BB", "a=setup:active", "a=sendrecv",
    "a=candidate:1 1 UDP 2122260223 127.0.0.1 40000 typ host", "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1", "a=ssrc:555 cname:x", "a=ssrc:555 msid:st a",
    "m=video 9 UDP/TLS/RTP/SAVPF 100 96", "c=IN IP4 0.0.0.0", "a=mid:video", "a=sendrecv",
    "a=rtpmap:100 VP8/90000", "a=rtcp-fb:100 nack", "a=rtcp-fb:100 nack pli", "a=rtpmap:96 rtx/90000",
    "a=fmtp:96 apt=100", "a=ssrc-group:FID 666 667", "a=ssrc:666 cname:x", "a=ssrc:667 cname:x",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:r0", "a=recvonly", "a=rtpmap:111 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 100", "a=mid:r1", "a=recvonly", "a=rtpmap:100 VP8/90000", "",
])  # fmt: skip


def test_parse_sdp_answer_to_session_accept() -> None:
    contents = jingle_sdp.parse_sdp_answer(CHROME_LIKE_ANSWER, owner=OWNER_A, name_prefix="aaaa")
    assert [c.name for c in contents] == ["audio", "video"]
    audio, video = contents
    t = audio.transport
    assert t is not None and t.ufrag == "uf1" and t.fingerprints[0].setup == "active"
    assert t.candidates[0].ip == "127.0.0.1" and t.candidates[0].protocol == "udp"
    assert audio.description is not None and video.description is not None
    assert [s.ssrc for s in audio.description.sources] == [555]
    assert audio.description.sources[0].name == "aaaa-a0" and audio.description.sources[0].msid == "st a"
    assert audio.description.payload_types[0].parameters == {"minptime": "10", "useinbandfec": "1"}
    assert [s.name for s in video.description.sources] == ["aaaa-v0", "aaaa-v0"]
    assert video.description.ssrc_groups == [SsrcGroup(semantics="FID", sources=[666, 667])]
    assert video.description.payload_types[0].rtcp_fbs == [
        RtcpFb(type="nack"),
        RtcpFb(type="nack", subtype="pli"),
    ]
    accept = Jingle(action="session-accept", sid="s1", contents=contents, bundle=["audio", "video"])
    assert jingle.parse_xml(jingle.to_xml(accept)) == accept


def test_parse_sdp_answer_rejects_incomplete() -> None:
    with pytest.raises(JingleError, match="ice-ufrag"):
        jingle_sdp.parse_sdp_answer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio\r\n")
    with pytest.raises(JingleError, match="no audio/video/data"):
        jingle_sdp.parse_sdp_answer("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:r0\r\n")


def test_candidate_sdp_round_trip() -> None:
    c = Candidate(foundation="3", component=1, protocol="udp", priority=2113932031, ip="10.0.0.1", port=10000,
                  type="srflx", rel_addr="192.168.1.2", rel_port=5000)  # fmt: skip
    assert jingle_sdp.candidate_from_sdp(jingle_sdp.candidate_to_sdp(c)) == c
    with pytest.raises(JingleError):
        jingle_sdp.candidate_from_sdp("candidate:1 1 udp")


def test_bridge_session_with_region_and_restart_round_trips() -> None:
    message = jingle.Jingle(action="session-terminate", sid="s1", bridge_session="b1",
                            bridge_session_region="eu", bridge_session_restart=True)  # fmt: skip
    text = jingle.to_xml(message)
    assert "http://jitsi.org/protocol/focus" in text and 'restart="true"' in text and 'region="eu"' in text
    back = jingle.parse_xml(text)
    assert (back.bridge_session, back.bridge_session_region, back.bridge_session_restart) == ("b1", "eu", True)
    plain = jingle.parse_xml(jingle.to_xml(jingle.Jingle(action="session-initiate", sid="s2", bridge_session="b2")))
    assert (plain.bridge_session, plain.bridge_session_region, plain.bridge_session_restart) == ("b2", None, False)


RED = PayloadType(id=112, name="red", clockrate=48000, channels=2, parameters={"": "111/111"})


def test_nameless_fmtp_parameter_survives_jingle_and_sdp() -> None:
    """RFC 2198's ``a=fmtp:112 111/111`` has no name: a ``<parameter value='111/111'/>``."""
    original = offer()
    assert original.contents[0].description is not None
    original.contents[0].description.payload_types.append(RED.model_copy(deep=True))
    xml = jingle.to_xml(original)
    assert "value=\"111/111\"" in xml and "name=\"\"" not in xml
    back = jingle.parse_xml(xml)
    assert back.contents[0].description is not None
    assert back.contents[0].description.payload_types[-1].parameters == {"": "111/111"}
    assert "a=fmtp:112 111/111\r\n" in SdpOffer(back).render()
    answer = CHROME_LIKE_ANSWER.replace(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=", "m=audio 9 UDP/TLS/RTP/SAVPF 111 112\r\nc="
    ).replace("a=ssrc:555 cname:x", "a=rtpmap:112 red/48000/2\r\na=fmtp:112 111/111\r\na=ssrc:555 cname:x")
    audio = jingle_sdp.parse_sdp_answer(answer, owner=OWNER_A, name_prefix="aaaa")[0]
    assert audio.description is not None
    assert audio.description.payload_types[1].parameters == {"": "111/111"}

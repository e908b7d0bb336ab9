"""Hostile inputs to the meeting features (screen sharing, connection status), at the cores that
decide: a participant cannot pose as another's source in a source-add, nor make the bridge treat
another endpoint's video as its screen share, nor grow the bridge's state with video-type
messages; a forged ``videoType`` is dropped at the Jingle parser. The page's side (unknown or
flooding reactions, a garbage raised-hand value) is in ``services/web/test/features.test.js``."""

from __future__ import annotations

from services.bridge.media.allocation.lastn import ConferenceIntelligencePolicy
from services.bridge.media.allocation.video_policy import MAX_DESKTOP_SOURCES
from services.bridge.media.tests.test_lastn import steer
from services.common import bridge_channel
from services.common.jingle import Jingle, JingleContent, RtpDescription, Source, parse_xml
from services.focus import flows
from services.focus.conference import Conference
from services.focus.tests.test_flows import ROOM, S, join_and_accept


def test_a_source_add_naming_someone_elses_source_is_renamed_to_the_senders() -> None:
    conf = Conference(room=ROOM)
    join_and_accept(conf, "a", {"video": [1]})
    join_and_accept(conf, "b", {"audio": [2]})
    forged = Jingle(action="source-add", sid="sid-b", contents=[JingleContent(name="video", description=RtpDescription(
        media="video", sources=[Source(7, name="a-v1", video_type="desktop"), Source(8, name="b-v1x")]))])  # fmt: skip
    out = flows.sources_changed(conf, conf.participants["b"], forged, S)
    sent = out.jingle[0][1].sources()["video"]
    assert [(s.ssrc, s.name, s.owner) for s in sent] == [(7, "b-v0", f"{ROOM}/b"), (8, "b-v0", f"{ROOM}/b")]
    assert sent[0].video_type == "desktop"  # the type stays: it is the sender's own claim about itself


def test_an_unknown_video_type_is_dropped_by_the_parser() -> None:
    jingle = parse_xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'>"
        "<content name='video' creator='initiator'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>"
        "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='5' name='b-v1' videoType='&lt;script&gt;'/>"
        "<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='6' name='b-v1' videoType='desktop'/>"
        "</description></content></jingle>"
    )
    assert [s.video_type for s in jingle.contents[0].description.sources] == [None, "desktop"]  # type: ignore[union-attr]


def test_video_type_messages_only_touch_the_senders_own_sources_and_are_bounded() -> None:
    policy = ConferenceIntelligencePolicy()
    for ep in ("a", "b"):
        policy.on_endpoint_added(ep)
    for name in ("a-v0", "a-v1", "a-v", "a-v1 ", "../a-v1", "a-v99999"):
        steer(
            policy,
            "b",
            {"colibriClass": "SourceVideoTypeMessage", "sourceName": name, "videoType": "desktop"},
        )
    assert not policy.video.is_desktop("a-v0") and not policy.video.is_desktop("a-v1")
    for i in range(100):
        steer(
            policy,
            "b",
            {"colibriClass": "SourceVideoTypeMessage", "sourceName": f"b-v{i}", "videoType": "desktop"},
        )
    assert sum(policy.video.is_desktop(f"b-v{i}") for i in range(100)) == MAX_DESKTOP_SOURCES
    steer(policy, "b", {"colibriClass": "SourceVideoTypeMessage", "sourceName": "b-v1", "videoType": "3d"})
    assert policy.video.is_desktop("b-v1")  # refused by the message schema: nothing changed
    policy.on_endpoint_removed("b")
    assert not policy.video.is_desktop("b-v1")


def test_reopening_a_bridge_channel_tells_only_the_opener_and_only_who_is_interrupted() -> None:
    """A client that reconnects its bridge channel in a loop gets one status message per
    interrupted endpoint per open, sent to itself alone: nothing reaches the others (no
    amplification) and nothing is said about endpoints whose media flows."""
    sent: list[tuple[str, dict[str, object]]] = []
    policy = ConferenceIntelligencePolicy(
        lambda ep, m: sent.append((ep, bridge_channel.to_dict(m))), clock=lambda: 0.0
    )
    for ep in ("hostile", "quiet", "busy"):
        policy.on_endpoint_added(ep)
    policy.connectivity.on_media("busy", 100.0)
    policy.connectivity.on_media("hostile", 100.0)
    policy.connectivity.check(101.0)  # quiet never sent anything: inactive after the first timeout
    assert policy.connectivity.inactive() == ["quiet"]
    sent.clear()
    for _ in range(1000):
        policy.on_channel_open("hostile")
    assert {ep for ep, _ in sent} == {"hostile"}
    assert len(sent) == 1000
    assert all(m == {"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "quiet", "active": "false"}
               for _, m in sent)  # fmt: skip

"""Colibri request semantics of the conference book, with the Colibri REST document's requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.bridge.colibri.conferences import (
    ColibriRequestError,
    ConferenceBook,
    CreateEndpoint,
    ExpireEndpoint,
    SetAudioMixing,
    SetColibriLastN,
    SetRemoteTransport,
    SetSctp,
    SetSources,
    UnknownConference,
    render,
)
from services.bridge.media.model import DtlsFingerprint, IceCandidate, LocalTransport
from services.common.colibri import dump, parse_conference

SEEDS = Path(__file__).resolve().parents[3] / "services" / "common" / "tests" / "data"
EP = "9f537ebb-1c2a-4ee9-9940-373304f9b260"

LOCAL = LocalTransport(
    ufrag="bridgeufrag",
    pwd="bridgepwd",
    fingerprints=[DtlsFingerprint(hash="sha-256", fingerprint="AA:BB", setup="actpass")],
    candidates=[
        IceCandidate(
            foundation="1",
            component=1,
            protocol="udp",
            priority=2130706431,
            ip="127.0.0.1",
            port=10000,
            type="host",
            id="c1",
        )
    ],
)


def example(name: str) -> bytes:
    return (SEEDS / name).read_bytes()


def run(book: ConferenceBook, conf_id: str | None, body: bytes, now: float = 0.0) -> dict:
    """Prepare + 'carry out' the effects as the I/O layer would (local transports are data here)."""
    plan = book.prepare(conf_id, parse_conference(body), now)
    for eff in plan.effects:
        if isinstance(eff, CreateEndpoint):
            plan.set_local_transport(eff.endpoint_id, LOCAL)
    conf = book.commit(plan)
    return dump(render(conf, lambda c, e, p: f"wss://h/colibri-ws/jvb1/{c}/{e}?pwd={p}", plan))


def example_conference(book: ConferenceBook) -> str:
    created = run(book, None, b"[]")
    assert set(created) == {"id"}
    body = example("rest_colibri_allocate_patch.json").replace(b"a439deb315b4128c", created["id"].encode())
    run(book, created["id"], body)
    return created["id"]


def test_documented_replay_shapes() -> None:
    book = ConferenceBook()
    created = run(book, None, b"[]")
    cid = created["id"]
    assert len(cid) == 16
    body = example("rest_colibri_allocate_patch.json").replace(b"a439deb315b4128c", cid.encode())
    plan = book.prepare(cid, parse_conference(body), 1.0)
    # the Colibri channel settings that steer the conference policy come along
    # and the sctpconnection enables the endpoint's data channel
    assert plan.effects == [
        CreateEndpoint(EP),
        SetAudioMixing(EP, True),
        SetColibriLastN(EP, 2),
        SetSctp(EP, 5000),
    ]
    plan.set_local_transport(EP, LOCAL)
    plan.set_mixed_ssrc(EP, 3816478770)  # what the policy answers for a mixer channel
    out = dump(render(book.commit(plan), lambda c, e, p: f"wss://h/colibri-ws/jvb1/{c}/{e}?pwd={p}", plan))
    assert out["id"] == cid
    assert [c["name"] for c in out["contents"]] == ["audio", "video", "data"]
    audio = out["contents"][0]["channels"][0]
    assert audio["rtp-level-relay-type"] == "mixer" and audio["endpoint"] == EP and len(audio["id"]) == 16
    assert audio["expire"] == 10 and audio["initiator"] is True and audio["channel-bundle-id"] == EP
    assert audio["sources"] == [
        3816478770
    ]  # as in the Colibri REST join example, step 4: the mixed stream's SSRC
    assert out["contents"][1]["channels"][0]["last-n"] == 2
    sctp = out["contents"][2]["sctpconnections"][0]
    assert sctp["port"] == 5000 and sctp["expire"] == 20
    (bundle,) = out["channel-bundles"]
    t = bundle["transport"]
    assert bundle["id"] == EP and t["ufrag"] == "bridgeufrag" and t["pwd"] == "bridgepwd"
    assert t["xmlns"] == "urn:xmpp:jingle:transports:ice-udp:1" and t["rtcp-mux"] is True
    assert t["fingerprints"] == [{"fingerprint": "AA:BB", "hash": "sha-256", "setup": "actpass"}]
    assert t["candidates"][0]["port"] == 10000
    assert t["web-socket"] == f"wss://h/colibri-ws/jvb1/{cid}/{EP}?pwd=bridgepwd"

    # step 6: the answer, with the channel ids the bridge gave
    answer = example("rest_colibri_answer_patch.json").replace(b"a439deb315b4128c", cid.encode())
    answer = answer.replace(b"e4023f2a35c47d57", audio["id"].encode())
    answer = answer.replace(b"f52e248a094d3334", out["contents"][1]["channels"][0]["id"].encode())
    answer = answer.replace(b"5c258c1a66d1c021", sctp["id"].encode())
    plan = book.prepare(cid, parse_conference(answer), 2.0)
    kinds = [type(e) for e in plan.effects]
    assert kinds == [SetRemoteTransport, SetSources, SetAudioMixing]  # audio is a translator again
    remote = plan.effects[0].remote  # type: ignore[union-attr]
    assert remote.ufrag == "CBdMLgEmFdIJ9xjJ" and remote.fingerprints[0].hash == "sha-256"
    sources = plan.effects[1].sources  # type: ignore[union-attr]
    assert sources.audio_ssrcs == [] and sources.video_ssrcs == [1, 2, 3]
    assert sources.ssrc_groups == [("FID", [2, 3])]
    assert {pt.name for pt in sources.payload_types} == {"opus", "H264", "VP8"}
    assert sources.payload_types[0].parameters == {"minptime": "10", "useinbandfec": "1"}
    book.commit(plan)
    full = dump(render(book.get(cid)))
    assert full["contents"][1]["channels"][0]["ssrc-groups"] == [{"semantics": "FID", "sources": [2, 3]}]


def test_unknown_conference() -> None:
    with pytest.raises(UnknownConference):
        ConferenceBook().prepare("nope", parse_conference(b"{}"), 0.0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"id": "other"}', "id"),
        (b'{"contents": [{"name": "audio", "channels": [{"id": "nope"}]}]}', "contents[0].channels[0].id"),
        (b'{"contents": [{"name": "data", "channels": [{}]}]}', "contents[0].channels"),
        (b'{"contents": [{"name": "audio", "sctpconnections": [{}]}]}', "contents[0].sctpconnections"),
        (
            b'{"contents": [{"name": "audio", "channels": []}, {"name": "audio", "channels": []}]}',
            "contents[1].name",
        ),
        (b'{"channel-bundles": [{"id": "zz"}]}', "channel-bundles[0].id"),
        (
            b'{"contents": [{"name": "audio", "channels": [{"endpoint": "a", "channel-bundle-id": "b"}]},'
            b'{"name": "video", "channels": [{"endpoint": "a", "channel-bundle-id": "c"}]}]}',
            "contents[1].channels[0].channel-bundle-id",
        ),
        (
            b'{"contents": [{"name": "audio", "channels": [{"endpoint": "a"}]}],'
            b'"channel-bundles": [{"id": "a", "transport": {"ufrag": "u", "pwd": "p"}}]}',
            "channel-bundles[0].transport.fingerprints",
        ),
        (
            b'{"contents": [{"name": "audio", "channels": [{"endpoint": "a"}]}],'
            b'"channel-bundles": [{"id": "a", "transport": {"pwd": "p"}}]}',
            "channel-bundles[0].transport.ufrag",
        ),
    ],
)
def test_bad_requests_name_the_field_and_change_nothing(body: bytes, field: str) -> None:
    book = ConferenceBook()
    cid = example_conference(book)
    before = dump(render(book.get(cid)))
    with pytest.raises(ColibriRequestError) as err:
        book.prepare(cid, parse_conference(body.replace(b'"other"', b'"other"')), 5.0)
    assert err.value.field == field
    assert dump(render(book.get(cid))) == before


def test_post_with_id_is_rejected() -> None:
    with pytest.raises(ColibriRequestError) as err:
        ConferenceBook().prepare(None, parse_conference(b'{"id": "x"}'), 0.0)
    assert err.value.field == "id"


def test_documented_post_example_creates_two_channels_without_endpoint() -> None:
    book = ConferenceBook()
    out = run(book, None, example("rest_colibri_post_request.json"))
    audio, _video = out["contents"]
    assert (
        audio["channels"][0]["expire"] == 60 and audio["channels"][0]["rtp-level-relay-type"] == "translator"
    )
    assert len(book.get(out["id"]).endpoints) == 2  # each unbundled channel is its own endpoint


def test_expire_zero_frees_now() -> None:
    book = ConferenceBook()
    cid = example_conference(book)
    ep = book.get(cid).endpoints[EP]
    ids = [*ep.channels, *ep.sctp]
    audio_id, video_id, sctp_id = ids
    body = (
        f'{{"contents": [{{"name": "audio", "channels": [{{"id": "{audio_id}", "expire": 0}}]}},'
        f'{{"name": "video", "channels": [{{"id": "{video_id}", "expire": 0}}]}},'
        f'{{"name": "data", "sctpconnections": [{{"id": "{sctp_id}", "expire": 0}}]}}]}}'
    ).encode()
    plan = book.prepare(cid, parse_conference(body), 3.0)
    assert plan.effects == [ExpireEndpoint(EP)]
    book.commit(plan)
    out = dump(render(book.get(cid), None, plan))
    assert [ch["expire"] for c in out["contents"] for ch in c.get("channels", c.get("sctpconnections"))] == [
        0,
        0,
        0,
    ]
    assert book.get(cid).endpoints == {}


def test_expiry_counts_media_activity() -> None:
    book = ConferenceBook(conference_idle_timeout=60)
    cid = example_conference(book)  # audio/video expire 10, sctp 20, touched at t=0
    last_packet = {"t": None}
    activity = lambda c, e: last_packet["t"]  # noqa: E731
    assert book.sweep(9.9, activity).expired_endpoints == []
    r = book.sweep(10.0, activity)  # channels gone, the sctp connection remains
    assert r.expired_endpoints == [] and not book.get(cid).endpoints[EP].channels
    last_packet["t"] = 15.0  # media keeps the sctp connection alive
    assert book.sweep(30.0, activity).expired_endpoints == []
    r = book.sweep(35.0, activity)
    assert r.expired_endpoints == [(cid, EP)]
    assert r.expired_conferences == []  # last request at t=0; idle timeout 60 s
    assert book.sweep(60.0, activity).expired_conferences == [cid]


def test_empty_conference_lives_until_idle_timeout() -> None:
    book = ConferenceBook(conference_idle_timeout=30)
    cid = run(book, None, b"[]", now=0.0)["id"]
    assert book.sweep(29.0, lambda c, e: None).expired_conferences == []
    assert book.sweep(30.0, lambda c, e: None).expired_conferences == [cid]


def test_stats_helpers() -> None:
    book = ConferenceBook()
    example_conference(book)
    run(book, None, example("rest_colibri_post_request.json"))
    assert book.endpoint_count() == 3 and book.largest_conference() == 2 and book.channel_count() == 5


def test_an_uncommitted_plan_leaves_the_book_untouched() -> None:
    """If the media engine fails after prepare(), nothing of the request may remain."""
    book = ConferenceBook()
    cid = example_conference(book)
    before = dump(render(book.get(cid)))
    ep = book.get(cid).endpoints[EP]
    audio_id = next(iter(ep.channels))
    body = (
        f'{{"contents": [{{"name": "audio", "channels": [{{"id": "{audio_id}", "expire": 33, "sources": [7]}},'
        f'{{"endpoint": "{EP}"}}, {{"endpoint": "other"}}]}}],'
        f'"channel-bundles": [{{"id": "{EP}", "transport": {{"ufrag": "u", "pwd": "p",'
        f'"fingerprints": [{{"fingerprint": "AA", "hash": "sha-256"}}]}}}}]}}'
    ).encode()
    plan = book.prepare(cid, parse_conference(body), 9.0)
    assert {type(e) for e in plan.effects} == {CreateEndpoint, SetRemoteTransport, SetSources}
    assert dump(render(book.get(cid))) == before
    assert book.get(cid).endpoints[EP].remote is None and book.get(cid).last_touched == 0.0


def test_sctpconnection_added_later_and_removed_alone() -> None:
    book = ConferenceBook()
    cid = example_conference(book)
    ep = book.get(cid).endpoints[EP]
    (sctp_id,) = ep.sctp
    untouched = book.prepare(cid, parse_conference(b'{"contents": [{"name": "data", "sctpconnections": [{"id": "'
                             + sctp_id.encode() + b'", "expire": 30}]}]}'), 2.0)  # fmt: skip
    assert not any(isinstance(e, SetSctp) for e in untouched.effects)  # still the same connection
    book.commit(untouched)
    gone = book.prepare(cid, parse_conference(b'{"contents": [{"name": "data", "sctpconnections": [{"id": "'
                        + sctp_id.encode() + b'", "expire": 0}]}]}'), 3.0)  # fmt: skip
    assert gone.effects == [SetSctp(EP, None)]  # the channels stay: only the data channel goes
    book.commit(gone)
    again = book.prepare(cid, parse_conference(b'{"contents": [{"name": "data", "sctpconnections": '
                         b'[{"endpoint": "' + EP.encode() + b'", "port": 5001}]}]}'), 4.0)  # fmt: skip
    assert again.effects == [SetSctp(EP, 5001)]


def test_candidates_alone_add_to_the_answer_like_jingle_transport_info() -> None:
    book = ConferenceBook()
    cid = example_conference(book)
    answer = {
        "channel-bundles": [
            {
                "id": EP,
                "transport": {
                    "ufrag": "u1",
                    "pwd": "p" * 22,
                    "fingerprints": [{"hash": "sha-256", "fingerprint": "AA:BB", "setup": "active"}],
                },
            }
        ]
    }

    run(book, cid, json.dumps(answer).encode())
    candidate = {"foundation": "1", "component": 1, "protocol": "udp", "priority": 9, "ip": "10.0.0.7",
                 "port": 4000, "type": "host", "generation": 0, "id": "x"}  # fmt: skip
    info = {
        "channel-bundles": [
            {"id": EP, "transport": {"ufrag": "u1", "pwd": "p" * 22, "candidates": [candidate]}}
        ]
    }
    plan = book.prepare(cid, parse_conference(json.dumps(info).encode()), 1.0)
    (effect,) = plan.effects
    assert isinstance(effect, SetRemoteTransport)
    assert [(c.ip, c.port) for c in effect.remote.candidates] == [("10.0.0.7", 4000)]
    assert effect.remote.fingerprints[0].setup == "active"  # kept from the answer
    book.commit(plan)
    # the same candidates again change nothing; a flood is capped
    assert book.prepare(cid, parse_conference(json.dumps(info).encode()), 2.0).effects == []
    flood = [{**candidate, "port": 5000 + i} for i in range(100)]
    info["channel-bundles"][0]["transport"]["candidates"] = flood  # type: ignore[index]
    plan = book.prepare(cid, parse_conference(json.dumps(info).encode()), 3.0)
    (effect,) = plan.effects
    assert len(effect.remote.candidates) == 32  # type: ignore[union-attr]


def test_candidates_alone_before_an_answer_are_refused() -> None:
    book = ConferenceBook()
    cid = example_conference(book)
    candidate = {"foundation": "1", "component": 1, "protocol": "udp", "priority": 9, "ip": "10.0.0.7",
                 "port": 4000, "type": "host", "generation": 0}  # fmt: skip

    info = {"channel-bundles": [{"id": EP, "transport": {"candidates": [candidate]}}]}
    with pytest.raises(ColibriRequestError, match="ufrag"):
        book.prepare(cid, parse_conference(json.dumps(info).encode()), 1.0)


def test_expiring_channels_that_are_already_gone_succeeds() -> None:
    """A participant that closed its peer connection before leaving: the bridge failed and freed
    its endpoint, then the focus expires the channels; that is not a bad request."""
    book = ConferenceBook()
    cid = example_conference(book)
    body = {
        "contents": [
            {"name": "audio", "channels": [{"id": "0123456789abcdef", "expire": 0}]},
            {"name": "data", "sctpconnections": [{"id": "fedcba9876543210", "expire": 0}]},
        ]
    }
    plan = book.prepare(cid, parse_conference(json.dumps(body).encode()), 1.0)
    assert plan.effects == []
    body["contents"][0]["channels"][0]["expire"] = 5  # type: ignore[index]
    with pytest.raises(ColibriRequestError):
        book.prepare(cid, parse_conference(json.dumps(body).encode()), 1.0)


def test_channel_direction_recvonly_mutes_that_kind_at_the_engine() -> None:
    """Jicofo's Colibri mute: the sender's audio channel becomes recvonly; sources re-sent."""
    book = ConferenceBook()
    body = {
        "contents": [
            {"name": "audio", "channels": [{"endpoint": "e1", "channel-bundle-id": "e1", "sources": [11]}]},
            {"name": "video", "channels": [{"endpoint": "e1", "channel-bundle-id": "e1", "sources": [12]}]},
        ]
    }
    created = run(book, None, json.dumps(body).encode())
    audio = (
        created["contents"][0]["channels"][0]["id"]
        if created["contents"][0]["name"] == "audio"
        else (created["contents"][1]["channels"][0]["id"])
    )
    mute = {"contents": [{"name": "audio", "channels": [{"id": audio, "direction": "recvonly"}]}]}
    plan = book.prepare(created["id"], parse_conference(json.dumps(mute).encode()), 1.0)
    effects = [e for e in plan.effects if isinstance(e, SetSources)]
    assert len(effects) == 1 and effects[0].sources.muted == frozenset({"audio"})
    assert effects[0].sources.audio_ssrcs == [11]
    book.commit(plan)
    unmute = {"contents": [{"name": "audio", "channels": [{"id": audio, "direction": "sendrecv"}]}]}
    plan = book.prepare(created["id"], parse_conference(json.dumps(unmute).encode()), 2.0)
    effects = [e for e in plan.effects if isinstance(e, SetSources)]
    assert effects and effects[0].sources.muted == frozenset()

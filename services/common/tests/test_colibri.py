"""The Colibri models against the Colibri REST document's JSON, verbatim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.colibri import (
    ICE_UDP_XMLNS,
    Channel,
    ColibriFormatError,
    Conference,
    IceUdpTransport,
    dump,
    parse_conference,
)

DATA = Path(__file__).parent / "data"


def example(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "rest_colibri_post_request.json",
        "rest_colibri_post_response.json",
        "rest_colibri_get_response.json",
        "rest_colibri_create_response.json",
        "rest_colibri_allocate_patch.json",
        "rest_colibri_allocate_response.json",
        "rest_colibri_answer_patch.json",
    ],
)
def test_every_documented_example_parses(name: str) -> None:
    conf = parse_conference(example(name))
    assert isinstance(conf, Conference)


def test_empty_array_is_an_empty_conference() -> None:
    # the Colibri REST join example, step 1: 'Post "[]" to <bridge_base_url>/colibri/conferences/'
    assert parse_conference(b"[]") == Conference()
    assert parse_conference(b"") == Conference()


def test_allocate_patch_fields() -> None:
    conf = parse_conference(example("rest_colibri_allocate_patch.json"))
    assert conf.id == "a439deb315b4128c"
    audio, video, data = conf.contents or []
    ch = (audio.channels or [])[0]
    assert ch.expire == 10 and ch.initiator is True and ch.direction == "sendrecv"
    assert ch.rtp_level_relay_type == "mixer"
    assert ch.channel_bundle_id == ch.endpoint == "9f537ebb-1c2a-4ee9-9940-373304f9b260"
    assert (video.channels or [])[0].last_n == 2
    sctp = (data.sctpconnections or [])[0]
    assert sctp.port == 5000 and sctp.expire == 20
    bundle = (conf.channel_bundles or [])[0]
    assert bundle.transport == IceUdpTransport(xmlns=ICE_UDP_XMLNS, rtcp_mux=True)


def test_allocate_response_round_trips_to_the_same_json() -> None:
    raw = json.loads(example("rest_colibri_allocate_response.json"))
    conf = parse_conference(raw)
    out = dump(conf)
    # the document shows "receive-simulcast-layer": null; Parley omits None fields
    del raw["contents"][1]["channels"][0]["receive-simulcast-layer"]
    assert out == raw
    transport = (conf.channel_bundles or [])[0].transport
    assert transport is not None and transport.ufrag == "1t16a1ai1rpu7f"
    cands = transport.candidates or []
    assert cands[0].tcptype == "passive" and cands[3].priority == 2113932031


def test_answer_patch_round_trips() -> None:
    raw = json.loads(example("rest_colibri_answer_patch.json"))
    conf = parse_conference(raw)
    assert dump(conf) == raw
    video = (conf.contents or [])[1]
    ch = (video.channels or [])[0]
    assert [(g.semantics, g.sources) for g in ch.ssrc_groups or []] == [("FID", [2, 3])]
    pts = ch.payload_types or []
    assert pts[0].name == "H264" and [(f.type, f.subtype) for f in pts[0].rtcp_fbs or []] == [
        ("ccm", "fir"),
        ("nack", None),
        ("nack", "pli"),
    ]
    audio_pt = ((conf.contents or [])[0].channels or [])[0].payload_types or []
    assert audio_pt[0].parameters == {"minptime": 10, "useinbandfec": 1}


def test_web_socket_is_serialized_under_its_documented_name() -> None:
    t = IceUdpTransport(ufrag="u", pwd="p", web_socket="wss://x/colibri-ws/jvb1/c/e?pwd=p")
    assert dump(t)["web-socket"] == "wss://x/colibri-ws/jvb1/c/e?pwd=p"
    assert dump(t)["xmlns"] == ICE_UDP_XMLNS


def test_none_fields_are_omitted() -> None:
    assert dump(Channel(id="a", expire=0)) == {"id": "a", "expire": 0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", ""),
        (b'"a string"', ""),
        (b"\xff\xfe", ""),
        (b'{"contents": 3}', "contents"),
        (b'{"contents": [{"name": "smell"}]}', "contents[0].name"),
        (
            b'{"contents": [{"name": "audio", "channels": [{"expire": -1}]}]}',
            "contents[0].channels[0].expire",
        ),
        (b'{"contents": [{"name": "audio", "channels": [{"expyre": 5}]}]}', "contents[0].channels[0].expyre"),
        (
            b'{"contents": [{"name": "audio", "channels": [{"sources": [4294967296]}]}]}',
            "contents[0].channels[0].sources[0]",
        ),
        (
            b'{"contents": [{"name": "video", "channels": [{"direction": "up"}]}]}',
            "contents[0].channels[0].direction",
        ),
        (
            b'{"channel-bundles": [{"id": "x", "transport": {"xmlns": "urn:other"}}]}',
            "channel-bundles[0].transport.xmlns",
        ),
        (
            b'{"channel-bundles": [{"id": "x", "transport": {"candidates": [{"ip": "1.2.3.4"}]}}]}',
            "channel-bundles[0].transport.candidates[0].foundation",
        ),
    ],
)
def test_bad_input_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(ColibriFormatError) as err:
        parse_conference(body)
    assert err.value.field == field

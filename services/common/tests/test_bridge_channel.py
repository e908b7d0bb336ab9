"""Bridge-channel messages: parse, serialize, errors."""

from __future__ import annotations

import json

import pytest

from services.common import bridge_channel as bc


def test_endpoint_message_round_trip_with_from() -> None:
    msg = bc.parse('{"colibriClass":"EndpointMessage","to":"","msgPayload":{"type":"e2e"},"extra":1}')
    assert isinstance(msg, bc.EndpointMessage) and msg.is_broadcast
    relayed = msg.model_copy(update={"from_endpoint": "abcd"})
    out = json.loads(bc.serialize(relayed))
    assert out == {
        "colibriClass": "EndpointMessage",
        "to": "",
        "msgPayload": {"type": "e2e"},
        "from": "abcd",
        "extra": 1,
    }


def test_serialize_puts_colibri_class_first_and_omits_none() -> None:
    text = bc.serialize(bc.ServerHello())
    assert text == '{"colibriClass":"ServerHello"}'
    text = bc.serialize(bc.DominantSpeakerEndpointChangeEvent(dominant_speaker_endpoint="e1"))
    assert json.loads(text) == {
        "colibriClass": "DominantSpeakerEndpointChangeEvent",
        "dominantSpeakerEndpoint": "e1",
        "previousSpeakers": [],
        "silence": False,
    }


@pytest.mark.parametrize(
    ("wire", "cls"),
    [
        ({"colibriClass": "ServerHello", "version": "1.0"}, bc.ServerHello),
        ({"colibriClass": "ClientHello"}, bc.ClientHello),
        ({"colibriClass": "EndpointStats", "from": "a", "bitrate": {"upload": 5}}, bc.EndpointStats),
        ({"colibriClass": "LastNChangedEvent", "lastN": -1}, bc.LastNChangedEvent),
        (
            {
                "colibriClass": "ReceiverVideoConstraints",
                "lastN": 3,
                "selectedSources": ["a-v0"],
                "onStageSources": [],
                "defaultConstraints": {"maxHeight": 180},
                "constraints": {"a-v0": {"maxHeight": 720, "maxFrameRate": 30.0}},
            },
            bc.ReceiverVideoConstraints,
        ),
        (
            {"colibriClass": "SourceVideoTypeMessage", "sourceName": "a-v0", "videoType": "desktop"},
            bc.SourceVideoTypeMessage,
        ),
        (
            {"colibriClass": "ReceiverAudioSubscription", "all": False, "include": ["a-a0"], "exclude": []},
            bc.ReceiverAudioSubscription,
        ),
        (
            {
                "colibriClass": "DominantSpeakerEndpointChangeEvent",
                "dominantSpeakerEndpoint": "a",
                "previousSpeakers": ["b"],
                "silence": True,
            },
            bc.DominantSpeakerEndpointChangeEvent,
        ),
        (
            {"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "a", "active": "false"},
            bc.EndpointConnectivityStatusChangeEvent,
        ),
        ({"colibriClass": "ForwardedSources", "forwardedSources": ["a-v0"]}, bc.ForwardedSources),
        (
            {"colibriClass": "SenderSourceConstraints", "sourceName": "a-v0", "maxHeight": 360},
            bc.SenderSourceConstraints,
        ),
        ({"colibriClass": "ConnectionStats", "estimatedDownlinkBandwidth": 2500000}, bc.ConnectionStats),
    ],
)
def test_every_class_round_trips(wire: dict[str, object], cls: type[bc.BridgeChannelMessage]) -> None:
    msg = bc.parse(json.dumps(wire))
    assert type(msg) is cls
    assert bc.to_dict(msg) == wire


def test_partial_receiver_constraints_leave_other_fields_unset() -> None:
    msg = bc.parse({"colibriClass": "ReceiverVideoConstraints", "lastN": 1})
    assert isinstance(msg, bc.ReceiverVideoConstraints)
    assert msg.selected_sources is None and msg.constraints is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{", ""),
        ("[1]", ""),
        ('{"to": "x"}', "colibriClass"),
        ('{"colibriClass": "Nope"}', "colibriClass"),
        ('{"colibriClass": 5}', "colibriClass"),
        ('{"colibriClass": "LastNChangedEvent"}', "lastN"),
        ('{"colibriClass": "LastNChangedEvent", "lastN": "many"}', "lastN"),
        (
            '{"colibriClass": "EndpointConnectivityStatusChangeEvent", "endpoint": "a", "active": true}',
            "active",
        ),
        (
            '{"colibriClass": "ReceiverVideoConstraints", "constraints": {"a": {"maxHeight": "x"}}}',
            "constraints.a.maxHeight",
        ),
    ],
)
def test_bad_input_names_the_field(text: str, field: str) -> None:
    with pytest.raises(bc.BridgeChannelError) as err:
        bc.parse(text)
    assert err.value.field == field

"""Brewery stats presence extension and health-check IQ payload."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from services.common import brewery


def test_encode_matches_the_documented_xml() -> None:
    el = brewery.encode_stats({"stress_level": 0.1, "drain": False, "region": "eu", "relay_id": None})
    assert el.tag == "{http://jitsi.org/protocol/colibri}stats"
    assert [(s.tag, s.attrib) for s in el] == [
        ("{http://jitsi.org/protocol/colibri}stat", {"name": "stress_level", "value": "0.1"}),
        ("{http://jitsi.org/protocol/colibri}stat", {"name": "drain", "value": "false"}),
        ("{http://jitsi.org/protocol/colibri}stat", {"name": "region", "value": "eu"}),
    ]


def test_decode_from_received_presence() -> None:
    presence = ET.fromstring(
        "<presence xmlns='jabber:client' from='jvbbrewery@internal-muc.meet.jitsi/jvb1'>"
        "<stats xmlns='http://jitsi.org/protocol/colibri'>"
        "<stat name='stress_level' value='0.42'/><stat name='graceful_shutdown' value='true'/>"
        "<stat name='version' value='0.1.0'/><stat name='conferences' value='3'/></stats></presence>"
    )
    el = brewery.find_stats(presence)
    assert el is not None
    stats = brewery.BridgeStats.from_element(el)
    assert stats.stress_level == pytest.approx(0.42)
    assert stats.graceful_shutdown is True and stats.drain is False and stats.healthy is True
    assert stats.version == "0.1.0" and stats.other == {"conferences": "3"}


def test_round_trip() -> None:
    values = {"stress_level": 0.5, "healthy": True, "shutting_down": False, "version": "1"}
    decoded = brewery.decode_stats(brewery.encode_stats(values))
    assert decoded == {"stress_level": "0.5", "healthy": "true", "shutting_down": "false", "version": "1"}


@pytest.mark.parametrize(
    ("xml", "field"),
    [
        ("<stats xmlns='http://jitsi.org/protocol/colibri'><stat value='1'/></stats>", "stat"),
        ("<stats xmlns='http://jitsi.org/protocol/colibri'><stat name='drain'/></stats>", "drain"),
        ("<stats xmlns='urn:other'/>", ""),
    ],
)
def test_malformed_stats_name_the_problem(xml: str, field: str) -> None:
    with pytest.raises(brewery.BreweryFormatError) as err:
        brewery.decode_stats(ET.fromstring(xml))
    assert err.value.field == field


@pytest.mark.parametrize(("name", "value"), [("stress_level", "high"), ("drain", "maybe")])
def test_bad_typed_values_name_the_stat(name: str, value: str) -> None:
    with pytest.raises(brewery.BreweryFormatError) as err:
        brewery.BridgeStats.from_stats({name: value})
    assert err.value.field == name


def test_healthcheck_payload() -> None:
    el = brewery.healthcheck_element()
    assert el.tag == "{http://jitsi.org/protocol/healthcheck}healthcheck" and len(el) == 0
    assert brewery.is_healthcheck(el)
    assert not brewery.is_healthcheck(ET.Element("{urn:xmpp:ping}ping"))

"""Brewery presence: how bridges announce themselves to the focus (docs/protocols.md#brewery).

A bridge joins the brewery MUC room and re-sends its presence every few seconds with

    <stats xmlns='http://jitsi.org/protocol/colibri'>
      <stat name='stress_level' value='0.1'/> ...
    </stats>

The focus reads those stats to pick the least loaded bridge, and checks each bridge with the
health-check IQ ``<healthcheck xmlns='http://jitsi.org/protocol/healthcheck'/>`` (empty result =
healthy, an error = unhealthy).

Everything here works on :mod:`xml.etree.ElementTree` elements, which is what slixmpp stanzas wrap
(``presence.xml.append(encode_stats(...))``, ``presence.xml.find(STATS_TAG)``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

COLIBRI_NS = "http://jitsi.org/protocol/colibri"
HEALTHCHECK_NS = "http://jitsi.org/protocol/healthcheck"
STATS_TAG = f"{{{COLIBRI_NS}}}stats"
STAT_TAG = f"{{{COLIBRI_NS}}}stat"
HEALTHCHECK_TAG = f"{{{HEALTHCHECK_NS}}}healthcheck"

# Stats keys a bridge publishes (the flat names of /colibri/stats, docs/protocols.md#brewery).
STRESS_LEVEL = "stress_level"
AVERAGE_PARTICIPANT_STRESS = "average_participant_stress"
GRACEFUL_SHUTDOWN = "graceful_shutdown"
SHUTTING_DOWN = "shutting_down"
DRAIN = "drain"
VERSION = "version"
REGION = "region"
RELAY_ID = "relay_id"
HEALTHY = "healthy"
CONFERENCES = "conferences"
PARTICIPANTS = "participants"
ENDPOINTS = "endpoints"
LARGEST_CONFERENCE = "largest_conference"
COLIBRI_URL = "colibri_url"
"""The bridge's Colibri REST base URL (``http://10.0.0.5:8080``), so the focus needs no map."""

PRESENCE_KEYS = (
    STRESS_LEVEL,
    AVERAGE_PARTICIPANT_STRESS,
    GRACEFUL_SHUTDOWN,
    SHUTTING_DOWN,
    DRAIN,
    VERSION,
    REGION,
    RELAY_ID,
    HEALTHY,
    CONFERENCES,
    PARTICIPANTS,
    ENDPOINTS,
    LARGEST_CONFERENCE,
    COLIBRI_URL,
)
"""Keys the bridge puts in its brewery presence; the focus needs the first nine."""


class BreweryFormatError(ValueError):
    """A ``<stats/>`` element or a stat value is malformed; ``field`` names the stat."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def encode_stats(stats: Mapping[str, object]) -> ET.Element:
    """``{"stress_level": 0.1, "drain": False}`` -> ``<stats xmlns=colibri><stat name value/>...``.

    Booleans become ``true``/``false``; ``None`` values are left out.
    """
    root = ET.Element(STATS_TAG)
    for name, value in stats.items():
        if value is None:
            continue
        ET.SubElement(root, STAT_TAG, {"name": name, "value": _text(value)})
    return root


def find_stats(presence: ET.Element) -> ET.Element | None:
    """The ``<stats/>`` child of a presence element, if any."""
    return presence.find(STATS_TAG)


def decode_stats(element: ET.Element) -> dict[str, str]:
    """``<stats>`` element -> ``{name: value}`` (text values; see :class:`BridgeStats` for types)."""
    if element.tag != STATS_TAG:
        raise BreweryFormatError("", f"expected {STATS_TAG}, got {element.tag}")
    out: dict[str, str] = {}
    for stat in element.findall(STAT_TAG):
        name = stat.get("name")
        value = stat.get("value")
        if not name:
            raise BreweryFormatError("stat", "missing name attribute")
        if value is None:
            raise BreweryFormatError(name, "missing value attribute")
        out[name] = value
    return out


def _bool(stats: Mapping[str, str], name: str, default: bool) -> bool:
    raw = stats.get(name)
    if raw is None:
        return default
    low = raw.strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise BreweryFormatError(name, f"not a boolean: {raw!r}")


def _float(stats: Mapping[str, str], name: str, default: float) -> float:
    raw = stats.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise BreweryFormatError(name, f"not a number: {raw!r}") from exc


@dataclass(frozen=True)
class BridgeStats:
    """The typed view of a bridge's presence stats that bridge selection needs."""

    stress_level: float = 0.0
    average_participant_stress: float = 0.01
    graceful_shutdown: bool = False
    shutting_down: bool = False
    drain: bool = False
    healthy: bool = True
    version: str | None = None
    region: str | None = None
    relay_id: str | None = None
    other: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_stats(cls, stats: Mapping[str, str]) -> BridgeStats:
        known = {
            STRESS_LEVEL,
            AVERAGE_PARTICIPANT_STRESS,
            GRACEFUL_SHUTDOWN,
            SHUTTING_DOWN,
            DRAIN,
            HEALTHY,
            VERSION,
            REGION,
            RELAY_ID,
        }
        return cls(
            stress_level=_float(stats, STRESS_LEVEL, 0.0),
            average_participant_stress=_float(stats, AVERAGE_PARTICIPANT_STRESS, 0.01),
            graceful_shutdown=_bool(stats, GRACEFUL_SHUTDOWN, False),
            shutting_down=_bool(stats, SHUTTING_DOWN, False),
            drain=_bool(stats, DRAIN, False),
            healthy=_bool(stats, HEALTHY, True),
            version=stats.get(VERSION),
            region=stats.get(REGION) or None,
            relay_id=stats.get(RELAY_ID) or None,
            other={k: v for k, v in stats.items() if k not in known},
        )

    @classmethod
    def from_element(cls, element: ET.Element) -> BridgeStats:
        return cls.from_stats(decode_stats(element))


def healthcheck_element() -> ET.Element:
    """The payload of a health-check IQ (type ``get``): ``<healthcheck xmlns=.../>``."""
    return ET.Element(HEALTHCHECK_TAG)


def is_healthcheck(iq_payload: ET.Element) -> bool:
    return iq_payload.tag == HEALTHCHECK_TAG

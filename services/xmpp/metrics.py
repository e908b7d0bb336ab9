"""Prometheus metrics of the broker, read from its plain counters at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .session import STREAM_ERRORS
from .transports.http import WS_PROTOCOLS

if TYPE_CHECKING:  # pragma: no cover
    from .broker import Broker
    from .modules.muc import MucService


class BrokerCollector(Collector):
    def __init__(
        self,
        broker: Broker,
        mucs: Sequence[MucService],
        connection_counts: Callable[[], dict[str, int]],
        stanzas_received: Callable[[], int],
    ) -> None:
        self.broker = broker
        self.mucs = mucs
        self.connection_counts = connection_counts
        self.stanzas_received = stanzas_received

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self
        conns = GaugeMetricFamily(
            "xmpp_connections", "Open client connections by transport", labels=["transport"]
        )
        for transport, count in s.connection_counts().items():
            conns.add_metric([transport], count)
        yield conns
        yield GaugeMetricFamily(
            "xmpp_websocket_protocols",
            "WebSocket protocol objects (frame parsers) in memory: one per open WebSocket connection",
            value=len(WS_PROTOCOLS),
        )
        yield GaugeMetricFamily(
            "xmpp_sessions", "Bound client sessions on this node", value=s.broker.session_count()
        )
        yield CounterMetricFamily(
            "xmpp_stanzas_received", "Stanzas received from clients", value=s.stanzas_received()
        )
        yield CounterMetricFamily("xmpp_stanzas_routed", "Stanzas routed", value=s.broker.stanzas_routed)
        yield CounterMetricFamily(
            "xmpp_deliveries", "Stanzas delivered to sessions", value=s.broker.deliveries
        )
        rooms = GaugeMetricFamily("xmpp_muc_rooms", "MUC rooms", labels=["host"])
        occupants = GaugeMetricFamily("xmpp_muc_occupants", "MUC occupants", labels=["host"])
        for muc in s.mucs:
            rooms.add_metric([muc.domain], len(muc.rooms))
            occupants.add_metric([muc.domain], muc.occupant_count())
        yield rooms
        yield occupants
        errors = CounterMetricFamily(
            "xmpp_stream_errors", "Streams closed with a stream error", labels=["condition"]
        )
        for condition, count in STREAM_ERRORS.items():
            errors.add_metric([condition], count)
        yield errors

"""Prometheus metrics of the focus (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONFERENCES = Gauge("jicofo_conferences", "Conferences the focus runs")
PARTICIPANTS = Gauge("jicofo_participants", "Participants in all conferences")
BRIDGES = Gauge("jicofo_bridges", "Bridges present in the brewery")
ALLOCATION_SECONDS = Histogram(
    "jicofo_allocation_seconds",
    "Colibri channel allocation latency (request to response)",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
FAILOVERS = Counter("jicofo_failovers_total", "Conferences moved to another bridge")
FAILOVER_SECONDS = Histogram(
    "jicofo_failover_seconds",
    "Bridge failure detected to every participant re-invited",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
JINGLE_SENT = Counter("jicofo_jingle_sent_total", "Jingle messages sent to participants", ["action"])

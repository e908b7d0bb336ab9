"""Prometheus metrics of the recorder (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ACTIVE = Gauge("recorder_active_recordings", "Recordings running in this process")
STARTED = Counter("recorder_recordings_started_total", "Recordings started", ["mode"])
ENDED = Counter("recorder_recordings_ended_total", "Recordings ended", ["state"])
REFUSED = Counter("recorder_requests_refused_total", "Start requests refused", ["reason"])

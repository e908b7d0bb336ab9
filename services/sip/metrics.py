"""Prometheus metrics of the SIP gateway (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MESSAGES_IN = Counter("sip_messages_received_total", "SIP messages (datagrams, frames, reads) received", ["transport"])
MESSAGES_OUT = Counter("sip_messages_sent_total", "SIP messages sent", ["transport"])
MALFORMED = Counter("sip_malformed_total", "Messages refused as malformed (answered 400 when a request)", ["transport"])
FLOODED = Counter("sip_flood_dropped_total", "Messages dropped: their source was over its rate (sip.limits.requests-*)",
                  ["transport"])
UNROUTABLE = Counter("sip_unroutable_total", "Messages for a connection that is gone")
CONNECTIONS = Gauge("sip_connections", "Open stream connections", ["transport"])
CALLS = Gauge("sip_calls", "Calls in progress")
CALLS_CONFIRMED = Counter("sip_calls_confirmed_total", "Calls answered and acknowledged")
CALLS_ENDED = Counter("sip_calls_ended_total", "Calls ended", ["reason"])
REGISTRATIONS = Gauge("sip_registrations", "Registered contacts")

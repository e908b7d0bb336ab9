"""Timing without I/O: RTP timestamps to the recorder's wall clock, per track.

Each received track (one SSRC) carries RTP timestamps on its own clock (90 kHz video, 48 kHz
Opus, RFC 3550 section 5.1) from a random origin. To put several tracks on one timeline (lip sync
between a participant's audio and video, and between participants) the recorder maps every
timestamp to its own monotonic clock:

    wall(ts) = offset + unwrapped(ts) / rate,   offset = min over packets (arrival - unwrapped / rate)

The minimum is the packet that travelled fastest: queueing, jitter and the receiver's jitter
buffer only ever add delay, so the minimum transit is the best estimate of "when was this sent,
plus the network's fixed delay". A participant's audio and video are captured together and cross
the same network path, so their fixed delays match and the mapping keeps them in sync whatever
their jitter buffers add; gaps from packet loss keep their place on the timeline, because the
timestamps of the packets after a gap still say when they were captured.

The estimate only moves when a packet is faster than every earlier one; to follow a sender clock
that drifts against ours (RFC 3550 section A.8 discusses the same problem), the minimum is
forgotten slowly: it rises by ``drift_per_second`` of elapsed time.
"""

from __future__ import annotations

from dataclasses import dataclass


class Unwrapper:
    """32-bit RTP timestamps to a monotonic 64-bit count (wraps in either direction)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._value = 0

    def __call__(self, ts: int) -> int:
        ts &= 0xFFFFFFFF
        if self._last is None:
            self._last = ts
            self._value = ts
            return ts
        delta = (ts - self._last) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        self._last = ts
        self._value += delta
        return self._value


@dataclass
class TrackClock:
    """One track's mapping from unwrapped RTP timestamp to the recorder's clock (seconds)."""

    rate: int
    drift_per_second: float = 0.0005
    offset: float | None = None
    _updated_at: float = 0.0

    def observe(self, arrival: float, unwrapped_ts: int) -> None:
        """A packet with this (unwrapped) timestamp arrived at ``arrival``."""
        candidate = arrival - unwrapped_ts / self.rate
        if self.offset is None:
            self.offset = candidate
        else:
            # forget the old minimum slowly (clock drift), keep any faster packet
            aged = self.offset + (arrival - self._updated_at) * self.drift_per_second
            self.offset = min(aged, candidate)
        self._updated_at = arrival

    def wall(self, unwrapped_ts: int) -> float | None:
        if self.offset is None:
            return None
        return self.offset + unwrapped_ts / self.rate

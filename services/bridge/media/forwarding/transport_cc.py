"""Transport-cc feedback to a sender: the bridge's receive side of transport-wide congestion
control (draft-holmer-rmcat-transport-wide-cc-extensions-01), no I/O.

cf. jitsi-videobridge's ``TccGeneratorNode`` and libwebrtc's ``RemoteEstimatorProxy``: each packet
an endpoint sends carries its transport-wide sequence number; :meth:`FeedbackGenerator.on_packet`
records when the datagram arrived (stamped by the socket adapter on receipt, µs of a monotonic
clock) and :meth:`FeedbackGenerator.feedback` reports every sequence number since the previous
feedback, received or not, with the arrival times, for the sender's own bandwidth estimate.

* a packet arriving late (after the feedback that covered its sequence number went out as lost)
  re-opens the window: the next feedback reports it received;
* a duplicate keeps its first arrival time;
* the window is bounded (``MAX_WINDOW`` sequence numbers behind the highest): a sender jumping its
  numbers costs at most that, and older arrivals are forgotten.
"""

from __future__ import annotations

from ..packets import twcc

FEEDBACK_INTERVAL = 0.05
"""Seconds between feedback packets to one sender while it sends (libwebrtc: 50-250 ms)."""
MAX_WINDOW = 2048
"""Sequence numbers one feedback round covers at most, behind the highest received."""


class FeedbackGenerator:
    """Arrival times of one endpoint's packets, and the feedback packets reporting them."""

    __slots__ = (
        "_arrivals",
        "_feedback_count",
        "_highest",
        "_pending",
        "_window_start",
        "last_feedback",
        "packets_sent",
    )

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped transport-wide seq -> arrival µs
        self._highest: int | None = None
        self._window_start: int | None = None  # the first sequence number the next feedback reports
        self._pending = False  # something arrived since the last feedback
        self._feedback_count = 0
        self.last_feedback = float("-inf")
        self.packets_sent = 0

    def on_packet(self, seq: int, arrival_us: int) -> None:
        """Transport-wide sequence number ``seq`` (16-bit) arrived at ``arrival_us``."""
        highest = self._highest
        if highest is None:
            ext = seq + 0x10000  # room below the first number for reordered ones
            self._highest = ext
        else:
            diff = (seq - highest) & 0xFFFF
            ext = highest + diff if diff < 0x8000 else highest + diff - 0x10000
            if ext > highest:
                self._highest = highest = ext
            elif ext < highest - MAX_WINDOW or ext < 0:
                return  # too old to report
        arrivals = self._arrivals
        if ext in arrivals:
            return
        arrivals[ext] = arrival_us
        self._pending = True
        start = self._window_start
        if start is None or ext < start:
            self._window_start = ext
        if len(arrivals) > 2 * MAX_WINDOW:
            floor = self._highest - MAX_WINDOW  # type: ignore[operator]
            self._arrivals = {s: t for s, t in arrivals.items() if s >= floor}

    def due(self, now: float) -> bool:
        return self._pending and now - self.last_feedback >= FEEDBACK_INTERVAL

    def feedback(self, sender_ssrc: int, media_ssrc: int, now: float) -> list[bytes]:
        """Feedback packets for everything since the previous ones (none when nothing arrived)."""
        start = self._window_start
        highest = self._highest
        self.last_feedback = now
        if start is None or highest is None:
            return []
        if not self._pending:
            return []
        self._pending = False
        start = max(start, highest - MAX_WINDOW)
        received = sorted(s for s in self._arrivals if s >= start)
        self._window_start = highest + 1
        if not received:
            return []
        arrivals = self._arrivals
        packets: list[bytes] = []
        i = 0
        base = start  # from the first number not yet reported: the ones lost before count too
        while i < len(received):
            reference = arrivals[received[i]] // twcc.REFERENCE_TICK_US
            last = reference * twcc.REFERENCE_TICK_US
            statuses: list[int | None] = []
            size = 20
            expected = base
            while i < len(received):
                seq = received[i]
                gap = seq - expected
                if len(statuses) + gap + 1 > twcc.MAX_STATUS_COUNT:
                    break
                ticks = round((arrivals[seq] - last) / twcc.DELTA_TICK_US)
                if not -0x8000 <= ticks <= 0x7FFF:
                    break
                cost = (1 if 0 <= ticks <= 0xFF else 2) + 2 * (1 + (gap + 6) // 7)
                if statuses and size + cost + 4 > twcc.MAX_PACKET_BYTES:
                    break
                size += cost
                statuses.extend([None] * gap)
                statuses.append(ticks)
                last += ticks * twcc.DELTA_TICK_US
                expected = seq + 1
                i += 1
            packets.append(
                twcc.build_feedback(sender_ssrc, media_ssrc, base, reference, self._feedback_count, statuses)
            )
            self._feedback_count = (self._feedback_count + 1) & 0xFF
            if i < len(received):
                base = received[i]
        self.packets_sent += len(packets)
        return packets

"""Send-side bandwidth estimate of one receiver's downlink from its transport-cc feedback, no I/O.

cf. jitsi-videobridge's ``SendSideBandwidthEstimation``/``GoogleCcEstimator`` and libwebrtc's
GoogCC, after draft-ietf-rmcat-gcc-02:

* the bridge numbers what it sends the receiver (transport-wide sequence numbers,
  draft-holmer-rmcat-transport-wide-cc-extensions-01) and keeps a :class:`SendHistory` of
  ``(sequence number, send time, size)``;
* the receiver's feedback gives each packet's arrival time, or says it was lost;
* delay-based (section 5): packets are grouped in 5 ms send bursts; the change in one-way delay
  between groups is accumulated, smoothed, and the slope of its trend over the last 20 groups
  (libwebrtc's ``TrendlineEstimator``) compared with an adaptive threshold: over it the link is
  over-used, below minus it under-used, in between normal;
* rate control (section 5.5, libwebrtc's ``AimdRateControl``): on over-use the estimate drops to
  85 % of the rate the receiver acknowledged (what arrived over the last second, by its arrival
  times) and that rate is remembered as the link's capacity (an average with its deviation,
  libwebrtc's ``LinkCapacityEstimator``); under-use holds; normal grows it -- by 8 % a second
  while far from the remembered capacity (or with none), additively (about one packet per
  response time) near it -- only on feedback that acknowledged packets, and to at most 1.5 x the
  acknowledged rate plus 10 kbps (a receiver sent little says little about its link);
* probing with media: the bridge sends no padding; it probes by forwarding a receiver one layer
  beyond its estimate (``probing.py``). When what the receiver acknowledged is above the estimate
  with no over-use or loss for ``PROBE_GUARD`` seconds, the estimate rises to it at once (as
  libwebrtc takes a probe cluster's measured rate, ``ProbeBitrateEstimator``): the link carried
  it without queueing;
* loss-based (section 6, libwebrtc's ``SendSideBandwidthEstimation``): the loss ratio is taken
  over ``LOSS_INTERVAL`` of feedback; above 10 % the estimate drops by half the loss ratio, below
  2 % it grows 8 % a second, in between it holds.

The estimate is the lower of the two; it starts at ``start_bps`` (jitsi-videobridge's
``jmt.bwe.estimator.initial-bw``, 2.5 Mbps, or the receiver's REMB if it sent one before its
first feedback: :meth:`SendSideEstimator.seed`). Everything is bounded per feedback: only sequence
numbers in the history count, whatever the feedback claims.
"""

from __future__ import annotations

from array import array
from collections import deque

from ..packets.twcc import Feedback

BURST_US = 5_000
TRENDLINE_WINDOW = 20
SMOOTHING = 0.9
THRESHOLD_GAIN = 4.0
OVERUSE_TIME_MS = 10.0
K_UP, K_DOWN = 0.0087, 0.039
BETA = 0.85
INCREASE_PER_SECOND = 1.08
ACKED_WINDOW_US = 1_000_000
LOW_LOSS, HIGH_LOSS = 0.02, 0.10
LOSS_INTERVAL = 1.0
"""Seconds of feedback the loss ratio is taken over (libwebrtc's ``kLossUpdateInterval``)."""
PROBE_GUARD = 2.0
"""Seconds without over-use or loss before an acknowledged rate above the estimate is taken."""
RESPONSE_TIME = 0.3
"""Seconds: a round trip (200 ms assumed) plus 100 ms, for the additive increase."""
START_BPS = 2_500_000

NORMAL, OVERUSE, UNDERUSE = "normal", "overuse", "underuse"


class SendHistory:
    """What was sent to one receiver, by transport-wide sequence number: a ring of ``size``
    slots (a power of two), each ``seq`` (-1: empty), send time (µs) and size (bytes), and the
    counters ``state`` = [next sequence number, packets recorded]. Plain arrays, so the C
    forwarding loop (``native_fanout.c``) records into the same ones."""

    __slots__ = ("mask", "sent_us", "seqs", "sizes", "state")

    def __init__(self, size: int = 4096) -> None:
        if size & (size - 1) or size <= 0:
            raise ValueError("the history size must be a power of two")
        self.mask = size - 1
        self.seqs = array("q", [-1]) * size
        self.sent_us = array("q", [0]) * size
        self.sizes = array("q", [0]) * size
        self.state = array("q", [0, 0])

    @property
    def next_seq(self) -> int:
        return self.state[0]

    @property
    def recorded(self) -> int:
        return self.state[1]

    def record(self, send_us: int, size: int) -> int:
        """Number one more packet sent now; returns its 16-bit sequence number."""
        state = self.state
        seq = state[0]
        state[0] = (seq + 1) & 0xFFFF
        state[1] += 1
        slot = seq & self.mask
        self.seqs[slot] = seq
        self.sent_us[slot] = send_us
        self.sizes[slot] = size
        return seq

    def known(self, base: int, count: int) -> int:
        """How many of the ``count`` sequence numbers from ``base`` on are still in the ring
        (arithmetic: a feedback claiming 65535 statuses costs no more than one claiming 1)."""
        filled = min(self.recorded, self.mask + 1)
        offset = (base - (self.next_seq - filled)) & 0xFFFF  # relative to the oldest held
        end = offset + count
        return max(0, min(end, filled) - offset) + max(0, min(end, 0x10000 + filled) - 0x10000)

    def get(self, seq: int) -> tuple[int, int] | None:
        """``(send µs, size)`` of ``seq`` while it is still in the ring."""
        slot = seq & self.mask
        if self.seqs[slot] != seq:
            return None
        return self.sent_us[slot], self.sizes[slot]


class _Trendline:
    """libwebrtc's ``TrendlineEstimator``: the slope of the smoothed accumulated delay."""

    __slots__ = ("accumulated", "count", "first_arrival", "last_update", "over_count", "overuse_ms",
                 "points", "prev_slope", "smoothed", "state", "threshold")  # fmt: skip

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque(maxlen=TRENDLINE_WINDOW)
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.count = 0
        self.first_arrival: float | None = None
        self.threshold = 12.5
        self.last_update: float | None = None
        self.overuse_ms = -1.0
        self.over_count = 0
        self.prev_slope = 0.0
        self.state = NORMAL

    def update(self, delay_delta_ms: float, send_delta_ms: float, arrival_ms: float) -> str:
        self.count += 1
        if self.first_arrival is None:
            self.first_arrival = arrival_ms
        self.accumulated += delay_delta_ms
        self.smoothed = SMOOTHING * self.smoothed + (1 - SMOOTHING) * self.accumulated
        self.points.append((arrival_ms - self.first_arrival, self.smoothed))
        slope = self.prev_slope
        if len(self.points) == TRENDLINE_WINDOW:
            n = len(self.points)
            mean_x = sum(x for x, _ in self.points) / n
            mean_y = sum(y for _, y in self.points) / n
            den = sum((x - mean_x) ** 2 for x, _ in self.points)
            if den > 0:
                slope = sum((x - mean_x) * (y - mean_y) for x, y in self.points) / den
        self._detect(slope, send_delta_ms, arrival_ms)
        self.prev_slope = slope
        return self.state

    def _detect(self, slope: float, send_delta_ms: float, now_ms: float) -> None:
        if self.count < 2:
            return
        trend = min(self.count, 60) * slope * THRESHOLD_GAIN
        if trend > self.threshold:
            self.overuse_ms = send_delta_ms / 2 if self.overuse_ms < 0 else self.overuse_ms + send_delta_ms
            self.over_count += 1
            if self.overuse_ms > OVERUSE_TIME_MS and self.over_count > 1 and slope >= self.prev_slope:
                self.overuse_ms = 0.0
                self.over_count = 0
                self.state = OVERUSE
        elif trend < -self.threshold:
            self.overuse_ms = -1.0
            self.over_count = 0
            self.state = UNDERUSE
        else:
            self.overuse_ms = -1.0
            self.over_count = 0
            self.state = NORMAL
        # adaptive threshold (draft-ietf-rmcat-gcc-02 5.4)
        if self.last_update is None:
            self.last_update = now_ms
        magnitude = abs(trend)
        if magnitude <= self.threshold + 15:
            k = K_DOWN if magnitude < self.threshold else K_UP
            dt = min(now_ms - self.last_update, 100.0)
            self.threshold = min(600.0, max(6.0, self.threshold + k * (magnitude - self.threshold) * dt))
        self.last_update = now_ms


class _LinkCapacity:
    """libwebrtc's ``LinkCapacityEstimator``: the acknowledged rate at over-use, averaged (kbps),
    with its normalised variance; ``None`` until the first over-use and after a reset."""

    __slots__ = ("estimate", "variance")

    def __init__(self) -> None:
        self.estimate: float | None = None
        self.variance = 0.4

    def on_overuse(self, acked_bps: float) -> None:
        kbps = acked_bps / 1000
        alpha = 0.05 if self.estimate is not None else 1.0
        previous = kbps if self.estimate is None else self.estimate
        self.estimate = (1 - alpha) * previous + alpha * kbps
        norm = max(self.estimate, 1.0)
        error = self.estimate - kbps
        self.variance = min(2.5, max(0.4, (1 - alpha) * self.variance + alpha * error * error / norm))

    def bounds(self) -> tuple[float, float] | None:
        """``(lower, upper)`` in bps: three deviations either side."""
        if self.estimate is None:
            return None
        spread = 3 * (self.variance * self.estimate) ** 0.5
        return (self.estimate - spread) * 1000, (self.estimate + spread) * 1000

    def reset(self) -> None:
        self.estimate = None


class SendSideEstimator:
    """The downlink estimate of one receiver (bps) from its transport-cc feedback on what the
    bridge numbered in ``history``."""

    def __init__(
        self,
        history: SendHistory,
        start_bps: int = START_BPS,
        min_bps: int = 30_000,
        max_bps: int = 20_000_000,
    ) -> None:
        self.history = history
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.delay_bps = float(start_bps)
        self.loss_bps = float(start_bps)
        self.capacity = _LinkCapacity()
        self._trend = _Trendline()
        self._group: list[int] | None = None  # first send, last send, last arrival, bytes
        self._previous: list[int] | None = None
        self._acked: deque[tuple[int, int]] = deque()  # (arrival µs, bytes)
        self._acked_bytes = 0
        self._last_update: float | None = None
        self._last_trouble = float("-inf")  # the last over-use or lossy feedback
        self._loss_window: list[float] = [0.0, 0.0, -1.0]  # lost, expected, start (s)
        self.feedbacks = 0
        self.overuses = 0
        self.state = NORMAL
        self.last_loss = 0.0
        """The loss ratio of the latest feedback."""
        self.window_loss = 0.0
        """The loss ratio of the latest ``LOSS_INTERVAL`` that is over."""

    @property
    def estimate(self) -> int:
        return int(max(self.min_bps, min(self.max_bps, self.delay_bps, self.loss_bps)))

    @property
    def near_capacity(self) -> bool:
        """Whether the estimate is within the remembered link capacity's band (additive
        increase there, multiplicative elsewhere)."""
        bounds = self.capacity.bounds()
        return bounds is not None and bounds[0] <= self.delay_bps <= bounds[1]

    def seed(self, bps: int) -> None:
        """Start from ``bps`` (the receiver's REMB) while no feedback has arrived yet."""
        if not self.feedbacks and bps > 0:
            self.delay_bps = self.loss_bps = float(max(self.min_bps, min(self.max_bps, bps)))

    def acknowledged_bps(self) -> float | None:
        """What arrived at the receiver over the last second of its arrival times."""
        acked = self._acked
        if len(acked) < 2:
            return None
        span = acked[-1][0] - acked[0][0]
        if span < 100_000:
            return None
        return self._acked_bytes * 8 * 1_000_000 / span

    def on_feedback(self, feedback: Feedback, now: float) -> None:
        """One feedback packet from the receiver."""
        history = self.history
        known = history.known(feedback.base_seq, feedback.count)
        packets: list[tuple[int, int, int]] = []  # (send µs, arrival µs, size) of received ones
        for seq, arrival in feedback.received:  # as many as the packet had bytes for
            sent = history.get(seq)
            if sent is not None:
                packets.append((sent[0], arrival, sent[1]))
        if not known:
            return
        lost = max(0, known - len(packets))
        self.feedbacks += 1
        self.last_loss = lost / known
        packets.sort(key=lambda p: p[1])
        overused = False
        for send_us, arrival_us, size in packets:
            overused = self._on_packet(send_us, arrival_us, size) or overused
        if overused:
            self.state = OVERUSE
        self._update_rates(self._loss(lost, known, now), now, bool(packets))

    def _on_packet(self, send_us: int, arrival_us: int, size: int) -> bool:
        """Count one acknowledged packet; whether a group it closed was over-use."""
        acked = self._acked
        acked.append((arrival_us, size))
        self._acked_bytes += size
        while acked and acked[0][0] < arrival_us - ACKED_WINDOW_US:
            self._acked_bytes -= acked.popleft()[1]
        if len(acked) > self.history.mask + 1:
            # more acknowledgements inside a second than the history holds packets: a receiver
            # replaying feedback (arrival times that never advance); keep the window bounded
            self._acked_bytes -= acked.popleft()[1]
        overused = False
        group = self._group
        if group is None or send_us - group[0] > BURST_US:
            if group is not None:
                previous = self._previous
                if previous is not None:
                    send_delta = (group[1] - previous[1]) / 1000
                    arrival_delta = (group[2] - previous[2]) / 1000
                    if send_delta >= 0:
                        self.state = self._trend.update(
                            arrival_delta - send_delta, send_delta, group[2] / 1000
                        )
                        overused = self.state == OVERUSE
                self._previous = group
            self._group = [send_us, send_us, arrival_us, size]
        else:
            group[1] = max(group[1], send_us)
            group[2] = max(group[2], arrival_us)
            group[3] += size
        return overused

    def _loss(self, lost: int, known: int, now: float) -> float | None:
        """The loss ratio of the last ``LOSS_INTERVAL`` once it is over, else ``None``."""
        window = self._loss_window
        if window[2] < 0:
            window[2] = now
        window[0] += lost
        window[1] += known
        if now - window[2] < LOSS_INTERVAL:
            return None
        ratio = window[0] / window[1]
        self._loss_window = [0.0, 0.0, now]
        self.window_loss = ratio
        return ratio

    def _update_rates(self, loss: float | None, now: float, acknowledged: bool) -> None:
        elapsed = 0.0 if self._last_update is None else max(0.0, min(1.0, now - self._last_update))
        self._last_update = now
        acked = self.acknowledged_bps()
        if acked is not None:
            bounds = self.capacity.bounds()
            if bounds is not None and acked > bounds[1]:
                self.capacity.reset()  # the link carries more than it did: far from it again
        if self.state == OVERUSE:
            self.overuses += 1
            self._last_trouble = now
            if acked is not None:
                self.delay_bps = min(self.delay_bps, BETA * acked)
                self.capacity.on_overuse(acked)
            else:
                self.delay_bps *= BETA
            self._trend.state = NORMAL  # one decrease per detection
            self.state = NORMAL
        elif self.state == NORMAL and acknowledged:
            if self.near_capacity:
                grown = self.delay_bps + self._additive_rate() * elapsed
            else:
                grown = self.delay_bps * INCREASE_PER_SECOND**elapsed + 1000 * elapsed
            if acked is not None:
                grown = min(grown, max(self.delay_bps, 1.5 * acked + 10_000))
            self.delay_bps = grown
        # under-use: hold (the queues drain)
        if loss is not None and loss > HIGH_LOSS:
            self.loss_bps = min(self.loss_bps, self.delay_bps) * (1 - 0.5 * loss)
        elif self.window_loss < LOW_LOSS and acknowledged:
            self.loss_bps = self.loss_bps * INCREASE_PER_SECOND**elapsed + 1000 * elapsed
        if self.window_loss >= LOW_LOSS:
            self._last_trouble = now
        elif acked is not None and now - self._last_trouble >= PROBE_GUARD:
            # a probe (a layer beyond the estimate) went through without queueing or loss
            self.delay_bps = max(self.delay_bps, acked)
            self.loss_bps = max(self.loss_bps, acked)
        self.delay_bps = max(self.min_bps, min(self.max_bps, self.delay_bps))
        self.loss_bps = max(self.min_bps, min(self.max_bps, self.loss_bps))

    def _additive_rate(self) -> float:
        """bps per second near the link's capacity: about one packet per response time
        (libwebrtc's ``AimdRateControl::GetNearMaxIncreaseRateBpsPerSecond``)."""
        bits_per_frame = self.delay_bps / 30
        packets_per_frame = max(1.0, -(-bits_per_frame // (1200 * 8)))
        return max(4000.0, bits_per_frame / packets_per_frame / RESPONSE_TIME)

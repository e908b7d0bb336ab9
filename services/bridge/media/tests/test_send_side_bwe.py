"""The send-side estimator on synthetic links: a bottleneck queue (delay grows when the bridge
sends faster than the link), random loss, and feedback built and parsed as on the wire."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from services.bridge.media.allocation.send_side_bwe import SendHistory, SendSideEstimator
from services.bridge.media.packets import twcc

PACKET = 1200


class Link:
    """A bottleneck of ``capacity_bps`` with 20 ms propagation delay, ``loss`` at random, and a
    buffer of ``buffer`` seconds (what comes when it is full is dropped)."""

    def __init__(self, capacity_bps: float, loss: float = 0.0, seed: int = 1, buffer: float = 0.5) -> None:
        self.capacity_bps = capacity_bps
        self.loss = loss
        self.buffer = buffer
        self.free_at = 0.0
        self.random = random.Random(seed)

    def arrival(self, sent: float) -> float | None:
        start = max(sent, self.free_at)
        if start - sent > self.buffer:
            return None
        self.free_at = start + PACKET * 8 / self.capacity_bps
        if self.random.random() < self.loss:
            return None
        return self.free_at + 0.020


Rate = Callable[[float, int], float]


def run(
    estimator: SendSideEstimator, link: Link, start: float, seconds: float, rate: Rate | None = None
) -> list[int]:
    """Send at ``rate(now, estimate)`` (default: the estimate), paced, feed back every 50 ms;
    the estimate after each feedback."""
    history = estimator.history
    now = start
    pending: list[tuple[int, float | None]] = []
    next_feedback = start + 0.05
    estimates = []
    while now < start + seconds:
        seq = history.record(int(now * 1e6), PACKET)
        pending.append((seq, link.arrival(now)))
        now += PACKET * 8 / (estimator.estimate if rate is None else rate(now, estimator.estimate))
        if now >= next_feedback:
            arrived = [(s, a) for s, a in pending if a is not None and a <= now]
            reported = [s for s, a in pending if a is None or a <= now]
            if reported:
                base = reported[0]
                times = dict(arrived)
                statuses: list[int | None] = []
                ref = int(min(times.values(), default=now) * 1e6) // 64_000
                last = ref * 64_000
                for s in range(base, reported[-1] + 1):
                    if s in times:
                        ticks = round((times[s] * 1e6 - last) / 250)
                        last += ticks * 250
                        statuses.append(ticks)
                    else:
                        statuses.append(None)
                fb = twcc.parse_feedback(twcc.build_feedback(1, 2, base, ref, 0, statuses))
                estimator.on_feedback(fb, now)
                estimates.append(estimator.estimate)
                done = set(reported)
                pending = [(s, a) for s, a in pending if s not in done]
            next_feedback = now + 0.05
    return estimates


def test_the_estimate_settles_under_a_bottleneck_and_recovers_when_it_goes() -> None:
    estimator = SendSideEstimator(SendHistory(), start_bps=1_000_000)
    link = Link(3_000_000)
    run(estimator, link, 0.0, 20.0)
    assert estimator.estimate > 1_800_000  # grew towards the capacity
    link.capacity_bps = 600_000  # congestion: the queue builds, the delay trend rises
    congested = run(estimator, link, 20.0, 10.0)
    assert min(congested) < 700_000
    assert congested[-1] < 900_000
    link.capacity_bps = 3_000_000
    run(estimator, link, 30.0, 25.0)
    assert estimator.estimate > 1_500_000  # recovers once the link does


LAYERS = (150_000, 500_000, 2_500_000)  # one simulcast source: 180p, 360p, 720p


class Layered:
    """What the bridge sends a receiver of one simulcast source: the highest layer its estimate
    covers and, as ``probing.py`` steps up, the next one beyond it for ``settle`` seconds every
    ``period`` -- dropped when the estimate falls below 85 % of where it started, and then
    tried twice as late."""

    def __init__(self, period: float = 3.0, settle: float = 3.0) -> None:
        self.period = period
        self.settle = settle
        self.wait = period
        self.next_try = 0.0
        self.probe: tuple[float, int] | None = None  # started, estimate then

    def __call__(self, now: float, estimate: int) -> float:
        layer = max([0, *(i for i, bps in enumerate(LAYERS) if bps <= estimate)])
        if self.probe is not None:
            started, at = self.probe
            if estimate < 0.85 * at:
                self.probe = None
                self.wait = min(60.0, self.wait * 2)
                self.next_try = now + self.wait
            elif now - started >= self.settle:
                self.probe = None
                self.wait = self.period
                self.next_try = now + self.period
        elif now >= self.next_try and layer < len(LAYERS) - 1:
            self.probe = (now, estimate)
        if self.probe is not None:
            layer = min(layer + 1, len(LAYERS) - 1)
        return LAYERS[layer]


def test_layers_and_step_up_probes_ramp_to_the_top_layer_drop_on_a_bottleneck_and_recover() -> None:
    estimator = SendSideEstimator(SendHistory(), start_bps=600_000)
    link = Link(3_000_000)
    ramp = run(estimator, link, 0.0, 4.0, Layered())
    # the probe's layer went through without queueing: the estimate took it within seconds
    first = next(i for i, e in enumerate(ramp) if e >= LAYERS[2]) * 0.05
    print("top layer covered after", first, "s")
    assert first < 3.0 and ramp[-1] >= LAYERS[2]
    run(estimator, link, 4.0, 6.0, Layered())
    assert estimator.estimate >= LAYERS[2] and estimator.estimate <= 20_000_000
    link.capacity_bps = 600_000  # a bottleneck: the top layer queues, the delay trend rises
    congested = run(estimator, link, 10.0, 10.0, Layered())
    assert min(congested[:60]) < 700_000  # within 3 s
    assert congested[-1] < 900_000 and estimator.overuses > 0
    link.capacity_bps = 3_000_000
    recovered = run(estimator, link, 20.0, 12.0, Layered())
    assert recovered[-1] >= LAYERS[2]


def test_a_saturating_sender_grows_multiplicatively_then_additively_near_the_capacity() -> None:
    estimator = SendSideEstimator(SendHistory(), start_bps=1_000_000)
    link = Link(3_000_000)
    run(estimator, link, 0.0, 5.0)
    assert 1_300_000 < estimator.estimate  # about 8 % a second, from the start, no congestion yet
    run(estimator, link, 5.0, 20.0)
    assert estimator.overuses > 0 and estimator.capacity.estimate is not None
    assert 2_000 < estimator.capacity.estimate < 3_300  # kbps: what arrived when it queued
    assert estimator.estimate < 3_600_000


def test_an_application_limited_receiver_grows_only_with_what_it_acknowledges() -> None:
    estimator = SendSideEstimator(SendHistory(), start_bps=100_000)
    estimates = run(estimator, Link(50_000_000), 0.0, 10.0, lambda now, estimate: 200_000)
    # taken up to what arrived, then at most 1.5 x that + 10 kbps: no higher without more traffic
    assert 200_000 <= estimates[-1] <= 1.5 * 210_000 + 10_000
    assert max(estimates) <= 1.5 * 210_000 + 10_000


def test_no_growth_from_feedback_that_acknowledges_nothing() -> None:
    estimator = SendSideEstimator(SendHistory(), start_bps=800_000)
    estimates = run(estimator, Link(50_000_000, loss=1.0), 0.0, 5.0)
    assert estimator.feedbacks > 20 and max(estimates) <= 800_000 and estimates[-1] < 100_000


def test_seeded_from_the_receivers_remb_until_its_first_feedback() -> None:
    estimator = SendSideEstimator(SendHistory(), start_bps=2_500_000)
    estimator.seed(700_000)
    assert estimator.estimate == 700_000
    run(estimator, Link(50_000_000), 0.0, 0.2)
    estimator.seed(100_000)  # too late: the feedback rules
    assert estimator.estimate >= 700_000


def test_heavy_loss_lowers_the_estimate_light_loss_does_not() -> None:
    light = SendSideEstimator(SendHistory(), start_bps=1_000_000)
    run(light, Link(50_000_000, loss=0.01), 0.0, 5.0)
    heavy = SendSideEstimator(SendHistory(), start_bps=1_000_000)
    run(heavy, Link(50_000_000, loss=0.3), 0.0, 10.0)  # 15 % down per second of feedback
    assert light.estimate > 1_000_000
    assert heavy.estimate < 300_000


def test_feedback_about_unknown_numbers_changes_nothing() -> None:
    estimator = SendSideEstimator(SendHistory(16), start_bps=500_000)
    for i in range(4):
        estimator.history.record(i * 1000, PACKET)
    fb = twcc.parse_feedback(twcc.build_feedback(1, 2, 1000, 0, 0, [None] * 500))
    estimator.on_feedback(fb, 1.0)
    assert estimator.feedbacks == 0 and estimator.estimate == 500_000


def test_history_ring() -> None:
    history = SendHistory(4)
    seqs = [history.record(i, 100 + i) for i in range(6)]
    assert seqs == [0, 1, 2, 3, 4, 5]
    assert history.get(0) is None and history.get(5) == (5, 105) and history.get(2) == (2, 102)
    with pytest.raises(ValueError):
        SendHistory(6)


def test_history_counts_what_a_feedback_range_covers() -> None:
    history = SendHistory(8)
    for _ in range(65530):
        history.record(0, 1)
    # holds 65522..65529
    assert history.known(65522, 8) == 8
    assert history.known(65520, 4) == 2
    assert history.known(65529, 65535) == 7  # all but 65528, on the way round
    assert history.known(0, 65535) == 8
    for _ in range(10):
        history.record(0, 1)
    # holds 65532..65535, 0..3 (wrapped)
    assert history.known(65534, 4) == 4
    assert history.known(2, 10) == 2
    assert history.known(100, 1000) == 0

"""Upward probing with real media: one layer beyond a receiver's estimate while its feedback is
clean, kept when the feedback stays clean, reverted with growing back-off when it does not."""

from __future__ import annotations

import pytest

from services.bridge.media.allocation.allocator import SourceLayers, allocate, smoothed_layer_rates
from services.bridge.media.allocation.probing import StepUpProbe
from services.bridge.media.allocation.settings import ReceiverSettings
from services.bridge.media.allocation.video_policy import ConferenceVideoPolicy
from services.bridge.media.forwarding.simulcast import video_sources
from services.bridge.media.packets import rtcp
from services.bridge.media.tests.test_lastn import (
    HEIGHTS,
    RATES,
    Clock,
    send_simulcast_frame,
    simulcast,
    simulcast_call,
    sources,
)

CLEAN = 0.0
LOSSY = 30 / 256  # about 12 %


# --- allocate(): what is held back by bandwidth, and floors --------------------------------------
def test_allocation_names_the_step_a_probe_would_try() -> None:
    two = sources("a", "b")
    # enough for a at 360 and b at 180: a is the first source held back, its next layer is 720
    limited = allocate("r", ReceiverSettings(bandwidth_bps=700_000), two)
    assert limited.layers == {"a-v0": 1, "b-v0": 0}
    assert limited.within_budget == limited.layers
    assert limited.step_up == ("a-v0", 2)
    # no estimate, or a constraint that the budget already meets: nothing held back
    assert allocate("r", ReceiverSettings(), two).step_up is None
    capped = ReceiverSettings(bandwidth_bps=1_000_000, default_max_height=360)
    assert allocate("r", capped, two).step_up is None
    # a is at its top; b, next in preference order, is the one held back
    assert allocate("r", ReceiverSettings(bandwidth_bps=1_700_000), two).step_up == ("b-v0", 1)


def test_floors_raise_a_source_beyond_the_budget_within_its_constraint() -> None:
    two = sources("a", "b")
    settings = ReceiverSettings(bandwidth_bps=700_000)
    raised = allocate("r", settings, two, {"a-v0": 2})
    assert raised.layers == {"a-v0": 2, "b-v0": 0}
    assert raised.within_budget == {"a-v0": 1, "b-v0": 0}  # what the budget alone gives
    assert raised.step_up == ("b-v0", 1)
    # other sources keep what the budget gives them
    assert allocate("r", settings, two, {"b-v0": 1}).layers == {"a-v0": 1, "b-v0": 1}
    # a floor never goes beyond the receiver's constraint, nor to a layer the sender stopped
    capped = ReceiverSettings(bandwidth_bps=300_000, default_max_height=360)
    assert allocate("r", capped, two, {"a-v0": 2}).layers == {"a-v0": 1, "b-v0": 0}
    gap = [SourceLayers("a-v0", "a", HEIGHTS, (150_000.0, 0.0, 1_500_000.0))]
    stopped = allocate("r", ReceiverSettings(bandwidth_bps=300_000), gap)
    assert stopped.step_up == ("a-v0", 2)  # the middle layer is skipped
    assert allocate("r", ReceiverSettings(bandwidth_bps=300_000), gap, {"a-v0": 1}).layers == {"a-v0": 0}


def test_layer_rates_are_smoothed_but_a_stopped_layer_reads_zero_at_once() -> None:
    assert smoothed_layer_rates(None, (1.0, 2.0, 0.0)) == (1.0, 2.0, 0.0)
    assert smoothed_layer_rates((0.0, 0.0, 0.0), (1.0, 2.0, 3.0)) == (1.0, 2.0, 3.0)  # first reading
    # a key frame doubles one reading: the rate moves 30 % of the way
    assert smoothed_layer_rates((100.0, 400.0, 1000.0), (200.0, 400.0, 1000.0)) == pytest.approx(
        (130.0, 400.0, 1000.0)
    )
    # the sender stopped its top layer: 0 now; it starts again: its reading as is
    assert smoothed_layer_rates((100.0, 400.0, 1000.0), (100.0, 400.0, 0.0)) == (100.0, 400.0, 0.0)
    assert smoothed_layer_rates((100.0, 400.0, 0.0), (100.0, 400.0, 900.0)) == (100.0, 400.0, 900.0)
    # no packet of the source at all for a moment: the known rates stay (unmeasured is free)
    assert smoothed_layer_rates((100.0, 400.0, 1000.0), (0.0, 0.0, 0.0)) == (100.0, 400.0, 1000.0)


# --- the probe state machine -------------------------------------------------------------------
class Receiver:
    """A receiver whose estimate the test sets, probed by a :class:`StepUpProbe` against one
    three-layer source (150 kbps, 500 kbps, 1.5 Mbps)."""

    def __init__(self, estimate: float, probe: StepUpProbe | None = None) -> None:
        self.probe = probe or StepUpProbe(period=3.0, settle=3.0, max_backoff=24.0, clean_reports=2)
        self.sources = sources("a")
        self.estimate = estimate
        self.max_height = -1
        self.now = 0.0

    def layer(self) -> int:
        return self.allocation().layers["a-v0"]

    def allocation(self):  # type: ignore[no-untyped-def]
        settings = ReceiverSettings(bandwidth_bps=self.estimate, default_max_height=self.max_height)
        return allocate("r", settings, self.sources, self.probe.floors)

    def tick(self, loss: float | None = CLEAN, estimate: float | None = None) -> bool:
        """One second on: a report with ``loss`` (``None``: no report) and maybe a new estimate."""
        self.now += 1.0
        if estimate is not None:
            self.estimate = estimate
        return self.probe.on_feedback(self.now, self.estimate, loss, self.allocation())


def test_a_receiver_stuck_below_its_target_with_clean_feedback_climbs_a_layer() -> None:
    r = Receiver(estimate=300_000)
    assert r.layer() == 0
    r.tick()  # one clean report is not enough
    assert r.layer() == 0 and not r.probe.probing
    assert r.tick()  # the second one is: one step beyond the estimate
    assert r.layer() == 1 and r.probe.probing
    assert r.probe.floors == {"a-v0": 1}
    # settle: clean reports and a steady estimate keep the step
    for _ in range(3):
        r.tick()
    assert not r.probe.probing and r.layer() == 1
    # the next step comes one period after the kept one, not before
    r.tick()
    r.tick()
    assert r.layer() == 1
    r.tick()
    assert r.layer() == 2 and r.probe.probing


def test_the_estimate_following_the_higher_rate_makes_the_step_unneeded() -> None:
    r = Receiver(estimate=300_000)
    r.max_height = 360  # (no further step to try)
    for _ in range(5):
        r.tick()
    assert r.layer() == 1 and not r.probe.probing  # kept
    # a moment of a budget covering the step (measured rates are noisy) does not end it
    r.tick(estimate=700_000)
    r.tick()
    r.sources = [SourceLayers("a-v0", "a", HEIGHTS, tuple(2 * rate for rate in RATES))]
    r.tick()  # the layers read twice as costly for a tick: not covered
    assert r.probe.floors == {"a-v0": 1} and r.layer() == 1
    r.sources = sources("a")
    # the receiver's estimator followed for good: five ticks in a row, the step is forgotten
    for _ in range(4):
        r.tick(estimate=700_000)
    assert r.probe.floors == {"a-v0": 1}
    r.tick(estimate=700_000)
    assert r.probe.floors == {} and r.layer() == 1


def test_no_probe_while_loss_is_high_or_without_reports() -> None:
    r = Receiver(estimate=300_000)
    for _ in range(10):
        r.tick(LOSSY)
    assert r.layer() == 0 and r.probe.floors == {}
    for _ in range(10):
        r.tick(None)  # an estimate but no loss reports: nothing to judge a step by
    assert r.layer() == 0
    # a lossy report in between starts the count of clean ones again
    r.tick()
    r.tick(LOSSY)
    r.tick()
    assert r.layer() == 0
    r.tick()
    assert r.layer() == 1


def test_no_probe_while_the_estimate_falls() -> None:
    r = Receiver(estimate=400_000)
    r.tick()
    r.tick(estimate=300_000)  # down by a quarter: not clean
    assert r.layer() == 0
    r.tick(estimate=290_000)  # a small move is no fall
    assert r.layer() == 0  # but the falling tick reset the count: one clean report so far
    r.tick()
    assert r.layer() == 1


@pytest.mark.parametrize(
    ("loss", "estimate"),
    [(LOSSY, None), (CLEAN, 200_000.0)],
    ids=["loss-rises", "estimate-drops"],
)
def test_a_failed_probe_reverts_and_backs_off_exponentially(loss: float, estimate: float | None) -> None:
    r = Receiver(estimate=300_000)
    r.tick()
    r.tick()
    assert r.layer() == 1 and r.probe.probing
    waits = []
    for _ in range(5):
        failed_at = r.now + 1
        assert r.tick(loss, estimate)  # the step goes
        assert r.layer() == 0 and not r.probe.probing
        r.estimate = 300_000
        while r.layer() == 0:  # clean feedback from now on: wait for the next try
            r.tick()
            assert r.now - failed_at < 100
        waits.append(r.now - failed_at)
    # 6, 12, 24 s, then capped at max_backoff (24 s)
    assert waits == [6.0, 12.0, 24.0, 24.0, 24.0]


def test_a_kept_step_is_reverted_on_loss_and_a_success_resets_the_back_off() -> None:
    r = Receiver(estimate=300_000)
    r.tick()
    r.tick()
    r.tick(LOSSY)  # first try fails: the next waits 6 s
    assert r.layer() == 0
    for _ in range(6):
        r.tick()
    assert r.layer() == 1 and r.probe.probing
    for _ in range(3):
        r.tick()
    assert not r.probe.probing and r.layer() == 1  # kept; the back-off is back to 3 s
    r.tick(LOSSY)  # loss after all: the kept step goes, the next try waits 6 s
    assert r.layer() == 0 and r.probe.floors == {}
    for _ in range(5):
        r.tick()
    assert r.layer() == 0
    r.tick()
    assert r.layer() == 1


def test_a_step_is_forgotten_when_the_source_is_no_longer_forwarded_or_allowed() -> None:
    r = Receiver(estimate=300_000)
    r.tick()
    r.tick()
    assert r.probe.floors == {"a-v0": 1}
    r.sources = sources("b")
    r.tick()
    assert r.probe.floors == {} and not r.probe.probing
    # no estimate (the receiver stopped sending REMB): nothing is held beyond it
    r = Receiver(estimate=300_000)
    for _ in range(5):
        r.tick()
    assert r.probe.floors == {"a-v0": 1}
    assert r.probe.on_feedback(r.now + 1, None, CLEAN, r.allocation())
    assert r.probe.floors == {}


def test_probe_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        StepUpProbe(period=0)
    with pytest.raises(ValueError):
        StepUpProbe(period=10, max_backoff=5)


# --- through the conference policy ---------------------------------------------------------------
def test_the_conference_policy_steps_a_limited_receiver_up_and_back() -> None:
    policy = ConferenceVideoPolicy(probe_factory=lambda: StepUpProbe(period=2.0, settle=2.0))
    for i, ep in enumerate("ab"):
        policy.add_endpoint(ep)
        policy.set_sources(ep, video_sources(ep, simulcast(100 * (i + 1))))
    policy.set_layer_info("a-v0", HEIGHTS, RATES)
    policy.set_bandwidth("b", 300_000)
    policy.recompute()
    assert policy.allocation("b").layers == {"a-v0": 0}
    assert not policy.on_feedback("b", 1.0, CLEAN)
    assert policy.on_feedback("b", 2.0, CLEAN)
    update = policy.recompute()
    assert policy.allocation("b").layers == {"a-v0": 1}
    assert 101 in update.keyframe_requests  # the receiver switches up at a key frame
    assert set(policy.routes[101]) == {"b"}
    assert policy.on_feedback("b", 3.0, LOSSY)  # the step failed
    policy.recompute()
    assert policy.allocation("b").layers == {"a-v0": 0}
    assert policy.probe("b").next_try == 7.0  # twice the period
    policy.remove_endpoint("b")


# --- through the forwarder: real RTP in, the receiver's REMB and reports back ---------------------
def test_a_receiver_held_low_by_its_remb_climbs_with_clean_reports_and_falls_back_on_loss() -> None:
    """Layers of about 150 kbps, 500 kbps and 1.2 Mbps; the receiver's REMB stays at 300 kbps
    (what Chrome says while it gets the low layer). With a clean receiver report every second
    the bridge tries the middle layer and keeps it; reports of heavy loss take it back down."""
    clock = Clock()
    policy, forwarder, _, receiver = simulcast_call(clock, [])
    frame_bytes = [625, 2083, 5000]  # at 30 fps
    seqs = [0, 0, 0]
    frame = 0
    shown: set[int] = set()  # the SSRC(s) the receiver sees the source as

    def second(fraction_lost: int | None) -> None:
        """One second of all three layers, then the receiver's REMB and receiver report."""
        nonlocal frame
        mark = len(receiver.sent)
        for _ in range(30):
            clock.now += 1 / 30
            send_simulcast_frame(forwarder, frame, seqs, frame_bytes, clock.now)
            frame += 1
        shown.update(receiver.received_ssrcs(mark))
        feedback = rtcp.build_remb(77, 300_000, sorted(shown))
        if fraction_lost is not None:
            blocks = [rtcp.ReportBlock(ssrc, fraction_lost, 0, 0, 0, 0, 0) for ssrc in shown]
            feedback = rtcp.build_rr(77, blocks) + feedback
        forwarder.handle_rtcp(forwarder.endpoints["r"], feedback, clock.now)

    def layer() -> int:
        return policy.video.allocation("r").layers["s-v0"]

    for _ in range(3):
        second(None)  # REMB without receiver reports: no loss to judge a step by
    assert layer() == 0
    climbed = None
    for seconds in range(1, 8):
        second(0)
        if layer() == 1:
            climbed = seconds
            break
    assert climbed is not None and climbed <= 4, climbed
    assert policy.video.probe("r").probing
    for _ in range(4):
        second(0)
    assert layer() == 1 and not policy.video.probe("r").probing  # kept
    for _ in range(3):  # (reports are read at the allocation ticks, about every 1.3 s here)
        second(80)  # about 31 % lost
    assert layer() == 0 and policy.video.probe("r").floors == {}

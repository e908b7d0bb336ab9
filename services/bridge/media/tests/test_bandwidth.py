from __future__ import annotations

import pytest

from services.bridge.media.allocation.bandwidth import DownlinkEstimator
from services.common.bridge_channel import ConnectionStats, serialize


def test_no_feedback_no_estimate() -> None:
    estimator = DownlinkEstimator()
    estimator.on_loss(0, 0.0)  # loss alone says nothing about capacity
    assert estimator.estimate(0.0) is None
    assert estimator.connection_stats(0.0) is None


def test_remb_is_the_estimate() -> None:
    estimator = DownlinkEstimator()
    estimator.on_remb(1_000_000, 0.0)
    assert estimator.estimate(1.0) == 1_000_000
    estimator.on_remb(600_000, 2.0)
    assert estimator.estimate(2.0) == 600_000


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([0], 1_000_000),  # no loss: the REMB, never more
        ([128], 750_000),  # 50 %: down by half the loss
        ([128, 12], 750_000),  # 4.7 %: hold
        ([128, 0], 787_500),  # clean report: recover 5 %
        ([128] + [0] * 10, 1_000_000),  # recovered up to the REMB
    ],
)
def test_loss_scales_the_remb(losses: list[int], expected: int) -> None:
    estimator = DownlinkEstimator()
    estimator.on_remb(1_000_000, 0.0)
    for i, fraction_lost in enumerate(losses):
        estimator.on_loss(fraction_lost, float(i))
    assert estimator.estimate(20.0) == expected


def test_bounds_and_validation() -> None:
    estimator = DownlinkEstimator(min_bps=50_000, max_bps=3_000_000)
    estimator.on_remb(10, 0.0)
    assert estimator.estimate(0.0) == 50_000
    estimator.on_remb(10**9, 0.0)
    assert estimator.estimate(0.0) == 3_000_000
    with pytest.raises(ValueError, match="fraction_lost"):
        estimator.on_loss(300, 0.0)
    with pytest.raises(ValueError, match="min_bps"):
        DownlinkEstimator(min_bps=0)


def test_connection_stats_reported_on_change_or_interval() -> None:
    estimator = DownlinkEstimator(report_interval=5.0)
    estimator.on_remb(1_000_000, 0.0)
    first = estimator.connection_stats(0.0)
    assert first == ConnectionStats(estimated_downlink_bandwidth=1_000_000)
    assert serialize(first) == '{"colibriClass":"ConnectionStats","estimatedDownlinkBandwidth":1000000}'
    estimator.on_remb(1_100_000, 1.0)
    assert estimator.connection_stats(1.0) is None  # small change, too soon
    estimator.on_remb(500_000, 2.0)
    assert estimator.connection_stats(2.0) == ConnectionStats(estimated_downlink_bandwidth=500_000)
    estimator.on_remb(510_000, 7.5)
    assert estimator.connection_stats(7.5) == ConnectionStats(estimated_downlink_bandwidth=510_000)

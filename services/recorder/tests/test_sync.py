"""RTP timing: unwrapping and the capture-time estimate that keeps audio and video in sync."""

from __future__ import annotations

import random

from services.recorder.sync import TrackClock, Unwrapper


def test_unwrapper_follows_wraps_both_ways() -> None:
    u = Unwrapper()
    assert u(0xFFFFFF00) == 0xFFFFFF00
    assert u(0x00000100) == 0x100000100  # wrapped forwards
    assert u(0xFFFFFFF0) == 0xFFFFFFF0  # a late packet from before the wrap
    assert u(0x00000200) == 0x100000200


def simulate(rate: int, period: float, seconds: float, base_delay: float, jitter: float, loss: float,
             seed: int, ts0: int) -> TrackClock:  # fmt: skip
    """Packets captured every ``period`` s, delayed by ``base_delay`` + random jitter, some lost."""
    rng = random.Random(seed)
    clock = TrackClock(rate=rate)
    unwrap = Unwrapper()
    t = 0.0
    while t < seconds:
        if rng.random() >= loss:
            ts = (ts0 + round(t * rate)) & 0xFFFFFFFF
            clock.observe(100.0 + t + base_delay + rng.expovariate(1 / jitter), unwrap(ts))
        t += period
    return clock


def test_audio_and_video_of_one_sender_map_to_the_same_capture_time() -> None:
    """Different clocks, origins, packet rates, jitter (video's far larger, as a key frame's many
    packets queue) and loss: a moment captured at once maps to within a few ms in both."""
    audio = simulate(48000, 0.02, 20, 0.030, 0.005, 0.05, 1, ts0=0xFFFF0000)  # wraps
    video = simulate(90000, 1 / 30, 20, 0.030, 0.060, 0.10, 2, ts0=123456)
    for t in (1.0, 7.5, 19.0):
        a = audio.wall(Unwrapper()(0xFFFF0000) + round(t * 48000))
        v = video.wall(123456 + round(t * 90000))
        assert a is not None and v is not None
        assert abs(a - v) < 0.015, (t, a - v)
        assert abs(a - (100.0 + t + 0.030)) < 0.015


def test_a_gap_keeps_its_place_on_the_timeline() -> None:
    clock = TrackClock(rate=48000)
    clock.observe(10.0, 0)
    clock.observe(12.0, 96000)  # two seconds of loss, then the sender goes on
    assert clock.wall(96000) == 12.0
    assert clock.wall(48000) == 11.0


def test_nothing_before_the_first_packet() -> None:
    assert TrackClock(rate=90000).wall(1234) is None


def test_the_estimate_follows_a_slowly_drifting_sender_clock() -> None:
    clock = TrackClock(rate=48000)
    # the sender's clock runs 0.02 % slow: after 100 s its timestamps lag 20 ms
    for i in range(5000):
        t = i * 0.02
        clock.observe(t + 0.01, round(t * (1 - 0.0002) * 48000))
    last = round(99.98 * (1 - 0.0002) * 48000)
    wall = clock.wall(last)
    assert wall is not None and abs(wall - (99.98 + 0.01)) < 0.01

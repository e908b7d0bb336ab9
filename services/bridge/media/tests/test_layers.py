"""The layer switch both video projections are (``forwarding/layers.py``): target and current
layer, when a switch waits for a key frame and which SSRC is asked for one."""

from __future__ import annotations

import pytest

from services.bridge.media.forwarding.layers import LayerSwitch
from services.bridge.media.forwarding.simulcast import SimulcastLayer, SimulcastProjection, VideoSource
from services.bridge.media.forwarding.svc import SvcProjection

SIMULCAST = VideoSource("a-v0", "a", (SimulcastLayer(0, 1), SimulcastLayer(1, 2), SimulcastLayer(2, 3)))
SVC = VideoSource("b-v0", "b", tuple(SimulcastLayer(i, 7) for i in range(3)), svc=True)


def both(wait_for_keyframe: bool | None = None) -> tuple[LayerSwitch, LayerSwitch]:
    return SimulcastProjection(SIMULCAST, wait_for_keyframe), SvcProjection(SVC, wait_for_keyframe)


def test_both_projections_start_with_no_layer_under_the_sources_ssrc() -> None:
    for projection, ssrc in zip(both(), (1, 7), strict=True):
        assert (projection.target, projection.current, projection.switches) == (-1, -1, 0)
        assert projection.keyframe_wanted is None
        assert projection.out_ssrc == projection.mapping.out_ssrc == ssrc


def test_simulcast_waits_for_a_key_frame_of_the_target_layer_up_and_down() -> None:
    projection = SimulcastProjection(SIMULCAST)
    assert projection.set_target(2) and projection.keyframe_wanted == 3
    projection.switched(2)
    assert projection.keyframe_wanted is None and projection.switches == 1
    assert projection.set_target(0) and projection.keyframe_wanted == 1  # another stream: its key frame
    assert not projection.set_target(2) and projection.keyframe_wanted is None  # the one it gets


def test_svc_waits_only_to_switch_up() -> None:
    projection = SvcProjection(SVC)
    assert projection.set_target(1) and projection.keyframe_wanted == 7
    projection.switched(1)
    assert not projection.set_target(0) and projection.keyframe_wanted is None
    assert projection.set_target(2, tid=1) and projection.keyframe_wanted == 7
    assert projection.target_tid == 1


def test_stop_is_at_once_and_a_layer_out_of_range_is_refused() -> None:
    for projection in both():
        projection.set_target(1)
        projection.switched(1)
        assert projection.set_target(-1) is False
        assert projection.current == -1 and projection.keyframe_wanted is None
        with pytest.raises(ValueError, match="out of range"):
            projection.set_target(3)
        assert projection.target == -1


def test_without_key_frames_nothing_is_waited_for() -> None:
    for projection in both(wait_for_keyframe=False):
        assert not projection.set_target(2) and projection.keyframe_wanted is None
    single = SimulcastProjection(VideoSource("c-v0", "c", (SimulcastLayer(0, 5),)))
    assert not single.set_target(0) and single.keyframe_wanted is None  # its receiver asks itself

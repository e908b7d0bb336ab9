from __future__ import annotations

import pytest

from services.bridge.media.allocation.speaker import (
    DominantSpeakerDetector,
    SpeakerChange,
    SpeakerDetectorSettings,
)


def feed(detector: DominantSpeakerDetector, levels: dict[str, int], start: float, seconds: float) -> float:
    """Every endpoint sends one packet per 20 ms at its level; returns the end time."""
    t = start
    for _ in range(round(seconds / 0.02)):
        for ep, level in levels.items():
            detector.observe(ep, level, t)
        t += 0.02
    return t


def run(
    detector: DominantSpeakerDetector,
    levels: dict[str, int],
    start: float,
    seconds: float,
    changes: list[SpeakerChange],
) -> float:
    """Feed levels, deciding every 300 ms like the bridge does; collect the announcements."""
    t = start
    steps = round(seconds / 0.3)
    for _ in range(steps):
        t = feed(detector, levels, t, 0.3)
        change = detector.decide(t)
        if change is not None:
            changes.append(change)
    return t


def test_loudest_of_six_becomes_dominant_and_stays() -> None:
    detector = DominantSpeakerDetector()
    levels = {"a": 50, "b": 45, "c": 10, "d": 40, "e": 60, "f": 35}
    changes: list[SpeakerChange] = []
    run(detector, levels, 100.0, 5.0, changes)
    assert changes == [SpeakerChange("c", (), False)]
    assert detector.speaker_order[0] == "c"
    assert set(detector.speaker_order) == set(levels)


def test_short_noise_does_not_take_the_floor() -> None:
    detector = DominantSpeakerDetector()
    changes: list[SpeakerChange] = []
    t = run(detector, {"a": 30, "b": 127}, 0.0, 3.0, changes)
    assert detector.dominant == "a"
    # b coughs very loudly for 100 ms while a keeps talking
    t = feed(detector, {"a": 30, "b": 0}, t, 0.1)
    assert detector.decide(t) is None
    run(detector, {"a": 30, "b": 127}, t, 3.0, changes)
    assert [c.dominant for c in changes] == ["a"]


def test_short_noise_during_silence_does_not_take_the_floor() -> None:
    detector = DominantSpeakerDetector()
    changes: list[SpeakerChange] = []
    t = run(detector, {"a": 30, "b": 127}, 0.0, 3.0, changes)
    t = run(detector, {"a": 127, "b": 127}, t, 1.2, changes)
    t = feed(detector, {"a": 127, "b": 5}, t, 0.2)  # a 200 ms click
    run(detector, {"a": 127, "b": 127}, t, 0.9, changes)
    assert detector.dominant == "a"


def test_floor_moves_when_someone_else_talks_for_a_while() -> None:
    detector = DominantSpeakerDetector()
    changes: list[SpeakerChange] = []
    t = run(detector, {"a": 30, "b": 127, "c": 127}, 0.0, 4.2, changes)
    t = run(detector, {"a": 127, "b": 30, "c": 127}, t, 3.0, changes)
    assert [c.dominant for c in changes] == ["a", "b"]
    assert changes[-1].previous_speakers == ("a",)
    run(detector, {"a": 127, "b": 127, "c": 30}, t, 3.0, changes)
    assert changes[-1] == SpeakerChange("c", ("b", "a"), False)
    assert detector.speaker_order == ["c", "b", "a"]


def test_takeover_while_dominant_still_talks_needs_a_clear_lead() -> None:
    detector = DominantSpeakerDetector()
    changes: list[SpeakerChange] = []
    t = run(detector, {"a": 40, "b": 127}, 0.0, 3.0, changes)
    t = run(detector, {"a": 40, "b": 38}, t, 3.0, changes)  # slightly louder: no lead
    assert detector.dominant == "a"
    run(detector, {"a": 40, "b": 5}, t, 3.0, changes)  # much louder: takes over
    assert detector.dominant == "b"


def test_silence_is_announced_and_ends_when_speech_resumes() -> None:
    detector = DominantSpeakerDetector(SpeakerDetectorSettings(silence_timeout=2.0))
    changes: list[SpeakerChange] = []
    t = run(detector, {"a": 30, "b": 127}, 0.0, 3.0, changes)
    t = run(detector, {"a": 127, "b": 127}, t, 3.0, changes)
    assert changes[-1] == SpeakerChange("a", (), True)
    run(detector, {"a": 30, "b": 127}, t, 0.6, changes)
    assert changes[-1] == SpeakerChange("a", (), False)
    assert len(changes) == 3


def test_nobody_speaking_gives_no_dominant_speaker() -> None:
    detector = DominantSpeakerDetector()
    changes: list[SpeakerChange] = []
    run(detector, {"a": 127, "b": 100}, 0.0, 3.0, changes)
    assert changes == []
    assert detector.dominant is None


def test_removed_endpoint_leaves_history_and_order() -> None:
    detector = DominantSpeakerDetector()
    changes: list[SpeakerChange] = []
    t = run(detector, {"a": 30, "b": 127}, 0.0, 4.2, changes)
    run(detector, {"a": 127, "b": 30}, t, 3.0, changes)
    detector.remove_endpoint("a")
    detector.add_endpoint("z")
    assert detector.speaker_order == ["b", "z"]


def test_missing_packets_count_as_silence() -> None:
    detector = DominantSpeakerDetector()
    t = feed(detector, {"a": 20}, 0.0, 2.0)
    assert detector.scores("a", t).medium_voiced == pytest.approx(1.0, abs=0.05)
    assert detector.scores("a", t + 2.0).medium_voiced == 0.0  # DTX: nothing arrived


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="voice_level"):
        SpeakerDetectorSettings(voice_level=200)
    with pytest.raises(ValueError, match="windows"):
        SpeakerDetectorSettings(immediate_window=2.0, medium_window=1.0)


def test_bursty_arrival_counts_every_packet_as_a_frame() -> None:
    detector = DominantSpeakerDetector()
    # packets arrive five at a time every 100 ms (a stalled sender catching up)
    t = 0.0
    for _ in range(20):
        for _ in range(5):
            detector.observe("a", 20, t)
        t += 0.1
    assert detector.scores("a", t).medium_voiced == pytest.approx(1.0, abs=0.1)
    # a long stall is not filled: what arrives after it is spread at most 10 frames ahead
    for _ in range(50):
        detector.observe("a", 20, t + 1.0)
    assert detector.scores("a", t + 1.0).medium_voiced < 0.3


def test_scores_fall_to_zero_exactly_when_the_last_frame_leaves_the_long_window() -> None:
    settings = SpeakerDetectorSettings()
    detector = DominantSpeakerDetector(settings)
    detector.add_endpoint("quiet")  # never sends audio
    start = 100.0
    for i in range(50):  # one second of loud speech
        detector.observe("talker", 10, start + i * 0.02)
    last_packet = start + 49 * 0.02
    zero = (0.0, 0.0, 0.0, 0.0)
    for scores in (detector.scores("quiet", last_packet + 1), detector.scores("nobody", last_packet + 1)):
        assert (scores.immediate, scores.medium, scores.medium_voiced, scores.long) == zero
    # the talker's last frame is still (barely) inside the long window: a positive long score
    inside = detector.scores("talker", last_packet + settings.long_window - 0.01)
    assert inside.long > 0 and inside.immediate == 0.0
    later = detector.scores("talker", last_packet + settings.long_window + 0.05)
    assert (later.immediate, later.medium, later.medium_voiced, later.long) == zero

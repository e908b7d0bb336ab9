"""Dial-in PIN entry and RFC 4733 telephone-event decoding, without I/O."""

from __future__ import annotations

import pytest

from services.sip import audio
from services.sip.dtmf import (
    DialInRules,
    DigitRate,
    EventDecoder,
    HangUp,
    Join,
    PinEntry,
    Prompt,
    event_payload,
    parse_event,
    parse_pins,
)

RULES = DialInRules({"1234": "standup", "*9": "ops"}, max_attempts=3, max_digits=6, digit_timeout=10,
                    total_timeout=100)


def key(entry: PinEntry, digits: str, now: float) -> list[object]:
    out = []
    for d in digits:
        decision = entry.digit(d, now)
        if decision is not None:
            out.append(decision)
    return out


def test_event_payload_round_trip() -> None:
    ev = parse_event(event_payload(11, True, 1280, volume=7))
    assert ev is not None and (ev.event, ev.end, ev.volume, ev.duration) == (11, True, 7, 1280)
    assert parse_event(b"\x01\x02") is None


def test_decoder_counts_each_event_once() -> None:
    dec = EventDecoder()
    # RFC 4733 §2.5: updates and three end packets share the event's timestamp
    packets = [(100, event_payload(1, False, 160)), (100, event_payload(1, False, 320)),
               (100, event_payload(1, True, 480)), (100, event_payload(1, True, 480)),
               (100, event_payload(1, True, 480)), (900, event_payload(11, False, 160)),
               (900, event_payload(11, True, 320)), (1700, event_payload(1, True, 320))]
    digits = [d for ts, p in packets if (d := dec.feed(7, ts, p)) is not None]
    assert digits == ["1", "#", "1"]


def test_decoder_ignores_garbage_and_unknown_events() -> None:
    dec = EventDecoder()
    assert dec.feed(1, 1, b"") is None
    assert dec.feed(1, 2, event_payload(200, True, 100)) is None  # not a DTMF event (RFC 4733 §3.2)
    assert dec.feed(1, 3, event_payload(15, True, 100)) == "D"


def test_right_pin_joins_its_room() -> None:
    entry = PinEntry(RULES)
    assert entry.start(0) == Prompt(retry=False)
    assert key(entry, "1234#", 1) == [Join("standup")]
    assert entry.next_deadline() is None
    assert entry.digit("1", 2) is None  # over: nothing more happens


def test_star_is_a_pin_digit() -> None:
    entry = PinEntry(RULES)
    entry.start(0)
    assert key(entry, "*9#", 1) == [Join("ops")]


def test_wrong_pin_prompts_again_then_hangs_up_after_three() -> None:
    entry = PinEntry(RULES)
    entry.start(0)
    assert key(entry, "1111#", 1) == [Prompt(retry=True)]
    assert entry.attempt == 2
    assert key(entry, "#", 2) == [Prompt(retry=True)]
    decisions = key(entry, "4321#", 3)
    assert len(decisions) == 1 and isinstance(decisions[0], HangUp)
    assert "3 times" in decisions[0].reason
    assert entry.next_deadline() is None


def test_retry_succeeds() -> None:
    entry = PinEntry(RULES)
    entry.start(0)
    key(entry, "9#", 1)
    assert key(entry, "1234#", 2) == [Join("standup")]


def test_too_many_digits_make_the_attempt_wrong() -> None:
    entry = PinEntry(RULES)
    entry.start(0)
    # the right PIN after 6 digits of noise is still one over-long (wrong) attempt
    assert key(entry, "000000" + "1234#", 1) == [Prompt(retry=True)]
    assert len(entry.buffer) == 0


def test_silence_times_out_each_attempt_then_hangs_up() -> None:
    entry = PinEntry(RULES)
    entry.start(0)
    assert entry.next_deadline() == 10
    assert entry.tick(5) is None
    assert entry.tick(10) == Prompt(retry=True)
    assert entry.tick(20) == Prompt(retry=True)
    decision = entry.tick(30)
    assert isinstance(decision, HangUp) and "timed out" in decision.reason


def test_a_digit_arriving_late_counts_as_the_timeout() -> None:
    entry = PinEntry(RULES)
    entry.start(0)
    assert entry.digit("1", 11) == Prompt(retry=True)  # the first attempt had already timed out
    assert key(entry, "1234#", 12) == [Join("standup")]


def test_total_time_is_bounded_even_with_steady_digits() -> None:
    rules = DialInRules({"1": "r"}, max_attempts=3, max_digits=4, digit_timeout=10, total_timeout=30)
    entry = PinEntry(rules)
    entry.start(0)
    out = []
    t = 0.0
    while t < 40 and not entry.done:
        t += 5
        d = entry.digit("5", t)
        if d is not None:
            out.append(d)
    assert isinstance(out[-1], HangUp) and out[-1].reason == "no PIN in time"
    assert t <= 30


def test_parse_pins() -> None:
    assert parse_pins(["1234:Standup", "*1: ops"]) == {"1234": "standup", "*1": "ops"}
    for bad in (["1234"], [":room"], ["12a4:room"], ["12#:room"]):
        with pytest.raises(ValueError):
            parse_pins(bad)


def test_prompts_are_whole_frames_of_the_tone() -> None:
    frames = audio.prompt_frames(440.0, 2)
    assert frames and all(len(f) == audio.FRAME for f in frames)
    assert max(int(abs(f).max()) for f in frames) > 4000


def test_a_callers_digits_pass_a_burst_then_the_rate_and_the_rest_are_counted_dropped() -> None:
    rate = DigitRate(rate=4, burst=3)
    # full at the first digit, however late in the call it comes
    assert [rate.allow(500.0) for _ in range(4)] == [True, True, True, False]
    assert rate.dropped == 1
    assert not rate.allow(500.125)  # half a digit's worth
    assert rate.allow(500.25) and not rate.allow(500.25)
    assert rate.dropped == 3

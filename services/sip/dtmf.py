"""Dial-in with a room PIN, without I/O: RFC 4733 telephone-events in, a room (or a hang-up) out.

A call to the dial-in number (``sip.dial-in.number``) is answered at once; the caller hears a
prompt and keys a PIN ending in ``#``. :class:`EventDecoder` turns telephone-event RTP payloads
into digits (one per event: the RTP timestamp names the event, RFC 4733 §2.5.1.3, so the
repeated updates and the three end packets count once); :class:`PinEntry` collects them and
decides. The PIN table is the operator's (``sip.dial-in.pins``, ``"PIN:room"``): Jitsi's
conference mapper answers the same question (numeric id → conference) over HTTP; a table keeps
the gateway self-contained.

Digits also come as SIP INFO (RFC 6086) with ``application/dtmf-relay`` (``Signal=5`` and
``Duration=160`` lines, what JsSIP sends by default) or ``application/dtmf`` (the digit, or its
event number): :func:`parse_info`. Whatever the source, a caller's digits pass a
:class:`DigitRate` (``RATE`` per second, ``BURST`` at once); beyond it they are dropped.

Bounds: at most ``max_digits`` digits per attempt (more end the attempt as a wrong PIN), a digit
within ``digit_timeout`` seconds of the prompt or the previous digit, ``max_attempts`` attempts,
and the whole entry within ``total_timeout`` seconds.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.token_bucket import TokenBucket

DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15
INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
MAX_INFO_BODY = 256
RATE = 10.0  # digits per second a caller may key, after a burst of
BURST = 20.0


class DigitRate:
    """A token bucket of digits for one caller (a person keys a few per second), full at the
    first digit (``services/common/token_bucket.py``)."""

    def __init__(self, rate: float = RATE, burst: float = BURST) -> None:
        self.rate, self.burst = rate, burst
        self.bucket: TokenBucket | None = None
        self.dropped = 0

    def allow(self, now: float) -> bool:
        if self.bucket is None:
            self.bucket = TokenBucket(self.rate, self.burst, now)
        if self.bucket.take(now):
            return True
        self.dropped += 1
        return False


def parse_info(content_type: str, body: bytes) -> str:
    """The digit of a SIP INFO body (RFC 6086) of ``content_type`` (one of :data:`INFO_TYPES`,
    parameters ignored); raises ``ValueError`` for anything else or a malformed body."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in INFO_TYPES:
        raise ValueError(f"not a DTMF content type: {kind[:64]!r}")
    if len(body) > MAX_INFO_BODY:
        raise ValueError("DTMF body too long")
    text = body.decode("ascii", "strict").strip()
    if kind == "application/dtmf-relay":
        signal = None
        for line in text.splitlines():
            name, eq, value = line.partition("=")
            if eq and name.strip().lower() == "signal":
                if signal is not None:
                    raise ValueError("more than one Signal")
                signal = value.strip()
        if signal is None:
            raise ValueError("no Signal line")
        text = signal
    if len(text) == 1 and text.upper() in DIGITS:
        return text.upper()
    if text.isdigit() and int(text) < len(DIGITS):  # the event number (RFC 4733 §3.2)
        return DIGITS[int(text)]
    raise ValueError(f"not a DTMF digit: {text[:16]!r}")


@dataclass(frozen=True)
class ToneEvent:
    event: int
    end: bool
    volume: int
    duration: int


def parse_event(payload: bytes) -> ToneEvent | None:
    """RFC 4733 §2.3 payload (the first 4 bytes); None when too short."""
    if len(payload) < 4:
        return None
    event, flags, duration = struct.unpack("!BBH", payload[:4])
    return ToneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def event_payload(event: int, end: bool, duration: int, volume: int = 10) -> bytes:
    return struct.pack("!BBH", event & 0xFF, (0x80 if end else 0) | (volume & 0x3F), duration & 0xFFFF)


class EventDecoder:
    """Digits from a stream of telephone-event packets (one sender)."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None  # (ssrc, timestamp) of the last event counted
        self.events = 0

    def feed(self, ssrc: int, timestamp: int, payload: bytes) -> str | None:
        """The digit of a new event, None for an update of an event already counted or garbage."""
        ev = parse_event(payload)
        if ev is None or ev.event >= len(DIGITS):
            return None
        key = (ssrc, timestamp)
        if key == self._last:
            return None
        self._last = key
        self.events += 1
        return DIGITS[ev.event]


@dataclass(frozen=True)
class Prompt:
    """Play the "enter the PIN" prompt (``retry``: after a wrong PIN)."""

    retry: bool


@dataclass(frozen=True)
class Join:
    room: str


@dataclass(frozen=True)
class HangUp:
    reason: str


Decision = Prompt | Join | HangUp


@dataclass(frozen=True)
class DialInRules:
    pins: Mapping[str, str]
    max_attempts: int = 3
    max_digits: int = 12
    digit_timeout: float = 15.0
    total_timeout: float = 120.0


def parse_pins(items: list[str]) -> dict[str, str]:
    """``["1234:room", …]`` → ``{"1234": "room"}``; raises ``ValueError``."""
    out: dict[str, str] = {}
    for item in items:
        pin, colon, room = item.partition(":")
        if not colon or not pin or not room or not all(c in "0123456789*" for c in pin):
            raise ValueError("each PIN is DIGITS:room (digits 0-9 and *)")
        out[pin] = room.strip().lower()
    return out


class PinEntry:
    """One caller's PIN entry: :meth:`start`, :meth:`digit`, :meth:`tick` return what to do."""

    def __init__(self, rules: DialInRules) -> None:
        self.rules = rules
        self.attempt = 0
        self.buffer = ""
        self.overflow = False
        self.started = 0.0
        self.deadline = 0.0
        self.done = False

    def start(self, now: float) -> Decision:
        self.started = now
        self.attempt = 1
        self.deadline = now + self.rules.digit_timeout
        return Prompt(retry=False)

    def next_deadline(self) -> float | None:
        if self.done:
            return None
        return min(self.deadline, self.started + self.rules.total_timeout)

    def digit(self, d: str, now: float) -> Decision | None:
        if self.done:
            return None
        late = self.tick(now)
        if late is not None:
            return late
        self.deadline = now + self.rules.digit_timeout
        if d == "#":
            return self._submit(now)
        if len(self.buffer) >= self.rules.max_digits:
            self.overflow = True  # keep the attempt going until '#', then it is wrong
            return None
        self.buffer += d
        return None

    def tick(self, now: float) -> Decision | None:
        if self.done:
            return None
        if now >= self.started + self.rules.total_timeout:
            return self._end("no PIN in time")
        if now >= self.deadline:
            return self._wrong(now, "timed out")
        return None

    def _submit(self, now: float) -> Decision:
        room = None if self.overflow else self.rules.pins.get(self.buffer)
        if room is not None:
            self.done = True
            return Join(room)
        return self._wrong(now, "wrong PIN")

    def _wrong(self, now: float, why: str) -> Decision:
        self.buffer = ""
        self.overflow = False
        if self.attempt >= self.rules.max_attempts:
            return self._end(f"{why} {self.attempt} times")
        self.attempt += 1
        self.deadline = now + self.rules.digit_timeout
        return Prompt(retry=True)

    def _end(self, reason: str) -> Decision:
        self.done = True
        return HangUp(reason)

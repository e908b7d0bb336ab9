"""Audio levels (RFC 6464) and dominant-speaker identification. No I/O.

The levels come from the ``urn:ietf:params:rtp-hdrext:ssrc-audio-level`` header extension, read
by the forwarder with :func:`services.bridge.media.packets.rtp.audio_level`. :class:`DominantSpeakerDetector`
is fed ``(endpoint, level, now)`` per audio packet (O(1): one ring-buffer write) and asked every
decision interval (:meth:`~DominantSpeakerDetector.decide`) whether the dominant speaker changed.

The detector follows the idea of Volfin and Cohen's "Dominant speaker identification for
multipoint videoconferencing" (also the basis of Jitsi's detector): activity is judged on three
time scales and a challenger replaces the dominant speaker only when it is ahead on all of them.

* immediate (last ``immediate_window`` s): mean loudness, level-weighted -- who is loud *now*;
* medium (last ``medium_window`` s): mean loudness of voiced 20 ms frames, and the fraction of
  voiced frames -- who has been speaking for a while, not just clicked or coughed;
* long (last ``long_window`` s): fraction of voiced frames -- who has been holding the floor.

A short noise lifts only the immediate score, so it never moves the floor; a challenger needs
``min_speech_fraction`` of the medium window voiced, to be louder right now, and to beat the
dominant's medium score by ``medium_margin``. When the dominant speaker stops and someone else
keeps talking, the long-window check (``long_ratio``) lets the switch happen after a second or
two rather than on the first syllable. Silence (nobody voiced for ``silence_timeout``) is an
event of its own: the dominant speaker stays, with ``silence=True``.

Levels are RFC 6464 values: 0 is the loudest (0 dBov), 127 is silence (-127 dBov).
"""

from __future__ import annotations

from dataclasses import dataclass

SILENT_LEVEL = 127
"""RFC 6464 level of digital silence."""

FRAME_SECONDS = 0.02
"""Audio levels are bucketed per 20 ms frame (one Opus packet)."""


@dataclass(frozen=True)
class SpeakerChange:
    """A new dominant-speaker state to announce (``DominantSpeakerEndpointChangeEvent``).

    ``previous_speakers``: earlier dominant speakers, most recent first, without the current one.
    ``silence``: nobody has spoken for a while; ``dominant`` is then the last one who did.
    """

    dominant: str
    previous_speakers: tuple[str, ...]
    silence: bool


@dataclass(frozen=True)
class SpeakerDetectorSettings:
    """Tuning of :class:`DominantSpeakerDetector` (seconds, fractions, RFC 6464 levels)."""

    voice_level: int = 70
    """A 20 ms frame at or below this level (i.e. louder than -70 dBov) counts as voiced."""
    immediate_window: float = 0.2
    medium_window: float = 1.0
    long_window: float = 4.0
    min_speech_fraction: float = 0.3
    """Share of the medium window a challenger must have voiced."""
    medium_margin: float = 0.1
    """Relative lead on the medium score a challenger needs over the dominant speaker."""
    long_ratio: float = 0.5
    """A challenger's long-window activity must reach this share of the dominant speaker's."""
    silence_timeout: float = 3.0
    max_previous_speakers: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.voice_level <= SILENT_LEVEL:
            raise ValueError(f"voice_level must be 0..127, got {self.voice_level}")
        if not 0 < self.immediate_window <= self.medium_window <= self.long_window:
            raise ValueError("windows must satisfy 0 < immediate_window <= medium_window <= long_window")
        if self.silence_timeout <= 0:
            raise ValueError(f"silence_timeout must be > 0, got {self.silence_timeout}")


MAX_FRAMES_AHEAD = 10
"""How far (in 20 ms frames) a burst of late packets may be spread ahead of the clock."""


class _SpeakerActivity:
    """The loudness of one endpoint's recent 20 ms frames, in a ring indexed by frame number.

    Each packet is one 20 ms frame: packets that arrive in a burst (a sender or network that
    stalled) fill consecutive frames instead of collapsing into one, up to ``MAX_FRAMES_AHEAD``
    frames ahead of the clock; a gap with no packets (DTX, loss) stays silent."""

    __slots__ = ("frame_numbers", "last_frame", "last_voiced", "loudness", "next_frame", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.loudness = [0] * size  # 127 - level of the loudest packet in the frame
        self.frame_numbers = [-1] * size
        self.last_voiced = float("-inf")
        self.next_frame = -1
        self.last_frame = -1  # the newest frame any packet went to

    def observe(self, frame_now: int, loudness: int) -> None:
        frame = self.next_frame if self.next_frame > frame_now else frame_now
        if frame > frame_now + MAX_FRAMES_AHEAD:
            frame = frame_now + MAX_FRAMES_AHEAD
        self.next_frame = frame + 1
        if frame > self.last_frame:
            self.last_frame = frame
        slot = frame % self.size
        if self.frame_numbers[slot] != frame:
            self.frame_numbers[slot] = frame
            self.loudness[slot] = loudness
        elif loudness > self.loudness[slot]:
            self.loudness[slot] = loudness

    def window(self, newest_frame: int, frames: int, voiced_loudness: int) -> tuple[float, float, float]:
        """(mean loudness, mean loudness of voiced frames counted over all frames, voiced
        fraction) over the ``frames`` frames ending at ``newest_frame``. Frames without packets
        (DTX, loss) count as silent."""
        total = 0
        voiced_total = 0
        voiced = 0
        numbers = self.frame_numbers
        loud = self.loudness
        size = self.size
        for frame in range(newest_frame - frames + 1, newest_frame + 1):
            slot = frame % size
            if numbers[slot] != frame:
                continue
            value = loud[slot]
            total += value
            if value >= voiced_loudness:
                voiced += 1
                voiced_total += value
        return total / (frames * SILENT_LEVEL), voiced_total / (frames * SILENT_LEVEL), voiced / frames


@dataclass(frozen=True)
class SpeakerScores:
    """One endpoint's activity on the three time scales, all in 0..1."""

    immediate: float
    medium: float
    medium_voiced: float
    long: float


_NO_ACTIVITY = SpeakerScores(0.0, 0.0, 0.0, 0.0)


class DominantSpeakerDetector:
    """Dominant speaker of one conference. Feed :meth:`observe` per audio packet, call
    :meth:`decide` every few hundred ms (Jitsi decides every 300 ms); it returns a
    :class:`SpeakerChange` when the announcement changes, else ``None``.

    :attr:`speaker_order` is the order last-N uses: the dominant speaker, then the previous
    speakers by recency, then endpoints that never held the floor in the order they joined.
    """

    def __init__(self, settings: SpeakerDetectorSettings | None = None) -> None:
        self.settings = settings or SpeakerDetectorSettings()
        s = self.settings
        self._ring_frames = round(s.long_window / FRAME_SECONDS) + 1
        self._immediate_frames = max(1, round(s.immediate_window / FRAME_SECONDS))
        self._medium_frames = max(1, round(s.medium_window / FRAME_SECONDS))
        self._long_frames = max(1, round(s.long_window / FRAME_SECONDS))
        self._voiced_loudness = SILENT_LEVEL - s.voice_level
        self._speakers: dict[str, _SpeakerActivity] = {}
        self._history: list[str] = []  # dominant first, then previous dominants, most recent first
        self._silence = False
        self._announced: SpeakerChange | None = None

    @property
    def dominant(self) -> str | None:
        return self._history[0] if self._history else None

    @property
    def silence(self) -> bool:
        return self._silence

    @property
    def speaker_order(self) -> list[str]:
        ranked = list(self._history)
        seen = set(ranked)
        ranked.extend(ep for ep in self._speakers if ep not in seen)
        return ranked

    def add_endpoint(self, endpoint: str) -> None:
        """Register an endpoint (so it appears in :attr:`speaker_order` before it speaks)."""
        if endpoint not in self._speakers:
            self._speakers[endpoint] = _SpeakerActivity(self._ring_frames)

    def remove_endpoint(self, endpoint: str) -> None:
        self._speakers.pop(endpoint, None)
        if endpoint in self._history:
            self._history.remove(endpoint)

    def observe(self, endpoint: str, level: int, now: float) -> None:
        """One audio packet's level (0 loudest .. 127 silent) from ``endpoint`` at ``now``
        (monotonic seconds). Unknown endpoints are added."""
        activity = self._speakers.get(endpoint)
        if activity is None:
            activity = self._speakers[endpoint] = _SpeakerActivity(self._ring_frames)
        if level < 0:
            level = 0
        elif level > SILENT_LEVEL:
            level = SILENT_LEVEL
        loudness = SILENT_LEVEL - level
        activity.observe(int(now / FRAME_SECONDS), loudness)
        if loudness >= self._voiced_loudness:
            activity.last_voiced = now

    def scores(self, endpoint: str, now: float) -> SpeakerScores:
        """The endpoint's activity scores as of ``now`` (zeros for an unknown endpoint)."""
        activity = self._speakers.get(endpoint)
        if activity is None:
            return _NO_ACTIVITY
        # The frame in progress is incomplete; judge on frames that are over.
        newest = int(now / FRAME_SECONDS) - 1
        if activity.last_frame <= newest - self._long_frames:
            # nothing in the longest window (a muted or receive-only endpoint, the usual case):
            # every score is zero, without walking the windows every decision
            return _NO_ACTIVITY
        immediate, _, _ = activity.window(newest, self._immediate_frames, self._voiced_loudness)
        _, medium, medium_voiced = activity.window(newest, self._medium_frames, self._voiced_loudness)
        _, _, long = activity.window(newest, self._long_frames, self._voiced_loudness)
        return SpeakerScores(immediate, medium, medium_voiced, long)

    def decide(self, now: float) -> SpeakerChange | None:
        """Re-evaluate the floor; the new announcement if it differs from the last one."""
        s = self.settings
        dominant = self.dominant
        scores = {ep: self.scores(ep, now) for ep in self._speakers}
        challengers = [
            (sc.medium, sc.immediate, ep)
            for ep, sc in scores.items()
            if ep != dominant and sc.medium_voiced >= s.min_speech_fraction
        ]
        if challengers:
            _, _, best = max(challengers)
            if dominant is None or self._beats(scores[best], scores[dominant]):
                self._set_dominant(best)
        latest_voice = max((a.last_voiced for a in self._speakers.values()), default=float("-inf"))
        self._silence = self.dominant is not None and now - latest_voice >= s.silence_timeout
        change = self.current()
        if change is None or change == self._announced:
            return None
        self._announced = change
        return change

    def current(self) -> SpeakerChange | None:
        """The floor as it stands (what an endpoint that arrives now should be told), or None
        before anyone has spoken."""
        if not self._history:
            return None
        previous = tuple(self._history[1 : 1 + self.settings.max_previous_speakers])
        return SpeakerChange(self._history[0], previous, self._silence)

    def _beats(self, challenger: SpeakerScores, dominant: SpeakerScores) -> bool:
        s = self.settings
        return (
            challenger.immediate > dominant.immediate
            and challenger.medium > dominant.medium * (1.0 + s.medium_margin)
            and challenger.long >= dominant.long * s.long_ratio
        )

    def _set_dominant(self, endpoint: str) -> None:
        if endpoint in self._history:
            self._history.remove(endpoint)
        self._history.insert(0, endpoint)

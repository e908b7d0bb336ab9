"""How often one occupant's presence updates are broadcast to its room (pure, no clock of its own).

A presence update from an occupant goes to every occupant of the room, so a guest that sends
updates as fast as its connection allows makes the broker send N times as many (presence
amplification). Each occupant gets a token bucket (``services/common/token_bucket.py``):
``burst`` updates at once, then one per ``interval`` seconds. An update over the budget is not
dropped but coalesced: the room keeps the occupant's latest presence and broadcasts it once, when
the next token is due, so the last state always wins (as Jitsi's clients expect: a mute after
ten quick toggles is still a mute) and a slow, honest client never notices.

Joins, nick changes and departures are never throttled: they change who is in the room.
"""

from __future__ import annotations

from collections.abc import Hashable

from ...common.token_bucket import TokenBucket


class PresenceThrottle:
    def __init__(self, interval: float, burst: int) -> None:
        if interval < 0 or burst < 1:
            raise ValueError("interval must be >= 0 and burst >= 1")
        self.interval = interval
        self.burst = burst
        self._buckets: dict[Hashable, TokenBucket] = {}
        self.coalesced = 0

    def admit(self, key: Hashable, now: float) -> float | None:
        """``None`` when an update from ``key`` may be broadcast at ``now`` (a token is taken);
        otherwise the seconds until it may (nothing is taken: ask again then)."""
        if self.interval == 0:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(1.0 / self.interval, self.burst, now)
        if bucket.take(now):
            return None
        self.coalesced += 1
        return bucket.wait(now)

    def forget(self, key: Hashable) -> None:
        """The occupant left: its bucket goes (the table holds one per present occupant)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)

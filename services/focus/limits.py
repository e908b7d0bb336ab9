"""What a guest may cost the focus (pure; the orchestrator and the XMPP adapter apply it).

* :class:`RequestLimiter` - conference requests per requester (its full JID, i.e. one XMPP
  session): a token bucket each (``services/common/token_bucket.py``), ``burst`` requests at
  once and ``per_minute`` after that. A request over the limit is answered
  ``resource-constraint`` (RFC 6120 section 8.3.3.18, type ``wait``) and does nothing. The table is bounded (``max_keys``; full buckets are forgotten
  first), so guessing requester names cannot grow it.
* :class:`EmptyConferences` - when each conference last had a participant; a conference with
  none for ``timeout`` seconds is due to be ended (Colibri conference expired on its bridge, MUC
  room destroyed), whether its participants left or never came.
"""

from __future__ import annotations

from services.common.token_bucket import TokenBucket


class RequestRefused(Exception):
    """A conference request the focus turns down (answered with ``condition``, type ``wait``)."""

    def __init__(self, condition: str, text: str, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.condition = condition
        self.retry_after = retry_after


class RequestLimiter:
    def __init__(self, burst: int, per_minute: float, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, now: float) -> float | None:
        """Take one request for ``key``: None if allowed, else seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return None if bucket.take(now) else bucket.wait(now)

    def _prune(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.full(now):
                del self._buckets[key]  # as good as new: nothing to remember
        while len(self._buckets) >= self.max_keys:  # all busy: forget the oldest
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


class EmptyConferences:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._since: dict[str, float] = {}

    def observe(self, room: str, participants: int, now: float) -> None:
        if participants:
            self._since.pop(room, None)
        else:
            self._since.setdefault(room, now)

    def forget(self, room: str) -> None:
        self._since.pop(room, None)

    def due(self, now: float) -> list[str]:
        """Rooms empty for ``timeout`` seconds or more."""
        return [room for room, since in self._since.items() if now - since >= self.timeout]

    def empty_since(self, room: str) -> float | None:
        return self._since.get(room)

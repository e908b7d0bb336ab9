"""Per-connection rate limiting: a token bucket over received bytes (Prosody's mod_limits idea)."""

from __future__ import annotations


class TokenBucket:
    """``rate`` bytes per second with ``burst`` bytes of credit; :meth:`consume` says how long to
    pause reading so the long-run rate stays at ``rate``."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def consume(self, amount: int, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= amount
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

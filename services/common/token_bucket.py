"""The token bucket every service's rate limits share (no I/O: time is an argument).

``rate`` tokens a second accrue up to ``burst``. Two ways to spend them:

* :meth:`TokenBucket.consume` always spends, into debt, and says how long the caller must pause
  for the long-run rate to hold (a read budget: the bytes were read already; Prosody's
  mod_limits).
* :meth:`TokenBucket.take` spends only what is there: a refusal costs nothing, so a client sending
  faster than the rate still gets the rate through (a request limit: Kamailio's pike, nginx's
  ``limit_req``); :meth:`TokenBucket.wait` then says when to ask again.

``rate`` and ``burst`` may be changed between calls (a budget that follows a measured rate): what
accrued until the next call accrues at the rate set then.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def consume(self, amount: float, now: float) -> float:
        """Spend ``amount`` (into debt if need be); the seconds to pause so the rate holds."""
        self.refill(now)
        self.tokens -= amount
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Spend ``amount`` if the bucket holds it; otherwise spend nothing and say no."""
        self.refill(now)
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def wait(self, now: float, amount: float = 1.0) -> float:
        """Seconds until the bucket holds ``amount`` (0.0 when it does now; infinite if it never
        refills); nothing is spent."""
        self.refill(now)
        if self.tokens >= amount:
            return 0.0
        return (amount - self.tokens) / self.rate if self.rate > 0 else float("inf")

    def full(self, now: float) -> bool:
        """Whether the bucket is back to its whole burst (nothing about it is worth keeping)."""
        self.refill(now)
        return self.tokens >= self.burst

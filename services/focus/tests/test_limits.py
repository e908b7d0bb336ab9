from __future__ import annotations

from services.focus.limits import EmptyConferences, RequestLimiter


def test_requests_are_limited_per_requester() -> None:
    limiter = RequestLimiter(burst=3, per_minute=6)  # one every 10 s after the burst
    assert [limiter.check("a@x/1", 0.0) for _ in range(3)] == [None, None, None]
    wait = limiter.check("a@x/1", 0.0)
    assert wait is not None and 9.9 < wait <= 10.0
    assert limiter.check("b@x/1", 0.0) is None  # another session is not affected
    assert limiter.check("a@x/1", 5.0) is not None
    assert limiter.check("a@x/1", 10.5) is None
    assert limiter.check("a@x/1", 10.6) is not None


def test_the_table_stays_bounded() -> None:
    limiter = RequestLimiter(burst=2, per_minute=60, max_keys=100)
    for i in range(10_000):
        limiter.check(f"guest{i}@x/r", i * 0.001)
        assert len(limiter) <= 100
    # a busy key survives pruning of rested ones
    limiter = RequestLimiter(burst=1, per_minute=1, max_keys=3)
    limiter.check("busy", 0.0)
    for i in range(3):
        limiter.check(f"k{i}", 1000.0 + i)
    assert len(limiter) <= 3


def test_conferences_empty_for_the_timeout_are_due() -> None:
    empty = EmptyConferences(timeout=60)
    empty.observe("never-joined", 0, now=0.0)
    empty.observe("busy", 2, now=0.0)
    empty.observe("left", 1, now=0.0)
    empty.observe("left", 0, now=30.0)
    assert empty.due(59.0) == []
    assert empty.due(60.0) == ["never-joined"]
    empty.observe("never-joined", 0, now=70.0)  # still empty: the clock is not reset
    assert set(empty.due(90.0)) == {"never-joined", "left"}
    empty.observe("left", 1, now=91.0)  # someone came back
    assert empty.due(200.0) == ["never-joined"]
    empty.forget("never-joined")
    assert empty.due(1000.0) == []

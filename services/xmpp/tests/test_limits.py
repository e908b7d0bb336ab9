"""The per-connection token bucket."""

from services.xmpp.limits import TokenBucket


def test_burst_is_free_then_reading_pauses_for_the_excess():
    bucket = TokenBucket(rate=1000, burst=2000, now=0.0)
    assert bucket.consume(2000, now=0.0) == 0.0
    assert bucket.consume(500, now=0.0) == 0.5  # 500 bytes over, at 1000 B/s
    assert bucket.consume(0, now=1.0) == 0.0  # credit refills with time


def test_credit_never_exceeds_the_burst():
    bucket = TokenBucket(rate=1000, burst=2000, now=0.0)
    bucket.consume(0, now=100.0)
    assert bucket.consume(2500, now=100.0) == 0.5

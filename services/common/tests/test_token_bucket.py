"""The shared token bucket: spending into debt (a read budget) and taking only what is there."""

from services.common.token_bucket import TokenBucket


def test_take_spends_only_what_is_there_and_refills_with_time() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    # a refusal costs nothing: half a second later one token (at 2 a second) is back
    assert not bucket.take(0.25)
    assert bucket.take(0.5)
    assert not bucket.take(0.5)


def test_credit_never_exceeds_the_burst_and_a_full_bucket_says_so() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert bucket.full(0.0)
    assert bucket.take(0.0)
    assert not bucket.full(0.1)
    assert bucket.full(100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_consume_goes_into_debt_and_says_how_long_to_pause() -> None:
    bucket = TokenBucket(rate=1000, burst=2000, now=0.0)
    assert bucket.consume(2500, 0.0) == 0.5
    assert not bucket.take(0.4)  # still in debt
    assert bucket.consume(0, 0.75) == 0.0


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(4.0)
    assert not bucket.take(4.05)  # measured from the later stamp: nothing accrued yet


def test_wait_says_when_a_refused_take_would_succeed_and_spends_nothing() -> None:
    bucket = TokenBucket(rate=4, burst=2, now=0.0)
    assert bucket.wait(0.0) == 0.0
    assert bucket.take(0.0) and bucket.take(0.0)
    assert bucket.wait(0.0) == 0.25
    assert bucket.wait(0.0, amount=2) == 0.5
    assert bucket.wait(0.125) == 0.125  # half a token accrued: half the wait is left
    assert not bucket.take(0.2)
    assert bucket.take(0.25)
    assert TokenBucket(rate=0, burst=1, now=0.0).wait(0.0, amount=2) == float("inf")


def test_a_changed_rate_and_burst_apply_from_the_next_refill() -> None:
    bucket = TokenBucket(rate=1, burst=10, now=0.0)
    bucket.consume(10, 0.0)
    bucket.rate, bucket.burst = 4, 2
    assert bucket.take(0.25)  # one token at the new rate
    assert not bucket.take(0.25)
    assert bucket.full(10.0) and bucket.tokens == 2  # capped at the new burst

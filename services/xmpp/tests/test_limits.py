"""The per-connection token bucket."""

from services.xmpp.limits import ReadBudget, TokenBucket


def test_burst_is_free_then_reading_pauses_for_the_excess():
    bucket = TokenBucket(rate=1000, burst=2000, now=0.0)
    assert bucket.consume(2000, now=0.0) == 0.0
    assert bucket.consume(500, now=0.0) == 0.5  # 500 bytes over, at 1000 B/s
    assert bucket.consume(0, now=1.0) == 0.0  # credit refills with time


def test_credit_never_exceeds_the_burst():
    bucket = TokenBucket(rate=1000, burst=2000, now=0.0)
    bucket.consume(0, now=100.0)
    assert bucket.consume(2500, now=100.0) == 0.5


def test_read_budget_is_the_guests_until_a_service_account_logs_in():
    budget = ReadBudget(guest=(1000, 2000), service=(100_000, 200_000), now=0.0)
    assert budget.consume(2000, now=0.0) == 0.0
    assert budget.consume(1000, now=0.0) == 1.0  # a guest: 1000 bytes over at 1000 B/s
    # logged in to the focus's account: the service accounts' budget, with a full burst
    assert budget.consume(150_000, now=0.0, service_account=True) == 0.0
    assert budget.service
    # never lowered again, whatever a caller says later
    assert budget.consume(50_000, now=0.0) == 0.0


def test_read_budget_holds_back_the_part_of_a_read_over_the_budget():
    budget = ReadBudget(guest=(1000, 2000), service=(100_000, 200_000), now=0.0)
    assert budget.admit(1500, now=0.0) == (1500, 0.0)
    # one read of 4000 bytes: 500 are within the budget, 3500 wait 3.5 s (at 1000 B/s)
    assert budget.admit(4000, now=0.0) == (500, 3.5)
    # by then the held-back part has been paid for: the next byte starts from an empty bucket
    assert budget.admit(1000, now=3.5) == (0, 1.0)

"""The per-connection token bucket and the per-address connection limits."""

from services.common.token_bucket import TokenBucket
from services.xmpp.limits import ConnectionLimiter, ReadBudget


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


# -- new connections per address (limits.connections-*) -----------------------------------------
def test_connection_limiter_allows_a_burst_then_the_rate():
    lim = ConnectionLimiter(rate=2, burst=3, max_open=0, exempt=[])
    assert [lim.admit("192.0.2.1", 0.0) for _ in range(3)] == [None, None, None]
    assert lim.admit("192.0.2.1", 0.0) is not None  # the burst is spent
    assert lim.admit("192.0.2.2", 0.0) is None  # another address has its own bucket
    assert lim.admit("192.0.2.1", 0.5) is None  # one token back after 1 / rate
    assert lim.admit("192.0.2.1", 0.5) is not None
    assert lim.refused == 2


def test_connection_limiter_caps_open_connections_and_frees_them():
    lim = ConnectionLimiter(rate=0, burst=1, max_open=2, exempt=[])
    assert lim.admit("192.0.2.1", 0.0) is None
    assert lim.admit("192.0.2.1", 0.0) is None
    assert "open" in (lim.admit("192.0.2.1", 0.0) or "")
    lim.closed("192.0.2.1")
    assert lim.open_count("192.0.2.1") == 1
    assert lim.admit("192.0.2.1", 0.0) is None
    lim.closed("192.0.2.1")
    lim.closed("192.0.2.1")
    assert lim.open_count("192.0.2.1") == 0 and len(lim) == 0


def test_connection_limiter_never_limits_exempt_networks():
    lim = ConnectionLimiter(rate=1, burst=1, max_open=1, exempt=["127.0.0.1/32", "::1/128", "bad"])
    for _ in range(50):
        assert lim.admit("127.0.0.1", 0.0) is None
        assert lim.admit("::ffff:127.0.0.1", 0.0) is None  # IPv4-mapped
        assert lim.admit("::1", 0.0) is None
    assert lim.admit("127.0.0.2", 0.0) is None
    assert lim.admit("127.0.0.2", 0.0) is not None
    assert len(lim) == 1  # exempt addresses are not even in the table


def test_connection_limiter_forgets_rested_addresses():
    lim = ConnectionLimiter(rate=10, burst=5, max_open=0, exempt=[])
    for i in range(100):
        lim.admit(f"192.0.2.{i}", 0.0)
        lim.closed(f"192.0.2.{i}")
    assert len(lim) == 100
    lim.sweep(0.05)  # half a token back: not rested yet
    assert len(lim) == 100
    lim.sweep(0.1)
    assert len(lim) == 0


def test_connection_limiter_holds_a_few_refusals_per_address():
    lim = ConnectionLimiter(rate=1, burst=1, max_open=0, exempt=[])
    held = [lim.hold("192.0.2.1") for _ in range(ConnectionLimiter.HELD_PER_ADDRESS + 2)]
    assert held == [True] * ConnectionLimiter.HELD_PER_ADDRESS + [False, False]
    assert lim.hold("192.0.2.2")  # another address has its own
    lim.release("192.0.2.1")
    assert lim.hold("192.0.2.1")
    for _ in range(ConnectionLimiter.HELD_PER_ADDRESS):
        lim.release("192.0.2.1")
    lim.release("192.0.2.2")
    lim.release("192.0.2.2")  # one too many: nothing goes negative
    assert lim.held == 0

"""SIP messages per source address (services/sip/flood.py, Kamailio's pike) and its settings."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.sip import config
from services.sip.flood import SourceLimiter

LOOPBACK = ("127.0.0.1/32", "::1/128")


def test_a_source_gets_its_burst_then_the_rate() -> None:
    limiter = SourceLimiter(rate=10, burst=20, exempt=LOOPBACK)
    assert sum(limiter.admit("203.0.113.7", 0.0) for _ in range(100)) == 20
    # flooding on costs it nothing more than the rate: one second later, 10 more
    assert sum(limiter.admit("203.0.113.7", 1.0) for _ in range(100)) == 10
    assert limiter.refused == 170


def test_sources_are_counted_apart() -> None:
    limiter = SourceLimiter(rate=1, burst=5)
    assert sum(limiter.admit("203.0.113.7", 0.0) for _ in range(50)) == 5
    assert all(limiter.admit("198.51.100.9", 0.0) for _ in range(5))
    # the same host as an IPv4-mapped address (a dual-stack socket's view) is the same source
    assert not limiter.admit("::ffff:203.0.113.7", 0.5)
    assert len(limiter) == 2


def test_exempt_networks_and_the_limit_off_are_never_refused() -> None:
    limiter = SourceLimiter(rate=1, burst=1, exempt=LOOPBACK)
    assert all(limiter.admit("127.0.0.1", 0.0) for _ in range(1000))
    assert all(limiter.admit("::ffff:127.0.0.1", 0.0) for _ in range(1000))
    assert all(limiter.admit("::1", 0.0) for _ in range(1000))
    assert not [limiter.admit("127.0.0.2", 0.0) for _ in range(2)][-1]  # 127.0.0.1/32 only
    assert len(limiter) == 1
    off = SourceLimiter(rate=0, burst=1)
    assert not off.enabled
    assert all(off.admit("203.0.113.7", 0.0) for _ in range(1000)) and len(off) == 0


def test_the_table_is_bounded_and_a_recent_flooder_is_not_forgotten() -> None:
    limiter = SourceLimiter(rate=1, burst=2, max_sources=100)
    assert [limiter.admit("203.0.113.7", 0.0) for _ in range(3)] == [True, True, False]
    for i in range(1000):  # spoofed sources, one message each, the flooder among them
        limiter.admit(f"10.0.{i // 256}.{i % 256}", 0.0)
        assert not limiter.admit("203.0.113.7", 0.0)
        assert len(limiter) <= 100


def test_sweep_forgets_sources_that_rested() -> None:
    limiter = SourceLimiter(rate=1, burst=2)
    limiter.admit("203.0.113.7", 0.0)
    limiter.admit("198.51.100.9", 1.5)
    limiter.sweep(1.5)  # the first is full again (one spent, 1.5 s at 1 a second), the second not
    assert len(limiter) == 1
    limiter.sweep(10.0)
    assert len(limiter) == 0


def test_settings_default_generous_and_refuse_a_bad_network() -> None:
    limits = config.load(environ={}).limits
    assert (limits.requests_per_second, limits.requests_burst) == (50, 200)
    assert limits.request_exempt_networks == ["127.0.0.1/32", "::1/128"]
    env = {"SIP_REQUESTS_PER_SECOND": "0", "SIP_REQUEST_EXEMPT_NETWORKS": "10.0.0.0/8, ::1/128"}
    limits = config.load(environ=env).limits
    assert limits.requests_per_second == 0 and limits.request_exempt_networks == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError):
        config.load(environ={"SIP_REQUEST_EXEMPT_NETWORKS": "not-a-network"})

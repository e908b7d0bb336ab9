"""Limits without I/O: the per-connection read budget (Prosody's mod_limits idea, on the shared
token bucket of ``services/common/token_bucket.py``), failed login counters per address and per
account, and rate-limited logging."""

from __future__ import annotations

import ctypes
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

from ..common import addresses
from ..common.token_bucket import TokenBucket


class ReadBudget:
    """A client connection's read budget: the guests' token bucket until its session has logged
    in to a service account, then the service accounts' (Prosody's mod_limits ``c2s`` rate, with
    Jitsi's ``unlimited_jids`` for the focus and the bridges). Guests never need much: a browser
    sends a few KB when it joins and about 1 KB per presence update, so a guest that floods the
    broker with stanzas is slowed to what the guests' rate allows, and the focus, bridges,
    recorders and SIP gateways, which speak for many, are not."""

    def __init__(self, guest: tuple[float, float], service: tuple[float, float], now: float) -> None:
        self.bucket = TokenBucket(guest[0], guest[1], now)
        self._service = service
        self.service = False

    def consume(self, amount: int, now: float, service_account: bool = False) -> float:
        """Seconds to pause reading after ``amount`` bytes; ``service_account``: the connection's
        session is logged in to one (its budget is raised from then on, never lowered)."""
        if service_account and not self.service:
            self.service = True
            self.bucket = TokenBucket(self._service[0], self._service[1], now)
        return self.bucket.consume(amount, now)

    def admit(self, amount: int, now: float, service_account: bool = False) -> tuple[int, float]:
        """(how many of ``amount`` bytes just read may be handled now, seconds until the rest
        may and reading may go on). One read can bring far more than the burst (a socket read
        takes up to 256 KiB): the part over the budget waits, so the rate holds per byte, not
        per read."""
        delay = self.consume(amount, now, service_account)
        if delay <= 0:
            return amount, 0.0
        later = min(amount, math.ceil(delay * self.bucket.rate))
        return amount - later, delay


class FailureLimiter:
    """Failed logins per key (client address, account): at most ``limit`` failures within
    ``window`` seconds, then every attempt is refused until the oldest failure ages out.

    Sliding window of timestamps, bounded: at most ``limit`` entries per key and ``max_keys``
    keys (the oldest key is forgotten first), so a flood of addresses cannot grow it without bound.
    """

    def __init__(self, limit: int, window: float, max_keys: int = 65536) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, key: str, now: float) -> bool:
        times = self._failures.get(key)
        if times is None:
            return False
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return False
        return len(times) >= self.limit

    def failed(self, key: str, now: float) -> None:
        times = self._failures.pop(key, None)
        if times is None:
            if len(self._failures) >= self.max_keys:
                del self._failures[next(iter(self._failures))]
            times = deque(maxlen=self.limit)
        times.append(now)
        self._failures[key] = times  # re-inserted: dict order is least recently failed first

    def __len__(self) -> int:
        return len(self._failures)


class LoginGuard:
    """The broker's failed-login policy: per client address and per account (RFC 6120 section
    6.4.5 leaves the number of retries to the server; Prosody's mod_limit_auth does the same)."""

    def __init__(
        self,
        per_address: int = 5,
        per_account: int = 20,
        window: float = 60.0,
        max_keys: int = 65536,
        tarpit_delay: float = 0.0,
        tarpit_per_address: int = 8,
    ) -> None:
        self.addresses = FailureLimiter(per_address, window, max_keys)
        self.accounts = FailureLimiter(per_account, window, max_keys)
        # A refused attempt (the address or account is over its limit) is answered only after
        # ``tarpit_delay`` seconds (the idea of pam_fail_delay and Dovecot's auth_failure_delay):
        # a guesser that retries as soon as it is answered is slowed to one attempt per delay
        # and stream, instead of making the broker set up streams as fast as it can. At most
        # ``tarpit_per_address`` streams of one address wait at once; past that the refusal is
        # immediate (a waiting stream holds a connection and its parser).
        self.tarpit_delay = tarpit_delay
        self.tarpit_per_address = tarpit_per_address
        self._held: dict[str, int] = {}

    def hold(self, address: str) -> bool:
        """Whether a refused attempt from ``address`` is to wait ``tarpit_delay`` seconds (and
        is counted until :meth:`release`)."""
        if self.tarpit_delay <= 0 or self._held.get(address, 0) >= self.tarpit_per_address:
            return False
        self._held[address] = self._held.get(address, 0) + 1
        return True

    def release(self, address: str) -> None:
        left = self._held.get(address, 0) - 1
        if left > 0:
            self._held[address] = left
        else:
            self._held.pop(address, None)

    def held(self, address: str) -> int:
        return self._held.get(address, 0)

    def allowed(self, address: str, account: str | None, now: float) -> bool:
        if address and self.addresses.blocked(address, now):
            return False
        return not (account and self.accounts.blocked(account, now))

    def failed(self, address: str, account: str | None, now: float) -> None:
        if address:
            self.addresses.failed(address, now)
        if account:
            self.accounts.failed(account, now)


class LogLimiter:
    """One log line per key per ``interval`` seconds; says how many were held back."""

    def __init__(self, interval: float = 10.0, max_keys: int = 4096) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[str, tuple[float, int]] = {}

    def should_log(self, key: str, now: float) -> tuple[bool, int]:
        """(log now?, lines suppressed since the last one for this key)."""
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval:
            self._last[key] = (last[0], last[1] + 1)
            return False, 0
        if last is None and len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = (now, 0)
        return True, last[1] if last is not None else 0


_LOG_LIMITER = LogLimiter()


def log_limited(
    logger: logging.Logger, level: int, key: str, msg: str, *args: object, exc_info: bool = False
) -> None:
    """Log ``msg`` unless a line with the same ``key`` was logged in the last few seconds."""
    ok, suppressed = _LOG_LIMITER.should_log(key, time.monotonic())
    if not ok:
        return
    if suppressed:
        msg += f" ({suppressed} similar suppressed)"
    logger.log(level, msg, *args, exc_info=exc_info)


def in_networks(address: str, networks: list[str]) -> bool:
    """Whether an IP address is in one of the CIDR ``networks`` (invalid ones are skipped)."""
    return addresses.in_networks(address, addresses.parse_networks(tuple(networks)))


class MemoryTrimmer:
    """Give freed memory back to the system after connections close.

    The broker runs on the C allocator (``PYTHONMALLOC=malloc``, see ``__main__``): Python's own
    small-object allocator keeps a 1 MiB arena as long as one object in it lives, so the tree of
    a partial stanza freed between other clients' objects stayed resident. glibc's
    ``malloc_trim`` returns every free page of its heaps; it runs at most once per ``interval``
    seconds, and only after something was freed (a connection closed).
    """

    def __init__(self, interval: float = 1.0, linger: float = 10.0) -> None:
        self.interval = interval
        self.linger = linger
        self.pending = False
        self.last = 0.0
        self.trims = 0
        self._freed_at: float | None = None
        self._trim = _malloc_trim()

    def freed(self) -> None:
        self.pending = True
        self._freed_at = None  # stamped at the next check: this needs no clock

    def maybe_trim(self, now: float) -> bool:
        """Trim if something was freed, at most once per ``interval``, and keep trimming for
        ``linger`` seconds after the last free: what a closed connection held is often let go a
        little later (the WebSocket admin keeps a closed connection's record for
        ``rm_delay_interval``, a XEP-0198 session waits to be resumed)."""
        if not self.pending or self._trim is None or now - self.last < self.interval:
            return False
        if self._freed_at is None:
            self._freed_at = now
        if now - self._freed_at >= self.linger:
            self.pending = False
        self.last = now
        self._trim(0)
        self.trims += 1
        return True


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


class IdleConnections:
    """HTTP connections waiting for their next request (keep-alive), oldest first.

    Each one costs a parser and buffers; a client that opens connections, makes one request and
    leaves them open would otherwise grow the process without bound (and every full garbage
    collection would walk them). One past ``limit`` closes the longest idle; one idle longer than
    ``timeout`` is closed by :meth:`expired`. Pure bookkeeping: the caller closes what it is given.
    """

    def __init__(self, timeout: float, limit: int) -> None:
        self.timeout = timeout
        self.limit = limit
        self._since: OrderedDict[Hashable, float] = OrderedDict()
        self.evicted = 0

    def idle(self, conn: Hashable, now: float) -> list[Hashable]:
        """``conn`` now waits for a request; returns the connections to close to stay in bounds."""
        self._since.pop(conn, None)
        self._since[conn] = now
        out = []
        while len(self._since) > self.limit:
            oldest, _ = self._since.popitem(last=False)
            out.append(oldest)
        self.evicted += len(out)
        return out

    def active(self, conn: Hashable) -> None:
        """``conn`` has a request in progress, was upgraded, or is gone."""
        self._since.pop(conn, None)

    def expired(self, now: float) -> list[Hashable]:
        out = []
        while self._since:
            conn, since = next(iter(self._since.items()))
            if now - since < self.timeout:
                break
            del self._since[conn]
            out.append(conn)
        self.evicted += len(out)
        return out

    def __len__(self) -> int:
        return len(self._since)


class ConnectionLimiter:
    """New connections per client address (a token bucket, ``services/common/token_bucket.py``:
    ``burst`` at once, then ``rate`` a second) and connections open at once per address, as
    nginx's ``limit_req`` and ``limit_conn`` do in front, for the broker's own ports. Addresses
    in ``exempt`` networks (the host itself, where the launcher runs the focus, the bridges and
    nginx) are never limited.

    Pure bookkeeping: :meth:`admit` says whether a connection may be served and counts it open;
    :meth:`closed` takes it off. The table holds an address while it has a connection open or its
    bucket is not yet full again (:meth:`sweep` forgets the rested ones), so its size is bounded
    by the open connections plus the addresses seen in the last ``burst / rate`` seconds.
    """

    # refused connections held before they are reset (see :meth:`hold`): per address, in all
    HELD_PER_ADDRESS = 8
    HELD_TOTAL = 1024

    def __init__(self, rate: float, burst: int, max_open: int, exempt: list[str]) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_open = max_open
        self._held: dict[str, int] = {}
        self.held = 0
        self.exempt = addresses.parse_networks(tuple(exempt))
        self._buckets: dict[str, TokenBucket] = {}  # new connections per address
        self._open: dict[str, int] = {}
        self.refused = 0

    def is_exempt(self, address: str) -> bool:
        return addresses.in_networks(address, self.exempt)

    def admit(self, address: str, now: float) -> str | None:
        """``None`` when a new connection from ``address`` may be served (it is counted open:
        call :meth:`closed` when it ends); otherwise why it is refused."""
        if self.is_exempt(address):
            return None
        if self.max_open and self._open.get(address, 0) >= self.max_open:
            self.refused += 1
            return f"more than {self.max_open} connections open"
        if self.rate > 0:
            bucket = self._buckets.get(address)
            if bucket is None:
                bucket = self._buckets[address] = TokenBucket(self.rate, self.burst, now)
            if not bucket.take(now):
                self.refused += 1
                return f"more than {self.rate:g} new connections a second"
        self._open[address] = self._open.get(address, 0) + 1
        return None

    def closed(self, address: str) -> None:
        """A connection :meth:`admit` let in has ended."""
        n = self._open.get(address, 0)
        if n > 1:
            self._open[address] = n - 1
        else:
            self._open.pop(address, None)

    def hold(self, address: str) -> bool:
        """Whether a refused connection from ``address`` may be held (not read) for the refusal
        delay before it is reset: a client that reconnects as soon as it is refused then gets one
        refusal per delay, not as many as the broker can accept. At most ``HELD_PER_ADDRESS`` of
        one address and ``HELD_TOTAL`` in all are held; past that a refusal is immediate.
        :meth:`release` when it is reset."""
        n = self._held.get(address, 0)
        if n >= self.HELD_PER_ADDRESS or self.held >= self.HELD_TOTAL:
            return False
        self._held[address] = n + 1
        self.held += 1
        return True

    def release(self, address: str) -> None:
        n = self._held.pop(address, 0)
        if n > 1:
            self._held[address] = n - 1
        if n:
            self.held -= 1

    def sweep(self, now: float) -> None:
        """Forget the addresses whose bucket is full again."""
        if self.rate <= 0:
            return
        for address in [a for a, bucket in self._buckets.items() if bucket.full(now)]:
            del self._buckets[address]

    def open_count(self, address: str) -> int:
        return self._open.get(address, 0)

    def __len__(self) -> int:
        return len(self._buckets.keys() | self._open.keys())
